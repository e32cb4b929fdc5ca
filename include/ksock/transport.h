/*
 * Transport interface: listen and connect, send, close; events open,
 * message, writable, close. The `ws` transport (plugins/transport_ws) runs
 * libwebsockets in its own thread; a transport on the core loop (an SSE
 * transport on libevent's HTTP server, say) implements the same vtable.
 * The core never sees a transport's own types.
 *
 * Threads: every vtable function is called on the loop thread. Every event
 * is delivered on the loop thread (a transport with its own thread posts
 * them with ksock_runtime_post()), except on_handshake, which is called
 * synchronously while the upgrade is pending and must be thread-safe.
 */
#ifndef KSOCK_TRANSPORT_H
#define KSOCK_TRANSPORT_H

#include <ksock/auth.h>
#include <ksock/plugin.h>
#include <ksock/serializer.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A connection, named by the transport instance that owns it. Never reused within an instance. */
typedef uint64_t ksock_conn_id_t;

/*
 * A frame ready to send, shared by reference count across connections
 * (fan-out builds one frame per serializer). Immutable once built. The
 * count is atomic: any thread may ref/unref.
 */
typedef struct ksock_frame_s ksock_frame_t;

/* Copy `len` bytes into a new frame with one reference. NULL on ENOMEM. */
KSOCK_EXTERN ksock_frame_t *ksock_frame_new(ksock_frame_type_t type, const void *data, size_t len);
/* Take over a malloc'ed buffer (freed with free() at the last unref). */
KSOCK_EXTERN ksock_frame_t *ksock_frame_adopt(ksock_frame_type_t type, void *data, size_t len);
KSOCK_EXTERN ksock_frame_t *ksock_frame_ref(ksock_frame_t *f);
KSOCK_EXTERN void ksock_frame_unref(ksock_frame_t *f);
KSOCK_EXTERN const void *ksock_frame_data(const ksock_frame_t *f, size_t *len);
KSOCK_EXTERN ksock_frame_type_t ksock_frame_type(const ksock_frame_t *f);

/* Callbacks from a transport to its host (the core). */
typedef struct ksock_transport_events_s {
    size_t size; /* sizeof(ksock_transport_events_t) */
    void *data;  /* passed back as `data` */
    /*
     * Server side: decide on an upgrade before it completes. Return 0 to
     * accept (and set *conn_data), KSOCK_E_AUTH to answer 401,
     * KSOCK_E_FORBIDDEN for 403, KSOCK_E_LIMIT for 429 (ABI 1.2: a limit
     * of the client's, such as connections per principal; a 1.1 transport
     * answers 400), anything else 400 with errstr as body.
     * Thread-safe; may run on the transport's thread.
     */
    int (*on_handshake)(void *data, ksock_conn_id_t id, const ksock_handshake_t *hs,
                        void **conn_data, char *errstr, size_t errstr_size);
    /* The connection is open (server: upgraded; client: connected). */
    void (*on_open)(void *data, ksock_conn_id_t id, void *conn_data, const char *subprotocol);
    /* One complete message (fragments joined). `payload` borrowed for the call. */
    void (*on_message)(void *data, ksock_conn_id_t id, void *conn_data, ksock_frame_type_t type,
                       const void *payload, size_t len);
    /* The send queue fell below its low-water mark after send() returned KSOCK_E_QUEUE_FULL. */
    void (*on_writable)(void *data, ksock_conn_id_t id, void *conn_data);
    /*
     * The connection is gone; the last event for `id`. `code`/`reason`
     * from the close frame (1006 and NULL when none came), `err` the
     * transport-level cause (KSOCK_E_CONNRESET, KSOCK_E_TIMEDOUT...) or 0.
     */
    void (*on_close)(void *data, ksock_conn_id_t id, void *conn_data, int code, const char *reason,
                     int err);
    /*
     * Appended with ABI 1.1 (read when `size` covers it). Server side: the
     * subprotocols the host serves, in order of preference, NULL-terminated,
     * borrowed until stop(); a transport whose own configuration names none
     * accepts exactly these (the bridge passes ksock.v1.<name> for every
     * serializer it loaded). NULL: the transport's own list.
     */
    const char *const *subprotocols;
    /*
     * Appended with ABI 1.2 (read when `size` covers it; may be NULL).
     * Server side: the transport refused an upgrade itself, before
     * on_handshake, answering HTTP `status` (503: at max_connections,
     * stopping or out of memory; 404, 403, 400, 426) for reason `why`
     * (borrowed for the call). For the host's counters; thread-safe like
     * on_handshake (may run on the transport's thread).
     */
    void (*on_refused)(void *data, unsigned status, const char *why);
} ksock_transport_events_t;

