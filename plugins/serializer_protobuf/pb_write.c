/*
 * serializer_protobuf: writing ksock.proto messages.
 *
 * Written by hand against the schema rather than by filling protoc-c's
 * structs and calling protobuf_c_message_pack(): protobuf-c takes strings
 * as NUL-terminated char * (so a topic or id, which arrive as pointer and
 * length, would need a copy each, and a string holding U+0000 would be
 * cut short), and packing walks generic descriptors twice (size, then
 * bytes). Here the size is bounded first, the buffer reserved once, and
 * the bytes written in one pass: fields in number order, minimal varints,
 * each field once; the same bytes protobuf-c and other conforming
 * libraries produce (tests/plugins/serde checks against protobuf-c).
 */
#include "pb_internal.h"

#include <stdlib.h>
#include <string.h>

#define TAG(id, wt) ((uint32_t)(id) << 3 | (wt))
#define VARINT_MAX  10

static size_t varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static unsigned char *put_varint(unsigned char *o, uint64_t v)
{
    while (v >= 0x80) {
        *o++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *o++ = (unsigned char)v;
    return o;
}

static unsigned char *put_blob(unsigned char *o, uint32_t id, const void *p, size_t len)
{
    o = put_varint(o, TAG(id, WT_LEN));
    o = put_varint(o, len);
    if (len) memcpy(o, p, len);
    return o + len;
}

static uint64_t zigzag64(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static uint32_t zigzag32(int32_t v)
{
    return ((uint32_t)v << 1) ^ (uint32_t)(v >> 31);
}

/* ---- Envelopes ------------------------------------------------------------------------ */

static size_t header_size(const ksock_header_t *h)
{
    size_t n = 1 + varint_size(h->key_len) + h->key_len;
    if (h->value.present) n += 1 + varint_size(h->value.len) + h->value.len;
    return n;
}

static size_t offset_entry_size(const ksock_partition_offset_t *o)
{
    /* int32 fields are sign-extended to 64 bits: varint of the int64. */
    return 2 + varint_size((uint64_t)(int64_t)o->partition) + varint_size((uint64_t)o->offset);
}

/* An upper bound on the encoded size, for one reservation. */
static size_t envelope_bound(const ksock_envelope_t *e)
{
    size_t n = 16 * (1 + VARINT_MAX) + e->id_len + e->topic_len + e->key.len + e->value.len +
               e->error_message_len;
    for (size_t i = 0; i < e->nheaders; i++)
        n += 1 + VARINT_MAX + header_size(&e->headers[i]);
    n += e->noffsets * (1 + VARINT_MAX + 2 + 2 * VARINT_MAX);
    return n;
}

static unsigned char *put_headers(unsigned char *o, const ksock_envelope_t *e)
{
    for (size_t i = 0; i < e->nheaders; i++) {
        const ksock_header_t *h = &e->headers[i];
        o = put_varint(o, TAG(9, WT_LEN));
        o = put_varint(o, header_size(h));
        o = put_blob(o, 1, h->key, h->key_len);
        if (h->value.present) o = put_blob(o, 2, h->value.data, h->value.len);
    }
    return o;
}

static unsigned char *put_offsets(unsigned char *o, const ksock_envelope_t *e)
{
    for (size_t i = 0; i < e->noffsets; i++) {
        const ksock_partition_offset_t *po = &e->offsets[i];
        o = put_varint(o, TAG(11, WT_LEN));
        o = put_varint(o, offset_entry_size(po));
        o = put_varint(o, TAG(1, WT_VARINT));
        o = put_varint(o, (uint64_t)(int64_t)po->partition);
        o = put_varint(o, TAG(2, WT_VARINT));
        o = put_varint(o, (uint64_t)po->offset);
    }
    return o;
}

static unsigned char *put_int(unsigned char *o, uint32_t id, int64_t v)
{
    o = put_varint(o, TAG(id, WT_VARINT));
    return put_varint(o, (uint64_t)v);
}

static unsigned char *put_envelope(unsigned char *o, const ksock_envelope_t *e)
{
    o = put_int(o, 1, e->op);
    if (e->id) o = put_blob(o, 2, e->id, e->id_len);
    if (e->topic) o = put_blob(o, 3, e->topic, e->topic_len);
    if (e->partition != -1) o = put_int(o, 4, e->partition);
    if (e->offset != -1) o = put_int(o, 5, e->offset);
    if (e->timestamp != -1) o = put_int(o, 6, e->timestamp);
    if (e->key.present) o = put_blob(o, 7, e->key.data, e->key.len);
    if (e->value.present) o = put_blob(o, 8, e->value.data, e->value.len);
    o = put_headers(o, e);
    if (e->op == KSOCK_OP_SUBSCRIBE || e->start != KSOCK_START_LATEST) o = put_int(o, 10, e->start);
    o = put_offsets(o, e);
    if (e->start_timestamp != -1) o = put_int(o, 12, e->start_timestamp);
    if (e->error_code != 0) {
        o = put_varint(o, TAG(13, WT_VARINT));
        o = put_varint(o, zigzag32(e->error_code));
    }
    if (e->error_message) o = put_blob(o, 14, e->error_message, e->error_message_len);
    return o;
}

int pb_encode_envelope(const ksock_envelope_t *env, ksock_buf_t *out, char *errstr,
                       size_t errstr_size)
{
    if (ksock_envelope_check(env, errstr, errstr_size) != 0) return KSOCK_E_ENCODE;
    size_t bound = envelope_bound(env);
    if (ksock_buf_reserve(out, bound) != 0) {
        ksock_errstr_set(errstr, errstr_size, "protobuf: out of memory");
        return KSOCK_E_NOMEM;
    }
    unsigned char *start = (unsigned char *)out->data + out->len;
    unsigned char *end = put_envelope(start, env);
    out->len += (size_t)(end - start);
    out->data[out->len] = '\0';
    return 0;
}

/* ---- Values ------------------------------------------------------------------------------ */

/*
 * Nested messages need their length before their bytes. A first pass
 * computes the body size of every Array, Map and MapEntry into `sizes`,
 * in the order the second pass writes them, so each size is computed once.
 */
typedef struct sizes_s {
    size_t *v;
    size_t n, cap, next;
} sizes_t;

static size_t sizes_slot(sizes_t *s)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        size_t *v = realloc(s->v, cap * sizeof(*v));
        if (v == NULL) return SIZE_MAX;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n] = 0;
    return s->n++;
}

