/*
 * auth_jwt internals shared by jwt.c (the plugin) and jwt_json.c (JSON and
 * base64url to and from ksock_value_t). Not installed; file-static
 * everywhere else.
 */
#ifndef KSOCK_AUTH_JWT_INTERNAL_H
#define KSOCK_AUTH_JWT_INTERNAL_H

#include <ksock/value.h>

#include <stddef.h>

/* Nesting allowed in a token's header or claims: a token is at most 64 KiB. */
#define JWT_JSON_MAX_DEPTH 32

/*
 * Parse one JSON text (no comments, no trailing garbage, strict UTF-8,
 * duplicate keys refused) into a value. 0 and *out (one reference owned by
 * the caller), or KSOCK_E_DECODE with the reason in errstr. Thread-safe.
 */
int ksock__jwt_json_parse(const void *text, size_t len, ksock_value_t **out, char *errstr,
                          size_t errstr_size);

/*
 * Write `v` as compact JSON. 0 and *out (malloc'ed, NUL-terminated, owned by
 * the caller), or KSOCK_E_ENCODE (bytes, NaN/infinity) / KSOCK_E_NOMEM.
 */
int ksock__jwt_json_write(const ksock_value_t *v, char **out, char *errstr, size_t errstr_size);

/*
 * Strict base64url without padding (RFC 7515 §2): only [A-Za-z0-9_-], no
 * length of 1 mod 4, unused trailing bits zero. 0 and *out, *out_len
 * (malloc'ed, NUL-terminated for convenience), or KSOCK_E_DECODE.
 */
int ksock__jwt_b64url_decode(const char *s, size_t n, unsigned char **out, size_t *out_len);

/* Encode without padding; malloc'ed NUL-terminated string or NULL. */
char *ksock__jwt_b64url_encode(const unsigned char *p, size_t n);

#endif
