/*
 * serializer_msgpack: decoding an envelope (docs/protocol.md section 4) in one
 * pass, without a value tree. Strings and bytes point into the input
 * frame; only the header and offset arrays go to the envelope's arena.
 */
#include "mp_internal.h"

#include <stdio.h>
#include <string.h>

enum field {
    F_OP,
    F_ID,
    F_TOPIC,
    F_PARTITION,
    F_OFFSET,
    F_TIMESTAMP,
    F_KEY,
    F_VALUE,
    F_HEADERS,
    F_START,
    F_OFFSETS,
    F_START_TS,
    F_ERROR_CODE,
    F_ERROR_MESSAGE,
    F_COUNT
};

static const struct {
    const char *name;
    size_t len;
} fields[F_COUNT] = {
#define FIELD(n)                                                                                   \
    {                                                                                              \
        n, sizeof(n) - 1                                                                           \
    }
    FIELD("op"),         FIELD("id"),
    FIELD("topic"),      FIELD("partition"),
    FIELD("offset"),     FIELD("timestamp"),
    FIELD("key"),        FIELD("value"),
    FIELD("headers"),    FIELD("start"),
    FIELD("offsets"),    FIELD("start_timestamp"),
    FIELD("error_code"), FIELD("error_message"),
#undef FIELD
};

static int field_of(const mp_item_t *k)
{
    for (int f = 0; f < F_COUNT; f++)
        if (fields[f].len == k->n && memcmp(fields[f].name, k->s, k->n) == 0) return f;
    return -1;
}

static int want(mp_reader_t *r, const mp_item_t *it, mp_kind_t kind, const char *what,
                const char *name)
{
    if (it->kind == kind) return 0;
    return mp_fail(r, KSOCK_E_DECODE, it->at, "%s must be %s", name, what);
}

/* A str member: UTF-8 checked, pointing into the input. */
static int read_text(mp_reader_t *r, const mp_item_t *it, const char *name, const char **s,
                     size_t *len)
{
    if (want(r, it, MP_STR, "a string", name) != 0 || mp_check_str(r, it) != 0) return r->err.rc;
    *s = it->s;
    *len = it->n;
    return 0;
}

/* key, value, header value: bin, or str (what JavaScript encoders write for strings). */
static int read_bytes(mp_reader_t *r, const mp_item_t *it, const char *name, ksock_bytes_t *b)
{
    if (it->kind == MP_STR && mp_check_str(r, it) != 0) return r->err.rc;
    if (it->kind != MP_BIN && it->kind != MP_STR)
        return mp_fail(r, KSOCK_E_DECODE, it->at, "%s must be bin", name);
    *b = (ksock_bytes_t){it->s, it->n, true};
    return 0;
}

/* An integer no larger than `max` (its type's), which the protocol wants >= 0. */
static int read_count(mp_reader_t *r, const mp_item_t *it, const char *name, int64_t max,
                      int64_t *v)
{
    if (want(r, it, MP_INT, "an integer", name) != 0) return r->err.rc;
    if (it->i > max) return mp_fail(r, KSOCK_E_DECODE, it->at, "%s beyond int32", name);
    if (it->i < 0) mp_rule(r, it->at, "%s must be >= 0", name);
    *v = it->i;
    return 0;
}

static int read_header(mp_reader_t *r, ksock_header_t *h)
{
    mp_item_t m, k, v;
    unsigned seen = 0;
    if (mp_next(r, &m) != 0 || want(r, &m, MP_MAP, "a map", "header") != 0) return r->err.rc;
    for (size_t i = 0; i < m.n; i++) {
        if (mp_next(r, &k) != 0 || want(r, &k, MP_STR, "a string", "header member name") != 0 ||
            mp_next(r, &v) != 0)
            return r->err.rc;
        unsigned f = k.n == 3 && memcmp(k.s, "key", 3) == 0     ? 1
                     : k.n == 5 && memcmp(k.s, "value", 5) == 0 ? 2
                                                                : 0;
        if (f == 0 || (seen & f))
            return mp_fail(r, KSOCK_E_DECODE, k.at, "%s header member \"%.*s\"",
                           f ? "duplicate" : "unknown", (int)(k.n > 32 ? 32 : k.n), k.s);
        seen |= f;
        if (f == 1 && read_text(r, &v, "header key", &h->key, &h->key_len) != 0) return r->err.rc;
        if (f == 2 && v.kind != MP_NIL && read_bytes(r, &v, "header value", &h->value) != 0)
            return r->err.rc;
    }
    if (!(seen & 1)) mp_rule(r, m.at, "header without a key");
    return 0;
}

