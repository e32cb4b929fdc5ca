/*
 * serializer_json: reading. yajl does the lexing and grammar; the callbacks here
 * build values and enforce what yajl does not: the limits, duplicate keys,
 * strict UTF-8, int64 range, and the "$bytes" / "$$" conventions of
 * docs/serialization.md.
 */
#include "json_internal.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- Shared helpers ------------------------------------------------------------ */

int json_fail(json_err_t *e, yajl_handle h, int rc, const char *fmt, ...)
{
    if (e->rc != 0) return 0;
    e->rc = rc;
    e->at = e->completing ? e->len : yajl_get_bytes_consumed(h);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return 0;
}

yajl_handle json_parser(const yajl_callbacks *callbacks, void *ctx)
{
    /* yajl's defaults are the strict ones: no comments, strings validated, one value. */
    return yajl_alloc(callbacks, NULL, ctx);
}

/* Copy yajl's own message ("lexical error: invalid char in json text.") without the newline. */
static void yajl_reason(yajl_handle h, json_err_t *e)
{
    unsigned char *m = yajl_get_error(h, 0, NULL, 0);
    snprintf(e->msg, sizeof(e->msg), "%s", m ? (const char *)m : "syntax error");
    size_t n = strlen(e->msg);
    while (n && (e->msg[n - 1] == '\n' || e->msg[n - 1] == '.'))
        e->msg[--n] = '\0';
    if (m) yajl_free_error(h, m);
}

int json_run(yajl_handle h, const void *data, size_t len, json_err_t *e)
{
    e->len = len;
    yajl_status st = yajl_parse(h, data, len);
    if (st == yajl_status_ok) {
        e->completing = true;
        st = yajl_complete_parse(h);
    }
    if (st == yajl_status_ok || e->rc != 0) return e->rc;
    /* A syntax error found by yajl itself. */
    e->rc = KSOCK_E_DECODE;
    e->at = e->completing ? len : yajl_get_bytes_consumed(h);
    yajl_reason(h, e);
    return e->rc;
}

int json_report(const json_err_t *e, char *errstr, size_t errstr_size)
{
    /* The shared report escapes the client bytes that messages quote (names, keys). */
    ksock_decode_err_t d = {.rc = e->rc, .at = e->at};
    snprintf(d.msg, sizeof(d.msg), "%s", e->msg);
    return ksock_decode_report(&d, "json", errstr, errstr_size);
}

static int b64_digit(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

ptrdiff_t json_base64_decode(const char *s, size_t len, unsigned char *out)
{
    /* Strict: padded, canonical (unused bits zero), no whitespace. */
    if (len % 4) return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int d[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)s[i + k];
            if (c == '=' && i + 4 == len && k >= 2) {
                d[k] = 0;
                pad++;
            } else if (pad || (d[k] = b64_digit(c)) < 0) {
                return -1;
            }
        }
        uint32_t v = (uint32_t)d[0] << 18 | (uint32_t)d[1] << 12 | (uint32_t)d[2] << 6 | d[3];
        if ((pad == 1 && (v & 0xff)) || (pad == 2 && (v & 0xffff))) return -1;
        out[o++] = (unsigned char)(v >> 16);
        if (pad < 2) out[o++] = (unsigned char)(v >> 8);
        if (pad < 1) out[o++] = (unsigned char)v;
    }
    return (ptrdiff_t)o;
}

