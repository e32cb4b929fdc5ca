/*
 * The bridge's internals shared by its files (not installed):
 *   bridge.c   the public API, transport events, serializers;
 *   conns.c    the connection table, pausing, replies and their overflow;
 *   publish.c  publishing, delivery reports, the shutdown drain;
 *   subs.c     subscribe and unsubscribe: requests, their answers, catch-up readers;
 *   fanout.c   topics: one shared Kafka reader each, records to subscribers, slow clients;
 *   lookup.c   Kafka lookups (partitions, offsets) on threads of their own;
 *   limits.c   connections per principal, the publish rate (docs/bridge.md, Limits);
 *   token.c    token lifetime: expiry on open connections, the `token` op;
 *   reload.c   SIGHUP: a new serializer set, authenticator and limits, nobody dropped.
 * Nothing in subs.c, fanout.c or lookup.c knows the transport's library:
 * frames go out through the transport vtable (send_many).
 */
#ifndef KSOCK_BRIDGE_INTERNAL_H
#define KSOCK_BRIDGE_INTERNAL_H

#include "../internal.h"

#include <ksock/bridge.h>
#include <ksock/error.h>
#include <ksock/log.h>
#include <ksock/runtime.h>
#include <ksock/serde.h>

#include <pthread.h>
#include <inttypes.h>
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
/* Defaults of the "bridge" section's subscription limits (config.c says what they mean). */
#define BRIDGE_MAX_SUBSCRIPTIONS 100
#define BRIDGE_MAX_CATCHUP       32
/* Records held per topic while subscribers' queues are full (a burst): beyond it Kafka waits. */
#define BRIDGE_HOLD_MAX (16u << 20)

/* Metrics (metrics.c): publish refusals by -code (0: a code past the table), auth refusal reasons.
 */
#define BR_PUB_CODES    48
#define BR_AUTH_REASONS 16
#define BR_COUNT_REFUSED(b, code)                                                                  \
    ((b)->pub_refused[(code) < 0 && -(code) < BR_PUB_CODES ? -(code) : 0]++)

typedef struct reply_s {
    struct reply_s *next;
    ksock_frame_t *frame;
} reply_t;

typedef struct serializer_s serializer_t;
typedef struct sub_s sub_t;
typedef struct topic_s topic_t;
typedef struct lookup_s lookup_t;

typedef struct conn_s {
    ksock_conn_id_t id;
    struct conn_s *next; /* hash chain */
    ksock_principal_t *principal;
    serializer_t *ser; /* set in on_open: SV(c) and SI(c) */
    sub_t *subs;       /* its subscriptions, one per topic */
    size_t nsubs;
    uint32_t inflight;
    reply_t *ovf_head, *ovf_tail; /* replies waiting for room in the send queue, in order */
    bool registered;              /* in the table (on_open seen) */
    bool closing;                 /* we asked the transport to close it */
    bool paused;                  /* we asked the transport to stop delivering its messages */
    bool at_bound;                /* paused at max_inflight until acks bring it to resume_at */
    /* limits.c and token.c */
    ksock_bridge_t *b;
    bool counted;              /* in its principal's connection count */
    bool rate_paused;          /* reading paused until the publish bucket refills */
    double tokens;             /* publish token bucket */
    uint64_t tokens_ns;        /* its last refill, ksock_now_ns() */
    ksock_timer_t *rate_timer; /* resumes a rate-paused connection */
    ksock_timer_t *exp_timer;  /* closes it with 4401 when its token expires */
} conn_t;

typedef struct pending_s {
    ksock_bridge_t *bridge; /* NULL once the bridge is freed */
    struct pending_s *prev, *next;
    ksock_conn_id_t conn;
    char *id; /* the publish's id, NULL if it had none */
    size_t id_len;
    char *topic;
} pending_t;

struct serializer_s {
    char *name;
    ksock_plugin_instance_t *pi;
    struct serializer_s *next;
    uint64_t delivered, bytes; /* record frames queued to subscribers, their bytes (metrics.c) */
    /* reload.c: connections using it; a reload retires it, freed when the last one closes */
    size_t refs;
    bool retired;
    uint64_t delivered0, bytes0; /* the counters when it was retired (handed to its successor) */
};

/* A topic's subscribers fed by its shared reader that use one serializer (one frame per record). */
typedef struct group_s {
    struct group_s *next;
    serializer_t *ser;
    sub_t **subs;
    size_t n, cap;
} group_t;