static int read_offset(mp_reader_t *r, ksock_partition_offset_t *o)
{
    mp_item_t m, k, v;
    unsigned seen = 0;
    int64_t x;
    if (mp_next(r, &m) != 0 || want(r, &m, MP_MAP, "a map", "offsets entry") != 0) return r->err.rc;
    for (size_t i = 0; i < m.n; i++) {
        if (mp_next(r, &k) != 0 || want(r, &k, MP_STR, "a string", "offsets member name") != 0 ||
            mp_next(r, &v) != 0)
            return r->err.rc;
        unsigned f = k.n == 9 && memcmp(k.s, "partition", 9) == 0 ? 1
                     : k.n == 6 && memcmp(k.s, "offset", 6) == 0  ? 2
                                                                  : 0;
        if (f == 0 || (seen & f))
            return mp_fail(r, KSOCK_E_DECODE, k.at, "%s offsets member \"%.*s\"",
                           f ? "duplicate" : "unknown", (int)(k.n > 32 ? 32 : k.n), k.s);
        seen |= f;
        if (read_count(r, &v, f == 1 ? "partition" : "offset", f == 1 ? INT32_MAX : INT64_MAX, &x))
            return r->err.rc;
        if (f == 1)
            o->partition = (int32_t)x;
        else
            o->offset = x;
    }
    if (seen != 3) mp_rule(r, m.at, "offsets entry needs partition and offset");
    return 0;
}

static int read_headers(mp_reader_t *r, const mp_item_t *it, ksock_envelope_t *e)
{
    if (want(r, it, MP_ARRAY, "an array", "headers") != 0) return r->err.rc;
    if (it->n == 0) return 0;
    ksock_header_t *h = ksock_envelope_alloc(e, it->n * sizeof(*h));
    if (h == NULL) return mp_fail(r, KSOCK_E_NOMEM, it->at, "out of memory");
    memset(h, 0, it->n * sizeof(*h));
    for (size_t i = 0; i < it->n; i++)
        if (read_header(r, &h[i]) != 0) return r->err.rc;
    e->headers = h;
    e->nheaders = it->n;
    return 0;
}

static int read_offsets(mp_reader_t *r, const mp_item_t *it, ksock_envelope_t *e)
{
    if (want(r, it, MP_ARRAY, "an array", "offsets") != 0) return r->err.rc;
    if (it->n == 0) return 0;
    ksock_partition_offset_t *o = ksock_envelope_alloc(e, it->n * sizeof(*o));
    if (o == NULL) return mp_fail(r, KSOCK_E_NOMEM, it->at, "out of memory");
    for (size_t i = 0; i < it->n; i++)
        if (read_offset(r, &o[i]) != 0) return r->err.rc;
    e->offsets = o;
    e->noffsets = it->n;
    return 0;
}

static int read_name(mp_reader_t *r, const mp_item_t *it, int f, ksock_envelope_t *e)
{
    const char *s;
    size_t n;
    if (read_text(r, it, fields[f].name, &s, &n) != 0) return r->err.rc;
    int bad = f == F_OP ? ksock_op_parse(s, n, &e->op) : ksock_start_parse(s, n, &e->start);
    if (bad) mp_rule(r, it->at, "unknown %s \"%.*s\"", fields[f].name, (int)(n > 32 ? 32 : n), s);
    return 0;
}

/* One top-level member whose value is not nil. */
static int read_member(mp_reader_t *r, int f, const mp_item_t *v, ksock_envelope_t *e)
{
    const char *name = fields[f].name;
    int64_t x;
    switch (f) {
    case F_OP:
    case F_START:
        return read_name(r, v, f, e);
    case F_ID:
        return read_text(r, v, name, &e->id, &e->id_len);
    case F_TOPIC:
        return read_text(r, v, name, &e->topic, &e->topic_len);
    case F_ERROR_MESSAGE:
        return read_text(r, v, name, &e->error_message, &e->error_message_len);
    case F_KEY:
        return read_bytes(r, v, name, &e->key);
    case F_VALUE:
        return read_bytes(r, v, name, &e->value);
    case F_HEADERS:
        return read_headers(r, v, e);
    case F_OFFSETS:
        return read_offsets(r, v, e);
    case F_ERROR_CODE:
        if (want(r, v, MP_INT, "an integer", name) != 0) return r->err.rc;
        if (v->i < INT32_MIN || v->i > INT32_MAX)
            return mp_fail(r, KSOCK_E_DECODE, v->at, "error_code beyond int32");
        if (v->i >= 0) mp_rule(r, v->at, "error_code must be negative");
        e->error_code = (int32_t)v->i;
        return 0;
    }
    if (read_count(r, v, name, f == F_PARTITION ? INT32_MAX : INT64_MAX, &x) != 0) return r->err.rc;
    if (f == F_PARTITION) e->partition = (int32_t)x;
    if (f == F_OFFSET) e->offset = x;
    if (f == F_TIMESTAMP) e->timestamp = x;
    if (f == F_START_TS) e->start_timestamp = x;
    return 0;
}

