/*
 * logsink "example": a complete, out-of-tree KafkaSocks log-sink plugin.
 *
 * Copy this directory to start your own plugin. It shows every piece a
 * plugin needs, in the order the host uses them:
 *
 *   1. an options struct and the typed table that describes it: the host
 *      validates the config against the table and fills the struct before
 *      any of this file's code runs;
 *   2. create()/destroy(): one instance per configured sink, all state in
 *      the instance (the same .so may be configured several times);
 *   3. the log-sink functions: set_format, write, flush, reopen, stats;
 *   4. the vtable and the descriptor, exported through the one entry
 *      symbol by KSOCK_PLUGIN_DEFINE().
 *
 * What it does: every record is written as one line
 *
 *     <prefix> #<n> <the record, formatted as text or json>
 *
 * to stderr, stdout, or a file, where <n> counts the records this
 * instance has written. For logrotate: ksockd's SIGHUP rebuilds every sink
 * from the config (a new instance opens the file afresh), and
 * ksock_log_reopen() reopens it in place.
 *
 * Configure it as a log sink (the file must be named logsink_example.so and
 * sit in a directory of the plugin search path):
 *
 *     "plugin_path": ["/path/to/examples/logsink_example/build"],
 *     "log": {"sinks": [{"type": "example", "prefix": "[demo]"}]}
 *
 * Build: make (see the Makefile: pkg-config --cflags --libs ksock is all it needs).
 * ABI guide: docs/plugins.md in the KafkaSocks source tree.
 */
/* POSIX 2008 for strdup() and O_CLOEXEC under -std=c11. */
#define _POSIX_C_SOURCE 200809L

#include <ksock/logsink.h> /* the log-sink vtable; includes plugin.h, config.h, log.h, error.h */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- 1. Options ----------------------------------------------------------- */

/*
 * The parsed options. The host allocates it (zeroed), fills it from the
 * config through the table below, passes it to create(), and frees it after
 * destroy(), strings included: the plugin only reads it, and copies what it
 * wants to keep.
 */
typedef struct example_opts_s {
    char *prefix;  /* KSOCK_OPT_STRING -> char * */
    char *path;    /* optional: NULL when the key is absent and has no default */
    int stream;    /* KSOCK_OPT_ENUM -> int, the index into stream_names */
    bool numbered; /* KSOCK_OPT_BOOL -> bool */
} example_opts_t;

static const char *const stream_names[] = {"stderr", "stdout", NULL};

/*
 * The schema: name, type, flags, default (written as in the config),
 * where the value goes, description. `ksockd --describe-plugin example`
 * prints this table, and an unknown key, a wrong type or a bad value in the
 * config stops ksockd with "FILE:LINE:COL: logsink \"example\": key ...".
 * The keys "type", "name", "level" and "format" of a sink belong to the
 * core; do not declare them.
 */
static const ksock_option_t example_options[] = {
    KSOCK_OPTION("prefix", KSOCK_OPT_STRING, 0, "example", example_opts_t, prefix,
                 "Text written at the start of every line"),
    KSOCK_OPTION("path", KSOCK_OPT_STRING, 0, NULL, example_opts_t, path,
                 "Append to this file instead of writing to `stream`; reopened on SIGHUP"),
    KSOCK_OPTION_ENUM("stream", 0, "stderr", example_opts_t, stream, stream_names,
                      "Where lines go when no path is set: stderr or stdout"),
    KSOCK_OPTION("numbered", KSOCK_OPT_BOOL, 0, "true", example_opts_t, numbered,
                 "Write the record's number (#1, #2, ...) after the prefix"),
    KSOCK_OPTION_END,
};

/* ---- 2. Instances ------------------------------------------------------------ */

/*
 * Everything an instance needs. No static or global variables: two sinks
 * of type "example" in one config are two of these, side by side.
 *
 * Threads: the core calls write() from whichever thread logs, but always
 * under its logger lock, and takes the same lock around flush(), reopen()
 * and stats(); create() and destroy() run on the loop thread when no
 * record can arrive. So these calls never overlap and the instance needs
 * no lock of its own. (A sink that owns a thread or a timer needs one.)
 */
typedef struct example_sink_s {
    ksock_runtime_t *rt; /* borrowed from the ctx: for ksock_log(), timers, posting */
    char *component;     /* our copy of ctx->component, e.g. "logsink:example/audit" */
    char *prefix;        /* copies of the options we keep */
    char *path;          /* NULL: write to fd, which is stderr or stdout */
    bool numbered;
    int fd;
    bool own_fd; /* fd is a file we opened and must close */
    ksock_log_format_t format;
    ksock_buf_t line; /* reused for every record: no malloc per record */
    uint64_t written, errors;
} example_sink_t;

