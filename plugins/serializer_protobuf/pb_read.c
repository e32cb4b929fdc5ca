/*
 * serializer_protobuf: the strict reader and value decoding.
 *
 * protobuf_c_message_unpack() is not used to read frames: it recurses
 * once per nested message with no limit (a Value nested a million deep is
 * 4 MB of input and a stack overflow), keeps the last of duplicated
 * fields, stores unknown fields silently, gives no position on error, and
 * hands strings back NUL-terminated, which loses everything after a U+0000
 * that JSON and MessagePack carry fine. pb_walk() reads the wire format
 * against protoc-c's descriptors instead, with the limits and the position
 * of the first problem, and the typed decoders below build values and
 * envelopes from it in one pass.
 */
#include "pb_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pb_reader_init(pb_reader_t *r, const void *data, const ksock_value_limits_t *lim,
                    bool ignore_unknown)
{
    memset(r, 0, sizeof(*r));
    r->base = data;
    r->lim = lim;
    r->max_depth = lim->max_depth < KSOCK_VALUE_MAX_DEPTH ? lim->max_depth : KSOCK_VALUE_MAX_DEPTH;
    r->ignore_unknown = ignore_unknown;
}

/* ---- The wire format ------------------------------------------------------------- */

static size_t off(const pb_reader_t *r, const unsigned char *p)
{
    return (size_t)(p - r->base);
}

static int read_varint(pb_reader_t *r, const unsigned char **pp, const unsigned char *end,
                       uint64_t *out)
{
    const unsigned char *p = *pp;
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (p >= end) return pb_fail(r, KSOCK_E_DECODE, off(r, *pp), "truncated varint");
        unsigned char c = *p++;
        if (i == 9 && c > 1) return pb_fail(r, KSOCK_E_DECODE, off(r, *pp), "varint over 64 bits");
        v |= (uint64_t)(c & 0x7f) << (7 * i);
        if (!(c & 0x80)) {
            *out = v;
            *pp = p;
            return 0;
        }
    }
    return pb_fail(r, KSOCK_E_DECODE, off(r, *pp), "varint over 10 bytes");
}

static const char *wire_name(unsigned wt)
{
    static const char *const names[] = {
        "varint", "64-bit", "length-delimited", "start group", "end group", "32-bit", "6", "7"};
    return names[wt & 7];
}

/* The wire type a field of this type must have (no packed repeated scalars in ksock.proto). */
static unsigned wire_of(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
        return WT_I32;
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return WT_I64;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE:
        return WT_LEN;
    default:
        return WT_VARINT;
    }
}

/* Read the payload of wire type `wt` at *pp into f. */
static int read_payload(pb_reader_t *r, unsigned wt, const unsigned char **pp,
                        const unsigned char *end, pb_field_t *f)
{
    size_t n = wt == WT_I64 ? 8 : 4;
    switch (wt) {
    case WT_VARINT:
        return read_varint(r, pp, end, &f->u);
    case WT_I64:
    case WT_I32:
        if ((size_t)(end - *pp) < n) return pb_fail(r, KSOCK_E_DECODE, f->at, "truncated field");
        f->u = 0;
        for (size_t i = 0; i < n; i++)
            f->u |= (uint64_t)(*pp)[i] << (8 * i);
        *pp += n;
        return 0;
    case WT_LEN:
        if (read_varint(r, pp, end, &f->u) != 0) return r->err.rc;
        if (f->u > (uint64_t)(end - *pp))
            return pb_fail(r, KSOCK_E_DECODE, f->at, "truncated field (length %llu)",
                           (unsigned long long)f->u);
        f->p = *pp;
        f->len = (size_t)f->u;
        *pp += f->len;
        return 0;
    default:
        return pb_fail(r, KSOCK_E_DECODE, f->at, "wire type %u (%s) is not supported", wt,
                       wire_name(wt));
    }
}

/* ---- Schema checks ---------------------------------------------------------------- */

