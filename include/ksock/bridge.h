/*
 * The bridge: WebSocket clients on a transport, Kafka behind a producer
 * (docs/bridge.md): `publish`, `ping`, and (with a Kafka configuration
 * for its readers, ABI 1.2) `subscribe` and `unsubscribe` with fan-out.
 *
 * The bridge owns none of the objects it is given: the caller creates the
 * transport instance, the authenticator instance (optional) and the
 * producer, and destroys them in this order after ksock_bridge_stop():
 * producer (its last delivery callbacks still reach the bridge), then the
 * bridge, then the transport and authenticator instances.
 *
 * Threads: every function here runs on the loop thread. The transport's
 * on_handshake, which runs on its I/O thread, only calls the
 * authenticator (thread-safe by contract) and allocates.
 */
#ifndef KSOCK_BRIDGE_H
#define KSOCK_BRIDGE_H

#include <ksock/auth.h>
#include <ksock/kafka.h>
#include <ksock/plugin.h>
#include <ksock/transport.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ksock_bridge_s ksock_bridge_t;

#define KSOCK_BRIDGE_DEFAULT_MAX_INFLIGHT 1000

/*
 * A subscriber whose send queue is at its bound (the transport's
 * send_queue_max_frames / send_queue_max_bytes): closed with 1013 (the
 * default), or the records that do not fit are dropped for it and it is
 * told where the gap starts (an `error` KSOCK_E_SKIPPED, docs/protocol.md).
 */
typedef enum { KSOCK_BRIDGE_SLOW_CLOSE = 0, KSOCK_BRIDGE_SLOW_DROP = 1 } ksock_bridge_slow_policy_t;

/* Options. Zero-initialise, set `size`; zero fields take the defaults. */
typedef struct ksock_bridge_opts_s {
    size_t size; /* sizeof(ksock_bridge_opts_t) */
    /*
     * Publishes per connection sent to Kafka and not yet answered. At the
     * bound the bridge stops reading the connection (the transport's
     * pause_read) until acks bring it to 3/4 of the bound; with a transport
     * built for ABI 1.0 (no pause_read) one more is answered
     * KSOCK_E_QUEUE_FULL instead. Default KSOCK_BRIDGE_DEFAULT_MAX_INFLIGHT.
     */
    uint32_t max_inflight;
    /*
     * No authenticator: accept every connection as the principal
     * "anonymous" allowed to publish and subscribe on every topic
     * (ksockd's "auth": {"plugin": "none"}). When false and `auth` is
     * NULL, ksock_bridge_new() refuses (KSOCK_E_INVAL).
     */
    bool anonymous;
    /* ---- ABI 1.2: read when `size` covers them. ---- */
    /*
     * The Kafka configuration of the bridge's readers (bootstrap.servers,
     * security), copied. NULL: the bridge cannot read, and answers
     * `subscribe` with KSOCK_E_UNSUPPORTED. Producer-only properties in it
     * are ignored by the readers.
     */
    const ksock_kafka_conf_t *kafka;
    /* What to do with a subscriber whose send queue is full (docs/bridge.md, Slow clients). */
    ksock_bridge_slow_policy_t slow_policy;
    /* Limits (docs/bridge.md, Limits), ABI 1.2 too: read when `size` covers them; 0: none. */
    uint32_t max_connections_per_principal; /* one more is refused at the handshake (HTTP 429) */
    uint32_t publish_rate;  /* publishes per second per connection: over it reading pauses */
    uint32_t publish_burst; /* the token bucket's size; 0: publish_rate */
} ksock_bridge_opts_t;

/*
 * Make a bridge. `transport` must be a transport plugin instance, `auth` an
 * authenticator instance or NULL (then opts->anonymous must be true),
 * `producer` a producer on `rt`; all borrowed until ksock_bridge_destroy().
 * `opts` is copied and may be NULL only together with a non-NULL `auth`.
 * *out is owned by the caller. Errors: KSOCK_E_INVAL, KSOCK_E_NOMEM.
 */
KSOCK_EXTERN int ksock_bridge_new(ksock_runtime_t *rt, ksock_plugin_instance_t *transport,
                                  ksock_plugin_instance_t *auth, ksock_kafka_producer_t *producer,
                                  const ksock_bridge_opts_t *opts, ksock_bridge_t **out,
                                  char *errstr, size_t errstr_size);

/* Start the transport's listeners with the bridge's events. 0 or the transport's error. */
KSOCK_EXTERN int ksock_bridge_start(ksock_bridge_t *b, char *errstr, size_t errstr_size);

