/*
 * serializer_protobuf internals shared by its files. Not installed.
 *
 * ksock.proto is compiled by protoc-c; its generated descriptors drive the
 * strict reader (field names, numbers, types, oneof membership), and the
 * writer follows the same schema by hand (see pb_write.c for why).
 */
#ifndef KSOCK_SERIALIZER_PROTOBUF_INTERNAL_H
#define KSOCK_SERIALIZER_PROTOBUF_INTERNAL_H

#include <ksock/serializer.h>

#include "ksock.pb-c.h"

/* Options. */
enum { PB_UNKNOWN_ERROR = 0, PB_UNKNOWN_IGNORE = 1 };
typedef struct pb_opts_s {
    int unknown_fields; /* PB_UNKNOWN_* */
} pb_opts_t;

typedef struct pb_inst_s {
    bool ignore_unknown;
} pb_inst_t;

/* Wire types. */
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_SGROUP = 3, WT_EGROUP = 4, WT_I32 = 5 };

/* ---- Writing (pb_write.c) ---- */

int pb_encode_value(const ksock_value_t *v, ksock_buf_t *out, char *errstr, size_t errstr_size);
int pb_encode_envelope(const ksock_envelope_t *env, ksock_buf_t *out, char *errstr,
                       size_t errstr_size);

/* ---- Reading (pb_read.c, pb_envelope.c) ---- */

typedef struct pb_reader_s {
    const unsigned char *base;
    const ksock_value_limits_t *lim;
    uint32_t max_depth;
    bool ignore_unknown;
    ksock_decode_err_t err; /* the first error */
    ksock_decode_err_t
        proto; /* the first rule broken (KSOCK_E_PROTO), reported if err stays clear */
} pb_reader_t;

/* One field as read from the wire, already checked against its descriptor. */
typedef struct pb_field_s {
    const ProtobufCFieldDescriptor *fd;
    size_t at;              /* offset of its tag */
    uint64_t u;             /* varint, fixed32 or fixed64 payload */
    const unsigned char *p; /* length-delimited payload */
    size_t len;
} pb_field_t;

typedef int (*pb_field_cb)(pb_reader_t *r, void *ctx, const pb_field_t *f);

void pb_reader_init(pb_reader_t *r, const void *data, const ksock_value_limits_t *lim,
                    bool ignore_unknown);
/* Record the first error (at offset `at`); returns the first error's code. */
#define pb_fail(r, ...) ksock_decode_fail(&(r)->err, __VA_ARGS__)
/* Note a well-typed value that breaks a protocol rule; the caller goes on reading. */
#define pb_rule(r, at, ...) ((void)ksock_decode_fail(&(r)->proto, KSOCK_E_PROTO, (at), __VA_ARGS__))
/* Error text "protobuf: offset N: ..." into errstr; returns r->err.rc. */
#define pb_report(r, errstr, errstr_size)                                                          \
    ksock_decode_report(&(r)->err, "protobuf", errstr, errstr_size)

/*
 * Walk the message `desc` in [p, end): every field's wire type must match
 * the schema, non-repeated fields and oneof members appear at most once,
 * strings are valid UTF-8, strings and bytes within max_string, repeated
 * fields within max_items. Calls `cb` for each known field in wire order;
 * unknown fields are an error, or skipped when the reader ignores them.
 */
int pb_walk(pb_reader_t *r, const ProtobufCMessageDescriptor *desc, const unsigned char *p,
            const unsigned char *end, pb_field_cb cb, void *ctx);

/*
 * The first top-level field 2 (Envelope.id) of `data` if it is valid UTF-8
 * within max_string, read leniently (other fields are only skipped), for
 * the error reply to a frame that failed; *id stays NULL otherwise.
 */
void pb_find_id(const void *data, size_t len, const ksock_value_limits_t *lim, const char **id,
                size_t *id_len);

/* Typed views of a field's payload, with range checks (0 or an error). */
int pb_get_int32(pb_reader_t *r, const pb_field_t *f, int32_t *out);
int pb_get_int64(pb_reader_t *r, const pb_field_t *f, int64_t *out);

int pb_decode_value(const void *data, size_t len, const ksock_value_limits_t *lim,
                    bool ignore_unknown, ksock_value_t **out, char *errstr, size_t errstr_size);
int pb_decode_envelope(const void *data, size_t len, const ksock_value_limits_t *lim,
                       bool ignore_unknown, ksock_envelope_t *env, char *errstr,
                       size_t errstr_size);

#endif
