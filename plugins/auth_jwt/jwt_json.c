/*
 * JSON and base64url for auth_jwt. Claims are checked on our own parse of
 * the token, not on libjwt's: libjwt (jansson) is only asked to verify the
 * signature. Our parser is the stricter of the two (duplicate keys are
 * refused, so a header cannot say "alg" twice and mean one thing to us and
 * another to libjwt), which is what makes that split safe.
 */
#include "jwt_internal.h"

#include <ksock/error.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

/* ---- Parsing ------------------------------------------------------------ */

typedef struct frame_s {
    ksock_value_t *c; /* the container being filled */
    char *key;        /* maps: the key waiting for its value */
    size_t key_len;
} frame_t;

typedef struct parse_s {
    frame_t stack[JWT_JSON_MAX_DEPTH];
    size_t depth;
    ksock_value_t *root;
    char why[160];
} parse_t;

static int fail(parse_t *p, const char *why)
{
    if (p->why[0] == '\0') snprintf(p->why, sizeof(p->why), "%s", why);
    return 0; /* yajl: stop */
}

/* Put a finished value where it belongs: the root, an array, or a map under its key. */
static int add(parse_t *p, ksock_value_t *v)
{
    if (v == NULL) return fail(p, "out of memory or invalid UTF-8");
    if (p->depth == 0) {
        p->root = v;
        return 1;
    }
    frame_t *f = &p->stack[p->depth - 1];
    int rc;
    if (ksock_value_type(f->c) == KSOCK_VALUE_ARRAY) {
        rc = ksock_value_array_push(f->c, v);
    } else {
        rc = ksock_value_map_set(f->c, f->key, f->key_len, v);
        free(f->key);
        f->key = NULL;
        if (rc == KSOCK_E_EXIST) return fail(p, "duplicate key");
    }
    return rc == 0 ? 1 : fail(p, ksock_strerror(rc));
}

static int on_null(void *ctx)
{
    return add(ctx, ksock_value_null());
}

static int on_bool(void *ctx, int b)
{
    return add(ctx, ksock_value_bool(b != 0));
}

/* Integers that fit int64 stay integers; anything else is a double. */
static int on_number(void *ctx, const char *s, size_t n)
{
    char buf[64];
    if (n >= sizeof(buf)) return fail(ctx, "number too long");
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end;
    if (strpbrk(buf, ".eE") == NULL) {
        errno = 0;
        long long i = strtoll(buf, &end, 10);
        if (errno == 0 && *end == '\0') return add(ctx, ksock_value_int(i));
    }
    errno = 0;
    double d = strtod(buf, &end);
    if (*end != '\0' || !isfinite(d)) return fail(ctx, "number out of range");
    return add(ctx, ksock_value_double(d));
}

static int on_string(void *ctx, const unsigned char *s, size_t n)
{
    return add(ctx, ksock_value_string((const char *)s, n));
}

static int push(parse_t *p, ksock_value_t *c)
{
    if (c == NULL) return fail(p, "out of memory");
    if (p->depth == JWT_JSON_MAX_DEPTH) {
        ksock_value_unref(c);
        return fail(p, "nested too deeply");
    }
    p->stack[p->depth++] = (frame_t){c, NULL, 0};
    return 1;
}

/* A container is added to its parent only once it is complete (values freeze when added). */
static int pop(void *ctx)
{
    parse_t *p = ctx;
    frame_t f = p->stack[--p->depth];
    free(f.key);
    return add(p, f.c);
}

static int on_start_map(void *ctx)
{
    return push(ctx, ksock_value_map());
}

static int on_start_array(void *ctx)
{
    return push(ctx, ksock_value_array());
}

static int on_map_key(void *ctx, const unsigned char *s, size_t n)
{
    parse_t *p = ctx;
    frame_t *f = &p->stack[p->depth - 1];
    free(f->key);
    f->key = malloc(n + 1);
    if (f->key == NULL) return fail(p, "out of memory");
    memcpy(f->key, s, n);
    f->key[n] = '\0';
    f->key_len = n;
    return 1;
}

static const yajl_callbacks parse_callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_bool,
    .yajl_number = on_number,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_map_key,
    .yajl_end_map = pop,
    .yajl_start_array = on_start_array,
    .yajl_end_array = pop,
};

int jwt_json_parse(const void *text, size_t len, ksock_value_t **out, char *errstr,
                   size_t errstr_size)
{
    parse_t p;
    memset(&p, 0, sizeof(p));
    yajl_handle h = yajl_alloc(&parse_callbacks, NULL, &p);
    if (h == NULL) return KSOCK_E_NOMEM;
    yajl_status st = yajl_parse(h, text, len);
    if (st == yajl_status_ok) st = yajl_complete_parse(h);
    if (st != yajl_status_ok && p.why[0] == '\0') {
        unsigned char *msg = yajl_get_error(h, 0, text, len);
        snprintf(p.why, sizeof(p.why), "%s", msg ? (const char *)msg : "syntax error");
        if (msg) yajl_free_error(h, msg);
        /* yajl's messages end with a newline. */
        size_t n = strlen(p.why);
        while (n > 0 && (p.why[n - 1] == '\n' || p.why[n - 1] == ' '))
            p.why[--n] = '\0';
    }
    yajl_free(h);
    while (p.depth > 0) {
        frame_t *f = &p.stack[--p.depth];
        free(f->key);
        ksock_value_unref(f->c);
    }
    if (st != yajl_status_ok || p.root == NULL) {
        if (p.root) ksock_value_unref(p.root);
        ksock_errstr_set(errstr, errstr_size, "%s", p.why[0] ? p.why : "empty");
        return KSOCK_E_DECODE;
    }
    *out = p.root;
    return 0;
}

