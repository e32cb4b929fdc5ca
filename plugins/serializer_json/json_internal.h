/*
 * serializer_json internals shared by its files. Not installed.
 */
#ifndef KSOCK_SERIALIZER_JSON_INTERNAL_H
#define KSOCK_SERIALIZER_JSON_INTERNAL_H

#include <ksock/serializer.h>
#include <yajl/yajl_parse.h>

#include <string.h>

/* Options (parsed by the core from the config before create()). */
typedef struct json_opts_s {
    ksock_strlist_t json_topics;     /* topics whose values are embedded as JSON */
    ksock_strlist_t json_key_topics; /* topics whose keys are embedded as JSON */
} json_opts_t;

/* An instance: read-only after create, so encode/decode are thread-safe. */
typedef struct json_inst_s {
    const json_opts_t *opts; /* borrowed from the host until destroy */
} json_inst_t;

/* ---- Writing (json_write.c) ---- */

/* Append, growing the buffer; 0 or KSOCK_E_NOMEM. Keeps no NUL terminator: see json_finish. */
static inline int json_put(ksock_buf_t *b, const void *p, size_t n)
{
    if (b->cap - b->len <= n && ksock_buf_reserve(b, n) != 0) return KSOCK_E_NOMEM;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}
#define JSON_LIT(b, s) json_put((b), (s), sizeof(s) - 1)

/* A JSON string literal with quotes; `s` must be valid UTF-8 (callers check). */
int json_put_string(ksock_buf_t *b, const char *s, size_t len);
int json_put_int(ksock_buf_t *b, int64_t i);
/* Shortest round-trip form, Python repr style; KSOCK_E_ENCODE for NaN/Inf. */
int json_put_double(ksock_buf_t *b, double d);
/* Base64 (RFC 4648 section 4, padded) inside quotes. */
int json_put_base64(ksock_buf_t *b, const void *p, size_t len);
/* Restore the NUL after the data that ksock_buf_t promises. */
void json_finish(ksock_buf_t *b);

int json_encode_value(const ksock_value_t *v, ksock_buf_t *out, char *errstr, size_t errstr_size);
int json_encode_envelope(const json_inst_t *in, const ksock_envelope_t *env, ksock_buf_t *out,
                         char *errstr, size_t errstr_size);

/* ---- Reading (json_read.c, json_envelope.c) ---- */

/* strtod in the C locale, whatever the application set with setlocale(). */
double json_strtod(const char *s, char **end);

/* Decode base64 into `out` (room for len/4*3 bytes); returns the length or -1. */
ptrdiff_t json_base64_decode(const char *s, size_t len, unsigned char *out);

/* Parse a JSON number token: 1 for an int, 2 for a double, or a KSOCK_E_* code. */
int json_number(const char *s, size_t len, int64_t *i, double *d, const char **why);

/*
 * Check a decoded string from yajl: strict UTF-8, and no escapes that yajl
 * silently repaired (lone surrogates). `raw_end` is the offset just past
 * the string token in `input`. Returns NULL or the reason.
 */
const char *json_string_problem(const unsigned char *input, size_t raw_end, const char *s,
                                size_t len);

/*
 * A decode error being built by yajl callbacks: the first one wins. The
 * offset is where yajl stands (just past the token being handled), or
 * the input length while yajl_complete_parse() flushes the last token.
 */
typedef struct json_err_s {
    int rc; /* 0 while no error */
    size_t at;
    size_t len; /* input length */
    bool completing;
    char msg[200];
} json_err_t;

/* Record an error at yajl's position; returns 0, which is what a callback returns to stop. */
int json_fail(json_err_t *e, yajl_handle h, int rc, const char *fmt, ...) KSOCK_PRINTF(4, 5);
/* Parse all of `data` (one value, nothing after it) and fill `e` from yajl on failure. */
int json_run(yajl_handle h, const void *data, size_t len, json_err_t *e);
/* "json: offset N: message" into errstr; returns e->rc. */
int json_report(const json_err_t *e, char *errstr, size_t errstr_size);
/* A new strict parser (no comments, UTF-8 validated) calling `callbacks` with `ctx`; NULL on
 * ENOMEM. */
yajl_handle json_parser(const yajl_callbacks *callbacks, void *ctx);

/*
 * True when `p` holds exactly one valid JSON value, in strict UTF-8, nested
 * no deeper than the default decoder limit (64): what is embedded as
 * value_json must decode again on the other side.
 */
bool json_is_valid(const void *p, size_t len);

int json_decode_value(const void *data, size_t len, const ksock_value_limits_t *lim,
                      ksock_value_t **out, char *errstr, size_t errstr_size);
int json_decode_envelope(const void *data, size_t len, const ksock_value_limits_t *lim,
                         ksock_envelope_t *env, char *errstr, size_t errstr_size);

/* The effective depth limit: the caller's, capped by the builders' ceiling. */
static inline uint32_t json_max_depth(const ksock_value_limits_t *lim)
{
    return lim->max_depth < KSOCK_VALUE_MAX_DEPTH ? lim->max_depth : KSOCK_VALUE_MAX_DEPTH;
}

#endif
