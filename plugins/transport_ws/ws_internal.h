/*
 * transport_ws internals shared between its files. Not installed.
 *
 * Files: ws.c (options, create/destroy, the vtable), ws_conn.c (connection
 * table, send queues, events to the loop, inbound flow control, reading),
 * ws_write.c (writing: batched and frame by frame), ws_server.c (the
 * server handshake), ws_client.c (client connections), ws_thread.c (the
 * service thread and the lws callback), ws_listen.c (listeners: addresses,
 * vhosts, Host and Origin), ws_tls.c (certificate checks). Functions one
 * file offers the others are named ws__*, like the ones ws_listen.c and
 * ws_tls.c already had.
 */
#ifndef KSOCK_TRANSPORT_WS_INTERNAL_H
#define KSOCK_TRANSPORT_WS_INTERNAL_H

#include <ksock/runtime.h>
#include <ksock/transport.h>

#include <libwebsockets.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/*
 * Check that the certificate chain and the key load, that the key belongs
 * to the leaf certificate and that no certificate is expired or not yet
 * valid; `ca_path` (may be NULL) must hold at least one certificate.
 * Returns 0 or KSOCK_E_TLS with a message naming the file and the reason.
 * `names` says what to call the three files in messages (NULL: the server
 * options tls_cert, tls_key, tls_ca).
 */
typedef struct {
    const char *cert, *key, *ca;
} ws_tls_names_t;

int ws__tls_check(const char *cert_path, const char *key_path, const char *ca_path,
                  const ws_tls_names_t *names, char *errstr, size_t errstr_size);

/* ---- ws_listen.c: listener addresses, Host and Origin ------------------ */

typedef struct {
    struct sockaddr_storage ss;
    socklen_t len;
} ws_addr_t;

/*
 * Resolve a listener address: an IPv4 or IPv6 literal, or a host name
 * (every IPv4 and IPv6 address it has, duplicates dropped). *out is
 * malloc'd, the caller frees it. KSOCK_E_RESOLVE with a message on failure.
 */
int ws__resolve(const char *address, ws_addr_t **out, size_t *n, char *errstr, size_t errstr_size);

void ws__addr_str(const struct sockaddr *sa, bool with_port, char *out, size_t n);
bool ws__addr_is_any(const struct sockaddr *sa);
int ws__addr_port(const struct sockaddr *sa);
bool ws__addr_eq(const struct sockaddr *a, const struct sockaddr *b); /* address only */

/* What a Host header (or the host of an Origin) may name, for one connection. */
typedef struct {
    const char *address;    /* the listener's configured address (a name, say) */
    const ws_addr_t *addrs; /* the listener's addresses */
    size_t naddrs;
    const struct sockaddr *local; /* the address the connection came in on, or NULL */
    const ksock_strlist_t *hosts; /* the "hosts" option */
} ws_hostset_t;

/* Host header: localhost, the listener's address or name, a "hosts" entry; any port. */
bool ws__host_allowed(const ws_hostset_t *set, const char *hostport);

/*
 * Origin: absent; or listed in `origins` (exact, or "*"); or, when
 * `origins` is empty, an http(s) origin whose host passes the Host rule
 * ("hosts": "*" does not count here).
 */
bool ws__origin_allowed(const ws_hostset_t *set, const ksock_strlist_t *origins,
                        const char *origin);

/* A client-supplied string made safe for a log line: printable ASCII, cut at n - 4. */
void ws__printable(const char *s, char *out, size_t n);

/* ---- The instance and its connections --------------------------------- */

