/*
 * serializer_protobuf: decoding a ksock.v1.Envelope into a ksock_envelope_t.
 * Strings and bytes point into the input frame (an empty one points at
 * its place in the frame, so it is never NULL, which would mean absent);
 * headers and offsets are collected in growable arrays and moved to the
 * envelope's arena.
 */
#include "pb_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct env_ctx_s {
    ksock_envelope_t *env;
    ksock_header_t *hdrs;
    size_t nhdrs, caphdrs;
    ksock_partition_offset_t *offs;
    size_t noffs, capoffs;
    /* presence inside the current Header / PartitionOffset */
    unsigned sub_seen;
} env_ctx_t;

static int grow(pb_reader_t *r, void **v, size_t *cap, size_t n, size_t elem, size_t at)
{
    if (n < *cap) return 0;
    size_t ncap = *cap ? *cap * 2 : 8;
    void *p = realloc(*v, ncap * elem);
    if (p == NULL) return pb_fail(r, KSOCK_E_NOMEM, at, "out of memory");
    *v = p;
    *cap = ncap;
    return 0;
}

static int header_field(pb_reader_t *r, void *ctx, const pb_field_t *f)
{
    env_ctx_t *c = ctx;
    ksock_header_t *h = &c->hdrs[c->nhdrs];
    c->sub_seen |= 1u << f->fd->id;
    if (f->fd->id == 1) {
        h->key = (const char *)f->p;
        h->key_len = f->len;
    } else {
        h->value = (ksock_bytes_t){f->p, f->len, true};
    }
    return 0;
}

static int read_header(pb_reader_t *r, env_ctx_t *c, const pb_field_t *f)
{
    if (grow(r, (void **)&c->hdrs, &c->caphdrs, c->nhdrs, sizeof(*c->hdrs), f->at))
        return r->err.rc;
    memset(&c->hdrs[c->nhdrs], 0, sizeof(*c->hdrs));
    c->sub_seen = 0;
    if (pb_walk(r, &ksock__v1__header__descriptor, f->p, f->p + f->len, header_field, c) != 0)
        return r->err.rc;
    if (!(c->sub_seen & (1u << 1))) pb_rule(r, f->at, "header without a key");
    c->nhdrs++;
    return 0;
}

static int offset_field(pb_reader_t *r, void *ctx, const pb_field_t *f)
{
    env_ctx_t *c = ctx;
    ksock_partition_offset_t *o = &c->offs[c->noffs];
    c->sub_seen |= 1u << f->fd->id;
    int rc = f->fd->id == 1 ? pb_get_int32(r, f, &o->partition) : pb_get_int64(r, f, &o->offset);
    if (rc == 0 && (o->partition < 0 || o->offset < 0))
        pb_rule(r, f->at, "offsets entry: partition and offset must be >= 0");
    return rc;
}

static int read_offset(pb_reader_t *r, env_ctx_t *c, const pb_field_t *f)
{
    if (grow(r, (void **)&c->offs, &c->capoffs, c->noffs, sizeof(*c->offs), f->at))
        return r->err.rc;
    c->offs[c->noffs] = (ksock_partition_offset_t){0, 0};
    c->sub_seen = 0;
    if (pb_walk(r, &ksock__v1__partition_offset__descriptor, f->p, f->p + f->len, offset_field,
                c) != 0)
        return r->err.rc;
    if (c->sub_seen != ((1u << 1) | (1u << 2)))
        pb_rule(r, f->at, "offsets entry needs partition and offset");
    c->noffs++;
    return 0;
}

/* partition, offset, timestamp, start_timestamp: present means >= 0. */
static int read_number(pb_reader_t *r, const pb_field_t *f, ksock_envelope_t *e)
{
    int64_t v;
    if (f->fd->id == 4) {
        int32_t p;
        if (pb_get_int32(r, f, &p) != 0) return r->err.rc;
        v = p;
    } else {
        pb_get_int64(r, f, &v);
    }
    if (v < 0) pb_rule(r, f->at, "%s must be >= 0", f->fd->name);
    switch (f->fd->id) {
    case 4:
        e->partition = (int32_t)v;
        break;
    case 5:
        e->offset = v;
        break;
    case 6:
        e->timestamp = v;
        break;
    default:
        e->start_timestamp = v;
        break;
    }
    return 0;
}

