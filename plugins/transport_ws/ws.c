/*
 * transport "ws": WebSocket server and client on libwebsockets 4.1.
 *
 * Threads. Debian's libwebsockets cannot join a libevent loop, so each
 * instance runs one libwebsockets context in a service thread of its own
 * (the "lws thread"). The vtable (send, close, connect...) is called on the
 * core's loop thread and never touches a libwebsockets object except
 * through lws_cancel_service(), the one call libwebsockets allows from
 * another thread:
 *
 *   loop thread                         lws thread
 *   send(): frame into conn->queue,     LWS_CALLBACK_EVENT_WAIT_CANCELLED:
 *   conn onto the pending list,    -->  take the pending list, ask for
 *   lws_cancel_service()                WRITEABLE (or start a connect)
 *                                       WRITEABLE: pop frames, lws_write()
 *   drain_events(): on_open,       <--  events appended to inst->events,
 *   on_message, on_writable,            one ksock_runtime_post() per batch
 *   on_close, in order
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
 */
#include "ws_internal.h"

#include <ksock/runtime.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <libwebsockets.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define WS_CLIENT_PROTOCOL         "ksock-client"
#define WS_MAX_WRITES_PER_CALLBACK 64
#define WS_TICK_MS                 250 /* libev wake-up period, see tick_cb */
/*
 * Request line and headers lws keeps for one upgrade request (allocated
 * per handshake in progress, freed after it). Room for a token of the
 * JWT authenticator's default max_token_size (8 KiB) in the query or a
 * header besides the usual headers; a larger request is dropped by lws
 * without an answer.
 */
#define WS_MAX_REQUEST_HEADERS 16384

/* A wsi's opaque data once its connection finished, while lws still holds the socket. */
static char ws_gone_mark;
#define WS_GONE ((void *)&ws_gone_mark)

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

static const char *const client_cert_modes[] = {"none", "optional", "required", NULL};
static const char *const event_libs[] = {"poll", "libev", NULL};

static const ksock_option_t ws_options[] = {
    KSOCK_OPTION("listeners", KSOCK_OPT_ARRAY, 0, NULL, ws_opts_t, listeners,
                 "Server sockets: an array of {\"address\": \"127.0.0.1\", \"port\": 8080, "
                 "\"path\": \"/ws\"}. address: an IPv4 or IPv6 literal, bound exactly "
                 "(0.0.0.0 or :: for all of one family), or a host name, resolved at start with "
                 "every address bound; default 0.0.0.0. path defaults to \"/\" (any path); "
                 "port is required (0: any free port). Empty or absent: client only."),
    KSOCK_OPTION("subprotocols", KSOCK_OPT_LIST, 0,
                 "ksock.v1.json,ksock.v1.msgpack,ksock.v1.protobuf", ws_opts_t, subprotocols,
                 "Sec-WebSocket-Protocol names the server accepts, in order of preference "
                 "given by the client; ksock.v1.<name> selects the serializer <name>."),
    KSOCK_OPTION("require_subprotocol", KSOCK_OPT_BOOL, 0, "false", ws_opts_t, require_subprotocol,
                 "Refuse (HTTP 400) an upgrade that offers no subprotocol; when false such a "
                 "connection opens with no subprotocol."),
    KSOCK_OPTION("origins", KSOCK_OPT_LIST, 0, "", ws_opts_t, origins,
                 "Allowed Origin header values (exact match, or \"*\" for any). Empty: only "
                 "http(s) origins whose host the Host rule allows (localhost, the listener's "
                 "address, a \"hosts\" entry). Others are refused with HTTP 403; a request "
                 "without Origin (not a browser) is allowed."),
    KSOCK_OPTION("hosts", KSOCK_OPT_LIST, 0, "", ws_opts_t, hosts,
                 "Host header names accepted besides localhost and the listener's own "
                 "address (any port), e.g. the public name of the server; \"*\": any. Other "
                 "Host values are refused with HTTP 403 (DNS rebinding)."),
    KSOCK_OPTION("handshake_headers", KSOCK_OPT_LIST, 0, "x-ksock-token", ws_opts_t,
                 handshake_headers,
                 "Non-standard request headers passed to the authenticator in addition to "
                 "the standard ones (libwebsockets 4.1 cannot enumerate unknown headers)."),
    KSOCK_OPTION_RANGE("max_message_size", KSOCK_OPT_SIZE, 0, "1MiB", ws_opts_t, max_message_size,
                       1, (int64_t)1 << 31,
                       "Largest message accepted (fragments joined); larger closes with 1009."),
    KSOCK_OPTION_RANGE("ping_interval", KSOCK_OPT_DURATION, 0, "30s", ws_opts_t, ping_interval, 0,
                       65535000,
                       "Send a ping after this long without traffic (whole seconds; 0: never)."),
    KSOCK_OPTION_RANGE("idle_timeout", KSOCK_OPT_DURATION, 0, "75s", ws_opts_t, idle_timeout, 0,
                       65535000,
                       "Drop a connection with no valid traffic or pong for this long (whole "
                       "seconds; 0: never). Must exceed ping_interval."),
    KSOCK_OPTION_RANGE("handshake_timeout", KSOCK_OPT_DURATION, 0, "10s", ws_opts_t,
                       handshake_timeout, 1000, 3600000,
                       "Time a client has to complete TLS and the HTTP upgrade (whole seconds)."),
    KSOCK_OPTION_RANGE("connect_timeout", KSOCK_OPT_DURATION, 0, "10s", ws_opts_t, connect_timeout,
                       1000, 3600000,
                       "Client side: time to connect and complete the upgrade (whole seconds)."),
    KSOCK_OPTION_RANGE("max_connections", KSOCK_OPT_INT, 0, "0", ws_opts_t, max_connections, 0,
                       1 << 24,
                       "Server connections open at once across all listeners; one more is "
                       "answered HTTP 503 before the upgrade. 0: only the process's file "
                       "descriptor limit."),
    KSOCK_OPTION_RANGE("send_queue_max_frames", KSOCK_OPT_INT, 0, "1024", ws_opts_t,
                       send_queue_max_frames, 1, 1 << 24,
                       "Frames queued per connection before send() answers KSOCK_E_QUEUE_FULL."),
    KSOCK_OPTION_RANGE("send_queue_max_bytes", KSOCK_OPT_SIZE, 0, "4MiB", ws_opts_t,
                       send_queue_max_bytes, 1, (int64_t)1 << 34,
                       "Bytes queued per connection before send() answers KSOCK_E_QUEUE_FULL "
                       "(a single frame larger than this is still accepted into an empty "
                       "queue)."),
    KSOCK_OPTION_RANGE("receive_queue_max_bytes", KSOCK_OPT_SIZE, 0, "4MiB", ws_opts_t,
                       receive_queue_max_bytes, 1, (int64_t)1 << 34,
                       "Bytes of a connection's messages read and not yet handled by the host "
                       "(also those held while the host paused reading it) before the transport "
                       "stops reading its socket, so TCP pushes back on the client; reading "
                       "resumes below half. The message that crosses the bound is kept whole."),
    KSOCK_OPTION_RANGE("receive_queue_max_total", KSOCK_OPT_SIZE, 0, "256MiB", ws_opts_t,
                       receive_queue_max_total, 1, (int64_t)1 << 40,
                       "The same across all connections: a connection that receives while the "
                       "total is over this bound stops being read until the total is back "
                       "under half (and its own count under half its bound)."),
    KSOCK_OPTION_RANGE("rx_buffer_size", KSOCK_OPT_SIZE, 0, "1536B", ws_opts_t, rx_buffer_size, 128,
                       1 << 20,
                       "libwebsockets' per-connection receive buffer, and the most it reads "
                       "from a socket at once: larger messages arrive in more pieces. Memory "
                       "per idle connection against the speed of large incoming messages; see "
                       "docs/websocket.md, Benchmark."),
    KSOCK_OPTION_RANGE("shutdown_grace", KSOCK_OPT_DURATION, 0, "1s", ws_opts_t, shutdown_grace, 0,
                       60000, "On stop, how long to wait for closing handshakes (1001) to finish."),
    KSOCK_OPTION("tls_cert", KSOCK_OPT_STRING, 0, NULL, ws_opts_t, tls_cert,
                 "PEM certificate chain for wss:// listeners (with tls_key). Checked at start: "
                 "loads, matches the key, not expired."),
    KSOCK_OPTION("tls_key", KSOCK_OPT_STRING, KSOCK_OPT_SECRET, NULL, ws_opts_t, tls_key,
                 "PEM private key (unencrypted) for tls_cert."),
    KSOCK_OPTION("tls_ca", KSOCK_OPT_STRING, 0, NULL, ws_opts_t, tls_ca,
                 "PEM CA bundle that client certificates must chain to."),
    KSOCK_OPTION_ENUM("tls_client_cert", 0, "none", ws_opts_t, tls_client_cert, client_cert_modes,
                      "Ask clients for a certificate: none, optional (verified if sent) or "
                      "required. Needs tls_ca."),
    KSOCK_OPTION("permessage_deflate", KSOCK_OPT_BOOL, 0, "false", ws_opts_t, permessage_deflate,
                 "Offer (client) and accept (server) RFC 7692 compression. Costs CPU and zlib "
                 "state on every connection that uses it; max_message_size applies to the "
                 "inflated size."),
    KSOCK_OPTION_ENUM("event_lib", 0, "libev", ws_opts_t, event_lib, event_libs,
                      "libwebsockets event loop: libev (Debian's libwebsockets-evlib_ev "
                      "plugin; keeps its pace with many connections open) or poll (built "
                      "in). See docs/websocket.md, Benchmark."),
    KSOCK_OPTION_END,
};

/*
 * permessage-deflate (RFC 7692), when enabled. The client offers not to
 * keep its compression context between messages (less memory on the
 * server, which then inflates each message on its own) and lets the
 * server pick the window.
 */
static const struct lws_extension ws_extensions[] = {
    {"permessage-deflate", lws_extension_callback_pm_deflate,
     "permessage-deflate; client_no_context_takeover; client_max_window_bits"},
    {NULL, NULL, NULL},
};

/* ---- State ------------------------------------------------------------- */

typedef struct ws_inst_s ws_inst_t;

/* One bound socket of a listener: one lws vhost. */
typedef struct ws_sock_s {
    ws_addr_t addr;               /* port filled in once bound */
    char *vhost_name;             /* lws keeps the pointer */
    char iface[INET6_ADDRSTRLEN]; /* the numeric address for lws, which keeps the pointer too */
    struct lws_vhost *vh;
    int fd; /* the listening socket lws made; -1 until found */
} ws_sock_t;