/*
 * Threads. Debian's libwebsockets cannot join a libevent loop, so each
 * instance runs one libwebsockets context in a service thread of its own
 * (the "lws thread"). The vtable (send, close, connect...) is called on the
 * core's loop thread and never touches a libwebsockets object except
 * through lws_cancel_service(), the one call libwebsockets allows from
 * another thread:
 *
 *   loop thread                         lws thread
 *   send(), send_many(): frame into     LWS_CALLBACK_EVENT_WAIT_CANCELLED:
 *   conn->queue, conn onto the          clear wake_pending, take the
 *   pending list, ws__wake()       -->  pending list, write each queue at
 *                                       once (ws__conn_write_now) or ask
 *                                       for WRITEABLE (or start a connect)
 *                                       WRITEABLE: pop frames, write them
 *   drain_events(): on_open,       <--  events appended to inst->events,
 *   on_message, on_writable,            one ksock_runtime_post() per batch
 *   on_close, in order
 *
 * Wake-ups: ws__wake() calls lws_cancel_service() only when `wake_pending`
 * was clear. The lws thread clears it when it answers a wake-up, before it
 * reads the pending list or resume_req, so whatever was queued before a
 * skipped wake-up is seen by the answer to the earlier one: a send_many()
 * to thousands of connections, or a burst of send() calls, costs one
 * wake-up (one pipe write and one service pass), not one each.
 *
 * Writing. A server connection without permessage-deflate gets its frames
 * framed here: RFC 6455 headers (server frames are unmasked) and payloads
 * of as many queued frames as fit in WS_WRITE_BATCH (at least one) go to
 * lws as one LWS_WRITE_RAW write, which lws hands to the socket as it is:
 * one send(2) for many frames. lws buffers what the socket did not take
 * (lws_partial_buffered) and calls WRITEABLE again only once that is out,
 * and it sends its own pings, pongs and close frames from its POLLOUT
 * service ahead of WRITEABLE, or behind the buffered bytes: since each
 * raw write holds whole frames, a control frame never lands inside one of
 * ours. Client connections (whose frames lws masks), deflate ones and
 * WebSocket over HTTP/2 keep one lws_write() per frame (but an empty
 * message, see write_empty in ws_write.c).
 *
 * `lock` guards the connection table, every connection's queue and flags,
 * and the pending list; `evlock` guards the event list. A connection is
 * freed only on the loop thread, after its close event was delivered, and
 * that event is queued only by the lws thread once it has forgotten the
 * wsi, so neither thread can see a freed connection.
 *
 * Inbound bound: the bytes of messages read and not yet delivered (queued
 * for the loop, or held while the host paused the connection) are counted
 * per connection and per instance under `evlock`. The lws thread stops
 * reading a connection (lws_rx_flow_control) that pushes either count over
 * its bound; the loop, delivering, asks it (resume_req and a wake-up) to
 * read again once both are back under half their bound.
 *
 * on_handshake is called on the lws thread from
 * LWS_CALLBACK_HTTP_CONFIRM_UPGRADE, where the request headers are still
 * available and a refusal can still be an HTTP status (401/403/404/400).
 *
 * Out of memory is never an abort(). The loop thread's calls (create,
 * listen, connect, send) return KSOCK_E_NOMEM. The lws thread has no one
 * to return it to, so it refuses the upgrade (503) or closes the
 * connection (1011, ws__conn_fail_nomem); each connection's close event is
 * allocated with the connection (ws__conn_new), so that close always
 * reaches the host.
 */

#define WS_CLIENT_PROTOCOL         "ksock-client"
#define WS_MAX_WRITES_PER_CALLBACK 64 /* lws_write() calls per WRITEABLE, frame by frame */
/*
 * Batched writes: bytes per raw write (a larger frame goes alone), frames
 * per raw write, and raw writes per WRITEABLE callback (so that one
 * connection with a backlog does not hold the lws thread from the others).
 * WS_WRITE_BATCH is also every protocol's tx_packet_size: the most lws
 * hands to one send(2) (0 would cut every write at rx_buffer_size).
 */
#define WS_WRITE_BATCH                 (64 * 1024)
#define WS_BATCH_MAX_FRAMES            1024
#define WS_MAX_RAW_WRITES_PER_CALLBACK 4
#define WS_TICK_MS                     250 /* libev wake-up period, see tick_cb */
/*
 * Request line and headers lws keeps for one upgrade request (allocated
 * per handshake in progress, freed after it). Room for a token of the
 * JWT authenticator's default max_token_size (8 KiB) in the query or a
 * header besides the usual headers; a larger request is dropped by lws
 * without an answer.
 */
#define WS_MAX_REQUEST_HEADERS 16384
#define WS_TABLE_MIN           64 /* connection table slots made by create (a power of 2) */
/* A close event's reason: a close frame's (123 bytes); lws's client error texts are longer. */
#define WS_REASON_ROOM        124
#define WS_REASON_ROOM_CLIENT 200

