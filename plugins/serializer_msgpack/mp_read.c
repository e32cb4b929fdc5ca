/*
 * serializer_msgpack: reading, with a bounded reader of our own rather than
 * msgpack-c's unpacker. msgpack-c 4.0 (a) reports no position, (b) stops
 * at a fixed nesting of 32 (MSGPACK_EMBED_STACK_SIZE) with a "no memory"
 * error, and (c) allocates a container's storage from its declared count
 * before reading any element, so 5 bytes (dd ff ff ff ff) ask for 96 GiB.
 * This reader checks every count against the bytes that remain (each
 * element takes at least one) and against the limits before allocating,
 * walks the input once, and says where it stopped.
 */
#include "mp_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mp_reader_init(mp_reader_t *r, const void *data, size_t len, const ksock_value_limits_t *lim)
{
    memset(r, 0, sizeof(*r));
    r->base = r->p = data;
    r->end = r->base + len;
    r->lim = lim;
    r->max_depth = lim->max_depth < KSOCK_VALUE_MAX_DEPTH ? lim->max_depth : KSOCK_VALUE_MAX_DEPTH;
}

static size_t remaining(const mp_reader_t *r)
{
    return (size_t)(r->end - r->p);
}

static uint64_t be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* Take `n` big-endian bytes after the type byte. */
static int take(mp_reader_t *r, size_t at, int n, uint64_t *v)
{
    *v = 0;
    if (remaining(r) < (size_t)n) return mp_fail(r, KSOCK_E_DECODE, at, "truncated input");
    *v = be(r->p, n);
    r->p += n;
    return 0;
}

static int payload(mp_reader_t *r, mp_item_t *it, mp_kind_t kind, uint64_t n)
{
    it->kind = kind;
    if (n > r->lim->max_string)
        return mp_fail(r, KSOCK_E_LIMIT, it->at, "%s of %llu bytes over the %llu limit",
                       kind == MP_STR ? "string" : "byte string", (unsigned long long)n,
                       (unsigned long long)r->lim->max_string);
    if (n > remaining(r)) return mp_fail(r, KSOCK_E_DECODE, it->at, "truncated input");
    it->s = (const char *)r->p;
    it->n = (size_t)n;
    r->p += n;
    return 0;
}

static int container(mp_reader_t *r, mp_item_t *it, mp_kind_t kind, uint64_t n)
{
    it->kind = kind;
    it->n = (size_t)n;
    if (n > r->lim->max_items)
        return mp_fail(r, KSOCK_E_LIMIT, it->at, "%s of %llu items over the %llu limit",
                       kind == MP_MAP ? "map" : "array", (unsigned long long)n,
                       (unsigned long long)r->lim->max_items);
    /* Every element takes at least one byte (a map entry two): refuse counts the input cannot hold.
     */
    if (n > remaining(r) / (kind == MP_MAP ? 2 : 1))
        return mp_fail(r, KSOCK_E_DECODE, it->at, "truncated input (%s of %llu items)",
                       kind == MP_MAP ? "map" : "array", (unsigned long long)n);
    return 0;
}

static int integer(mp_reader_t *r, mp_item_t *it, int n, bool is_signed)
{
    uint64_t v;
    if (take(r, it->at, n, &v) != 0) return r->err.rc;
    it->kind = MP_INT;
    if (!is_signed) {
        if (v > (uint64_t)INT64_MAX)
            return mp_fail(r, KSOCK_E_DECODE, it->at, "integer beyond int64");
        it->i = (int64_t)v;
    } else {
        /* The conversions to narrower signed types sign-extend (gcc and clang define them). */
        it->i = n == 1 ? (int8_t)v : n == 2 ? (int16_t)v : n == 4 ? (int32_t)v : (int64_t)v;
    }
    return 0;
}