typedef struct ws_listener_s {
    ws_inst_t *inst;
    size_t index;  /* in the listeners array, for messages */
    char *address; /* as configured; NULL: 0.0.0.0 */
    int port;
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

typedef struct ws_conn_s {
    ws_inst_t *inst;
    ksock_conn_id_t id;
    void *conn_data;
    const ksock_transport_events_t *ev; /* inst->listen_ev or own_ev */
    ksock_transport_events_t own_ev;
    struct ws_conn_s *hnext;          /* table chain */
    struct ws_conn_s *pnext, **pprev; /* pending list, under lock */
    bool client;

    /* Under inst->lock. */
    ksock_frame_t **q; /* ring of frames */
    size_t qcap, qhead, qlen, qbytes;
    bool writable_owed; /* send() refused: tell the core when it drains */
    bool close_req;
    bool connect_req;
    bool gone; /* finished: out of the table, close event queued */
    int close_code;
    char close_reason[124];

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

    /* Client request, lws thread after connect(). */
    char *url, *sub_req, *ca_file, *cert_file, *key_file;
    ksock_kvpair_t *headers;
    size_t nheaders;
    bool insecure;
    bool in_start; /* inside lws_client_connect_via_info() */
    bool counted;  /* server wsi counted in inst->nwsi until lws destroys it */
    struct ws_event_s *deferred_close;

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
    char *str; /* subprotocol or reason */
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
    struct lws_protocols client_protocols[2];
    ws_listener_t *listeners;
    size_t nlisteners, nlisteners_alloc;
    ws_client_vhost_t *client_vhosts; /* lws thread */
    unsigned char *wbuf;              /* LWS_PRE + frame, lws thread */
    size_t wbuf_cap;

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
    _Atomic bool stopping; /* ws_stop: read every connection, so close handshakes complete */

    ws_conn_t *resumed; /* loop thread: resumed connections with held messages */
    bool resume_posted;

    bool destroyed; /* loop thread */
};

/* ---- Small helpers ------------------------------------------------------ */

static char *xstrdup(const char *s)
{
    if (s == NULL) return NULL;
    char *d = strdup(s);
    if (d == NULL) abort();
    return d;
}

static void inst_unref(ws_inst_t *inst);

/* ---- Connection table (under lock) ------------------------------------ */

static size_t slot_of(const ws_inst_t *inst, ksock_conn_id_t id)
{
    return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 20) & (inst->tcap - 1);
}

static void table_insert(ws_inst_t *inst, ws_conn_t *c)
{
    if (inst->tcount + 1 > inst->tcap) {
        size_t ncap = inst->tcap ? inst->tcap * 2 : 64;
        ws_conn_t **nt = calloc(ncap, sizeof(*nt));
        if (nt == NULL) abort();
        ws_conn_t **old = inst->table;
        size_t ocap = inst->tcap;
        inst->table = nt;
        inst->tcap = ncap;
        for (size_t i = 0; i < ocap; i++) {
            ws_conn_t *e = old[i];
            while (e) {
                ws_conn_t *next = e->hnext;
                size_t s = slot_of(inst, e->id);
                e->hnext = nt[s];
                nt[s] = e;
                e = next;
            }
        }
        free(old);
    }
    size_t s = slot_of(inst, c->id);
    c->hnext = inst->table[s];
    inst->table[s] = c;
    inst->tcount++;
    if (!c->client) inst->nserver++;
}

static ws_conn_t *table_find(ws_inst_t *inst, ksock_conn_id_t id)
{
    if (inst->tcap == 0) return NULL;
    for (ws_conn_t *e = inst->table[slot_of(inst, id)]; e; e = e->hnext)
        if (e->id == id) return e;
    return NULL;
}

static void table_remove(ws_inst_t *inst, ws_conn_t *c)
{
    if (inst->tcap == 0) return;
    ws_conn_t **pp = &inst->table[slot_of(inst, c->id)];
    while (*pp && *pp != c)
        pp = &(*pp)->hnext;
    if (*pp) {
        *pp = c->hnext;
        inst->tcount--;
        if (!c->client) inst->nserver--;
    }
}

/* Put a connection on the pending list; true when the list was empty (wake needed). */
static bool pending_add(ws_inst_t *inst, ws_conn_t *c)
{
    if (c->pprev) return false;
    bool was_empty = inst->pending == NULL;
    c->pnext = inst->pending;
    if (c->pnext) c->pnext->pprev = &c->pnext;
    inst->pending = c;
    c->pprev = &inst->pending;
    return was_empty;
}

static void pending_del(ws_conn_t *c)
{
    if (!c->pprev) return;
    *c->pprev = c->pnext;
    if (c->pnext) c->pnext->pprev = c->pprev;
    c->pnext = NULL;
    c->pprev = NULL;
}

static ksock_frame_t *queue_pop(ws_conn_t *c)
{
    if (c->qlen == 0) return NULL;
    ksock_frame_t *f = c->q[c->qhead];
    c->q[c->qhead] = NULL;
    c->qhead = (c->qhead + 1) & (c->qcap - 1);
    c->qlen--;
    size_t len = 0;
    ksock_frame_data(f, &len);
    c->qbytes -= len;
    return f;
}

static int queue_push(ws_conn_t *c, ksock_frame_t *f, size_t len)
{
    if (c->qlen == c->qcap) {
        size_t ncap = c->qcap ? c->qcap * 2 : 4;
        ksock_frame_t **nq = malloc(ncap * sizeof(*nq));
        if (nq == NULL) return KSOCK_E_NOMEM;
        for (size_t i = 0; i < c->qlen; i++)
            nq[i] = c->q[(c->qhead + i) & (c->qcap - 1)];
        free(c->q);
        c->q = nq;
        c->qcap = ncap;
        c->qhead = 0;
    }
    c->q[(c->qhead + c->qlen) & (c->qcap - 1)] = ksock_frame_ref(f);
    c->qlen++;
    c->qbytes += len;
    return 0;
}

static void event_free(struct ws_event_s *e);

static void conn_free(ws_conn_t *c)
{
    while (c->held_head) {
        struct ws_event_s *e = c->held_head;
        c->held_head = e->next;
        event_free(e);
    }
    ksock_frame_t *f;
    while ((f = queue_pop(c)) != NULL)
        ksock_frame_unref(f);
    free(c->q);
    ksock_buf_free(&c->rx);
    free(c->peer_reason);
    free(c->subprotocol);
    free(c->url);
    free(c->sub_req);
    free(c->ca_file);
    free(c->cert_file);
    free(c->key_file);
    for (size_t i = 0; i < c->nheaders; i++) {
        free((char *)c->headers[i].name);
        free((char *)c->headers[i].value);
    }
    free(c->headers);
    free(c);
}

/* ---- Events to the loop thread ----------------------------------------- */

static void drain_events(ksock_runtime_t *rt, void *arg);

/* NULL on ENOMEM: for messages, whose loss the caller answers by closing the connection. */
static ws_event_t *event_try_new(int kind, ws_conn_t *c, const void *data, size_t len)
{
    ws_event_t *e = malloc(sizeof(*e) + len + 1);
    if (e == NULL) return NULL;
    memset(e, 0, sizeof(*e));
    e->kind = kind;
    e->c = c;
    e->len = len;
    if (len) memcpy(e->data, data, len);
    e->data[len] = '\0';
    return e;
}

static ws_event_t *event_new(int kind, ws_conn_t *c, const void *data, size_t len)
{
    ws_event_t *e = event_try_new(kind, c, data, len);
    if (e == NULL) abort(); /* an open or close lost would leak a connection */
    return e;
}

/* Queue an event; one runtime post per empty->non-empty transition. Any thread. */
static void event_push(ws_inst_t *inst, ws_event_t *e)
{
    pthread_mutex_lock(&inst->evlock);
    bool was_empty = inst->ev_head == NULL;
    if (inst->ev_tail)
        inst->ev_tail->next = e;
    else
        inst->ev_head = e;
    inst->ev_tail = e;
    pthread_mutex_unlock(&inst->evlock);
    if (was_empty) {
        atomic_fetch_add(&inst->refs, 1);
        if (ksock_runtime_post(inst->rt, drain_events, inst) != 0) {
            /* The runtime is going away: the events are freed by destroy. */
            atomic_fetch_sub(&inst->refs, 1);
        }
    }
}

static void event_free(ws_event_t *e)
{
    if (e->kind == EV_CLOSE) {
        ws_conn_t *c = e->c;
        if (c->rprev) { /* loop thread: off the resumed list before it goes */
            *c->rprev = c->rnext;
            if (c->rnext) c->rnext->rprev = c->rprev;
        }
        conn_free(c);
    }
    free(e->str);
    free(e);
}

static void deliver(ws_inst_t *inst, ws_event_t *e)
{
    ws_conn_t *c = e->c;
    const ksock_transport_events_t *ev = c->ev;
    switch (e->kind) {
    case EV_OPEN:
        if (ev->on_open) ev->on_open(ev->data, c->id, c->conn_data, e->str);
        break;
    case EV_MESSAGE:
        if (ev->on_message) ev->on_message(ev->data, c->id, c->conn_data, e->type, e->data, e->len);
        break;
    case EV_WRITABLE:
        if (ev->on_writable) ev->on_writable(ev->data, c->id, c->conn_data);
        break;
    case EV_CLOSE:
        if (ev->on_close) ev->on_close(ev->data, c->id, c->conn_data, e->code, e->str, e->err);
        break;
    }
}

/* ---- Inbound bound ------------------------------------------------------ */

static void throttled_del(ws_conn_t *c)
{
    if (!c->tprev) return;
    *c->tprev = c->tnext;
    if (c->tnext) c->tnext->tprev = c->tprev;
    c->tnext = NULL;
    c->tprev = NULL;
}

/* Under evlock: may a throttled connection be read again? */
static bool rx_may_resume(const ws_inst_t *inst, const ws_conn_t *c)
{
    return c->rxq_bytes <= (size_t)inst->o->receive_queue_max_bytes / 2 &&
           inst->rxq_total <= (size_t)inst->o->receive_queue_max_total / 2;
}

/*
 * lws thread, before the message is queued: count it, and tell the caller
 * to stop reading when it crosses a bound. The message itself is kept: at
 * most one message per connection goes over the bound.
 */
static bool rx_account(ws_inst_t *inst, ws_conn_t *c, size_t len)
{
    pthread_mutex_lock(&inst->evlock);
    c->rxq_bytes += len;
    inst->rxq_total += len;
    bool stop = !c->rx_throttled && !atomic_load(&inst->stopping) &&
                (c->rxq_bytes >= (size_t)inst->o->receive_queue_max_bytes ||
                 inst->rxq_total >= (size_t)inst->o->receive_queue_max_total);
    if (stop) {
        c->rx_throttled = true;
        c->tnext = inst->throttled;
        if (c->tnext) c->tnext->tprev = &c->tnext;
        inst->throttled = c;
        c->tprev = &inst->throttled;
    }
    pthread_mutex_unlock(&inst->evlock);
    return stop;
}

/*
 * Loop thread, once a message was delivered (or dropped): uncount it. When
 * that makes this connection readable again, or brings the total back
 * under half its bound while some connection waits, wake the lws thread.
 */
static void rx_release(ws_inst_t *inst, ws_conn_t *c, size_t len)
{
    pthread_mutex_lock(&inst->evlock);
    size_t half_total = (size_t)inst->o->receive_queue_max_total / 2;
    bool crossed = inst->rxq_total > half_total && inst->rxq_total - len <= half_total;
    c->rxq_bytes -= len;
    inst->rxq_total -= len;
    bool wake = (c->rx_throttled && rx_may_resume(inst, c)) || (crossed && inst->throttled != NULL);
    pthread_mutex_unlock(&inst->evlock);
    if (wake && !atomic_exchange(&inst->resume_req, true) && inst->ctx && inst->thread_running)
        lws_cancel_service(inst->ctx);
}

/* lws thread (wait-cancelled): read again every connection now under its bounds. */
static void rx_resume(ws_inst_t *inst)
{
    if (!atomic_exchange(&inst->resume_req, false)) return;
    pthread_mutex_lock(&inst->evlock);
    for (ws_conn_t *c = inst->throttled, *next; c; c = next) {
        next = c->tnext;
        if (!rx_may_resume(inst, c)) continue;
        throttled_del(c);
        c->rx_throttled = false;
        if (c->wsi) lws_rx_flow_control(c->wsi, 1);
    }
    pthread_mutex_unlock(&inst->evlock);
}

