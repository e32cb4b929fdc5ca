/*
 * ksock-bench: the envelopes it sends and a cheap reader of those it receives (kb.h).
 *
 * The reader is not a decoder: it trusts the server (ksockd's encoders write well-formed
 * envelopes, docs/protocol.md sections 3 and 4) and picks out only what the figures need (the
 * op, a record's partition, offset and the send time at the start of its value, an ack's id, an
 * error's code). For JSON that is a few memmem() calls per frame instead of a parse; for
 * MessagePack one walk over the map. The point is to cost the generator much less per record
 * than the server spends encoding and sending it.
 */
/* memmem needs _GNU_SOURCE, which the build defines */
#include "kb.h"

#include <stdio.h>
#include <string.h>

/* ---- building ---- */

static uint8_t *put(uint8_t *o, const char *s)
{
    size_t n = strlen(s);
    memcpy(o, s, n);
    return o + n;
}

static uint8_t *mp_str(uint8_t *o, const char *s, size_t n)
{
    if (n < 32) {
        *o++ = (uint8_t)(0xa0 | n);
    } else if (n < 256) {
        *o++ = 0xd9;
        *o++ = (uint8_t)n;
    } else {
        *o++ = 0xda;
        *o++ = (uint8_t)(n >> 8);
        *o++ = (uint8_t)n;
    }
    memcpy(o, s, n);
    return o + n;
}

static uint8_t *mp_cstr(uint8_t *o, const char *s)
{
    return mp_str(o, s, strlen(s));
}

size_t kb_build_subscribe(enum kb_fmt f, const char *topic, uint8_t *out)
{
    uint8_t *o = out;
    if (f == KB_JSON) {
        o = put(o, "{\"op\":\"subscribe\",\"id\":\"s\",\"topic\":\"");
        o = put(o, topic); /* the driver accepts only Kafka topic characters: nothing to escape */
        o = put(o, "\",\"start\":\"latest\"}");
    } else {
        *o++ = 0x84;
        o = mp_cstr(o, "op");
        o = mp_cstr(o, "subscribe");
        o = mp_cstr(o, "id");
        o = mp_cstr(o, "s");
        o = mp_cstr(o, "topic");
        o = mp_cstr(o, topic);
        o = mp_cstr(o, "start");
        o = mp_cstr(o, "latest");
    }
    return (size_t)(o - out);
}

/*
 * A value of `size` bytes that starts with the send time in decimal (19 digits for any
 * CLOCK_REALTIME of this century), then 'x' padding: plain ASCII, so JSON carries it as
 * "value":"..." (not value_b64) and every receiver reads the time with the same digit loop.
 */
void kb_value_fill(uint8_t *out, int size, int64_t sent_ns)
{
    char d[24];
    int n = snprintf(d, sizeof(d), "%019lld", (long long)sent_ns);
    if (n > size) n = size;
    memcpy(out, d, (size_t)n);
    if (size > n) memset(out + n, 'x', (size_t)(size - n));
}

size_t kb_build_publish(enum kb_fmt f, const char *topic, int64_t id, int value_size, uint8_t *out)
{
    char ids[24];
    int idn = snprintf(ids, sizeof(ids), "%lld", (long long)id);
    uint8_t *o = out;
    if (f == KB_JSON) {
        o = put(o, "{\"op\":\"publish\",\"id\":\"");
        o = put(o, ids);
        o = put(o, "\",\"topic\":\"");
        o = put(o, topic);
        o = put(o, "\",\"value\":\"");
        kb_value_fill(o, value_size, id);
        o += value_size;
        o = put(o, "\"}");
    } else {
        *o++ = 0x84;
        o = mp_cstr(o, "op");
        o = mp_cstr(o, "publish");
        o = mp_cstr(o, "id");
        o = mp_str(o, ids, (size_t)idn);
        o = mp_cstr(o, "topic");
        o = mp_cstr(o, topic);
        o = mp_cstr(o, "value");
        if (value_size < 256) {
            *o++ = 0xc4;
            *o++ = (uint8_t)value_size;
        } else {
            *o++ = 0xc5;
            *o++ = (uint8_t)(value_size >> 8);
            *o++ = (uint8_t)value_size;
        }
        kb_value_fill(o, value_size, id);
        o += value_size;
    }
    return (size_t)(o - out);
}

/* ---- reading JSON ---- */

/* Eight ASCII digits at p as a number, or -1 if they are not all digits (the SWAR check and
 * conversion of simdjson's number parser: a handful of multiplications instead of a loop). */
