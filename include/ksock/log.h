/*
 * Logging (spec VI: configureLogging, log). Records carry time, level,
 * component, message and a structured context of key/value pairs, and go
 * to every configured sink whose level lets them through. Each sink has its
 * own level and format (text or json).
 *
 * ksock_log() and friends are thread-safe: a transport thread may log.
 * A call filtered out by level costs one load and one compare.
 */
#ifndef KSOCK_LOG_H
#define KSOCK_LOG_H

#include <ksock/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    KSOCK_LOG_DEBUG = 0,
    KSOCK_LOG_INFO = 1,
    KSOCK_LOG_WARN = 2,
    KSOCK_LOG_ERROR = 3,
    KSOCK_LOG_OFF = 4 /* as a sink level: nothing passes */
} ksock_log_level_t;

typedef enum { KSOCK_LOG_FORMAT_TEXT = 0, KSOCK_LOG_FORMAT_JSON = 1 } ksock_log_format_t;

/* "debug", "info", "warn", "error", "off". */
KSOCK_EXTERN const char *ksock_log_level_name(ksock_log_level_t level);
/* Parse a level name (also accepts "warning"). Returns 0 or KSOCK_E_INVAL. */
KSOCK_EXTERN int ksock_log_level_parse(const char *name, ksock_log_level_t *out);

/* One context entry. Values are borrowed for the duration of the log call. */
typedef enum {
    KSOCK_KV_STRING = 0,
    KSOCK_KV_INT = 1,
    KSOCK_KV_DOUBLE = 2,
    KSOCK_KV_BOOL = 3
} ksock_kv_type_t;

typedef struct ksock_kv_s {
    const char *key;
    ksock_kv_type_t type;
    union {
        const char *s;
        int64_t i;
        double d;
        bool b;
    } v;
} ksock_kv_t;

#define KSOCK_KV_STR(k, val)  ((ksock_kv_t){(k), KSOCK_KV_STRING, {.s = (val)}})
#define KSOCK_KV_I64(k, val)  ((ksock_kv_t){(k), KSOCK_KV_INT, {.i = (int64_t)(val)}})
#define KSOCK_KV_DBL(k, val)  ((ksock_kv_t){(k), KSOCK_KV_DOUBLE, {.d = (double)(val)}})
#define KSOCK_KV_BOOL(k, val) ((ksock_kv_t){(k), KSOCK_KV_BOOL, {.b = (val)}})

/*
 * A log record as handed to sinks. Borrowed: valid during the sink call
 * only; a sink that keeps it formats or copies it first. Grows at the end.
 */
typedef struct ksock_log_record_s {
    size_t size;     /* sizeof(ksock_log_record_t) as compiled into the core */
    int64_t time_ns; /* wall clock, ns since the Unix epoch */
    ksock_log_level_t level;
    const char *component; /* never NULL: "core", "ksockd", "serializer:json", ... */
    const char *message;   /* NUL-terminated */
    size_t message_len;
    const ksock_kv_t *context; /* may be NULL when ncontext == 0 */
    size_t ncontext;
} ksock_log_record_t;

/*
 * Format a record as one line (with the trailing '\n') appended to `out`.
 * text: "2026-11-26T06:49:46.123456Z INFO  core: message key=value ..."
 * json: {"time":"...","level":"info","component":"core","message":"...","context":{...}}
 * Returns 0 or KSOCK_E_NOMEM.
 */
KSOCK_EXTERN int ksock_log_record_format(const ksock_log_record_t *rec, ksock_log_format_t fmt,
                                         ksock_buf_t *out);

/* The lowest level that any sink accepts; KSOCK_LOG_OFF when none would write. Thread-safe. */
KSOCK_EXTERN ksock_log_level_t ksock_log_threshold(const ksock_runtime_t *rt);

/* True when a record at `level` would reach at least one sink. Thread-safe. */
#define ksock_log_enabled(rt, level) ((int)(level) >= (int)ksock_log_threshold(rt))