/*
 * The reason of a close we start (close(), a refusal, shutdown), NUL-terminated,
 * at most 123 bytes: kept in the connection's close event, which is there until
 * the connection finishes and reports that same reason (no second copy per
 * connection). Empty when none was given.
 */
#define WS_CLOSE_REASON(c) ((char *)(c)->close_ev->data)

/* A wsi's opaque data once its connection finished, while lws still holds the socket. */
extern char ws__gone_mark; /* defined in ws_conn.c */
#define WS_GONE ((void *)&ws__gone_mark)

/* ---- Options ----------------------------------------------------------- */

typedef struct ws_opts_s {
    const ksock_cfg_t *listeners; /* array of {address, port, path} */
    ksock_strlist_t subprotocols;
    bool require_subprotocol;
    ksock_strlist_t origins;
    ksock_strlist_t hosts;
    ksock_strlist_t handshake_headers;
    int64_t max_message_size;
    int64_t ping_interval;
    int64_t idle_timeout;
    int64_t handshake_timeout;
    int64_t connect_timeout;
    int64_t max_connections;
    int64_t send_queue_max_frames;
    int64_t send_queue_max_bytes;
    int64_t receive_queue_max_bytes;
    int64_t receive_queue_max_total;
    int64_t rx_buffer_size;
    int64_t shutdown_grace;
    char *tls_cert;
    char *tls_key;
    char *tls_ca;
    int tls_client_cert; /* 0 none, 1 optional, 2 required */
    int event_lib;       /* 0 poll, 1 libev (the default) */
    bool permessage_deflate;
} ws_opts_t;

typedef struct ws_inst_s ws_inst_t;

/*
 * One listening socket of a listener, bound and listened on by the
 * transport itself and watched by lws as a raw descriptor (the accept
 * wsi, on the default client vhost); what it accepts is handed to the one
 * server vhost (ws_listen.c, Listeners).
 */
typedef struct ws_sock_s {
    ws_addr_t addr;  /* the port filled in once bound */
    int fd;          /* -1 until bound; lws owns it once adopted */
    struct lws *wsi; /* the accept wsi, NULL until adopted */
    /* set_listeners only (ws_relisten.c), loop thread: */
    struct ws_sock_s *from; /* a new socket: the running one it takes over */
    bool kept;              /* a running socket: taken over by a new one */
    bool deferred;          /* a new socket: bound once the removed ones are closed */
} ws_sock_t;

typedef struct ws_listener_s {
    size_t index;     /* in the listeners array, for messages */
    char *address;    /* as configured; NULL: 0.0.0.0 */
    int cfg_port;     /* as configured (0: the kernel picks) */
    int port;         /* bound (cfg_port, or what the kernel picked) */
    char *path;       /* NULL: any */
    ws_sock_t *socks; /* one per address it resolved to */
    size_t nsocks;
} ws_listener_t;

typedef struct ws_client_vhost_s {
    struct ws_client_vhost_s *next;
    char *ca_file;              /* NULL: the system store */
    char *cert_file, *key_file; /* client certificate, NULL: none */
    char name[32];              /* lws keeps the vhost name pointer */
    struct lws_vhost *vh;
} ws_client_vhost_t;

/*
 * What connect() was given, read by the lws thread later: kept apart from
 * ws_conn_t so that the many server connections do not carry it (memory per
 * idle connection, docs/benchmarks.md).
 */
typedef struct ws_client_req_s {
    ksock_transport_events_t own_ev;
    char *url, *sub_req, *ca_file, *cert_file, *key_file;
    ksock_kvpair_t *headers;
    size_t nheaders;
    bool insecure;
    bool in_start; /* inside lws_client_connect_via_info() */
} ws_client_req_t;

