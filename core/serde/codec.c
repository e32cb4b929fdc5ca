/*
 * include/ksock/codec.h: the encodings serializer authors need. Strict on
 * decode (one spelling per value, so two readers never disagree about
 * what a client sent) and append-only on encode.
 */
#include "../internal.h"

#include <ksock/codec.h>

#include <stdio.h>
#include <string.h>

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const char hex_lower[] = "0123456789abcdef";
static const char hex_upper[] = "0123456789ABCDEF";

int ksock_base64_encode(const void *data, size_t len, bool url, ksock_buf_t *out)
{
    const unsigned char *p = data;
    const char *abc = url ? b64_url : b64_std;
    if (ksock_buf_reserve(out, (len + 2) / 3 * 4 + 1) != 0) return KSOCK_E_NOMEM;
    char *w = out->data + out->len;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *w++ = abc[v >> 18];
        *w++ = abc[(v >> 12) & 63];
        *w++ = abc[(v >> 6) & 63];
        *w++ = abc[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0);
        *w++ = abc[v >> 18];
        *w++ = abc[(v >> 12) & 63];
        if (i + 1 < len)
            *w++ = abc[(v >> 6) & 63];
        else if (!url)
            *w++ = '=';
        if (!url) *w++ = '=';
    }
    out->len = (size_t)(w - out->data);
    out->data[out->len] = '\0';
    return 0;
}

static int b64_value(unsigned char c, bool url)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == (url ? '-' : '+')) return 62;
    if (c == (url ? '_' : '/')) return 63;
    return -1;
}

int ksock_base64_decode(const char *s, size_t len, bool url, ksock_buf_t *out)
{
    size_t pad = 0;
    if (!url) {
        if (len % 4 != 0) return KSOCK_E_DECODE;
        while (pad < 2 && len > pad && s[len - 1 - pad] == '=')
            pad++;
    } else if (len % 4 == 1) {
        return KSOCK_E_DECODE;
    }
    size_t n = len - pad; /* alphabet characters */
    if (!url && pad > 0 && n % 4 == 1) return KSOCK_E_DECODE;
    if (ksock_buf_reserve(out, n / 4 * 3 + 3) != 0) return KSOCK_E_NOMEM;
    unsigned char *w = (unsigned char *)out->data + out->len;
    uint32_t acc = 0;
    size_t bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value((unsigned char)s[i], url);
        if (v < 0) return KSOCK_E_DECODE;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            *w++ = (unsigned char)(acc >> bits);
        }
    }
    if (acc & ((1u << bits) - 1)) return KSOCK_E_DECODE; /* non-zero unused bits */
    out->len = (size_t)((char *)w - out->data);
    out->data[out->len] = '\0';
    return 0;
}

int ksock_hex_encode(const void *data, size_t len, ksock_buf_t *out)
{
    const unsigned char *p = data;
    if (ksock_buf_reserve(out, 2 * len + 1) != 0) return KSOCK_E_NOMEM;
    char *w = out->data + out->len;
    for (size_t i = 0; i < len; i++) {
        *w++ = hex_lower[p[i] >> 4];
        *w++ = hex_lower[p[i] & 15];
    }
    out->len = (size_t)(w - out->data);
    out->data[out->len] = '\0';
    return 0;
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int ksock_hex_decode(const char *s, size_t len, ksock_buf_t *out)
{
    if (len % 2 != 0) return KSOCK_E_DECODE;
    if (ksock_buf_reserve(out, len / 2 + 1) != 0) return KSOCK_E_NOMEM;
    unsigned char *w = (unsigned char *)out->data + out->len;
    for (size_t i = 0; i < len; i += 2) {
        int hi = hex_value((unsigned char)s[i]), lo = hex_value((unsigned char)s[i + 1]);
        if (hi < 0 || lo < 0) return KSOCK_E_DECODE;
        *w++ = (unsigned char)(hi << 4 | lo);
    }
    out->len = (size_t)((char *)w - out->data);
    out->data[out->len] = '\0';
    return 0;
}

static bool unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

int ksock_percent_encode(const void *data, size_t len, ksock_buf_t *out)
{
    const unsigned char *p = data;
    if (ksock_buf_reserve(out, 3 * len + 1) != 0) return KSOCK_E_NOMEM;
    char *w = out->data + out->len;
    for (size_t i = 0; i < len; i++) {
        if (unreserved(p[i])) {
            *w++ = (char)p[i];
        } else {
            *w++ = '%';
            *w++ = hex_upper[p[i] >> 4];
            *w++ = hex_upper[p[i] & 15];
        }
    }
    out->len = (size_t)(w - out->data);
    out->data[out->len] = '\0';
    return 0;
}

int ksock_percent_decode(const char *s, size_t len, ksock_buf_t *out)
{
    if (ksock_buf_reserve(out, len + 1) != 0) return KSOCK_E_NOMEM;
    unsigned char *w = (unsigned char *)out->data + out->len;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') {
            *w++ = (unsigned char)s[i];
            continue;
        }
        int hi = i + 2 < len ? hex_value((unsigned char)s[i + 1]) : -1;
        int lo = hi >= 0 ? hex_value((unsigned char)s[i + 2]) : -1;
        if (lo < 0) return KSOCK_E_DECODE;
        *w++ = (unsigned char)(hi << 4 | lo);
        i += 2;
    }
    out->len = (size_t)((char *)w - out->data);
    out->data[out->len] = '\0';
    return 0;
}

int ksock_parse_int64(const char *s, size_t len, int64_t *out)
{
    size_t i = 0;
    bool neg = len > 0 && s[0] == '-';
    if (neg) i = 1;
    if (i == len || (s[i] == '0' && len - i > 1)) return KSOCK_E_DECODE;
    uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return KSOCK_E_DECODE;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (limit - d) / 10) return KSOCK_E_LIMIT;
        v = v * 10 + d;
    }
    if (neg && v == 0) return KSOCK_E_DECODE; /* "-0" */
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

int ksock_envelope_validate(const ksock_envelope_t *env, const char *format, bool decoding,
                            char *errstr, size_t errstr_size)
{
    char why[256];
    if (ksock_envelope_check(env, why, sizeof(why)) == 0) return 0;
    ksock_errstr_set(errstr, errstr_size, "%s: %s", format, why);
    return decoding ? KSOCK_E_PROTO : KSOCK_E_ENCODE;
}