/* Loop thread: deliver one message event (or hold it for a paused connection). */
static void deliver_message(ws_inst_t *inst, ws_event_t *e)
{
    ws_conn_t *c = e->c;
    if (c->read_paused || c->held_head) {
        e->next = NULL;
        if (c->held_tail)
            c->held_tail->next = e;
        else
            c->held_head = e;
        c->held_tail = e;
        return;
    }
    deliver(inst, e);
    rx_release(inst, c, e->len);
    event_free(e);
}

/* Loop thread: a closing connection's held messages are dropped, never delivered. */
static void drop_held(ws_inst_t *inst, ws_conn_t *c)
{
    while (c->held_head) {
        ws_event_t *e = c->held_head;
        c->held_head = e->next;
        rx_release(inst, c, e->len);
        event_free(e);
    }
    c->held_tail = NULL;
}

static void drain_events(ksock_runtime_t *rt, void *arg)
{
    ws_inst_t *inst = arg;
    (void)rt;
    for (;;) {
        pthread_mutex_lock(&inst->evlock);
        ws_event_t *e = inst->ev_head;
        inst->ev_head = inst->ev_tail = NULL;
        pthread_mutex_unlock(&inst->evlock);
        if (e == NULL) break;
        while (e) {
            ws_event_t *next = e->next;
            /* After destroy (or while the runtime shuts down) only free. */
            if (inst->destroyed || ksock_runtime_is_stopping(inst->rt)) {
                event_free(e);
            } else if (e->kind == EV_MESSAGE) {
                deliver_message(inst, e);
            } else {
                if (e->kind == EV_CLOSE) drop_held(inst, e->c);
                deliver(inst, e);
                event_free(e);
            }
            e = next;
        }
    }
    inst_unref(inst);
}

/*
 * Loop thread, posted by pause_read(false): deliver what resumed
 * connections held, in order, until one is paused again.
 */
static void deliver_held(ksock_runtime_t *rt, void *arg)
{
    ws_inst_t *inst = arg;
    (void)rt;
    inst->resume_posted = false;
    while (inst->resumed && !inst->destroyed && !ksock_runtime_is_stopping(inst->rt)) {
        ws_conn_t *c = inst->resumed;
        inst->resumed = c->rnext;
        if (c->rnext) c->rnext->rprev = &inst->resumed;
        c->rnext = NULL;
        c->rprev = NULL;
        while (c->held_head && !c->read_paused) {
            ws_event_t *e = c->held_head;
            c->held_head = e->next;
            if (c->held_head == NULL) c->held_tail = NULL;
            deliver(inst, e);
            rx_release(inst, c, e->len);
            event_free(e);
        }
    }
    inst_unref(inst);
}

/* ---- lws thread: connection end --------------------------------------- */

/*
 * The connection is over: take it out of the table and queue its close
 * event (which frees it once delivered). Idempotent. lws thread.
 */
static void conn_finish(ws_conn_t *c, struct lws *wsi, int code, const char *reason, int err)
{
    ws_inst_t *inst = c->inst;
    /* Whatever happens next, no callback may find c through this wsi again. */
    void *mark = c->counted ? WS_GONE : NULL;
    if (wsi) lws_set_opaque_user_data(wsi, mark);
    if (c->wsi && c->wsi != wsi) lws_set_opaque_user_data(c->wsi, mark);
    c->wsi = NULL;
    pthread_mutex_lock(&inst->lock);
    if (c->gone) {
        pthread_mutex_unlock(&inst->lock);
        return;
    }
    c->gone = true;
    table_remove(inst, c);
    pending_del(c);
    if (inst->closing_all && inst->tcount == 0) pthread_cond_broadcast(&inst->cond);
    pthread_mutex_unlock(&inst->lock);
    pthread_mutex_lock(&inst->evlock);
    throttled_del(c);
    pthread_mutex_unlock(&inst->evlock);
    ws_event_t *e = event_new(EV_CLOSE, c, NULL, 0);
    e->code = code;
    e->err = err;
    e->str = reason ? xstrdup(reason) : NULL;
    /*
     * Inside lws_client_connect_via_info() the caller still uses c after
     * the call returns: it pushes the event itself (see client_start).
     */
    if (c->in_start)
        c->deferred_close = e;
    else
        event_push(inst, e);
}

/*
 * lws hangs up, without a close frame, on a connection that has not been
 * "valid" (a pong, at least) for idle_timeout. When nothing at all came
 * for that long, that is why this connection went.
 */
static bool conn_idle_expired(const ws_conn_t *c)
{
    uint64_t idle = (uint64_t)c->inst->o->idle_timeout;
    return idle > 0 && ksock_now_ns() - c->last_rx_ns >= idle * 1000000ull;
}

/* Close event values for a connection whose wsi is going away. */
static void conn_closed(ws_conn_t *c, struct lws *wsi)
{
    if (c->peer_closed)
        conn_finish(c, wsi, c->peer_code, c->peer_reason, 0);
    else if (c->local_closed)
        conn_finish(c, wsi, c->close_code, c->close_reason[0] ? c->close_reason : NULL, 0);
    else if (c->opened && conn_idle_expired(c))
        conn_finish(c, wsi, 1006, "idle timeout: nothing heard, not even a pong", KSOCK_E_TIMEDOUT);
    else
        conn_finish(c, wsi, 1006, NULL, c->opened ? KSOCK_E_CONNRESET : KSOCK_E_CLOSED);
}

/* ---- lws thread: writing ---------------------------------------------- */

/* Read a closing connection again: lws must see the peer's close frame. */
static void rx_unthrottle(ws_inst_t *inst, ws_conn_t *c, struct lws *wsi)
{
    pthread_mutex_lock(&inst->evlock);
    bool was = c->rx_throttled;
    throttled_del(c);
    c->rx_throttled = false;
    pthread_mutex_unlock(&inst->evlock);
    if (was) lws_rx_flow_control(wsi, 1);
}

static int conn_write(ws_inst_t *inst, ws_conn_t *c, struct lws *wsi)
{
    if (c->rx_close) {
        const char *why = c->rx_close == LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE ? "message too large"
                          : c->rx_close == LWS_CLOSE_STATUS_INVALID_PAYLOAD
                              ? "invalid UTF-8 in a text message"
                              : "out of memory";
        c->local_closed = true;
        c->close_code = c->rx_close;
        snprintf(c->close_reason, sizeof(c->close_reason), "%s", why);
        lws_close_reason(wsi, (enum lws_close_status)c->rx_close, (unsigned char *)why,
                         strlen(why));
        return -1;
    }
    for (int i = 0; i < WS_MAX_WRITES_PER_CALLBACK; i++) {
        bool owed = false, want_close = false, more;
        pthread_mutex_lock(&inst->lock);
        ksock_frame_t *f = queue_pop(c);
        /* Low-water mark: half of either bound. */
        if (c->writable_owed && c->qlen <= (size_t)inst->o->send_queue_max_frames / 2 &&
            c->qbytes <= (size_t)inst->o->send_queue_max_bytes / 2) {
            c->writable_owed = false;
            owed = true;
        }
        want_close = f == NULL && c->close_req;
        more = c->qlen > 0;
        pthread_mutex_unlock(&inst->lock);
        if (owed) event_push(inst, event_new(EV_WRITABLE, c, NULL, 0));
        if (want_close) {
            c->local_closed = true;
            rx_unthrottle(inst, c, wsi); /* the peer's close frame must still be read */
            size_t rl = strlen(c->close_reason);
            lws_close_reason(wsi, (enum lws_close_status)c->close_code,
                             (unsigned char *)c->close_reason, rl);
            return -1;
        }
        if (f == NULL) return 0;
        size_t len = 0;
        const void *data = ksock_frame_data(f, &len);
        if (inst->wbuf_cap < LWS_PRE + len) {
            size_t ncap = LWS_PRE + len;
            unsigned char *nb = realloc(inst->wbuf, ncap);
            if (nb == NULL) {
                ksock_frame_unref(f);
                return -1;
            }
            inst->wbuf = nb;
            inst->wbuf_cap = ncap;
        }
        memcpy(inst->wbuf + LWS_PRE, data, len);
        enum lws_write_protocol wp =
            ksock_frame_type(f) == KSOCK_FRAME_BINARY ? LWS_WRITE_BINARY : LWS_WRITE_TEXT;
        ksock_frame_unref(f);
        int n = lws_write(wsi, inst->wbuf + LWS_PRE, len, wp);
        if (n < (int)len) return -1;
        if (!more) {
            /* A close may have been asked for meanwhile. */
            pthread_mutex_lock(&inst->lock);
            more = c->qlen > 0 || c->close_req;
            pthread_mutex_unlock(&inst->lock);
            if (!more) return 0;
        }
        if (lws_send_pipe_choked(wsi)) break;
    }
    lws_callback_on_writable(wsi);
    return 0;
}

/* ---- lws thread: reading ---------------------------------------------- */

/*
 * Refuse what the peer sent with `code`, from the next WRITEABLE rather
 * than by returning -1 here on a client connection: libwebsockets 4.1
 * goes on parsing the rest of the read buffer of a client connection
 * closed from inside RECEIVE, and crashes. A server connection closes at
 * once (deferring lets the peer write on into a socket we then reset),
 * unless permessage-deflate is on: closing from inside the inflate loop
 * leaves lws sending the close frame only ~20 s later.
 */
static int conn_refuse_rx(ws_inst_t *inst, ws_conn_t *c, struct lws *wsi, int code)
{
    c->rx_close = code;
    ksock_buf_free(&c->rx);
    if (!c->client && !c->deflate) return conn_write(inst, c, wsi);
    lws_callback_on_writable(wsi);
    return 0;
}

/*
 * Text messages are checked for UTF-8 here, whole, rather than by lws
 * (LWS_SERVER_OPTION_VALIDATE_UTF8): lws closes with 1007 on its own and
 * the host would only see the socket go (1006). Checking the joined
 * message also covers a code point split across fragments.
 */
static int conn_receive(ws_inst_t *inst, ws_conn_t *c, struct lws *wsi, const void *in, size_t len)
{
    bool first = lws_is_first_fragment(wsi), final = lws_is_final_fragment(wsi);
    if (first) {
        c->rx.len = 0;
        c->rx_binary = lws_frame_is_binary(wsi);
    }
    c->last_rx_ns = ksock_now_ns();
    if (c->rx_close || c->local_closed) return 0; /* closing: drop the rest */
    if (c->rx.len + len > c->max_message)
        return conn_refuse_rx(inst, c, wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE);
    ksock_frame_type_t type = c->rx_binary ? KSOCK_FRAME_BINARY : KSOCK_FRAME_TEXT;
    const void *msg = in;
    size_t mlen = len;
    if (!final || c->rx.len > 0) {
        if (ksock_buf_append(&c->rx, in, len) != 0) return -1;
        if (!final) return 0;
        msg = c->rx.data;
        mlen = c->rx.len;
    }
    if (type == KSOCK_FRAME_TEXT && !ksock_utf8_check(msg, mlen, NULL))
        return conn_refuse_rx(inst, c, wsi, LWS_CLOSE_STATUS_INVALID_PAYLOAD);
    ws_event_t *e = event_try_new(EV_MESSAGE, c, msg, mlen); /* common case: no copy into rx */
    if (e == NULL) /* out of memory: close this connection rather than the process */
        return conn_refuse_rx(inst, c, wsi, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION);
    if (msg == c->rx.data) {
        c->rx.len = 0;
        /* Do not let one big message pin memory on an idle connection. */
        if (c->rx.cap > 64 * 1024) ksock_buf_free(&c->rx);
    }
    e->type = type;
    bool stop = rx_account(inst, c, mlen);
    event_push(inst, e);
    if (stop) lws_rx_flow_control(wsi, 0);
    return 0;
}

