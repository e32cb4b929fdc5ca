/*
 * The logger: records in, every sink whose level lets them through out.
 *
 * Threads: any thread may log. Sinks are called under one mutex, so each
 * sink sees one call at a time; a sink that logs from inside its own write
 * would deadlock on that mutex, so a thread-local guard drops such nested
 * records (and counts them) instead.
 *
 * Cost of a filtered call: ksock_log() compares against an atomic
 * threshold (the lowest level of any sink) before touching its arguments.
 *
 * One unit (~810 lines): the logger's lock, its sinks list and the record
 * formatter are used together on every call; the built-in console sink is
 * a few dozen lines of it. The sink plugins live in plugins/logsink_*.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct ksock__sink_s {
    ksock__sink_t *next;
    char *name;
    char *type;
    ksock_log_level_t level;
    ksock_log_format_t format;
    /* built-in console */
    int fd;
    /* plugin */
    ksock_plugin_instance_t *pi;
    const ksock_logsink_vtable_t *vt;
    /* counters (under the logger lock) */
    uint64_t written, dropped, errors;
    bool dropping;           /* in a run of drops: report only its first */
    uint64_t last_report_ns; /* and no more than one report per DROP_REPORT_EVERY_NS */
};

static _Thread_local int tl_in_log;

/* A sink flapping between success and failure must not flood the error handler. */
#define DROP_REPORT_EVERY_NS (10ull * 1000000000ull)

static const char *level_names[] = {"debug", "info", "warn", "error", "off"};

const char *ksock_log_level_name(ksock_log_level_t level)
{
    return (unsigned)level <= KSOCK_LOG_OFF ? level_names[level] : "unknown";
}

int ksock_log_level_parse(const char *name, ksock_log_level_t *out)
{
    for (int i = 0; i <= KSOCK_LOG_OFF; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (ksock_log_level_t)i;
            return 0;
        }
    }
    if (strcmp(name, "warning") == 0) {
        *out = KSOCK_LOG_WARN;
        return 0;
    }
    return KSOCK_E_INVAL;
}

/* ---- Formatting ------------------------------------------------------------- */

/* "2026-11-26T06:49:46.123456Z"; the date part is cached per thread per second. */
static void format_time(int64_t ns, char out[32])
{
    static _Thread_local time_t cached_sec = -1;
    static _Thread_local char cached[24];
    time_t sec = (time_t)(ns / 1000000000);
    if (sec != cached_sec) {
        struct tm tm;
        gmtime_r(&sec, &tm);
        strftime(cached, sizeof(cached), "%Y-%m-%dT%H:%M:%S", &tm);
        cached_sec = sec;
    }
    /* 19 + 1 + 6 + 1 bytes; the cast keeps gcc's truncation analysis quiet. */
    snprintf(out, 32, "%.19s.%06uZ", cached, (unsigned)((ns % 1000000000) / 1000) % 1000000u);
}

/*
 * The one escaping routine behind every sink (they all format through
 * ksock_log_record_format): values come from clients (close reasons, topics,
 * ids), and a hostile one must neither drive the terminal that tails the log
 * (ESC [2J), nor split a record into two lines, nor make a JSON line stop
 * being JSON. So C0 controls, DEL, C1 controls and every byte that is not
 * part of well-formed UTF-8 are escaped:
 *   json: \" \\ \n \r \t \u00XX; invalid UTF-8 becomes \ufffd
 *   text: \\ \n \r \t \xNN (and \" inside a quoted value); C1 as \u0080..\u009f
 * The output is valid UTF-8 without raw control bytes whatever the input.
 */
typedef enum { ESC_JSON, ESC_TEXT, ESC_TEXT_QUOTED } esc_mode_t;

/* Length of the well-formed UTF-8 sequence at s[0] (lead byte >= 0x80), or 0. */
static size_t utf8_len_at(const char *s, size_t avail)
{
    unsigned char c = (unsigned char)s[0];
    size_t want = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    size_t bad = 0;
    if (avail > want) avail = want;
    /* The check walks whole sequences: failing past offset 0 means the first one was fine. */
    if (ksock_utf8_check(s, avail, &bad) || bad > 0) return want;
    return 0;
}

