/*
 * serializer_msgpack: writing. Values go through msgpack-c's packer: its integer
 * packing is the canonical shortest form, str uses str8 from 32 bytes, and
 * doubles are always float64, so the output is what other MessagePack
 * libraries produce for the same data (tests/vectors pins it). Envelopes
 * are written directly, see below.
 */
#include "mp_internal.h"

#include <msgpack.h>
#include <string.h>

/* msgpack-c's write callback: append to our buffer. */
static int put(void *data, const char *p, size_t n)
{
    ksock_buf_t *b = data;
    if (b->cap - b->len <= n && ksock_buf_reserve(b, n) != 0) return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

/* ---- Values ---------------------------------------------------------------------- */

static int pack_value(msgpack_packer *pk, const ksock_value_t *v);

static int pack_array(msgpack_packer *pk, const ksock_value_t *v)
{
    size_t n = ksock_value_count(v);
    if (n > UINT32_MAX || msgpack_pack_array(pk, n) != 0) return -1;
    for (size_t i = 0; i < n; i++)
        if (pack_value(pk, ksock_value_array_get(v, i)) != 0) return -1;
    return 0;
}

static int pack_map(msgpack_packer *pk, const ksock_value_t *v)
{
    size_t n = ksock_value_count(v);
    if (n > UINT32_MAX || msgpack_pack_map(pk, n) != 0) return -1;
    for (size_t i = 0; i < n; i++) {
        const char *k;
        size_t klen;
        const ksock_value_t *item = ksock_value_map_at(v, i, &k, &klen);
        if (msgpack_pack_str_with_body(pk, k, klen) != 0 || pack_value(pk, item) != 0) return -1;
    }
    return 0;
}

static int pack_value(msgpack_packer *pk, const ksock_value_t *v)
{
    size_t len;
    const void *p;
    switch (ksock_value_type(v)) {
    case KSOCK_VALUE_NULL:
        return msgpack_pack_nil(pk);
    case KSOCK_VALUE_BOOL:
        return ksock_value_get_bool(v) ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    case KSOCK_VALUE_INT:
        return msgpack_pack_int64(pk, ksock_value_get_int(v));
    case KSOCK_VALUE_DOUBLE:
        return msgpack_pack_double(pk, ksock_value_get_double(v));
    case KSOCK_VALUE_STRING:
        p = ksock_value_get_string(v, &len);
        return len > UINT32_MAX ? -1 : msgpack_pack_str_with_body(pk, p, len);
    case KSOCK_VALUE_BYTES:
        p = ksock_value_get_bytes(v, &len);
        return len > UINT32_MAX ? -1 : msgpack_pack_bin_with_body(pk, p, len);
    case KSOCK_VALUE_ARRAY:
        return pack_array(pk, v);
    case KSOCK_VALUE_MAP:
        return pack_map(pk, v);
    }
    return -1;
}

int mp_encode_value(const ksock_value_t *v, ksock_buf_t *out, char *errstr, size_t errstr_size)
{
    if (v == NULL) return KSOCK_E_INVAL;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, put);
    size_t before = out->len;
    if (pack_value(&pk, v) != 0) {
        out->len = before;
        if (out->data) out->data[out->len] = '\0';
        ksock_errstr_set(errstr, errstr_size, "msgpack: out of memory or item over 4 GiB");
        return KSOCK_E_ENCODE;
    }
    if (out->data) out->data[out->len] = '\0';
    return 0;
}

/* ---- Envelopes ---------------------------------------------------------------------- */

/*
 * The envelope is the bridge's hot path, so it is written directly into one
 * reserved buffer rather than through the packer, whose write callback
 * costs a call per item (two per string): 47 calls for a typical record,
 * a third of the encode time. Same canonical bytes: the shortest header
 * for every integer, string and container (the vectors and msgpack-c's
 * own re-packing check both writers).
 */
static unsigned char *w_be(unsigned char *o, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--)
        *o++ = (unsigned char)(v >> (8 * i));
    return o;
}