/*
 * Stop the transport: every connection is closed with 1001. Does not run
 * the loop, so the close events may come later or never (the transport
 * frees them); ksock_bridge_destroy() forgets the connections either way.
 * Deliveries that arrive later are dropped (counted in `dropped`).
 * Idempotent.
 */
KSOCK_EXTERN void ksock_bridge_stop(ksock_bridge_t *b);

typedef void (*ksock_bridge_drain_cb)(ksock_bridge_t *b, int status, void *data);

/*
 * Start shutting down without closing anything: from now on every
 * publish is answered KSOCK_E_SHUTDOWN (with its id and topic) and not
 * produced; publishes already sent to Kafka are answered as their
 * delivery reports arrive, on their open connections. `cb` fires on the
 * loop, never from inside this call, once none is pending (status 0) or
 * after `timeout_ms` (KSOCK_BRIDGE_DRAIN_CONFIGURED: the configured
 * drain_timeout) (status KSOCK_E_TIMEDOUT: the rest are answered
 * KSOCK_E_KAFKA, outcome unknown, and counted in `drain_unknown`). Then
 * call ksock_bridge_stop(). KSOCK_E_STATE if already draining or stopped.
 */
KSOCK_EXTERN int ksock_bridge_drain(ksock_bridge_t *b, uint64_t timeout_ms,
                                    ksock_bridge_drain_cb cb, void *data);

/* Counters, for logs and tests. */
typedef struct ksock_bridge_stats_s {
    size_t size;             /* set to sizeof(ksock_bridge_stats_t) before the call (ABI 1.1) */
    uint64_t connections;    /* opened since start */
    uint64_t refused;        /* handshakes refused */
    uint64_t published;      /* records acknowledged by Kafka */
    uint64_t publish_errors; /* publishes answered with an error */
    uint64_t dropped;        /* deliveries for connections already closed */
    uint64_t send_full;    /* replies that found the send queue full and waited (reading paused) */
    uint64_t inflight_max; /* most publishes in flight seen on one connection */
    uint64_t paused;       /* times a connection's reading was paused */
    uint64_t shutdown_refused; /* publishes answered KSOCK_E_SHUTDOWN while draining */
    uint64_t drain_unknown;    /* pending at the drain timeout: answered KSOCK_E_KAFKA */
    /* ABI 1.2: subscriptions and fan-out. */
    uint64_t subscriptions;    /* subscriptions active right now */
    uint64_t subscribed;       /* subscribe requests answered `subscribed` since start */
    uint64_t subscribe_errors; /* subscribe requests answered with an error */
    uint64_t records;          /* records read from Kafka by the bridge's readers */
    uint64_t deliveries;       /* record frames queued to subscribers */
    uint64_t encodes;          /* record frames encoded (at most one per record and serializer) */
    uint64_t slow_closed;      /* subscribers closed at their send-queue bound */
    uint64_t slow_dropped;     /* record frames dropped for subscribers at their bound */
    uint64_t readers;          /* Kafka readers running right now (shared and catch-up) */
    /* ABI 1.2: limits and token lifetime (docs/bridge.md, Limits). */
    uint64_t limit_principal;     /* handshakes refused (HTTP 429): max_connections_per_principal */
    uint64_t limit_subscriptions; /* subscribes refused -22: max_subscriptions */
    uint64_t limit_rate_paused;   /* times a connection's reading paused at its publish_rate */
    uint64_t limit_rate_refused;  /* publishes refused -22 over the rate (transport w/o pause) */
    uint64_t limit_too_big;       /* connections closed 1009: a message over max_message_size */
    uint64_t token_expired;       /* connections closed 4401 when their token expired */
    uint64_t token_refreshed;     /* `token` ops accepted */
    uint64_t token_refused;       /* `token` ops refused (-15; the old token stays) */
    uint64_t token_revoked;       /* subscriptions ended -16 because a new token lacks the right */
    uint64_t limit_connections; /* upgrades the transport refused 503 (websocket.max_connections) */
    /* Later minors append here; the library fills only what out->size covers. */
} ksock_bridge_stats_t;

/*
 * The counters so far, into the fields `out->size` covers (a size of 0 or
 * smaller than the first counter fills nothing). A program built against
 * ABI 1.0, whose struct had no size and six counters, is bound to a
 * version of this function (symbol version KSOCK_1.0) that fills those six.
 */
