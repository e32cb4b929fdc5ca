/*
 * ksock-bench: the WebSocket client (kb.h). Not libwebsockets: per message it costs one pass
 * over the frame header and the envelope reader (kb_proto.c), nothing allocated.
 *
 * Each I/O thread owns a slice of the connections and one level-triggered epoll set. A readable
 * connection gets one read() into the thread's 1 MiB buffer, behind the partial frame the last
 * read left (kept per connection in a buffer that exists only while there is one); every
 * complete frame in it is handled, in order. Writes go straight to the socket; what the kernel
 * does not take waits in a per-connection buffer with EPOLLOUT on until it is gone. Connections
 * open gradually (at most `connect_window` handshakes in progress per thread), so a listen
 * backlog of 128 or so never overflows into SYN retries.
 */
/* (the build defines _GNU_SOURCE: memmem, SOCK_NONBLOCK) */
#include "kb.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define KB_SCRATCH (256 * 1024)

int64_t kb_mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

int64_t kb_real_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* stderr lines about connections: the first few only (10,000 connections closing at once would
 * bury the report), then a note that more were left out */
static _Atomic int warned;
static void warn(const char *fmt, ...)
{
    int n = atomic_fetch_add(&warned, 1);
    if (n > 5) return;
    if (n == 5) {
        fprintf(stderr, "ksock-bench: (further connection messages left out)\n");
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ksock-bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

static void set_events(kb_thread_t *t, kb_conn_t *c, int out)
{
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    c->want_out = (uint8_t)out;
    epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_close(kb_thread_t *t, kb_conn_t *c)
{
    if (c->state == KB_C_CLOSED) return;
    if (c->state == KB_C_CONNECTING || c->state == KB_C_HANDSHAKE) t->connecting--;
    if (c->state == KB_C_OPEN) t->open--;
    close(c->fd);
    c->fd = -1;
    c->state = KB_C_CLOSED;
    free(c->rbuf);
    free(c->wbuf);
    c->rbuf = c->wbuf = NULL;
    c->rlen = c->wlen = c->woff = c->wcap = 0;
    t->closed++;
}

/* Sends what is queued; 0, or -1 when the connection died (closed here). */
static int conn_flush(kb_thread_t *t, kb_conn_t *c)
{
    while (c->woff < c->wlen) {
        ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        if (n <= 0) {
            conn_close(t, c);
            return -1;
        }
        c->woff += (uint32_t)n;
    }
    if (c->woff == c->wlen) {
        free(c->wbuf);
        c->wbuf = NULL;
        c->wlen = c->woff = c->wcap = 0;
        if (c->want_out) set_events(t, c, 0);
    } else if (!c->want_out) {
        set_events(t, c, 1);
    }
    return 0;
}

/* Queues bytes behind anything unsent and sends what the socket takes. */
static int conn_send(kb_thread_t *t, kb_conn_t *c, const uint8_t *p, size_t n)
{
    if (c->wlen == 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            conn_close(t, c);
            return -1;
        }
        if (w < 0) w = 0;
        p += w;
        n -= (size_t)w;
        if (n == 0) return 0;
    }
    if (c->wlen + n > c->wcap) {
        uint32_t cap = c->wcap ? c->wcap : 512;
        while (cap < c->wlen + n)
            cap *= 2;
        uint8_t *b = realloc(c->wbuf, cap);
        if (b == NULL) {
            conn_close(t, c);
            return -1;
        }
        c->wbuf = b;
        c->wcap = cap;
    }
    memcpy(c->wbuf + c->wlen, p, n);
    c->wlen += (uint32_t)n;
    return conn_flush(t, c);
}

static uint32_t rng32(kb_thread_t *t)
{
    t->rng ^= t->rng << 13;
    t->rng ^= t->rng >> 7;
    t->rng ^= t->rng << 17;
    return (uint32_t)t->rng;
}

/*
 * Wraps payload [out + 14, out + 14 + n) in a masked client frame (RFC 6455 5.3), moving the
 * header in front of it; returns where the frame starts and its length in *len. The mask is
 * applied 8 bytes at a time: it is the only per-byte work a client must do.
 */
static uint8_t *frame_wrap(kb_thread_t *t, uint8_t *out, size_t n, int opcode, size_t *len)
{
    uint8_t *pl = out + 14;
    int hl = n < 126 ? 6 : n < 65536 ? 8 : 14;
    uint8_t *h = pl - hl;
    h[0] = (uint8_t)(0x80 | opcode);
    if (n < 126) {
        h[1] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        h[1] = 0x80 | 126;
        h[2] = (uint8_t)(n >> 8);
        h[3] = (uint8_t)n;
    } else {
        h[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
    }
    uint32_t key = rng32(t);
    memcpy(pl - 4, &key, 4);
    uint64_t k8 = (uint64_t)key << 32 | key;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, pl + i, 8);
        w ^= k8;
        memcpy(pl + i, &w, 8);
    }
    for (; i < n; i++)
        pl[i] ^= ((const uint8_t *)&key)[i & 3];
    *len = n + (size_t)hl;
    return h;
}

static int send_frame(kb_thread_t *t, kb_conn_t *c, const uint8_t *p, size_t n, int opcode)
{
    uint8_t buf[14 + 512]; /* a subscribe with a 249-character topic is 304 bytes */
    if (n > 512) return -1;
    memcpy(buf + 14, p, n);
    size_t len;
    uint8_t *f = frame_wrap(t, buf, n, opcode, &len);
    return conn_send(t, c, f, len);
}

static int send_subscribe(kb_thread_t *t, kb_conn_t *c)
{
    uint8_t env[400];
    size_t n = kb_build_subscribe(t->run->fmt, t->run->topic, env);
    return send_frame(t, c, env, n, t->run->fmt == KB_JSON ? 1 : 2);
}

/*
 * Publish mode: tops the connection up to `window` publishes in flight, all frames built into
 * the scratch buffer and sent with one write. Records are handed out from the run's shared
 * counter so K connections together send exactly `records`.
 */
static int publish_more(kb_thread_t *t, kb_conn_t *c)
{
    kb_run_t *r = t->run;
    size_t used = 0;
    int64_t now = kb_real_ns();
    while (c->sent - c->acked < (uint32_t)r->window &&
           used + 14 + 600 + r->value_size <= KB_SCRATCH) {
        if (atomic_fetch_add_explicit(&r->pub_next, 1, memory_order_relaxed) >= r->records) break;
        uint8_t *slot = t->scratch + used;
        size_t n = kb_build_publish(r->fmt, r->topic, now, r->value_size, slot + 14);
        size_t len;
        uint8_t *f = frame_wrap(t, slot, n, r->fmt == KB_JSON ? 1 : 2, &len);
        memmove(slot, f, len);
        used += len;
        c->sent++;
    }
    return used ? conn_send(t, c, t->scratch, used) : 0;
}

/*
 * `subscribed` gives, per partition, the first offset the subscription delivers (protocol.md,
 * Subscriptions): from there every record must arrive. It should be the high watermark read
 * before anything was produced; one that is not is counted (nothing else should write the topic).
 */
static void subscribed_at(kb_thread_t *t, kb_conn_t *c)
{
    kb_run_t *r = t->run;
    for (int i = 0; i < r->partitions; i++) {
        if (t->offs[i] >= 0 && c->next) {
            if (t->offs[i] != r->start_offsets[i]) t->start_moved++;
            c->next[i] = t->offs[i];
        }
        t->offs[i] = -1;
    }
}

/* For the first few errors: the envelope, bytes that are not printable ASCII as '.'. */
static void print_envelope(const char *what, const uint8_t *p, size_t n)
{
    char line[301];
    size_t k = n < 300 ? n : 300;
    for (size_t i = 0; i < k; i++)
        line[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '.';
    line[k] = 0;
    warn("%s: %s", what, line);
}

/* A complete envelope arrived at `now` (CLOCK_REALTIME, for latency; monotonic for rates). */
static void on_envelope(kb_thread_t *t, kb_conn_t *c, const uint8_t *p, size_t n, int64_t now,
                        int64_t mono)
{
    kb_run_t *r = t->run;
    kb_env_t e;
    e.offs = t->offs;
    e.ncap = r->partitions;
    if (kb_read_env(r->fmt, p, n, &e) != 0) {
        t->bad_frames++;
        return;
    }
    switch (e.op) {
    case KB_OP_RECORD:
        if (t->first_ns == 0) t->first_ns = mono;
        t->last_ns = mono;
        if (e.partition < 0 || e.partition >= r->partitions || e.offset < 0 || c->next == NULL) {
            t->bad_frames++;
            return;
        }
        int64_t *next = &c->next[e.partition];
        if (e.offset < *next) { /* seen already */
            c->dups++, t->dups++;
            return;
        }
        if (e.offset > *next)
            c->gaps += (uint32_t)(e.offset - *next), t->gaps += (uint64_t)(e.offset - *next);
        *next = e.offset + 1;
        c->received++;
        t->records++;
        if (e.sent_ns > 0) kb_hist_add(&t->hist, now - e.sent_ns);
        break;
    case KB_OP_ACK:
        if (t->first_ns == 0) t->first_ns = mono;
        t->last_ns = mono;
        c->acked++;
        t->acks++;
        if (e.sent_ns > 0) kb_hist_add(&t->hist, now - e.sent_ns);
        break;
    case KB_OP_SUBSCRIBED:
        t->subscribed++;
        subscribed_at(t, c);
        break;
    case KB_OP_ERROR:
        for (int i = 0; i < r->partitions; i++)
            t->offs[i] = -1;
        if (e.error_code == -32) { /* skipped: the records show up as gaps */
            t->skipped++;
        } else if (r->mode == KB_PUBLISH && e.sent_ns > 0) { /* a publish answered with an error */
            c->acked++;
            t->errors++;
        } else if (c->received == 0 && r->subscribe) {
            t->sub_errors++;
        } else {
            t->errors++;
        }
        print_envelope("error envelope", p, n);
        break;
    default:
        break;
    }
}

/* Control frames; 0, or -1 when the connection is gone. */
static int on_control(kb_thread_t *t, kb_conn_t *c, int op, const uint8_t *p, size_t n)
{
    if (op == 9) return send_frame(t, c, p, n > 125 ? 125 : n, 10); /* ping: pong */
    if (op == 8) {                                                  /* close: answer, drop */
        if (c->state == KB_C_OPEN)
            warn("server closed a connection (%u)", n >= 2 ? (unsigned)(p[0] << 8 | p[1]) : 1005u);
        send_frame(t, c, p, n >= 2 ? 2 : 0, 8);
        conn_close(t, c);
        return -1;
    }
    return 0;
}

/* Every complete frame of p[0..n); returns the bytes consumed, or -1 (connection closed). */
static long parse_frames(kb_thread_t *t, kb_conn_t *c, const uint8_t *p, size_t n)
{
    int64_t now = kb_real_ns(), mono = kb_mono_ns(); /* one clock read per read(), not per frame */
    size_t at = 0;
    while (n - at >= 2) {
        const uint8_t *f = p + at;
        size_t hl = 2, len = f[1] & 127;
        if (f[1] & 0x80) goto bad; /* servers never mask */
        if (len == 126) {
            if (n - at < 4) break;
            hl = 4, len = (size_t)f[2] << 8 | f[3];
        } else if (len == 127) {
            if (n - at < 10) break;
            hl = 10, len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | f[2 + i];
        }
        if (len > KB_RBUF - 14) goto bad;
        if (n - at < hl + len) break;
        int op = f[0] & 15;
        if (op >= 8) {
            if (on_control(t, c, op, f + hl, len) != 0) return -1;
        } else if (op == 0 || !(f[0] & 0x80)) {
            t->bad_frames++; /* fragmented: ksockd sends every envelope whole */
        } else {
            on_envelope(t, c, f + hl, len, now, mono);
            if (c->state == KB_C_CLOSED) return -1;
        }
        at += hl + len;
    }
    return (long)at;
bad:
    t->bad_frames++;
    conn_close(t, c);
    return -1;
}

/* The 101 answer; returns the bytes it took, 0 if incomplete, -1 (closed) if refused. */
static long parse_handshake(kb_thread_t *t, kb_conn_t *c, const uint8_t *p, size_t n)
{
    const uint8_t *end = memmem(p, n, "\r\n\r\n", 4);
    if (end == NULL) return n > 8192 ? (conn_close(t, c), -1) : 0;
    const char *want = t->run->fmt == KB_JSON ? "ksock.v1.json" : "ksock.v1.msgpack";
    if (n < 12 || memcmp(p, "HTTP/1.1 101", 12) != 0 ||
        memmem(p, (size_t)(end - p), want, strlen(want)) == NULL) {
        warn("upgrade refused: %.*s", (int)(end - p > 200 ? 200 : end - p), p);
        conn_close(t, c);
        return -1;
    }
    c->state = KB_C_OPEN;
    t->connecting--;
    t->open++;
    if (t->run->subscribe && send_subscribe(t, c) != 0) return -1;
    if (t->run->mode == KB_PUBLISH && atomic_load(&t->run->go) && publish_more(t, c) != 0)
        return -1;
    return (long)(end + 4 - p);
}

static void on_bytes(kb_thread_t *t, kb_conn_t *c, size_t n);

static void on_readable(kb_thread_t *t, kb_conn_t *c)
{
    uint32_t keep = c->rlen;
    if (keep) memcpy(t->buf, c->rbuf, keep);
    ssize_t got = recv(c->fd, t->buf + keep, KB_RBUF - keep, 0);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (got <= 0) {
        if (c->state == KB_C_OPEN) warn("connection lost (%s)", got ? strerror(errno) : "EOF");
        conn_close(t, c);
        return;
    }
    t->reads++;
    on_bytes(t, c, keep + (size_t)got);
}

/* Test hook (tests/e2e/bench/test_kb_frames.c): p[0..n) as if one recv() had returned it. */
void kb_ws_feed(kb_thread_t *t, kb_conn_t *c, const uint8_t *p, size_t n)
{
    uint32_t keep = c->rlen;
    if (keep) memcpy(t->buf, c->rbuf, keep);
    memcpy(t->buf + keep, p, n);
    on_bytes(t, c, keep + n);
}

/* t->buf[0..n): what the connection carried over plus what just arrived. Complete frames are
 * handled; a partial one is kept for the next read. */
static void on_bytes(kb_thread_t *t, kb_conn_t *c, size_t n)
{
    size_t at = 0;
    if (c->state == KB_C_HANDSHAKE) {
        long h = parse_handshake(t, c, t->buf, n);
        if (h < 0) return;
        at = (size_t)h;
    }
    if (c->state == KB_C_OPEN) {
        long f = parse_frames(t, c, t->buf + at, n - at);
        if (f < 0) return;
        at += (size_t)f;
        /* acks free window room: top up once a quarter of the window is free, so that one
         * write carries several publishes (a write per ack would cost the client more than
         * the server spends on the publish) */
        kb_run_t *r = t->run;
        uint32_t room = (uint32_t)r->window - (c->sent - c->acked);
        if (r->mode == KB_PUBLISH && atomic_load_explicit(&r->go, memory_order_relaxed) &&
            room * 4 >= (uint32_t)r->window && publish_more(t, c) != 0)
            return;
    }
    size_t left = n - at;
    if (left != c->rlen) {
        uint8_t *b = left ? realloc(c->rbuf, left) : (free(c->rbuf), NULL);
        if (left && b == NULL) {
            conn_close(t, c);
            return;
        }
        c->rbuf = b;
    }
    if (left) memmove(c->rbuf, t->buf + at, left);
    c->rlen = (uint32_t)left;
}

static void send_upgrade(kb_thread_t *t, kb_conn_t *c)
{
    char req[512];
    uint8_t key[16];
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char k64[25];
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)rng32(t);
    for (int i = 0, o = 0; i < 16; i += 3) { /* 16 bytes: 5 groups of 3 and one of 1 */
        uint32_t v = (uint32_t)key[i] << 16 | (i + 1 < 16 ? key[i + 1] << 8 : 0) |
                     (i + 2 < 16 ? key[i + 2] : 0);
        k64[o++] = b64[v >> 18 & 63];
        k64[o++] = b64[v >> 12 & 63];
        k64[o++] = i + 1 < 16 ? b64[v >> 6 & 63] : '=';
        k64[o++] = i + 2 < 16 ? b64[v & 63] : '=';
        k64[o] = 0;
    }
    kb_run_t *r = t->run;
    int n = snprintf(
        req, sizeof(req),
        "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: %s\r\n\r\n",
        r->path, r->host, r->port, k64, r->fmt == KB_JSON ? "ksock.v1.json" : "ksock.v1.msgpack");
    c->state = KB_C_HANDSHAKE;
    conn_send(t, c, (const uint8_t *)req, (size_t)n);
}

static void on_writable(kb_thread_t *t, kb_conn_t *c)
{
    if (c->state == KB_C_CONNECTING) {
        int e = 0;
        socklen_t l = sizeof(e);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &l);
        if (e) {
            warn("connect: %s", strerror(e));
            conn_close(t, c);
            return;
        }
        set_events(t, c, 0);
        send_upgrade(t, c);
        return;
    }
    conn_flush(t, c);
}