/*
 * The peer's close frame. lws 4.1 has already dealt with a close code that
 * RFC 6455 7.4 does not allow: it rewrote it to 1002 in this very payload,
 * which it then echoes. It echoes everything else as it came, so a server
 * connection refuses here what RFC 6455 5.5.1 forbids: a 1-byte payload
 * (1002) and a reason that is not UTF-8 (1007). Returning -1 makes lws
 * send the lws_close_reason() close frame instead of the echo.
 */
static int conn_peer_close(ws_conn_t *c, struct lws *wsi, const unsigned char *b, size_t len)
{
    const char *why = NULL;
    int code = 0;
    if (!c->client && len == 1) {
        code = LWS_CLOSE_STATUS_PROTOCOL_ERR;
        why = "close frame with a 1-byte payload";
    } else if (!c->client && len > 2 && !ksock_utf8_check(b + 2, len - 2, NULL)) {
        code = LWS_CLOSE_STATUS_INVALID_PAYLOAD;
        why = "close reason is not UTF-8";
    }
    if (code) {
        c->local_closed = true;
        c->close_code = code;
        snprintf(c->close_reason, sizeof(c->close_reason), "%s", why);
        lws_close_reason(wsi, (enum lws_close_status)code, (unsigned char *)why, strlen(why));
        return -1;
    }
    c->peer_closed = true;
    c->peer_code = len >= 2 ? (b[0] << 8 | b[1]) : 1005;
    free(c->peer_reason);
    c->peer_reason = NULL;
    if (len > 2) {
        c->peer_reason = malloc(len - 1);
        if (c->peer_reason) {
            memcpy(c->peer_reason, b + 2, len - 2);
            c->peer_reason[len - 2] = '\0';
        }
    }
    return 0;
}

/* ---- lws thread: server handshake -------------------------------------- */

static int hdr_dup(struct lws *wsi, enum lws_token_indexes t, char **out)
{
    int n = lws_hdr_total_length(wsi, t);
    *out = NULL;
    if (n <= 0) return 0;
    char *s = malloc((size_t)n + 1);
    if (s == NULL) return -1;
    if (lws_hdr_copy(wsi, s, n + 1, t) < 0) {
        free(s);
        return 0;
    }
    *out = s;
    return 0;
}

typedef struct hs_build_s {
    ksock_kvpair_t *h;
    size_t n, cap;
    char *query;
    ksock_buf_t q;
} hs_build_t;

static void hs_add(hs_build_t *b, char *name, char *value)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 16;
        b->h = realloc(b->h, b->cap * sizeof(*b->h));
        if (b->h == NULL) abort();
    }
    b->h[b->n].name = name;
    b->h[b->n].value = value;
    b->n++;
}

static void hs_free(hs_build_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free((char *)b->h[i].name);
        free((char *)b->h[i].value);
    }
    free(b->h);
    ksock_buf_free(&b->q);
}

/* Every standard header lws parsed, plus the configured custom ones. */
static void hs_collect_headers(ws_inst_t *inst, struct lws *wsi, hs_build_t *b)
{
    for (int t = 0; t < (int)WSI_TOKEN_COUNT; t++) {
        const char *nm = (const char *)lws_token_to_string((enum lws_token_indexes)t);
        if (nm == NULL || nm[0] == ':' || t == WSI_TOKEN_HTTP_URI_ARGS) continue;
        size_t nl = strlen(nm);
        if (nl < 2 || nm[nl - 1] != ':') continue; /* "get " etc. are not headers */
        char *v = NULL;
        if (hdr_dup(wsi, (enum lws_token_indexes)t, &v) != 0 || v == NULL) continue;
        char *name = malloc(nl);
        if (name == NULL) abort();
        for (size_t i = 0; i + 1 < nl; i++)
            name[i] = (char)tolower((unsigned char)nm[i]);
        name[nl - 1] = '\0';
        hs_add(b, name, v);
    }
    for (size_t i = 0; i < inst->o->handshake_headers.n; i++) {
        const char *want = inst->o->handshake_headers.v[i];
        char key[128];
        int kl = snprintf(key, sizeof(key), "%s:", want);
        if (kl <= 1 || (size_t)kl >= sizeof(key)) continue;
        for (int j = 0; j < kl; j++)
            key[j] = (char)tolower((unsigned char)key[j]);
        int n = lws_hdr_custom_length(wsi, key, kl);
        if (n < 0) continue;
        char *v = malloc((size_t)n + 1);
        if (v == NULL) abort();
        if (lws_hdr_custom_copy(wsi, v, n + 1, key, kl) < 0) {
            free(v);
            continue;
        }
        key[kl - 1] = '\0';
        hs_add(b, xstrdup(key), v);
    }
}

static void peer_address(struct lws *wsi, char *out, size_t n)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    out[0] = '\0';
    if (getpeername(lws_get_socket_fd(wsi), (struct sockaddr *)&ss, &sl) != 0) return;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
        port = ntohs(a->sin_port);
        snprintf(out, n, "%s:%d", ip, port);
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
        port = ntohs(a->sin6_port);
        /* An IPv4 client of a dual-stack socket: show it as IPv4. */
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
            snprintf(out, n, "%s:%d", ip + 7, port);
        else
            snprintf(out, n, "[%s]:%d", ip, port);
    }
}

/* The first offered subprotocol we support; "" when none was offered, NULL when none fits. */
static const char *pick_subprotocol(ws_inst_t *inst, const char *offered)
{
    if (offered == NULL || *offered == '\0') return "";
    const char *p = offered;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        const char *s = p;
        while (*p && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        size_t l = (size_t)(p - s);
        for (size_t i = 0; l && i < inst->o->subprotocols.n; i++) {
            const char *name = inst->o->subprotocols.v[i];
            if (strlen(name) == l && memcmp(name, s, l) == 0) return name;
        }
    }
    return NULL;
}

/*
 * The listener a connection came in on, from the socket's local address:
 * not lws_get_vhost(), which lws 4.1 may switch to another vhost on the
 * same port by the Host header. NULL when no bound socket matches.
 */
static ws_listener_t *listener_of(ws_inst_t *inst, struct lws *wsi, struct sockaddr_storage *local)
{
    socklen_t sl = sizeof(*local);
    if (getsockname(lws_get_socket_fd(wsi), (struct sockaddr *)local, &sl) != 0) return NULL;
    const struct sockaddr *la = (const struct sockaddr *)local;
    for (size_t i = 0; i < inst->nlisteners; i++) {
        ws_listener_t *l = &inst->listeners[i];
        for (size_t k = 0; k < l->nsocks; k++) {
            const struct sockaddr *ba = (const struct sockaddr *)&l->socks[k].addr.ss;
            if (l->socks[k].fd >= 0 && ba->sa_family == la->sa_family &&
                ws__addr_port(la) == l->port && (ws__addr_is_any(ba) || ws__addr_eq(ba, la)))
                return l;
        }
    }
    return NULL;
}

/*
 * The Host and Origin rules (docs/websocket.md): NULL when the request
 * passes, else why not. A page on another site must not reach a local
 * server through the browser (cross-site WebSocket hijacking), nor a name
 * that an attacker re-pointed at this address (DNS rebinding).
 */
static const char *host_origin_refusal(ws_inst_t *inst, ws_listener_t *l,
                                       const struct sockaddr_storage *local, const char *host,
                                       const char *origin)
{
    ws_addr_t addrs[8];
    size_t n = 0;
    for (size_t k = 0; k < l->nsocks && n < 8; k++)
        addrs[n++] = l->socks[k].addr;
    ws_hostset_t set = {l->address, addrs, n, (const struct sockaddr *)local, &inst->o->hosts};
    if (!ws__host_allowed(&set, host))
        return host ? "Host not allowed (see the \"hosts\" option)" : "no Host header";
    if (!ws__origin_allowed(&set, &inst->o->origins, origin))
        return "Origin not allowed (see the \"origins\" option)";
    return NULL;
}

static void log_refusal(ws_inst_t *inst, struct lws *wsi, unsigned code, const char *why,
                        const char *host, const char *origin)
{
    char peer[80], h[120], o[120];
    peer_address(wsi, peer, sizeof(peer));
    ws__printable(host, h, sizeof(h));
    ws__printable(origin, o, sizeof(o));
    ksock_kv_t kv[] = {KSOCK_KV_STR("peer", peer), KSOCK_KV_I64("status", code),
                       KSOCK_KV_STR("host", h), KSOCK_KV_STR("origin", o)};
    ksock_log(inst->rt, KSOCK_LOG_WARN, inst->component, kv, 4, "upgrade refused: %s", why);
}

/* The query string: lws keeps the arguments as fragments, each of any length. */
static void collect_query(struct lws *wsi, hs_build_t *b)
{
    for (int i = 0;; i++) {
        int n = lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, i);
        char *frag = malloc((size_t)(n > 0 ? n : 0) + 1);
        if (frag == NULL) abort();
        int m = lws_hdr_copy_fragment(wsi, frag, (n > 0 ? n : 0) + 1, WSI_TOKEN_HTTP_URI_ARGS, i);
        if (m > 0) {
            if (b->q.len) ksock_buf_append(&b->q, "&", 1);
            ksock_buf_append(&b->q, frag, (size_t)m);
        }
        free(frag);
        if (m < 0) break; /* no more fragments; an empty one ("a&&b") is skipped */
    }
}

