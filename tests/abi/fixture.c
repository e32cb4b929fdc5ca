/*
 * ABI fixture plugins: one source, many shared objects.
 *
 * tests/abi/meson.build compiles this file once per fixture with
 * -DFIXTURE_NAME="<name>" and -DFIXTURE_<NAME>, into logsink_<name>.so.
 * Without any variant macro it is a small, correct log sink (fixture_good);
 * each variant breaks exactly one thing the loader must refuse, so a
 * refusal can only be for the reason under test. test-loader.c holds the
 * table of variants and the reason each must be refused with.
 *
 * Built with -DKSOCK_PLUGIN_BUILTIN (and FIXTURE_NAME "fixture_builtin")
 * the same source links into the test program as a built-in plugin.
 */
#include "fixture.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef FIXTURE_NAME
#error "build with -DFIXTURE_NAME=\"<name>\""
#endif

#define FIXTURE_UNUSED __attribute__((unused))

/* ---- Life-cycle trace (see fixture.h) ------------------------------------- */

static void trace(const char *event, const char *arg)
{
    const char *path = getenv(FIXTURE_TRACE_ENV);
    if (path == NULL || *path == '\0') return;
    FILE *f = fopen(path, "a");
    if (f == NULL) return;
    fprintf(f, "%s%s%s\n", event, arg ? " " : "", arg ? arg : "");
    fclose(f);
}

#ifndef KSOCK_PLUGIN_BUILTIN
/* Runs at dlclose(): proves the loader unloads only after fini. */
__attribute__((destructor)) static void fixture_unload(void)
{
    trace("unload", NULL);
}
#endif

/* ---- Options -------------------------------------------------------------- */

#ifdef FIXTURE_EMPTY_ENUM
static const char *const mode_names[] = {NULL}; /* an enum that allows nothing */
#else
static const char *const mode_names[] = {"count", "drop", NULL};
#endif

#ifdef FIXTURE_BAD_DEFAULT
#define LIMIT_DEFAULT "lots" /* not an integer: the schema check must catch it */
#else
#define LIMIT_DEFAULT "100"
#endif

static const ksock_option_t fixture_options[] FIXTURE_UNUSED = {
    KSOCK_OPTION("tag", KSOCK_OPT_STRING, KSOCK_OPT_REQUIRED, NULL, fixture_opts_t, tag,
                 "Prefix of every line this sink writes"),
    KSOCK_OPTION_RANGE("limit", KSOCK_OPT_INT, 0, LIMIT_DEFAULT, fixture_opts_t, limit, 0, 1000,
                       "In drop mode, records accepted before the sink drops the rest"),
    KSOCK_OPTION_ENUM("mode", 0, "count", fixture_opts_t, mode, mode_names,
                      "count: accept everything; drop: refuse records past limit"),
    KSOCK_OPTION("interval", KSOCK_OPT_DURATION, 0, "1s", fixture_opts_t, interval_ms,
                 "A duration, stored and otherwise ignored"),
    KSOCK_OPTION("buffer", KSOCK_OPT_SIZE, 0, "4KiB", fixture_opts_t, buffer,
                 "A size, stored and otherwise ignored"),
    KSOCK_OPTION("fail_create", KSOCK_OPT_BOOL, 0, "false", fixture_opts_t, fail_create,
                 "Make create() fail (tests the error path)"),
    KSOCK_OPTION("path", KSOCK_OPT_STRING, 0, NULL, fixture_opts_t, path,
                 "File to append \"tag: message\" lines to; none: count only"),
#ifdef FIXTURE_DUP_OPTION
    KSOCK_OPTION("tag", KSOCK_OPT_STRING, 0, NULL, fixture_opts_t, tag, "Declared twice"),
#endif
    KSOCK_OPTION_END,
};

/* ---- The log sink ----------------------------------------------------------- */

