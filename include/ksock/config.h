/*
 * Configuration: a JSON document (comments allowed) read with yajl into a
 * tree that remembers where every value came from, and typed option
 * schemas that the core validates before any plugin code runs.
 *
 * A schema is an array of ksock_option_t terminated by an entry whose name
 * is NULL. Each entry says where the parsed value goes in a caller's
 * struct (offsetof), so a plugin receives its options already typed, the
 * way Fluent Bit's config_map works. The same tables print
 * `ksockd --describe-plugin` and docs/configuration.md.
 */
#ifndef KSOCK_CONFIG_H
#define KSOCK_CONFIG_H

#include <ksock/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- The config tree ------------------------------------------------- */

typedef struct ksock_config_s ksock_config_t; /* a parsed document */
typedef struct ksock_cfg_node_s ksock_cfg_t;  /* one value inside it */

typedef enum {
    KSOCK_CFG_NULL = 0,
    KSOCK_CFG_BOOL,
    KSOCK_CFG_INT,
    KSOCK_CFG_DOUBLE,
    KSOCK_CFG_STRING,
    KSOCK_CFG_ARRAY,
    KSOCK_CFG_OBJECT
} ksock_cfg_type_t;

/*
 * Parse a config file. On success *out is owned by the caller (free with
 * ksock_config_free()). Syntax errors give KSOCK_E_CONFIG with
 * "FILE:LINE:COL: message" in errstr; KSOCK_E_NOENT/KSOCK_E_IO if unreadable;
 * KSOCK_E_NOMEM.
 */
KSOCK_EXTERN int ksock_config_load_file(const char *path, ksock_config_t **out, char *errstr,
                                        size_t errstr_size);
/* Same from memory; `name` stands for the file name in messages. */
KSOCK_EXTERN int ksock_config_load_string(const char *name, const char *text, size_t len,
                                          ksock_config_t **out, char *errstr, size_t errstr_size);
KSOCK_EXTERN void ksock_config_free(ksock_config_t *cfg);

/* The root value (an object for a valid ksockd config). Borrowed from cfg. */
KSOCK_EXTERN const ksock_cfg_t *ksock_config_root(const ksock_config_t *cfg);
/* The file name given at load. */
KSOCK_EXTERN const char *ksock_config_name(const ksock_config_t *cfg);

/* Node accessors. All returned pointers are borrowed from the document. */
KSOCK_EXTERN ksock_cfg_type_t ksock_cfg_type(const ksock_cfg_t *n);
KSOCK_EXTERN const char *ksock_cfg_type_name(ksock_cfg_type_t t);
KSOCK_EXTERN int ksock_cfg_line(const ksock_cfg_t *n);
KSOCK_EXTERN int ksock_cfg_column(const ksock_cfg_t *n);
/* Object member by key, or NULL. */
KSOCK_EXTERN const ksock_cfg_t *ksock_cfg_get(const ksock_cfg_t *obj, const char *key);
/* Number of array elements or object members. */
KSOCK_EXTERN size_t ksock_cfg_count(const ksock_cfg_t *n);
/* i-th array element or object member value; for objects *key gets the member name. */
KSOCK_EXTERN const ksock_cfg_t *ksock_cfg_at(const ksock_cfg_t *n, size_t i, const char **key);
KSOCK_EXTERN const char *ksock_cfg_string(const ksock_cfg_t *n); /* NULL unless STRING */
KSOCK_EXTERN int64_t ksock_cfg_int(const ksock_cfg_t *n);        /* 0 unless INT */
KSOCK_EXTERN double ksock_cfg_double(const ksock_cfg_t *n);      /* INT or DOUBLE */
KSOCK_EXTERN bool ksock_cfg_bool(const ksock_cfg_t *n);          /* false unless BOOL */

/* ---- Option schemas --------------------------------------------------- */

typedef enum {
    KSOCK_OPT_STRING = 1, /* char *            (owned by the struct; freed by ksock_options_free) */
    KSOCK_OPT_INT,        /* int64_t */
    KSOCK_OPT_BOOL,       /* bool */
    KSOCK_OPT_DURATION,   /* int64_t milliseconds; "250ms", "30s", "5m", "1h", "2d" or an integer ms
                           */
    KSOCK_OPT_SIZE,       /* int64_t bytes; "512", "64KiB", "10MB", "1GiB" or an integer */
    KSOCK_OPT_ENUM,       /* int: index into enum_values */
    KSOCK_OPT_LIST,       /* ksock_strlist_t of strings */
    KSOCK_OPT_OBJECT,     /* const ksock_cfg_t *, borrowed from the config for its lifetime */
    KSOCK_OPT_DOUBLE,     /* double */
    KSOCK_OPT_ARRAY /* const ksock_cfg_t * to an array (of objects, say), borrowed like OBJECT */
} ksock_opt_type_t;