static void open_more(kb_thread_t *t)
{
    kb_run_t *r = t->run;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)r->port)};
    inet_pton(AF_INET, r->host, &a.sin_addr);
    while (t->next_connect < t->nconns && t->connecting < r->connect_window) {
        kb_conn_t *c = &t->conns[t->next_connect++];
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) {
            warn("socket: %s", strerror(errno));
            c->state = KB_C_CLOSED;
            t->closed++;
            continue;
        }
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->state = KB_C_CONNECTING;
        t->connecting++;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
        c->want_out = 1;
        epoll_ctl(t->ep, EPOLL_CTL_ADD, c->fd, &ev);
        if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EINPROGRESS) {
            warn("connect: %s", strerror(errno));
            conn_close(t, c);
        }
    }
}

static void publish_counts(kb_thread_t *t)
{
    kb_counts_t *p = &t->pub;
#define PUB(f) atomic_store_explicit(&p->f, t->f, memory_order_relaxed)
    PUB(open), PUB(subscribed), PUB(sub_errors), PUB(closed), PUB(records), PUB(acks), PUB(errors),
        PUB(dups), PUB(gaps), PUB(bad_frames), PUB(skipped), PUB(start_moved), PUB(reads),
        PUB(first_ns), PUB(last_ns);
#undef PUB
}