static int parse_int64(const char *s, size_t len, int64_t *out)
{
    bool neg = len && s[0] == '-';
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, v = 0;
    for (size_t i = neg; i < len; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (limit - d) / 10) return KSOCK_E_DECODE;
        v = v * 10 + d;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

int json_number(const char *s, size_t len, int64_t *i, double *d, const char **why)
{
    /* yajl has checked the JSON number grammar; a fraction or exponent makes a double. */
    if (memchr(s, '.', len) == NULL && memchr(s, 'e', len) == NULL && memchr(s, 'E', len) == NULL) {
        if (parse_int64(s, len, i) == 0) return 1;
        *why = "integer beyond int64";
        return KSOCK_E_DECODE;
    }
    char tmp[512];
    if (len >= sizeof(tmp)) {
        *why = "number longer than 511 characters";
        return KSOCK_E_DECODE;
    }
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    *d = json_strtod(tmp, NULL);
    if (isinf(*d)) {
        *why = "number out of range of a double";
        return KSOCK_E_DECODE;
    }
    return 2;
}

/* Offset of the opening quote of the string token that ends just before `end`. */
static ptrdiff_t string_start(const unsigned char *in, size_t end)
{
    if (end < 2 || in[end - 1] != '"') return -1;
    for (size_t q = end - 1; q-- > 0;) {
        if (in[q] != '"') continue;
        size_t bs = 0;
        while (bs < q && in[q - 1 - bs] == '\\')
            bs++;
        if (bs % 2 == 0) return (ptrdiff_t)q; /* not escaped: the opening quote */
    }
    return -1;
}

static unsigned hex4(const unsigned char *p)
{
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned c = p[k];
        v = v << 4 | (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
}

/* Every \uD800-\uDBFF escape followed by a \uDC00-\uDFFF one, and no lone low half. */
static bool surrogates_paired(const unsigned char *p, const unsigned char *end)
{
    while (p < end) {
        if (*p != '\\') {
            p++;
            continue;
        }
        if (p + 1 < end && p[1] != 'u') {
            p += 2;
            continue;
        }
        if (end - p < 6) return false;
        unsigned cp = hex4(p + 2);
        p += 6;
        if (cp >= 0xDC00 && cp <= 0xDFFF) return false;
        if (cp < 0xD800 || cp > 0xDBFF) continue;
        if (end - p < 6 || p[0] != '\\' || p[1] != 'u') return false;
        unsigned lo = hex4(p + 2);
        if (lo < 0xDC00 || lo > 0xDFFF) return false;
        p += 6;
    }
    return true;
}

const char *json_string_problem(const unsigned char *input, size_t raw_end, const char *s,
                                size_t len)
{
    if (!ksock_utf8_check(s, len, NULL)) return "invalid UTF-8 in string";
    /*
     * yajl turns an unpaired high surrogate escape into '?' and pairs a high
     * one with any following \u escape, without saying so. Both leave a '?'
     * or a 4-byte sequence in the result: only then look at the raw text.
     */
    bool suspect = memchr(s, '?', len) != NULL;
    for (size_t i = 0; !suspect && i < len; i++)
        suspect = (unsigned char)s[i] >= 0xF0;
    if (!suspect) return NULL;
    ptrdiff_t q = string_start(input, raw_end);
    if (q < 0) return "string token not found in input";
    if (!surrogates_paired(input + q + 1, input + raw_end - 1))
        return "unpaired UTF-16 surrogate escape in string";
    return NULL;
}

/* Nesting counter for json_is_valid(): stop once deeper than a decoder accepts by default. */
static int valid_open(void *ctx)
{
    return ++*(uint32_t *)ctx <= 64;
}

static int valid_close(void *ctx)
{
    --*(uint32_t *)ctx;
    return 1;
}

static const yajl_callbacks valid_callbacks = {
    .yajl_start_map = valid_open,
    .yajl_end_map = valid_close,
    .yajl_start_array = valid_open,
    .yajl_end_array = valid_close,
};

bool json_is_valid(const void *p, size_t len)
{
    /* yajl checks UTF-8 structure only; overlong forms would break a text frame. */
    if (!ksock_utf8_check(p, len, NULL)) return false;
    uint32_t depth = 0;
    yajl_handle h = yajl_alloc(&valid_callbacks, NULL, &depth);
    if (h == NULL) return false;
    bool ok = yajl_parse(h, p, len) == yajl_status_ok && yajl_complete_parse(h) == yajl_status_ok;
    yajl_free(h);
    return ok;
}

/* ---- Values ---------------------------------------------------------------------- */

enum { FR_ARRAY, FR_MAP, FR_BYTES };

typedef struct frame_s {
    int kind;
    ksock_value_t *c; /* the container (NULL for FR_BYTES) */
    char *key;        /* FR_MAP: the key waiting for its value */
    size_t key_len;
    ksock_value_t *bytes; /* FR_BYTES: the decoded bytes, once seen */
} frame_t;

typedef struct reader_s {
    yajl_handle h;
    const unsigned char *input;
    const ksock_value_limits_t *lim;
    uint32_t max_depth;
    frame_t *st;
    size_t n, cap;
    uint32_t depth; /* open arrays and maps */
    ksock_value_t *root;
    json_err_t err;
} reader_t;

static void frame_release(frame_t *f)
{
    ksock_value_unref(f->c);
    ksock_value_unref(f->bytes);
    free(f->key);
}

static int bytes_from_base64(reader_t *r, frame_t *f, ksock_value_t *s)
{
    size_t len;
    const char *text = ksock_value_get_string(s, &len);
    if (text == NULL)
        return json_fail(&r->err, r->h, KSOCK_E_DECODE, "\"$bytes\" wants a base64 string");
    if (len / 4 * 3 > r->lim->max_string)
        return json_fail(&r->err, r->h, KSOCK_E_LIMIT, "byte string longer than %llu bytes",
                         (unsigned long long)r->lim->max_string);
    unsigned char *buf = malloc(len / 4 * 3 + 1);
    if (buf == NULL) return json_fail(&r->err, r->h, KSOCK_E_NOMEM, "out of memory");
    ptrdiff_t n = json_base64_decode(text, len, buf);
    if (n >= 0) f->bytes = ksock_value_bytes(buf, (size_t)n);
    free(buf);
    if (n < 0) return json_fail(&r->err, r->h, KSOCK_E_DECODE, "invalid base64 in \"$bytes\"");
    if (f->bytes == NULL) return json_fail(&r->err, r->h, KSOCK_E_NOMEM, "out of memory");
    return 1;
}

static int add_to_map(reader_t *r, frame_t *f, ksock_value_t *v)
{
    int rc = ksock_value_map_set(f->c, f->key, f->key_len, v);
    if (rc == KSOCK_E_EXIST)
        json_fail(&r->err, r->h, KSOCK_E_DECODE, "duplicate key \"%.*s\"",
                  (int)(f->key_len > 64 ? 64 : f->key_len), f->key);
    else if (rc != 0)
        json_fail(&r->err, r->h, rc, "%s", ksock_strerror(rc));
    free(f->key);
    f->key = NULL;
    return rc == 0;
}

/* A complete value: becomes the root, or goes into the innermost container. Steals v. */
static int add(reader_t *r, ksock_value_t *v)
{
    if (v == NULL) return json_fail(&r->err, r->h, KSOCK_E_NOMEM, "out of memory");
    if (r->n == 0) {
        r->root = v;
        return 1;
    }
    frame_t *f = &r->st[r->n - 1];
    if (f->kind == FR_BYTES) {
        int ok = bytes_from_base64(r, f, v);
        ksock_value_unref(v);
        return ok;
    }
    if (ksock_value_count(f->c) >= r->lim->max_items) {
        ksock_value_unref(v);
        return json_fail(&r->err, r->h, KSOCK_E_LIMIT, "more than %llu items in one %s",
                         (unsigned long long)r->lim->max_items,
                         f->kind == FR_MAP ? "object" : "array");
    }
    if (f->kind == FR_MAP) return add_to_map(r, f, v);
    int rc = ksock_value_array_push(f->c, v);
    return rc == 0 ? 1 : json_fail(&r->err, r->h, rc, "%s", ksock_strerror(rc));
}

static int open_container(reader_t *r, int kind)
{
    if (r->n && r->st[r->n - 1].kind == FR_BYTES)
        return json_fail(&r->err, r->h, KSOCK_E_DECODE, "\"$bytes\" wants a base64 string");
    if (r->depth + 1 > r->max_depth)
        return json_fail(&r->err, r->h, KSOCK_E_LIMIT, "nesting deeper than %u", r->max_depth);
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        frame_t *st = realloc(r->st, cap * sizeof(*st));
        if (st == NULL) return json_fail(&r->err, r->h, KSOCK_E_NOMEM, "out of memory");
        r->st = st;
        r->cap = cap;
    }
    ksock_value_t *c = kind == FR_MAP ? ksock_value_map() : ksock_value_array();
    if (c == NULL) return json_fail(&r->err, r->h, KSOCK_E_NOMEM, "out of memory");
    r->st[r->n++] = (frame_t){.kind = kind, .c = c};
    r->depth++;
    return 1;
}

static int close_container(reader_t *r)
{
    frame_t f = r->st[--r->n];
    if (f.kind == FR_BYTES) {
        if (f.bytes == NULL) {
            frame_release(&f);
            return json_fail(&r->err, r->h, KSOCK_E_DECODE, "\"$bytes\" without a value");
        }
        return add(r, f.bytes);
    }
    r->depth--;
    return add(r, f.c);
}

static int on_null(void *ctx)
{
    return add(ctx, ksock_value_null());
}

static int on_bool(void *ctx, int b)
{
    return add(ctx, ksock_value_bool(b));
}

static int on_number(void *ctx, const char *s, size_t len)
{
    reader_t *r = ctx;
    int64_t i;
    double d;
    const char *why = NULL;
    int kind = json_number(s, len, &i, &d, &why);
    if (kind < 0) return json_fail(&r->err, r->h, kind, "%s", why);
    return add(r, kind == 1 ? ksock_value_int(i) : ksock_value_double(d));
}

/* Limits and UTF-8 for a string or key just lexed; 1 if fine. */
static int string_ok(reader_t *r, const unsigned char *s, size_t len, const char *what)
{
    if (len > r->lim->max_string)
        return json_fail(&r->err, r->h, KSOCK_E_LIMIT, "%s longer than %llu bytes", what,
                         (unsigned long long)r->lim->max_string);
    const char *why =
        json_string_problem(r->input, yajl_get_bytes_consumed(r->h), (const char *)s, len);
    return why ? json_fail(&r->err, r->h, KSOCK_E_DECODE, "%s", why) : 1;
}

static int on_string(void *ctx, const unsigned char *s, size_t len)
{
    reader_t *r = ctx;
    if (!string_ok(r, s, len, "string")) return 0;
    return add(r, ksock_value_string((const char *)s, len));
}

static int on_start_map(void *ctx)
{
    return open_container(ctx, FR_MAP);
}

/* "$$x" is the key "$x"; "$bytes" alone marks bytes; other "$" keys are reserved. */
static int dollar_key(reader_t *r, frame_t *f, const unsigned char **k, size_t *len)
{
    if (*len >= 2 && (*k)[1] == '$') {
        (*k)++;
        (*len)--;
        return 1;
    }
    if (*len == 6 && memcmp(*k, "$bytes", 6) == 0 && ksock_value_count(f->c) == 0) {
        ksock_value_unref(f->c);
        f->c = NULL;
        f->kind = FR_BYTES;
        r->depth--; /* a bytes marker is a scalar, not a level of nesting */
        return 2;
    }
    return json_fail(&r->err, r->h, KSOCK_E_DECODE,
                     "reserved key \"%.*s\" (a key starting with '$' is written \"$$...\")",
                     (int)(*len > 64 ? 64 : *len), (const char *)*k);
}

static int on_map_key(void *ctx, const unsigned char *k, size_t len)
{
    reader_t *r = ctx;
    frame_t *f = &r->st[r->n - 1];
    if (f->kind == FR_BYTES)
        return json_fail(&r->err, r->h, KSOCK_E_DECODE, "\"$bytes\" object with other members");
    if (!string_ok(r, k, len, "key")) return 0;
    if (len && k[0] == '$') {
        int d = dollar_key(r, f, &k, &len);
        if (d != 1) return d == 2;
    }
    f->key = malloc(len + 1);
    if (f->key == NULL) return json_fail(&r->err, r->h, KSOCK_E_NOMEM, "out of memory");
    memcpy(f->key, k, len);
    f->key_len = len;
    return 1;
}

static int on_end(void *ctx)
{
    return close_container(ctx);
}

static int on_start_array(void *ctx)
{
    return open_container(ctx, FR_ARRAY);
}

static const yajl_callbacks value_callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_bool,
    .yajl_number = on_number,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_map_key,
    .yajl_end_map = on_end,
    .yajl_start_array = on_start_array,
    .yajl_end_array = on_end,
};

