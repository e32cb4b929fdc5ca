/*
 * ksock-bench's frame parser and record readers (tools/bench/kb_ws.c, kb_proto.c) fed byte
 * streams directly (kb_ws_feed): the same records, pings and `subscribed` cut into reads of
 * every size from 1 byte up, frames with 7-, 16- and 64-bit lengths, records in ksockd's member
 * order (read by position) and with a key (the general reader), JSON and MessagePack; then what
 * a server must not send (a masked frame, a fragment) and a close. Each case checks what the
 * generator would report: records, duplicates, gaps, bad frames, latency samples, and the
 * pongs it wrote back.
 */
#include "kb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int failures;
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: %s: CHECK(%s) failed\n", __FILE__, __LINE__, cur, #cond);      \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)
static const char *cur = "";

#define PARTS    3
#define DELAY_NS 5000000 /* records claim to have been sent 5 ms before the test wrote them */

typedef struct {
    uint8_t *p;
    size_t n, cap;
    int records, pings;
    int64_t next[PARTS];
} stream_t;

static void put(stream_t *s, const void *p, size_t n)
{
    if (s->n + n > s->cap) {
        s->cap = (s->n + n) * 2;
        s->p = realloc(s->p, s->cap);
    }
    memcpy(s->p + s->n, p, n);
    s->n += n;
}

/* A server frame: FIN, opcode, unmasked, the shortest length form. */
static void frame(stream_t *s, int opcode, const void *payload, size_t n)
{
    uint8_t h[10] = {(uint8_t)(0x80 | opcode)};
    size_t hl = 2;
    if (n < 126) {
        h[1] = (uint8_t)n;
    } else if (n < 65536) {
        h[1] = 126, h[2] = (uint8_t)(n >> 8), h[3] = (uint8_t)n, hl = 4;
    } else {
        h[1] = 127, hl = 10;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
    }
    put(s, h, hl);
    put(s, payload, n);
}

static uint8_t *mp_s(uint8_t *o, const char *str)
{
    size_t n = strlen(str);
    *o++ = (uint8_t)(0xa0 | n);
    memcpy(o, str, n);
    return o + n;
}

/* One record of partition p (next offset), its value `vlen` bytes starting with the send time;
 * with_key puts a key before the value, which only the general reader handles. */
static void record(stream_t *s, enum kb_fmt f, int p, size_t vlen, int with_key)
{
    uint8_t *value = malloc(vlen), *env = malloc(vlen + 200), *o = env;
    kb_value_fill(value, (int)vlen, kb_real_ns() - DELAY_NS);
    int64_t off = s->next[p]++;
    if (f == KB_JSON) {
        o += sprintf((char *)o,
                     "{\"op\":\"record\",\"topic\":\"t\",\"partition\":%d,\"offset\":%lld,"
                     "\"timestamp\":1700000000000,%s\"value\":\"",
                     p, (long long)off, with_key ? "\"key\":\"k\"," : "");
        memcpy(o, value, vlen);
        o += vlen;
        o += sprintf((char *)o, "\"}");
    } else {
        *o++ = (uint8_t)(0x80 | (with_key ? 7 : 6));
        o = mp_s(mp_s(o, "op"), "record");
        o = mp_s(mp_s(o, "topic"), "t");
        o = mp_s(o, "partition"), *o++ = (uint8_t)p;
        o = mp_s(o, "offset"), *o++ = 0xcd, *o++ = (uint8_t)(off >> 8), *o++ = (uint8_t)off;
        o = mp_s(o, "timestamp"), *o++ = 0xcf;
        for (int i = 0; i < 8; i++)
            *o++ = (uint8_t)(1700000000000ull >> (56 - 8 * i));
        if (with_key) o = mp_s(o, "key"), *o++ = 0xc4, *o++ = 1, *o++ = 'k';
        o = mp_s(o, "value");
        if (vlen < 256) {
            *o++ = 0xc4, *o++ = (uint8_t)vlen;
        } else if (vlen < 65536) {
            *o++ = 0xc5, *o++ = (uint8_t)(vlen >> 8), *o++ = (uint8_t)vlen;
        } else {
            *o++ = 0xc6;
            for (int i = 0; i < 4; i++)
                *o++ = (uint8_t)(vlen >> (24 - 8 * i));
        }
        memcpy(o, value, vlen);
        o += vlen;
    }
    frame(s, f == KB_JSON ? 1 : 2, env, (size_t)(o - env));
    s->records++;
    free(value);
    free(env);
}