/* What a subscribe asked for, kept until it is answered. */
typedef struct sub_req_s {
    char *id; /* NULL: none */
    size_t id_len;
    ksock_start_t start;
    int64_t start_ts;
    size_t nreq;
    ksock_partition_offset_t req[]; /* start: offsets */
} sub_req_t;

/*
 * One subscription: a connection and a topic. Per partition it keeps the
 * next offset to deliver; a partition is fed either by the subscription's
 * own catch-up reader (`catching`) or by the topic's shared reader
 * (`joined`), never both (docs/bridge.md, How a subscription is fed).
 */
struct sub_s {
    conn_t *conn;
    topic_t *topic;
    sub_t *cnext;          /* the connection's list */
    sub_t *tnext, **tprev; /* the topic's list */
    sub_req_t *rq;         /* the request, until answered (then NULL) */
    bool active;           /* `subscribed` sent */
    bool gap_pending;      /* records dropped (slow-client drop): tell before the next */
    bool catch_paused;     /* the catch-up reader waits for room in the send queue */
    bool full;           /* its queue is full: the shared reader waits for it (slow_client_grace) */
    bool judged;         /* it stayed full past the grace once: the policy applies at once now */
    uint64_t full_since; /* ksock_now_ns() when `full` was set */
    int32_t nparts;
    int64_t *next; /* per partition: the next offset to deliver */
    int64_t *gap;  /* per partition: the first dropped offset, -1 none */
    bool *joined, *catching;
    size_t ncatching;
    ksock_kafka_consumer_t *cu; /* catch-up reader, NULL when none */
    uint64_t cu_born;           /* ksock_now_ns() at its creation */
    group_t *group;             /* while some partition is joined */
    size_t gidx;
    lookup_t *lk; /* its own lookup in flight */
};

/* A topic with subscribers: its shared reader at the head (fanout.c). */
struct topic_s {
    ksock_bridge_t *b;
    topic_t *next;
    char *name;
    int32_t nparts; /* 0 until resolved */
    int64_t *pos;   /* per partition: the next offset the shared reader hands out */
    ksock_kafka_consumer_t *head;
    uint64_t head_born;
    group_t *groups;
    sub_t *subs;
    size_t nsubs;
    lookup_t *lk; /* resolve or partition refresh in flight */
    ksock_timer_t *refresh;
    ksock_timer_t *linger; /* no subscription left: the reader stays this long (reader_linger) */
    ksock_timer_t *grace;  /* congested: the policy applies to those still full when it fires */
    bool paused;           /* congested: records are held for subscribers whose queues are full */
    bool kpaused;          /* the hold is full: the Kafka reader is paused too */
    struct held_s *hold_head, *hold_tail;
    size_t hold_bytes;
    size_t nfull; /* subscriptions with `full` set */
    bool resolved;
};

/* A Kafka lookup on a thread (lookup.c): partitions, their offsets, offsets at a time. */
struct lookup_s {
    ksock_bridge_t *b;
    lookup_t *next;
    pthread_t thread;
    _Atomic bool done;
    topic_t *topic; /* a topic's lookup; NULL once the topic is gone */
    sub_t *sub;     /* a subscription's lookup; NULL once it is gone */
    bool for_sub;
    char *name;
    int64_t ts; /* -1: no offsets-for-times */
    int timeout_ms;
    int err;
    char errmsg[256];
    int32_t nparts;
    int64_t *low, *high, *at;
};

