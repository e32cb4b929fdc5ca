/*
 * transport "ws": WebSocket server and client on libwebsockets 4.1.
 *
 * This file: the options table, create and destroy, the vtable entry
 * points (called on the core's loop thread) and the plugin descriptor.
 * How the loop thread and the lws thread share the work is described in
 * ws_internal.h; the other files are listed there.
 */
#include "ws_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const client_cert_modes[] = {"none", "optional", "required", NULL};
static const char *const event_libs[] = {"poll", "libev", NULL};

static const ksock_option_t ws_options[] = {
    KSOCK_OPTION("listeners", KSOCK_OPT_ARRAY, 0, NULL, ws_opts_t, listeners,
                 "Server sockets: an array of {\"address\": \"127.0.0.1\", \"port\": 8080, "
                 "\"path\": \"/ws\"}. address: an IPv4 or IPv6 literal, bound exactly "
                 "(0.0.0.0 or :: for all of one family), or a host name, resolved at start with "
                 "every address bound; default 0.0.0.0. path defaults to \"/\" (any path); "
                 "port is required (0: any free port). Empty or absent: client only."),
    KSOCK_OPTION("subprotocols", KSOCK_OPT_LIST, 0, "", ws_opts_t, subprotocols,
                 "Sec-WebSocket-Protocol names the server accepts; the first one the client "
                 "offers wins. ksock.v1.<name> selects the serializer <name>. Empty: what the "
                 "host serves (ksockd: ksock.v1.<name> for every serializer it loaded), or "
                 "ksock.v1.json, ksock.v1.msgpack and ksock.v1.protobuf for a host that says "
                 "nothing."),
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
    KSOCK_OPTION_RANGE("rx_buffer_size", KSOCK_OPT_SIZE, 0, "512B", ws_opts_t, rx_buffer_size, 128,
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
const struct lws_extension ws__extensions[] = {
    {"permessage-deflate", lws_extension_callback_pm_deflate,
     "permessage-deflate; client_no_context_takeover; client_max_window_bits"},
    {NULL, NULL, NULL},
};

/* ---- Small helpers ------------------------------------------------------ */

char *ws__strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* ---- Vtable ------------------------------------------------------------- */

static void lws_log_to_nowhere(int level, const char *line)
{
    (void)level;
    (void)line;
}

/* What the option table alone cannot say. */
static int check_options(const ws_opts_t *o, char *errstr, size_t errstr_size)
{
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
    if (o->tls_cert)
        return ws__tls_check(o->tls_cert, o->tls_key, o->tls_ca, NULL, errstr, errstr_size);
    return 0;
}

/* The ping/idle policy and the client protocol table (the server one is made at listen). */
static int setup_protocols(ws_inst_t *inst)
{
    const ws_opts_t *o = inst->o;
    inst->retry.secs_since_valid_ping = (uint16_t)((o->ping_interval + 999) / 1000);
    inst->retry.secs_since_valid_hangup = (uint16_t)((o->idle_timeout + 999) / 1000);
    if (inst->retry.secs_since_valid_ping == 0) inst->retry.secs_since_valid_ping = 0xffff;
    if (inst->retry.secs_since_valid_hangup == 0) inst->retry.secs_since_valid_hangup = 0xffff;

    inst->client_protocols[0] = (struct lws_protocols){
        WS_CLIENT_PROTOCOL, ws__callback, 0, (size_t)o->rx_buffer_size, 0, NULL, WS_WRITE_BATCH};
    /* The listening sockets' one (ws_listen.c): on client vhosts, where no upgrade lands. */
    inst->client_protocols[1] =
        (struct lws_protocols){WS_ACCEPT_PROTOCOL, ws__accept_callback, 0, 0, 0, NULL, 0};
    return 0;
}

static const char *const default_served[] = {"ksock.v1.json", "ksock.v1.msgpack",
                                             "ksock.v1.protobuf", NULL};

static void served_free(ws_inst_t *inst)
{
    for (size_t i = 0; i < inst->nserved; i++)
        free(inst->served[i]);
    free(inst->served);
    free(inst->server_protocols);
    inst->served = NULL;
    inst->nserved = 0;
    inst->server_protocols = NULL;
}

int ws__served_set(ws_inst_t *inst, const ksock_transport_events_t *ev)
{
    const ws_opts_t *o = inst->o;
    const char *const *list = default_served;
    if (o->subprotocols.n > 0)
        list = (const char *const *)o->subprotocols.v;
    else if (KSOCK_HAS_FIELD(ev, ksock_transport_events_t, subprotocols) && ev->subprotocols)
        list = ev->subprotocols;
    size_t n = 0;
    while (o->subprotocols.n > 0 ? n < o->subprotocols.n : list[n] != NULL)
        n++;
    served_free(inst);
    inst->served = calloc(n + 1, sizeof(char *));
    /* protocols[0] also serves HTTP and "no subprotocol offered" upgrades. */
    inst->server_protocols = calloc(n + 2, sizeof(struct lws_protocols));
    if (inst->served == NULL || inst->server_protocols == NULL) {
        served_free(inst);
        return KSOCK_E_NOMEM;
    }
    size_t rx = (size_t)o->rx_buffer_size;
    inst->server_protocols[0] =
        (struct lws_protocols){"ksock-default", ws__callback, 0, rx, 0, NULL, WS_WRITE_BATCH};
    for (size_t i = 0; i < n; i++) {
        if ((inst->served[i] = strdup(list[i])) == NULL) {
            inst->nserved = i;
            served_free(inst);
            return KSOCK_E_NOMEM;
        }
        inst->nserved = i + 1;
        inst->server_protocols[i + 1] =
            (struct lws_protocols){inst->served[i], ws__callback, 0, rx, 0, NULL, WS_WRITE_BATCH};
    }
    return 0;
}

/* The lws context (no vhost of its own) and the default client vhost. */
static int create_context(ws_inst_t *inst, char *errstr, size_t errstr_size)
{
    const ws_opts_t *o = inst->o;
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
        return KSOCK_E_INTERNAL;
    }
    /* The default client vhost now: wake-ups need at least one vhost to land on. */
    struct lws_vhost *vh;
    int rc = ws__client_vhost(inst, NULL, NULL, NULL, &vh);
    if (rc != 0) {
        ksock_errstr_set(errstr, errstr_size, "cannot create the client vhost%s",
                         rc == KSOCK_E_NOMEM ? ": out of memory" : "");
        return rc == KSOCK_E_NOMEM ? rc : KSOCK_E_INTERNAL;
    }
    return 0;
}

/*
 * On failure *out may still be set: ws_create_checked() destroys what was
 * made (the loader calls no destroy after a failed create).
 */
static int ws_create(const ksock_plugin_ctx_t *ctx, const void *options, void **out, char *errstr,
                     size_t errstr_size)
{
    const ws_opts_t *o = options;
    int rc = check_options(o, errstr, errstr_size);
    if (rc != 0) return rc;
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
    *out = inst;
    /* The table starts with room, so an insert never needs memory (see ws__table_insert). */
    inst->table = calloc(WS_TABLE_MIN, sizeof(*inst->table));
    if (inst->table == NULL) return KSOCK_E_NOMEM;
    inst->tcap = WS_TABLE_MIN;
    rc =
        ws__listeners_parse(o->listeners, &inst->listeners, &inst->nlisteners, errstr, errstr_size);
    if (rc == 0) rc = setup_protocols(inst);
    if (rc == 0) rc = create_context(inst, errstr, errstr_size);
    return rc;
}

void ws__call(ws_inst_t *inst, ws_call_fn fn, void *arg)
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
    ws__wake(inst);
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
    lc->rc = ws__listeners_start(inst, lc->errstr, lc->errstr_size);
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
    int rc = ws__served_set(inst, ev);
    if (rc != 0) {
        ksock_errstr_set(errstr, errstr_size, "out of memory");
        return rc;
    }
    listen_call_t lc = {0, errstr, errstr_size};
    if (inst->thread_running) {
        /* Vhost creation is not thread-safe: lock out the callback path meanwhile. */
        ws__call(inst, listen_on_thread, &lc);
    } else {
        listen_on_thread(inst, &lc);
    }
    if (lc.rc != 0) return lc.rc;
    inst->listening = true;
    /* What the kernel bound (getsockname), not what the config said. */
    for (size_t i = 0; i < inst->nlisteners; i++)
        ws__listener_log(inst, &inst->listeners[i], "listening on");
    return ws__thread_start(inst, errstr, errstr_size);
}

