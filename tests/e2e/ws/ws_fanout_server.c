/*
 * A test helper for test_ws_fanout.py: a server on the `ws` transport,
 * loaded through the real plugin loader, that fans frames out with the
 * vtable's send_many() as the bridge does for subscriptions.
 *
 *   ws_fanout_server 'TRANSPORT_OPTIONS_JSON'
 *
 * Prints "READY" on stdout once listening; exits 0 on SIGTERM/SIGINT, 2
 * when the transport refuses its options or has no send_many. Every
 * connection that opens is remembered, in order, also once closed. Text
 * commands (answers go to the connection that asked):
 *
 *   __id__            answer this connection's id
 *   __count__         answer {"open": n, "closed": n}
 *   __fanout__ F K    frames F..F+K-1 (fanout_frame below), each with one
 *                     send_many() to every connection ever opened (closed
 *                     ones included) and an id that never existed; answer
 *                     {"ok": n, "closed": n, "full": n, "other": n,
 *                      "returned": sum of send_many's results, "ids": n}
 *   __fill__ ID N     16 KiB binary frames 0..N-1 (fill_frame below) with
 *                     send_many() to [ID, the first closed connection, an
 *                     id that never existed], until ID answers
 *                     KSOCK_E_QUEUE_FULL; on_writable for ID goes on
 *   __stats__ ID      answer {"writable": on_writable events, "open": bool,
 *                     "full": KSOCK_E_QUEUE_FULL answers, "sent": fill
 *                     frames queued, "closed_ok": the other two entries of
 *                     every fill send_many() said KSOCK_E_CLOSED}
 */
#include <ksock/ksock.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FILL_FRAME    16384
#define NEVER_OPENED  ((ksock_conn_id_t)UINT64_MAX)
#define FANOUT_NSIZES 11

/* Sizes of the first frames: every header length (7, 16, 64 bits) and its edges. */
static const size_t fanout_sizes[FANOUT_NSIZES] = {0,     1,     125,   126,    127, 1000,
                                                   65535, 65536, 65537, 204800, 3};

typedef struct {
    ksock_conn_id_t id;
    bool open;
    long writable;
    long fill_left, fill_sent, full; /* __fill__ */
    bool fill_closed_ok;
} peer_t;

typedef struct {
    ksock_runtime_t *rt;
    ksock_plugin_instance_t *pi;
    const ksock_transport_vtable_t *tv;
    peer_t *peers;
    size_t npeers, cap;
} server_t;

static void *inst_of(server_t *s)
{
    return ksock_plugin_instance_inst(s->pi);
}

static peer_t *peer_find(server_t *s, ksock_conn_id_t id)
{
    for (size_t i = 0; i < s->npeers; i++)
        if (s->peers[i].id == id) return &s->peers[i];
    return NULL;
}

/* Frame k of a fan-out: text for even k, binary for odd; test_ws_fanout.py builds the same. */
static ksock_frame_t *fanout_frame(long k)
{
    size_t len = k < FANOUT_NSIZES ? fanout_sizes[k] : (size_t)((k * 37) % 300);
    bool binary = k % 2 == 1;
    unsigned char *b = malloc(len ? len : 1);
    if (b == NULL) return NULL;
    for (size_t j = 0; j < len; j++)
        b[j] = binary ? (unsigned char)((k * 7 + (long)j) % 251)
                      : (unsigned char)('a' + (k + (long)j) % 26);
    ksock_frame_t *f = ksock_frame_adopt(binary ? KSOCK_FRAME_BINARY : KSOCK_FRAME_TEXT, b, len);
    if (f == NULL) free(b);
    return f;
}

/* Fill frame seq: its number (8 bytes, big-endian), then (seq + j) % 251. */
static ksock_frame_t *fill_frame(uint64_t seq)
{
    unsigned char *b = malloc(FILL_FRAME);
    if (b == NULL) return NULL;
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(seq >> (56 - 8 * i));
    for (size_t j = 8; j < FILL_FRAME; j++)
        b[j] = (unsigned char)((seq + j) % 251);
    ksock_frame_t *f = ksock_frame_adopt(KSOCK_FRAME_BINARY, b, FILL_FRAME);
    if (f == NULL) free(b);
    return f;
}

