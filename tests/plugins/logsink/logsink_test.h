/*
 * Helpers shared by the log-sink plugin tests: a temporary directory, a
 * runtime configured from a JSON string through the real loader, running
 * the loop until a condition holds, reading files, per-sink stats and
 * capturing what reaches the error handler.
 */
#ifndef KSOCK_TEST_LOGSINK_H
#define KSOCK_TEST_LOGSINK_H

#include "test.h"

#include <ksock/config.h>
#include <ksock/log.h>
#include <ksock/runtime.h>
#include <ksock/value.h>

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <time.h>
#include <yajl/yajl_tree.h>

/* ---- Temporary directory ---------------------------------------------------- */

static char lt_dir[256];

static inline int lt_rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void lt_rmdir(void)
{
    if (lt_dir[0]) nftw(lt_dir, lt_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh directory for this test (each test runs in its own child process). */
static inline const char *lt_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(lt_dir, sizeof(lt_dir), "%s/ksock-logsink-XXXXXX", base && *base ? base : "/tmp");
    ASSERT_NOT_NULL(mkdtemp(lt_dir));
    atexit(lt_rmdir);
    return lt_dir;
}

/* lt_path("a.log") -> "<tmpdir>/a.log", in one of a few rotating static buffers. */
static inline const char *lt_path(const char *name)
{
    static char bufs[8][512];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, 512, "%s/%s", lt_dir, name);
    return b;
}

/* ---- Runtime from a JSON config ----------------------------------------------- */

/* Returns the configure() code; on success *rtp is a configured runtime. */
static inline int lt_try_runtime(const char *json, ksock_runtime_t **rtp, char *errstr, size_t n)
{
    ksock_runtime_t *rt = NULL;
    ksock_config_t *cfg = NULL;
    ASSERT_OK(ksock_runtime_new(&rt, errstr, n));
    int rc = ksock_config_load_string("test.json", json, strlen(json), &cfg, errstr, n);
    if (rc != 0) {
        fprintf(stderr, "# config does not parse: %s\n%s\n", errstr, json);
        ASSERT_OK(rc);
    }
    rc = ksock_runtime_configure(rt, cfg, errstr, n);
    ksock_runtime_adopt_config(rt, cfg);
    if (rc != 0) {
        ksock_runtime_destroy(rt);
        rt = NULL;
    }
    *rtp = rt;
    return rc;
}

static inline ksock_runtime_t *lt_runtime(const char *json)
{
    char err[1024] = "";
    ksock_runtime_t *rt = NULL;
    int rc = lt_try_runtime(json, &rt, err, sizeof(err));
    if (rc != 0) TEST_FAIL_("configure failed (%s): %s\nconfig: %s", ksock_err_name(rc), err, json);
    return rt;
}

/* printf into a static buffer: building configs with paths and ports. */
static inline const char *lt_fmt(const char *fmt, ...) KSOCK_PRINTF(1, 2);
static inline const char *lt_fmt(const char *fmt, ...)
{
    static char bufs[4][8192];
    static int next;
    char *b = bufs[next++ % 4];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, 8192, fmt, ap);
    va_end(ap);
    return b;
}

/* ---- Running the loop ----------------------------------------------------------- */

static inline uint64_t lt_ms(void)
{
    return ksock_now_ns() / 1000000u;
}

static inline void lt_noop_timer(ksock_timer_t *t, void *data)
{
    (void)t;
    (void)data;
}

typedef bool (*lt_cond_fn)(void *arg);

/*
 * Run the loop until cond(arg) holds or `timeout_ms` passes; returns
 * whether the condition held. A short guard timer bounds each blocking
 * iteration. cond NULL: just run for timeout_ms.
 */
static inline bool lt_run_until(ksock_runtime_t *rt, lt_cond_fn cond, void *arg,
                                uint64_t timeout_ms)
{
    ksock_timer_t *guard;
    ASSERT_OK(ksock_timer_init(rt, &guard, lt_noop_timer, NULL));
    uint64_t deadline = lt_ms() + timeout_ms;
    bool ok = false;
    for (;;) {
        if (cond && cond(arg)) {
            ok = true;
            break;
        }
        if (lt_ms() >= deadline) break;
        ASSERT_OK(ksock_timer_start(guard, 5, 0));
        ASSERT_OK(ksock_runtime_run_once(rt, true));
    }
    ksock_timer_close(guard);
    return ok;
}

static inline void lt_run_for(ksock_runtime_t *rt, uint64_t ms)
{
    lt_run_until(rt, NULL, NULL, ms);
}

/* ---- Files ------------------------------------------------------------------------- */

/* Whole file as a NUL-terminated string (caller frees); "" if it does not exist. */
static inline char *lt_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return strdup("");
    ksock_buf_t b = KSOCK_BUF_INIT;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        ASSERT_OK(ksock_buf_append(&b, chunk, n));
    fclose(f);
    if (b.data == NULL) return strdup("");
    return b.data;
}

/* Number of occurrences of `needle` in `hay`. */
static inline size_t lt_count(const char *hay, const char *needle)
{
    size_t n = 0, len = strlen(needle);
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += len)
        n++;
    return n;
}

