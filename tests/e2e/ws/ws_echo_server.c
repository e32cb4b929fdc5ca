/*
 * A test helper (libuv's TEST_HELPER idea): an echo server on the `ws`
 * transport, loaded through the real plugin loader, for the Python tests
 * and the benchmark.
 *
 *   ws_echo_server 'TRANSPORT_OPTIONS_JSON'
 *
 * Prints "READY" on stdout once listening; exits 0 on SIGTERM/SIGINT after
 * stopping the transport; exits 2 with the error on stderr if the
 * transport refuses its options (the WSS tests rely on that).
 *
 * Every message is echoed with its frame type, except these text commands:
 *   __hs__             answer with the handshake as JSON (path, query,
 *                      subprotocol, origin, peer, token header, client cert)
 *   __close__ CODE R   close with CODE and reason R
 *   __flood__ N        send N numbered messages as fast as the queue allows
 *   __stats__          answer {"writable": n, "queue_full": n, "open": n}
 *   __closes__         answer the last close events the server saw, oldest
 *                      first: [{"code": n, "reason": s|null, "err": "KSOCK_E_..."|null}]
 * Handshakes: query token=bad -> 401, token=forbidden -> 403.
 */
#include <ksock/ksock.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct conn_s {
    char *info; /* handshake as JSON */
    long flood_left, flood_next;
} conn_t;

#define CLOSES_KEPT 32

typedef struct server_s {
    ksock_runtime_t *rt;
    ksock_plugin_instance_t *pi;
    const ksock_transport_vtable_t *tv;
    long writable, queue_full, open;
    ksock_buf_t closes[CLOSES_KEPT]; /* ring of JSON objects */
    size_t nclose;
} server_t;

static void json_str(ksock_buf_t *b, const char *s)
{
    if (s == NULL) {
        ksock_buf_appendf(b, "null");
        return;
    }
    ksock_buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            ksock_buf_appendf(b, "\\%c", *p);
        else if (*p < 0x20)
            ksock_buf_appendf(b, "\\u%04x", *p);
        else
            ksock_buf_append(b, p, 1);
    }
    ksock_buf_append(b, "\"", 1);
}

/* Transport thread: decide, and remember what we saw for __hs__. */
static int on_handshake(void *data, ksock_conn_id_t id, const ksock_handshake_t *hs,
                        void **conn_data, char *errstr, size_t errstr_size)
{
    (void)data;
    (void)id;
    if (hs->query && strstr(hs->query, "token=bad")) {
        ksock_errstr_set(errstr, errstr_size, "bad token");
        return KSOCK_E_AUTH;
    }
    if (hs->query && strstr(hs->query, "token=forbidden")) {
        ksock_errstr_set(errstr, errstr_size, "not allowed here");
        return KSOCK_E_FORBIDDEN;
    }
    conn_t *c = calloc(1, sizeof(*c));
    ksock_buf_t b = KSOCK_BUF_INIT;
    ksock_buf_appendf(&b, "{\"path\": ");
    json_str(&b, hs->path);
    ksock_buf_appendf(&b, ", \"query\": ");
    json_str(&b, hs->query);
    ksock_buf_appendf(&b, ", \"subprotocol\": ");
    json_str(&b, hs->subprotocol);
    ksock_buf_appendf(&b, ", \"origin\": ");
    json_str(&b, hs->origin);
    ksock_buf_appendf(&b, ", \"peer\": ");
    json_str(&b, hs->peer_addr);
    ksock_buf_appendf(&b, ", \"token\": ");
    json_str(&b, ksock_handshake_header(hs, "x-ksock-token"));
    ksock_buf_appendf(&b, ", \"authorization\": ");
    json_str(&b, ksock_handshake_header(hs, "authorization"));
    ksock_buf_appendf(&b, ", \"client_cert_len\": %zu}", hs->client_cert_len);
    c->info = b.data;
    *conn_data = c;
    return 0;
}

static void on_open(void *data, ksock_conn_id_t id, void *conn_data, const char *subprotocol)
{
    server_t *s = data;
    (void)id;
    (void)conn_data;
    (void)subprotocol;
    s->open++;
}

static void send_text(server_t *s, ksock_conn_id_t id, const char *text)
{
    ksock_frame_t *f = ksock_frame_new(KSOCK_FRAME_TEXT, text, strlen(text));
    s->tv->send(ksock_plugin_instance_inst(s->pi), id, f);
    ksock_frame_unref(f);
}

/* Send flood messages until done or the queue is full (on_writable resumes). */
static void flood(server_t *s, ksock_conn_id_t id, conn_t *c)
{
    while (c->flood_left > 0) {
        char msg[64];
        int n = snprintf(msg, sizeof(msg), "flood %ld", c->flood_next);
        ksock_frame_t *f = ksock_frame_new(KSOCK_FRAME_TEXT, msg, (size_t)n);
        int rc = s->tv->send(ksock_plugin_instance_inst(s->pi), id, f);
        ksock_frame_unref(f);
        if (rc == KSOCK_E_QUEUE_FULL) {
            s->queue_full++;
            return;
        }
        if (rc != 0) return;
        c->flood_left--;
        c->flood_next++;
    }
}

