/*
 * Helpers every serializer author would otherwise write again (ABI 1.1):
 * base64, hex and percent encoding, strict integers from text that is not
 * NUL-terminated, and the envelope check with a format's prefix and the
 * right error code. The bundled serializers and examples/serializer_csv
 * use them.
 *
 * Encoders append to `out` (caller-owned, ksock_buf_free()) and return 0 or
 * KSOCK_E_NOMEM; on failure `out` keeps its length. Decoders also return
 * KSOCK_E_DECODE for input that is not in the encoding, with `out` kept at
 * its length. Inputs are borrowed for the call. Thread-safe.
 */
#ifndef KSOCK_CODEC_H
#define KSOCK_CODEC_H

#include <ksock/common.h>
#include <ksock/serializer.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Base64 (RFC 4648): `url` false is the standard alphabet with `=` padding;
 * true is base64url without padding (section 5). Decoding is strict: only
 * the alphabet, padding only where it belongs (none at all for url), no
 * whitespace, and unused bits of the last character zero.
 */
KSOCK_EXTERN int ksock_base64_encode(const void *data, size_t len, bool url, ksock_buf_t *out);
KSOCK_EXTERN int ksock_base64_decode(const char *s, size_t len, bool url, ksock_buf_t *out);

/* Lower-case hex on encode; either case accepted on decode, even length only. */
KSOCK_EXTERN int ksock_hex_encode(const void *data, size_t len, ksock_buf_t *out);
KSOCK_EXTERN int ksock_hex_decode(const char *s, size_t len, ksock_buf_t *out);

/*
 * Percent encoding (RFC 3986 section 2.1): every byte but the unreserved
 * characters A-Z a-z 0-9 - . _ ~ becomes %XX (upper case). Decoding takes
 * %XX in either case and refuses a `%` not followed by two hex digits;
 * `+` is not a space.
 */
KSOCK_EXTERN int ksock_percent_encode(const void *data, size_t len, ksock_buf_t *out);
KSOCK_EXTERN int ksock_percent_decode(const char *s, size_t len, ksock_buf_t *out);

/*
 * A decimal integer filling all of s[0..len): an optional `-`, then 1-19
 * digits, no sign `+`, no spaces, no leading zeros but "0" itself. Returns 0,
 * KSOCK_E_DECODE (not such an integer) or KSOCK_E_LIMIT (outside int64).
 */
KSOCK_EXTERN int ksock_parse_int64(const char *s, size_t len, int64_t *out);

/*
 * ksock_envelope_check() as a serializer reports it: after decoding,
 * KSOCK_E_PROTO; before encoding (`decoding` false), KSOCK_E_ENCODE. The
 * message is "FORMAT: reason", e.g. "csv: publish needs a topic".
 */
KSOCK_EXTERN int ksock_envelope_validate(const ksock_envelope_t *env, const char *format,
                                         bool decoding, char *errstr, size_t errstr_size);

#ifdef __cplusplus
}
#endif
#endif