typedef struct walk_state_s {
    uint64_t seen;   /* non-repeated fields seen, by index in desc->fields */
    bool oneof_seen; /* ksock.proto has at most one oneof per message */
    size_t repeated; /* repeated elements so far */
} walk_state_t;

static int check_once(pb_reader_t *r, const ProtobufCMessageDescriptor *desc, walk_state_t *st,
                      const pb_field_t *f)
{
    const ProtobufCFieldDescriptor *fd = f->fd;
    if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
        if (++st->repeated > r->lim->max_items)
            return pb_fail(r, KSOCK_E_LIMIT, f->at, "more than %llu repeated elements in %s",
                           (unsigned long long)r->lim->max_items, desc->name);
        return 0;
    }
    unsigned idx = (unsigned)(fd - desc->fields);
    if (st->seen & (1ull << idx))
        return pb_fail(r, KSOCK_E_DECODE, f->at, "field %u (%s) appears twice", fd->id, fd->name);
    st->seen |= 1ull << idx;
    if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        if (st->oneof_seen)
            return pb_fail(r, KSOCK_E_DECODE, f->at, "%s has more than one kind (field %u, %s)",
                           desc->name, fd->id, fd->name);
        st->oneof_seen = true;
    }
    return 0;
}

static int check_blob(pb_reader_t *r, const pb_field_t *f)
{
    ProtobufCType t = f->fd->type;
    if (t != PROTOBUF_C_TYPE_STRING && t != PROTOBUF_C_TYPE_BYTES) return 0;
    if (f->len > r->lim->max_string)
        return pb_fail(r, KSOCK_E_LIMIT, f->at, "field %u (%s): %zu bytes over the %llu limit",
                       f->fd->id, f->fd->name, f->len, (unsigned long long)r->lim->max_string);
    size_t bad;
    if (t == PROTOBUF_C_TYPE_STRING && !ksock_utf8_check(f->p, f->len, &bad))
        return pb_fail(r, KSOCK_E_DECODE, off(r, f->p) + bad, "field %u (%s): invalid UTF-8",
                       f->fd->id, f->fd->name);
    return 0;
}

static int unknown_field(pb_reader_t *r, const ProtobufCMessageDescriptor *desc, uint32_t id,
                         unsigned wt, const unsigned char **pp, const unsigned char *end, size_t at)
{
    if (!r->ignore_unknown)
        return pb_fail(r, KSOCK_E_DECODE, at, "unknown field %u (wire type %s) in %s", id,
                       wire_name(wt), desc->name);
    pb_field_t skip = {.at = at};
    return read_payload(r, wt, pp, end, &skip); /* still checked for truncation */
}

int pb_walk(pb_reader_t *r, const ProtobufCMessageDescriptor *desc, const unsigned char *p,
            const unsigned char *end, pb_field_cb cb, void *ctx)
{
    walk_state_t st = {0};
    while (p < end) {
        pb_field_t f = {.at = off(r, p)};
        uint64_t tag;
        if (read_varint(r, &p, end, &tag) != 0) return r->err.rc;
        unsigned wt = tag & 7;
        uint64_t id = tag >> 3;
        if (id == 0 || id > 536870911u)
            return pb_fail(r, KSOCK_E_DECODE, f.at, "invalid field number %llu",
                           (unsigned long long)id);
        f.fd = protobuf_c_message_descriptor_get_field(desc, (unsigned)id);
        if (f.fd == NULL) {
            if (unknown_field(r, desc, (uint32_t)id, wt, &p, end, f.at) != 0) return r->err.rc;
            continue;
        }
        if (wt != wire_of(f.fd->type))
            return pb_fail(r, KSOCK_E_DECODE, f.at,
                           "field %u (%s) has wire type %u (%s), expected %u (%s)", f.fd->id,
                           f.fd->name, wt, wire_name(wt), wire_of(f.fd->type),
                           wire_name(wire_of(f.fd->type)));
        if (read_payload(r, wt, &p, end, &f) != 0 || check_once(r, desc, &st, &f) != 0 ||
            check_blob(r, &f) != 0 || cb(r, ctx, &f) != 0)
            return r->err.rc;
    }
    return 0;
}