/* ---- Writing ------------------------------------------------------------ */

static int gen_value(yajl_gen g, const ksock_value_t *v, char *errstr, size_t errstr_size)
{
    size_t n;
    const char *s;
    yajl_gen_status st = yajl_gen_status_ok;
    switch (ksock_value_type(v)) {
    case KSOCK_VALUE_NULL:
        st = yajl_gen_null(g);
        break;
    case KSOCK_VALUE_BOOL:
        st = yajl_gen_bool(g, ksock_value_get_bool(v));
        break;
    case KSOCK_VALUE_INT:
        st = yajl_gen_integer(g, (long long)ksock_value_get_int(v));
        break;
    case KSOCK_VALUE_DOUBLE:
        if (!isfinite(ksock_value_get_double(v))) {
            ksock_errstr_set(errstr, errstr_size, "NaN and infinity have no JSON form");
            return KSOCK_E_ENCODE;
        }
        st = yajl_gen_double(g, ksock_value_get_double(v));
        break;
    case KSOCK_VALUE_STRING:
        s = ksock_value_get_string(v, &n);
        st = yajl_gen_string(g, (const unsigned char *)s, n);
        break;
    case KSOCK_VALUE_BYTES:
        ksock_errstr_set(errstr, errstr_size, "bytes have no JSON form (use a string)");
        return KSOCK_E_ENCODE;
    case KSOCK_VALUE_ARRAY:
        st = yajl_gen_array_open(g);
        for (size_t i = 0; st == yajl_gen_status_ok && i < ksock_value_count(v); i++) {
            int rc = gen_value(g, ksock_value_array_get(v, i), errstr, errstr_size);
            if (rc != 0) return rc;
        }
        if (st == yajl_gen_status_ok) st = yajl_gen_array_close(g);
        break;
    case KSOCK_VALUE_MAP:
        st = yajl_gen_map_open(g);
        for (size_t i = 0; st == yajl_gen_status_ok && i < ksock_value_count(v); i++) {
            const char *k;
            size_t kn;
            const ksock_value_t *item = ksock_value_map_at(v, i, &k, &kn);
            st = yajl_gen_string(g, (const unsigned char *)k, kn);
            if (st != yajl_gen_status_ok) break;
            int rc = gen_value(g, item, errstr, errstr_size);
            if (rc != 0) return rc;
        }
        if (st == yajl_gen_status_ok) st = yajl_gen_map_close(g);
        break;
    }
    if (st != yajl_gen_status_ok) {
        ksock_errstr_set(errstr, errstr_size, "JSON generation failed (status %d)", (int)st);
        return KSOCK_E_ENCODE;
    }
    return 0;
}

int jwt_json_write(const ksock_value_t *v, char **out, char *errstr, size_t errstr_size)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g == NULL) return KSOCK_E_NOMEM;
    int rc = gen_value(g, v, errstr, errstr_size);
    if (rc == 0) {
        const unsigned char *buf;
        size_t len;
        yajl_gen_get_buf(g, &buf, &len);
        *out = malloc(len + 1);
        if (*out == NULL) {
            rc = KSOCK_E_NOMEM;
        } else {
            memcpy(*out, buf, len);
            (*out)[len] = '\0';
        }
    }
    yajl_gen_free(g);
    return rc;
}

/* ---- base64url ---------------------------------------------------------- */

static const char b64url_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64url_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

int jwt_b64url_decode(const char *s, size_t n, unsigned char **out, size_t *out_len)
{
    if (n % 4 == 1) return KSOCK_E_DECODE;
    unsigned char *o = malloc(n * 3 / 4 + 1);
    if (o == NULL) return KSOCK_E_NOMEM;
    size_t k = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_val((unsigned char)s[i]);
        if (v < 0) {
            free(o);
            return KSOCK_E_DECODE;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[k++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* Unused bits must be zero, so that one byte string has one encoding. */
    if (acc != 0) {
        free(o);
        return KSOCK_E_DECODE;
    }
    o[k] = '\0';
    *out = o;
    *out_len = k;
    return 0;
}

char *jwt_b64url_encode(const unsigned char *p, size_t n)
{
    char *o = malloc((n + 2) / 3 * 4 + 1);
    if (o == NULL) return NULL;
    size_t k = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        o[k++] = b64url_chars[v >> 18];
        o[k++] = b64url_chars[(v >> 12) & 63];
        o[k++] = b64url_chars[(v >> 6) & 63];
        o[k++] = b64url_chars[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        o[k++] = b64url_chars[v >> 18];
        o[k++] = b64url_chars[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        o[k++] = b64url_chars[v >> 18];
        o[k++] = b64url_chars[(v >> 12) & 63];
        o[k++] = b64url_chars[(v >> 6) & 63];
    }
    o[k] = '\0';
    return o;
}