static int example_open(const char *path)
{
    /* O_APPEND: one write(2) per record lands whole even with other writers. */
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

static void example_destroy(void *inst);

/*
 * Make an instance. `options` is the example_opts_t the host filled; the
 * ctx and the options are borrowed (valid until destroy returns), so keep
 * copies of what you need. On failure fill errstr and return a KSOCK_E_*
 * code: the host prefixes the message with the sink's name and refuses to
 * start.
 */
static int example_create(const ksock_plugin_ctx_t *ctx, const void *options, void **inst,
                          char *errstr, size_t errstr_size)
{
    const example_opts_t *o = options;
    example_sink_t *s = calloc(1, sizeof(*s));
    if (s == NULL) return KSOCK_E_NOMEM;
    s->rt = ctx->rt;
    s->fd = -1;
    s->format = KSOCK_LOG_FORMAT_TEXT; /* until set_format() says otherwise */
    s->numbered = o->numbered;
    s->component = strdup(ctx->component);
    s->prefix = strdup(o->prefix); /* never NULL: the option has a default */
    if (o->path) s->path = strdup(o->path);
    if (s->component == NULL || s->prefix == NULL || (o->path && s->path == NULL)) {
        example_destroy(s);
        return KSOCK_E_NOMEM;
    }
    if (s->path) {
        /* Fail now, at start-up, rather than drop every record later. */
        s->fd = example_open(s->path);
        if (s->fd < 0) {
            ksock_errstr_set(errstr, errstr_size, "cannot open \"%s\": %s", s->path,
                             strerror(errno));
            example_destroy(s);
            return KSOCK_E_IO;
        }
        s->own_fd = true;
    } else {
        s->fd = o->stream == 1 ? STDOUT_FILENO : STDERR_FILENO;
    }
    *inst = s;
    return 0;
}

/* Release an instance. Every record it accepted has been written already. */
static void example_destroy(void *inst)
{
    example_sink_t *s = inst;
    if (s->own_fd) close(s->fd);
    ksock_buf_free(&s->line);
    free(s->component);
    free(s->prefix);
    free(s->path);
    free(s);
}

/* ---- 3. The log-sink functions --------------------------------------------------- */

/* Called once after create() with the sink's "format" (text or json). */
static void example_set_format(void *inst, ksock_log_format_t fmt)
{
    example_sink_t *s = inst;
    s->format = fmt;
}

/*
 * Take one record. It is borrowed for this call only. Must not block for
 * long: a local file or a terminal is fine, a network peer is not (queue
 * and send from the loop instead, like the http sink). Return 0, or a
 * negative code if the record was dropped; the core counts such drops
 * itself and reports the first of a run through the runtime's error
 * handler.
 */
static int example_write(void *inst, const ksock_log_record_t *rec)
{
    example_sink_t *s = inst;
    s->line.len = 0;
    int rc = s->numbered ? ksock_buf_appendf(&s->line, "%s #%llu ", s->prefix,
                                             (unsigned long long)(s->written + 1))
                         : ksock_buf_appendf(&s->line, "%s ", s->prefix);
    /* The core's own formatter: the same text/json lines as every other sink. */
    if (rc == 0) rc = ksock_log_record_format(rec, s->format, &s->line);
    if (rc != 0) return rc; /* the core counts the record as dropped */
    size_t off = 0;
    while (off < s->line.len) {
        ssize_t n = write(s->fd, s->line.data + off, s->line.len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            s->errors++;
            return ksock_err_from_errno(n < 0 ? errno : EIO);
        }
        off += (size_t)n;
    }
    s->written++;
    return 0;
}

/* Nothing is buffered: every record went out in write(). May be NULL in the vtable. */
static void example_flush(void *inst)
{
    (void)inst;
}

/*
 * Reopen the file (ksock_log_reopen(), e.g. after logrotate moved it). If
 * the new open fails, keep writing to the old file: losing records would
 * be worse. Count the failure rather than log it: like write(), this runs
 * under the logger lock, so a record logged from here is dropped.
 */
static void example_reopen(void *inst)
{
    example_sink_t *s = inst;
    if (!s->own_fd) return;
    int fd = example_open(s->path);
    if (fd < 0) {
        s->errors++;
        return;
    }
    close(s->fd);
    s->fd = fd;
}

/*
 * Counters for ksock_log_stats() and operators. `written` replaces the
 * core's count; `dropped` is only for records lost after write() accepted
 * them (a sink with a queue), because the core already counts every write()
 * that returned an error. This sink never loses an accepted record.
 */
static void example_stats(void *inst, uint64_t *written, uint64_t *dropped, uint64_t *errors)
{
    example_sink_t *s = inst;
    *written = s->written;
    *dropped = 0;
    *errors = s->errors;
}

/* ---- 4. The vtable, the descriptor and the entry symbol ------------------------------ */

/*
 * `.size = sizeof(...)` records which version of the vtable this plugin was
 * compiled against: a newer host reads only that many bytes and treats
 * later members as absent. Designated initializers keep this correct when
 * the header grows.
 */
static const ksock_logsink_vtable_t example_vtable = {
    .size = sizeof(ksock_logsink_vtable_t),
    .create = example_create,
    .destroy = example_destroy,
    .set_format = example_set_format,
    .write = example_write,
    .flush = example_flush,
    .reopen = example_reopen,
    .stats = example_stats,
};

/*
 * KSOCK_PLUGIN_HEADER fills magic, ABI major/minor, struct_size, kind and
 * option_size from the headers you compile against; the host refuses the
 * plugin if they do not fit (see docs/plugins.md for the rules and the
 * exact messages). The name must be [a-z0-9_-]{1,64} and match the file:
 * logsink_<name>.so.
 */
static const ksock_plugin_desc_t example_desc = {
    KSOCK_PLUGIN_HEADER(KSOCK_PLUGIN_LOGSINK),
    .name = "example",
    .version = "1.0.0",
    .description = "Example out-of-tree log sink: numbered, prefixed lines to stderr, stdout "
                   "or a file",
    .options = example_options,
    .options_struct_size = sizeof(example_opts_t),
    .vtable = &example_vtable,
    /* .init / .fini: optional, once per loaded file; none needed here. */
};

/*
 * Exports `ksock_plugin_entry`, the only visible symbol of the .so (build
 * with -fvisibility=hidden). With -DKSOCK_PLUGIN_BUILTIN the same line
 * defines ksock_builtin_logsink_example() instead, for linking the plugin
 * into a program and registering it with ksock_plugins_register_builtin().
 */
KSOCK_PLUGIN_DEFINE(logsink_example, example_desc)