static int append_escape(ksock_buf_t *out, unsigned char c, esc_mode_t mode, bool invalid)
{
    static const char hex[] = "0123456789abcdef";
    bool json = mode == ESC_JSON;
    if (invalid)
        return json ? ksock_buf_append(out, "\\ufffd", 6)
                    : ksock_buf_appendf(out, "\\x%c%c", hex[c >> 4], hex[c & 15]);
    switch (c) {
    case '"':
        return ksock_buf_append(out, "\\\"", 2);
    case '\\':
        return ksock_buf_append(out, "\\\\", 2);
    case '\n':
        return ksock_buf_append(out, "\\n", 2);
    case '\t':
        return ksock_buf_append(out, "\\t", 2);
    case '\r':
        return ksock_buf_append(out, "\\r", 2);
    }
    if (json || c >= 0x80) {
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        return ksock_buf_append(out, esc, 6);
    }
    char esc[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
    return ksock_buf_append(out, esc, 4);
}

static int log_escape(ksock_buf_t *out, const char *s, size_t n, esc_mode_t mode)
{
    if (ksock_buf_reserve(out, n + 2) != 0) return KSOCK_E_NOMEM;
    size_t run = 0, i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t len = 1;
        bool invalid = false;
        if (c >= 0x80) {
            len = utf8_len_at(s + i, n - i);
            invalid = len == 0;
            /* C1 controls (U+0080..U+009F, 0xC2 0x80..0x9F): 0x9B is a one-byte CSI. */
            if (len == 2 && c == 0xC2 && (unsigned char)s[i + 1] < 0xA0)
                c = (unsigned char)s[i + 1];
            else if (!invalid) {
                i += len;
                continue;
            }
            if (invalid) len = 1;
        } else if (c >= 0x20 && c != 0x7f && c != '\\' && (c != '"' || mode == ESC_TEXT)) {
            i++;
            continue;
        }
        if (i > run && ksock_buf_append(out, s + run, i - run) != 0) return KSOCK_E_NOMEM;
        if (append_escape(out, c, mode, invalid) != 0) return KSOCK_E_NOMEM;
        i += len;
        run = i;
    }
    return n > run ? ksock_buf_append(out, s + run, n - run) : 0;
}

static int append_json_string(ksock_buf_t *out, const char *s)
{
    if (s == NULL) return ksock_buf_append(out, "null", 4);
    int rc = ksock_buf_append(out, "\"", 1);
    if (rc == 0) rc = log_escape(out, s, strlen(s), ESC_JSON);
    if (rc == 0) rc = ksock_buf_append(out, "\"", 1);
    return rc;
}

/* Bare unless quoting or escaping is needed to keep "key=value" one token. */
static bool text_needs_quotes(const char *s)
{
    if (*s == '\0') return true;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= 0x20 || *p == 0x7f || *p == '"' || *p == '=' || *p == '\\' ||
            (*p == 0xC2 && p[1] >= 0x80 && p[1] < 0xA0))
            return true;
    return !ksock_utf8_check(s, strlen(s), NULL);
}

static int append_text_value(ksock_buf_t *out, const char *s)
{
    if (s == NULL) return ksock_buf_append(out, "null", 4);
    if (!text_needs_quotes(s)) return ksock_buf_append(out, s, strlen(s));
    int rc = ksock_buf_append(out, "\"", 1);
    if (rc == 0) rc = log_escape(out, s, strlen(s), ESC_TEXT_QUOTED);
    if (rc == 0) rc = ksock_buf_append(out, "\"", 1);
    return rc;
}

static int append_kv_value(ksock_buf_t *out, const ksock_kv_t *kv, bool json)
{
    switch (kv->type) {
    case KSOCK_KV_STRING:
        return json ? append_json_string(out, kv->v.s) : append_text_value(out, kv->v.s);
    case KSOCK_KV_INT:
        return ksock_buf_appendf(out, "%lld", (long long)kv->v.i);
    case KSOCK_KV_DOUBLE:
        /* JSON has no NaN/Infinity. */
        if (json && (kv->v.d != kv->v.d || kv->v.d > 1.7976931348623157e308 ||
                     kv->v.d < -1.7976931348623157e308))
            return ksock_buf_append(out, "null", 4);
        return ksock_buf_appendf(out, "%.17g", kv->v.d);
    case KSOCK_KV_BOOL:
        return kv->v.b ? ksock_buf_append(out, "true", 4) : ksock_buf_append(out, "false", 5);
    }
    return ksock_buf_append(out, "null", 4);
}

