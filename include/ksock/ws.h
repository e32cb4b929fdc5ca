/*
 * The WebSocket client API: spec I (WebSocketManager), spec III
 * (ConnectionResilienceManager) and the WebSocket half of spec V
 * (configureWebSocketSecurity).
 *
 *   ksock_ws_manager_t *mgr;
 *   ksock_ws_manager_new(rt, NULL, &mgr, err, sizeof err);        // new WebSocketManager()
 *   ksock_reconnect_opts_t ro;
 *   ksock_reconnect_opts_init(&ro);
 *   ro.max_retries = 5;
 *   ksock_ws_configure_reconnection(mgr, &ro);                    // configureReconnection()
 *   ksock_ws_t *ws;
 *   ksock_ws_connect(mgr, "wss://example.com/ws", NULL, &ws, err, sizeof err);
 *                                                                 // createConnection()
 *   ksock_ws_on_message(ws, on_message);                          // onMessage()
 *   ksock_ws_send(ws, greeting, NULL);                            // sendMessage()
 *   ...
 *   ksock_ws_close(ws, 1000, "bye");                              // closeConnection()
 *
 * A manager loads the `ws` transport plugin through the plugin loader and
 * runs its connections; messages go through the serialization API
 * (serde.h): each connection has a serializer plugin, named by its
 * options, that also picks the subprotocol `ksock.v1.<name>`.
 *
 * Threads: every function here is called on the runtime's loop thread and
 * every callback runs there. No callback fires from inside the call that
 * registered it or that caused it (libuv rule), and a call that fails
 * fires no callback.
 *
 * Reconnection: when a connection is lost and reconnection is enabled, the
 * connection's reconnection policy (a reconnect plugin: "backoff" or
 * "none") says how long to wait; on_reconnecting(attempt, delay) fires
 * when an attempt is scheduled, on_reconnected when one succeeds. on_close
 * fires once, when the connection is over for good: closed by
 * ksock_ws_close(), lost with reconnection disabled, or given up on (the
 * reason then says why: "max_retries (5) reached", "close code 4401 is
 * final: ..."). Close codes 1008, 4401 and 4403 and refused credentials
 * (HTTP 401/403) are never retried.
 *
 * Envelopes and subscriptions (ABI 1.2): against ksockd, ksock_ws_on_envelope()
 * gets every message decoded as a protocol envelope, ksock_ws_send_envelope()
 * sends one, and ksock_ws_subscribe() makes a subscription that the library
 * resumes by itself after a reconnection, from the next offset of every
 * partition (ksock_ws_position()), so no record is missed or repeated
 * (docs/websocket.md, "Envelopes and subscriptions").
 */
#ifndef KSOCK_WS_H
#define KSOCK_WS_H

#include <ksock/auth.h>
#include <ksock/serde.h>
#include <ksock/transport.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ksock_ws_manager_s ksock_ws_manager_t;
typedef struct ksock_ws_s ksock_ws_t; /* a client connection (spec WebSocketConnection) */

/* ---- Reconnection options (spec III ReconnectionOptions) --------------- */

typedef struct ksock_reconnect_opts_s {
    size_t size;              /* sizeof(ksock_reconnect_opts_t) */
    bool enabled;             /* default true */
    const char *policy;       /* reconnect plugin: "backoff" (default) or "none" */
    int64_t max_retries;      /* attempts after a loss; -1 unlimited (default 10) */
    uint64_t retry_delay_ms;  /* first (or fixed) delay, default 1000 */
    bool exponential_backoff; /* default true */
    uint64_t max_delay_ms;    /* default 30000 */
    bool jitter;              /* full jitter, default true */
    uint64_t stable_after_ms; /* up this long resets the attempt count, default 10000 */
    /*
     * Messages sent while disconnected are kept (in order, sent once on
     * reconnect) up to this many messages / bytes; 0 messages (the
     * default): not kept, ksock_ws_send() answers KSOCK_E_CLOSED.
     */
    size_t queue_max_messages;
    size_t queue_max_bytes; /* 0: 1 MiB when queue_max_messages > 0 */
    /* For a third-party policy plugin: its options as a JSON object (the fields above are then
     * unused). */
    const char *policy_options_json;
} ksock_reconnect_opts_t;