#define KSOCK_OPT_REQUIRED 0x1u /* no default: the key must be present */
#define KSOCK_OPT_SECRET   0x2u /* never printed or logged (passwords) */

typedef struct ksock_strlist_s {
    size_t n;
    char **v;
} ksock_strlist_t;

/*
 * One option. Tables are arrays of these terminated by {0}. The struct
 * grows only at the end; a plugin's descriptor records sizeof() so the
 * host can walk tables built against an older header.
 */
typedef struct ksock_option_s {
    const char *name;
    ksock_opt_type_t type;
    unsigned flags;  /* KSOCK_OPT_REQUIRED, KSOCK_OPT_SECRET */
    const char *def; /* default, written as in the config ("30s", "info", "true"); NULL: none */
    size_t offset;   /* where the value goes in the target struct */
    const char *const *enum_values; /* KSOCK_OPT_ENUM: NULL-terminated */
    int64_t min, max;               /* INT/DURATION/SIZE bounds when min < max */
    const char *description;
} ksock_option_t;

/* Helpers to write tables: KSOCK_OPTION(name, type, flags, def, struct, field, desc). */
#define KSOCK_OPTION(nm, ty, fl, df, st, field, desc)                                              \
    {                                                                                              \
        (nm), (ty), (fl), (df), offsetof(st, field), NULL, 0, 0, (desc)                            \
    }
#define KSOCK_OPTION_RANGE(nm, ty, fl, df, st, field, lo, hi, desc)                                \
    {                                                                                              \
        (nm), (ty), (fl), (df), offsetof(st, field), NULL, (lo), (hi), (desc)                      \
    }
#define KSOCK_OPTION_ENUM(nm, fl, df, st, field, values, desc)                                     \
    {                                                                                              \
        (nm), KSOCK_OPT_ENUM, (fl), (df), offsetof(st, field), (values), 0, 0, (desc)              \
    }
#define KSOCK_OPTION_END                                                                           \
    {                                                                                              \
        NULL, (ksock_opt_type_t)0, 0, NULL, 0, NULL, 0, 0, NULL                                    \
    }

/* "string", "int", "bool", "duration", "size", "enum", "list", "object", "double". */
KSOCK_EXTERN const char *ksock_opt_type_name(ksock_opt_type_t t);

/*
 * Validate `obj` (a config object, or NULL for "no options") against
 * `schema` and fill `target`. Every key of `obj` must be in the schema or in
 * `ignore` (a NULL-terminated list of keys handled by the caller, may be
 * NULL). `owner` names who the options belong to in messages, e.g.
 * `logsink "file"`. Defaults are applied for absent keys; strings and lists
 * are allocated into target and released by ksock_options_free().
 * `stride` is the size of one schema entry (sizeof(ksock_option_t) for
 * tables compiled with this header).
 * Errors: KSOCK_E_CONFIG with "FILE:LINE:COL: OWNER: key \"k\": reason";
 * KSOCK_E_NOMEM. On any error, release target with ksock_options_free() too.
 */
KSOCK_EXTERN int ksock_options_apply(const ksock_option_t *schema, size_t stride,
                                     const ksock_config_t *doc, const ksock_cfg_t *obj,
                                     const char *owner, const char *const *ignore, void *target,
                                     char *errstr, size_t errstr_size);

/* Free what ksock_options_apply() allocated into target. */
KSOCK_EXTERN void ksock_options_free(const ksock_option_t *schema, size_t stride, void *target);

/* Check a schema itself (names unique, defaults parse, enum lists present). */
KSOCK_EXTERN int ksock_options_check_schema(const ksock_option_t *schema, size_t stride,
                                            const char *owner, char *errstr, size_t errstr_size);

/*
 * The core's own schemas, for documentation and tools: "root" (top-level
 * keys), "log", "log.sink" (keys common to every sink), "log.sink.console",
 * "kafka" (our keys of the kafka section; librdkafka's own pass through).
 * NULL for an unknown section. Static storage.
 */
KSOCK_EXTERN const ksock_option_t *ksock_config_schema(const char *section);

/*
 * Validate a whole document without creating anything: top-level keys,
 * the log section and every sink's options against its plugin's schema
 * (plugins are loaded to read their schemas, but no instance is created).
 * Errors as for ksock_runtime_configure().
 */
KSOCK_EXTERN int ksock_config_check(ksock_runtime_t *rt, const ksock_config_t *cfg, char *errstr,
                                    size_t errstr_size);

/* Parse helpers, also used for defaults. Return 0 or KSOCK_E_INVAL. */
KSOCK_EXTERN int ksock_parse_duration_ms(const char *s, int64_t *out);
KSOCK_EXTERN int ksock_parse_size(const char *s, int64_t *out);

#ifdef __cplusplus
}
#endif
#endif