int ksock_log_record_format(const ksock_log_record_t *rec, ksock_log_format_t fmt, ksock_buf_t *out)
{
    char ts[32];
    int rc;
    format_time(rec->time_ns, ts);
    if (fmt == KSOCK_LOG_FORMAT_JSON) {
        rc = ksock_buf_appendf(out, "{\"time\":\"%s\",\"level\":\"%s\",\"component\":", ts,
                               ksock_log_level_name(rec->level));
        if (rc == 0) rc = append_json_string(out, rec->component);
        if (rc == 0) rc = ksock_buf_append(out, ",\"message\":\"", 12);
        if (rc == 0) rc = log_escape(out, rec->message, rec->message_len, ESC_JSON);
        if (rc == 0) rc = ksock_buf_append(out, "\"", 1);
        if (rc == 0 && rec->ncontext) {
            rc = ksock_buf_append(out, ",\"context\":{", 12);
            for (size_t i = 0; rc == 0 && i < rec->ncontext; i++) {
                if (i) rc = ksock_buf_append(out, ",", 1);
                if (rc == 0) rc = append_json_string(out, rec->context[i].key);
                if (rc == 0) rc = ksock_buf_append(out, ":", 1);
                if (rc == 0) rc = append_kv_value(out, &rec->context[i], true);
            }
            if (rc == 0) rc = ksock_buf_append(out, "}", 1);
        }
        if (rc == 0) rc = ksock_buf_append(out, "}\n", 2);
        return rc;
    }
    static const char *upper[] = {"DEBUG", "INFO ", "WARN ", "ERROR", "OFF  "};
    rc = ksock_buf_appendf(out, "%s %s ", ts,
                           (unsigned)rec->level <= KSOCK_LOG_OFF ? upper[rec->level] : "?    ");
    if (rc == 0) rc = log_escape(out, rec->component, strlen(rec->component), ESC_TEXT);
    if (rc == 0) rc = ksock_buf_append(out, ": ", 2);
    /* A message never breaks the one-record-per-line rule. */
    if (rc == 0) rc = log_escape(out, rec->message, rec->message_len, ESC_TEXT);
    for (size_t i = 0; rc == 0 && i < rec->ncontext; i++) {
        rc = ksock_buf_append(out, " ", 1);
        if (rc == 0)
            rc = log_escape(out, rec->context[i].key, strlen(rec->context[i].key), ESC_TEXT);
        if (rc == 0) rc = ksock_buf_append(out, "=", 1);
        if (rc == 0) rc = append_kv_value(out, &rec->context[i], false);
    }
    if (rc == 0) rc = ksock_buf_append(out, "\n", 1);
    return rc;
}

/* ---- Sinks ------------------------------------------------------------------ */

static void sink_free(ksock__sink_t *s)
{
    if (s == NULL) return;
    if (s->pi) {
        if (s->vt->flush) s->vt->flush(s->pi->inst);
        ksock_plugin_instance_free(s->pi);
    }
    free(s->name);
    free(s->type);
    free(s);
}

static void recompute_threshold(ksock_runtime_t *rt)
{
    int t = KSOCK_LOG_OFF;
    for (ksock__sink_t *s = rt->log.sinks; s; s = s->next)
        if ((int)s->level < t) t = (int)s->level;
    atomic_store(&rt->log.threshold, t);
}

ksock_log_level_t ksock_log_threshold(const ksock_runtime_t *rt)
{
    return (ksock_log_level_t)atomic_load_explicit(&((ksock_runtime_t *)rt)->log.threshold,
                                                   memory_order_relaxed);
}