static void subscribed(stream_t *s, enum kb_fmt f)
{
    if (f == KB_JSON) {
        const char *j =
            "{\"op\":\"subscribed\",\"id\":\"s\",\"topic\":\"t\",\"start\":\"offsets\","
            "\"offsets\":[{\"partition\":0,\"offset\":0},{\"partition\":1,\"offset\":0},"
            "{\"partition\":2,\"offset\":0}]}";
        frame(s, 1, j, strlen(j));
        return;
    }
    uint8_t env[200], *o = env;
    *o++ = 0x85;
    o = mp_s(mp_s(o, "op"), "subscribed");
    o = mp_s(mp_s(o, "id"), "s");
    o = mp_s(mp_s(o, "topic"), "t");
    o = mp_s(mp_s(o, "start"), "offsets");
    o = mp_s(o, "offsets"), *o++ = 0x90 | PARTS;
    for (int p = 0; p < PARTS; p++) {
        *o++ = 0x82;
        o = mp_s(o, "partition"), *o++ = (uint8_t)p;
        o = mp_s(o, "offset"), *o++ = 0;
    }
    frame(s, 2, env, (size_t)(o - env));
}

/* The connection under test: open, subscribed to "t", its pongs going to sv[1]. */
static kb_run_t run;
static kb_thread_t th;
static kb_conn_t conn;
static int64_t next[PARTS], starts[PARTS], offs[PARTS];
static int sv[2];

static void setup(enum kb_fmt f)
{
    static uint8_t *buf;
    if (buf == NULL) buf = malloc(KB_RBUF);
    if (sv[1] > 0) { /* the last case's pair; its conn end may be closed already */
        if (conn.state != KB_C_CLOSED) close(conn.fd);
        close(sv[1]);
    }
    free(conn.rbuf);
    memset(&run, 0, sizeof(run));
    memset(&th, 0, sizeof(th));
    memset(&conn, 0, sizeof(conn));
    run.mode = KB_FANOUT, run.fmt = f, run.topic = "t", run.partitions = PARTS;
    run.subscribe = 1, run.window = 1, run.start_offsets = starts;
    th.run = &run, th.buf = buf, th.offs = offs, th.rng = 42, th.open = 1;
    for (int p = 0; p < PARTS; p++)
        offs[p] = -1, next[p] = 7; /* the subscribed offsets (0) must replace these */
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) abort();
    conn.fd = sv[0], conn.state = KB_C_OPEN, conn.next = next;
    kb_proto_init("t");
}

/* Pong frames written back: masked, opcode 10, the ping's 2 bytes. */
static int pongs(void)
{
    uint8_t b[65536];
    shutdown(sv[0], SHUT_WR);
    int n = 0;
    size_t got = 0;
    ssize_t r;
    while ((r = read(sv[1], b + got, sizeof(b) - got)) > 0)
        got += (size_t)r;
    for (size_t i = 0; i + 8 <= got; i += 8)
        n += b[i] == 0x8a && b[i + 1] == (0x80 | 2) && (b[i + 6] ^ b[i + 2]) == 'h';
    return got % 8 == 0 ? n : -1;
}

static void feed(const stream_t *s, size_t chunk)
{
    for (size_t at = 0; at < s->n && conn.state == KB_C_OPEN; at += chunk)
        kb_ws_feed(&th, &conn, s->p + at, at + chunk <= s->n ? chunk : s->n - at);
}

static void check_all(const stream_t *s)
{
    CHECK(conn.state == KB_C_OPEN);
    CHECK(th.subscribed == 1);
    CHECK(th.records == (uint64_t)s->records && conn.received == (uint32_t)s->records);
    CHECK(th.dups == 0 && th.gaps == 0 && th.bad_frames == 0);
    CHECK(conn.rlen == 0 && conn.rbuf == NULL); /* nothing carried over at the end */
    for (int p = 0; p < PARTS; p++)
        CHECK(next[p] == s->next[p]);
    /* every record gave a latency sample of at least the 5 ms it claims, and not garbage */
    CHECK(th.hist.count == (uint64_t)s->records);
    CHECK(kb_hist_pct(&th.hist, 1) >= DELAY_NS * 98 / 100);
    CHECK(th.hist.max < 60 * (int64_t)1000000000);
    CHECK(pongs() == s->pings);
}