static int read_enum(pb_reader_t *r, const pb_field_t *f, int *out)
{
    int32_t v;
    if (pb_get_int32(r, f, &v) != 0) return r->err.rc;
    *out = v; /* unknown numbers fail ksock_envelope_check with a clear message */
    return 0;
}

static int envelope_field(pb_reader_t *r, void *ctx, const pb_field_t *f)
{
    env_ctx_t *c = ctx;
    ksock_envelope_t *e = c->env;
    int v = 0;
    switch (f->fd->id) {
    case 1:
        if (read_enum(r, f, &v) != 0) return r->err.rc;
        e->op = (ksock_op_t)v;
        return 0;
    case 2:
        e->id = (const char *)f->p;
        e->id_len = f->len;
        return 0;
    case 3:
        e->topic = (const char *)f->p;
        e->topic_len = f->len;
        return 0;
    case 7:
        e->key = (ksock_bytes_t){f->p, f->len, true};
        return 0;
    case 8:
        e->value = (ksock_bytes_t){f->p, f->len, true};
        return 0;
    case 9:
        return read_header(r, c, f);
    case 10:
        if (read_enum(r, f, &v) != 0) return r->err.rc;
        e->start = (ksock_start_t)v;
        return 0;
    case 11:
        return read_offset(r, c, f);
    case 13:
        if (pb_get_int32(r, f, &e->error_code) != 0) return r->err.rc;
        if (e->error_code >= 0) pb_rule(r, f->at, "error_code must be negative");
        return 0;
    case 14:
        e->error_message = (const char *)f->p;
        e->error_message_len = f->len;
        return 0;
    default:
        return read_number(r, f, e);
    }
}

static int publish_lists(env_ctx_t *c)
{
    ksock_envelope_t *e = c->env;
    if (c->nhdrs) {
        ksock_header_t *h = ksock_envelope_alloc(e, c->nhdrs * sizeof(*h));
        if (h == NULL) return KSOCK_E_NOMEM;
        memcpy(h, c->hdrs, c->nhdrs * sizeof(*h));
        e->headers = h;
        e->nheaders = c->nhdrs;
    }
    if (c->noffs) {
        ksock_partition_offset_t *o = ksock_envelope_alloc(e, c->noffs * sizeof(*o));
        if (o == NULL) return KSOCK_E_NOMEM;
        memcpy(o, c->offs, c->noffs * sizeof(*o));
        e->offsets = o;
        e->noffsets = c->noffs;
    }
    return 0;
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
    if (id == NULL) pb_find_id(data, len, lim, &env->id, &env->id_len);
}

int pb_decode_envelope(const void *data, size_t len, const ksock_value_limits_t *lim,
                       bool ignore_unknown, ksock_envelope_t *env, char *errstr, size_t errstr_size)
{
    pb_reader_t r;
    env_ctx_t c = {.env = env};
    pb_reader_init(&r, data, lim, ignore_unknown);
    if (len > lim->max_total) {
        pb_fail(&r, KSOCK_E_LIMIT, 0, "input of %zu bytes over the %llu limit", len,
                (unsigned long long)lim->max_total);
        return pb_report(&r, errstr, errstr_size);
    }
    const unsigned char *p = data ? data : (const unsigned char *)"";
    pb_walk(&r, &ksock__v1__envelope__descriptor, p, p + len, envelope_field, &c);
    int rc = r.err.rc ? r.err.rc : r.proto.rc;
    if (rc != 0)
        ksock_decode_report(r.err.rc ? &r.err : &r.proto, "protobuf", errstr, errstr_size);
    else
        rc = publish_lists(&c);
    free(c.hdrs);
    free(c.offs);
    if (rc == 0 && (rc = ksock_envelope_check(env, errstr, errstr_size)) != 0 && errstr &&
        errstr_size) {
        char reason[200];
        snprintf(reason, sizeof(reason), "%s", errstr);
        ksock_errstr_set(errstr, errstr_size, "protobuf: %s", reason);
    }
    if (rc != 0 && rc != KSOCK_E_NOMEM) keep_only_id(data, len, lim, env);
    return rc;
}