/* A console sink named `name`; NULL when out of memory. */
static ksock__sink_t *console_sink(const char *name, ksock_log_level_t level,
                                   ksock_log_format_t fmt, int fd)
{
    ksock__sink_t *s = calloc(1, sizeof(*s));
    if (s == NULL) return NULL;
    s->name = ksock__strdup(name);
    s->type = ksock__strdup("console");
    s->level = level;
    s->format = fmt;
    s->fd = fd;
    if (s->name == NULL || s->type == NULL) {
        sink_free(s);
        return NULL;
    }
    return s;
}

int ksock__log_init(ksock_runtime_t *rt)
{
    pthread_mutex_init(&rt->log.lock, NULL);
    rt->log.sinks = console_sink("console", KSOCK_LOG_INFO, KSOCK_LOG_FORMAT_TEXT, STDERR_FILENO);
    if (rt->log.sinks == NULL) {
        pthread_mutex_destroy(&rt->log.lock);
        return KSOCK_E_NOMEM;
    }
    recompute_threshold(rt);
    return 0;
}

void ksock__log_destroy(ksock_runtime_t *rt)
{
    pthread_mutex_lock(&rt->log.lock);
    ksock__sink_t *s = rt->log.sinks;
    rt->log.sinks = NULL;
    atomic_store(&rt->log.threshold, KSOCK_LOG_OFF);
    pthread_mutex_unlock(&rt->log.lock);
    while (s) {
        ksock__sink_t *next = s->next;
        sink_free(s);
        s = next;
    }
    ksock_buf_free(&rt->log.scratch);
    pthread_mutex_destroy(&rt->log.lock);
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        p += w;
        n -= (size_t)w;
    }
}

typedef struct {
    char *component;
    char *sink;
} drop_report_t;

static void report_drop(ksock_runtime_t *rt, void *arg)
{
    drop_report_t *d = arg;
    if (!ksock_runtime_is_stopping(rt))
        ksock_report_error(rt, KSOCK_E_QUEUE_FULL, "log",
                           "log sink \"%s\" is dropping records (see its dropped counter)",
                           d->sink);
    free(d->sink);
    free(d->component);
    free(d);
}

/* Under the logger lock. */
static void sink_write(ksock_runtime_t *rt, ksock__sink_t *s, const ksock_log_record_t *rec)
{
    int rc;
    if (s->pi == NULL) {
        rt->log.scratch.len = 0;
        rc = ksock_log_record_format(rec, s->format, &rt->log.scratch);
        if (rc == 0) write_all(s->fd, rt->log.scratch.data, rt->log.scratch.len);
    } else {
        rc = s->vt->write(s->pi->inst, rec);
    }
    if (rc == 0) {
        s->written++;
        s->dropping = false;
        return;
    }
    s->dropped++;
    uint64_t now = ksock_now_ns();
    if (!s->dropping &&
        (s->last_report_ns == 0 || now - s->last_report_ns >= DROP_REPORT_EVERY_NS)) {
        s->dropping = true;
        s->last_report_ns = now;
        drop_report_t *d = calloc(1, sizeof(*d));
        if (d) {
            /* Out of memory: no report this time; the dropped counter still counts. */
            d->sink = ksock__strdup(s->name);
            if (d->sink == NULL || ksock_runtime_post(rt, report_drop, d) != 0) {
                free(d->sink);
                free(d);
            }
        }
    }
}

void ksock_logv(ksock_runtime_t *rt, ksock_log_level_t level, const char *component,
                const ksock_kv_t *context, size_t ncontext, const char *fmt, va_list ap)
{
    if ((int)level < atomic_load_explicit(&rt->log.threshold, memory_order_relaxed)) return;
    if (tl_in_log) return; /* a sink logging from inside write(): drop, never deadlock */

    char small[512];
    char *msg = small;
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof(small)) {
        msg = malloc((size_t)n + 1);
        if (msg)
            vsnprintf(msg, (size_t)n + 1, fmt, ap2);
        else {
            msg = small;
            n = (int)sizeof(small) - 1;
        }
    }
    va_end(ap2);

    ksock_log_record_t rec = {
        sizeof(rec), ksock_wallclock_ns(),      level,   component ? component : "app", msg,
        (size_t)n,   ncontext ? context : NULL, ncontext};
    tl_in_log = 1;
    pthread_mutex_lock(&rt->log.lock);
    for (ksock__sink_t *s = rt->log.sinks; s; s = s->next)
        if ((int)level >= (int)s->level) sink_write(rt, s, &rec);
    pthread_mutex_unlock(&rt->log.lock);
    tl_in_log = 0;
    if (msg != small) free(msg);
}

