/*
 * The KafkaSocks plugin ABI.
 *
 * A plugin is a shared object exporting exactly one symbol,
 * `ksock_plugin_entry`, a function returning a pointer to a constant
 * descriptor. The host checks the descriptor before it runs any other
 * plugin code:
 *
 *   - magic == KSOCK_PLUGIN_MAGIC
 *   - abi_major == the host's major, abi_minor <= the host's minor
 *   - struct_size >= the size of the descriptor at ABI 1.0
 *   - the vtable's leading size >= the size of that kind's vtable at 1.0
 *   - kind known, name non-empty, options schema well formed
 *
 * and refuses anything else with a message naming the file and the reason.
 * Every struct that crosses the boundary starts with its size and grows only
 * at the end: add new members after the last one, never reorder, never
 * remove. A host reading a field beyond what a plugin's size covers treats
 * it as absent (NULL/0).
 *
 * Build a plugin with hidden visibility (-fvisibility=hidden) and
 * KSOCK_PLUGIN_DEFINE(); link it against libksock (pkg-config ksock).
 * Defining KSOCK_PLUGIN_BUILTIN builds the same source into a program
 * instead: the entry is then named ksock_builtin_<id>() and registered
 * with ksock_plugins_register_builtin().
 */
#ifndef KSOCK_PLUGIN_H
#define KSOCK_PLUGIN_H

#include <ksock/common.h>
#include <ksock/config.h>
#include <ksock/error.h>
#include <ksock/log.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KSOCK_PLUGIN_MAGIC        0x4b53504cu /* "KSPL" */
#define KSOCK_PLUGIN_ABI_MAJOR    1
#define KSOCK_PLUGIN_ABI_MINOR    3
#define KSOCK_PLUGIN_ENTRY_SYMBOL "ksock_plugin_entry"

typedef enum {
    KSOCK_PLUGIN_TRANSPORT = 1,
    KSOCK_PLUGIN_SERIALIZER = 2,
    KSOCK_PLUGIN_RECONNECT = 3,
    KSOCK_PLUGIN_AUTH = 4,
    KSOCK_PLUGIN_LOGSINK = 5
} ksock_plugin_kind_t;

/* "transport", "serializer", "reconnect", "auth", "logsink"; NULL if unknown. */
KSOCK_EXTERN const char *ksock_plugin_kind_name(ksock_plugin_kind_t kind);
/* Parse a kind name; returns 0 or KSOCK_E_INVAL. */
KSOCK_EXTERN int ksock_plugin_kind_parse(const char *name, ksock_plugin_kind_t *out);

/*
 * What the host hands to a plugin instance at creation. Borrowed: valid
 * until the instance's destroy returns.
 */
typedef struct ksock_plugin_ctx_s {
    size_t size;               /* sizeof(ksock_plugin_ctx_t) as compiled into the host */
    ksock_runtime_t *rt;       /* for logging, timers, posting to the loop */
    const char *instance;      /* the instance name from the config, e.g. "main" */
    const char *component;     /* the name to log under, e.g. "logsink:file/main" */
    const ksock_config_t *doc; /* the config the options came from (for ksock_cfg_* nodes) */
} ksock_plugin_ctx_t;

/*
 * Every kind's vtable starts with these members, in this order, so the
 * host can create and destroy instances of any kind the same way.
 *   size:    sizeof(the vtable) the plugin was built with
 *   create:  make an instance from the parsed options struct (borrowed,
 *            valid until destroy returns); *inst is the plugin's.
 *            Return 0, or a KSOCK_E_* code with errstr filled. Loop thread.
 *   destroy: release an instance. Loop thread.
 */
#define KSOCK_VTABLE_HEAD                                                                          \
    size_t size;                                                                                   \
    int (*create)(const ksock_plugin_ctx_t *ctx, const void *options, void **inst, char *errstr,   \
                  size_t errstr_size);                                                             \
    void (*destroy)(void *inst)

typedef struct ksock_vtable_head_s {
    KSOCK_VTABLE_HEAD;
} ksock_vtable_head_t;