KSOCK_EXTERN void ksock_bridge_stats(const ksock_bridge_t *b, ksock_bridge_stats_t *out);

/*
 * Append the bridge's metrics to `out` in the Prometheus text exposition
 * format 0.0.4 (# HELP and # TYPE lines, one family each; the names and
 * labels are in docs/operations.md, Admin endpoint). The counters are read
 * as they are; nothing is reset. The caller owns `out` (ksock_buf_free()).
 * 0, KSOCK_E_INVAL (NULL argument) or KSOCK_E_NOMEM (what was appended
 * stays). Loop thread. ABI 1.2.
 */
KSOCK_EXTERN int ksock_bridge_metrics(const ksock_bridge_t *b, ksock_buf_t *out);

/* ---- A bridge from a configuration (ABI 1.1) -------------------------------- */

/* ksock_bridge_drain()'s timeout: the configured drain_timeout (5 s by default). */
#define KSOCK_BRIDGE_DRAIN_CONFIGURED UINT64_MAX

/*
 * The options of the "bridge" section (max_inflight, drain_timeout), for
 * ksockd --config-reference. Static; never freed.
 */
KSOCK_EXTERN const ksock_option_t *ksock_bridge_config_schema(void);

/*
 * The bridge that `cfg` describes (docs/bridge.md, Configuration): the
 * transport from "websocket", the authenticator from "auth" (required;
 * {"plugin": "none"} only on loopback listeners unless it says
 * "allow_anonymous_on_network"), the serializers of "serializers" (or every
 * serializer plugin that loads), the bounds of "bridge", and `producer`.
 * The bridge owns the instances it creates and frees them in
 * ksock_bridge_destroy() (which then may run before the transport is gone: it
 * destroys it). 0 with *out NULL when `cfg` has no "websocket" section.
 * Errors (KSOCK_E_CONFIG and the plugins' codes) come with
 * "FILE:LINE:COL: section: reason" in errstr. `cfg` must outlive the bridge.
 */
KSOCK_EXTERN int ksock_bridge_new_from_config(ksock_runtime_t *rt, const ksock_config_t *cfg,
                                              ksock_kafka_producer_t *producer,
                                              ksock_bridge_t **out, char *errstr,
                                              size_t errstr_size);

/* The same checks without creating anything or running plugin code (--check-config). */
KSOCK_EXTERN int ksock_bridge_check_config(ksock_runtime_t *rt, const ksock_config_t *cfg,
                                           char *errstr, size_t errstr_size);

/*
 * Apply `cfg` to a running bridge made by ksock_bridge_new_from_config()
 * without closing a connection (docs/bridge.md, Reload): the authenticator
 * of "auth" (new handshakes use it; open connections keep their
 * principal, a `token` refresh uses the new one), the serializers of
 * "serializers" (new connections see the new set; open ones keep the
 * instance they negotiated until they close), and the limits of "bridge"
 * (every connection, from its next event). `cfg` first passes the checks
 * of ksock_bridge_check_config(); on any error nothing changes and errstr
 * says why (KSOCK_E_CONFIG, the plugins' codes). A serializer that was not
 * served at start cannot be added (its subprotocol is not in the
 * listeners' list): KSOCK_E_CONFIG. Listeners added or removed in
 * "websocket" are applied first through the transport's set_listeners
 * (ABI 1.3; all or nothing: a bind that fails fails the reload); other
 * changes to "websocket" (transport options) and "kafka" are logged as
 * needing a restart and are not applied. KSOCK_E_STATE for a bridge not made from a configuration
 * or stopping. `cfg` must outlive the bridge. Loop thread. ABI 1.2.
 */
KSOCK_EXTERN int ksock_bridge_reload(ksock_bridge_t *b, const ksock_config_t *cfg, char *errstr,
                                     size_t errstr_size);

/*
 * Free the bridge (stops it first). A delivery that arrives afterwards
 * (the producer destroyed later) frees only its own memory. Destroy the
 * transport instance next, before the loop runs again: close events it
 * still holds name the bridge, and a transport destroyed delivers none.
 * NULL is a no-op.
 */
KSOCK_EXTERN void ksock_bridge_destroy(ksock_bridge_t *b);
/* The 1.0 name of ksock_bridge_destroy() (CONTRIBUTING.md: _destroy ends an object with activity).
 */
KSOCK_EXTERN void ksock_bridge_free(ksock_bridge_t *b);

#ifdef __cplusplus
}
#endif
#endif