static int64_t eight_digits(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    if ((((v & 0xF0F0F0F0F0F0F0F0) | (((v + 0x0606060606060606) & 0xF0F0F0F0F0F0F0F0) >> 4)) !=
         0x3333333333333333))
        return -1;
    v -= 0x3030303030303030;
    v = (v * 10) + (v >> 8);
    v = (((v & 0x000000FF000000FF) * (100 + (1000000ULL << 32))) +
         (((v >> 16) & 0x000000FF000000FF) * (1 + (10000ULL << 32)))) >>
        32;
    return (int64_t)v;
}

static int64_t digits(const uint8_t *p, const uint8_t *end, int neg_ok)
{
    int neg = 0;
    /* the send time at the start of a value: 19 digits, two thirds of them in two steps */
    if (!neg_ok && end - p >= 19) {
        int64_t a = eight_digits(p), b = eight_digits(p + 8);
        if (a >= 0 && b >= 0) {
            uint64_t v = (uint64_t)a * 100000000 + (uint64_t)b;
            for (int i = 16; i < 19 && p[i] >= '0' && p[i] <= '9'; i++)
                v = v * 10 + (uint64_t)(p[i] - '0');
            return (int64_t)(v & INT64_MAX); /* 19 nines would not fit: no signed overflow */
        }
    }
    if (neg_ok && p < end && *p == '-') neg = 1, p++;
    if (p >= end || *p < '0' || *p > '9') return -1;
    uint64_t v = 0;
    for (int i = 0; p < end && *p >= '0' && *p <= '9' && i < 19; p++, i++)
        v = v * 10 + (uint64_t)(*p - '0');
    return neg ? -(int64_t)(v & INT64_MAX) : (int64_t)(v & INT64_MAX);
}

static int64_t json_int(const uint8_t *p, size_t n, const char *key, int neg_ok)
{
    size_t kl = strlen(key);
    const uint8_t *k = memmem(p, n, key, kl);
    return k ? digits(k + kl, p + n, neg_ok) : -1;
}

static void got_offset(kb_env_t *e, int64_t part, int64_t off)
{
    if (part >= 0 && part < e->ncap && e->offs) e->offs[part] = off;
    e->noffs++;
}

/* "offsets":[{"partition":0,"offset":17},...]: entries are objects of those two members only. */
static void json_offsets(const uint8_t *p, size_t n, kb_env_t *e)
{
    static const char key[] = "\"offsets\":[";
    const uint8_t *end = p + n, *at = memmem(p, n, key, sizeof(key) - 1);
    if (at == NULL) return;
    at += sizeof(key) - 1;
    while (at < end && *at == '{') {
        const uint8_t *close = memchr(at, '}', (size_t)(end - at));
        if (close == NULL) return;
        size_t len = (size_t)(close - at);
        got_offset(e, json_int(at, len, "\"partition\":", 0), json_int(at, len, "\"offset\":", 0));
        at = close + 1;
        if (at < end && *at == ',') at++;
    }
}

static enum kb_op json_op(const uint8_t *p, size_t n)
{
    static const char pre[] = "{\"op\":\"";
    if (n < sizeof(pre) + 3 || memcmp(p, pre, sizeof(pre) - 1) != 0) return KB_OP_OTHER;
    const uint8_t *o = p + sizeof(pre) - 1;
    size_t left = n - (sizeof(pre) - 1);
#define IS(s) (left > sizeof(s) && memcmp(o, s "\"", sizeof(s)) == 0)
    if (IS("record")) return KB_OP_RECORD;
    if (IS("ack")) return KB_OP_ACK;
    if (IS("subscribed")) return KB_OP_SUBSCRIBED;
    if (IS("error")) return KB_OP_ERROR;
    if (IS("pong")) return KB_OP_PONG;
#undef IS
    return KB_OP_OTHER;
}

/*
 * The record prefix ksockd writes for our topic, `{"op":"record","topic":"T","partition":`, and
 * the members after it in encoder order (protocol.md section 3): a record of the run is read
 * by position, with memcmp() of short literals and digit loops, no search. Anything else (a key,
 * another order) falls back to the memmem() path.
 */
static char rec_prefix[300];
static size_t rec_prefix_len;

static void mp_init(const char *topic);

void kb_proto_init(const char *topic)
{
    int n = snprintf(rec_prefix, sizeof(rec_prefix),
                     "{\"op\":\"record\",\"topic\":\"%s\",\"partition\":", topic);
    rec_prefix_len = n > 0 && (size_t)n < sizeof(rec_prefix) ? (size_t)n : 0;
    mp_init(topic);
}