static void answer(server_t *s, ksock_conn_id_t id, const char *text)
{
    ksock_frame_t *f = ksock_frame_new(KSOCK_FRAME_TEXT, text, strlen(text));
    if (f == NULL) return;
    if (s->tv->send(inst_of(s), id, f) != 0) fprintf(stderr, "ws_fanout_server: answer refused\n");
    ksock_frame_unref(f);
}

static void do_fanout(server_t *s, ksock_conn_id_t from, long first, long k)
{
    size_t n = s->npeers + 1;
    ksock_conn_id_t *ids = calloc(n, sizeof(*ids));
    int *rc = calloc(n, sizeof(*rc));
    long ok = 0, closed = 0, full = 0, other = 0, returned = 0;
    for (size_t i = 0; ids && i < s->npeers; i++)
        ids[i] = s->peers[i].id;
    if (ids) ids[n - 1] = NEVER_OPENED;
    for (long f = first; ids && rc && f < first + k; f++) {
        ksock_frame_t *fr = fanout_frame(f);
        if (fr == NULL) break;
        returned += (long)s->tv->send_many(inst_of(s), fr, ids, n, rc);
        ksock_frame_unref(fr);
        for (size_t i = 0; i < n; i++) {
            if (rc[i] == 0)
                ok++;
            else if (rc[i] == KSOCK_E_CLOSED)
                closed++;
            else if (rc[i] == KSOCK_E_QUEUE_FULL)
                full++;
            else
                other++;
        }
    }
    char buf[256];
    snprintf(buf, sizeof(buf),
             "{\"ok\": %ld, \"closed\": %ld, \"full\": %ld, \"other\": %ld, \"returned\": %ld, "
             "\"ids\": %zu}",
             ok, closed, full, other, returned, n);
    answer(s, from, buf);
    free(ids);
    free(rc);
}

/* Fill frames to p until its queue is full or N were sent; on_writable resumes. */
static void fill(server_t *s, peer_t *p)
{
    ksock_conn_id_t ids[3] = {p->id, NEVER_OPENED, NEVER_OPENED};
    int rc[3];
    for (size_t i = 0; i < s->npeers; i++)
        if (!s->peers[i].open) {
            ids[1] = s->peers[i].id;
            break;
        }
    while (p->fill_left > 0) {
        ksock_frame_t *f = fill_frame((uint64_t)p->fill_sent);
        if (f == NULL) return;
        size_t failed = s->tv->send_many(inst_of(s), f, ids, 3, rc);
        ksock_frame_unref(f);
        if (rc[1] != KSOCK_E_CLOSED || rc[2] != KSOCK_E_CLOSED || failed != (rc[0] != 0) + 2u)
            p->fill_closed_ok = false;
        if (rc[0] == KSOCK_E_QUEUE_FULL) {
            p->full++;
            return;
        }
        if (rc[0] != 0) return;
        p->fill_left--;
        p->fill_sent++;
    }
}

static void on_open(void *data, ksock_conn_id_t id, void *conn_data, const char *subprotocol)
{
    server_t *s = data;
    (void)conn_data;
    (void)subprotocol;
    if (s->npeers == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        peer_t *p = realloc(s->peers, cap * sizeof(*p));
        if (p == NULL) return;
        s->peers = p;
        s->cap = cap;
    }
    s->peers[s->npeers++] = (peer_t){.id = id, .open = true, .fill_closed_ok = true};
}

static bool is_cmd(const void *payload, size_t len, const char *cmd)
{
    size_t n = strlen(cmd);
    return len >= n && memcmp(payload, cmd, n) == 0;
}

