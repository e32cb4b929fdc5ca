/*
 * Serializer interface (spec II) and the Kafka envelope.
 *
 * A serializer turns values (value.h) and envelopes (the operations of the
 * wire protocol, docs/protocol.md) into WebSocket frames and back. The
 * WebSocket subprotocol `ksock.v1.<name>` selects the serializer named
 * <name> for a connection. Envelopes are encoded without building a value
 * tree: this is the bridge's hot path.
 *
 * All vtable functions are called on the loop thread, except that
 * encode_* and decode_* must be safe to call concurrently on one instance
 * from several threads (they keep no mutable per-instance state).
 */
#ifndef KSOCK_SERIALIZER_H
#define KSOCK_SERIALIZER_H

#include <ksock/plugin.h>
#include <ksock/value.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { KSOCK_FRAME_TEXT = 1, KSOCK_FRAME_BINARY = 2 } ksock_frame_type_t;

/* Operations of the wire protocol. Numbers are stable (protobuf uses them). */
typedef enum {
    KSOCK_OP_NONE = 0,
    KSOCK_OP_SUBSCRIBE = 1,   /* client: topic, start, id */
    KSOCK_OP_UNSUBSCRIBE = 2, /* client: topic, id */
    KSOCK_OP_PUBLISH = 3,     /* client: topic, key, value, headers, partition?, id */
    KSOCK_OP_ACK = 4,         /* server: id, topic, partition, offset */
    KSOCK_OP_RECORD = 5,      /* server: topic, partition, offset, timestamp, key, value, headers */
    KSOCK_OP_ERROR = 6,       /* server: id?, error_code, error_message */
    KSOCK_OP_SUBSCRIBED = 7,  /* server: id, topic */
    KSOCK_OP_UNSUBSCRIBED = 8, /* server: id, topic */
    KSOCK_OP_PING = 9,
    KSOCK_OP_PONG = 10,
    /* ABI 1.2: client: value (a new token), id; server: id, timestamp (its expiry) */
    KSOCK_OP_TOKEN = 11
} ksock_op_t;

/* Where a subscription starts. */
typedef enum {
    KSOCK_START_LATEST = 0,
    KSOCK_START_EARLIEST = 1,
    KSOCK_START_OFFSETS = 2,  /* per-partition offsets in `offsets` */
    KSOCK_START_TIMESTAMP = 3 /* first record at or after `start_timestamp` (ms) */
} ksock_start_t;

/* A byte string that may be absent (Kafka distinguishes null from empty). */
typedef struct ksock_bytes_s {
    const void *data;
    size_t len;
    bool present;
} ksock_bytes_t;

typedef struct ksock_header_s {
    const char *key;
    size_t key_len;
    ksock_bytes_t value;
} ksock_header_t;

typedef struct ksock_partition_offset_s {
    int32_t partition;
    int64_t offset;
} ksock_partition_offset_t;

/*
 * One protocol message. Pointers are borrowed: for encoding, from the
 * caller; for decoding, from the input frame or from `arena_` (see
 * ksock_envelope_clear). Absent numbers are -1 (partition, offset,
 * timestamp, start_timestamp), an absent error_code is 0, and absent
 * strings NULL. Strings are (pointer, length) and need not be
 * NUL-terminated.
 */
typedef struct ksock_envelope_s {
    size_t size; /* sizeof(ksock_envelope_t) */
    ksock_op_t op;
    const char *id; /* client correlation id, echoed in ack/error/subscribed */
    size_t id_len;
    const char *topic;
    size_t topic_len;
    int32_t partition;
    int64_t offset;
    int64_t timestamp; /* ms since the epoch */
    ksock_bytes_t key;
    ksock_bytes_t value;
    const ksock_header_t *headers;
    size_t nheaders;
    /* subscribe */
    ksock_start_t start;
    const ksock_partition_offset_t *offsets;
    size_t noffsets;
    int64_t start_timestamp;
    /* error */
    int32_t error_code; /* KSOCK_E_* */
    const char *error_message;
    size_t error_message_len;
    /* decoder-owned storage; released by ksock_envelope_clear() */
    void *arena_;
} ksock_envelope_t;

/* The wire name of an op ("record") or start ("earliest"); NULL if out of range. */
KSOCK_EXTERN const char *ksock_op_name(ksock_op_t op);
KSOCK_EXTERN const char *ksock_start_name(ksock_start_t start);
/* Parse a wire name (not NUL-terminated). Returns 0 or KSOCK_E_INVAL. */
KSOCK_EXTERN int ksock_op_parse(const char *name, size_t len, ksock_op_t *out);
KSOCK_EXTERN int ksock_start_parse(const char *name, size_t len, ksock_start_t *out);