/* Split into lines in place; returns how many (at most max). */
static inline size_t lt_lines(char *text, char **lines, size_t max)
{
    size_t n = 0;
    char *save = NULL;
    for (char *l = strtok_r(text, "\n", &save); l && n < max; l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    return n;
}

/* ---- JSON (yajl tree) ------------------------------------------------------------------ */

static inline yajl_val lt_json(const char *text)
{
    char err[256];
    yajl_val v = yajl_tree_parse(text, err, sizeof(err));
    if (v == NULL) TEST_FAIL_("not JSON (%s): %s", err, text);
    return v;
}

static inline const char *lt_jstr(yajl_val v, const char *k1, const char *k2)
{
    const char *path[] = {k1, k2, NULL};
    yajl_val s = yajl_tree_get(v, path, yajl_t_string);
    return s ? YAJL_GET_STRING(s) : NULL;
}

static inline bool lt_jint(yajl_val v, const char *k1, const char *k2, long long *out)
{
    const char *path[] = {k1, k2, NULL};
    yajl_val s = yajl_tree_get(v, path, yajl_t_number);
    if (s == NULL || !YAJL_IS_INTEGER(s)) return false;
    *out = YAJL_GET_INTEGER(s);
    return true;
}

/* "2026-11-26T06:49:46.123456Z" within a minute of now. */
static inline void lt_assert_time(const char *ts)
{
    ASSERT_NOT_NULL(ts);
    ASSERT_EQ(strlen(ts) >= 27, 1);
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm);
    ASSERT_NOT_NULL(end);
    ASSERT_EQ(end[0], '.');
    for (int i = 1; i <= 6; i++)
        ASSERT(end[i] >= '0' && end[i] <= '9');
    ASSERT_EQ(end[7], 'Z');
    time_t t = timegm(&tm);
    time_t now = time(NULL);
    ASSERT_LE(t, now + 1);
    ASSERT_GE(t, now - 60);
}

/* ---- Stats and errors --------------------------------------------------------------------- */

static inline ksock_log_sink_stats_t lt_stats(ksock_runtime_t *rt, const char *name)
{
    ksock_log_sink_stats_t st[16];
    size_t n = ksock_log_stats(rt, st, 16);
    for (size_t i = 0; i < n && i < 16; i++)
        if (strcmp(st[i].name, name) == 0) return st[i];
    TEST_FAIL_("no sink named %s", name);
}

typedef struct {
    int count;
    int last_code;
    char messages[8192]; /* every message, one per line */
} lt_errors_t;

static inline void lt_on_error(ksock_runtime_t *rt, const ksock_error_t *err, void *data)
{
    lt_errors_t *e = data;
    (void)rt;
    e->count++;
    e->last_code = err->code;
    size_t used = strlen(e->messages);
    snprintf(e->messages + used, sizeof(e->messages) - used, "%s: %s\n", err->component,
             err->message);
}

/* ---- Hostile values ------------------------------------------------------------------------ */

/*
 * What a client controls (a close reason, a topic, a header), at its worst:
 * a terminal escape, line breaks, DEL, invalid UTF-8, a lone surrogate as
 * bytes (ED A0 80), a C1 CSI (C2 9B), quotes and a backslash.
 */
#define LT_HOSTILE                                                                                 \
    "a\x1b[2Jb\nc\rd\te\x7f"                                                                       \
    "f\xff\xfe"                                                                                    \
    "g\xed\xa0\x80"                                                                                \
    "h\xc2\x9b"                                                                                    \
    "i\"\\j"

/* One record with LT_HOSTILE in the message, the component, a context key and
 * value, a NUL in the message and, with `big`, a 100 KB hostile value. */
static inline void lt_log_hostile(ksock_runtime_t *rt, bool big)
{
    static char huge[100001];
    for (size_t i = 0; i + 1 < sizeof(huge); i++)
        huge[i] = LT_HOSTILE[i % (sizeof(LT_HOSTILE) - 1)];
    ksock_kv_t kv[] = {KSOCK_KV_STR("reason", LT_HOSTILE), KSOCK_KV_STR("k\x1b[1m\n\xff", "v"),
                       KSOCK_KV_STR("big", big ? huge : "")};
    ksock_log(rt, KSOCK_LOG_WARN, "test\x1b\n\xff", kv, 3, "reason=%s nul=%c end", LT_HOSTILE, 0);
}

/* No raw control byte but the line ends, no C1 control, and valid UTF-8. */
static inline void lt_assert_clean(const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)data[i];
        if ((c < 0x20 && c != '\n') || c == 0x7f)
            TEST_FAIL_("raw control byte 0x%02x at %zu: %.*s", c, i, (int)(len < 300 ? len : 300),
                       data);
        if (c == 0xC2 && i + 1 < len && (unsigned char)data[i + 1] < 0xA0)
            TEST_FAIL_("raw C1 control at %zu", i);
    }
    size_t bad = 0;
    if (!ksock_utf8_check(data, len, &bad)) TEST_FAIL_("invalid UTF-8 at offset %zu", bad);
}

/* The message of lt_log_hostile's record as a JSON parser returns it (up to the NUL). */
#define LT_HOSTILE_JSON                                                                            \
    "a\x1b[2Jb\nc\rd\te\x7f"                                                                       \
    "f\xef\xbf\xbd\xef\xbf\xbd"                                                                    \
    "g\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"                                                        \
    "h\xc2\x9b"                                                                                    \
    "i\"\\j"

#endif