static int lit(const uint8_t **q, const uint8_t *end, const char *s, size_t n)
{
    if ((size_t)(end - *q) < n || memcmp(*q, s, n) != 0) return 0;
    *q += n;
    return 1;
}
#define LIT(q, end, s) lit(q, end, s, sizeof(s) - 1)

static const uint8_t *num(const uint8_t *q, const uint8_t *end, int64_t *v)
{
    const uint8_t *start = q;
    uint64_t x = 0;
    while (q < end && *q >= '0' && *q <= '9' && q - start < 19)
        x = x * 10 + (uint64_t)(*q++ - '0');
    *v = (int64_t)(x & INT64_MAX);
    return q > start ? q : NULL;
}

static int json_record_fast(const uint8_t *p, size_t n, kb_env_t *e)
{
    const uint8_t *q = p + rec_prefix_len, *end = p + n;
    int64_t part, off, ts;
    if (rec_prefix_len == 0 || n <= rec_prefix_len || memcmp(p, rec_prefix, rec_prefix_len) != 0)
        return -1;
    if ((q = num(q, end, &part)) == NULL || !LIT(&q, end, ",\"offset\":") ||
        (q = num(q, end, &off)) == NULL)
        return -1;
    if (LIT(&q, end, ",\"timestamp\":") && (q = num(q, end, &ts)) == NULL) return -1;
    if (!LIT(&q, end, ",\"value\":\"")) return -1;
    e->op = KB_OP_RECORD;
    e->partition = (int32_t)part;
    e->offset = off;
    e->sent_ns = digits(q, end, 0);
    return 0;
}

static int read_json(const uint8_t *p, size_t n, kb_env_t *e)
{
    if (json_record_fast(p, n, e) == 0) return 0;
    e->op = json_op(p, n);
    switch (e->op) {
    case KB_OP_RECORD:
        e->partition = (int32_t)json_int(p, n, "\"partition\":", 0);
        e->offset = json_int(p, n, "\"offset\":", 0);
        e->sent_ns = json_int(p, n, "\"value\":\"", 0);
        break;
    case KB_OP_ACK:
        e->sent_ns = json_int(p, n, "\"id\":\"", 0);
        break;
    case KB_OP_ERROR:
        e->error_code = (int32_t)json_int(p, n, "\"error_code\":", 1);
        e->sent_ns = json_int(p, n, "\"id\":\"", 0);
        json_offsets(p, n, e);
        break;
    case KB_OP_SUBSCRIBED:
        json_offsets(p, n, e);
        break;
    default:
        break;
    }
    return 0;
}

/* ---- reading MessagePack ---- */

typedef struct {
    const uint8_t *p, *end;
} mp_t;

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* Reads one item's head: *kind 'i' int (value in *v), 's' str or bin (*v length, data at
 * m->p), 'a' array, 'm' map (*v entries), 'n' nil or bool, 'f' float (skipped); -1 at the end or
 * on a type the protocol never sends. */
static int mp_head(mp_t *m, char *kind, int64_t *v)
{
    if (m->p >= m->end) return -1;
    uint8_t b = *m->p++;
    int need = 0;
    if (b <= 0x7f) return *kind = 'i', *v = b, 0;
    if (b >= 0xe0) return *kind = 'i', *v = (int8_t)b, 0;
    if ((b & 0xe0) == 0xa0) return *kind = 's', *v = b & 31, 0;
    if ((b & 0xf0) == 0x90) return *kind = 'a', *v = b & 15, 0;
    if ((b & 0xf0) == 0x80) return *kind = 'm', *v = b & 15, 0;
    /* 0xc0..0xdf: kind (0 = never sent by the protocol), bytes that follow, signed */
    static const struct {
        char kind;
        int8_t size, sign;
    } t[32] = {
        [0x00] = {'n', 0, 0}, [0x02] = {'n', 0, 0}, [0x03] = {'n', 0, 0}, [0x04] = {'s', 1, 0},
        [0x05] = {'s', 2, 0}, [0x06] = {'s', 4, 0}, [0x0a] = {'f', 4, 0}, [0x0b] = {'f', 8, 0},
        [0x0c] = {'i', 1, 0}, [0x0d] = {'i', 2, 0}, [0x0e] = {'i', 4, 0}, [0x0f] = {'i', 8, 0},
        [0x10] = {'i', 1, 1}, [0x11] = {'i', 2, 1}, [0x12] = {'i', 4, 1}, [0x13] = {'i', 8, 1},
        [0x19] = {'s', 1, 0}, [0x1a] = {'s', 2, 0}, [0x1b] = {'s', 4, 0}, [0x1c] = {'a', 2, 0},
        [0x1d] = {'a', 4, 0}, [0x1e] = {'m', 2, 0}, [0x1f] = {'m', 4, 0}};
    if (b < 0xc0 || t[b - 0xc0].kind == 0) return -1;
    need = t[b - 0xc0].size;
    if (m->end - m->p < need) return -1;
    uint64_t u = be(m->p, need);
    m->p += need;
    if (t[b - 0xc0].sign && need < 8)
        u = (uint64_t)((int64_t)(u << (64 - 8 * need)) >> (64 - 8 * need));
    *kind = t[b - 0xc0].kind;
    *v = (int64_t)u;
    return 0;
}