/*
 * The descriptor. `options` describes the plugin's per-instance options:
 * the host validates the config against it and fills a struct of
 * `options_struct_size` bytes (zeroed first) that it passes to the kind's
 * create(); the host frees it after destroy().
 */
typedef struct ksock_plugin_desc_s {
    uint32_t magic;       /* KSOCK_PLUGIN_MAGIC */
    uint16_t abi_major;   /* KSOCK_PLUGIN_ABI_MAJOR the plugin was built with */
    uint16_t abi_minor;   /* KSOCK_PLUGIN_ABI_MINOR the plugin was built with */
    uint32_t struct_size; /* sizeof(ksock_plugin_desc_t) the plugin was built with */
    uint32_t kind;        /* ksock_plugin_kind_t */
    const char *name;     /* unique within its kind: [a-z0-9_-]+ */
    const char *version;  /* the plugin's own version, free form */
    const char *description;
    const ksock_option_t *options; /* terminated by KSOCK_OPTION_END; may be NULL */
    uint32_t option_size;          /* sizeof(ksock_option_t) the plugin was built with */
    uint32_t options_struct_size;  /* size of the struct options are parsed into */
    const void *vtable;            /* kind-specific, starts with size_t size */
    /* Optional, once per loaded file, before any instance / after the last one. */
    int (*init)(char *errstr, size_t errstr_size);
    void (*fini)(void);
} ksock_plugin_desc_t;

typedef const ksock_plugin_desc_t *(*ksock_plugin_entry_fn)(void);

#ifdef KSOCK_PLUGIN_BUILTIN
#define KSOCK_PLUGIN_DEFINE(id, desc)                                                              \
    const ksock_plugin_desc_t *ksock_builtin_##id(void);                                           \
    const ksock_plugin_desc_t *ksock_builtin_##id(void)                                            \
    {                                                                                              \
        return &(desc);                                                                            \
    }
#else
#define KSOCK_PLUGIN_DEFINE(id, desc)                                                              \
    KSOCK_VISIBLE const ksock_plugin_desc_t *ksock_plugin_entry(void);                             \
    KSOCK_VISIBLE const ksock_plugin_desc_t *ksock_plugin_entry(void)                              \
    {                                                                                              \
        return &(desc);                                                                            \
    }
#endif

/* Fill the fixed header fields of a descriptor. */
#define KSOCK_PLUGIN_HEADER(kind_)                                                                 \
    .magic = KSOCK_PLUGIN_MAGIC, .abi_major = KSOCK_PLUGIN_ABI_MAJOR,                              \
    .abi_minor = KSOCK_PLUGIN_ABI_MINOR, .struct_size = sizeof(ksock_plugin_desc_t),               \
    .kind = (kind_), .option_size = sizeof(ksock_option_t)

/* ---- The registry (host side) ---------------------------------------- */

/* A loaded plugin. Owned by the runtime; borrowed by callers. */
typedef struct ksock_plugin_s ksock_plugin_t;

/*
 * Find and load the plugin of `kind` named `name`: registered built-ins
 * first, then `<dir>/<kind>_<name>.so` in each search-path directory
 * (config "plugin_path", then $KSOCK_PLUGIN_PATH, then the installed
 * default). A plugin loaded once is reused. Errors: KSOCK_E_NOENT (not
 * found, errstr lists where it looked), KSOCK_E_PLUGIN / KSOCK_E_ABI
 * (refused, errstr names the file and the reason).
 */
KSOCK_EXTERN int ksock_plugin_find(ksock_runtime_t *rt, ksock_plugin_kind_t kind, const char *name,
                                   ksock_plugin_t **out, char *errstr, size_t errstr_size);

/* Load a plugin from an explicit file path, with the same checks. */
KSOCK_EXTERN int ksock_plugin_load_file(ksock_runtime_t *rt, const char *path, ksock_plugin_t **out,
                                        char *errstr, size_t errstr_size);