void pb_find_id(const void *data, size_t len, const ksock_value_limits_t *lim, const char **id,
                size_t *id_len)
{
    pb_reader_t r;
    const unsigned char *p = data ? data : (const unsigned char *)"", *end = p + len;
    pb_reader_init(&r, p, lim, true);
    while (p < end) {
        pb_field_t f = {.at = off(&r, p)};
        uint64_t tag;
        if (read_varint(&r, &p, end, &tag) != 0 || read_payload(&r, tag & 7, &p, end, &f) != 0)
            return; /* groups too: read_payload refuses them */
        if (tag >> 3 != 2) continue;
        if ((tag & 7) == WT_LEN && f.len <= lim->max_string && ksock_utf8_check(f.p, f.len, NULL)) {
            *id = (const char *)f.p;
            *id_len = f.len;
        }
        return;
    }
}

/* ---- Typed payloads -------------------------------------------------------------------- */

int pb_get_int32(pb_reader_t *r, const pb_field_t *f, int32_t *out)
{
    int64_t v;
    switch (f->fd->type) {
    case PROTOBUF_C_TYPE_SINT32:
        if (f->u > UINT32_MAX) break;
        v = (int64_t)(f->u >> 1) ^ -(int64_t)(f->u & 1);
        *out = (int32_t)v;
        return 0;
    default: /* int32 and enums: sign-extended to 64 bits on the wire */
        v = (int64_t)f->u;
        if (v < INT32_MIN || v > INT32_MAX) break;
        *out = (int32_t)v;
        return 0;
    }
    return pb_fail(r, KSOCK_E_DECODE, f->at, "field %u (%s): out of int32 range", f->fd->id,
                   f->fd->name);
}

int pb_get_int64(pb_reader_t *r, const pb_field_t *f, int64_t *out)
{
    if (f->fd->type == PROTOBUF_C_TYPE_SINT64)
        *out = (int64_t)(f->u >> 1) ^ -(int64_t)(f->u & 1);
    else
        *out = (int64_t)f->u;
    return 0;
}

/* ---- Values -------------------------------------------------------------------------------- */

typedef struct value_ctx_s {
    uint32_t depth;   /* containers around this Value */
    size_t at;        /* where the Value message starts */
    ksock_value_t *v; /* the decoded kind */
    /* MapEntry */
    const unsigned char *key;
    size_t key_len;
    bool has_key;
} value_ctx_t;

static int decode_value_msg(pb_reader_t *r, const unsigned char *p, size_t len, size_t at,
                            uint32_t depth, ksock_value_t **out);

static int array_item(pb_reader_t *r, void *ctx, const pb_field_t *f)
{
    value_ctx_t *c = ctx;
    ksock_value_t *item;
    if (decode_value_msg(r, f->p, f->len, f->at, c->depth, &item) != 0) return r->err.rc;
    int rc = ksock_value_array_push(c->v, item);
    return rc ? pb_fail(r, rc, f->at, "%s", ksock_strerror(rc)) : 0;
}

static int map_entry_field(pb_reader_t *r, void *ctx, const pb_field_t *f)
{
    value_ctx_t *e = ctx;
    if (f->fd->id == 1) {
        e->key = f->p;
        e->key_len = f->len;
        e->has_key = true;
        return 0;
    }
    return decode_value_msg(r, f->p, f->len, f->at, e->depth, &e->v);
}