static void reader_release(reader_t *r)
{
    while (r->n)
        frame_release(&r->st[--r->n]);
    free(r->st);
    ksock_value_unref(r->root);
    if (r->h) yajl_free(r->h);
}

int json_decode_value(const void *data, size_t len, const ksock_value_limits_t *lim,
                      ksock_value_t **out, char *errstr, size_t errstr_size)
{
    reader_t r = {.input = data, .lim = lim, .max_depth = json_max_depth(lim)};
    if (len > lim->max_total) {
        ksock_errstr_set(errstr, errstr_size,
                         "json: offset 0: input of %zu bytes over the %llu limit", len,
                         (unsigned long long)lim->max_total);
        return KSOCK_E_LIMIT;
    }
    r.h = json_parser(&value_callbacks, &r);
    if (r.h == NULL) return KSOCK_E_NOMEM;
    int rc = json_run(r.h, data, len, &r.err);
    if (rc == 0 && r.root == NULL) {
        json_fail(&r.err, r.h, KSOCK_E_DECODE, "no value");
        rc = r.err.rc;
    }
    if (rc != 0) {
        json_report(&r.err, errstr, errstr_size);
        reader_release(&r);
        return rc;
    }
    *out = r.root;
    r.root = NULL;
    reader_release(&r);
    return 0;
}