static int mp_skip(mp_t *m, int depth)
{
    char k;
    int64_t v;
    if (depth > 8 || mp_head(m, &k, &v) != 0) return -1;
    if (k == 's') {
        if (v > m->end - m->p) return -1;
        m->p += v;
    } else if (k == 'a' || k == 'm') {
        for (int64_t i = 0; i < v * (k == 'm' ? 2 : 1); i++)
            if (mp_skip(m, depth + 1) != 0) return -1;
    }
    return 0;
}

static enum kb_op mp_op(const uint8_t *s, int64_t n)
{
#define IS(x) (n == (int64_t)sizeof(x) - 1 && memcmp(s, x, sizeof(x) - 1) == 0)
    if (IS("record")) return KB_OP_RECORD;
    if (IS("ack")) return KB_OP_ACK;
    if (IS("subscribed")) return KB_OP_SUBSCRIBED;
    if (IS("error")) return KB_OP_ERROR;
    if (IS("pong")) return KB_OP_PONG;
#undef IS
    return KB_OP_OTHER;
}

/* `offsets`: an array (its head read) of maps {"partition": int, "offset": int}. */
static int mp_offsets(mp_t *m, int64_t count, kb_env_t *e)
{
    for (int64_t i = 0; i < count; i++) {
        char k;
        int64_t fields, part = -1, off = -1, v, kn;
        if (mp_head(m, &k, &fields) != 0 || k != 'm') return -1;
        for (int64_t f = 0; f < fields; f++) {
            if (mp_head(m, &k, &kn) != 0 || k != 's' || kn > m->end - m->p) return -1;
            const uint8_t *key = m->p;
            m->p += kn;
            if (mp_head(m, &k, &v) != 0 || k != 'i') return -1;
            if (kn == 9 && memcmp(key, "partition", 9) == 0) part = v;
            if (kn == 6 && memcmp(key, "offset", 6) == 0) off = v;
        }
        got_offset(e, part, off);
    }
    return 0;
}

/* One map member: the key is a str, the value whatever the member is. */
static int mp_member(mp_t *m, kb_env_t *e)
{
    char k;
    int64_t kn, v;
    if (mp_head(m, &k, &kn) != 0 || k != 's' || kn > m->end - m->p) return -1;
    const uint8_t *key = m->p;
    m->p += kn;
    const uint8_t *vstart = m->p;
    if (mp_head(m, &k, &v) != 0) return -1;
#define KEY(x) (kn == (int64_t)sizeof(x) - 1 && memcmp(key, x, sizeof(x) - 1) == 0)
    if (k == 'i') {
        if (KEY("partition"))
            e->partition = (int32_t)v;
        else if (KEY("offset"))
            e->offset = v;
        else if (KEY("error_code"))
            e->error_code = (int32_t)v;
        return 0;
    }
    if (k == 's') {
        if (v > m->end - m->p) return -1;
        if (KEY("op"))
            e->op = mp_op(m->p, v);
        else if (KEY("value") || KEY("id"))
            e->sent_ns = digits(m->p, m->p + v, 0);
        m->p += v;
        return 0;
    }
    if (k == 'a' && KEY("offsets")) return mp_offsets(m, v, e);
#undef KEY
    m->p = vstart;
    return mp_skip(m, 0);
}

/*
 * A record of the run in ksockd's member order (protocol.md section 4): after the map head,
 * "op":"record","topic":T,"partition" are fixed bytes (mp_prefix), then partition, "offset",
 * offset, optionally "timestamp" and its value, then "value" and a bin. Read by position;
 * anything else goes to the general walk.
 */