/* Client-side connection request. Borrowed for the call. */
typedef struct ksock_connect_opts_s {
    size_t size;                   /* sizeof(ksock_connect_opts_t) */
    const char *url;               /* ws:// or wss:// */
    const char *subprotocol;       /* e.g. "ksock.v1.json" */
    const ksock_kvpair_t *headers; /* extra request headers */
    size_t nheaders;
    const char *ca_file;         /* PEM CA bundle for wss://, NULL: system */
    bool insecure;               /* skip certificate verification (tests only) */
    uint64_t connect_timeout_ms; /* 0: transport default */
    uint64_t max_message_size;   /* 0: transport default */
    /* Appended later: a transport reads them only when `size` covers them (KSOCK_HAS_FIELD). */
    const char *cert_file; /* PEM client certificate for wss:// (with key_file), NULL: none */
    const char *key_file;  /* PEM private key (unencrypted) for cert_file */
} ksock_connect_opts_t;

typedef struct ksock_transport_vtable_s {
    KSOCK_VTABLE_HEAD;
    /* Start the listeners named in the instance options and report events to `ev` (copied). */
    int (*listen)(void *inst, const ksock_transport_events_t *ev, char *errstr, size_t errstr_size);
    /*
     * Open a client connection. *id is assigned before any event; on_open or
     * on_close follows (never from inside this call).
     */
    int (*connect)(void *inst, const ksock_connect_opts_t *opts, const ksock_transport_events_t *ev,
                   void *conn_data, ksock_conn_id_t *id, char *errstr, size_t errstr_size);
    /*
     * Queue a frame; takes a reference of its own. KSOCK_E_QUEUE_FULL when
     * the connection's send queue is at its bound (on_writable follows when
     * it drains), KSOCK_E_CLOSED for a connection that is gone.
     */
    int (*send)(void *inst, ksock_conn_id_t id, ksock_frame_t *frame);
    /* Start a close handshake with `code` and `reason` (may be NULL). */
    int (*close)(void *inst, ksock_conn_id_t id, int code, const char *reason);
    /*
     * Stop listening and close every connection. Never runs the host's
     * loop: the on_close events are posted, and a host that stops its loop
     * right after may never see them (the transport frees them itself).
     */
    void (*stop)(void *inst);

    /* ---- ABI 1.1: check `size` before calling (KSOCK_HAS_FIELD); may be NULL. ---- */

    /*
     * Stop (paused true) or resume delivering on_message for `id`. While
     * paused, messages already read are held in order and count against
     * the transport's inbound bound, so it soon stops reading the socket
     * and TCP pushes back on the peer; other events (on_writable,
     * on_close) still come. On resume the held messages are delivered from
     * the loop, in order, never from inside this call. Held messages of a
     * connection that closes are dropped. 0, or KSOCK_E_CLOSED for a
     * connection that is gone.
     */
    int (*pause_read)(void *inst, ksock_conn_id_t id, bool paused);

    /* ---- ABI 1.2: check `size` before calling (KSOCK_HAS_FIELD); may be NULL. ---- */

    /*
     * Queue one frame on each of `n` connections (fan-out: one record, one
     * frame per serializer, many subscribers), taking a reference per
     * connection it was queued on. The same as n send() calls, but one
     * lock and at most one wake-up of the transport's thread for the
     * whole list. `rc` (n entries, caller-owned) gets each connection's
     * outcome as send() would return it: 0, KSOCK_E_QUEUE_FULL (on_writable
     * follows when that connection drains), KSOCK_E_CLOSED, KSOCK_E_NOMEM.
     * Returns how many entries are not 0.
     */
    size_t (*send_many)(void *inst, ksock_frame_t *frame, const ksock_conn_id_t *ids, size_t n,
                        int *rc);

    /* ---- ABI 1.3: check `size` before calling (KSOCK_HAS_FIELD); may be NULL. ---- */

    /*
     * Replace the listeners of a listening instance (a reload):
     * `listeners` is the new value of the instance's "listeners" option,
     * in the form create() read it. An address and port listened on before
     * and still configured keeps its socket (no connection attempt is
     * refused meanwhile); one no longer configured stops accepting, its
     * socket closed, while the connections it accepted stay open until
     * they end; a new one is bound and starts accepting. All or nothing:
     * an invalid list (KSOCK_E_CONFIG) or a socket that cannot be bound
     * (KSOCK_E_IO) leaves the listeners as they were, with a message.
     * KSOCK_E_STATE when not listening.
     */
    int (*set_listeners)(void *inst, const ksock_cfg_t *listeners, char *errstr,
                         size_t errstr_size);
} ksock_transport_vtable_t;

#ifdef __cplusplus
}
#endif
#endif