/*
 * Copy what connect() was given into c: everything the lws thread reads
 * later. KSOCK_E_INVAL or KSOCK_E_TLS (with a message) for a bad client
 * certificate, KSOCK_E_NOMEM.
 */
static int connect_copy_opts(ws_conn_t *c, const ksock_connect_opts_t *opts, char *errstr,
                             size_t errstr_size)
{
    c->cl->url = ws__strdup(opts->url);
    c->cl->sub_req = ws__strdup(opts->subprotocol);
    c->cl->ca_file = ws__strdup(opts->ca_file);
    c->cl->insecure = opts->insecure;
    if (c->cl->url == NULL || (opts->subprotocol && c->cl->sub_req == NULL) ||
        (opts->ca_file && c->cl->ca_file == NULL))
        return KSOCK_E_NOMEM;
    if (KSOCK_HAS_FIELD(opts, ksock_connect_opts_t, key_file)) {
        if ((opts->cert_file == NULL) != (opts->key_file == NULL)) {
            ksock_errstr_set(errstr, errstr_size, "a client certificate needs its key, and back");
            return KSOCK_E_INVAL;
        }
        static const ws_tls_names_t names = {"client certificate", "client key", "CA file"};
        int trc = opts->cert_file ? ws__tls_check(opts->cert_file, opts->key_file, NULL, &names,
                                                  errstr, errstr_size)
                                  : 0;
        if (trc != 0) return trc;
        c->cl->cert_file = ws__strdup(opts->cert_file);
        c->cl->key_file = ws__strdup(opts->key_file);
        if (opts->cert_file && (c->cl->cert_file == NULL || c->cl->key_file == NULL))
            return KSOCK_E_NOMEM;
    }
    if (opts->nheaders) {
        c->cl->headers = calloc(opts->nheaders, sizeof(*c->cl->headers));
        if (c->cl->headers == NULL) return KSOCK_E_NOMEM;
        c->cl->nheaders = opts->nheaders;
        for (size_t i = 0; i < opts->nheaders; i++) {
            c->cl->headers[i].name = ws__strdup(opts->headers[i].name);
            c->cl->headers[i].value = ws__strdup(opts->headers[i].value);
            if (c->cl->headers[i].name == NULL || c->cl->headers[i].value == NULL)
                return KSOCK_E_NOMEM;
        }
    }
    return 0;
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
    ws_conn_t *c = ws__conn_new(inst);
    if (c == NULL) return KSOCK_E_NOMEM;
    c->client = true;
    c->conn_data = conn_data;
    ws_event_t *ce = realloc(c->close_ev, sizeof(*ce) + WS_REASON_ROOM_CLIENT);
    if (ce) c->close_ev = ce;
    if (ce == NULL || (c->cl = calloc(1, sizeof(*c->cl))) == NULL) {
        ws__conn_free(c);
        return KSOCK_E_NOMEM;
    }
    memcpy(&c->cl->own_ev, ev, ev->size < sizeof(c->cl->own_ev) ? ev->size : sizeof(c->cl->own_ev));
    c->ev = &c->cl->own_ev;
    int rc = connect_copy_opts(c, opts, errstr, errstr_size);
    if (rc != 0) {
        if (rc == KSOCK_E_NOMEM) ksock_errstr_set(errstr, errstr_size, "out of memory");
        ws__conn_free(c);
        return rc;
    }
    c->max_message =
        opts->max_message_size ? opts->max_message_size : (uint64_t)inst->o->max_message_size;
    c->connect_req = true;
    pthread_mutex_lock(&inst->lock);
    ws__table_insert(inst, c);
    ws__pending_add(inst, c);
    pthread_mutex_unlock(&inst->lock);
    *id = c->id;
    rc = ws__thread_start(inst, errstr, errstr_size);
    if (rc != 0) {
        pthread_mutex_lock(&inst->lock);
        ws__table_remove(inst, c);
        ws__pending_del(c);
        pthread_mutex_unlock(&inst->lock);
        ws__conn_free(c);
        return rc;
    }
    ws__wake(inst);
    return 0;
}