void ksock_log(ksock_runtime_t *rt, ksock_log_level_t level, const char *component,
               const ksock_kv_t *context, size_t ncontext, const char *fmt, ...)
{
    if ((int)level < atomic_load_explicit(&rt->log.threshold, memory_order_relaxed)) return;
    va_list ap;
    va_start(ap, fmt);
    ksock_logv(rt, level, component, context, ncontext, fmt, ap);
    va_end(ap);
}

/* ---- Configuration -------------------------------------------------------------- */

static const char *const format_names[] = {"text", "json", NULL};
static const char *const level_enum[] = {"debug", "info", "warn", "error", "off", NULL};

typedef struct {
    int level;
    int format;
    const ksock_cfg_t *sinks;
} log_opts_t;

/* The "log" section. Also printed by `ksockd --describe-config`. */
static const ksock_option_t log_schema[] = {
    KSOCK_OPTION_ENUM("level", 0, "info", log_opts_t, level, level_enum,
                      "Default level for sinks that do not set their own"),
    KSOCK_OPTION_ENUM("format", 0, "text", log_opts_t, format, format_names,
                      "Default record format for sinks that do not set their own: text or json"),
    KSOCK_OPTION("sinks", KSOCK_OPT_ARRAY, 0, NULL, log_opts_t, sinks,
                 "Array of sink objects; default: one console sink"),
    KSOCK_OPTION_END};

typedef struct {
    char *type;
    char *name;
    char *level;
    char *format;
} sink_common_t;

/* Keys of a sink object that belong to the core rather than to the plugin. */
static const ksock_option_t sink_common_schema[] = {
    KSOCK_OPTION("type", KSOCK_OPT_STRING, KSOCK_OPT_REQUIRED, NULL, sink_common_t, type,
                 "Sink plugin name: console (built in), file, syslog, http, or a third-party sink"),
    KSOCK_OPTION("name", KSOCK_OPT_STRING, 0, NULL, sink_common_t, name,
                 "Instance name, unique among sinks; default: the type"),
    KSOCK_OPTION_ENUM("level", 0, NULL, sink_common_t, level, level_enum,
                      "Lowest level this sink writes; default: log.level"),
    KSOCK_OPTION_ENUM("format", 0, NULL, sink_common_t, format, format_names,
                      "text or json; default: log.format"),
    KSOCK_OPTION_END};

typedef struct {
    int stream;
} console_opts_t;

static const char *const stream_names[] = {"stderr", "stdout", NULL};

static const ksock_option_t console_schema[] = {
    KSOCK_OPTION_ENUM("stream", 0, "stderr", console_opts_t, stream, stream_names,
                      "Where the console sink writes: stderr or stdout"),
    KSOCK_OPTION_END};

const ksock_option_t *ksock__log_schema(void)
{
    return log_schema;
}
const ksock_option_t *ksock__log_sink_schema(void)
{
    return sink_common_schema;
}
const ksock_option_t *ksock__log_console_schema(void)
{
    return console_schema;
}

static const char *const sink_core_keys[] = {"type", "name", "level", "format", NULL};

/*
 * A sink of a log-sink plugin: its options (all but the core keys) are
 * validated against the plugin's schema before create() runs. With
 * check_only, only validated: *out stays NULL.
 */