/* Fill with the defaults above. */
KSOCK_EXTERN void ksock_reconnect_opts_init(ksock_reconnect_opts_t *o);

/* ---- Security (spec V configureWebSocketSecurity) ---------------------- */

typedef struct ksock_ws_security_opts_s {
    size_t size;         /* sizeof(ksock_ws_security_opts_t) */
    const char *ca_file; /* PEM CA bundle for wss://; NULL: the system store */
    bool insecure;       /* skip certificate verification (tests only) */
    const char *token;   /* sent as "Authorization: Bearer <token>"; NULL: none */
    /* A client certificate for servers that ask for one (read when `size` covers them). */
    const char *cert_file; /* PEM certificate (chain), NULL: none */
    const char *key_file;  /* its unencrypted PEM private key */
} ksock_ws_security_opts_t;

/* ---- Connection options (spec ConnectionOptions) ----------------------- */

typedef struct ksock_ws_opts_s {
    size_t size;                   /* sizeof(ksock_ws_opts_t) */
    const ksock_kvpair_t *headers; /* extra request headers */
    size_t nheaders;
    const ksock_kvpair_t *query; /* query parameters, percent-encoded and appended to the URL */
    size_t nquery;
    const char *serializer;                  /* serializer plugin, default "json" */
    const char *subprotocol;                 /* NULL: "ksock.v1.<serializer>"; "": offer none */
    const char *ca_file;                     /* NULL: the manager's security options */
    bool insecure;                           /* or the manager's */
    const char *token;                       /* NULL: the manager's */
    const ksock_reconnect_opts_t *reconnect; /* NULL: the manager's global options */
    uint64_t max_message_size;               /* 0: the transport's max_message_size */
    const char *cert_file; /* client certificate; NULL (with key_file NULL): the manager's */
    const char *key_file;
} ksock_ws_opts_t;

KSOCK_EXTERN void ksock_ws_opts_init(ksock_ws_opts_t *o);

/* ---- Manager ------------------------------------------------------------- */

/*
 * Create a manager: loads the `ws` transport with `transport_options_json`
 * (a JSON object of transport_ws options, e.g. "{\"connect_timeout\":
 * \"5s\"}", or NULL for the defaults; a "transport" key names another
 * transport plugin, whose options the rest then are). *out is owned by the caller:
 * release with ksock_ws_manager_destroy(). Errors: KSOCK_E_NOENT (plugin not
 * found), KSOCK_E_CONFIG (bad options), KSOCK_E_PLUGIN/ABI, with errstr;
 * KSOCK_E_NOMEM.
 */
KSOCK_EXTERN int ksock_ws_manager_new(ksock_runtime_t *rt, const char *transport_options_json,
                                      ksock_ws_manager_t **out, char *errstr, size_t errstr_size);

/*
 * Stop every connection and free the manager and all its connections at
 * once; no callback fires afterwards (not even on_close). Call before
 * ksock_runtime_destroy(). NULL is a no-op.
 */
KSOCK_EXTERN void ksock_ws_manager_destroy(ksock_ws_manager_t *mgr);
/* The 1.0 name of ksock_ws_manager_destroy() (CONTRIBUTING.md: _destroy ends an object with
 * activity). */
KSOCK_EXTERN void ksock_ws_manager_free(ksock_ws_manager_t *mgr);

/*
 * Global reconnection options for connections made afterwards (spec III
 * configureReconnection). Copied. Errors: KSOCK_E_INVAL, KSOCK_E_NOMEM (the
 * previous options stay in force).
 */
KSOCK_EXTERN int ksock_ws_configure_reconnection(ksock_ws_manager_t *mgr,
                                                 const ksock_reconnect_opts_t *opts);

/*
 * Global security options for connections made afterwards (spec V). Copied.
 * Errors: KSOCK_E_INVAL, KSOCK_E_NOMEM (the previous options stay in force).
 */
KSOCK_EXTERN int ksock_ws_configure_security(ksock_ws_manager_t *mgr,
                                             const ksock_ws_security_opts_t *opts);

/* ---- Connections (spec I) ----------------------------------------------- */

