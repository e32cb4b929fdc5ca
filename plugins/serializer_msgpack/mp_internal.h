/*
 * serializer_msgpack internals shared by its files. Not installed.
 */
#ifndef KSOCK_SERIALIZER_MSGPACK_INTERNAL_H
#define KSOCK_SERIALIZER_MSGPACK_INTERNAL_H

#include <ksock/serializer.h>

/* ---- Writing (mp_write.c, with msgpack-c's packer) ---- */

int mp_encode_value(const ksock_value_t *v, ksock_buf_t *out, char *errstr, size_t errstr_size);
int mp_encode_envelope(const ksock_envelope_t *env, ksock_buf_t *out, char *errstr,
                       size_t errstr_size);

/* ---- Reading (mp_read.c, a bounded reader of our own) ---- */

typedef enum { MP_NIL, MP_BOOL, MP_INT, MP_FLOAT, MP_STR, MP_BIN, MP_ARRAY, MP_MAP } mp_kind_t;

/* One item header: a scalar, or a container's count. */
typedef struct mp_item_s {
    mp_kind_t kind;
    bool b;
    int64_t i;
    double d;
    const char *s; /* str/bin payload, in the input */
    size_t n;      /* str/bin length, or array/map count */
    size_t at;     /* offset of the item's first byte */
} mp_item_t;

typedef struct mp_reader_s {
    const unsigned char *base, *p, *end;
    const ksock_value_limits_t *lim;
    uint32_t max_depth;
    ksock_decode_err_t err; /* the first error */
    ksock_decode_err_t
        proto; /* the first rule broken (KSOCK_E_PROTO), reported if err stays clear */
} mp_reader_t;

void mp_reader_init(mp_reader_t *r, const void *data, size_t len, const ksock_value_limits_t *lim);
/* Record the first error (at offset `at`); returns the first error's code. */
#define mp_fail(r, ...) ksock_decode_fail(&(r)->err, __VA_ARGS__)
/* Note a well-typed value that breaks a protocol rule; the caller goes on reading. */
#define mp_rule(r, at, ...) ((void)ksock_decode_fail(&(r)->proto, KSOCK_E_PROTO, (at), __VA_ARGS__))
/* Read the next item header; str/bin payloads are skipped over and checked. */
int mp_next(mp_reader_t *r, mp_item_t *it);
/* A str item that is valid UTF-8, or an error. */
int mp_check_str(mp_reader_t *r, const mp_item_t *it);
/* Error text "msgpack: offset N: ..." into errstr; returns r->err.rc. */
#define mp_report(r, errstr, errstr_size)                                                          \
    ksock_decode_report(&(r)->err, "msgpack", errstr, errstr_size)

int mp_decode_value(const void *data, size_t len, const ksock_value_limits_t *lim,
                    ksock_value_t **out, char *errstr, size_t errstr_size);
int mp_decode_envelope(const void *data, size_t len, const ksock_value_limits_t *lim,
                       ksock_envelope_t *env, char *errstr, size_t errstr_size);

#endif