/* The HTTP statuses of upgrades the transport refuses itself, in ksock__br_http_statuses order. */
#define BR_HTTP_REFUSALS 6
extern const unsigned ksock__br_http_statuses[BR_HTTP_REFUSALS]; /* 400 403 404 426 503, 0: other */

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
    /* Metrics (metrics.c): plain counters, never formatted on the record path. */
    _Atomic uint64_t handshakes;                   /* on the transport's thread */
    _Atomic uint64_t auth_failed[BR_AUTH_REASONS]; /* by ksock__br_auth_reason() */
    uint64_t pub_refused[BR_PUB_CODES];            /* publishes answered an error, by -code */
    uint64_t queue_drops; /* record frames a full send queue did not take (slow()) */
    /* Subscriptions (subs.c, fanout.c, lookup.c). */
    ksock_kafka_conf_t *kconf;    /* readers' configuration; NULL: subscribe unsupported */
    ksock_kafka_consumer_t *meta; /* never started: its handle runs the lookups */
    topic_t *topics;
    lookup_t *lookups;
    int lk_fd; /* eventfd: a lookup thread is done */
    struct event *lk_ev;
    bool can_send_many;
    int slow_policy;            /* KSOCK_BRIDGE_SLOW_* */
    uint64_t max_subscriptions; /* per connection */
    uint64_t max_catchup;       /* catch-up readers at once */
    uint64_t ncatchup;
    uint64_t partition_refresh_ms;
    uint64_t reader_linger_ms;
    uint64_t slow_grace_ms; /* how long a congestion may pause a shared reader */
    uint64_t congestions;   /* times a shared reader paused for congestion */
    int lookup_timeout_ms;
    struct retired_s *retired; /* readers stopped, destroyed once old enough (fanout.c) */
    ksock_timer_t *retire_timer;
    /* fan-out scratch: ids, outcomes and subscriptions of one send_many */
    ksock_conn_id_t *fo_ids;
    int *fo_rc;
    sub_t **fo_subs;
    sub_t **fo_full; /* the subscribers whose queue was full */
    size_t fo_cap;
    /* limits.c: connections per principal (counted on the transport's thread) and publish rate */
    uint64_t max_per_principal; /* 0: no limit */
    double publish_rate;        /* per second and connection; 0: no limit */
    double publish_burst;
    pthread_mutex_t plock;
    struct pcount_s **pcount; /* subject -> open connections, PCOUNT_BUCKETS chains */
    _Atomic uint64_t refused_principal;
    _Atomic uint64_t refused_full; /* 503s of the transport at max_connections (on_refused) */
    _Atomic uint64_t refused_http[BR_HTTP_REFUSALS]; /* on_refused by status (metrics.c) */
    /* reload.c: a reload swaps auth, av, opts.anonymous and the serializer list under rlock,
     * which on_handshake holds while it uses them (the transport's thread). */
    pthread_mutex_t rlock;
    serializer_t *ser_retired; /* replaced by a reload, still used by open connections */
    uint64_t reloads;
};

/* A connection's serializer: its vtable and instance. */
#define SV(c) ((const ksock_serializer_vtable_t *)(c)->ser->pi->vtable)
#define SI(c) ((c)->ser->pi->inst)

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

/* What a reload takes from a config (config.c makes it, reload.c applies it). */
typedef struct br_reload_s {
    ksock_plugin_instance_t *auth; /* NULL: anonymous */
    bool anonymous;
    serializer_t *serializers;
    uint32_t max_inflight;
    int slow_policy;
    uint64_t drain_timeout_ms, max_subscriptions, max_catchup, partition_refresh_ms;
    uint64_t reader_linger_ms, slow_grace_ms, max_per_principal;
    double publish_rate, publish_burst;
} br_reload_t;
/* config.c: build `out` from cfg (checked already): a new auth instance and serializer set. */
int ksock__br_config_reload(ksock_bridge_t *b, const ksock_config_t *cfg, br_reload_t *out,
                            char *errstr, size_t errstr_size);
/* reload.c: free a serializer list (instances included). */
void ksock__br_serializers_free(serializer_t *s);
/* reload.c: a connection using `s` is gone; a retired `s` is freed with its last one. */
void ksock__br_serializer_release(ksock_bridge_t *b, serializer_t *s);
/* reload.c: bridge destroy: the retired serializers and rlock. */
void ksock__br_reload_free(ksock_bridge_t *b);

/* publish.c: Kafka's rule for topic names. */
bool ksock__br_topic_valid(const char *t, size_t n);

/* subs.c: subscribe and unsubscribe requests. */
void ksock__br_do_subscribe(ksock_bridge_t *b, conn_t *c, const ksock_envelope_t *env);
void ksock__br_do_unsubscribe(ksock_bridge_t *b, conn_t *c, const ksock_envelope_t *env);
/* subs.c: the connection has room again: gap notices, paused catch-up readers. */
void ksock__br_subs_writable(ksock_bridge_t *b, conn_t *c);
/* subs.c: end every subscription of a connection that is gone. */
void ksock__br_subs_conn_gone(ksock_bridge_t *b, conn_t *c);
/* subs.c: a topic's lookup is done: start the subscriptions that waited for it. */
void ksock__br_subs_topic_ready(ksock_bridge_t *b, topic_t *t, const lookup_t *l);
/* subs.c: a subscription's own lookup is done. */
void ksock__br_sub_lookup_done(ksock_bridge_t *b, sub_t *s, const lookup_t *l);
/* subs.c: partitions [from, t->nparts) were added to t: extend its subscriptions. */
void ksock__br_subs_partitions_added(ksock_bridge_t *b, topic_t *t, int32_t from);
/* subs.c: end one subscription (unsubscribe, replace, error, connection gone). */
void ksock__br_sub_free(ksock_bridge_t *b, sub_t *s);
/* subs.c: an `error` envelope -32 for `s` with the offsets where its gaps start. */
void ksock__br_sub_send_gap(ksock_bridge_t *b, sub_t *s, const char *id, size_t id_len,
                            const char *why);