static int plugin_sink(ksock_runtime_t *rt, const ksock_config_t *doc, const ksock_cfg_t *obj,
                       const char *name, const char *type, ksock_log_level_t level,
                       ksock_log_format_t format, bool check_only, ksock__sink_t **out,
                       char *errstr, size_t errstr_size)
{
    ksock_plugin_t *p;
    int rc = ksock_plugin_find(rt, KSOCK_PLUGIN_LOGSINK, type, &p, errstr, errstr_size);
    if (rc != 0) return rc;
    if (check_only)
        return ksock_plugin_check_options(p, name, doc, obj, sink_core_keys, errstr, errstr_size);
    ksock_plugin_instance_t *pi;
    rc = ksock_plugin_instance_new(rt, p, name, doc, obj, sink_core_keys, &pi, errstr, errstr_size);
    if (rc != 0) return rc;
    ksock__sink_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        ksock_plugin_instance_free(pi);
        return KSOCK_E_NOMEM;
    }
    s->name = ksock__strdup(name);
    s->type = ksock__strdup(type);
    s->level = level;
    s->format = format;
    s->fd = -1;
    s->pi = pi;
    s->vt = pi->vtable;
    if (s->name == NULL || s->type == NULL) {
        sink_free(s);
        return KSOCK_E_NOMEM;
    }
    if (s->vt->set_format) s->vt->set_format(pi->inst, format);
    *out = s;
    return 0;
}

/*
 * Build one sink from a config object. The core keys (type, name, level,
 * format) are validated here; the rest is the plugin's and is validated
 * against its schema before its create() runs.
 */
static int build_sink(ksock_runtime_t *rt, const ksock_config_t *doc, const ksock_cfg_t *obj,
                      ksock_log_level_t def_level, ksock_log_format_t def_format, bool check_only,
                      ksock__sink_t **out, char *errstr, size_t errstr_size)
{
    *out = NULL;
    sink_common_t common;
    memset(&common, 0, sizeof(common));
    /* First pass: only the core keys; ignore the rest (the plugin checks them). */
    const char *others[64];
    size_t no = 0;
    for (size_t i = 0; i < ksock_cfg_count(obj) && no < 63; i++) {
        const char *k;
        ksock_cfg_at(obj, i, &k);
        bool core = false;
        for (int j = 0; sink_core_keys[j]; j++)
            core |= strcmp(k, sink_core_keys[j]) == 0;
        if (!core) others[no++] = k;
    }
    others[no] = NULL;
    int rc = ksock_options_apply(sink_common_schema, sizeof(ksock_option_t), doc, obj, "log sink",
                                 others, &common, errstr, errstr_size);
    if (rc != 0) goto out;

    ksock_log_level_t level = def_level;
    ksock_log_format_t format = def_format;
    const ksock_cfg_t *lv = ksock_cfg_get(obj, "level"), *fv = ksock_cfg_get(obj, "format");
    if (lv) ksock_log_level_parse(ksock_cfg_string(lv), &level);
    if (fv)
        format = strcmp(ksock_cfg_string(fv), "json") == 0 ? KSOCK_LOG_FORMAT_JSON
                                                           : KSOCK_LOG_FORMAT_TEXT;
    const char *name = common.name ? common.name : common.type;
    char owner[160];
    snprintf(owner, sizeof(owner), "log sink \"%s\" (type %s)", name, common.type);

    if (strcmp(common.type, "console") == 0) {
        console_opts_t co = {0};
        rc = ksock_options_apply(console_schema, sizeof(ksock_option_t), doc, obj, owner,
                                 sink_core_keys, &co, errstr, errstr_size);
        if (rc != 0 || check_only) goto out;
        *out = console_sink(name, level, format, co.stream == 1 ? STDOUT_FILENO : STDERR_FILENO);
        if (*out == NULL) rc = KSOCK_E_NOMEM;
    } else {
        rc = plugin_sink(rt, doc, obj, name, common.type, level, format, check_only, out, errstr,
                         errstr_size);
    }
out:
    ksock_options_free(sink_common_schema, sizeof(ksock_option_t), &common);
    return rc;
}

/* Swap in a new sink list atomically with respect to writers; free the old one. */
static void replace_sinks(ksock_runtime_t *rt, ksock__sink_t *sinks)
{
    pthread_mutex_lock(&rt->log.lock);
    ksock__sink_t *old = rt->log.sinks;
    rt->log.sinks = sinks;
    recompute_threshold(rt);
    pthread_mutex_unlock(&rt->log.lock);
    while (old) {
        ksock__sink_t *next = old->next;
        sink_free(old);
        old = next;
    }
}