static uint8_t mp_prefix[300];
static size_t mp_prefix_len;

static void mp_init(const char *topic)
{
    uint8_t *o = mp_prefix;
    o = mp_cstr(o, "op");
    o = mp_cstr(o, "record");
    o = mp_cstr(o, "topic");
    o = strlen(topic) < 250 ? mp_cstr(o, topic) : o;
    o = mp_cstr(o, "partition");
    mp_prefix_len = (size_t)(o - mp_prefix);
}

static int mp_int(mp_t *m, int64_t *v)
{
    char k;
    return mp_head(m, &k, v) == 0 && k == 'i' ? 0 : -1;
}

static int mp_key(mp_t *m, const char *key, size_t n)
{
    if ((size_t)(m->end - m->p) < n + 1 || m->p[0] != (0xa0 | n) || memcmp(m->p + 1, key, n) != 0)
        return 0;
    m->p += n + 1;
    return 1;
}
#define MP_KEY(m, k) mp_key(m, k, sizeof(k) - 1)

static int mp_record_fast(const uint8_t *p, size_t n, kb_env_t *e)
{
    mp_t m = {p + 1 + mp_prefix_len, p + n};
    int64_t part, off, ts, len;
    char k;
    if (n <= 1 + mp_prefix_len || (p[0] & 0xf0) != 0x80 ||
        memcmp(p + 1, mp_prefix, mp_prefix_len) != 0)
        return -1;
    if (mp_int(&m, &part) != 0 || !MP_KEY(&m, "offset") || mp_int(&m, &off) != 0) return -1;
    if (MP_KEY(&m, "timestamp") && mp_int(&m, &ts) != 0) return -1;
    if (!MP_KEY(&m, "value") || mp_head(&m, &k, &len) != 0 || k != 's' || len > m.end - m.p)
        return -1;
    e->op = KB_OP_RECORD;
    e->partition = (int32_t)part;
    e->offset = off;
    e->sent_ns = digits(m.p, m.p + len, 0);
    return 0;
}

static int read_msgpack(const uint8_t *p, size_t n, kb_env_t *e)
{
    if (mp_record_fast(p, n, e) == 0) return 0;
    mp_t m = {p, p + n};
    char k;
    int64_t count;
    e->op = KB_OP_OTHER;
    if (mp_head(&m, &k, &count) != 0 || k != 'm') return -1;
    for (int64_t i = 0; i < count; i++)
        if (mp_member(&m, e) != 0) return -1;
    return 0;
}

int kb_read_env(enum kb_fmt f, const uint8_t *p, size_t n, kb_env_t *e)
{
    e->partition = -1;
    e->offset = -1;
    e->sent_ns = -1;
    e->error_code = 0;
    e->noffs = 0;
    return f == KB_JSON ? read_json(p, n, e) : read_msgpack(p, n, e);
}

/* ---- latency histogram ---- */

/* Below 64 ns one bucket per ns; above, 64 buckets per power of two. */
static int bucket(int64_t v)
{
    if (v < 64) return v < 0 ? 0 : (int)v;
    int e = 63 - __builtin_clzll((unsigned long long)v); /* >= 6 */
    int i = (e - 5) * 64 + (int)((v >> (e - 6)) & 63);
    return i < KB_HIST_BUCKETS ? i : KB_HIST_BUCKETS - 1;
}

/* The middle of bucket i. */
static int64_t bucket_value(int i)
{
    if (i < 64) return i;
    int e = i / 64 + 5, sub = i % 64;
    int64_t lo = (int64_t)(64 + sub) << (e - 6);
    return lo + ((int64_t)1 << (e - 6)) / 2;
}

void kb_hist_add(kb_hist_t *h, int64_t v)
{
    h->n[bucket(v)]++;
    h->count++;
    if (v > h->max) h->max = v;
}

void kb_hist_merge(kb_hist_t *into, const kb_hist_t *h)
{
    for (int i = 0; i < KB_HIST_BUCKETS; i++)
        into->n[i] += h->n[i];
    into->count += h->count;
    if (h->max > into->max) into->max = h->max;
}

int64_t kb_hist_pct(const kb_hist_t *h, double pct)
{
    if (h->count == 0) return -1;
    uint64_t rank = (uint64_t)(pct / 100.0 * (double)h->count + 0.5);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (int i = 0; i < KB_HIST_BUCKETS; i++) {
        seen += h->n[i];
        if (seen >= rank) {
            int64_t v = bucket_value(i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}