static int floating(mp_reader_t *r, mp_item_t *it, int n)
{
    uint64_t v;
    if (take(r, it->at, n, &v) != 0) return r->err.rc;
    it->kind = MP_FLOAT;
    if (n == 4) {
        uint32_t u = (uint32_t)v;
        float f;
        memcpy(&f, &u, 4);
        it->d = f;
    } else {
        memcpy(&it->d, &v, 8);
    }
    return 0;
}

/* Types whose length or count follows the type byte in `n` bytes. */
static int sized(mp_reader_t *r, mp_item_t *it, unsigned t)
{
    static const struct {
        unsigned char type;
        unsigned char width;
        mp_kind_t kind;
    } tab[] = {
        {0xc4, 1, MP_BIN}, {0xc5, 2, MP_BIN}, {0xc6, 4, MP_BIN},   {0xd9, 1, MP_STR},
        {0xda, 2, MP_STR}, {0xdb, 4, MP_STR}, {0xdc, 2, MP_ARRAY}, {0xdd, 4, MP_ARRAY},
        {0xde, 2, MP_MAP}, {0xdf, 4, MP_MAP},
    };
    for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
        if (tab[i].type != t) continue;
        uint64_t n;
        if (take(r, it->at, tab[i].width, &n) != 0) return r->err.rc;
        if (tab[i].kind == MP_ARRAY || tab[i].kind == MP_MAP)
            return container(r, it, tab[i].kind, n);
        return payload(r, it, tab[i].kind, n);
    }
    return mp_fail(r, KSOCK_E_INTERNAL, it->at, "unhandled type 0x%02x", t);
}

static int other_type(mp_reader_t *r, mp_item_t *it, unsigned t)
{
    switch (t) {
    case 0xc0:
        it->kind = MP_NIL;
        return 0;
    case 0xc2:
    case 0xc3:
        it->kind = MP_BOOL;
        it->b = t == 0xc3;
        return 0;
    case 0xca:
        return floating(r, it, 4);
    case 0xcb:
        return floating(r, it, 8);
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
        return integer(r, it, 1 << (t - 0xcc), false);
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3:
        return integer(r, it, 1 << (t - 0xd0), true);
    case 0xc7:
    case 0xc8:
    case 0xc9:
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        return mp_fail(r, KSOCK_E_DECODE, it->at, "extension type 0x%02x is not supported", t);
    case 0xc1:
        return mp_fail(r, KSOCK_E_DECODE, it->at, "type byte 0xc1 is never used");
    default:
        return sized(r, it, t);
    }
}

int mp_next(mp_reader_t *r, mp_item_t *it)
{
    memset(it, 0, sizeof(*it));
    it->at = (size_t)(r->p - r->base);
    if (r->p >= r->end) return mp_fail(r, KSOCK_E_DECODE, it->at, "truncated input");
    unsigned t = *r->p++;
    if (t <= 0x7f || t >= 0xe0) {
        it->kind = MP_INT;
        it->i = (int8_t)t;
        return 0;
    }
    if (t <= 0x8f) return container(r, it, MP_MAP, t & 0x0f);
    if (t <= 0x9f) return container(r, it, MP_ARRAY, t & 0x0f);
    if (t <= 0xbf) return payload(r, it, MP_STR, t & 0x1f);
    return other_type(r, it, t);
}

int mp_check_str(mp_reader_t *r, const mp_item_t *it)
{
    size_t bad;
    if (ksock_utf8_check(it->s, it->n, &bad)) return 0;
    size_t at = (size_t)((const unsigned char *)it->s - r->base) + bad;
    return mp_fail(r, KSOCK_E_DECODE, at, "invalid UTF-8 in string");
}

/* ---- Values --------------------------------------------------------------------------- */

static int read_value(mp_reader_t *r, uint32_t depth, ksock_value_t **out);