/*
 * Open a connection to `url` (ws:// or wss://). `opts` (may be NULL) is
 * borrowed for the call. On success *out is a handle that stays valid
 * until its on_close callback has returned (then the library frees it).
 * Messages sent before the connection opens are queued by the transport.
 * Errors (no callback fires): KSOCK_E_INVAL (bad URL, a certificate
 * without its key), KSOCK_E_NOENT (serializer or policy plugin not found),
 * KSOCK_E_CONFIG, KSOCK_E_TLS (the client certificate or key does not
 * load, they do not match, or the certificate is expired: errstr says which),
 * KSOCK_E_NOMEM.
 */
KSOCK_EXTERN int ksock_ws_connect(ksock_ws_manager_t *mgr, const char *url,
                                  const ksock_ws_opts_t *opts, ksock_ws_t **out, char *errstr,
                                  size_t errstr_size);

/*
 * Send a value (spec sendMessage), serialized by `custom` or, when NULL,
 * by the connection's serializer. `msg` is borrowed for the call.
 * Errors: KSOCK_E_QUEUE_FULL (the send queue, or the disconnected queue,
 * is at its bound: on_writable follows when the send queue drains),
 * KSOCK_E_CLOSED (not connected and not queueing), KSOCK_E_STATE (closing),
 * or the serializer's code (KSOCK_E_ENCODE...).
 */
KSOCK_EXTERN int ksock_ws_send(ksock_ws_t *ws, const ksock_value_t *msg,
                               const ksock_serde_strategy_t *custom);

/* Send raw bytes as one text or binary message (no serializer). Errors as ksock_ws_send(). */
KSOCK_EXTERN int ksock_ws_send_frame(ksock_ws_t *ws, ksock_frame_type_t type, const void *data,
                                     size_t len);

/*
 * Close (spec closeConnection): code 1000 or 3000-4999 (0 means 1000),
 * reason may be NULL (at most 123 bytes are sent). Stops reconnecting.
 * on_close follows. Errors: KSOCK_E_INVAL (code), KSOCK_E_STATE (already closing),
 * KSOCK_E_NOMEM (nothing changed: the connection goes on).
 */
KSOCK_EXTERN int ksock_ws_close(ksock_ws_t *ws, int code, const char *reason);

/* ---- Events ----------------------------------------------------------- */

typedef void (*ksock_ws_open_cb)(ksock_ws_t *ws);
/* A message, deserialized. `msg` borrowed for the call (ksock_value_ref to keep it). */
typedef void (*ksock_ws_message_cb)(ksock_ws_t *ws, const ksock_value_t *msg);
/* A message as received (fragments joined). `data` borrowed for the call. */
typedef void (*ksock_ws_frame_cb)(ksock_ws_t *ws, ksock_frame_type_t type, const void *data,
                                  size_t len);
/* Over for good. `code` 1006 and `reason` NULL when no close frame came; `err` KSOCK_E_* or 0. */
typedef void (*ksock_ws_close_cb)(ksock_ws_t *ws, int code, const char *reason, int err);
/* Attempt `attempt` (1, 2, ...) is scheduled in `delay_ms`. */
typedef void (*ksock_ws_reconnecting_cb)(ksock_ws_t *ws, uint32_t attempt, uint64_t delay_ms);
typedef void (*ksock_ws_reconnected_cb)(ksock_ws_t *ws);
/* The send queue drained after KSOCK_E_QUEUE_FULL. */
typedef void (*ksock_ws_writable_cb)(ksock_ws_t *ws);

/* Register a listener (one per event; NULL removes it). */
KSOCK_EXTERN void ksock_ws_on_open(ksock_ws_t *ws, ksock_ws_open_cb cb); /* every open */
KSOCK_EXTERN void ksock_ws_on_message(ksock_ws_t *ws, ksock_ws_message_cb cb);
KSOCK_EXTERN void ksock_ws_on_frame(ksock_ws_t *ws, ksock_ws_frame_cb cb);
KSOCK_EXTERN void ksock_ws_on_close(ksock_ws_t *ws, ksock_ws_close_cb cb);
KSOCK_EXTERN void ksock_ws_on_reconnecting(ksock_ws_t *ws, ksock_ws_reconnecting_cb cb);
KSOCK_EXTERN void ksock_ws_on_reconnected(ksock_ws_t *ws, ksock_ws_reconnected_cb cb);
KSOCK_EXTERN void ksock_ws_on_writable(ksock_ws_t *ws, ksock_ws_writable_cb cb);