/*
 * Check an envelope against the rules of docs/protocol.md section 2 (op
 * known, the op's required fields present, ranges, UTF-8 strings,
 * offsets only with start "offsets"...). Every decoder calls it before
 * returning and every encoder before writing, so all formats accept the
 * same envelopes. Returns 0 or KSOCK_E_PROTO with the reason in errstr.
 * Thread-safe.
 */
KSOCK_EXTERN int ksock_envelope_check(const ksock_envelope_t *env, char *errstr,
                                      size_t errstr_size);

/* True when two envelopes carry the same protocol message (arena_ and size ignored). */
KSOCK_EXTERN bool ksock_envelope_equal(const ksock_envelope_t *a, const ksock_envelope_t *b);

/* Reset to an empty envelope: op NONE, numbers -1, nothing present. */
KSOCK_EXTERN void ksock_envelope_init(ksock_envelope_t *env);
/* Free decoder-owned storage and re-init. */
KSOCK_EXTERN void ksock_envelope_clear(ksock_envelope_t *env);
/* Storage for decoders: memory freed by ksock_envelope_clear(). NULL on ENOMEM. */
KSOCK_EXTERN void *ksock_envelope_alloc(ksock_envelope_t *env, size_t n);

/*
 * A decoder's error: the first failure wins and keeps the byte offset it
 * was found at, so a nested reader can fail deep inside and the caller
 * reports once, "FORMAT: offset N: message" (docs/protocol.md, Errors).
 * Zero-initialise.
 */
typedef struct ksock_decode_err_s {
    /*
     * 0 or sizeof(ksock_decode_err_t): the library writes only the fields
     * this covers, 0 meaning those of ABI 1.1 (rc, at, msg), so a struct
     * zero-initialised by a plugin built today stays safe if it grows.
     */
    size_t size;
    int rc; /* first error, 0 while none */
    size_t at;
    char msg[200];
} ksock_decode_err_t;

/* Record an error unless one is recorded already; returns the first error's code. */
KSOCK_EXTERN int ksock_decode_fail(ksock_decode_err_t *e, int rc, size_t at, const char *fmt, ...)
    KSOCK_PRINTF(4, 5);
/*
 * "FORMAT: offset N: message" into errstr; returns e->rc. The message is
 * escaped on the way (control characters as \u00XX, bytes that are not
 * UTF-8 as \xNN, backslash as \\), so quoting client bytes in it is safe:
 * errstr is always valid UTF-8 without control characters.
 */
KSOCK_EXTERN int ksock_decode_report(const ksock_decode_err_t *e, const char *format, char *errstr,
                                     size_t errstr_size);

typedef struct ksock_serializer_vtable_s {
    KSOCK_VTABLE_HEAD;
    /* Text or binary WebSocket frames (a constant per instance). */
    ksock_frame_type_t (*frame_type)(void *inst);
    /* Encode a value, appending to `out` (caller-owned). 0 or KSOCK_E_ENCODE/LIMIT/NOMEM. */
    int (*encode_value)(void *inst, const ksock_value_t *v, ksock_buf_t *out, char *errstr,
                        size_t errstr_size);
    /*
     * Decode a value from `data`. On success *out holds one reference for
     * the caller. Errors: KSOCK_E_DECODE/LIMIT with the position in errstr.
     */
    int (*decode_value)(void *inst, const void *data, size_t len, const ksock_value_limits_t *lim,
                        ksock_value_t **out, char *errstr, size_t errstr_size);
    /*
     * Encode an envelope, appending to `out`. KSOCK_E_ENCODE if it fails
     * ksock_envelope_check() (errstr says why); on failure `out` keeps its length.
     */
    int (*encode_envelope)(void *inst, const ksock_envelope_t *env, ksock_buf_t *out, char *errstr,
                           size_t errstr_size);
    /*
     * Decode an envelope. `env` is initialised by the caller; on success and
     * on failure the caller releases it with ksock_envelope_clear(). Fields
     * may point into `data`, which must outlive `env`. Errors:
     * KSOCK_E_DECODE (not a well-typed envelope) or KSOCK_E_LIMIT with the
     * position in errstr, KSOCK_E_PROTO for a well-typed envelope that
     * breaks a rule (docs/protocol.md section 6 says which is which).
     * errstr is printable UTF-8: client bytes in it are escaped.
     * On failure every field is reset except id/id_len: they are set when
     * the frame's top-level id decoded (valid UTF-8 within the limit),
     * whatever failed before or after it, so that the error reply can
     * carry it; valid, like a decoded id, until ksock_envelope_clear() and
     * while `data` lives. NULL when the id is absent, bad, or after a point
     * where the frame cannot be read further.
     */
    int (*decode_envelope)(void *inst, const void *data, size_t len,
                           const ksock_value_limits_t *lim, ksock_envelope_t *env, char *errstr,
                           size_t errstr_size);
} ksock_serializer_vtable_t;

#ifdef __cplusplus
}
#endif
#endif