/*
 * Log `fmt` at `level` under `component` with `ncontext` context entries.
 * Thread-safe. Never fails from the caller's point of view: a sink that
 * fails counts the failure and reports it through the error handler.
 */
KSOCK_EXTERN void ksock_log(ksock_runtime_t *rt, ksock_log_level_t level, const char *component,
                            const ksock_kv_t *context, size_t ncontext, const char *fmt, ...)
    KSOCK_PRINTF(6, 7);
KSOCK_EXTERN void ksock_logv(ksock_runtime_t *rt, ksock_log_level_t level, const char *component,
                             const ksock_kv_t *context, size_t ncontext, const char *fmt,
                             va_list ap);

/* Convenience macros with no context; the level test happens before argument evaluation. */
#define KSOCK_LOG(rt, level, component, ...)                                                       \
    do {                                                                                           \
        if (ksock_log_enabled((rt), (level)))                                                      \
            ksock_log((rt), (level), (component), NULL, 0, __VA_ARGS__);                           \
    } while (0)
#define KSOCK_DEBUG(rt, comp, ...) KSOCK_LOG(rt, KSOCK_LOG_DEBUG, comp, __VA_ARGS__)
#define KSOCK_INFO(rt, comp, ...)  KSOCK_LOG(rt, KSOCK_LOG_INFO, comp, __VA_ARGS__)
#define KSOCK_WARN(rt, comp, ...)  KSOCK_LOG(rt, KSOCK_LOG_WARN, comp, __VA_ARGS__)
#define KSOCK_ERROR(rt, comp, ...) KSOCK_LOG(rt, KSOCK_LOG_ERROR, comp, __VA_ARGS__)

/*
 * Programmatic logging configuration (spec VI configureLogging), the C form
 * of LoggingOptions. `output` is a log-sink plugin name ("console" is built
 * in; "file", "syslog", "http" are plugins) and `options` its JSON options
 * object as text (e.g. "{\"path\":\"/tmp/x.log\"}"), or NULL.
 */
typedef struct ksock_log_options_s {
    size_t size; /* sizeof(ksock_log_options_t) */
    ksock_log_level_t level;
    const char *output;
    ksock_log_format_t format;
    const char *options_json;
} ksock_log_options_t;

/*
 * Replace all sinks with the single sink described by `opts`. Loop thread.
 * Errors: KSOCK_E_CONFIG, KSOCK_E_PLUGIN, KSOCK_E_NOENT; errstr explains;
 * KSOCK_E_NOMEM. On error the previous sinks stay in place.
 */
KSOCK_EXTERN int ksock_log_configure(ksock_runtime_t *rt, const ksock_log_options_t *opts,
                                     char *errstr, size_t errstr_size);

/*
 * Add a sink next to the existing ones (same arguments). Loop thread.
 * Errors as ksock_log_configure(), and KSOCK_E_EXIST (a sink of that name).
 */
KSOCK_EXTERN int ksock_log_add_sink(ksock_runtime_t *rt, const ksock_log_options_t *opts,
                                    char *errstr, size_t errstr_size);

/* Ask every sink to reopen its output (SIGHUP, logrotate). Loop thread. */
KSOCK_EXTERN void ksock_log_reopen(ksock_runtime_t *rt);

/* Flush every sink's buffer. Loop thread. */
KSOCK_EXTERN void ksock_log_flush(ksock_runtime_t *rt);

/* Per-sink counters, for operators and tests. */
typedef struct ksock_log_sink_stats_s {
    size_t size;
    const char *name; /* instance name */
    const char *type; /* plugin name */
    uint64_t written; /* records accepted by the sink */
    uint64_t dropped; /* records the sink had to drop (queue full, write error) */
    uint64_t errors;  /* failed writes / deliveries */
} ksock_log_sink_stats_t;

/*
 * Fill up to `max` stats entries; returns how many sinks there are.
 * Strings borrowed until the sink set changes. Loop thread.
 */
KSOCK_EXTERN size_t ksock_log_stats(ksock_runtime_t *rt, ksock_log_sink_stats_t *out, size_t max);

#ifdef __cplusplus
}
#endif
#endif