static void streams(enum kb_fmt f, stream_t *small, stream_t *big)
{
    subscribed(small, f);
    for (int i = 0; i < 300; i++) {
        record(small, f, i % PARTS, i % 3 == 0 ? 19 : 100, i % 7 == 0);
        if (i % 10 == 0) frame(small, 9, "hi", 2), small->pings++;
    }
    subscribed(big, f);
    record(big, f, 0, 100, 0);
    record(big, f, 1, 70000, 0); /* 64-bit length */
    record(big, f, 2, 30000, 1); /* 16-bit length, general reader */
    frame(big, 9, "hi", 2), big->pings++;
    record(big, f, 0, 19, 0);
}

static void good_streams(enum kb_fmt f)
{
    stream_t small = {0}, big = {0};
    streams(f, &small, &big);
    static const size_t chunks[] = {1, 2, 3, 5, 7, 13, 64, 1000, 1 << 20};
    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        char name[64];
        snprintf(name, sizeof(name), "%s, 300 records, reads of %zu", f ? "msgpack" : "json",
                 chunks[i]);
        cur = name;
        setup(f);
        feed(&small, chunks[i]);
        check_all(&small);
    }
    static const size_t big_chunks[] = {4096, 65536, 1 << 20};
    for (size_t i = 0; i < 3; i++) {
        char name[64];
        snprintf(name, sizeof(name), "%s, 7/16/64-bit lengths, reads of %zu",
                 f ? "msgpack" : "json", big_chunks[i]);
        cur = name;
        setup(f);
        feed(&big, big_chunks[i]);
        check_all(&big);
    }
    free(small.p);
    free(big.p);
}

static void bad_streams(void)
{
    stream_t s = {0};
    cur = "a repeated and a skipped offset";
    setup(KB_JSON);
    subscribed(&s, KB_JSON);
    record(&s, KB_JSON, 0, 100, 0); /* 0 */
    s.next[0]--;
    record(&s, KB_JSON, 0, 100, 0); /* 0 again */
    s.next[0] += 5;
    record(&s, KB_JSON, 0, 100, 0); /* 6: 1..5 missing */
    feed(&s, s.n);
    CHECK(th.records == 2 && th.dups == 1 && th.gaps == 5 && conn.state == KB_C_OPEN);

    cur = "a fragment is counted, the connection stays";
    setup(KB_JSON);
    s.n = 0;
    uint8_t frag[] = {0x01, 3, '{', '}', ' ', 0x80, 0};
    put(&s, frag, sizeof(frag));
    feed(&s, s.n);
    CHECK(th.bad_frames == 2 && conn.state == KB_C_OPEN);

    cur = "a masked server frame closes the connection";
    setup(KB_JSON);
    s.n = 0;
    uint8_t masked[] = {0x81, 0x82, 1, 2, 3, 4, 'a', 'b'};
    put(&s, masked, sizeof(masked));
    feed(&s, s.n);
    CHECK(th.bad_frames == 1 && conn.state == KB_C_CLOSED && th.closed == 1);

    cur = "a close is answered and the connection dropped";
    setup(KB_MSGPACK);
    s.n = 0;
    uint8_t code[] = {0x03, 0xf5}; /* 1013 */
    frame(&s, 8, code, 2);
    int fd1 = sv[1];
    feed(&s, s.n);
    uint8_t b[16];
    ssize_t r = read(fd1, b, sizeof(b));
    CHECK(conn.state == KB_C_CLOSED && th.closed == 1);
    CHECK(r == 8 && b[0] == 0x88 && b[1] == (0x80 | 2) && (b[6] ^ b[2]) == 0x03);
    free(s.p);
}

int main(void)
{
    good_streams(KB_JSON);
    good_streams(KB_MSGPACK);
    bad_streams();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("ok: frames split every way, both formats, bad frames\n");
    return 0;
}