/* Register a plugin compiled into the program (KSOCK_PLUGIN_BUILTIN). Same checks. */
KSOCK_EXTERN int ksock_plugins_register_builtin(ksock_runtime_t *rt, ksock_plugin_entry_fn entry,
                                                char *errstr, size_t errstr_size);

/* Prepend a directory to the runtime's plugin search path (no-op if it is already there). */
KSOCK_EXTERN int ksock_plugin_path_add(ksock_runtime_t *rt, const char *dir);

/* The installed default plugin directory compiled into the library. */
KSOCK_EXTERN const char *ksock_plugin_default_dir(void);

/* Accessors. Strings borrowed from the plugin's descriptor. */
KSOCK_EXTERN const ksock_plugin_desc_t *ksock_plugin_desc(const ksock_plugin_t *p);
KSOCK_EXTERN const char *ksock_plugin_file(const ksock_plugin_t *p); /* "(builtin)" for built-ins */

/*
 * Validate a plugin's descriptor without loading the file, e.g. for a
 * descriptor just obtained from an entry function. `file` is used in
 * messages. Returns 0 or KSOCK_E_ABI/KSOCK_E_PLUGIN.
 */
KSOCK_EXTERN int ksock_plugin_desc_check(const ksock_plugin_desc_t *d, const char *file,
                                         char *errstr, size_t errstr_size);

/*
 * A generic plugin instance: the plugin, its instance pointer and its
 * parsed options, read through the accessors below (the struct is opaque,
 * so it can grow). Created by ksock_plugin_instance_new(), which validates
 * `opts_obj` against the schema (keys in `ignore` are skipped), fills the
 * options struct and calls the kind's create(). The caller owns the result
 * and releases it with ksock_plugin_instance_free(), which calls destroy().
 */
typedef struct ksock_plugin_instance_s ksock_plugin_instance_t; /* opaque since ABI 1.1 */

/*
 * What an instance holds, borrowed for its lifetime: the kind's vtable
 * (cast to ksock_<kind>_vtable_t), what create() returned, the plugin,
 * its parsed options struct, its name and log component. ABI 1.1.
 */
KSOCK_EXTERN const void *ksock_plugin_instance_vtable(const ksock_plugin_instance_t *pi);
KSOCK_EXTERN void *ksock_plugin_instance_inst(const ksock_plugin_instance_t *pi);
KSOCK_EXTERN ksock_plugin_t *ksock_plugin_instance_plugin(const ksock_plugin_instance_t *pi);
KSOCK_EXTERN const void *ksock_plugin_instance_options(const ksock_plugin_instance_t *pi);
KSOCK_EXTERN const char *ksock_plugin_instance_name(const ksock_plugin_instance_t *pi);
KSOCK_EXTERN const char *ksock_plugin_instance_component(const ksock_plugin_instance_t *pi);

KSOCK_EXTERN int ksock_plugin_instance_new(ksock_runtime_t *rt, ksock_plugin_t *p,
                                           const char *instance_name, const ksock_config_t *doc,
                                           const ksock_cfg_t *opts_obj, const char *const *ignore,
                                           ksock_plugin_instance_t **out, char *errstr,
                                           size_t errstr_size);
KSOCK_EXTERN void ksock_plugin_instance_free(ksock_plugin_instance_t *pi);

/*
 * Validate `opts_obj` against the plugin's schema without creating an
 * instance (no plugin code runs): `ksockd --check-config`.
 */
KSOCK_EXTERN int ksock_plugin_check_options(ksock_plugin_t *p, const char *instance_name,
                                            const ksock_config_t *doc, const ksock_cfg_t *opts_obj,
                                            const char *const *ignore, char *errstr,
                                            size_t errstr_size);

/*
 * Report every built-in plugin (file "(builtin)"), then every `.so` in the
 * search path (for --list-plugins).
 */
typedef void (*ksock_plugin_scan_cb)(const char *file, const ksock_plugin_desc_t *desc, int err,
                                     const char *errstr, void *data);
KSOCK_EXTERN void ksock_plugin_scan(ksock_runtime_t *rt, ksock_plugin_scan_cb cb, void *data);

#ifdef __cplusplus
}
#endif
#endif