static void *thread_main(void *arg)
{
    kb_thread_t *t = arg;
    kb_run_t *r = t->run;
    struct epoll_event evs[256];
    int started = 0;
    while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
        open_more(t);
        if (r->mode == KB_PUBLISH && !started && atomic_load(&r->go)) {
            started = 1;
            for (int i = 0; i < t->nconns; i++)
                if (t->conns[i].state == KB_C_OPEN) publish_more(t, &t->conns[i]);
        }
        int n = epoll_wait(t->ep, evs, 256, 5);
        for (int i = 0; i < n; i++) {
            kb_conn_t *c = evs[i].data.ptr;
            if (c->state == KB_C_CLOSED) continue;
            if (evs[i].events & EPOLLOUT) on_writable(t, c);
            if (c->state != KB_C_CLOSED && evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                if (c->state == KB_C_CONNECTING)
                    on_writable(t, c);
                else
                    on_readable(t, c);
            }
        }
        publish_counts(t);
        /* Coalescing (--coalesce-us): after a turn with few connections ready, let bytes pile
         * up in the socket buffers before the next one, so that each recv() takes many frames.
         * Per recv() the kernel's TCP work and the wake-up cost more than parsing a frame. */
        if (r->coalesce_us > 0 && n > 0 && n < 64) {
            struct timespec ts = {0, (long)r->coalesce_us * 1000};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

int kb_ws_start(kb_run_t *r, char *err, size_t errlen)
{
    free(r->threads); /* a previous run's figures */
    kb_proto_init(r->topic);
    r->conns = calloc((size_t)r->nconns, sizeof(kb_conn_t));
    r->threads = calloc((size_t)r->nthreads, sizeof(kb_thread_t));
    if (r->conns == NULL || r->threads == NULL) return snprintf(err, errlen, "out of memory"), -1;
    for (int i = 0; i < r->nconns; i++) {
        r->conns[i].fd = -1;
        if (r->mode != KB_FANOUT) continue;
        r->conns[i].next = malloc(sizeof(int64_t) * (size_t)r->partitions);
        if (r->conns[i].next == NULL) return snprintf(err, errlen, "out of memory"), -1;
        memcpy(r->conns[i].next, r->start_offsets, sizeof(int64_t) * (size_t)r->partitions);
    }
    int per = r->nconns / r->nthreads, extra = r->nconns % r->nthreads, at = 0;
    for (int i = 0; i < r->nthreads; i++) {
        kb_thread_t *t = &r->threads[i];
        t->index = i;
        t->run = r;
        t->conns = r->conns + at;
        t->nconns = per + (i < extra);
        at += t->nconns;
        t->rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)kb_real_ns() + (uint64_t)i * 7919);
        t->buf = malloc(KB_RBUF);
        t->scratch = malloc(KB_SCRATCH);
        t->offs = malloc(sizeof(int64_t) * (size_t)r->partitions);
        if (t->offs == NULL) return snprintf(err, errlen, "out of memory"), -1;
        for (int k = 0; k < r->partitions; k++)
            t->offs[k] = -1;
        t->ep = epoll_create1(EPOLL_CLOEXEC);
        if (t->buf == NULL || t->scratch == NULL || t->ep < 0)
            return snprintf(err, errlen, "out of memory"), -1;
        if (pthread_create(&t->tid, NULL, thread_main, t) != 0)
            return snprintf(err, errlen, "pthread_create failed"), -1;
    }
    return 0;
}