static void on_message(void *data, ksock_conn_id_t id, void *conn_data, ksock_frame_type_t type,
                       const void *payload, size_t len)
{
    server_t *s = data;
    conn_t *c = conn_data;
    if (type == KSOCK_FRAME_TEXT && len == 6 && memcmp(payload, "__hs__", 6) == 0) {
        send_text(s, id, c->info);
        return;
    }
    if (type == KSOCK_FRAME_TEXT && len == 9 && memcmp(payload, "__stats__", 9) == 0) {
        char buf[128];
        snprintf(buf, sizeof(buf), "{\"writable\": %ld, \"queue_full\": %ld, \"open\": %ld}",
                 s->writable, s->queue_full, s->open);
        send_text(s, id, buf);
        return;
    }
    if (type == KSOCK_FRAME_TEXT && len == 10 && memcmp(payload, "__closes__", 10) == 0) {
        ksock_buf_t b = KSOCK_BUF_INIT;
        size_t first = s->nclose > CLOSES_KEPT ? s->nclose - CLOSES_KEPT : 0;
        ksock_buf_append(&b, "[", 1);
        for (size_t i = first; i < s->nclose; i++) {
            if (i > first) ksock_buf_append(&b, ", ", 2);
            const ksock_buf_t *e = &s->closes[i % CLOSES_KEPT];
            ksock_buf_append(&b, e->data, e->len);
        }
        ksock_buf_append(&b, "]", 2); /* with the terminating NUL */
        send_text(s, id, b.data);
        ksock_buf_free(&b);
        return;
    }
    if (type == KSOCK_FRAME_TEXT && len > 10 && memcmp(payload, "__close__ ", 10) == 0) {
        char buf[200];
        snprintf(buf, sizeof(buf), "%.*s", (int)len, (const char *)payload);
        int code = atoi(buf + 10);
        const char *reason = strchr(buf + 10, ' ');
        s->tv->close(ksock_plugin_instance_inst(s->pi), id, code, reason ? reason + 1 : NULL);
        return;
    }
    if (type == KSOCK_FRAME_TEXT && len > 10 && memcmp(payload, "__flood__ ", 10) == 0) {
        char buf[64];
        snprintf(buf, sizeof(buf), "%.*s", (int)len, (const char *)payload);
        c->flood_left = atol(buf + 10);
        c->flood_next = 0;
        flood(s, id, c);
        return;
    }
    ksock_frame_t *f = ksock_frame_new(type, payload, len);
    if (s->tv->send(ksock_plugin_instance_inst(s->pi), id, f) == KSOCK_E_QUEUE_FULL)
        s->queue_full++;
    ksock_frame_unref(f);
}

static void on_writable(void *data, ksock_conn_id_t id, void *conn_data)
{
    server_t *s = data;
    s->writable++;
    flood(s, id, conn_data);
}

static void on_close(void *data, ksock_conn_id_t id, void *conn_data, int code, const char *reason,
                     int err)
{
    (void)id;
    server_t *s = data;
    ksock_buf_t *e = &s->closes[s->nclose++ % CLOSES_KEPT];
    e->len = 0;
    ksock_buf_appendf(e, "{\"code\": %d, \"reason\": ", code);
    json_str(e, reason);
    ksock_buf_appendf(e, ", \"err\": ");
    json_str(e, err ? ksock_err_name(err) : NULL);
    ksock_buf_append(e, "}", 1);
    conn_t *c = conn_data;
    if (c) {
        free(c->info);
        free(c);
    }
}

static void on_signal(ksock_signal_t *sig, int signum, void *data)
{
    (void)sig;
    (void)signum;
    ksock_runtime_stop(data);
}

int main(int argc, char **argv)
{
    char err[512] = "";
    const char *opts = argc > 1 ? argv[1] : "{}";
    ksock_runtime_t *rt = NULL;
    ksock_config_t *doc = NULL;
    ksock_plugin_t *p = NULL;
    server_t s = {0};
    int rc = ksock_runtime_new(&rt, err, sizeof(err));
    if (rc == 0)
        rc = ksock_config_load_string("options", opts, strlen(opts), &doc, err, sizeof(err));
    if (rc == 0) rc = ksock_plugin_find(rt, KSOCK_PLUGIN_TRANSPORT, "ws", &p, err, sizeof(err));
    if (rc == 0)
        rc = ksock_plugin_instance_new(rt, p, "test", doc, ksock_config_root(doc), NULL, &s.pi, err,
                                       sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "ws_echo_server: %s\n", err);
        ksock_config_free(doc);
        ksock_runtime_destroy(rt);
        return 2;
    }
    s.rt = rt;
    s.tv = ksock_plugin_instance_vtable(s.pi);
    ksock_transport_events_t ev = {
        .size = sizeof(ev),
        .data = &s,
        .on_handshake = on_handshake,
        .on_open = on_open,
        .on_message = on_message,
        .on_writable = on_writable,
        .on_close = on_close,
    };
    rc = s.tv->listen(ksock_plugin_instance_inst(s.pi), &ev, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "ws_echo_server: %s\n", err);
        ksock_plugin_instance_free(s.pi);
        ksock_config_free(doc);
        ksock_runtime_destroy(rt);
        return 2;
    }
    ksock_signal_t *s1 = NULL, *s2 = NULL;
    ksock_signal_start(rt, &s1, SIGTERM, on_signal, rt);
    ksock_signal_start(rt, &s2, SIGINT, on_signal, rt);
    printf("READY\n");
    fflush(stdout);
    ksock_runtime_run(rt);
    s.tv->stop(ksock_plugin_instance_inst(s.pi));
    /* Deliver the close events of the connections stop() closed. */
    ksock_runtime_run_once(rt, false);
    ksock_plugin_instance_free(s.pi);
    ksock_signal_close(s1);
    ksock_signal_close(s2);
    ksock_config_free(doc);
    ksock_runtime_destroy(rt);
    for (size_t i = 0; i < CLOSES_KEPT; i++)
        ksock_buf_free(&s.closes[i]);
    return 0;
}