typedef struct ws_conn_s {
    ws_inst_t *inst;
    ksock_conn_id_t id;
    void *conn_data;
    const ksock_transport_events_t *ev; /* inst->listen_ev or cl->own_ev */
    struct ws_conn_s *hnext;            /* table chain */
    struct ws_conn_s *pnext, **pprev;   /* pending list, under lock */
    bool client;

    /* Under inst->lock. */
    ksock_frame_t **q; /* ring of frames */
    size_t qcap, qhead, qlen, qbytes;
    bool writable_owed; /* send() refused: tell the core when it drains */
    bool close_req;
    bool connect_req;
    bool gone; /* finished: out of the table, close event queued */
    int close_code;

    /* lws thread only. */
    struct lws *wsi;
    ksock_buf_t rx;
    bool rx_binary;
    int rx_close; /* 1009 (too large) or 1007 (bad UTF-8): close at the next WRITEABLE */
    bool deflate; /* server: permessage-deflate offered and enabled */
    bool opened;
    uint64_t last_rx_ns; /* last message or pong: tells an idle hang-up from a reset */
    bool peer_closed, local_closed;
    int peer_code;
    char *peer_reason;
    char *subprotocol;
    uint64_t max_message;

    ws_client_req_t *cl; /* client connections only (NULL on a server connection) */
    bool counted;        /* server wsi counted in inst->nwsi until lws destroys it */
    struct ws_event_s *deferred_close;
    struct ws_event_s *close_ev; /* allocated with c, used once by ws__conn_finish */

    /* Inbound bound, under inst->evlock. */
    size_t rxq_bytes;                 /* message bytes read, not yet delivered (queued or held) */
    bool rx_throttled;                /* lws_rx_flow_control(wsi, 0) in effect */
    struct ws_conn_s *tnext, **tprev; /* inst->throttled */

    /* Loop thread only: pause_read. */
    bool read_paused;
    struct ws_event_s *held_head, *held_tail; /* messages read while paused, in order */
    struct ws_conn_s *rnext, **rprev;         /* inst->resumed */
} ws_conn_t;

enum { EV_OPEN, EV_MESSAGE, EV_WRITABLE, EV_CLOSE };

typedef struct ws_event_s {
    struct ws_event_s *next;
    int kind;
    ws_conn_t *c;
    int code, err;
    ksock_frame_type_t type;
    const char *str; /* NULL or in data[]: subprotocol or reason */
    size_t len;
    unsigned char data[];
} ws_event_t;

typedef void (*ws_call_fn)(ws_inst_t *inst, void *arg);
struct ws_inst_s {
    ksock_runtime_t *rt;
    const char *component;
    const ws_opts_t *o;
    _Atomic unsigned refs; /* creator + one per posted drain */

    struct lws_context *ctx;
    pthread_t thread;
    bool thread_running;
    ksock_timer_t *tick; /* libev only: wakes the service thread, see tick_cb */
    _Atomic int quit;
    lws_retry_bo_t retry; /* ping/idle policy */
    struct lws_protocols *server_protocols;
    char **served; /* subprotocols accepted, NULL-terminated (ws__served_set) */
    size_t nserved;
    struct lws_protocols client_protocols[3]; /* the client protocol, the accept one */
    struct lws_vhost *server_vh;              /* lws thread: every listener's connections */
    lws_sorted_usec_list_t accept_sul;        /* lws thread: accepting resumes (ws_listen.c) */
    uint64_t accept_warned_ns;                /* lws thread: last "out of descriptors" log */
    ws_listener_t *listeners;                 /* swapped on the lws thread (set_listeners) */
    size_t nlisteners;
    ws_client_vhost_t *client_vhosts; /* lws thread */
    unsigned char *wbuf;              /* LWS_PRE + frame(s), lws thread */
    size_t wbuf_cap;
    ksock_frame_t *batch[WS_BATCH_MAX_FRAMES]; /* lws thread: the frames of one raw write */

    ksock_transport_events_t listen_ev;
    bool listening;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    ws_conn_t **table;
    size_t tcap, tcount;
    size_t nserver; /* server connections in the table */
    size_t nwsi;    /* server wsis not yet destroyed by lws (ws_stop waits for them) */
    ws_conn_t *pending;
    _Atomic uint64_t next_id;
    bool closing_all;
    ws_call_fn call_fn; /* a function to run on the lws thread, see ws_call */
    void *call_arg;
    bool call_done;

    pthread_mutex_t evlock;
    ws_event_t *ev_head, *ev_tail;
    size_t rxq_total;     /* under evlock: sum of every connection's rxq_bytes */
    ws_conn_t *throttled; /* under evlock: connections not being read */
    _Atomic bool resume_req;
    _Atomic bool wake_pending; /* a wake-up is on its way to the lws thread, see ws__wake */
    _Atomic bool stopping;     /* ws_stop: read every connection, so close handshakes complete */