static size_t value_body_size(sizes_t *s, const ksock_value_t *v, bool *oom);

static size_t len_field(size_t body)
{
    return 1 + varint_size(body) + body;
}

static size_t array_body_size(sizes_t *s, const ksock_value_t *v, bool *oom)
{
    size_t slot = sizes_slot(s), body = 0, n = ksock_value_count(v);
    if (slot == SIZE_MAX) return *oom = true, 0;
    for (size_t i = 0; i < n; i++)
        body += len_field(value_body_size(s, ksock_value_array_get(v, i), oom));
    s->v[slot] = body;
    return body;
}

static size_t map_body_size(sizes_t *s, const ksock_value_t *v, bool *oom)
{
    size_t slot = sizes_slot(s), body = 0, n = ksock_value_count(v);
    if (slot == SIZE_MAX) return *oom = true, 0;
    for (size_t i = 0; i < n; i++) {
        size_t klen, eslot = sizes_slot(s);
        if (eslot == SIZE_MAX) return *oom = true, 0;
        const ksock_value_t *item = ksock_value_map_at(v, i, NULL, &klen);
        size_t entry = len_field(klen) + len_field(value_body_size(s, item, oom));
        s->v[eslot] = entry;
        body += len_field(entry);
    }
    s->v[slot] = body;
    return body;
}

/* Size of a Value message's body: its one kind field. */
static size_t value_body_size(sizes_t *s, const ksock_value_t *v, bool *oom)
{
    size_t len;
    switch (ksock_value_type(v)) {
    case KSOCK_VALUE_NULL:
    case KSOCK_VALUE_BOOL:
        return 2;
    case KSOCK_VALUE_INT:
        return 1 + varint_size(zigzag64(ksock_value_get_int(v)));
    case KSOCK_VALUE_DOUBLE:
        return 9;
    case KSOCK_VALUE_STRING:
        ksock_value_get_string(v, &len);
        return len_field(len);
    case KSOCK_VALUE_BYTES:
        ksock_value_get_bytes(v, &len);
        return len_field(len);
    case KSOCK_VALUE_ARRAY:
        return len_field(array_body_size(s, v, oom));
    case KSOCK_VALUE_MAP:
        return len_field(map_body_size(s, v, oom));
    }
    return 0;
}

