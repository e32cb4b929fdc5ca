/*
 * The bridge's internals shared by its files (not installed):
 *   bridge.c   the public API, transport events, serializers;
 *   conns.c    the connection table, pausing, replies and their overflow;
 *   publish.c  publishing, delivery reports, the shutdown drain.
 * Subscribe and fan-out get files of their own next to these.
 */
#ifndef KSOCK_BRIDGE_INTERNAL_H
#define KSOCK_BRIDGE_INTERNAL_H

#include "../internal.h"

#include <ksock/bridge.h>
#include <ksock/error.h>
#include <ksock/log.h>
#include <ksock/runtime.h>
#include <ksock/serde.h>

#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define COMPONENT       "bridge"
#define SUBPROTO_PREFIX "ksock.v1."
/* Close codes (RFC 6455): 1013 Try Again Later, 1011 Internal Error. */
#define CLOSE_TRY_AGAIN 1013
#define CLOSE_INTERNAL  1011
/* A drain ends only after clients were quiet this long (see drain_done). */
#define DRAIN_QUIET_MS 250
#define DRAIN_TICK_MS  50

typedef struct reply_s {
    struct reply_s *next;
    ksock_frame_t *frame;
} reply_t;

typedef struct conn_s {
    ksock_conn_id_t id;
    struct conn_s *next; /* hash chain */
    ksock_principal_t *principal;
    const ksock_serializer_vtable_t *sv; /* set in on_open */
    void *sinst;
    uint32_t inflight;
    reply_t *ovf_head, *ovf_tail; /* replies waiting for room in the send queue, in order */
    bool registered;              /* in the table (on_open seen) */
    bool closing;                 /* we asked the transport to close it */
    bool paused;                  /* we asked the transport to stop delivering its messages */
} conn_t;

typedef struct pending_s {
    ksock_bridge_t *bridge; /* NULL once the bridge is freed */
    struct pending_s *prev, *next;
    ksock_conn_id_t conn;
    char *id; /* the publish's id, NULL if it had none */
    size_t id_len;
    char *topic;
} pending_t;

typedef struct serializer_s {
    char *name;
    ksock_plugin_instance_t *pi;
    struct serializer_s *next;
} serializer_t;

struct ksock_bridge_s {
    ksock_runtime_t *rt;
    ksock_plugin_instance_t *transport;
    const ksock_transport_vtable_t *tv;
    ksock_plugin_instance_t *auth;
    const ksock_auth_vtable_t *av;
    ksock_kafka_producer_t *producer;
    ksock_bridge_opts_t opts;
    conn_t **buckets;
    size_t nbuckets, nconns;
    pending_t *pending;
    serializer_t *serializers;
    bool started, stopped;
    bool can_pause;             /* the transport has pause_read (ABI 1.1) */
    uint32_t resume_at;         /* in flight at or below which a paused connection resumes */
    bool draining;              /* ksock_bridge_drain() called */
    size_t nwaiting;            /* connections with replies in their overflow list */
    ksock_timer_t *drain_timer; /* polls the drain every DRAIN_TICK_MS */
    uint64_t drain_deadline;    /* ksock_now_ns() */
    uint64_t last_msg_ns;       /* the last message a client sent */
    ksock_bridge_drain_cb drain_cb;
    void *drain_data;
    uint64_t stall_ms; /* KSOCK_TEST_STALL_MS: test hook, see on_message */
    /* Made by ksock_bridge_new_from_config(): the instances are ours to free. */
    bool owns_instances;
    bool serializers_fixed;    /* serve only b->serializers (never load one on first use) */
    const char **subprotocols; /* ksock.v1.<name> per serializer, NULL-terminated, for listen() */
    const ksock_config_t *cfg; /* for the listener log lines; NULL without a config */
    uint64_t drain_timeout_ms;
    ksock_bridge_stats_t stats;
    _Atomic uint64_t refused; /* handshakes refused: counted on the transport's thread */
};

/* conns.c: the connection table. */
conn_t *ksock__br_conn_find(const ksock_bridge_t *b, ksock_conn_id_t id);
void ksock__br_conn_insert(ksock_bridge_t *b, conn_t *c);
void ksock__br_conn_remove(ksock_bridge_t *b, conn_t *c);
void ksock__br_conn_free(conn_t *c);
/* conns.c: pause reading at the bounds, resume below them (docs/bridge.md, Bounds). */
void ksock__br_conn_update_pause(ksock_bridge_t *b, conn_t *c);
/* conns.c: ask the transport to close (once). */
void ksock__br_conn_close(ksock_bridge_t *b, conn_t *c, int code, const char *reason);
/* conns.c: send what waited for room in the send queue, in order. */
void ksock__br_conn_flush_overflow(ksock_bridge_t *b, conn_t *c);
/* conns.c: encode `env` with the connection's serializer and send it (or keep it in order). */
void ksock__br_reply(ksock_bridge_t *b, conn_t *c, const ksock_envelope_t *env);
void ksock__br_reply_error(ksock_bridge_t *b, conn_t *c, const char *id, size_t id_len,
                           const char *topic, size_t topic_len, int code, const char *msg);

/* bridge.c: serve serializer `name` with options `opts` of `doc` (NULL: defaults). */
int ksock__br_serializer_add(ksock_bridge_t *b, const char *name, const ksock_config_t *doc,
                             const ksock_cfg_t *opts, char *errstr, size_t errstr_size);

/* config.c: the listener and serializer log records of a bridge made from a config. */
void ksock__br_log_config(const ksock_bridge_t *b);

/* publish.c: a decoded publish from `c`. */
void ksock__br_do_publish(ksock_bridge_t *b, conn_t *c, const ksock_envelope_t *env);
/* publish.c: the drain's timer, and its check after anything that may end it. */
void ksock__br_drain_timer_cb(ksock_timer_t *t, void *data);
void ksock__br_drain_check(ksock_bridge_t *b);

#endif