    ws_conn_t *resumed; /* loop thread: resumed connections with held messages */
    bool resume_posted;

    bool destroyed; /* loop thread */
};

/* ---- ws.c: options, instance, vtable ----------------------------------- */

/* strdup(s), the caller frees it: NULL for NULL, and when out of memory (the caller checks). */
char *ws__strdup(const char *s);

/*
 * Wake the lws thread (lws_cancel_service) unless a wake-up is already on
 * its way; nothing before the thread started. Loop thread.
 */
void ws__wake(ws_inst_t *inst);

/* Drop one reference (the creator's, or a posted drain's); the last frees inst. Loop thread. */
void ws__inst_unref(ws_inst_t *inst);

/* The permessage-deflate offer, for server and client vhosts. */
extern const struct lws_extension ws__extensions[];

/* ---- ws_conn.c: connections, queues, events, reading and writing ------- */

/* The connection table and the pending list: under inst->lock. */
void ws__table_insert(ws_inst_t *inst, ws_conn_t *c);
ws_conn_t *ws__table_find(ws_inst_t *inst, ksock_conn_id_t id);
void ws__table_remove(ws_inst_t *inst, ws_conn_t *c);
bool ws__pending_add(ws_inst_t *inst, ws_conn_t *c);
void ws__pending_del(ws_conn_t *c);

/* Queue a reference to f (len bytes) on c's send queue; KSOCK_E_NOMEM. Under inst->lock. */
int ws__queue_push(ws_conn_t *c, ksock_frame_t *f, size_t len);
/* The oldest frame of c's queue, and its reference (NULL: empty). Under inst->lock. */
ksock_frame_t *ws__queue_pop(ws_conn_t *c);

/* Free a connection and everything it holds (not in the table). */
void ws__conn_free(ws_conn_t *c);

/* A zeroed connection of inst with its id and its close event; NULL when out of memory. */
ws_conn_t *ws__conn_new(ws_inst_t *inst);

/*
 * lws thread, out of memory for c (an event, the write buffer): close c
 * with 1011 "out of memory". Returns -1, for the callback to return.
 */
int ws__conn_fail_nomem(ws_conn_t *c, struct lws *wsi);

/*
 * lws thread: close from inside a callback with code and why (the host's
 * on_close says the same). Returns -1, for the callback to return.
 */
int ws__conn_close_now(ws_conn_t *c, struct lws *wsi, int code, const char *why);

/* Events to the loop thread. */
/* An event carrying a copy of data (NUL-terminated); NULL when out of memory. */
ws_event_t *ws__event_new(int kind, ws_conn_t *c, const void *data, size_t len);
void ws__event_push(ws_inst_t *inst, ws_event_t *e);
void ws__event_free(ws_event_t *e); /* a close event frees its connection too */

/* Posted by pause_read(false): deliver what resumed connections held. Loop thread. */
void ws__deliver_held(ksock_runtime_t *rt, void *arg);

/* lws thread: inbound flow control. */
void ws__rx_resume(ws_inst_t *inst);
void ws__rx_unthrottle(ws_inst_t *inst, ws_conn_t *c, struct lws *wsi);

/* lws thread: the end of a connection, and its reading and writing. */
void ws__conn_finish(ws_conn_t *c, struct lws *wsi, int code, const char *reason, int err);
void ws__conn_closed(ws_conn_t *c, struct lws *wsi);
/* ws_write.c: WRITEABLE (or a refusal from RECEIVE); returns what the callback returns. */
int ws__conn_write(ws_inst_t *inst, ws_conn_t *c, struct lws *wsi);
/* ws_write.c: from a wake-up, write c's queue at once where lws allows it, else ask WRITEABLE. */
void ws__conn_write_now(ws_inst_t *inst, ws_conn_t *c, struct lws *wsi);
int ws__conn_receive(ws_inst_t *inst, ws_conn_t *c, struct lws *wsi, const void *in, size_t len);
int ws__conn_peer_close(ws_conn_t *c, struct lws *wsi, const unsigned char *b, size_t len);

/* ---- ws_server.c: the server handshake (lws thread) -------------------- */

/* Answer an upgrade request with an HTTP error; returns -1 (hang up). */
int ws__refuse(struct lws *wsi, unsigned code, const char *why);

/* LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: accept (0) or refuse (-1) the upgrade. */
int ws__server_confirm_upgrade(ws_inst_t *inst, struct lws *wsi);