/* A str header: fixstr, then str8/16/32. */
static unsigned char *w_str_head(unsigned char *o, size_t n)
{
    if (n <= 31) {
        *o++ = (unsigned char)(0xa0 | n);
    } else if (n <= 0xff) {
        *o++ = 0xd9;
        *o++ = (unsigned char)n;
    } else {
        *o++ = n <= 0xffff ? 0xda : 0xdb;
        o = w_be(o, n, n <= 0xffff ? 2 : 4);
    }
    return o;
}

/* An array or map header: fix form up to 15, then the 16-bit tag `t16` or the 32-bit t16 + 1. */
static unsigned char *w_count(unsigned char *o, size_t n, unsigned fix, unsigned t16)
{
    if (n <= 15) {
        *o++ = (unsigned char)(fix | n);
    } else {
        *o++ = (unsigned char)(n <= 0xffff ? t16 : t16 + 1);
        o = w_be(o, n, n <= 0xffff ? 2 : 4);
    }
    return o;
}

static unsigned char *w_str(unsigned char *o, const char *s, size_t n)
{
    o = w_str_head(o, n);
    memcpy(o, s ? s : "", n);
    return o + n;
}

static unsigned char *w_bin(unsigned char *o, const ksock_bytes_t *b)
{
    if (b->len <= 0xff) {
        *o++ = 0xc4;
        *o++ = (unsigned char)b->len;
    } else {
        *o++ = b->len <= 0xffff ? 0xc5 : 0xc6;
        o = w_be(o, b->len, b->len <= 0xffff ? 2 : 4);
    }
    memcpy(o, b->data ? b->data : "", b->len);
    return o + b->len;
}

static unsigned char *w_int(unsigned char *o, int64_t v)
{
    if (v >= 0) {
        uint64_t u = (uint64_t)v;
        if (u < 0x80)
            *o++ = (unsigned char)u;
        else if (u <= 0xff)
            *o++ = 0xcc, *o++ = (unsigned char)u;
        else if (u <= 0xffff)
            *o++ = 0xcd, o = w_be(o, u, 2);
        else if (u <= 0xffffffffu)
            *o++ = 0xce, o = w_be(o, u, 4);
        else
            *o++ = 0xcf, o = w_be(o, u, 8);
    } else {
        if (v >= -32)
            *o++ = (unsigned char)(int8_t)v;
        else if (v >= INT8_MIN)
            *o++ = 0xd0, *o++ = (unsigned char)(int8_t)v;
        else if (v >= INT16_MIN)
            *o++ = 0xd1, o = w_be(o, (uint16_t)v, 2);
        else if (v >= INT32_MIN)
            *o++ = 0xd2, o = w_be(o, (uint32_t)v, 4);
        else
            *o++ = 0xd3, o = w_be(o, (uint64_t)v, 8);
    }
    return o;
}

/* A member name: the names are short constants, so this is a fixstr. */
#define W_KEY(o, lit)                                                                              \
    (memcpy((o) + 1, (lit), sizeof(lit) - 1), *(o) = (unsigned char)(0xa0 | (sizeof(lit) - 1)),    \
     (o) + sizeof(lit))

static bool start_written(const ksock_envelope_t *e)
{
    return e->op == KSOCK_OP_SUBSCRIBE || e->start != KSOCK_START_LATEST;
}

/* How many members the map will have: msgpack needs the count first. */
static size_t member_count(const ksock_envelope_t *e)
{
    return 1 + (e->id != NULL) + (e->topic != NULL) + (e->partition != -1) + (e->offset != -1) +
           (e->timestamp != -1) + e->key.present + e->value.present + (e->nheaders > 0) +
           start_written(e) + (e->noffsets > 0) + (e->start_timestamp != -1) +
           (e->error_code != 0) + (e->error_message != NULL);
}

