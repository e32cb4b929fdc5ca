/*
 * libksock internals shared between core files. Not installed.
 */
#ifndef KSOCK_INTERNAL_H
#define KSOCK_INTERNAL_H

#include <ksock/ksock.h>
#include <pthread.h>
#include <stdatomic.h>

struct event;

typedef struct ksock__sink_s ksock__sink_t;

/* The logger: a set of sinks, each with its own level and format. */
typedef struct ksock__logger_s {
    pthread_mutex_t lock;  /* serializes sink writes across threads */
    _Atomic int threshold; /* lowest level any sink accepts */
    ksock__sink_t *sinks;  /* singly linked, in config order */
    int in_write;          /* recursion guard (a sink that logs) */
    ksock_buf_t scratch;   /* formatting buffer, under lock */
} ksock__logger_t;

struct ksock_runtime_s {
    struct event_base *base;
    pthread_t loop_thread;
    _Atomic int loop_thread_set;
    _Atomic int stopping;
    void *data;

    /* cross-thread posts */
    pthread_mutex_t post_lock;
    struct ksock__post_s *post_head, *post_tail;
    int post_fd; /* eventfd */
    struct event *post_ev;

    ksock__logger_t log;

    ksock_error_cb on_error;
    void *on_error_data;

    /* plugins */
    struct ksock_plugin_s *plugins; /* loaded plugins, most recent first */
    char **plugin_path;
    size_t plugin_path_n;

    /* configuration kept alive for the instances that borrow from it */
    ksock_config_t *owned_cfgs; /* adopted documents, linked through the documents */

    /* slots for other subsystems (serialization strategy state, ...) */
    void *serde_state;
    void (*serde_state_free)(void *);

    /* Kafka subsystem (core/kafka): embedded clusters, open handles; freed before logging */
    void *kafka_state;
    void (*kafka_state_free)(void *);
};

/* Logger lifecycle (log.c). */
int ksock__log_init(ksock_runtime_t *rt);
void ksock__log_destroy(ksock_runtime_t *rt);
/* Configure sinks from the config's "log" object (may be NULL: console at info). */
int ksock__log_configure(ksock_runtime_t *rt, const ksock_config_t *doc, const ksock_cfg_t *log,
                         bool check_only, char *errstr, size_t errstr_size);
const ksock_option_t *ksock__log_schema(void);
const ksock_option_t *ksock__log_sink_schema(void);
const ksock_option_t *ksock__log_console_schema(void);

/* Plugin registry teardown (plugin.c): fini + dlclose, after all instances are gone. */
void ksock__plugins_destroy(ksock_runtime_t *rt);
/* Read the config's "plugin_path" list into the runtime. */
int ksock__plugins_configure(ksock_runtime_t *rt, const ksock_config_t *doc,
                             const ksock_cfg_t *root, char *errstr, size_t errstr_size);

/* Config internals (config.c) used by options.c for messages. */
const char *ksock__cfg_doc_name(const ksock_config_t *doc);
/* The link that chains the documents a runtime adopted (runtime.c); NULL when not adopted. */
ksock_config_t **ksock__config_adopted_next(ksock_config_t *doc);

/* Per-runtime slot for the serialization API (core/serde). */
void *ksock__runtime_serde_state(ksock_runtime_t *rt);
void ksock__runtime_set_serde_state(ksock_runtime_t *rt, void *state, void (*free_fn)(void *));

/*
 * The serializer plugin behind a strategy that ksock_serde_strategy_from_plugin() made (the
 * client API encodes and decodes envelopes with it): its vtable, instance and the runtime's
 * decode limits, all borrowed for the runtime's life. KSOCK_E_INVAL for any other strategy.
 */
int ksock__serde_plugin_of(const ksock_serde_strategy_t *s, const ksock_serializer_vtable_t **vt,
                           void **inst, const ksock_value_limits_t **lim);

/* Per-runtime slot for the Kafka subsystem (core/kafka). */
void *ksock__runtime_kafka_state(ksock_runtime_t *rt);
void ksock__runtime_set_kafka_state(ksock_runtime_t *rt, void *state, void (*free_fn)(void *));

/*
 * Duplicate a string (malloc'ed, freed by the caller). NULL in, NULL out;
 * NULL for a non-NULL `s` means out of memory, which callers return as
 * KSOCK_E_NOMEM (docs/errors.md): `if (s && copy == NULL)`.
 */
char *ksock__strdup(const char *s);

/* include/ksock/plugin.h's opaque instance; the core reads it directly. */
struct ksock_plugin_instance_s {
    size_t size;
    ksock_plugin_t *plugin;
    const void *vtable;     /* the loader's copy of the plugin's vtable, kind-specific */
    void *inst;             /* what create() returned */
    void *options;          /* parsed options struct (owned) */
    ksock_plugin_ctx_t ctx; /* what create() received */
    char *name;             /* instance name (owned) */
    char *component;        /* log component (owned) */
};

/*
 * The built-in reconnect policy "backoff" (core/ws/backoff.c), registered
 * in every runtime. Its options struct, which core/ws/ws.c fills from
 * ksock_reconnect_opts_t; durations in milliseconds.
 */
typedef struct ksock__backoff_opts_s {
    int64_t max_retries;
    int64_t retry_delay;
    bool exponential_backoff;
    int64_t max_delay;
    bool jitter;
    int64_t stable_after;
} ksock__backoff_opts_t;
const ksock_plugin_desc_t *ksock__backoff_entry(void);
/* True when `p` is the built-in whose entry function is `entry`. */
bool ksock__plugin_is(const ksock_plugin_t *p, ksock_plugin_entry_fn entry);

/*
 * ksock_plugin_instance_new() with an options struct the caller filled in
 * (copied; `size` must be the plugin's options_struct_size and the struct
 * must own no memory) instead of options parsed from a config. For the
 * core's own built-ins only.
 */
int ksock__plugin_instance_new_typed(ksock_runtime_t *rt, ksock_plugin_t *p, const void *options,
                                     size_t size, ksock_plugin_instance_t **out, char *errstr,
                                     size_t errstr_size);

#endif