static void on_message(void *data, ksock_conn_id_t id, void *conn_data, ksock_frame_type_t type,
                       const void *payload, size_t len)
{
    server_t *s = data;
    (void)conn_data;
    char cmd[128], buf[256];
    if (type != KSOCK_FRAME_TEXT || len >= sizeof(cmd)) return;
    memcpy(cmd, payload, len);
    cmd[len] = '\0';
    if (strcmp(cmd, "__id__") == 0) {
        snprintf(buf, sizeof(buf), "%llu", (unsigned long long)id);
        answer(s, id, buf);
    } else if (strcmp(cmd, "__count__") == 0) {
        size_t open = 0;
        for (size_t i = 0; i < s->npeers; i++)
            open += s->peers[i].open;
        snprintf(buf, sizeof(buf), "{\"open\": %zu, \"closed\": %zu}", open, s->npeers - open);
        answer(s, id, buf);
    } else if (is_cmd(payload, len, "__fanout__ ")) {
        long first = 0, k = 0;
        if (sscanf(cmd + 11, "%ld %ld", &first, &k) == 2) do_fanout(s, id, first, k);
    } else if (is_cmd(payload, len, "__fill__ ")) {
        unsigned long long target = 0;
        long n = 0;
        peer_t *p = sscanf(cmd + 9, "%llu %ld", &target, &n) == 2 ? peer_find(s, target) : NULL;
        if (p) {
            p->fill_left = n;
            fill(s, p);
        }
    } else if (is_cmd(payload, len, "__stats__ ")) {
        peer_t *p = peer_find(s, strtoull(cmd + 10, NULL, 10));
        if (p == NULL) return;
        snprintf(buf, sizeof(buf),
                 "{\"writable\": %ld, \"open\": %s, \"full\": %ld, \"sent\": %ld, "
                 "\"closed_ok\": %s}",
                 p->writable, p->open ? "true" : "false", p->full, p->fill_sent,
                 p->fill_closed_ok ? "true" : "false");
        answer(s, id, buf);
    }
}

static void on_writable(void *data, ksock_conn_id_t id, void *conn_data)
{
    (void)conn_data;
    peer_t *p = peer_find(data, id);
    if (p == NULL) return;
    p->writable++;
    fill(data, p);
}

static void on_close(void *data, ksock_conn_id_t id, void *conn_data, int code, const char *reason,
                     int err)
{
    (void)conn_data, (void)code, (void)reason, (void)err;
    peer_t *p = peer_find(data, id);
    if (p) p->open = false;
}

static void on_signal(ksock_signal_t *sig, int signum, void *data)
{
    (void)sig;
    (void)signum;
    ksock_runtime_stop(data);
}

static int start(server_t *s, const char *opts, ksock_config_t **doc, char *err, size_t n)
{
    ksock_plugin_t *p = NULL;
    int rc = ksock_runtime_new(&s->rt, err, n);
    if (rc == 0) rc = ksock_config_load_string("options", opts, strlen(opts), doc, err, n);
    if (rc == 0) rc = ksock_plugin_find(s->rt, KSOCK_PLUGIN_TRANSPORT, "ws", &p, err, n);
    if (rc == 0)
        rc = ksock_plugin_instance_new(s->rt, p, "test", *doc, ksock_config_root(*doc), NULL,
                                       &s->pi, err, n);
    if (rc != 0) return rc;
    s->tv = ksock_plugin_instance_vtable(s->pi);
    if (!KSOCK_HAS_FIELD(s->tv, ksock_transport_vtable_t, send_many) || !s->tv->send_many) {
        snprintf(err, n, "the ws transport has no send_many");
        return KSOCK_E_UNSUPPORTED;
    }
    return 0;
}

int main(int argc, char **argv)
{
    char err[512] = "";
    ksock_config_t *doc = NULL;
    server_t s = {0};
    int rc = start(&s, argc > 1 ? argv[1] : "{}", &doc, err, sizeof(err));
    ksock_transport_events_t ev = {
        .size = sizeof(ev),
        .data = &s,
        .on_open = on_open,
        .on_message = on_message,
        .on_writable = on_writable,
        .on_close = on_close,
    };
    if (rc == 0) rc = s.tv->listen(inst_of(&s), &ev, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "ws_fanout_server: %s\n", err);
        ksock_plugin_instance_free(s.pi);
        ksock_config_free(doc);
        ksock_runtime_destroy(s.rt);
        return 2;
    }
    ksock_signal_t *s1 = NULL, *s2 = NULL;
    ksock_signal_start(s.rt, &s1, SIGTERM, on_signal, s.rt);
    ksock_signal_start(s.rt, &s2, SIGINT, on_signal, s.rt);
    printf("READY\n");
    fflush(stdout);
    ksock_runtime_run(s.rt);
    s.tv->stop(inst_of(&s));
    ksock_runtime_run_once(s.rt, false);
    ksock_plugin_instance_free(s.pi);
    ksock_signal_close(s1);
    ksock_signal_close(s2);
    ksock_config_free(doc);
    ksock_runtime_destroy(s.rt);
    free(s.peers);
    return 0;
}