/* ---- ws_client.c: client connections (lws thread) ---------------------- */

/*
 * The client vhost for these TLS files (each may be NULL), made on first
 * use: 0 with *out set, KSOCK_E_NOMEM, or KSOCK_E_TLS when lws refuses it.
 */
int ws__client_vhost(ws_inst_t *inst, const char *ca_file, const char *cert_file,
                     const char *key_file, struct lws_vhost **out);

/* Start a connect() request; failures end in c's close event. */
void ws__client_start(ws_inst_t *inst, ws_conn_t *c);

/* CLIENT_CONNECTION_ERROR: end c with a KSOCK_E_* made of lws's text (and HTTP status). */
void ws__client_error(ws_conn_t *c, struct lws *wsi, const char *msg);

/* CLIENT_APPEND_HANDSHAKE_HEADER: add c's request headers; -1 when they do not fit. */
int ws__client_append_headers(ws_conn_t *c, struct lws *wsi, void *in, size_t len);

/* ---- ws_thread.c: the service thread and the lws callback -------------- */

int ws__callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                 size_t len);

/* Start the lws thread (and the libev tick) once; loop thread. */
int ws__thread_start(ws_inst_t *inst, char *errstr, size_t errstr_size);

/* ---- ws_listen.c: listeners from the options, their sockets ------------ */

#define WS_ACCEPT_PROTOCOL "ksock-accept" /* the accept wsis' protocol, on the client vhosts */

/*
 * Parse and resolve a "listeners" array into a new array (*out, *n): KSOCK_E_CONFIG with a
 * message naming the entry, KSOCK_E_NOMEM. Nothing is bound yet.
 */
int ws__listeners_parse(const ksock_cfg_t *arr, ws_listener_t **out, size_t *n, char *errstr,
                        size_t errstr_size);

/* Free an array of listeners; a socket bound but never adopted is closed. */
void ws__listeners_free(ws_listener_t *ls, size_t n);

/*
 * Bind and listen on one socket of l (exactly its address, v6only for
 * IPv6, non-blocking); the first socket of a port-0 listener sets l->port.
 * KSOCK_E_IO with a message naming the listener and *sys_errno set.
 */
int ws__sock_open(ws_listener_t *l, ws_sock_t *sk, int *sys_errno, char *errstr,
                  size_t errstr_size);

/* lws thread (or before it runs): start accepting on a bound socket. KSOCK_E_NOMEM. */
int ws__sock_adopt(ws_inst_t *inst, ws_sock_t *sk);

/* lws thread (or before it runs): stop accepting and close the socket (its connections stay). */
void ws__sock_close(ws_sock_t *sk);

/* lws thread (or before it runs): the server vhost, made once. KSOCK_E_IO/KSOCK_E_TLS. */
int ws__server_vhost(ws_inst_t *inst, char *errstr, size_t errstr_size);

/* lws thread: every listener bound and accepting, or none (what was made is closed again). */
int ws__listeners_start(ws_inst_t *inst, char *errstr, size_t errstr_size);

/* The accept protocol's callback: accept what waits and hand it to the server vhost. */
int ws__accept_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len);

/* Log "<what> ws://ADDR:PORT/PATH" for one socket of l, or for every socket of l. */
void ws__sock_log(ws_inst_t *inst, const ws_listener_t *l, const ws_sock_t *sk, const char *what);
void ws__listener_log(ws_inst_t *inst, const ws_listener_t *l, const char *what);

/* ---- ws_relisten.c: set_listeners (ABI 1.3) ----------------------------- */

int ws__set_listeners(void *p, const ksock_cfg_t *listeners, char *errstr, size_t errstr_size);

/* Run fn on the lws thread (directly when it is not running) and wait. ws.c. */
void ws__call(ws_inst_t *inst, ws_call_fn fn, void *arg);

/*
 * ws.c: the subprotocols a listening instance accepts, fixed at listen():
 * its own "subprotocols" option if set, else the host's list
 * (ksock_transport_events_t.subprotocols), else json, msgpack, protobuf.
 * Rebuilds the lws protocol table. KSOCK_E_NOMEM.
 */
int ws__served_set(ws_inst_t *inst, const ksock_transport_events_t *ev);
#endif