/* ---- Envelopes and subscriptions (docs/protocol.md; ABI 1.2) -------------- */

/*
 * Every message the server sends, decoded by the connection's serializer
 * plugin (decode_envelope), after the subscriptions below have seen it.
 * `env` and everything it points to are borrowed for the call. Records
 * the library holds back (see ksock_ws_subscribe) never reach it;
 * on_frame and on_message still see every message as it came.
 */
typedef void (*ksock_ws_envelope_cb)(ksock_ws_t *ws, const ksock_envelope_t *env);
KSOCK_EXTERN void ksock_ws_on_envelope(ksock_ws_t *ws, ksock_ws_envelope_cb cb);

/*
 * Send one protocol envelope (a publish, a ping...), encoded by the
 * connection's serializer plugin. `env` is borrowed for the call. A
 * subscribe sent this way is the caller's own: the library neither
 * resumes it nor holds its records back (use ksock_ws_subscribe).
 * Errors: KSOCK_E_ENCODE (env breaks a rule of docs/protocol.md section 2;
 * errstr says which), KSOCK_E_INVAL (the connection's serializer is not a
 * plugin), and those of ksock_ws_send().
 */
KSOCK_EXTERN int ksock_ws_send_envelope(ksock_ws_t *ws, const ksock_envelope_t *env, char *errstr,
                                        size_t errstr_size);

/* Where a subscription starts (protocol `start`, `offsets`, `start_timestamp`). */
typedef struct ksock_ws_subscribe_opts_s {
    size_t size;                             /* sizeof(ksock_ws_subscribe_opts_t) */
    ksock_start_t start;                     /* default KSOCK_START_LATEST */
    const ksock_partition_offset_t *offsets; /* with KSOCK_START_OFFSETS: next offset to read */
    size_t noffsets;
    int64_t start_timestamp; /* with KSOCK_START_TIMESTAMP: ms since the epoch */
    /* The subscribe's `id`, echoed in its `subscribed` or `error`, and used again when
     * the library resumes it. NULL: the library makes one ("ksock.sub.N"). */
    const char *id;
} ksock_ws_subscribe_opts_t;

KSOCK_EXTERN void ksock_ws_subscribe_opts_init(ksock_ws_subscribe_opts_t *o);

/*
 * Subscribe to `topic` (docs/protocol.md, Subscriptions); `opts` may be
 * NULL (start latest) and is borrowed for the call. Records, the
 * `subscribed` answer and any `error` arrive through on_envelope.
 *
 * The library keeps, per subscription, the next offset of every
 * partition: the `subscribed` offsets, offset + 1 of each record
 * (updated before on_envelope sees the record), and the partitions a
 * `subscribed` without id adds. When the connection comes back after a
 * loss (reconnection on), it subscribes again by itself with start
 * "offsets" listing every partition it knows, so the application gets
 * every record once, with no gap: records of the topic that arrive
 * between a subscribe (the caller's or the library's) and its
 * `subscribed` are dropped (they belong to an earlier subscription).
 * Called while disconnected, the subscribe goes out when the connection
 * opens. Subscribing again to a topic replaces the subscription (a seek).
 * An `error` answering the subscribe ends it; when it answers a resume
 * with a retriable code (KSOCK_E_KAFKA...), the library tries again after
 * a second. Records of an `error` -32 (KSOCK_E_SKIPPED) are not fetched
 * again unless the connection is lost before the partition's next record.
 *
 * Errors (nothing changes): KSOCK_E_INVAL (empty topic, bad opts: errstr
 * says why), KSOCK_E_STATE (closing), KSOCK_E_NOMEM, and those of
 * ksock_ws_send_envelope() when the subscribe cannot be sent now.
 */
KSOCK_EXTERN int ksock_ws_subscribe(ksock_ws_t *ws, const char *topic,
                                    const ksock_ws_subscribe_opts_t *opts, char *errstr,
                                    size_t errstr_size);

/*
 * End the subscription to `topic`: an `unsubscribe` is sent when the
 * server has the subscription, and no record of the topic reaches
 * on_envelope afterwards (its `unsubscribed` does). Errors:
 * KSOCK_E_NOENT (no such subscription), KSOCK_E_NOMEM and those of
 * ksock_ws_send_envelope() (the subscription goes on).
 */