static const char *status_text(unsigned code)
{
    switch (code) {
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 426:
        return "Upgrade Required";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}

/*
 * Answer an upgrade request with an HTTP error and close. Written by hand:
 * lws_return_http_status() answers "HTTP/1.0" this early in the request,
 * which strict clients (Python websockets) refuse to parse.
 */
static int refuse(struct lws *wsi, unsigned code, const char *why)
{
    unsigned char buf[LWS_PRE + 1024];
    char *p = (char *)buf + LWS_PRE;
    size_t cap = sizeof(buf) - LWS_PRE;
    int n = snprintf(p, cap,
                     "HTTP/1.1 %u %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                     "content-length: %zu\r\nconnection: close\r\n\r\n%s\n",
                     code, status_text(code), strlen(why) + 1, why);
    if (n < 0 || (size_t)n >= cap) return -1;
    lws_write(wsi, (unsigned char *)p, (size_t)n, LWS_WRITE_HTTP_HEADERS);
    return -1; /* hang up: the response is out */
}

/*
 * LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: path, Origin, subprotocol, then the
 * core's on_handshake. On acceptance a connection is made and bound to the
 * wsi; it gets its id now so the core can key its per-connection state on
 * it from on_handshake on.
 */
static int server_confirm_upgrade(ws_inst_t *inst, struct lws *wsi)
{
    struct sockaddr_storage local;
    ws_listener_t *l = listener_of(inst, wsi, &local);
    char *uri = NULL, *origin = NULL, *offered = NULL, *host = NULL;
    const char *why_not;
    hs_build_t b = {0};
    int rc = 0;
    hdr_dup(wsi, WSI_TOKEN_GET_URI, &uri);
    hdr_dup(wsi, WSI_TOKEN_ORIGIN, &origin);
    hdr_dup(wsi, WSI_TOKEN_PROTOCOL, &offered);
    hdr_dup(wsi, WSI_TOKEN_HOST, &host);

    if (inst->closing_all) {
        rc = refuse(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "shutting down");
        goto out;
    }
    if (inst->o->max_connections > 0) {
        pthread_mutex_lock(&inst->lock);
        bool full = inst->nserver >= (size_t)inst->o->max_connections;
        pthread_mutex_unlock(&inst->lock);
        if (full) {
            rc = refuse(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "too many connections");
            goto out;
        }
    }
    if (l == NULL) { /* a socket lws bound late, after listen() reported it failed */
        rc = refuse(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "listener not started");
        goto out;
    }
    if (uri == NULL || (l->path && strcmp(l->path, uri) != 0)) {
        rc = refuse(wsi, HTTP_STATUS_NOT_FOUND, "no WebSocket endpoint at this path");
        goto out;
    }
    if ((why_not = host_origin_refusal(inst, l, &local, host, origin)) != NULL) {
        log_refusal(inst, wsi, HTTP_STATUS_FORBIDDEN, why_not, host, origin);
        rc = refuse(wsi, HTTP_STATUS_FORBIDDEN, why_not);
        goto out;
    }
    const char *sub = pick_subprotocol(inst, offered);
    if (sub == NULL || (*sub == '\0' && inst->o->require_subprotocol)) {
        rc = refuse(wsi, HTTP_STATUS_BAD_REQUEST, "no supported subprotocol offered");
        goto out;
    }

    collect_query(wsi, &b);
    hs_collect_headers(inst, wsi, &b);

    char peer[80];
    peer_address(wsi, peer, sizeof(peer));
    unsigned char *der = NULL;
    int der_len = 0;
    SSL *ssl = lws_get_ssl(wsi);
    if (ssl) {
        X509 *x = SSL_get_peer_certificate(ssl);
        if (x) {
            der_len = i2d_X509(x, &der);
            X509_free(x);
            if (der_len < 0) der_len = 0;
        }
    }

    ws_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL) abort();
    c->inst = inst;
    c->id = atomic_fetch_add(&inst->next_id, 1);
    c->ev = &inst->listen_ev;
    c->max_message = (uint64_t)inst->o->max_message_size;
    c->subprotocol = *sub ? xstrdup(sub) : NULL;
    if (inst->o->permessage_deflate) {
        char ext[256];
        c->deflate = lws_hdr_copy(wsi, ext, sizeof(ext), WSI_TOKEN_EXTENSIONS) > 0 &&
                     strstr(ext, "permessage-deflate") != NULL;
    }

    ksock_handshake_t hs = {
        .size = sizeof(hs),
        .path = uri,
        .query = b.q.len ? b.q.data : NULL,
        .headers = b.h,
        .nheaders = b.n,
        .peer_addr = peer,
        .subprotocol = c->subprotocol,
        .origin = origin,
        .client_cert_der = der,
        .client_cert_len = (size_t)der_len,
    };
    char why[256] = "";
    int hrc = 0;
    if (inst->listen_ev.on_handshake)
        hrc = inst->listen_ev.on_handshake(inst->listen_ev.data, c->id, &hs, &c->conn_data, why,
                                           sizeof(why));
    OPENSSL_free(der);
    if (hrc != 0) {
        unsigned code = hrc == KSOCK_E_AUTH        ? HTTP_STATUS_UNAUTHORIZED
                        : hrc == KSOCK_E_FORBIDDEN ? HTTP_STATUS_FORBIDDEN
                                                   : HTTP_STATUS_BAD_REQUEST;
        conn_free(c);
        rc = refuse(wsi, code, why[0] ? why : ksock_strerror(hrc));
        goto out;
    }
    c->wsi = wsi;
    c->counted = true;
    lws_set_opaque_user_data(wsi, c);
    pthread_mutex_lock(&inst->lock);
    table_insert(inst, c);
    inst->nwsi++;
    pthread_mutex_unlock(&inst->lock);
out:
    hs_free(&b);
    free(uri);
    free(origin);
    free(offered);
    free(host);
    return rc;
}

/* ---- lws thread: client connect --------------------------------------- */

static bool str_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

/*
 * lws keeps TLS client settings per vhost: one client vhost per distinct
 * (CA, certificate, key), made on first use and kept until the context goes.
 */
static struct lws_vhost *client_vhost(ws_inst_t *inst, const char *ca_file, const char *cert_file,
                                      const char *key_file)
{
    size_t n = 0;
    for (ws_client_vhost_t *v = inst->client_vhosts; v; v = v->next, n++)
        if (str_eq(v->ca_file, ca_file) && str_eq(v->cert_file, cert_file) &&
            str_eq(v->key_file, key_file))
            return v->vh;
    ws_client_vhost_t *v = calloc(1, sizeof(*v));
    if (v == NULL) abort();
    v->ca_file = xstrdup(ca_file);
    v->cert_file = xstrdup(cert_file);
    v->key_file = xstrdup(key_file);
    snprintf(v->name, sizeof(v->name), "ksock-client-%zu", n);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = inst->client_protocols;
    info.vhost_name = v->name;
    info.client_ssl_ca_filepath = v->ca_file;
    info.client_ssl_cert_filepath = v->cert_file;
    info.client_ssl_private_key_filepath = v->key_file;
    /* lws 4.1 sets up a vhost's TLS only when the vhost's own options ask for it. */
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.connect_timeout_secs = (unsigned)((inst->o->connect_timeout + 999) / 1000);
    info.timeout_secs = info.connect_timeout_secs;
    info.ssl_client_options_set =
        SSL_OP_NO_SSLv2 | SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1;
    if (inst->o->permessage_deflate) info.extensions = ws_extensions;
    info.user = inst;
    struct lws_vhost *vh = lws_create_vhost(inst->ctx, &info);
    if (vh == NULL) {
        free(v->ca_file);
        free(v->cert_file);
        free(v->key_file);
        free(v);
        return NULL;
    }
    v->vh = vh;
    v->next = inst->client_vhosts;
    inst->client_vhosts = v;
    return vh;
}

static void client_start(ws_inst_t *inst, ws_conn_t *c)
{
    char *u = xstrdup(c->url);
    const char *prot = NULL, *addr = NULL, *path = NULL;
    int port = 0;
    char pathbuf[2048];
    if (lws_parse_uri(u, &prot, &addr, &port, &path) != 0 || addr == NULL || *addr == '\0') {
        free(u);
        conn_finish(c, NULL, 1006, "malformed URL", KSOCK_E_INVAL);
        return;
    }
    bool tls = strcmp(prot, "wss") == 0 || strcmp(prot, "https") == 0;
    snprintf(pathbuf, sizeof(pathbuf), "/%s", path ? path : "");
    struct lws_vhost *vh = client_vhost(inst, c->ca_file, c->cert_file, c->key_file);
    if (vh == NULL) {
        free(u);
        conn_finish(c, NULL, 1006,
                    c->cert_file ? "cannot set up TLS with this CA file, client certificate and key"
                                 : "cannot set up TLS for the CA file",
                    KSOCK_E_TLS);
        return;
    }
    struct lws_client_connect_info i;
    memset(&i, 0, sizeof(i));
    i.context = inst->ctx;
    i.vhost = vh;
    i.address = addr;
    i.port = port;
    i.path = pathbuf;
    i.host = addr;
    i.origin = NULL;
    i.protocol = c->sub_req && *c->sub_req ? c->sub_req : NULL;
    i.local_protocol_name = WS_CLIENT_PROTOCOL;
    i.opaque_user_data = c;
    i.retry_and_idle_policy = &inst->retry;
    if (tls) {
        i.ssl_connection = LCCSCF_USE_SSL;
        if (c->insecure)
            i.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                                LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE;
    }
    /*
     * lws may call CLIENT_CONNECTION_ERROR before returning (and then
     * return NULL or not). in_start keeps c alive until we are done with it.
     */
    c->in_start = true;
    struct lws *w = lws_client_connect_via_info(&i);
    c->in_start = false;
    free(u);
    if (c->deferred_close) {
        ws_event_t *e = c->deferred_close;
        c->deferred_close = NULL;
        event_push(inst, e); /* c may be freed from here on */
        return;
    }
    if (w == NULL) {
        conn_finish(c, NULL, 1006, "connect failed", KSOCK_E_CONNREFUSED);
        return;
    }
    c->wsi = w;
}

static int map_client_error(struct lws *wsi, const char *msg)
{
    unsigned status = wsi ? lws_http_client_http_response(wsi) : 0;
    if (status == 401 || (msg && strstr(msg, "unauthorized"))) return KSOCK_E_AUTH;
    if (status == 403) return KSOCK_E_FORBIDDEN;
    if (msg == NULL) return KSOCK_E_CLOSED;
    if (strstr(msg, "refused") || strstr(msg, "connect failed")) return KSOCK_E_CONNREFUSED;
    if (strstr(msg, "timeout") || strstr(msg, "timed out")) return KSOCK_E_TIMEDOUT;
    if (strstr(msg, "DNS") || strstr(msg, "resolve") || strstr(msg, "getaddrinfo"))
        return KSOCK_E_RESOLVE;
    if (strstr(msg, "SSL") || strstr(msg, "tls") || strstr(msg, "TLS") || strstr(msg, "cert") ||
        strstr(msg, "CA "))
        return KSOCK_E_TLS;
    if (strstr(msg, "HS:")) return KSOCK_E_PROTO;
    return KSOCK_E_CONNREFUSED;
}

/* ---- lws thread: wake-ups ---------------------------------------------- */

static void on_wait_cancelled(ws_inst_t *inst)
{
    rx_resume(inst);
    pthread_mutex_lock(&inst->lock);
    ws_call_fn fn = inst->call_fn;
    void *arg = inst->call_arg;
    inst->call_fn = NULL;
    if (fn) {
        /* Run without the lock: vhost creation calls back into ws_callback. */
        pthread_mutex_unlock(&inst->lock);
        fn(inst, arg);
        pthread_mutex_lock(&inst->lock);
        inst->call_done = true;
        pthread_cond_broadcast(&inst->cond);
    }
    bool closing = inst->closing_all;
    if (closing) {
        /*
         * Ask every connection to close with 1001 after its queue drains,
         * reading it meanwhile: lws closes a connection that has unread
         * input without waiting for the peer's close, and the reset that
         * follows can destroy the replies and the close frame on their way.
         */
        for (size_t s = 0; s < inst->tcap; s++)
            for (ws_conn_t *c = inst->table[s]; c; c = c->hnext) {
                if (c->wsi) rx_unthrottle(inst, c, c->wsi);
                if (!c->close_req) {
                    c->close_req = true;
                    c->close_code = LWS_CLOSE_STATUS_GOINGAWAY;
                    snprintf(c->close_reason, sizeof(c->close_reason), "server shutting down");
                }
                pending_add(inst, c);
            }
    }
    /* Take the whole list; entries may be re-added while we work. */
    ws_conn_t *list = inst->pending;
    if (list) list->pprev = &list;
    inst->pending = NULL;
    while (list) {
        ws_conn_t *c = list;
        pending_del(c);
        bool connect = c->connect_req;
        c->connect_req = false;
        pthread_mutex_unlock(&inst->lock);
        if (connect && closing)
            conn_finish(c, NULL, 1001, "transport stopped", KSOCK_E_CANCELED);
        else if (connect)
            client_start(inst, c);
        else if (c->wsi)
            lws_callback_on_writable(c->wsi);
        pthread_mutex_lock(&inst->lock);
    }
    pthread_mutex_unlock(&inst->lock);
}