static void free_list(ksock__sink_t *s)
{
    while (s) {
        ksock__sink_t *next = s->next;
        sink_free(s);
        s = next;
    }
}

int ksock__log_configure(ksock_runtime_t *rt, const ksock_config_t *doc, const ksock_cfg_t *log,
                         bool check_only, char *errstr, size_t errstr_size)
{
    log_opts_t lo;
    memset(&lo, 0, sizeof(lo));
    int rc = ksock_options_apply(log_schema, sizeof(ksock_option_t), doc, log, "log", NULL, &lo,
                                 errstr, errstr_size);
    if (rc != 0) return rc;
    ksock_log_level_t level = (ksock_log_level_t)lo.level;
    ksock_log_format_t format = (ksock_log_format_t)lo.format;

    ksock__sink_t *head = NULL, **tail = &head;
    if (lo.sinks == NULL) {
        head = console_sink("console", level, format, STDERR_FILENO);
        if (head == NULL) return KSOCK_E_NOMEM;
    }
    for (size_t i = 0; i < ksock_cfg_count(lo.sinks); i++) {
        const ksock_cfg_t *so = ksock_cfg_at(lo.sinks, i, NULL);
        if (ksock_cfg_type(so) != KSOCK_CFG_OBJECT) {
            ksock_errstr_set(errstr, errstr_size,
                             "%s:%d:%d: log: sinks[%zu]: expected an object, got %s",
                             ksock__cfg_doc_name(doc), ksock_cfg_line(so), ksock_cfg_column(so), i,
                             ksock_cfg_type_name(ksock_cfg_type(so)));
            free_list(head);
            return KSOCK_E_CONFIG;
        }
        ksock__sink_t *s = NULL;
        rc = build_sink(rt, doc, so, level, format, check_only, &s, errstr, errstr_size);
        if (rc != 0) {
            free_list(head);
            return rc;
        }
        if (check_only) {
            /* Names must still be unique; remember them in a scratch sink. */
            const ksock_cfg_t *nm = ksock_cfg_get(so, "name");
            s = console_sink(ksock_cfg_string(nm ? nm : ksock_cfg_get(so, "type")), level, format,
                             -1);
            if (s == NULL) {
                free_list(head);
                return KSOCK_E_NOMEM;
            }
        }
        for (ksock__sink_t *o = head; o; o = o->next) {
            if (strcmp(o->name, s->name) == 0) {
                ksock_errstr_set(
                    errstr, errstr_size,
                    "%s:%d:%d: log: two sinks are named \"%s\" (set \"name\" to tell them apart)",
                    ksock__cfg_doc_name(doc), ksock_cfg_line(so), ksock_cfg_column(so), s->name);
                sink_free(s);
                free_list(head);
                return KSOCK_E_CONFIG;
            }
        }
        *tail = s;
        tail = &s->next;
    }
    if (check_only)
        free_list(head);
    else
        replace_sinks(rt, head);
    return 0;
}

/*
 * build_sink() reads the type from the object; for LoggingOptions it comes
 * from opts->output, so wrap it: {"type": output, ...options}.
 */