void kb_ws_join(kb_run_t *r)
{
    atomic_store(&r->stop, 1);
    for (int i = 0; i < r->nthreads; i++)
        pthread_join(r->threads[i].tid, NULL);
}

/* After kb_ws_join: every socket closed and the connections freed (the threads' figures are
 * kept until the next kb_ws_start, which may follow: the publish warm-up). */
void kb_ws_close_all(kb_run_t *r)
{
    for (int i = 0; i < r->nthreads; i++) {
        kb_thread_t *t = &r->threads[i];
        close(t->ep);
        free(t->buf);
        free(t->scratch);
        free(t->offs);
        t->buf = t->scratch = NULL;
        t->offs = NULL;
    }
    for (int k = 0; k < r->nconns; k++) {
        kb_conn_t *c = &r->conns[k];
        if (c->state != KB_C_CLOSED && c->fd >= 0) close(c->fd);
        free(c->rbuf);
        free(c->wbuf);
        free(c->next);
    }
    free(r->conns);
    r->conns = NULL;
    atomic_store(&r->stop, 0);
    atomic_store(&r->go, 0);
    atomic_store(&r->pub_next, 0);
}

void kb_totals(kb_run_t *r, kb_counts_t *s)
{
    memset(s, 0, sizeof(*s));
    int64_t first = 0, last = 0;
    for (int i = 0; i < r->nthreads; i++) {
        kb_counts_t *p = &r->threads[i].pub;
#define ADD(f)                                                                                     \
    atomic_store_explicit(&s->f,                                                                   \
                          atomic_load_explicit(&s->f, memory_order_relaxed) +                      \
                              atomic_load_explicit(&p->f, memory_order_relaxed),                   \
                          memory_order_relaxed)
        ADD(open), ADD(subscribed), ADD(sub_errors), ADD(closed), ADD(records), ADD(acks),
            ADD(errors), ADD(dups), ADD(gaps), ADD(bad_frames), ADD(skipped), ADD(start_moved),
            ADD(reads);
#undef ADD
        int64_t f = atomic_load(&p->first_ns), l = atomic_load(&p->last_ns);
        if (f && (first == 0 || f < first)) first = f;
        if (l > last) last = l;
    }
    atomic_store(&s->first_ns, first);
    atomic_store(&s->last_ns, last);
}