static int read_envelope(mp_reader_t *r, ksock_envelope_t *e)
{
    mp_item_t m, k, v;
    uint32_t seen = 0;
    if (mp_next(r, &m) != 0) return r->err.rc;
    if (m.kind != MP_MAP) return mp_fail(r, KSOCK_E_DECODE, m.at, "an envelope is a map");
    for (size_t i = 0; i < m.n; i++) {
        if (mp_next(r, &k) != 0) return r->err.rc;
        if (k.kind != MP_STR)
            return mp_fail(r, KSOCK_E_DECODE, k.at, "member name is not a string");
        int f = field_of(&k);
        if (f < 0)
            return mp_fail(r, KSOCK_E_DECODE, k.at, "unknown member \"%.*s\"",
                           (int)(k.n > 32 ? 32 : k.n), k.s);
        if (seen & (1u << f))
            return mp_fail(r, KSOCK_E_DECODE, k.at, "duplicate member \"%s\"", fields[f].name);
        seen |= 1u << f;
        if (mp_next(r, &v) != 0) return r->err.rc;
        if (v.kind != MP_NIL && read_member(r, f, &v, e) != 0) return r->err.rc;
    }
    if (r->p != r->end)
        return mp_fail(r, KSOCK_E_DECODE, (size_t)(r->p - r->base), "trailing garbage");
    return 0;
}

/* ---- The id of a frame that failed ------------------------------------------------------ */

/* Skip the contents of container `it` (its header is read), without recursion. */
static int skip_contents(mp_reader_t *r, const mp_item_t *it)
{
    size_t pending = it->kind == MP_ARRAY ? it->n : it->kind == MP_MAP ? 2 * it->n : 0;
    mp_item_t x;
    while (pending) {
        if (mp_next(r, &x) != 0) return r->err.rc;
        pending--;
        /* mp_next checked that the input holds at least one byte per item: no overflow */
        pending += x.kind == MP_ARRAY ? x.n : x.kind == MP_MAP ? 2 * x.n : 0;
    }
    return 0;
}

/*
 * A failed frame's error reply echoes its id when the id itself decoded
 * (serializer.h, decode_envelope): find the first top-level "id" member
 * again, skipping whatever else the map holds, and keep it if it is a
 * valid str. Stops at the first item that cannot be read.
 */
static void find_id(const void *data, size_t len, const ksock_value_limits_t *lim,
                    ksock_envelope_t *env)
{
    mp_reader_t r;
    mp_item_t m, k, v;
    mp_reader_init(&r, data, len, lim);
    if (mp_next(&r, &m) != 0 || m.kind != MP_MAP) return;
    for (size_t i = 0; i < m.n; i++) {
        if (mp_next(&r, &k) != 0) return;
        bool is_id = k.kind == MP_STR && k.n == 2 && memcmp(k.s, "id", 2) == 0;
        if ((!is_id && skip_contents(&r, &k) != 0) || mp_next(&r, &v) != 0) return;
        if (is_id) {
            if (v.kind == MP_STR && mp_check_str(&r, &v) == 0) {
                env->id = v.s;
                env->id_len = v.n;
            }
            return;
        }
        if (skip_contents(&r, &v) != 0) return;
    }
}

/* After a failure: reset every field but a valid id (found again if the decode stopped first). */
static void keep_only_id(const void *data, size_t len, const ksock_value_limits_t *lim,
                         ksock_envelope_t *env)
{
    const char *id = env->id;
    size_t id_len = env->id_len;
    void *arena = env->arena_;
    ksock_envelope_init(env);
    env->arena_ = arena;
    env->id = id;
    env->id_len = id_len;
    if (id == NULL) find_id(data, len, lim, env);
}

int mp_decode_envelope(const void *data, size_t len, const ksock_value_limits_t *lim,
                       ksock_envelope_t *env, char *errstr, size_t errstr_size)
{
    mp_reader_t r;
    mp_reader_init(&r, data, len, lim);
    if (len > lim->max_total) {
        mp_fail(&r, KSOCK_E_LIMIT, 0, "input of %zu bytes over the %llu limit", len,
                (unsigned long long)lim->max_total);
        return mp_report(&r, errstr, errstr_size);
    }
    read_envelope(&r, env);
    int rc = r.err.rc ? r.err.rc : r.proto.rc;
    if (rc != 0) {
        ksock_decode_report(r.err.rc ? &r.err : &r.proto, "msgpack", errstr, errstr_size);
    } else if ((rc = ksock_envelope_check(env, errstr, errstr_size)) != 0 && errstr &&
               errstr_size) {
        char reason[200];
        snprintf(reason, sizeof(reason), "%s", errstr);
        ksock_errstr_set(errstr, errstr_size, "msgpack: %s", reason);
    }
    if (rc != 0 && rc != KSOCK_E_NOMEM) keep_only_id(data, len, lim, env);
    return rc;
}