/* ---- The protocol callback --------------------------------------------- */

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    ws_inst_t *inst = lws_context_user(lws_get_context(wsi));
    ws_conn_t *c = lws_get_opaque_user_data(wsi);
    bool gone = (void *)c == WS_GONE;
    (void)user;
    if (gone) c = NULL;

    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        /* lws 4.1 runs its own libev loop inside lws_service() until the loop is broken;
         * a first lws_context_destroy() on this thread breaks it (ws_stop finishes it). */
        if (inst->o->event_lib == 1 && atomic_load(&inst->quit)) {
            /* It cancels the service again: destroy once (quit 1 -> 2). */
            if (atomic_exchange(&inst->quit, 2) == 1) lws_context_destroy(lws_get_context(wsi));
            return 0;
        }
        on_wait_cancelled(inst);
        return 0;

    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        if (in == NULL || strcasecmp((const char *)in, "websocket") != 0)
            return refuse(wsi, HTTP_STATUS_BAD_REQUEST, "only WebSocket upgrades");
        return server_confirm_upgrade(inst, wsi);

    case LWS_CALLBACK_HTTP:
        /* Plain HTTP on a WebSocket endpoint. */
        return refuse(wsi, 426, "WebSocket upgrade required");

    case LWS_CALLBACK_ESTABLISHED:
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (c == NULL) return -1;
        c->opened = true;
        c->last_rx_ns = ksock_now_ns();
        {
            const char *sp = c->client ? c->sub_req : c->subprotocol;
            ws_event_t *e = event_new(EV_OPEN, c, NULL, 0);
            e->str = sp && *sp ? xstrdup(sp) : NULL;
            event_push(inst, e);
        }
        /* Frames queued before the connection opened. */
        lws_callback_on_writable(wsi);
        return 0;

    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
        if (c == NULL) return 0;
        unsigned char **p = (unsigned char **)in, *end = (*p) + len;
        for (size_t i = 0; i < c->nheaders; i++) {
            char name[128];
            snprintf(name, sizeof(name), "%s:", c->headers[i].name);
            if (lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                            (const unsigned char *)c->headers[i].value,
                                            (int)strlen(c->headers[i].value), p, end))
                return -1;
        }
        return 0;
    }

    case LWS_CALLBACK_RECEIVE:
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (c == NULL) return -1;
        return conn_receive(inst, c, wsi, in, len);

    case LWS_CALLBACK_RECEIVE_PONG:
    case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
        if (c) c->last_rx_ns = ksock_now_ns();
        return 0;

    case LWS_CALLBACK_SERVER_WRITEABLE:
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (c == NULL) return 0;
        return conn_write(inst, c, wsi);

    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (c && !c->local_closed) return conn_peer_close(c, wsi, in, len);
        return 0;

    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (c) {
            int err = map_client_error(wsi, in);
            char why[200];
            snprintf(why, sizeof(why), "%s", in ? (const char *)in : "connection failed");
            conn_finish(c, wsi, 1006, why, err);
        }
        return 0;

    case LWS_CALLBACK_CLOSED:
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (c) conn_closed(c, wsi);
        return 0;

    case LWS_CALLBACK_WSI_DESTROY: {
        /* The last word on any wsi: covers upgrades that failed after acceptance. */
        bool counted = gone || (c && c->counted); /* read before c may be freed */
        if (c) conn_closed(c, wsi);
        if (counted) {
            pthread_mutex_lock(&inst->lock);
            if (--inst->nwsi == 0 && inst->closing_all) pthread_cond_broadcast(&inst->cond);
            pthread_mutex_unlock(&inst->lock);
        }
        return 0;
    }

    default:
        return 0;
    }
}

/* ---- The service thread ------------------------------------------------ */

static void *service_main(void *arg)
{
    ws_inst_t *inst = arg;
    while (!atomic_load(&inst->quit))
        if (lws_service(inst->ctx, 0) < 0) break;
    return NULL;
}

/*
 * Loop thread, libev only. lws 4.1.6's libev glue re-arms its timer with
 * ev_timer_set() on a watcher that may be active already, which libev
 * ignores: a timeout set while a later one is pending (the handshake
 * timeout of a newly accepted socket, say) does not fire until something
 * else wakes the loop. Every wake-up runs lws's idle callback, which
 * services every ripe timeout; so we wake it on a short period. The cost
 * is one pipe write per tick.
 */
static void tick_cb(ksock_timer_t *t, void *data)
{
    (void)t;
    ws_inst_t *inst = data;
    lws_cancel_service(inst->ctx);
}

static int thread_start(ws_inst_t *inst, char *errstr, size_t errstr_size)
{
    if (inst->thread_running) return 0;
    if (inst->o->event_lib == 1 && inst->tick == NULL) {
        int trc = ksock_timer_init(inst->rt, &inst->tick, tick_cb, inst);
        if (trc == 0) trc = ksock_timer_start(inst->tick, WS_TICK_MS, WS_TICK_MS);
        if (trc != 0) {
            ksock_errstr_set(errstr, errstr_size, "cannot start the libev wake-up timer");
            return trc;
        }
    }
    int rc = pthread_create(&inst->thread, NULL, service_main, inst);
    if (rc != 0) {
        ksock_errstr_set(errstr, errstr_size, "cannot start the WebSocket thread: %s",
                         strerror(rc));
        return KSOCK_E_INTERNAL;
    }
    inst->thread_running = true;
    return 0;
}

/* ---- Listeners ---------------------------------------------------------- */

/*
 * A listener's address, resolved once, here: a literal is itself, a host
 * name every address it has. Each gets a socket of its own, so the same
 * address and port twice (in one listener or two) is refused.
 */
static int resolve_listener(ws_inst_t *inst, ws_listener_t *l, char *errstr, size_t errstr_size)
{
    ws_addr_t *v = NULL;
    size_t n = 0;
    char why[300];
    int rc = ws__resolve(l->address ? l->address : "0.0.0.0", &v, &n, why, sizeof(why));
    if (rc != 0) {
        ksock_errstr_set(errstr, errstr_size, "listeners[%zu]: %s", l->index, why);
        return KSOCK_E_CONFIG;
    }
    l->socks = calloc(n, sizeof(*l->socks));
    if (l->socks == NULL) abort();
    for (size_t k = 0; k < n; k++) {
        l->socks[k].addr = v[k];
        l->socks[k].fd = -1;
    }
    l->nsocks = n;
    free(v);
    for (size_t j = 0; l->port != 0 && j < l->index; j++) {
        const ws_listener_t *o = &inst->listeners[j];
        for (size_t a = 0; o->port == l->port && a < o->nsocks; a++)
            for (size_t b = 0; b < l->nsocks; b++)
                if (ws__addr_eq((struct sockaddr *)&o->socks[a].addr.ss,
                                (struct sockaddr *)&l->socks[b].addr.ss)) {
                    char as[INET6_ADDRSTRLEN];
                    ws__addr_str((struct sockaddr *)&l->socks[b].addr.ss, false, as, sizeof(as));
                    ksock_errstr_set(errstr, errstr_size,
                                     "listeners[%zu]: %s port %d is already listeners[%zu]",
                                     l->index, as, l->port, j);
                    return KSOCK_E_CONFIG;
                }
    }
    return 0;
}

static int parse_listeners(ws_inst_t *inst, const ksock_plugin_ctx_t *ctx, char *errstr,
                           size_t errstr_size)
{
    const ksock_cfg_t *arr = inst->o->listeners;
    size_t n = arr ? ksock_cfg_count(arr) : 0;
    inst->listeners = calloc(n ? n : 1, sizeof(*inst->listeners));
    if (inst->listeners == NULL) return KSOCK_E_NOMEM;
    inst->nlisteners_alloc = n;
    for (size_t i = 0; i < n; i++) {
        const ksock_cfg_t *e = ksock_cfg_at(arr, i, NULL);
        ws_listener_t *l = &inst->listeners[i];
        l->inst = inst;
        l->index = i;
        if (ksock_cfg_type(e) != KSOCK_CFG_OBJECT) {
            ksock_errstr_set(errstr, errstr_size,
                             "line %d: listeners[%zu]: expected an object {address, port, path}",
                             ksock_cfg_line(e), i);
            return KSOCK_E_CONFIG;
        }
        for (size_t k = 0; k < ksock_cfg_count(e); k++) {
            const char *key = NULL;
            const ksock_cfg_t *v = ksock_cfg_at(e, k, &key);
            if (strcmp(key, "address") == 0 && ksock_cfg_type(v) == KSOCK_CFG_STRING)
                l->address = xstrdup(ksock_cfg_string(v));
            else if (strcmp(key, "path") == 0 && ksock_cfg_type(v) == KSOCK_CFG_STRING)
                l->path = xstrdup(ksock_cfg_string(v));
            else if (strcmp(key, "port") == 0 && ksock_cfg_type(v) == KSOCK_CFG_INT &&
                     ksock_cfg_int(v) >= 0 && ksock_cfg_int(v) <= 65535)
                l->port = (int)ksock_cfg_int(v) ? (int)ksock_cfg_int(v) : -2;
            else {
                ksock_errstr_set(errstr, errstr_size, "line %d: listeners[%zu]: key \"%s\": %s",
                                 ksock_cfg_line(v), i, key,
                                 strcmp(key, "address") && strcmp(key, "path") &&
                                         strcmp(key, "port")
                                     ? "unknown key (expected address, port, path)"
                                     : "wrong type or out of range");
                return KSOCK_E_CONFIG;
            }
        }
        if (l->port == 0) {
            ksock_errstr_set(errstr, errstr_size, "line %d: listeners[%zu]: \"port\" is required",
                             ksock_cfg_line(e), i);
            return KSOCK_E_CONFIG;
        }
        if (l->port == -2) l->port = 0; /* 0 asks the kernel for a port */
        if (l->path && (strcmp(l->path, "/") == 0 || *l->path == '\0')) {
            free(l->path);
            l->path = NULL;
        }
        inst->nlisteners++;
        int rc = resolve_listener(inst, l, errstr, errstr_size);
        if (rc != 0) return rc;
    }
    (void)ctx;
    return 0;
}

/* "listeners[0] (\"localhost\" port 8080)": how messages name a listener. */
static void listener_name(const ws_listener_t *l, char *out, size_t n)
{
    snprintf(out, n, "listeners[%zu] (\"%s\" port %d)", l->index,
             l->address ? l->address : "0.0.0.0", l->port);
}

/*
 * One vhost for one address of a listener. The address goes to lws as a
 * numeric string with its family pinned (see ws_listen.c for why); the
 * bind is tried first with a socket of our own, so a failure has its
 * errno, and afterwards the socket lws made is found and kept.
 */
