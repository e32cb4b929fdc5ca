/*
 * Helpers shared by the serializer tests: serializer instances through the
 * real loader (KSOCK_PLUGIN_PATH=build/plugins from test_env), files of
 * tests/vectors, hex, and a leak check that works inside test.h's forked
 * children (which leave with _exit(), so LeakSanitizer's own exit check
 * never runs there).
 */
#ifndef KSOCK_TEST_SERDE_H
#define KSOCK_TEST_SERDE_H

#include "test.h"

#include <ksock/ksock.h>

#include <ctype.h>
#include <errno.h>

#if defined(__SANITIZE_ADDRESS__)
#define ST_HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ST_HAVE_LSAN 1
#endif
#endif

#ifdef ST_HAVE_LSAN
#include <sanitizer/lsan_interface.h>
/* Every test ends with this: a leak fails the test that caused it. */
#define ST_LEAK_CHECK() ASSERT(__lsan_do_recoverable_leak_check() == 0)
#else
#define ST_LEAK_CHECK() ((void)0)
#endif

static const char *const st_formats[] = {"json", "msgpack", "protobuf"};
#define ST_NFORMATS 3

/* A serializer instance and what it needs kept alive. */
typedef struct st_ser_s {
    ksock_runtime_t *rt;
    ksock_config_t *doc;
    ksock_plugin_instance_t *pi;
    const ksock_serializer_vtable_t *vt;
    void *inst;
    ksock_value_limits_t lim;
} st_ser_t;

static inline ksock_runtime_t *st_runtime(void)
{
    ksock_runtime_t *rt = NULL;
    char err[512] = "";
    int rc = ksock_runtime_new(&rt, err, sizeof(err));
    if (rc != 0) TEST_FAIL_("ksock_runtime_new: %s", err);
    ksock_log_options_t lo = {sizeof(lo), KSOCK_LOG_WARN, "console", KSOCK_LOG_FORMAT_TEXT, NULL};
    ksock_log_configure(rt, &lo, err, sizeof(err)); /* keep TAP output readable */
    return rt;
}

/*
 * Load serializer `name` through the loader; `doc`/`opts` (may be NULL)
 * are its options, or `options_json` parsed here when doc is NULL.
 */
static inline st_ser_t st_open_with(ksock_runtime_t *rt, const char *name, const char *options_json,
                                    const ksock_config_t *doc, const ksock_cfg_t *opts)
{
    st_ser_t s = {.rt = rt};
    char err[512] = "";
    ksock_plugin_t *p;
    int rc = ksock_plugin_find(rt, KSOCK_PLUGIN_SERIALIZER, name, &p, err, sizeof(err));
    if (rc != 0) TEST_FAIL_("plugin_find(%s): %s", name, err);
    if (doc == NULL && options_json) {
        rc = ksock_config_load_string("opts", options_json, strlen(options_json), &s.doc, err,
                                      sizeof(err));
        if (rc != 0) TEST_FAIL_("options: %s", err);
        doc = s.doc;
        opts = ksock_config_root(doc);
    }
    rc = ksock_plugin_instance_new(rt, p, "t", doc, opts, NULL, &s.pi, err, sizeof(err));
    if (rc != 0) TEST_FAIL_("instance_new(%s): %s", name, err);
    s.vt = ksock_plugin_instance_vtable(s.pi);
    s.inst = ksock_plugin_instance_inst(s.pi);
    ksock_value_limits_default(&s.lim);
    return s;
}

static inline st_ser_t st_open(ksock_runtime_t *rt, const char *name)
{
    return st_open_with(rt, name, NULL, NULL, NULL);
}

static inline void st_close(st_ser_t *s)
{
    ksock_plugin_instance_free(s->pi);
    ksock_config_free(s->doc);
    s->pi = NULL;
    s->doc = NULL;
}

/* ---- Files and hex ---------------------------------------------------------------- */

/* "<source root>/tests/vectors/<rel>" in a static buffer. */
static inline const char *st_vector_path(const char *rel)
{
    static char path[1024];
    const char *root = getenv("KSOCK_SOURCE_ROOT");
    snprintf(path, sizeof(path), "%s/tests/vectors/%s", root ? root : ".", rel);
    return path;
}

