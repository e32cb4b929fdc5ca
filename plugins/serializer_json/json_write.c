/*
 * serializer_json: writing values and envelopes.
 *
 * Hand-written rather than yajl_gen: the envelope is the bridge's hot path
 * (one pass, no per-token callbacks), yajl_gen prints doubles with %.20g
 * (0.1 becomes 0.10000000000000000555) and caps nesting at 128, and the
 * output must be canonical byte for byte so that tests/vectors can pin it.
 * Canonical means: no whitespace, members in a fixed order, strings with
 * only the mandatory escapes (short forms \" \\ \b \f \n \r \t, other
 * controls as \u00xx), UTF-8 written as is, doubles in shortest round-trip
 * form (the style of Python's repr: 0.1, 1.0, 1e+16, 1.5e-07).
 */
#include "json_internal.h"

#include <float.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- Scalars ----------------------------------------------------------------- */

/* 0: copy as is; 'u': \u00xx; otherwise the character after the backslash. */
static const char escape_of[256] = {
    ['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r',  ['\t'] = 't', [0x00] = 'u',
    [0x01] = 'u', [0x02] = 'u', [0x03] = 'u', [0x04] = 'u',  [0x05] = 'u', [0x06] = 'u',
    [0x07] = 'u', [0x0b] = 'u', [0x0e] = 'u', [0x0f] = 'u',  [0x10] = 'u', [0x11] = 'u',
    [0x12] = 'u', [0x13] = 'u', [0x14] = 'u', [0x15] = 'u',  [0x16] = 'u', [0x17] = 'u',
    [0x18] = 'u', [0x19] = 'u', [0x1a] = 'u', [0x1b] = 'u',  [0x1c] = 'u', [0x1d] = 'u',
    [0x1e] = 'u', [0x1f] = 'u', ['"'] = '"',  ['\\'] = '\\',
};

/* "s", with an extra '$' after the opening quote when `dollar` (see put_key). */
static int put_quoted(ksock_buf_t *b, const char *s, size_t len, bool dollar)
{
    /* Worst case every byte becomes \u00xx: reserve once, then write without checks. */
    if (len > (SIZE_MAX - 3) / 6 || ksock_buf_reserve(b, len * 6 + 3) != 0) return KSOCK_E_NOMEM;
    char *o = b->data + b->len;
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    *o++ = '"';
    if (dollar) *o++ = '$';
    while (p < end) {
        const unsigned char *run = p;
        while (p < end && escape_of[*p] == 0)
            p++;
        memcpy(o, run, (size_t)(p - run));
        o += p - run;
        if (p == end) break;
        char e = escape_of[*p];
        *o++ = '\\';
        if (e == 'u') {
            static const char hex[] = "0123456789abcdef";
            memcpy(o, "u00", 3);
            o[3] = hex[*p >> 4];
            o[4] = hex[*p & 15];
            o += 5;
        } else {
            *o++ = e;
        }
        p++;
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    return 0;
}

int json_put_string(ksock_buf_t *b, const char *s, size_t len)
{
    return put_quoted(b, s, len, false);
}

int json_put_int(ksock_buf_t *b, int64_t i)
{
    char tmp[24], *p = tmp + sizeof(tmp);
    /* Negate in unsigned arithmetic so INT64_MIN works. */
    uint64_t u = i < 0 ? 0 - (uint64_t)i : (uint64_t)i;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (i < 0) *--p = '-';
    return json_put(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void)
{
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

double json_strtod(const char *s, char **end)
{
    pthread_once(&c_locale_once, c_locale_init);
    return c_locale ? strtod_l(s, end, c_locale) : strtod(s, end);
}

/*
 * Significant digits and decimal exponent of the shortest decimal that
 * reads back as `d`. A normal double is identified by its nearest 15-digit
 * decimal whenever any 15-digit decimal reads back as it (DBL_DIG), so
 * trying 15, 16, 17 digits in turn finds the shortest form (trailing zeros
 * stripped) and, among those, the nearest: the same digits as Python's
 * repr() and JavaScript's Number#toString().
 */
static int shortest_digits(double d, char *digits, int *exp10)
{
    char tmp[40];
    /* Denormals carry fewer than 15 significant digits: search them from 1. */
    for (int prec = fabs(d) < DBL_MIN ? 1 : 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, fabs(d));
        if (json_strtod(tmp, NULL) == fabs(d) || prec == 17) break;
    }
    /* tmp is D<point>DDDDe[+-]XX; the point may be locale-specific, so skip it by position. */
    int n = 0;
    digits[n++] = tmp[0];
    char *p = tmp + 1;
    if (*p != 'e') p++;
    while (*p >= '0' && *p <= '9')
        digits[n++] = *p++;
    *exp10 = atoi(p + 1);
    while (n > 1 && digits[n - 1] == '0')
        n--;
    digits[n] = '\0';
    return n;
}

int json_put_double(ksock_buf_t *b, double d)
{
    if (!isfinite(d)) return KSOCK_E_ENCODE;
    char digits[24], out[48], *o = out;
    int e, n = shortest_digits(d, digits, &e);
    if (signbit(d)) *o++ = '-';
    if (e < -4 || e >= 16) {
        /* Exponent form: 1e+16, 1.5e-07. */
        *o++ = digits[0];
        if (n > 1) {
            *o++ = '.';
            memcpy(o, digits + 1, (size_t)n - 1);
            o += n - 1;
        }
        o += snprintf(o, 8, "e%c%02d", e < 0 ? '-' : '+', abs(e));
    } else if (e < 0) {
        /* 0.000123 */
        memcpy(o, "0.", 2);
        o += 2;
        for (int i = 0; i < -e - 1; i++)
            *o++ = '0';
        memcpy(o, digits, (size_t)n);
        o += n;
    } else {
        /* 123.45, 100.0: always a fraction so the reader sees a double. */
        for (int i = 0; i <= e; i++)
            *o++ = i < n ? digits[i] : '0';
        *o++ = '.';
        if (n > e + 1) {
            memcpy(o, digits + e + 1, (size_t)(n - e - 1));
            o += n - e - 1;
        } else {
            *o++ = '0';
        }
    }
    return json_put(b, out, (size_t)(o - out));
}

int json_put_base64(ksock_buf_t *b, const void *p, size_t len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t olen = (len + 2) / 3 * 4 + 2;
    if (len > SIZE_MAX / 2 || ksock_buf_reserve(b, olen) != 0) return KSOCK_E_NOMEM;
    const unsigned char *s = p;
    char *o = b->data + b->len;
    *o++ = '"';
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = tab[(v >> 6) & 63];
        *o++ = tab[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < len ? (uint32_t)s[i + 1] << 8 : 0);
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    return 0;
}

void json_finish(ksock_buf_t *b)
{
    if (b->data) b->data[b->len] = '\0';
}

/* ---- Values ----------------------------------------------------------------------- */

/* Map keys starting with '$' get one more '$': "$bytes" alone is the bytes marker. */
static int put_key(ksock_buf_t *b, const char *k, size_t len)
{
    return put_quoted(b, k, len, len && k[0] == '$');
}

static int put_value(ksock_buf_t *b, const ksock_value_t *v);

static int put_array(ksock_buf_t *b, const ksock_value_t *v)
{
    int rc = JSON_LIT(b, "[");
    size_t n = ksock_value_count(v);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (i) rc = JSON_LIT(b, ",");
        if (rc == 0) rc = put_value(b, ksock_value_array_get(v, i));
    }
    return rc ? rc : JSON_LIT(b, "]");
}

static int put_map(ksock_buf_t *b, const ksock_value_t *v)
{
    int rc = JSON_LIT(b, "{");
    size_t n = ksock_value_count(v);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *k;
        size_t klen;
        const ksock_value_t *item = ksock_value_map_at(v, i, &k, &klen);
        if (i) rc = JSON_LIT(b, ",");
        if (rc == 0) rc = put_key(b, k, klen);
        if (rc == 0) rc = JSON_LIT(b, ":");
        if (rc == 0) rc = put_value(b, item);
    }
    return rc ? rc : JSON_LIT(b, "}");
}

static int put_value(ksock_buf_t *b, const ksock_value_t *v)
{
    size_t len;
    const char *s;
    switch (ksock_value_type(v)) {
    case KSOCK_VALUE_NULL:
        return JSON_LIT(b, "null");
    case KSOCK_VALUE_BOOL:
        return ksock_value_get_bool(v) ? JSON_LIT(b, "true") : JSON_LIT(b, "false");
    case KSOCK_VALUE_INT:
        return json_put_int(b, ksock_value_get_int(v));
    case KSOCK_VALUE_DOUBLE:
        return json_put_double(b, ksock_value_get_double(v));
    case KSOCK_VALUE_STRING:
        s = ksock_value_get_string(v, &len);
        return json_put_string(b, s, len);
    case KSOCK_VALUE_BYTES: {
        const void *p = ksock_value_get_bytes(v, &len);
        int rc = JSON_LIT(b, "{\"$bytes\":");
        if (rc == 0) rc = json_put_base64(b, p, len);
        return rc ? rc : JSON_LIT(b, "}");
    }
    case KSOCK_VALUE_ARRAY:
        return put_array(b, v);
    case KSOCK_VALUE_MAP:
        return put_map(b, v);
    }
    return KSOCK_E_ENCODE;
}

int json_encode_value(const ksock_value_t *v, ksock_buf_t *out, char *errstr, size_t errstr_size)
{
    if (v == NULL) return KSOCK_E_INVAL;
    int rc = put_value(out, v);
    json_finish(out);
    if (rc == KSOCK_E_ENCODE)
        ksock_errstr_set(errstr, errstr_size, "json: NaN and Infinity have no JSON form");
    else if (rc != 0)
        ksock_errstr_set(errstr, errstr_size, "json: %s", ksock_strerror(rc));
    return rc;
}

/* ---- Envelopes --------------------------------------------------------------------- */

/* ,"name": */
static int put_member(ksock_buf_t *b, const char *name)
{
    size_t n = strlen(name);
    if (ksock_buf_reserve(b, n + 4) != 0) return KSOCK_E_NOMEM;
    char *o = b->data + b->len;
    *o++ = ',';
    *o++ = '"';
    memcpy(o, name, n);
    o += n;
    *o++ = '"';
    *o++ = ':';
    b->len = (size_t)(o - b->data);
    return 0;
}

static int put_int_member(ksock_buf_t *b, const char *name, int64_t v)
{
    int rc = put_member(b, name);
    return rc ? rc : json_put_int(b, v);
}

static int put_str_member(ksock_buf_t *b, const char *name, const char *s, size_t len)
{
    int rc = put_member(b, name);
    return rc ? rc : json_put_string(b, s, len);
}

/* Does `topic` match one of the patterns: exact, "prefix*", or "*"? */
static bool topic_listed(const ksock_strlist_t *l, const char *topic, size_t len)
{
    for (size_t i = 0; topic && i < l->n; i++) {
        const char *p = l->v[i];
        size_t pl = strlen(p);
        if (pl && p[pl - 1] == '*') {
            if (len >= pl - 1 && memcmp(topic, p, pl - 1) == 0) return true;
        } else if (pl == len && memcmp(topic, p, len) == 0) {
            return true;
        }
    }
    return false;
}

/*
 * Kafka bytes as JSON (docs/protocol.md 3.1): `name_json` embedded when
 * allowed and valid JSON, else `name` as text when UTF-8, else `name_b64`.
 */
static int put_payload(ksock_buf_t *b, const char *name, const ksock_bytes_t *v, bool embed)
{
    if (!v->present) return 0;
    const char *p = v->data ? v->data : "";
    char member[24];
    if (embed && json_is_valid(p, v->len)) {
        snprintf(member, sizeof(member), "%s_json", name);
        int rc = put_member(b, member);
        return rc ? rc : json_put(b, p, v->len);
    }
    if (ksock_utf8_check(p, v->len, NULL)) return put_str_member(b, name, p, v->len);
    snprintf(member, sizeof(member), "%s_b64", name);
    int rc = put_member(b, member);
    return rc ? rc : json_put_base64(b, p, v->len);
}

static int put_headers(ksock_buf_t *b, const ksock_envelope_t *e)
{
    int rc = put_member(b, "headers");
    if (rc == 0) rc = JSON_LIT(b, "[");
    for (size_t i = 0; rc == 0 && i < e->nheaders; i++) {
        const ksock_header_t *h = &e->headers[i];
        rc = i ? JSON_LIT(b, ",{\"key\":") : JSON_LIT(b, "{\"key\":");
        if (rc == 0) rc = json_put_string(b, h->key ? h->key : "", h->key_len);
        if (rc == 0) rc = put_payload(b, "value", &h->value, false);
        if (rc == 0) rc = JSON_LIT(b, "}");
    }
    return rc ? rc : JSON_LIT(b, "]");
}

static int put_offsets(ksock_buf_t *b, const ksock_envelope_t *e)
{
    int rc = put_member(b, "offsets");
    if (rc == 0) rc = JSON_LIT(b, "[");
    for (size_t i = 0; rc == 0 && i < e->noffsets; i++) {
        rc = i ? JSON_LIT(b, ",{\"partition\":") : JSON_LIT(b, "{\"partition\":");
        if (rc == 0) rc = json_put_int(b, e->offsets[i].partition);
        if (rc == 0) rc = JSON_LIT(b, ",\"offset\":");
        if (rc == 0) rc = json_put_int(b, e->offsets[i].offset);
        if (rc == 0) rc = JSON_LIT(b, "}");
    }
    return rc ? rc : JSON_LIT(b, "]");
}

/* Members after the payload: subscription and error fields. */
static int put_tail(ksock_buf_t *b, const ksock_envelope_t *e)
{
    int rc = 0;
    if (e->nheaders) rc = put_headers(b, e);
    if (rc == 0 && (e->op == KSOCK_OP_SUBSCRIBE || e->start != KSOCK_START_LATEST)) {
        rc = put_member(b, "start");
        if (rc == 0)
            rc = json_put_string(b, ksock_start_name(e->start), strlen(ksock_start_name(e->start)));
    }
    if (rc == 0 && e->noffsets) rc = put_offsets(b, e);
    if (rc == 0 && e->start_timestamp != -1)
        rc = put_int_member(b, "start_timestamp", e->start_timestamp);
    if (rc == 0 && e->error_code != 0) rc = put_int_member(b, "error_code", e->error_code);
    if (rc == 0 && e->error_message)
        rc = put_str_member(b, "error_message", e->error_message, e->error_message_len);
    return rc;
}

static int put_envelope(const json_inst_t *in, ksock_buf_t *b, const ksock_envelope_t *e)
{
    const char *op = ksock_op_name(e->op);
    int rc = JSON_LIT(b, "{\"op\":");
    if (rc == 0) rc = json_put_string(b, op, strlen(op));
    if (rc == 0 && e->id) rc = put_str_member(b, "id", e->id, e->id_len);
    if (rc == 0 && e->topic) rc = put_str_member(b, "topic", e->topic, e->topic_len);
    if (rc == 0 && e->partition != -1) rc = put_int_member(b, "partition", e->partition);
    if (rc == 0 && e->offset != -1) rc = put_int_member(b, "offset", e->offset);
    if (rc == 0 && e->timestamp != -1) rc = put_int_member(b, "timestamp", e->timestamp);
    if (rc == 0)
        rc = put_payload(b, "key", &e->key,
                         topic_listed(&in->opts->json_key_topics, e->topic, e->topic_len));
    if (rc == 0)
        rc = put_payload(b, "value", &e->value,
                         topic_listed(&in->opts->json_topics, e->topic, e->topic_len));
    if (rc == 0) rc = put_tail(b, e);
    return rc ? rc : JSON_LIT(b, "}");
}

int json_encode_envelope(const json_inst_t *in, const ksock_envelope_t *env, ksock_buf_t *out,
                         char *errstr, size_t errstr_size)
{
    int rc = ksock_envelope_check(env, errstr, errstr_size);
    if (rc != 0) return KSOCK_E_ENCODE;
    size_t before = out->len;
    /* One reservation for the common case: the payload plus room for the members. */
    rc = ksock_buf_reserve(out, env->value.len + env->key.len + env->topic_len + 160);
    if (rc == 0) rc = put_envelope(in, out, env);
    if (rc != 0) {
        out->len = before;
        ksock_errstr_set(errstr, errstr_size, "json: %s", ksock_strerror(rc));
    }
    json_finish(out);
    return rc;
}