void ws__wake(ws_inst_t *inst)
{
    if (inst->ctx && inst->thread_running && !atomic_exchange(&inst->wake_pending, true))
        lws_cancel_service(inst->ctx);
}

/* Under lock: queue frame (len bytes) on id, as send() says; sets *wake when c became pending. */
static int queue_locked(ws_inst_t *inst, ksock_conn_id_t id, ksock_frame_t *frame, size_t len,
                        bool *wake)
{
    ws_conn_t *c = ws__table_find(inst, id);
    if (c == NULL || c->gone || c->close_req) return KSOCK_E_CLOSED;
    if (c->qlen > 0 && (c->qlen >= (size_t)inst->o->send_queue_max_frames ||
                        c->qbytes + len > (size_t)inst->o->send_queue_max_bytes)) {
        c->writable_owed = true;
        return KSOCK_E_QUEUE_FULL;
    }
    int rc = ws__queue_push(c, frame, len);
    if (rc == 0 && ws__pending_add(inst, c)) *wake = true;
    return rc;
}

static int ws_send(void *p, ksock_conn_id_t id, ksock_frame_t *frame)
{
    ws_inst_t *inst = p;
    size_t len = 0;
    bool wake = false;
    ksock_frame_data(frame, &len);
    pthread_mutex_lock(&inst->lock);
    int rc = queue_locked(inst, id, frame, len, &wake);
    pthread_mutex_unlock(&inst->lock);
    if (wake) ws__wake(inst);
    return rc;
}