static int configure_one(ksock_runtime_t *rt, const ksock_log_options_t *opts, bool add,
                         char *errstr, size_t errstr_size)
{
    if (opts == NULL || opts->output == NULL) {
        ksock_errstr_set(errstr, errstr_size, "log options: output is required");
        return KSOCK_E_INVAL;
    }
    ksock_buf_t b = KSOCK_BUF_INIT;
    const char *inner = opts->options_json ? opts->options_json : "{}";
    while (*inner == ' ' || *inner == '\n' || *inner == '\t')
        inner++;
    if (*inner != '{') {
        ksock_errstr_set(errstr, errstr_size, "log options: options_json must be a JSON object");
        return KSOCK_E_CONFIG;
    }
    inner++;
    while (*inner == ' ' || *inner == '\n' || *inner == '\t')
        inner++;
    int nomem = ksock_buf_append(&b, "{\"type\":\"", 9);
    nomem |= log_escape(&b, opts->output, strlen(opts->output), ESC_JSON);
    nomem |= ksock_buf_appendf(&b, "\"%s%s", *inner == '}' ? "" : ",", inner);
    if (nomem) {
        ksock_buf_free(&b);
        return KSOCK_E_NOMEM;
    }
    ksock__sink_t *s = NULL;
    ksock_config_t *doc;
    /* The plugin options borrow from this document: the runtime keeps it. */
    int rc = ksock_config_load_string("log options", b.data, b.len, &doc, errstr, errstr_size);
    ksock_buf_free(&b);
    if (rc != 0) return rc;
    rc = build_sink(rt, doc, ksock_config_root(doc), opts->level, opts->format, false, &s, errstr,
                    errstr_size);
    if (rc != 0) {
        ksock_config_free(doc);
        return rc;
    }
    ksock_runtime_adopt_config(rt, doc);
    if (!add) {
        replace_sinks(rt, s);
        return 0;
    }
    pthread_mutex_lock(&rt->log.lock);
    ksock__sink_t **tail = &rt->log.sinks;
    for (ksock__sink_t *o2 = rt->log.sinks; o2; o2 = o2->next) {
        if (strcmp(o2->name, s->name) == 0) {
            pthread_mutex_unlock(&rt->log.lock);
            ksock_errstr_set(errstr, errstr_size, "log: a sink named \"%s\" exists already",
                             s->name);
            sink_free(s);
            return KSOCK_E_EXIST;
        }
        tail = &o2->next;
    }
    *tail = s;
    recompute_threshold(rt);
    pthread_mutex_unlock(&rt->log.lock);
    return 0;
}

int ksock_log_configure(ksock_runtime_t *rt, const ksock_log_options_t *opts, char *errstr,
                        size_t errstr_size)
{
    return configure_one(rt, opts, false, errstr, errstr_size);
}

int ksock_log_add_sink(ksock_runtime_t *rt, const ksock_log_options_t *opts, char *errstr,
                       size_t errstr_size)
{
    return configure_one(rt, opts, true, errstr, errstr_size);
}

/*
 * reopen, flush and stats run under the logger lock like write(), so the
 * same guard applies: a sink that logs from them ("reopened X") has that
 * record dropped instead of deadlocking on the lock.
 */
void ksock_log_reopen(ksock_runtime_t *rt)
{
    /* A sink that logs from here must not re-enter the lock it runs under. */
    tl_in_log = 1;
    pthread_mutex_lock(&rt->log.lock);
    for (ksock__sink_t *s = rt->log.sinks; s; s = s->next)
        if (s->pi && s->vt->reopen) s->vt->reopen(s->pi->inst);
    tl_in_log = 0;
    pthread_mutex_unlock(&rt->log.lock);
}

void ksock_log_flush(ksock_runtime_t *rt)
{
    /* A sink that logs from here must not re-enter the lock it runs under. */
    tl_in_log = 1;
    pthread_mutex_lock(&rt->log.lock);
    for (ksock__sink_t *s = rt->log.sinks; s; s = s->next)
        if (s->pi && s->vt->flush) s->vt->flush(s->pi->inst);
    tl_in_log = 0;
    pthread_mutex_unlock(&rt->log.lock);
}

size_t ksock_log_stats(ksock_runtime_t *rt, ksock_log_sink_stats_t *out, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&rt->log.lock);
    tl_in_log = 1;
    for (ksock__sink_t *s = rt->log.sinks; s; s = s->next, n++) {
        if (n >= max) continue;
        ksock_log_sink_stats_t st = {sizeof(st), s->name,    s->type,
                                     s->written, s->dropped, s->errors};
        if (s->pi && s->vt->stats) {
            uint64_t w = 0, d = 0, e = 0;
            s->vt->stats(s->pi->inst, &w, &d, &e);
            /* The sink knows about asynchronous losses the core cannot see. */
            st.written = w;
            st.dropped = s->dropped + d;
            st.errors = e;
        }
        out[n] = st;
    }
    tl_in_log = 0;
    pthread_mutex_unlock(&rt->log.lock);
    return n;
}