static int create_sock_vhost(ws_inst_t *inst, ws_listener_t *l, ws_sock_t *sk, char *errstr,
                             size_t errstr_size)
{
    const ws_opts_t *o = inst->o;
    char lname[320], why[300];
    char *ip = sk->iface;
    listener_name(l, lname, sizeof(lname));
    int port = l->port;
    int rc = ws__bind_probe(&sk->addr, l->port, &port, why, sizeof(why));
    if (rc != 0) {
        ksock_errstr_set(errstr, errstr_size, "%s: %s", lname, why);
        return rc;
    }
    l->port = port; /* port 0: every address of the listener gets the first one's port */
    struct sockaddr *sa = (struct sockaddr *)&sk->addr.ss;
    ws__addr_str(sa, false, ip, sizeof(sk->iface));
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    char name[128];
    snprintf(name, sizeof(name), "ksock-%s-%d", ip, port);
    free(sk->vhost_name);
    sk->vhost_name = xstrdup(name);
    info.vhost_name = sk->vhost_name;
    info.port = port;
    info.iface = ip;
    info.protocols = inst->server_protocols;
    info.user = l;
    /* UTF-8 is checked by conn_receive. */
    info.options = sa->sa_family == AF_INET
                       ? LWS_SERVER_OPTION_DISABLE_IPV6
                       : LWS_SERVER_OPTION_IPV6_V6ONLY_MODIFY | LWS_SERVER_OPTION_IPV6_V6ONLY_VALUE;
    if (o->tls_cert) info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.timeout_secs = (unsigned)((o->handshake_timeout + 999) / 1000);
    info.timeout_secs_ah_idle = info.timeout_secs;
    info.keepalive_timeout = (int)info.timeout_secs;
    info.retry_and_idle_policy = &inst->retry;
    if (o->permessage_deflate) info.extensions = ws_extensions;
    if (o->tls_cert) {
        info.ssl_cert_filepath = o->tls_cert;
        info.ssl_private_key_filepath = o->tls_key;
        info.ssl_ca_filepath = o->tls_ca;
        /* TLS 1.2 and 1.3 only. */
        info.ssl_options_set =
            SSL_OP_NO_SSLv2 | SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1;
        if (o->tls_client_cert >= 1)
            info.options |= LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT;
        if (o->tls_client_cert == 1) info.options |= LWS_SERVER_OPTION_PEER_CERT_NOT_REQUIRED;
    }
    sk->vh = lws_create_vhost(inst->ctx, &info);
    if (sk->vh == NULL) {
        ksock_errstr_set(errstr, errstr_size, "%s: cannot listen on %s port %d%s", lname, ip, port,
                         o->tls_cert ? " (or the TLS setup failed)" : " (address in use?)");
        return KSOCK_E_IO;
    }
    /*
     * lws 4.1 returns a vhost even when it bound nothing (it retries every
     * 30 s): only a socket listening on exactly this address counts.
     */
    sk->fd = ws__find_listen_fd(&sk->addr);
    if (sk->fd < 0) {
        ksock_errstr_set(errstr, errstr_size,
                         "%s: libwebsockets did not bind %s port %d (set KSOCK_WS_LWS_LOG=15 "
                         "to see why)",
                         lname, ip, port);
        return KSOCK_E_IO;
    }
    struct sockaddr_storage got;
    socklen_t gl = sizeof(got);
    if (getsockname(sk->fd, (struct sockaddr *)&got, &gl) == 0) memcpy(&sk->addr.ss, &got, gl);
    return 0;
}

static int create_listener_vhost(ws_inst_t *inst, ws_listener_t *l, char *errstr,
                                 size_t errstr_size)
{
    for (size_t k = 0; k < l->nsocks; k++) {
        int rc = create_sock_vhost(inst, l, &l->socks[k], errstr, errstr_size);
        if (rc != 0) return rc;
    }
    return 0;
}

/* ---- Vtable ------------------------------------------------------------- */

static void lws_log_to_nowhere(int level, const char *line)
{
    (void)level;
    (void)line;
}

static int ws_create(const ksock_plugin_ctx_t *ctx, const void *options, void **out, char *errstr,
                     size_t errstr_size)
{
    const ws_opts_t *o = options;
    if ((o->tls_cert == NULL) != (o->tls_key == NULL)) {
        ksock_errstr_set(errstr, errstr_size, "tls_cert and tls_key go together");
        return KSOCK_E_CONFIG;
    }
    if (o->tls_client_cert && o->tls_ca == NULL) {
        ksock_errstr_set(errstr, errstr_size, "tls_client_cert \"%s\" needs tls_ca",
                         client_cert_modes[o->tls_client_cert]);
        return KSOCK_E_CONFIG;
    }
    if (o->idle_timeout && o->ping_interval && o->idle_timeout <= o->ping_interval) {
        ksock_errstr_set(errstr, errstr_size, "idle_timeout must exceed ping_interval");
        return KSOCK_E_CONFIG;
    }
    if (o->tls_cert) {
        int rc = ws__tls_check(o->tls_cert, o->tls_key, o->tls_ca, NULL, errstr, errstr_size);
        if (rc != 0) return rc;
    }
    ws_inst_t *inst = calloc(1, sizeof(*inst));
    if (inst == NULL) return KSOCK_E_NOMEM;
    inst->rt = ctx->rt;
    inst->component = ctx->component;
    inst->o = o;
    atomic_init(&inst->refs, 1);
    atomic_init(&inst->next_id, 1);
    pthread_mutex_init(&inst->lock, NULL);
    pthread_mutex_init(&inst->evlock, NULL);
    pthread_cond_init(&inst->cond, NULL);
    int rc = parse_listeners(inst, ctx, errstr, errstr_size);
    if (rc != 0) {
        *out = inst;
        return rc; /* destroy is not called on failure: */
    }

    inst->retry.secs_since_valid_ping = (uint16_t)((o->ping_interval + 999) / 1000);
    inst->retry.secs_since_valid_hangup = (uint16_t)((o->idle_timeout + 999) / 1000);
    if (inst->retry.secs_since_valid_ping == 0) inst->retry.secs_since_valid_ping = 0xffff;
    if (inst->retry.secs_since_valid_hangup == 0) inst->retry.secs_since_valid_hangup = 0xffff;

    size_t np = o->subprotocols.n;
    inst->server_protocols = calloc(np + 2, sizeof(struct lws_protocols));
    if (inst->server_protocols == NULL) abort();
    /* protocols[0] also serves HTTP and "no subprotocol offered" upgrades. */
    inst->server_protocols[0] = (struct lws_protocols){
        "ksock-default", ws_callback, 0, (size_t)o->rx_buffer_size, 0, NULL, 0};
    for (size_t i = 0; i < np; i++)
        inst->server_protocols[i + 1] = (struct lws_protocols){
            o->subprotocols.v[i], ws_callback, 0, (size_t)o->rx_buffer_size, 0, NULL, 0};
    inst->client_protocols[0] = (struct lws_protocols){
        WS_CLIENT_PROTOCOL, ws_callback, 0, (size_t)o->rx_buffer_size, 0, NULL, 0};

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    if (o->event_lib == 1) info.options |= LWS_SERVER_OPTION_LIBEV;
    info.user = inst;
    info.count_threads = 1;
    /* Room for the upgrade request headers of a token-carrying client. */
    info.max_http_header_data = WS_MAX_REQUEST_HEADERS;
    info.pt_serv_buf_size = 16384;
    info.protocols = inst->client_protocols;
    inst->ctx = lws_create_context(&info);
    if (inst->ctx == NULL) {
        if (o->event_lib == 1)
            ksock_errstr_set(errstr, errstr_size,
                             "cannot create the libwebsockets context with event_lib \"libev\" "
                             "(is Debian's libwebsockets-evlib-ev installed? event_lib \"poll\" "
                             "needs nothing more)");
        else
            ksock_errstr_set(errstr, errstr_size, "cannot create the libwebsockets context");
        *out = inst;
        return KSOCK_E_INTERNAL;
    }
    /* The default client vhost now: wake-ups need at least one vhost to land on. */
    if (client_vhost(inst, NULL, NULL, NULL) == NULL) {
        ksock_errstr_set(errstr, errstr_size, "cannot create the client vhost");
        *out = inst;
        return KSOCK_E_INTERNAL;
    }
    *out = inst;
    return 0;
}

/* Run fn on the lws thread (directly when it is not running) and wait. */
static void ws_call(ws_inst_t *inst, ws_call_fn fn, void *arg)
{
    if (!inst->thread_running) {
        fn(inst, arg);
        return;
    }
    pthread_mutex_lock(&inst->lock);
    inst->call_fn = fn;
    inst->call_arg = arg;
    inst->call_done = false;
    pthread_mutex_unlock(&inst->lock);
    lws_cancel_service(inst->ctx);
    pthread_mutex_lock(&inst->lock);
    while (!inst->call_done)
        pthread_cond_wait(&inst->cond, &inst->lock);
    pthread_mutex_unlock(&inst->lock);
}

typedef struct {
    int rc;
    char *errstr;
    size_t errstr_size;
} listen_call_t;

static void listen_on_thread(ws_inst_t *inst, void *arg)
{
    listen_call_t *lc = arg;
    for (size_t i = 0; i < inst->nlisteners && lc->rc == 0; i++)
        lc->rc = create_listener_vhost(inst, &inst->listeners[i], lc->errstr, lc->errstr_size);
}

static int ws_listen(void *p, const ksock_transport_events_t *ev, char *errstr, size_t errstr_size)
{
    ws_inst_t *inst = p;
    if (inst->listening) {
        ksock_errstr_set(errstr, errstr_size, "already listening");
        return KSOCK_E_STATE;
    }
    if (inst->nlisteners == 0) {
        ksock_errstr_set(errstr, errstr_size, "no listeners configured");
        return KSOCK_E_CONFIG;
    }
    memset(&inst->listen_ev, 0, sizeof(inst->listen_ev));
    memcpy(&inst->listen_ev, ev,
           ev->size < sizeof(inst->listen_ev) ? ev->size : sizeof(inst->listen_ev));
    listen_call_t lc = {0, errstr, errstr_size};
    if (inst->thread_running) {
        /* Vhost creation is not thread-safe: lock out the callback path meanwhile. */
        ws_call(inst, listen_on_thread, &lc);
    } else {
        listen_on_thread(inst, &lc);
    }
    if (lc.rc != 0) return lc.rc;
    inst->listening = true;
    /* What the kernel bound (getsockname), not what the config said. */
    for (size_t i = 0; i < inst->nlisteners; i++) {
        ws_listener_t *l = &inst->listeners[i];
        for (size_t k = 0; k < l->nsocks; k++) {
            char hp[INET6_ADDRSTRLEN + 10], ip[INET6_ADDRSTRLEN];
            const struct sockaddr *sa = (const struct sockaddr *)&l->socks[k].addr.ss;
            ws__addr_str(sa, true, hp, sizeof(hp));
            ws__addr_str(sa, false, ip, sizeof(ip));
            ksock_kv_t kv[] = {KSOCK_KV_STR("address", ip), KSOCK_KV_I64("port", l->port),
                               KSOCK_KV_STR("path", l->path ? l->path : "/"),
                               KSOCK_KV_BOOL("tls", inst->o->tls_cert != NULL),
                               KSOCK_KV_STR("configured", l->address ? l->address : "0.0.0.0")};
            ksock_log(inst->rt, KSOCK_LOG_INFO, inst->component, kv, 5, "listening on %s://%s%s",
                      inst->o->tls_cert ? "wss" : "ws", hp, l->path ? l->path : "/");
        }
    }
    return thread_start(inst, errstr, errstr_size);
}