/* fanout.c: topics and the shared reader. */
topic_t *ksock__br_topic_get(ksock_bridge_t *b, const char *name, bool create);
void ksock__br_topic_put(ksock_bridge_t *b, topic_t *t); /* frees it when no subscription is left */
int ksock__br_topic_start(ksock_bridge_t *b, topic_t *t, const lookup_t *l, char *err, size_t n);
/* fanout.c: a refresh lookup found partitions: read the new ones from their first record. */
void ksock__br_topic_grow(ksock_bridge_t *b, topic_t *t, const lookup_t *l);
/* fanout.c: `s` has room again (on_writable): the end of a congestion it was part of. */
void ksock__br_sub_unfull(ksock_bridge_t *b, sub_t *s);
/* fanout.c: a copy of the bridge's Kafka configuration for a reader (head: the shared one). */
int ksock__br_reader_conf(ksock_bridge_t *b, bool head, ksock_kafka_conf_t **out, char *err,
                          size_t n);
void ksock__br_group_add(ksock_bridge_t *b, sub_t *s);
void ksock__br_group_remove(sub_t *s);
/* fanout.c: the record envelope of a Kafka message; headers into hbuf (n entries) or *heap. */
void ksock__br_record_env(const ksock_kafka_message_t *m, ksock_envelope_t *env,
                          ksock_header_t *hbuf, size_t n, ksock_header_t **heap);
/*
 * fanout.c: end a reader made at `born`: stopped now (its handler is not
 * called again, also when this runs inside it), destroyed now or, when it
 * is younger than a few seconds, later.
 */
void ksock__br_reader_retire(ksock_bridge_t *b, ksock_kafka_consumer_t *kc, uint64_t born);
void ksock__br_retired_free(ksock_bridge_t *b); /* bridge destroy */
/* fanout.c: free every topic (bridge destroy). */
void ksock__br_topics_free(ksock_bridge_t *b);

/* metrics.c: the reason label of a refused handshake (an index below BR_AUTH_REASONS). */
size_t ksock__br_auth_reason(int rc, const char *errstr);

/* lookup.c */
int ksock__br_lookup_start(ksock_bridge_t *b, topic_t *t, sub_t *s, const char *name, int64_t ts);
void ksock__br_lookups_free(ksock_bridge_t *b); /* joins the threads */

/* limits.c: set up and free the per-principal table (0 or KSOCK_E_NOMEM). */
int ksock__br_limits_init(ksock_bridge_t *b);
void ksock__br_limits_free(ksock_bridge_t *b);
/* limits.c: transport thread: count the connection for its principal, or KSOCK_E_LIMIT. */
int ksock__br_limits_admit(ksock_bridge_t *b, conn_t *c, char *errstr, size_t errstr_size);
/* limits.c: the connection is freed: uncount it, close its timers. */
void ksock__br_limits_conn_free(conn_t *c);
/* limits.c: take a publish token; false when the publish was refused (and answered). */
bool ksock__br_rate_take(ksock_bridge_t *b, conn_t *c, const ksock_envelope_t *env);

/* token.c: arm the expiry timer of the connection's principal (on open, after a refresh). */
void ksock__br_token_arm(ksock_bridge_t *b, conn_t *c);
/* token.c: a `token` op: a new token for the connection. */
void ksock__br_do_token(ksock_bridge_t *b, conn_t *c, const ksock_envelope_t *env);

/* publish.c: a decoded publish from `c`. */
void ksock__br_do_publish(ksock_bridge_t *b, conn_t *c, const ksock_envelope_t *env);
/* publish.c: the drain's timer, and its check after anything that may end it. */
void ksock__br_drain_timer_cb(ksock_timer_t *t, void *data);
void ksock__br_drain_check(ksock_bridge_t *b);

#endif