/* n send() calls under one lock, with at most one wake-up (transport.h, ABI 1.2). */
static size_t ws_send_many(void *p, ksock_frame_t *frame, const ksock_conn_id_t *ids, size_t n,
                           int *rc)
{
    ws_inst_t *inst = p;
    size_t len = 0, failed = 0;
    bool wake = false;
    if (n == 0) return 0;
    ksock_frame_data(frame, &len);
    pthread_mutex_lock(&inst->lock);
    for (size_t i = 0; i < n; i++) {
        rc[i] = queue_locked(inst, ids[i], frame, len, &wake);
        if (rc[i] != 0) failed++;
    }
    pthread_mutex_unlock(&inst->lock);
    if (wake) ws__wake(inst);
    return failed;
}

static int ws_close(void *p, ksock_conn_id_t id, int code, const char *reason)
{
    ws_inst_t *inst = p;
    if (code != 1000 && !(code >= 3000 && code <= 4999) &&
        !(code >= 1001 && code <= 1014 && code != 1004 && code != 1005 && code != 1006))
        return KSOCK_E_INVAL;
    pthread_mutex_lock(&inst->lock);
    ws_conn_t *c = ws__table_find(inst, id);
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
        memcpy(WS_CLOSE_REASON(c), reason ? reason : "", rl);
        WS_CLOSE_REASON(c)[rl] = '\0';
        wake = ws__pending_add(inst, c);
    }
    pthread_mutex_unlock(&inst->lock);
    if (wake) ws__wake(inst);
    return 0;
}

static int ws_pause_read(void *p, ksock_conn_id_t id, bool paused)
{
    ws_inst_t *inst = p;
    pthread_mutex_lock(&inst->lock);
    ws_conn_t *c = ws__table_find(inst, id);
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
        if (ksock_runtime_post(inst->rt, ws__deliver_held, inst) == 0)
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
        ws__conn_finish(left, NULL, 1001, "transport stopped", KSOCK_E_CANCELED);
    }
}

void ws__inst_unref(ws_inst_t *inst)
{
    if (atomic_fetch_sub(&inst->refs, 1) != 1) return;
    pthread_mutex_lock(&inst->evlock);
    ws_event_t *e = inst->ev_head;
    inst->ev_head = inst->ev_tail = NULL;
    pthread_mutex_unlock(&inst->evlock);
    while (e) {
        ws_event_t *next = e->next;
        ws__event_free(e);
        e = next;
    }
    ws__listeners_free(inst->listeners, inst->nlisteners);
    while (inst->client_vhosts) {
        ws_client_vhost_t *v = inst->client_vhosts;
        inst->client_vhosts = v->next;
        free(v->ca_file);
        free(v->cert_file);
        free(v->key_file);
        free(v);
    }
    served_free(inst);
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
    ws__inst_unref(inst);
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
    .send_many = ws_send_many,
    .set_listeners = ws__set_listeners,
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