static int read_array(mp_reader_t *r, const mp_item_t *it, uint32_t depth, ksock_value_t *arr)
{
    for (size_t i = 0; i < it->n; i++) {
        ksock_value_t *v;
        if (read_value(r, depth, &v) != 0) return r->err.rc;
        int rc = ksock_value_array_push(arr, v);
        if (rc != 0) return mp_fail(r, rc, it->at, "%s", ksock_strerror(rc));
    }
    return 0;
}

static int read_map(mp_reader_t *r, const mp_item_t *it, uint32_t depth, ksock_value_t *map)
{
    for (size_t i = 0; i < it->n; i++) {
        mp_item_t k;
        ksock_value_t *v;
        if (mp_next(r, &k) != 0) return r->err.rc;
        if (k.kind != MP_STR) return mp_fail(r, KSOCK_E_DECODE, k.at, "map key is not a string");
        if (mp_check_str(r, &k) != 0 || read_value(r, depth, &v) != 0) return r->err.rc;
        int rc = ksock_value_map_set(map, k.s, k.n, v);
        if (rc == KSOCK_E_EXIST)
            return mp_fail(r, KSOCK_E_DECODE, k.at, "duplicate key \"%.*s\"",
                           (int)(k.n > 64 ? 64 : k.n), k.s);
        if (rc != 0) return mp_fail(r, rc, k.at, "%s", ksock_strerror(rc));
    }
    return 0;
}

static int read_container(mp_reader_t *r, const mp_item_t *it, uint32_t depth, ksock_value_t **out)
{
    if (depth + 1 > r->max_depth)
        return mp_fail(r, KSOCK_E_LIMIT, it->at, "nesting deeper than %u", r->max_depth);
    ksock_value_t *c = it->kind == MP_MAP ? ksock_value_map() : ksock_value_array();
    if (c == NULL) return mp_fail(r, KSOCK_E_NOMEM, it->at, "out of memory");
    int rc = it->kind == MP_MAP ? read_map(r, it, depth + 1, c) : read_array(r, it, depth + 1, c);
    if (rc != 0) {
        ksock_value_unref(c);
        return rc;
    }
    *out = c;
    return 0;
}

static int read_value(mp_reader_t *r, uint32_t depth, ksock_value_t **out)
{
    mp_item_t it;
    if (mp_next(r, &it) != 0) return r->err.rc;
    ksock_value_t *v = NULL;
    switch (it.kind) {
    case MP_NIL:
        v = ksock_value_null();
        break;
    case MP_BOOL:
        v = ksock_value_bool(it.b);
        break;
    case MP_INT:
        v = ksock_value_int(it.i);
        break;
    case MP_FLOAT:
        v = ksock_value_double(it.d);
        break;
    case MP_STR:
        if (mp_check_str(r, &it) != 0) return r->err.rc;
        v = ksock_value_string(it.s, it.n);
        break;
    case MP_BIN:
        v = ksock_value_bytes(it.s, it.n);
        break;
    case MP_ARRAY:
    case MP_MAP:
        return read_container(r, &it, depth, out);
    }
    if (v == NULL) return mp_fail(r, KSOCK_E_NOMEM, it.at, "out of memory");
    *out = v;
    return 0;
}

int mp_decode_value(const void *data, size_t len, const ksock_value_limits_t *lim,
                    ksock_value_t **out, char *errstr, size_t errstr_size)
{
    mp_reader_t r;
    mp_reader_init(&r, data, len, lim);
    if (len > lim->max_total)
        mp_fail(&r, KSOCK_E_LIMIT, 0, "input of %zu bytes over the %llu limit", len,
                (unsigned long long)lim->max_total);
    ksock_value_t *v = NULL;
    if (r.err.rc == 0 && read_value(&r, 0, &v) == 0 && r.p != r.end)
        mp_fail(&r, KSOCK_E_DECODE, (size_t)(r.p - r.base), "trailing garbage");
    if (r.err.rc != 0) {
        ksock_value_unref(v);
        return mp_report(&r, errstr, errstr_size);
    }
    *out = v;
    return 0;
}