static int ws_connect(void *p, const ksock_connect_opts_t *opts, const ksock_transport_events_t *ev,
                      void *conn_data, ksock_conn_id_t *id, char *errstr, size_t errstr_size)
{
    ws_inst_t *inst = p;
    if (opts == NULL || opts->url == NULL ||
        (strncmp(opts->url, "ws://", 5) != 0 && strncmp(opts->url, "wss://", 6) != 0)) {
        ksock_errstr_set(errstr, errstr_size, "URL must start with ws:// or wss://");
        return KSOCK_E_INVAL;
    }
    if (inst->closing_all) {
        ksock_errstr_set(errstr, errstr_size, "transport stopped");
        return KSOCK_E_STATE;
    }
    ws_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL) return KSOCK_E_NOMEM;
    c->inst = inst;
    c->client = true;
    c->conn_data = conn_data;
    memcpy(&c->own_ev, ev, ev->size < sizeof(c->own_ev) ? ev->size : sizeof(c->own_ev));
    c->ev = &c->own_ev;
    c->url = xstrdup(opts->url);
    c->sub_req = xstrdup(opts->subprotocol);
    c->ca_file = xstrdup(opts->ca_file);
    c->insecure = opts->insecure;
    if (KSOCK_HAS_FIELD(opts, ksock_connect_opts_t, key_file)) {
        if ((opts->cert_file == NULL) != (opts->key_file == NULL)) {
            ksock_errstr_set(errstr, errstr_size, "a client certificate needs its key, and back");
            conn_free(c);
            return KSOCK_E_INVAL;
        }
        static const ws_tls_names_t names = {"client certificate", "client key", "CA file"};
        int trc = opts->cert_file ? ws__tls_check(opts->cert_file, opts->key_file, NULL, &names,
                                                  errstr, errstr_size)
                                  : 0;
        if (trc != 0) {
            conn_free(c);
            return trc;
        }
        c->cert_file = xstrdup(opts->cert_file);
        c->key_file = xstrdup(opts->key_file);
    }
    c->max_message =
        opts->max_message_size ? opts->max_message_size : (uint64_t)inst->o->max_message_size;
    if (opts->nheaders) {
        c->headers = calloc(opts->nheaders, sizeof(*c->headers));
        if (c->headers == NULL) abort();
        for (size_t i = 0; i < opts->nheaders; i++) {
            c->headers[i].name = xstrdup(opts->headers[i].name);
            c->headers[i].value = xstrdup(opts->headers[i].value);
        }
        c->nheaders = opts->nheaders;
    }
    c->id = atomic_fetch_add(&inst->next_id, 1);
    c->connect_req = true;
    pthread_mutex_lock(&inst->lock);
    table_insert(inst, c);
    pending_add(inst, c);
    pthread_mutex_unlock(&inst->lock);
    *id = c->id;
    int rc = thread_start(inst, errstr, errstr_size);
    if (rc != 0) {
        pthread_mutex_lock(&inst->lock);
        table_remove(inst, c);
        pending_del(c);
        pthread_mutex_unlock(&inst->lock);
        conn_free(c);
        return rc;
    }
    lws_cancel_service(inst->ctx);
    return 0;
}

static int ws_send(void *p, ksock_conn_id_t id, ksock_frame_t *frame)
{
    ws_inst_t *inst = p;
    size_t len = 0;
    ksock_frame_data(frame, &len);
    pthread_mutex_lock(&inst->lock);
    ws_conn_t *c = table_find(inst, id);
    if (c == NULL || c->gone || c->close_req) {
        pthread_mutex_unlock(&inst->lock);
        return KSOCK_E_CLOSED;
    }
    if (c->qlen > 0 && (c->qlen >= (size_t)inst->o->send_queue_max_frames ||
                        c->qbytes + len > (size_t)inst->o->send_queue_max_bytes)) {
        c->writable_owed = true;
        pthread_mutex_unlock(&inst->lock);
        return KSOCK_E_QUEUE_FULL;
    }
    int rc = queue_push(c, frame, len);
    bool wake = rc == 0 && pending_add(inst, c);
    pthread_mutex_unlock(&inst->lock);
    if (wake && inst->thread_running) lws_cancel_service(inst->ctx);
    return rc;
}

static int ws_close(void *p, ksock_conn_id_t id, int code, const char *reason)
{
    ws_inst_t *inst = p;
    if (code != 1000 && !(code >= 3000 && code <= 4999) &&
        !(code >= 1001 && code <= 1014 && code != 1004 && code != 1005 && code != 1006))
        return KSOCK_E_INVAL;
    pthread_mutex_lock(&inst->lock);
    ws_conn_t *c = table_find(inst, id);
    if (c == NULL || c->gone) {
        pthread_mutex_unlock(&inst->lock);
        return KSOCK_E_CLOSED;
    }
    bool wake = false;
    if (!c->close_req) {
        c->close_req = true;
        c->close_code = code;
        /* A close frame holds 123 bytes of reason; cut on a UTF-8 boundary. */
        size_t rl = reason ? strlen(reason) : 0;
        if (rl > 123) {
            rl = 123;
            while (rl > 0 && ((unsigned char)reason[rl] & 0xC0) == 0x80)
                rl--;
        }
        memcpy(c->close_reason, reason ? reason : "", rl);
        c->close_reason[rl] = '\0';
        wake = pending_add(inst, c);
    }
    pthread_mutex_unlock(&inst->lock);
    if (wake && inst->thread_running) lws_cancel_service(inst->ctx);
    return 0;
}

static int ws_pause_read(void *p, ksock_conn_id_t id, bool paused)
{
    ws_inst_t *inst = p;
    pthread_mutex_lock(&inst->lock);
    ws_conn_t *c = table_find(inst, id);
    pthread_mutex_unlock(&inst->lock);
    /* c stays valid: only this thread frees it, after its close event. */
    if (c == NULL) return KSOCK_E_CLOSED;
    c->read_paused = paused;
    if (paused || c->held_head == NULL || c->rprev) return 0;
    c->rnext = inst->resumed;
    if (c->rnext) c->rnext->rprev = &c->rnext;
    inst->resumed = c;
    c->rprev = &inst->resumed;
    if (!inst->resume_posted) {
        atomic_fetch_add(&inst->refs, 1);
        if (ksock_runtime_post(inst->rt, deliver_held, inst) == 0)
            inst->resume_posted = true;
        else
            atomic_fetch_sub(&inst->refs, 1);
    }
    return 0;
}

static void ws_stop(void *p)
{
    ws_inst_t *inst = p;
    if (inst->ctx == NULL) return;
    if (inst->tick) {
        ksock_timer_close(inst->tick);
        inst->tick = NULL;
    }
    atomic_store(&inst->stopping, true);
    if (inst->thread_running) {
        pthread_mutex_lock(&inst->lock);
        inst->closing_all = true;
        pthread_mutex_unlock(&inst->lock);
        lws_cancel_service(inst->ctx);
        /* Give closing handshakes a moment; then tear down whatever is left. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        uint64_t ns = (uint64_t)until.tv_nsec + (uint64_t)inst->o->shutdown_grace * 1000000ull;
        until.tv_sec += (time_t)(ns / 1000000000ull);
        until.tv_nsec = (long)(ns % 1000000000ull);
        /*
         * Then for lws to let go of the sockets: it reports a connection
         * closed when it has sent its close frame, but reads on until the
         * peer's close; destroying the context before that resets a
         * connection the client still writes to, and the reset can destroy
         * the replies and the close frame the client has not read yet.
         */
        pthread_mutex_lock(&inst->lock);
        while (inst->tcount > 0 || inst->nwsi > 0)
            if (pthread_cond_timedwait(&inst->cond, &inst->lock, &until) != 0) break;
        pthread_mutex_unlock(&inst->lock);
        atomic_store(&inst->quit, 1);
        lws_cancel_service(inst->ctx);
        pthread_join(inst->thread, NULL);
        inst->thread_running = false;
    } else {
        pthread_mutex_lock(&inst->lock);
        inst->closing_all = true;
        pthread_mutex_unlock(&inst->lock);
    }
    /* Destroying the context closes every remaining wsi: their close events follow. */
    lws_context_destroy(inst->ctx);
    inst->ctx = NULL;
    /* Connections that never reached lws (connect not yet started). */
    for (;;) {
        ws_conn_t *left = NULL;
        pthread_mutex_lock(&inst->lock);
        for (size_t s = 0; s < inst->tcap && !left; s++)
            left = inst->table[s];
        pthread_mutex_unlock(&inst->lock);
        if (left == NULL) break;
        left->wsi = NULL;
        conn_finish(left, NULL, 1001, "transport stopped", KSOCK_E_CANCELED);
    }
}

static void inst_unref(ws_inst_t *inst)
{
    if (atomic_fetch_sub(&inst->refs, 1) != 1) return;
    pthread_mutex_lock(&inst->evlock);
    ws_event_t *e = inst->ev_head;
    inst->ev_head = inst->ev_tail = NULL;
    pthread_mutex_unlock(&inst->evlock);
    while (e) {
        ws_event_t *next = e->next;
        event_free(e);
        e = next;
    }
    for (size_t i = 0; i < inst->nlisteners_alloc; i++) {
        ws_listener_t *l = &inst->listeners[i];
        free(l->address);
        free(l->path);
        for (size_t k = 0; k < l->nsocks; k++)
            free(l->socks[k].vhost_name);
        free(l->socks);
    }
    free(inst->listeners);
    while (inst->client_vhosts) {
        ws_client_vhost_t *v = inst->client_vhosts;
        inst->client_vhosts = v->next;
        free(v->ca_file);
        free(v->cert_file);
        free(v->key_file);
        free(v);
    }
    free(inst->server_protocols);
    free(inst->table);
    free(inst->wbuf);
    pthread_mutex_destroy(&inst->lock);
    pthread_mutex_destroy(&inst->evlock);
    pthread_cond_destroy(&inst->cond);
    free(inst);
}

static void ws_destroy(void *p)
{
    ws_inst_t *inst = p;
    if (inst == NULL) return;
    ws_stop(inst);
    /* Events still queued are freed by the last drain (or right here). */
    inst->destroyed = true;
    inst_unref(inst);
}

/*
 * The loader does not call destroy when create fails, so a failed create
 * cleans up through this wrapper.
 */
static int ws_create_checked(const ksock_plugin_ctx_t *ctx, const void *options, void **out,
                             char *errstr, size_t errstr_size)
{
    void *inst = NULL;
    int rc = ws_create(ctx, options, &inst, errstr, errstr_size);
    if (rc != 0) {
        if (inst) ws_destroy(inst);
        *out = NULL;
        return rc;
    }
    *out = inst;
    return 0;
}

static int ws_plugin_init(char *errstr, size_t errstr_size)
{
    (void)errstr;
    (void)errstr_size;
    /*
     * libwebsockets logs process-wide to stderr; the transport reports what
     * matters itself. KSOCK_WS_LWS_LOG=<lws level mask> turns it on for debugging.
     */
    const char *dbg = getenv("KSOCK_WS_LWS_LOG");
    if (dbg)
        lws_set_log_level(atoi(dbg), NULL);
    else
        lws_set_log_level(0, lws_log_to_nowhere);
    return 0;
}

static const ksock_transport_vtable_t ws_vtable = {
    .size = sizeof(ksock_transport_vtable_t),
    .create = ws_create_checked,
    .destroy = ws_destroy,
    .listen = ws_listen,
    .connect = ws_connect,
    .send = ws_send,
    .close = ws_close,
    .stop = ws_stop,
    .pause_read = ws_pause_read,
};

static const ksock_plugin_desc_t ws_desc = {
    KSOCK_PLUGIN_HEADER(KSOCK_PLUGIN_TRANSPORT),
    .name = "ws",
    .version = "0.1.0",
    .description = "WebSocket (ws:// and wss://) server and client on libwebsockets, in a "
                   "service thread of its own",
    .options = ws_options,
    .options_struct_size = sizeof(ws_opts_t),
    .vtable = &ws_vtable,
    .init = ws_plugin_init,
};

KSOCK_PLUGIN_DEFINE(transport_ws, ws_desc)