static void copy_str(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

#ifdef FIXTURE_UNRESOLVED
/*
 * Defined nowhere. Default visibility, so the link leaves it to the dynamic
 * linker, and dlopen(RTLD_NOW) must then fail on it.
 */
KSOCK_VISIBLE int ksock_fixture_symbol_nobody_defines(void);
#endif

#ifdef FIXTURE_NEWER_SYMBOLS
/* From future_stub.c, symbol version KSOCK_1.99: no real libksock has it. */
int ksock_fixture_future_fn(void);
#endif

static int fixture_create(const ksock_plugin_ctx_t *ctx, const void *options, void **inst,
                          char *errstr, size_t errstr_size)
{
    const fixture_opts_t *o = options;
#ifdef FIXTURE_UNRESOLVED
    if (ksock_fixture_symbol_nobody_defines() != 0) return KSOCK_E_INTERNAL;
#endif
#ifdef FIXTURE_NEWER_SYMBOLS
    if (ksock_fixture_future_fn() != 0) return KSOCK_E_INTERNAL;
#endif
    if (o->fail_create) {
        ksock_errstr_set(errstr, errstr_size, "fixture refused to create: fail_create is set");
        return KSOCK_E_CONFIG;
    }
    fixture_inst_t *fi = calloc(1, sizeof(*fi));
    if (fi == NULL) return KSOCK_E_NOMEM;
    fi->magic = FIXTURE_INST_MAGIC;
    fi->rt = ctx->rt;
    copy_str(fi->tag, sizeof(fi->tag), o->tag);
    copy_str(fi->instance, sizeof(fi->instance), ctx->instance);
    copy_str(fi->component, sizeof(fi->component), ctx->component);
    fi->limit = o->limit;
    fi->mode = o->mode;
    fi->interval_ms = o->interval_ms;
    fi->buffer = o->buffer;
    fi->fd = -1;
    if (o->path) {
        fi->fd = open(o->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fi->fd < 0) {
            ksock_errstr_set(errstr, errstr_size, "cannot open \"%s\"", o->path);
            free(fi);
            return KSOCK_E_IO;
        }
    }
    trace("create", fi->tag);
    *inst = fi;
    return 0;
}

static void fixture_destroy(void *inst)
{
    fixture_inst_t *fi = inst;
    trace("destroy", fi->tag);
    if (fi->fd >= 0) close(fi->fd);
    free(fi);
}

static void fixture_set_format(void *inst, ksock_log_format_t fmt)
{
    fixture_inst_t *fi = inst;
    fi->format = fmt;
    fi->format_set = true;
}

static FIXTURE_UNUSED int fixture_write(void *inst, const ksock_log_record_t *rec)
{
    fixture_inst_t *fi = inst;
    if (fi->mode == FIXTURE_MODE_DROP && fi->written >= (uint64_t)fi->limit) {
        fi->refused++; /* the core counts it as dropped; stats() must not */
        return KSOCK_E_QUEUE_FULL;
    }
    if (fi->fd >= 0) {
        char line[1024];
        int n = snprintf(line, sizeof(line), "%s: %s\n", fi->tag, rec->message);
        if (n > (int)sizeof(line) - 1) n = (int)sizeof(line) - 1;
        if (write(fi->fd, line, (size_t)n) != n) return KSOCK_E_IO;
    }
    fi->written++;
    return 0;
}

/*
 * flush() and reopen() log a record: a sink may well want to say "reopened
 * X". The core holds its logger lock around these calls; the record must be
 * dropped, not deadlock (test: sink_may_log_from_its_callbacks).
 */
static void fixture_flush(void *inst)
{
    fixture_inst_t *fi = inst;
    fi->flushes++;
    ksock_log(fi->rt, KSOCK_LOG_ERROR, fi->component, NULL, 0, "flushed %s", fi->tag);
}

static void fixture_reopen(void *inst)
{
    fixture_inst_t *fi = inst;
    fi->reopens++;
    ksock_log(fi->rt, KSOCK_LOG_ERROR, fi->component, NULL, 0, "reopened %s", fi->tag);
}

static void fixture_stats(void *inst, uint64_t *written, uint64_t *dropped, uint64_t *errors)
{
    fixture_inst_t *fi = inst;
    *written = fi->written;
    *dropped = 0; /* only losses after write() accepted a record, and there are none */
    *errors = 0;
    ksock_log(fi->rt, KSOCK_LOG_ERROR, fi->component, NULL, 0, "stats %s", fi->tag);
}

static FIXTURE_UNUSED int fixture_init(char *errstr, size_t errstr_size)
{
#ifdef FIXTURE_INIT_FAILS
    ksock_errstr_set(errstr, errstr_size, "this fixture always fails its init");
    return KSOCK_E_UNSUPPORTED;
#else
    trace("init", NULL);
    return 0;
#endif
}

static void fixture_fini(void)
{
    trace("fini", NULL);
}

/* ---- The descriptor, with one thing broken per variant ----------------------- */

#ifdef FIXTURE_SHORT_VTABLE
/* A vtable that claims to end before write(): built against a header that never existed. */
#define VTABLE_SIZE offsetof(ksock_logsink_vtable_t, write)
#else
#define VTABLE_SIZE sizeof(ksock_logsink_vtable_t)
#endif

static const ksock_logsink_vtable_t fixture_vtable FIXTURE_UNUSED = {
    .size = VTABLE_SIZE,
    .create = fixture_create,
    .destroy = fixture_destroy,
    .set_format = fixture_set_format,
#ifndef FIXTURE_MISSING_FN
    .write = fixture_write,
#endif
    .flush = fixture_flush,
    .reopen = fixture_reopen,
    .stats = fixture_stats,
};

#if defined(FIXTURE_MISNAMED)
#define DECLARED_NAME "someone_else" /* the file says "misnamed" */
#elif defined(FIXTURE_ZZ_DUPLICATE)
#define DECLARED_NAME "fixture_good" /* a second file claiming the good fixture's name */
#elif defined(FIXTURE_BAD_NAME)
#define DECLARED_NAME "Bad Name!"
#else
#define DECLARED_NAME FIXTURE_NAME
#endif

/*
 * The header fields. The good fixture uses KSOCK_PLUGIN_HEADER() like any
 * plugin; a variant that breaks one of them spells them all out (overriding
 * a designated initializer would trip -Woverride-init).
 */
#if defined(FIXTURE_BAD_MAGIC) || defined(FIXTURE_NEWER_MAJOR) || defined(FIXTURE_NEWER_MINOR) ||  \
    defined(FIXTURE_SHORT_DESC) || defined(FIXTURE_BAD_KIND) || defined(FIXTURE_SHORT_OPTION)
#define HEADER_MAGIC       KSOCK_PLUGIN_MAGIC
#define HEADER_MAJOR       KSOCK_PLUGIN_ABI_MAJOR
#define HEADER_MINOR       KSOCK_PLUGIN_ABI_MINOR
#define HEADER_SIZE        sizeof(ksock_plugin_desc_t)
#define HEADER_KIND        KSOCK_PLUGIN_LOGSINK
#define HEADER_OPTION_SIZE sizeof(ksock_option_t)
#if defined(FIXTURE_BAD_MAGIC)
#undef HEADER_MAGIC
#define HEADER_MAGIC 0x46414b45u /* "FAKE" */
#elif defined(FIXTURE_NEWER_MAJOR)
#undef HEADER_MAJOR
#define HEADER_MAJOR (KSOCK_PLUGIN_ABI_MAJOR + 1)
#elif defined(FIXTURE_NEWER_MINOR)
#undef HEADER_MINOR
#define HEADER_MINOR (KSOCK_PLUGIN_ABI_MINOR + 1)
#elif defined(FIXTURE_SHORT_DESC)
/* As if built against a header whose descriptor ended before `options`. */
#undef HEADER_SIZE
#define HEADER_SIZE offsetof(ksock_plugin_desc_t, options)
#elif defined(FIXTURE_BAD_KIND)
#undef HEADER_KIND
#define HEADER_KIND 99
#elif defined(FIXTURE_SHORT_OPTION)
/* Option entries shorter than ABI 1.0's ksock_option_t. */
#undef HEADER_OPTION_SIZE
#define HEADER_OPTION_SIZE offsetof(ksock_option_t, offset)
#endif
#define FIXTURE_HEADER                                                                             \
    .magic = HEADER_MAGIC, .abi_major = HEADER_MAJOR, .abi_minor = HEADER_MINOR,                   \
    .struct_size = (uint32_t)HEADER_SIZE, .kind = HEADER_KIND,                                     \
    .option_size = (uint32_t)HEADER_OPTION_SIZE
#else
#define FIXTURE_HEADER KSOCK_PLUGIN_HEADER(KSOCK_PLUGIN_LOGSINK)
#endif

static const ksock_plugin_desc_t fixture_desc FIXTURE_UNUSED = {
    FIXTURE_HEADER,
    .name = DECLARED_NAME,
    .version = "1.2.3",
    .description = "ABI test fixture (" FIXTURE_NAME ")",
    .options = fixture_options,
#ifdef FIXTURE_NO_OPTS_SIZE
    .options_struct_size = 0,
#else
    .options_struct_size = sizeof(fixture_opts_t),
#endif
#ifdef FIXTURE_NULL_VTABLE
    .vtable = NULL,
#else
    .vtable = &fixture_vtable,
#endif
    .init = fixture_init,
    .fini = fixture_fini,
};

#if defined(FIXTURE_NO_ENTRY)
/* A misspelled entry point: the loader looks for exactly ksock_plugin_entry. */
KSOCK_VISIBLE const ksock_plugin_desc_t *ksock_plugin_entrypoint(void);
KSOCK_VISIBLE const ksock_plugin_desc_t *ksock_plugin_entrypoint(void)
{
    return &fixture_desc;
}
#elif defined(FIXTURE_NULL_DESC)
KSOCK_VISIBLE const ksock_plugin_desc_t *ksock_plugin_entry(void);
KSOCK_VISIBLE const ksock_plugin_desc_t *ksock_plugin_entry(void)
{
    return NULL;
}
#else
KSOCK_PLUGIN_DEFINE(fixture, fixture_desc)
#endif