KSOCK_EXTERN int ksock_ws_unsubscribe(ksock_ws_t *ws, const char *topic);

/*
 * The subscription's next offset per partition, in partition order:
 * copies up to `cap` entries into `out` (caller-owned; may be NULL when
 * cap is 0) and stores the number known in *n (which may exceed cap).
 * Empty until the first `subscribed`. Errors: KSOCK_E_NOENT (no
 * subscription to `topic`).
 */
KSOCK_EXTERN int ksock_ws_position(const ksock_ws_t *ws, const char *topic,
                                   ksock_partition_offset_t *out, size_t cap, size_t *n);

/* ---- Token refresh (docs/websocket.md; ABI 1.2) --------------------------- */

/*
 * Asked for a new token for `ws` (loop thread): return it malloc'ed (the
 * library frees it), or NULL when there is none now (asked again in a
 * second, until the current token expires). Called synchronously: a
 * callback that must fetch over the network should keep a token it
 * fetched ahead of time.
 */
typedef char *(*ksock_ws_token_cb)(ksock_ws_t *ws, void *data);
/*
 * Keep the connection's token fresh: when 80% of the time the current
 * bearer token had left has passed, but at least 30 s before it expires
 * (halfway when it had under a minute left) (its `exp` claim, read but not
 * verified; then the expiry the server's answer gives), `cb` is asked for
 * a new one, which is sent in a `token` envelope (docs/protocol.md,
 * Tokens) and used by later reconnections. The server closes a connection
 * whose token expired with 4401, which is final (see above): refreshing is
 * how a long-lived connection avoids it. Answers to these envelopes do not
 * reach on_envelope; a refusal is reported through the runtime's error
 * reporting. A token without a readable `exp` is never refreshed. NULL
 * stops refreshing. Errors: KSOCK_E_INVAL (the connection's serializer is
 * not a plugin: no envelopes), KSOCK_E_NOMEM.
 */
KSOCK_EXTERN int ksock_ws_on_token_refresh(ksock_ws_t *ws, ksock_ws_token_cb cb, void *data);

/* ---- Resilience per connection (spec III) ------------------------------- */

/*
 * Enable reconnection with `opts` (copied), or with the manager's global
 * options when NULL (spec enableReconnection; setReconnectionStrategy of
 * spec I is the same call with options). Errors: KSOCK_E_NOENT/CONFIG
 * (policy plugin), KSOCK_E_STATE (connection over).
 */
KSOCK_EXTERN int ksock_ws_enable_reconnection(ksock_ws_t *ws, const ksock_reconnect_opts_t *opts);
KSOCK_EXTERN int ksock_ws_set_reconnection_strategy(ksock_ws_t *ws,
                                                    const ksock_reconnect_opts_t *opts);
/* Disable reconnection (spec disableReconnection): a loss is then final. */
KSOCK_EXTERN void ksock_ws_disable_reconnection(ksock_ws_t *ws);

/* ---- Accessors ------------------------------------------------------------ */

typedef enum {
    KSOCK_WS_CONNECTING = 0, /* first attempt in flight */
    KSOCK_WS_OPEN,
    KSOCK_WS_WAITING,      /* lost; waiting to reconnect */
    KSOCK_WS_RECONNECTING, /* a reconnection attempt in flight */
    KSOCK_WS_CLOSING
} ksock_ws_state_t;

KSOCK_EXTERN ksock_ws_state_t ksock_ws_state(const ksock_ws_t *ws);
KSOCK_EXTERN const char *ksock_ws_state_name(ksock_ws_state_t s);
/* The subprotocol the server accepted (NULL if none or not open). Borrowed. */
KSOCK_EXTERN const char *ksock_ws_subprotocol(const ksock_ws_t *ws);
/* Reconnection attempts since the last stable connection. */
KSOCK_EXTERN uint32_t ksock_ws_attempt(const ksock_ws_t *ws);
KSOCK_EXTERN ksock_runtime_t *ksock_ws_runtime(const ksock_ws_t *ws);
KSOCK_EXTERN void ksock_ws_set_data(ksock_ws_t *ws, void *data);
KSOCK_EXTERN void *ksock_ws_get_data(const ksock_ws_t *ws);

#ifdef __cplusplus
}
#endif
#endif