/* An upper bound of the encoded size: 5-byte headers and 9-byte integers everywhere. */
static size_t envelope_bound(const ksock_envelope_t *e)
{
    size_t n =
        16 * (16 + 9) + e->id_len + e->topic_len + e->key.len + e->value.len + e->error_message_len;
    for (size_t i = 0; i < e->nheaders; i++)
        n += 32 + e->headers[i].key_len + e->headers[i].value.len;
    return n + e->noffsets * 40;
}

static unsigned char *w_headers(unsigned char *o, const ksock_envelope_t *e)
{
    o = W_KEY(o, "headers");
    o = w_count(o, e->nheaders, 0x90, 0xdc);
    for (size_t i = 0; i < e->nheaders; i++) {
        const ksock_header_t *h = &e->headers[i];
        *o++ = h->value.present ? 0x82 : 0x81;
        o = W_KEY(o, "key");
        o = w_str(o, h->key, h->key_len);
        if (h->value.present) {
            o = W_KEY(o, "value");
            o = w_bin(o, &h->value);
        }
    }
    return o;
}

static unsigned char *w_offsets(unsigned char *o, const ksock_envelope_t *e)
{
    o = W_KEY(o, "offsets");
    o = w_count(o, e->noffsets, 0x90, 0xdc);
    for (size_t i = 0; i < e->noffsets; i++) {
        *o++ = 0x82;
        o = W_KEY(o, "partition");
        o = w_int(o, e->offsets[i].partition);
        o = W_KEY(o, "offset");
        o = w_int(o, e->offsets[i].offset);
    }
    return o;
}

static unsigned char *w_envelope(unsigned char *o, const ksock_envelope_t *e)
{
    const char *op = ksock_op_name(e->op);
    o = w_count(o, member_count(e), 0x80, 0xde);
    o = W_KEY(o, "op");
    o = w_str(o, op, strlen(op));
    if (e->id) o = w_str(W_KEY(o, "id"), e->id, e->id_len);
    if (e->topic) o = w_str(W_KEY(o, "topic"), e->topic, e->topic_len);
    if (e->partition != -1) o = w_int(W_KEY(o, "partition"), e->partition);
    if (e->offset != -1) o = w_int(W_KEY(o, "offset"), e->offset);
    if (e->timestamp != -1) o = w_int(W_KEY(o, "timestamp"), e->timestamp);
    if (e->key.present) o = w_bin(W_KEY(o, "key"), &e->key);
    if (e->value.present) o = w_bin(W_KEY(o, "value"), &e->value);
    if (e->nheaders) o = w_headers(o, e);
    if (start_written(e)) {
        const char *s = ksock_start_name(e->start);
        o = w_str(W_KEY(o, "start"), s, strlen(s));
    }
    if (e->noffsets) o = w_offsets(o, e);
    if (e->start_timestamp != -1) o = w_int(W_KEY(o, "start_timestamp"), e->start_timestamp);
    if (e->error_code != 0) o = w_int(W_KEY(o, "error_code"), e->error_code);
    if (e->error_message)
        o = w_str(W_KEY(o, "error_message"), e->error_message, e->error_message_len);
    return o;
}

int mp_encode_envelope(const ksock_envelope_t *env, ksock_buf_t *out, char *errstr,
                       size_t errstr_size)
{
    if (ksock_envelope_check(env, errstr, errstr_size) != 0) return KSOCK_E_ENCODE;
    if (env->key.len > UINT32_MAX || env->value.len > UINT32_MAX) {
        ksock_errstr_set(errstr, errstr_size, "msgpack: key or value over 4 GiB");
        return KSOCK_E_ENCODE;
    }
    if (ksock_buf_reserve(out, envelope_bound(env)) != 0) {
        ksock_errstr_set(errstr, errstr_size, "msgpack: out of memory");
        return KSOCK_E_NOMEM;
    }
    unsigned char *start = (unsigned char *)out->data + out->len;
    out->len += (size_t)(w_envelope(start, env) - start);
    out->data[out->len] = '\0';
    return 0;
}