/* Whole file, malloc'd (NUL-terminated); NULL if missing. */
static inline char *st_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    ksock_buf_t b = KSOCK_BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        ASSERT_OK(ksock_buf_append(&b, chunk, n));
    fclose(f);
    if (b.data == NULL) ASSERT_OK(ksock_buf_append(&b, "", 0));
    *len = b.len;
    return b.data;
}

/* Decode hex (whitespace ignored) into a malloc'd buffer. */
static inline unsigned char *st_unhex(const char *hex, size_t *len)
{
    size_t n = strlen(hex), o = 0;
    unsigned char *out = malloc(n / 2 + 1);
    int hi = -1;
    ASSERT_NOT_NULL(out);
    for (size_t i = 0; i < n; i++) {
        if (isspace((unsigned char)hex[i])) continue;
        int d = isdigit((unsigned char)hex[i]) ? hex[i] - '0'
                                               : (tolower((unsigned char)hex[i]) - 'a' + 10);
        ASSERT(d >= 0 && d < 16);
        if (hi < 0) {
            hi = d;
        } else {
            out[o++] = (unsigned char)(hi << 4 | d);
            hi = -1;
        }
    }
    ASSERT(hi < 0);
    *len = o;
    return out;
}

/* Print bytes as hex to stderr (for diagnostics), at most 200 bytes. */
static inline void st_dump(const char *label, const void *p, size_t len)
{
    const unsigned char *b = p;
    fprintf(stderr, "# %s (%zu bytes): ", label, len);
    for (size_t i = 0; i < len && i < 200; i++)
        fprintf(stderr, "%02x", b[i]);
    fprintf(stderr, "%s\n", len > 200 ? "..." : "");
}

/* The expected bytes of vector `kind/name` in `format`; NULL if the format has none. */
static inline unsigned char *st_vector_bytes(const char *kind, const char *name, const char *format,
                                             size_t *len)
{
    char rel[512];
    if (strcmp(format, "json") == 0) {
        snprintf(rel, sizeof(rel), "%s/%s.json", kind, name);
        return (unsigned char *)st_read_file(st_vector_path(rel), len);
    }
    snprintf(rel, sizeof(rel), "%s/%s.%s.hex", kind, name, format);
    size_t hlen;
    char *hex = st_read_file(st_vector_path(rel), &hlen);
    if (hex == NULL) return NULL;
    unsigned char *bytes = st_unhex(hex, len);
    free(hex);
    return bytes;
}

/* ---- Encode / decode with assertions ------------------------------------------------- */

static inline ksock_value_t *st_decode(st_ser_t *s, const void *p, size_t len)
{
    ksock_value_t *v = NULL;
    char err[512] = "";
    int rc = s->vt->decode_value(s->inst, p, len, &s->lim, &v, err, sizeof(err));
    if (rc != 0) TEST_FAIL_("decode_value: %s: %s", ksock_err_name(rc), err);
    return v;
}

/* Decode that must fail with `code`; returns the error text (static). */
static inline const char *st_decode_fails(st_ser_t *s, const void *p, size_t len, int code)
{
    static char err[512];
    ksock_value_t *v = NULL;
    err[0] = '\0';
    int rc = s->vt->decode_value(s->inst, p, len, &s->lim, &v, err, sizeof(err));
    if (rc != code)
        TEST_FAIL_("decode_value: want %s, got %s (%s)", ksock_err_name(code), ksock_err_name(rc),
                   err);
    ASSERT_NULL(v);
    return err;
}

static inline const char *st_envelope_fails(st_ser_t *s, const void *p, size_t len, int code)
{
    static char err[512];
    ksock_envelope_t env;
    ksock_envelope_init(&env);
    err[0] = '\0';
    int rc = s->vt->decode_envelope(s->inst, p, len, &s->lim, &env, err, sizeof(err));
    ksock_envelope_clear(&env);
    if (rc != code)
        TEST_FAIL_("decode_envelope: want %s, got %s (%s)", ksock_err_name(code),
                   ksock_err_name(rc), err);
    return err;
}

#endif