/* The body size of `v` as the first pass found it, without consuming a slot. */
static size_t peek_body(const sizes_t *s, const ksock_value_t *v)
{
    ksock_value_type_t t = ksock_value_type(v);
    if (t == KSOCK_VALUE_ARRAY || t == KSOCK_VALUE_MAP) return len_field(s->v[s->next]);
    return value_body_size(NULL, v, NULL); /* scalars never touch `s` */
}

static unsigned char *put_value(unsigned char *o, sizes_t *s, const ksock_value_t *v);

static unsigned char *put_array(unsigned char *o, sizes_t *s, const ksock_value_t *v)
{
    size_t n = ksock_value_count(v);
    o = put_varint(o, TAG(7, WT_LEN));
    o = put_varint(o, s->v[s->next++]);
    for (size_t i = 0; i < n; i++) {
        const ksock_value_t *item = ksock_value_array_get(v, i);
        o = put_varint(o, TAG(1, WT_LEN));
        o = put_varint(o, peek_body(s, item));
        o = put_value(o, s, item);
    }
    return o;
}

static unsigned char *put_map(unsigned char *o, sizes_t *s, const ksock_value_t *v)
{
    size_t n = ksock_value_count(v);
    o = put_varint(o, TAG(8, WT_LEN));
    o = put_varint(o, s->v[s->next++]);
    for (size_t i = 0; i < n; i++) {
        const char *k;
        size_t klen;
        const ksock_value_t *item = ksock_value_map_at(v, i, &k, &klen);
        o = put_varint(o, TAG(1, WT_LEN));
        o = put_varint(o, s->v[s->next++]);
        o = put_blob(o, 1, k, klen);
        o = put_varint(o, TAG(2, WT_LEN));
        o = put_varint(o, peek_body(s, item));
        o = put_value(o, s, item);
    }
    return o;
}

static unsigned char *put_value(unsigned char *o, sizes_t *s, const ksock_value_t *v)
{
    size_t len;
    const void *p;
    double d;
    uint64_t bits;
    switch (ksock_value_type(v)) {
    case KSOCK_VALUE_NULL:
        return put_int(o, 1, 0);
    case KSOCK_VALUE_BOOL:
        return put_int(o, 2, ksock_value_get_bool(v));
    case KSOCK_VALUE_INT:
        o = put_varint(o, TAG(3, WT_VARINT));
        return put_varint(o, zigzag64(ksock_value_get_int(v)));
    case KSOCK_VALUE_DOUBLE:
        d = ksock_value_get_double(v);
        memcpy(&bits, &d, 8);
        o = put_varint(o, TAG(4, WT_I64));
        for (int i = 0; i < 8; i++) /* fixed64 is little-endian whatever the host */
            *o++ = (unsigned char)(bits >> (8 * i));
        return o;
    case KSOCK_VALUE_STRING:
        p = ksock_value_get_string(v, &len);
        return put_blob(o, 5, p, len);
    case KSOCK_VALUE_BYTES:
        p = ksock_value_get_bytes(v, &len);
        return put_blob(o, 6, p, len);
    case KSOCK_VALUE_ARRAY:
        return put_array(o, s, v);
    case KSOCK_VALUE_MAP:
        return put_map(o, s, v);
    }
    return o;
}

int pb_encode_value(const ksock_value_t *v, ksock_buf_t *out, char *errstr, size_t errstr_size)
{
    if (v == NULL) return KSOCK_E_INVAL;
    sizes_t s = {0};
    bool oom = false;
    size_t size = value_body_size(&s, v, &oom);
    int rc = oom ? KSOCK_E_NOMEM : ksock_buf_reserve(out, size);
    if (rc == 0) {
        unsigned char *start = (unsigned char *)out->data + out->len;
        unsigned char *end = put_value(start, &s, v);
        out->len += (size_t)(end - start);
        out->data[out->len] = '\0';
    } else {
        ksock_errstr_set(errstr, errstr_size, "protobuf: out of memory");
    }
    free(s.v);
    return rc;
}