static int map_entry(pb_reader_t *r, void *ctx, const pb_field_t *f)
{
    value_ctx_t *c = ctx;
    value_ctx_t e = {.depth = c->depth};
    if (pb_walk(r, &ksock__v1__map_entry__descriptor, f->p, f->p + f->len, map_entry_field, &e) ||
        !e.has_key || e.v == NULL) {
        ksock_value_unref(e.v);
        return pb_fail(r, KSOCK_E_DECODE, f->at, "map entry without %s",
                       e.has_key ? "value" : "key"); /* no-op if the walk already failed */
    }
    int rc = ksock_value_map_set(c->v, (const char *)e.key, e.key_len, e.v);
    if (rc == KSOCK_E_EXIST)
        return pb_fail(r, KSOCK_E_DECODE, f->at, "duplicate key \"%.*s\"",
                       (int)(e.key_len > 64 ? 64 : e.key_len), (const char *)e.key);
    return rc ? pb_fail(r, rc, f->at, "%s", ksock_strerror(rc)) : 0;
}

static int container(pb_reader_t *r, value_ctx_t *c, const pb_field_t *f, bool map)
{
    if (c->depth + 1 > r->max_depth)
        return pb_fail(r, KSOCK_E_LIMIT, f->at, "nesting deeper than %u", r->max_depth);
    c->v = map ? ksock_value_map() : ksock_value_array();
    if (c->v == NULL) return pb_fail(r, KSOCK_E_NOMEM, f->at, "out of memory");
    value_ctx_t inner = {.depth = c->depth + 1, .v = c->v};
    if (map) return pb_walk(r, &ksock__v1__map__descriptor, f->p, f->p + f->len, map_entry, &inner);
    return pb_walk(r, &ksock__v1__array__descriptor, f->p, f->p + f->len, array_item, &inner);
}

static double as_double(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

/* The one kind of a Value (pb_walk has made sure there is at most one). */
static int value_kind(pb_reader_t *r, void *ctx, const pb_field_t *f)
{
    value_ctx_t *c = ctx;
    int64_t i;
    switch (f->fd->id) {
    case 1:
        if (f->u != 0) return pb_fail(r, KSOCK_E_DECODE, f->at, "null_value must be 0");
        c->v = ksock_value_null();
        break;
    case 2:
        if (f->u > 1) return pb_fail(r, KSOCK_E_DECODE, f->at, "bool_value must be 0 or 1");
        c->v = ksock_value_bool(f->u == 1);
        break;
    case 3:
        pb_get_int64(r, f, &i);
        c->v = ksock_value_int(i);
        break;
    case 4:
        c->v = ksock_value_double(as_double(f->u));
        break;
    case 5:
        c->v = ksock_value_string((const char *)f->p, f->len);
        break;
    case 6:
        c->v = ksock_value_bytes(f->p, f->len);
        break;
    case 7:
    case 8:
        return container(r, c, f, f->fd->id == 8);
    }
    return c->v ? 0 : pb_fail(r, KSOCK_E_NOMEM, f->at, "out of memory");
}

static int decode_value_msg(pb_reader_t *r, const unsigned char *p, size_t len, size_t at,
                            uint32_t depth, ksock_value_t **out)
{
    value_ctx_t c = {.depth = depth, .at = at};
    if (pb_walk(r, &ksock__v1__value__descriptor, p, p + len, value_kind, &c) != 0) {
        ksock_value_unref(c.v);
        return r->err.rc;
    }
    if (c.v == NULL) return pb_fail(r, KSOCK_E_DECODE, at, "Value without a kind");
    *out = c.v;
    return 0;
}

int pb_decode_value(const void *data, size_t len, const ksock_value_limits_t *lim,
                    bool ignore_unknown, ksock_value_t **out, char *errstr, size_t errstr_size)
{
    pb_reader_t r;
    pb_reader_init(&r, data, lim, ignore_unknown);
    if (len > lim->max_total)
        pb_fail(&r, KSOCK_E_LIMIT, 0, "input of %zu bytes over the %llu limit", len,
                (unsigned long long)lim->max_total);
    ksock_value_t *v = NULL;
    if (r.err.rc == 0) decode_value_msg(&r, data, len, 0, 0, &v);
    if (r.err.rc != 0) return pb_report(&r, errstr, errstr_size);
    *out = v;
    return 0;
}
