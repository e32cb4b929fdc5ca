/*
 * The plugin loader against plugins that must be refused, and one that must
 * be accepted, through the public API and through the real ksockd.
 *
 * Fixtures are built from fixture.c by tests/abi/meson.build into
 * $KSOCK_ABI_FIXTURE_DIR (tests/abi in the build tree) as logsink_<name>.so.
 * Each bad one breaks one rule; the table below says with which code and
 * which words the loader must refuse it. Messages are part of the contract
 * (docs/plugins.md quotes them): the test checks the exact reason text and
 * that the message names the file.
 *
 * ksockd is $KSOCK_KSOCKD. It is run with configs that name a fixture as
 * a log sink and must exit 2 with the reason on stderr without starting.
 *
 * A test that cannot run here (logsink_file not built yet) reports a TAP
 * SKIP: SKIP() exits the test's child with status 77, and the runner at the
 * bottom (test.h's TEST_LIST plus that one case) prints "ok N - name # SKIP".
 */
#include "test.h"

#include "fixture.h"

#include <ksock/ksock.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <time.h>

#define TEST_SKIP_STATUS 77

/* Give up on this test, as a TAP SKIP with a reason. Only in a forked test. */
#define SKIP(...)                                                                                  \
    do {                                                                                           \
        printf("# SKIP reason: ");                                                                 \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        fflush(stdout);                                                                            \
        _exit(TEST_SKIP_STATUS);                                                                   \
    } while (0)

/* The built-in copy of fixture.c (KSOCK_PLUGIN_BUILTIN, name "fixture_builtin"). */
const ksock_plugin_desc_t *ksock_builtin_fixture(void);

/* ---- Paths and files -------------------------------------------------------- */

/* snprintf that fails the test instead of truncating. */
static void fmt(char *out, size_t n, const char *f, ...) KSOCK_PRINTF(3, 4);
static void fmt(char *out, size_t n, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int len = vsnprintf(out, n, f, ap);
    va_end(ap);
    if (len < 0 || (size_t)len >= n) TEST_FAIL_("string too long for its buffer: %s", out);
}

static const char *fixture_dir(void)
{
    static char dir[PATH_MAX];
    if (dir[0] == '\0') {
        char tmp[PATH_MAX];
        const char *d = getenv("KSOCK_ABI_FIXTURE_DIR");
        if (d == NULL) {
            const char *b = getenv("KSOCK_BUILD_ROOT");
            ASSERT_NOT_NULL(b);
            fmt(tmp, sizeof(tmp), "%s/tests/abi", b);
            d = tmp;
        }
        /* The loader names files by their real path: compare like with like. */
        ASSERT_NOT_NULL(realpath(d, dir));
    }
    return dir;
}

static const char *ksockd_path(void)
{
    static char path[PATH_MAX];
    if (path[0] == '\0') {
        const char *k = getenv("KSOCK_KSOCKD");
        if (k)
            fmt(path, sizeof(path), "%s", k);
        else
            fmt(path, sizeof(path), "%s/tools/ksockd", getenv("KSOCK_BUILD_ROOT"));
        ASSERT_OK(access(path, X_OK));
    }
    return path;
}

static void fixture_path(char *out, size_t n, const char *name)
{
    fmt(out, n, "%s/logsink_%s.so", fixture_dir(), name);
}

/* A fresh directory for one test's files. */
static void make_tmpdir(char out[PATH_MAX])
{
    const char *t = getenv("TMPDIR");
    fmt(out, PATH_MAX, "%s/ksock-abi-XXXXXX", t && *t ? t : "/tmp");
    ASSERT_NOT_NULL(mkdtemp(out));
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ASSERT_NOT_NULL(f);
    ASSERT_EQ(fputs(text, f) >= 0, 1);
    ASSERT_OK(fclose(f));
}

/* The whole file as a malloc'ed string ("" for a missing file). */
static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    ksock_buf_t b = KSOCK_BUF_INIT;
    ksock_buf_append(&b, "", 0);
    ASSERT_OK(ksock_buf_reserve(&b, 1));
    b.data[0] = '\0';
    if (f == NULL) return b.data;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        ASSERT_OK(ksock_buf_append(&b, chunk, n));
    fclose(f);
    ASSERT_OK(ksock_buf_reserve(&b, 1));
    b.data[b.len] = '\0';
    return b.data;
}

/* 1-based line and column of the first occurrence of `needle` in `text` (NULL: its end). */
static void pos_of(const char *text, const char *needle, int *line, int *col)
{
    const char *at = needle ? strstr(text, needle) : text + strlen(text);
    ASSERT_NOT_NULL(at);
    *line = 1;
    *col = 1;
    for (const char *p = text; p < at; p++) {
        if (*p == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

/* ---- Running ksockd ---------------------------------------------------------- */

typedef struct {
    int exit_code; /* -1 when killed by a signal or timed out */
    int signal;
    bool timed_out;
    char *out, *err;
} proc_t;

static void proc_free(proc_t *p)
{
    free(p->out);
    free(p->err);
}

static pid_t spawn(char *const argv[], const char *out_path, const char *err_path)
{
    fflush(stdout);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (o < 0 || e < 0) _exit(126);
        dup2(o, STDOUT_FILENO);
        dup2(e, STDERR_FILENO);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* Wait up to timeout_ms; on timeout SIGKILL it. Returns the wait status. */
static int wait_for(pid_t pid, int timeout_ms, bool *timed_out)
{
    int status = 0;
    *timed_out = false;
    for (int waited = 0;; waited += 10) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return status;
        ASSERT(r == 0 || errno == EINTR);
        if (waited >= timeout_ms) break;
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    *timed_out = true;
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
}

/* Run ksockd with the given arguments (NULL-terminated) in `dir`'s files. */
static void run_ksockd(proc_t *p, const char *dir, ...)
{
    char *argv[16];
    int argc = 0;
    argv[argc++] = (char *)ksockd_path();
    va_list ap;
    va_start(ap, dir);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL && argc < 15;)
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;

    char out[PATH_MAX], err[PATH_MAX];
    fmt(out, sizeof(out), "%s/stdout", dir);
    fmt(err, sizeof(err), "%s/stderr", dir);
    bool timed_out;
    int st = wait_for(spawn(argv, out, err), 20000, &timed_out);
    memset(p, 0, sizeof(*p));
    p->timed_out = timed_out;
    p->exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    p->signal = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
    p->out = read_file(out);
    p->err = read_file(err);
    if (p->timed_out || p->exit_code < 0)
        printf("# ksockd %s: timed out %d, signal %d\n# stderr: %s\n", argv[1], p->timed_out,
               p->signal, p->err);
}

/* Write `text` as dir/name and return the path in out. */
static void config_file(char out[PATH_MAX], const char *dir, const char *name, const char *text)
{
    fmt(out, PATH_MAX, "%s/%s", dir, name);
    write_file(out, text);
}

/* The start-up line must not appear anywhere: the daemon never got going. */
static void assert_not_started(const proc_t *p)
{
    ASSERT_NULL(strstr(p->out, "ksockd started"));
    ASSERT_NULL(strstr(p->err, "ksockd started"));
}

/* ---- Runtimes ------------------------------------------------------------------- */

static ksock_runtime_t *rt_new(void)
{
    ksock_runtime_t *rt;
    char err[256];
    ASSERT_OK(ksock_runtime_new(&rt, err, sizeof(err)));
    /* First in the search path, before $KSOCK_PLUGIN_PATH and the default. */
    ASSERT_OK(ksock_plugin_path_add(rt, fixture_dir()));
    return rt;
}

static ksock_plugin_t *load_good(ksock_runtime_t *rt)
{
    ksock_plugin_t *p = NULL;
    char err[1024] = "";
    int rc = ksock_plugin_find(rt, KSOCK_PLUGIN_LOGSINK, "fixture_good", &p, err, sizeof(err));
    if (rc != 0) printf("# %s\n", err);
    ASSERT_OK(rc);
    ASSERT_NOT_NULL(p);
    return p;
}

/* ---- The refusal table ----------------------------------------------------------- */

typedef struct {
    const char *name; /* logsink_<name>.so */
    int code;
    const char *how;    /* what follows the file name: " refused: " or ": init failed: " */
    const char *reason; /* NULL: computed by expected_reason() */
    const char *also;   /* a second substring (dlerror text), or NULL */
} refusal_t;

/* The descriptor size at ABI 1.0, as the loader computes it. */
#define DESC_SIZE_1_0 (offsetof(ksock_plugin_desc_t, fini) + sizeof(void (*)(void)))

/*
 * Tripwires. The loader refuses vtables shorter than "the size at ABI 1.0";
 * core/plugin.c computes that with sizeof(), which is right only while no
 * member has been appended. When one of these fires, a member was appended:
 * freeze that kind's 1.0 size in core/plugin.c (vtable_size_1_0) to the
 * value below, then update this list.
 */
#define END_OF(type, member) (offsetof(type, member) + sizeof(((type *)0)->member))
/*
 * ABI 1.1 appended pause_read, 1.2 send_many, 1.3 set_listeners; core/plugin.c keeps the 1.0
 * size (END_OF stop).
 */
_Static_assert(sizeof(ksock_transport_vtable_t) == END_OF(ksock_transport_vtable_t, set_listeners),
               "transport vtable grew: check core/plugin.c keeps its ABI 1.0 size");
_Static_assert(sizeof(ksock_serializer_vtable_t) ==
                   END_OF(ksock_serializer_vtable_t, decode_envelope),
               "serializer vtable grew: freeze its ABI 1.0 size in core/plugin.c");
_Static_assert(sizeof(ksock_reconnect_vtable_t) ==
                   END_OF(ksock_reconnect_vtable_t, stable_after_ms),
               "reconnect vtable grew: freeze its ABI 1.0 size in core/plugin.c");
_Static_assert(sizeof(ksock_auth_vtable_t) == END_OF(ksock_auth_vtable_t, validate_token),
               "auth vtable grew: freeze its ABI 1.0 size in core/plugin.c");
_Static_assert(sizeof(ksock_logsink_vtable_t) == END_OF(ksock_logsink_vtable_t, stats),
               "logsink vtable grew: freeze its ABI 1.0 size in core/plugin.c");
_Static_assert(sizeof(ksock_plugin_desc_t) == DESC_SIZE_1_0,
               "descriptor grew: bump KSOCK_PLUGIN_ABI_MINOR and test an ABI 1.0 descriptor");

static const refusal_t refusals[] = {
    {"notelf", KSOCK_E_PLUGIN, " refused: ", "cannot load it: ", "invalid ELF header"},
    {"no_entry", KSOCK_E_PLUGIN, " refused: ",
     "it does not export ksock_plugin_entry (not a KafkaSocks plugin, or built without "
     "KSOCK_PLUGIN_DEFINE)",
     NULL},
    {"null_desc", KSOCK_E_PLUGIN, " refused: ", "its entry function returned NULL", NULL},
    {"bad_magic", KSOCK_E_ABI, " refused: ",
     "bad magic 0x46414b45 (expected 0x4b53504c): not a KafkaSocks plugin descriptor", NULL},
    {"newer_major", KSOCK_E_ABI, " refused: ", NULL, NULL},
    {"newer_minor", KSOCK_E_ABI, " refused: ", NULL, NULL},
    {"short_desc", KSOCK_E_ABI, " refused: ", NULL, NULL},
    {"short_vtable", KSOCK_E_ABI, " refused: ", NULL, NULL},
    {"short_option", KSOCK_E_ABI, " refused: ", NULL, NULL},
    {"unresolved", KSOCK_E_PLUGIN,
     " refused: ", "cannot load it: ", "undefined symbol: ksock_fixture_symbol_nobody_defines"},
    {"newer_symbols", KSOCK_E_ABI, " refused: ", NULL, NULL},
    {"missing_fn", KSOCK_E_PLUGIN,
     " refused: ", "logsink \"missing_fn\" lacks the required function write", NULL},
    {"bad_kind", KSOCK_E_PLUGIN, " refused: ", "unknown plugin kind 99", NULL},
    {"bad_name", KSOCK_E_PLUGIN,
     " refused: ", "name \"Bad Name!\" is not 1-64 characters of [a-z0-9_-]", NULL},
    {"null_vtable", KSOCK_E_PLUGIN, " refused: ", "logsink \"null_vtable\" has no vtable", NULL},
    {"no_opts_size", KSOCK_E_PLUGIN, " refused: ", "declares options but options_struct_size is 0",
     NULL},
    {"dup_option", KSOCK_E_PLUGIN,
     " refused: ", "bad option table: dup_option: option \"tag\" is declared twice", NULL},
    {"empty_enum", KSOCK_E_PLUGIN,
     " refused: ", "bad option table: empty_enum: enum option \"mode\" lists no values", NULL},
    {"bad_default", KSOCK_E_PLUGIN, " refused: ",
     "bad option table: (config): bad_default: key \"limit\": \"lots\" is not an integer", NULL},
    {"init_fails", KSOCK_E_UNSUPPORTED, ": init failed: ", "this fixture always fails its init",
     NULL},
};
#define NREFUSALS (sizeof(refusals) / sizeof(refusals[0]))

static const refusal_t *refusal(const char *name)
{
    for (size_t i = 0; i < NREFUSALS; i++)
        if (strcmp(refusals[i].name, name) == 0) return &refusals[i];
    TEST_FAIL_("no refusal entry for %s", name);
}

/* The reason text, for the entries whose numbers come from the headers. */
static void expected_reason(const refusal_t *r, char *out, size_t n)
{
    if (r->reason) {
        fmt(out, n, "%s", r->reason);
    } else if (strcmp(r->name, "newer_major") == 0) {
        fmt(out, n,
            "built for plugin ABI %d.%d, this host speaks %d.%d (the major version must "
            "match)",
            KSOCK_PLUGIN_ABI_MAJOR + 1, KSOCK_PLUGIN_ABI_MINOR, KSOCK_PLUGIN_ABI_MAJOR,
            KSOCK_PLUGIN_ABI_MINOR);
    } else if (strcmp(r->name, "newer_minor") == 0) {
        fmt(out, n, "built for plugin ABI %d.%d, newer than this host's %d.%d (upgrade ksock)",
            KSOCK_PLUGIN_ABI_MAJOR, KSOCK_PLUGIN_ABI_MINOR + 1, KSOCK_PLUGIN_ABI_MAJOR,
            KSOCK_PLUGIN_ABI_MINOR);
    } else if (strcmp(r->name, "newer_symbols") == 0) {
        fmt(out, n,
            "built for plugin ABI %d.99, newer than this host's %d.%d (upgrade ksock): it needs "
            "libksock symbol version KSOCK_%d.99",
            KSOCK_PLUGIN_ABI_MAJOR, KSOCK_PLUGIN_ABI_MAJOR, KSOCK_PLUGIN_ABI_MINOR,
            KSOCK_PLUGIN_ABI_MAJOR);
    } else if (strcmp(r->name, "short_desc") == 0) {
        fmt(out, n, "descriptor is %zu bytes, shorter than the %zu bytes of ABI %d.0",
            offsetof(ksock_plugin_desc_t, options), (size_t)DESC_SIZE_1_0, KSOCK_PLUGIN_ABI_MAJOR);
    } else if (strcmp(r->name, "short_vtable") == 0) {
        fmt(out, n, "logsink vtable is %zu bytes, shorter than the %zu bytes of ABI %d.0",
            offsetof(ksock_logsink_vtable_t, write), END_OF(ksock_logsink_vtable_t, stats),
            KSOCK_PLUGIN_ABI_MAJOR);
    } else if (strcmp(r->name, "short_option") == 0) {
        fmt(out, n,
            "bad option table: short_option: option table entries are too short "
            "(%zu bytes)",
            offsetof(ksock_option_t, offset));
    } else {
        TEST_FAIL_("no reason for %s", r->name);
    }
}

/* "plugin FILE refused: REASON" as the loader words it. */
static void expected_message(const refusal_t *r, char *out, size_t n)
{
    char file[PATH_MAX], reason[512];
    fixture_path(file, sizeof(file), r->name);
    expected_reason(r, reason, sizeof(reason));
    fmt(out, n, "plugin %s%s%s", file, r->how, reason);
}

static void assert_refusal_text(const refusal_t *r, const char *err)
{
    char want[1024];
    expected_message(r, want, sizeof(want));
    ASSERT_CONTAINS(err, want);
    if (r->also) ASSERT_CONTAINS(err, r->also);
}

/*
 * Both entry points refuse with the same code and words, a refusal leaves
 * nothing behind (the second attempt is refused again, not served from a
 * cache), and the good fixture still loads in that runtime afterwards.
 */
static void check_refusal(const char *name)
{
    const refusal_t *r = refusal(name);
    ksock_runtime_t *rt = rt_new();
    char path[PATH_MAX], err[1024];
    ksock_plugin_t *p = (ksock_plugin_t *)&p; /* must be reset to NULL */

    fixture_path(path, sizeof(path), name);
    ASSERT_OK(access(path, R_OK));
    memset(err, 0, sizeof(err));
    ASSERT_EQ(ksock_plugin_load_file(rt, path, &p, err, sizeof(err)), r->code);
    ASSERT_NULL(p);
    assert_refusal_text(r, err);

    for (int attempt = 0; attempt < 2; attempt++) {
        p = (ksock_plugin_t *)&p;
        memset(err, 0, sizeof(err));
        ASSERT_EQ(ksock_plugin_find(rt, KSOCK_PLUGIN_LOGSINK, name, &p, err, sizeof(err)), r->code);
        ASSERT_NULL(p);
        assert_refusal_text(r, err);
    }
    load_good(rt);
    ksock_runtime_destroy(rt);
}

#define REFUSAL_TEST(n)                                                                            \
    TEST(refuse_##n)                                                                               \
    {                                                                                              \
        check_refusal(#n);                                                                         \
    }
REFUSAL_TEST(notelf)
REFUSAL_TEST(no_entry)
REFUSAL_TEST(null_desc)
REFUSAL_TEST(bad_magic)
REFUSAL_TEST(newer_major)
REFUSAL_TEST(newer_minor)
REFUSAL_TEST(short_desc)
REFUSAL_TEST(short_vtable)
REFUSAL_TEST(short_option)
REFUSAL_TEST(unresolved)
REFUSAL_TEST(newer_symbols)
REFUSAL_TEST(missing_fn)
REFUSAL_TEST(bad_kind)
REFUSAL_TEST(bad_name)
REFUSAL_TEST(null_vtable)
REFUSAL_TEST(no_opts_size)
REFUSAL_TEST(dup_option)
REFUSAL_TEST(empty_enum)
REFUSAL_TEST(bad_default)
REFUSAL_TEST(init_fails)

/* ---- Other refusals ------------------------------------------------------------------ */

TEST(refuse_misnamed)
{
    /* The file name says "misnamed", the descriptor "someone_else". */
    ksock_runtime_t *rt = rt_new();
    ksock_plugin_t *p;
    char path[PATH_MAX], err[1024], want[1200];
    fixture_path(path, sizeof(path), "misnamed");
    ASSERT_EQ(ksock_plugin_find(rt, KSOCK_PLUGIN_LOGSINK, "misnamed", &p, err, sizeof(err)),
              KSOCK_E_PLUGIN);
    ASSERT_NULL(p);
    fmt(want, sizeof(want),
        "plugin %s declares logsink \"someone_else\", expected logsink \"misnamed\"", path);
    ASSERT_CONTAINS(err, want);
    ksock_runtime_destroy(rt);
}

TEST(refuse_duplicate_name)
{
    ksock_runtime_t *rt = rt_new();
    ksock_plugin_t *good = load_good(rt), *p;
    char path[PATH_MAX], err[1024], want[2200];
    fixture_path(path, sizeof(path), "zz_duplicate");
    ASSERT_EQ(ksock_plugin_load_file(rt, path, &p, err, sizeof(err)), KSOCK_E_EXIST);
    ASSERT_NULL(p);
    fmt(want, sizeof(want), "plugin %s refused: logsink \"fixture_good\" is already provided by %s",
        path, ksock_plugin_file(good));
    ASSERT_CONTAINS(err, want);
    /* The first one is still the one served. */
    ASSERT(load_good(rt) == good);
    ksock_runtime_destroy(rt);
}

TEST(refuse_not_a_regular_file)
{
    char dir[PATH_MAX], path[PATH_MAX], err[1024], want[1200];
    make_tmpdir(dir);
    fmt(path, sizeof(path), "%s/logsink_adir.so", dir);
    ASSERT_OK(mkdir(path, 0700));
    ksock_runtime_t *rt = rt_new();
    ASSERT_OK(ksock_plugin_path_add(rt, dir));
    ksock_plugin_t *p;
    ASSERT_EQ(ksock_plugin_load_file(rt, path, &p, err, sizeof(err)), KSOCK_E_PLUGIN);
    fmt(want, sizeof(want), "plugin %s refused: not a regular file", path);
    ASSERT_CONTAINS(err, want);
    ASSERT_EQ(ksock_plugin_find(rt, KSOCK_PLUGIN_LOGSINK, "adir", &p, err, sizeof(err)),
              KSOCK_E_PLUGIN);
    ASSERT_CONTAINS(err, want);
    ksock_runtime_destroy(rt);
    rm_rf(dir);
}

TEST(missing_plugin_lists_search_path)
{
    ksock_runtime_t *rt = rt_new();
    ksock_plugin_t *p = (ksock_plugin_t *)&p;
    char err[4096], want[PATH_MAX + 200];
    ASSERT_EQ(ksock_plugin_find(rt, KSOCK_PLUGIN_LOGSINK, "nope", &p, err, sizeof(err)),
              KSOCK_E_NOENT);
    ASSERT_NULL(p);
    fmt(want, sizeof(want), "no logsink plugin named \"nope\" (looked for logsink_nope.so in: %s",
        fixture_dir());
    ASSERT_CONTAINS(err, want);
    /* Then $KSOCK_PLUGIN_PATH, then the installed default, in that order. */
    const char *at = strstr(err, fixture_dir());
    const char *env = getenv("KSOCK_PLUGIN_PATH");
    if (env && *env && strchr(env, ':') == NULL) {
        const char *e = strstr(at + strlen(fixture_dir()), env);
        ASSERT_NOT_NULL(e);
        at = e;
    }
    const char *def = strstr(at, ksock_plugin_default_dir());
    ASSERT_NOT_NULL(def);
    ASSERT_STR_EQ(def + strlen(ksock_plugin_default_dir()), ")");

    /* An explicit path that does not exist. */
    char path[PATH_MAX];
    fixture_path(path, sizeof(path), "nope");
    ASSERT_EQ(ksock_plugin_load_file(rt, path, &p, err, sizeof(err)), KSOCK_E_NOENT);
    fmt(want, sizeof(want), "plugin %s: No such file or directory", path);
    ASSERT_CONTAINS(err, want);
    ksock_runtime_destroy(rt);
}

TEST(invalid_names_are_not_looked_up)
{
    ksock_runtime_t *rt = rt_new();
    ksock_plugin_t *p;
    char err[512];
    /* A name with a slash must never become a path. */
    ASSERT_EQ(ksock_plugin_find(rt, KSOCK_PLUGIN_LOGSINK, "../abi/logsink_fixture_good", &p, err,
                                sizeof(err)),
              KSOCK_E_INVAL);
    ASSERT_CONTAINS(err, "invalid plugin logsink name \"../abi/logsink_fixture_good\"");
    ASSERT_EQ(ksock_plugin_find(rt, (ksock_plugin_kind_t)42, "x", &p, err, sizeof(err)),
              KSOCK_E_INVAL);
    ksock_runtime_destroy(rt);
}

/* ---- The good plugin ---------------------------------------------------------------- */

TEST(good_loads)
{
    ksock_runtime_t *rt = rt_new();
    char path[PATH_MAX], err[1024], link[PATH_MAX], dir[PATH_MAX];
    ksock_plugin_t *p, *q;
    fixture_path(path, sizeof(path), "fixture_good");
    ASSERT_OK(ksock_plugin_load_file(rt, path, &p, err, sizeof(err)));
    const ksock_plugin_desc_t *d = ksock_plugin_desc(p);
    ASSERT_EQ(d->magic, KSOCK_PLUGIN_MAGIC);
    ASSERT_EQ(d->abi_major, KSOCK_PLUGIN_ABI_MAJOR);
    ASSERT_EQ(d->abi_minor, KSOCK_PLUGIN_ABI_MINOR);
    ASSERT_EQ(d->kind, KSOCK_PLUGIN_LOGSINK);
    ASSERT_STR_EQ(d->name, "fixture_good");
    ASSERT_STR_EQ(d->version, "1.2.3");
    ASSERT_STR_EQ(ksock_plugin_file(p), path);

    /* Loaded once: by path again, by name, and through a symlink. */
    ASSERT_OK(ksock_plugin_load_file(rt, path, &q, err, sizeof(err)));
    ASSERT(p == q);
    ASSERT(load_good(rt) == p);
    make_tmpdir(dir);
    fmt(link, sizeof(link), "%s/logsink_alias.so", dir);
    ASSERT_OK(symlink(path, link));
    ASSERT_OK(ksock_plugin_load_file(rt, link, &q, err, sizeof(err)));
    ASSERT(p == q);
    ksock_runtime_destroy(rt);
    rm_rf(dir);
}

static ksock_config_t *parse(const char *text)
{
    ksock_config_t *cfg;
    char err[512] = "";
    int rc = ksock_config_load_string("test.json", text, strlen(text), &cfg, err, sizeof(err));
    if (rc != 0) printf("# %s\n", err);
    ASSERT_OK(rc);
    return cfg;
}

static ksock_log_record_t record(const char *msg)
{
    return (ksock_log_record_t){sizeof(ksock_log_record_t),
                                ksock_wallclock_ns(),
                                KSOCK_LOG_INFO,
                                "test",
                                msg,
                                strlen(msg),
                                NULL,
                                0};
}

/* ABI 1.1 appended pause_read to the transport vtable: a 1.0 transport still loads. */
TEST(transport_built_for_1_0_loads_without_pause_read)
{
    ksock_runtime_t *rt = rt_new();
    ksock_plugin_t *p;
    char err[1024] = "";
    int rc = ksock_plugin_find(rt, KSOCK_PLUGIN_TRANSPORT, "v10", &p, err, sizeof(err));
    if (rc != 0) printf("# %s\n", err);
    ASSERT_OK(rc);
    const ksock_plugin_desc_t *d = ksock_plugin_desc(p);
    ASSERT_EQ(d->abi_minor, 0);
    const ksock_transport_vtable_t *vt = d->vtable;
    ASSERT(!KSOCK_HAS_FIELD(vt, ksock_transport_vtable_t, pause_read));
    ksock_plugin_instance_t *pi;
    ASSERT_OK(ksock_plugin_instance_new(rt, p, "t", NULL, NULL, NULL, &pi, err, sizeof(err)));
    ksock_plugin_instance_free(pi);
    ksock_runtime_destroy(rt);
}

TEST(good_two_instances_have_their_own_state)
{
    ksock_runtime_t *rt = rt_new();
    ksock_plugin_t *p = load_good(rt);
    ksock_config_t *cfg = parse("{\"one\": {\"tag\": \"a\"},\n"
                                " \"two\": {\"tag\": \"b\", \"limit\": 7, \"mode\": \"drop\",\n"
                                "          \"interval\": \"250ms\", \"buffer\": \"1MiB\"}}");
    const ksock_cfg_t *root = ksock_config_root(cfg);
    ksock_plugin_instance_t *one, *two;
    char err[1024] = "";
    ASSERT_OK(ksock_plugin_instance_new(rt, p, "one", cfg, ksock_cfg_get(root, "one"), NULL, &one,
                                        err, sizeof(err)));
    ASSERT_OK(ksock_plugin_instance_new(rt, p, "two", cfg, ksock_cfg_get(root, "two"), NULL, &two,
                                        err, sizeof(err)));
    ASSERT(ksock_plugin_instance_plugin(one) == p && ksock_plugin_instance_plugin(two) == p);
    ASSERT(ksock_plugin_instance_vtable(one) == ksock_plugin_instance_vtable(two));
    fixture_inst_t *a = ksock_plugin_instance_inst(one), *b = ksock_plugin_instance_inst(two);
    ASSERT(a != b);
    ASSERT_EQ(a->magic, FIXTURE_INST_MAGIC);
    ASSERT_EQ(b->magic, FIXTURE_INST_MAGIC);

    /* What create() saw: its own options and names. */
    ASSERT_STR_EQ(a->tag, "a");
    ASSERT_STR_EQ(a->instance, "one");
    ASSERT_STR_EQ(a->component, "logsink:fixture_good/one");
    ASSERT_STR_EQ(b->tag, "b");
    ASSERT_STR_EQ(b->instance, "two");
    ASSERT_STR_EQ(b->component, "logsink:fixture_good/two");
    /* Defaults for one, parsed values for two. */
    ASSERT_EQ(a->limit, 100);
    ASSERT_EQ(a->mode, FIXTURE_MODE_COUNT);
    ASSERT_EQ(a->interval_ms, 1000);
    ASSERT_EQ(a->buffer, 4096);
    ASSERT_EQ(b->limit, 7);
    ASSERT_EQ(b->mode, FIXTURE_MODE_DROP);
    ASSERT_EQ(b->interval_ms, 250);
    ASSERT_EQ(b->buffer, 1048576);

    /* Writing to one does not touch the other. */
    const ksock_logsink_vtable_t *vt = ksock_plugin_instance_vtable(one);
    ksock_log_record_t rec = record("hello");
    for (int i = 0; i < 3; i++)
        ASSERT_OK(vt->write(ksock_plugin_instance_inst(one), &rec));
    for (int i = 0; i < 10; i++) {
        int rc = vt->write(ksock_plugin_instance_inst(two), &rec);
        ASSERT_EQ(rc, i < 7 ? 0 : KSOCK_E_QUEUE_FULL);
    }
    uint64_t w, d, e;
    vt->stats(ksock_plugin_instance_inst(one), &w, &d, &e);
    ASSERT_EQ(w, 3);
    ASSERT_EQ(d, 0);
    vt->stats(ksock_plugin_instance_inst(two), &w, &d, &e);
    ASSERT_EQ(w, 7);
    ASSERT_EQ(d, 0);
    ASSERT_EQ(a->refused, 0);
    ASSERT_EQ(b->refused, 3);

    ksock_plugin_instance_free(one);
    /* The other instance outlives its sibling. */
    ASSERT_EQ(vt->write(ksock_plugin_instance_inst(two), &rec), KSOCK_E_QUEUE_FULL);
    ksock_plugin_instance_free(two);
    ksock_runtime_destroy(rt);
    ksock_config_free(cfg);
}

TEST(create_failure_is_reported_with_owner)
{
    ksock_runtime_t *rt = rt_new();
    ksock_plugin_t *p = load_good(rt);
    ksock_config_t *cfg = parse("{\"tag\": \"x\", \"fail_create\": true}");
    ksock_plugin_instance_t *pi = (ksock_plugin_instance_t *)&pi;
    char err[1024] = "";
    ASSERT_EQ(ksock_plugin_instance_new(rt, p, "x", cfg, ksock_config_root(cfg), NULL, &pi, err,
                                        sizeof(err)),
              KSOCK_E_CONFIG);
    ASSERT_NULL(pi);
    ASSERT_CONTAINS(err, "logsink \"fixture_good\" instance \"x\": fixture refused to create: "
                         "fail_create is set");
    ksock_runtime_destroy(rt);
    ksock_config_free(cfg);
}

TEST(options_are_checked_before_plugin_code_runs)
{
    char dir[PATH_MAX], trace[PATH_MAX];
    make_tmpdir(dir);
    fmt(trace, sizeof(trace), "%s/trace", dir);
    setenv(FIXTURE_TRACE_ENV, trace, 1);

    ksock_runtime_t *rt = rt_new();
    ksock_plugin_t *p = load_good(rt);
    const char *text = "{\"bad\": {\"tag\": \"x\", \"colour\": \"red\"},\n"
                       " \"good\": {\"tag\": \"x\"}}";
    ksock_config_t *cfg = parse(text);
    const ksock_cfg_t *root = ksock_config_root(cfg);
    char err[1024] = "", want[512];
    int line, col;
    pos_of(text, "\"red\"", &line, &col);
    fmt(want, sizeof(want),
        "test.json:%d:%d: logsink \"fixture_good\" instance \"bad\": key \"colour\": unknown "
        "key (known keys: tag, limit, mode, interval, buffer, fail_create, path)",
        line, col);
    ASSERT_EQ(ksock_plugin_check_options(p, "bad", cfg, ksock_cfg_get(root, "bad"), NULL, err,
                                         sizeof(err)),
              KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, want);
    /* The same refusal from instance_new, without create() being called. */
    ksock_plugin_instance_t *pi;
    ASSERT_EQ(ksock_plugin_instance_new(rt, p, "bad", cfg, ksock_cfg_get(root, "bad"), NULL, &pi,
                                        err, sizeof(err)),
              KSOCK_E_CONFIG);
    ASSERT_OK(ksock_plugin_check_options(p, "good", cfg, ksock_cfg_get(root, "good"), NULL, err,
                                         sizeof(err)));
    ksock_runtime_destroy(rt);
    ksock_config_free(cfg);

    char *t = read_file(trace);
    ASSERT_NULL(strstr(t, "create"));
    ASSERT_CONTAINS(t, "init\n");
    free(t);
    rm_rf(dir);
}

/*
 * Teardown in order (runtime.h, STYLE.md): instances first, then the
 * plugin's fini, then dlclose (the fixture's ELF destructor).
 */
TEST(teardown_order)
{
    char dir[PATH_MAX], trace[PATH_MAX];
    make_tmpdir(dir);
    fmt(trace, sizeof(trace), "%s/trace", dir);
    setenv(FIXTURE_TRACE_ENV, trace, 1);

    ksock_runtime_t *rt = rt_new();
    char err[1024] = "";
    ksock_log_options_t o = {sizeof(o), KSOCK_LOG_INFO, "fixture_good", KSOCK_LOG_FORMAT_JSON,
                             "{\"tag\": \"first\"}"};
    ASSERT_OK(ksock_log_configure(rt, &o, err, sizeof(err)));
    o.options_json = "{\"name\": \"second\", \"tag\": \"second\"}";
    ASSERT_OK(ksock_log_add_sink(rt, &o, err, sizeof(err)));
    ksock_runtime_destroy(rt);

    char *t = read_file(trace);
    const char *want = getenv("KSOCK_NO_DLCLOSE")
                           ? "init\ncreate first\ncreate second\ndestroy first\ndestroy second\n"
                             "fini\n"
                           : "init\ncreate first\ncreate second\ndestroy first\ndestroy second\n"
                             "fini\nunload\n";
    ASSERT_STR_EQ(t, want);
    free(t);
    rm_rf(dir);
}

TEST(logging_through_the_plugin)
{
    char dir[PATH_MAX], out[PATH_MAX], json[PATH_MAX + 64], err[1024] = "";
    make_tmpdir(dir);
    fmt(out, sizeof(out), "%s/out.log", dir);
    fmt(json, sizeof(json), "{\"tag\": \"t\", \"path\": \"%s\"}", out);
    ksock_runtime_t *rt = rt_new();
    ksock_log_options_t o = {sizeof(o), KSOCK_LOG_WARN, "fixture_good", KSOCK_LOG_FORMAT_JSON,
                             json};
    ASSERT_OK(ksock_log_configure(rt, &o, err, sizeof(err)));
    ksock_log(rt, KSOCK_LOG_INFO, "test", NULL, 0, "filtered out by level");
    ksock_log(rt, KSOCK_LOG_WARN, "test", NULL, 0, "kept %d", 1);
    ksock_log_sink_stats_t st[2];
    ASSERT_EQ(ksock_log_stats(rt, st, 2), 1);
    ASSERT_STR_EQ(st[0].name, "fixture_good");
    ASSERT_STR_EQ(st[0].type, "fixture_good");
    ASSERT_EQ(st[0].written, 1);
    ASSERT_EQ(st[0].dropped, 0);
    ksock_runtime_destroy(rt);
    char *t = read_file(out);
    ASSERT_STR_EQ(t, "t: kept 1\n");
    free(t);
    rm_rf(dir);
}

/*
 * A sink that logs from inside flush(), reopen() or stats() (all called
 * under the logger lock) must have that record dropped, not deadlock.
 */
TEST(sink_may_log_from_its_callbacks)
{
    ksock_runtime_t *rt = rt_new();
    char err[1024] = "";
    ksock_log_options_t o = {sizeof(o), KSOCK_LOG_INFO, "fixture_good", KSOCK_LOG_FORMAT_TEXT,
                             "{\"tag\": \"t\"}"};
    ASSERT_OK(ksock_log_configure(rt, &o, err, sizeof(err)));
    alarm(10); /* a deadlock fails the test by SIGALRM instead of hanging the suite */
    ksock_log_flush(rt);
    ksock_log_reopen(rt);
    ksock_log_sink_stats_t st;
    ASSERT_EQ(ksock_log_stats(rt, &st, 1), 1);
    alarm(0);
    ASSERT_EQ(st.written, 0); /* the nested records were not written */
    ksock_log(rt, KSOCK_LOG_INFO, "test", NULL, 0, "after");
    ASSERT_EQ(ksock_log_stats(rt, &st, 1), 1);
    ASSERT_EQ(st.written, 1); /* and logging still works afterwards */
    ksock_runtime_destroy(rt);
}

static void count_errors(ksock_runtime_t *rt, const ksock_error_t *e, void *data)
{
    (void)rt, (void)e;
    ++*(int *)data;
}

/*
 * A sink that drops records makes the core post an error report; the report
 * posts the error handler's call in turn. Destroying the runtime right then
 * must run or free all of that: under LeakSanitizer a leak fails the test.
 */
TEST(teardown_with_pending_drop_reports)
{
    ksock_runtime_t *rt = rt_new();
    int errors = 0;
    ksock_on_error(rt, count_errors, &errors);
    char err[1024] = "";
    ksock_log_options_t o = {sizeof(o), KSOCK_LOG_INFO, "fixture_good", KSOCK_LOG_FORMAT_TEXT,
                             "{\"tag\": \"t\", \"mode\": \"drop\", \"limit\": 0}"};
    ASSERT_OK(ksock_log_configure(rt, &o, err, sizeof(err)));
    ksock_log(rt, KSOCK_LOG_INFO, "test", NULL, 0, "dropped");
    ksock_log_sink_stats_t st;
    ASSERT_EQ(ksock_log_stats(rt, &st, 1), 1);
    ASSERT_EQ(st.dropped, 1);
    ksock_runtime_destroy(rt);
}

TEST(builtin_plugin)
{
    ksock_runtime_t *rt = rt_new();
    char err[1024] = "";
    ksock_plugin_t *p;
    ASSERT_OK(ksock_plugins_register_builtin(rt, ksock_builtin_fixture, err, sizeof(err)));
    ASSERT_OK(ksock_plugin_find(rt, KSOCK_PLUGIN_LOGSINK, "fixture_builtin", &p, err, sizeof(err)));
    ASSERT_STR_EQ(ksock_plugin_file(p), "(builtin)");
    ASSERT_EQ(ksock_plugins_register_builtin(rt, ksock_builtin_fixture, err, sizeof(err)),
              KSOCK_E_EXIST);
    ASSERT_CONTAINS(err, "plugin (builtin) refused: logsink \"fixture_builtin\" is already "
                         "provided by (builtin)");
    ksock_config_t *cfg = parse("{\"tag\": \"in\"}");
    ksock_plugin_instance_t *pi;
    ASSERT_OK(ksock_plugin_instance_new(rt, p, NULL, cfg, ksock_config_root(cfg), NULL, &pi, err,
                                        sizeof(err)));
    ASSERT_STR_EQ(((fixture_inst_t *)ksock_plugin_instance_inst(pi))->component,
                  "logsink:fixture_builtin");
    ksock_plugin_instance_free(pi);
    ksock_runtime_destroy(rt);
    ksock_config_free(cfg);
}

/*
 * A serializer with only the two functions docs/plugins.md says it must
 * have: stateless (no create/destroy), envelopes only, binary by default.
 */
static int env_only_encode(void *inst, const ksock_envelope_t *env, ksock_buf_t *out, char *errstr,
                           size_t errstr_size)
{
    (void)inst, (void)env, (void)errstr, (void)errstr_size;
    return ksock_buf_append(out, "E", 1);
}

static int env_only_decode(void *inst, const void *data, size_t len,
                           const ksock_value_limits_t *lim, ksock_envelope_t *env, char *errstr,
                           size_t errstr_size)
{
    (void)inst, (void)data, (void)len, (void)lim, (void)errstr, (void)errstr_size;
    env->op = KSOCK_OP_PING;
    return 0;
}

static const ksock_serializer_vtable_t env_only_vtable = {
    .size = sizeof(ksock_serializer_vtable_t),
    .encode_envelope = env_only_encode,
    .decode_envelope = env_only_decode,
};

static const ksock_plugin_desc_t env_only_desc = {
    KSOCK_PLUGIN_HEADER(KSOCK_PLUGIN_SERIALIZER),
    .name = "envonly",
    .version = "1.0.0",
    .vtable = &env_only_vtable,
};

static const ksock_plugin_desc_t *env_only_entry(void)
{
    return &env_only_desc;
}

TEST(optional_functions_get_defaults)
{
    ksock_runtime_t *rt = rt_new();
    char err[512] = "";
    ksock_plugin_t *p;
    ASSERT_OK(ksock_plugins_register_builtin(rt, env_only_entry, err, sizeof(err)));
    ASSERT_OK(ksock_plugin_find(rt, KSOCK_PLUGIN_SERIALIZER, "envonly", &p, err, sizeof(err)));
    ksock_plugin_instance_t *pi;
    ASSERT_OK(ksock_plugin_instance_new(rt, p, NULL, NULL, NULL, NULL, &pi, err, sizeof(err)));
    ASSERT_NULL(ksock_plugin_instance_inst(pi)); /* the default create: a stateless plugin */
    const ksock_serializer_vtable_t *sv = ksock_plugin_instance_vtable(pi);
    ASSERT_EQ(sv->frame_type(ksock_plugin_instance_inst(pi)), KSOCK_FRAME_BINARY);
    ksock_buf_t b = KSOCK_BUF_INIT;
    ksock_value_t *v = ksock_value_int(1);
    ASSERT_EQ(sv->encode_value(ksock_plugin_instance_inst(pi), v, &b, err, sizeof(err)),
              KSOCK_E_UNSUPPORTED);
    ASSERT_CONTAINS(err, "envelopes only");
    ksock_value_t *out = v;
    ASSERT_EQ(
        sv->decode_value(ksock_plugin_instance_inst(pi), "1", 1, NULL, &out, err, sizeof(err)),
        KSOCK_E_UNSUPPORTED);
    ASSERT_NULL(out);
    ksock_envelope_t e;
    ksock_envelope_init(&e);
    e.op = KSOCK_OP_PING;
    ASSERT_OK(sv->encode_envelope(ksock_plugin_instance_inst(pi), &e, &b, err, sizeof(err)));
    ASSERT_EQ(b.len, 1);
    ksock_buf_free(&b);
    ksock_value_unref(v);
    ksock_plugin_instance_free(pi); /* the default destroy */
    ksock_runtime_destroy(rt);
}

/* A serializer still must encode and decode envelopes. */
static const ksock_serializer_vtable_t no_decode_vtable = {
    .size = sizeof(ksock_serializer_vtable_t),
    .encode_envelope = env_only_encode,
};

static const ksock_plugin_desc_t no_decode_desc = {
    KSOCK_PLUGIN_HEADER(KSOCK_PLUGIN_SERIALIZER),
    .name = "nodecode",
    .version = "1.0.0",
    .vtable = &no_decode_vtable,
};

static const ksock_plugin_desc_t *no_decode_entry(void)
{
    return &no_decode_desc;
}

TEST(serializer_without_decode_envelope_is_refused)
{
    ksock_runtime_t *rt = rt_new();
    char err[512] = "";
    ASSERT_EQ(ksock_plugins_register_builtin(rt, no_decode_entry, err, sizeof(err)),
              KSOCK_E_PLUGIN);
    ASSERT_CONTAINS(err, "serializer \"nodecode\" lacks the required function decode_envelope");
    ksock_runtime_destroy(rt);
}

/* ---- ksockd refuses every bad fixture ------------------------------------------------ */

static void check_ksockd_refusal(const char *name)
{
    const refusal_t *r = refusal(name);
    char dir[PATH_MAX], cfg[PATH_MAX], text[PATH_MAX + 256], want[1200];
    make_tmpdir(dir);
    fmt(text, sizeof(text),
        "{\n  \"plugin_path\": [\"%s\"],\n  \"log\": {\"sinks\": [{\"type\": \"%s\"}]}\n}\n",
        fixture_dir(), name);
    config_file(cfg, dir, "ksockd.json", text);
    expected_message(r, want, sizeof(want));

    static const char *const modes[] = {"--check-config", "--config"};
    for (size_t i = 0; i < 2; i++) {
        proc_t p;
        run_ksockd(&p, dir, modes[i], cfg, NULL);
        ASSERT_EQ(p.timed_out, 0);
        ASSERT_EQ(p.exit_code, 2);
        ASSERT_CONTAINS(p.err, "ksockd: ");
        ASSERT_CONTAINS(p.err, want);
        if (r->also) ASSERT_CONTAINS(p.err, r->also);
        ASSERT_NULL(strstr(p.out, "configuration is valid"));
        assert_not_started(&p);
        proc_free(&p);
    }
    rm_rf(dir);
}

#define KSOCKD_REFUSAL_TEST(n)                                                                     \
    TEST(ksockd_refuses_##n)                                                                       \
    {                                                                                              \
        check_ksockd_refusal(#n);                                                                  \
    }
KSOCKD_REFUSAL_TEST(notelf)
KSOCKD_REFUSAL_TEST(no_entry)
KSOCKD_REFUSAL_TEST(null_desc)
KSOCKD_REFUSAL_TEST(bad_magic)
KSOCKD_REFUSAL_TEST(newer_major)
KSOCKD_REFUSAL_TEST(newer_minor)
KSOCKD_REFUSAL_TEST(short_desc)
KSOCKD_REFUSAL_TEST(short_vtable)
KSOCKD_REFUSAL_TEST(short_option)
KSOCKD_REFUSAL_TEST(unresolved)
KSOCKD_REFUSAL_TEST(newer_symbols)
KSOCKD_REFUSAL_TEST(missing_fn)
KSOCKD_REFUSAL_TEST(bad_kind)
KSOCKD_REFUSAL_TEST(bad_name)
KSOCKD_REFUSAL_TEST(null_vtable)
KSOCKD_REFUSAL_TEST(no_opts_size)
KSOCKD_REFUSAL_TEST(dup_option)
KSOCKD_REFUSAL_TEST(empty_enum)
KSOCKD_REFUSAL_TEST(bad_default)
KSOCKD_REFUSAL_TEST(init_fails)

TEST(ksockd_refuses_missing_plugin)
{
    char dir[PATH_MAX], cfg[PATH_MAX], text[PATH_MAX + 256];
    make_tmpdir(dir);
    fmt(text, sizeof(text),
        "{\"plugin_path\": [\"%s\"], \"log\": {\"sinks\": [{\"type\": \"nope\"}]}}\n",
        fixture_dir());
    config_file(cfg, dir, "ksockd.json", text);
    proc_t p;
    run_ksockd(&p, dir, "--config", cfg, NULL);
    ASSERT_EQ(p.exit_code, 2);
    ASSERT_CONTAINS(p.err,
                    "ksockd: no logsink plugin named \"nope\" (looked for logsink_nope.so in: ");
    ASSERT_CONTAINS(p.err, fixture_dir());
    ASSERT_CONTAINS(p.err, ksock_plugin_default_dir());
    assert_not_started(&p);
    proc_free(&p);
    rm_rf(dir);
}

/* The scan behind --list-plugins survives every bad file and says why each was refused. */
TEST(ksockd_list_plugins_reports_refusals)
{
    char dir[PATH_MAX], cfg[PATH_MAX], text[PATH_MAX + 64], want[1300];
    make_tmpdir(dir);
    fmt(text, sizeof(text), "{\"plugin_path\": [\"%s\"]}\n", fixture_dir());
    config_file(cfg, dir, "ksockd.json", text);
    proc_t p;
    run_ksockd(&p, dir, "--list-plugins", "--config", cfg, NULL);
    ASSERT_EQ(p.exit_code, 0);
    char good[PATH_MAX];
    fixture_path(good, sizeof(good), "fixture_good");
    /* The fixtures are built with this tree's headers. */
    snprintf(want, sizeof(want), "logsink    fixture_good 1.2.3    ABI %d.%d  ",
             KSOCK_PLUGIN_ABI_MAJOR, KSOCK_PLUGIN_ABI_MINOR);
    ASSERT_CONTAINS(p.out, want);
    ASSERT_CONTAINS(p.out, good);
    for (size_t i = 0; i < NREFUSALS; i++) {
        char msg[1200];
        expected_message(&refusals[i], msg, sizeof(msg));
        fmt(want, sizeof(want), "refused   %s", msg);
        ASSERT_CONTAINS(p.err, want);
    }
    proc_free(&p);
    rm_rf(dir);
}

TEST(ksockd_describe_plugin)
{
    char dir[PATH_MAX], cfg[PATH_MAX], text[PATH_MAX + 64];
    make_tmpdir(dir);
    fmt(text, sizeof(text), "{\"plugin_path\": [\"%s\"]}\n", fixture_dir());
    config_file(cfg, dir, "ksockd.json", text);
    proc_t p;
    run_ksockd(&p, dir, "--describe-plugin", "logsink:fixture_good", "--config", cfg, NULL);
    ASSERT_EQ(p.exit_code, 0);
    char want[96];
    snprintf(want, sizeof(want), "logsink \"fixture_good\" 1.2.3 (ABI %d.%d)",
             KSOCK_PLUGIN_ABI_MAJOR, KSOCK_PLUGIN_ABI_MINOR);
    ASSERT_CONTAINS(p.out, want);
    ASSERT_CONTAINS(p.out, "  tag ");
    ASSERT_CONTAINS(p.out, "(required)");
    ASSERT_CONTAINS(p.out, "enum:count|drop");
    proc_free(&p);
    /* A refused plugin: describe says why, and fails. */
    run_ksockd(&p, dir, "--describe-plugin", "bad_magic", "--config", cfg, NULL);
    ASSERT_EQ(p.exit_code, 1);
    ASSERT_CONTAINS(p.err, "bad magic");
    proc_free(&p);
    rm_rf(dir);
}

/* ---- ksockd with the good fixture ---------------------------------------------------- */

static void good_config(char cfg[PATH_MAX], const char *dir, const char *sink_extra)
{
    char text[2 * PATH_MAX + 512];
    fmt(text, sizeof(text),
        "// a comment: configs may carry them\n"
        "{\n"
        "  \"plugin_path\": [\"%s\"],\n"
        "  \"log\": {\n"
        "    \"sinks\": [\n"
        "      {\"type\": \"fixture_good\", \"tag\": \"e2e\"%s}\n"
        "    ]\n"
        "  }\n"
        "}\n",
        fixture_dir(), sink_extra);
    config_file(cfg, dir, "ksockd.json", text);
}

TEST(ksockd_check_config_accepts_good_fixture)
{
    char dir[PATH_MAX], cfg[PATH_MAX], want[PATH_MAX + 64];
    make_tmpdir(dir);
    good_config(cfg, dir, "");
    proc_t p;
    run_ksockd(&p, dir, "--check-config", cfg, NULL);
    ASSERT_EQ(p.exit_code, 0);
    fmt(want, sizeof(want), "%s: configuration is valid", cfg);
    ASSERT_CONTAINS(p.out, want);
    assert_not_started(&p);
    proc_free(&p);
    rm_rf(dir);
}

TEST(ksockd_runs_with_good_fixture)
{
    char dir[PATH_MAX], cfg[PATH_MAX], log[PATH_MAX], extra[PATH_MAX + 32], o[PATH_MAX],
        e[PATH_MAX];
    make_tmpdir(dir);
    fmt(log, sizeof(log), "%s/sink.log", dir);
    fmt(extra, sizeof(extra), ", \"path\": \"%s\"", log);
    good_config(cfg, dir, extra);
    fmt(o, sizeof(o), "%s/stdout", dir);
    fmt(e, sizeof(e), "%s/stderr", dir);
    char *argv[] = {(char *)ksockd_path(), "--config", cfg, NULL};
    pid_t pid = spawn(argv, o, e);

    /* Wait for the start-up line to come through the plugin. */
    bool started = false;
    for (int i = 0; i < 2000 && !started; i++) {
        char *t = read_file(log);
        started = strstr(t, "e2e: ksockd started") != NULL;
        free(t);
        if (!started) nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    ASSERT(started);
    ASSERT_OK(kill(pid, SIGTERM));
    bool timed_out;
    int st = wait_for(pid, 20000, &timed_out);
    ASSERT_EQ(timed_out, 0);
    ASSERT(WIFEXITED(st));
    ASSERT_EQ(WEXITSTATUS(st), 0);
    char *t = read_file(log);
    ASSERT_CONTAINS(t, "e2e: stopping on SIGTERM\n");
    ASSERT_CONTAINS(t, "e2e: ksockd stopped\n");
    free(t);
    rm_rf(dir);
}

/* ---- Bad configs through ksockd --check-config ---------------------------------------- */

/*
 * Run --check-config on `text` and expect exit 2 with "FILE:LINE:COL: "
 * followed by `msg`, where LINE:COL is where `at` first appears in text
 * (NULL: the end of the text).
 */
static void check_bad_config(const char *text, const char *at, const char *msg)
{
    char dir[PATH_MAX], cfg[PATH_MAX], want[PATH_MAX + 1024];
    make_tmpdir(dir);
    config_file(cfg, dir, "bad.json", text);
    int line, col;
    pos_of(text, at, &line, &col);
    fmt(want, sizeof(want), "ksockd: %s:%d:%d: %s", cfg, line, col, msg);
    proc_t p;
    run_ksockd(&p, dir, "--check-config", cfg, NULL);
    ASSERT_EQ(p.timed_out, 0);
    ASSERT_EQ(p.exit_code, 2);
    ASSERT_CONTAINS(p.err, want);
    ASSERT_NULL(strstr(p.out, "configuration is valid"));
    assert_not_started(&p);
    proc_free(&p);
    /* --config refuses the same way. */
    run_ksockd(&p, dir, "--config", cfg, NULL);
    ASSERT_EQ(p.exit_code, 2);
    ASSERT_CONTAINS(p.err, want);
    assert_not_started(&p);
    proc_free(&p);
    rm_rf(dir);
}

/* A config whose one sink is the good fixture with `sink` as its members. */
static void check_bad_sink(const char *sink, const char *at, const char *msg)
{
    char text[PATH_MAX + 1024];
    fmt(text, sizeof(text),
        "{\n"
        "  \"plugin_path\": [\"%s\"],\n"
        "  \"log\": {\n"
        "    \"sinks\": [\n"
        "      {\"type\": \"fixture_good\", %s}\n"
        "    ]\n"
        "  }\n"
        "}\n",
        fixture_dir(), sink);
    check_bad_config(text, at, msg);
}

TEST(config_syntax_error)
{
    /* The second comma is the error: the message points at it. */
    check_bad_config(
        "{\n  \"log\": {\n    \"level\": \"info\",,\n    \"format\": \"text\"\n  }\n}\n",
        ",\n    \"format\"", "syntax error: invalid object key (must be a string)");
}

TEST(config_syntax_error_unterminated)
{
    /* Where the document ends, not 1:1. */
    check_bad_config("{\n  \"log\": {\n    \"level\": \"info\"\n", NULL,
                     "syntax error: premature EOF");
}

TEST(config_syntax_error_empty)
{
    check_bad_config("// nothing but a comment\n", "//", "syntax error: empty document");
}

TEST(config_not_an_object)
{
    check_bad_config("[1, 2]\n", "[1", "the configuration must be a JSON object, got array");
}

TEST(config_unknown_top_level_key)
{
    check_bad_config("{\n  \"lgo\": {}\n}\n", "{}",
                     "ksockd: key \"lgo\": unknown key (known keys: plugin_path, log, kafka, "
                     "websocket, auth, bridge, serializers, admin)");
}

TEST(config_unknown_plugin_key)
{
    check_bad_sink("\"tag\": \"x\", \"colour\": \"red\"", "\"red\"",
                   "logsink \"fixture_good\": key \"colour\": unknown key (known keys: tag, "
                   "limit, mode, interval, buffer, fail_create, path, type, name, level, format)");
}

TEST(config_wrong_type)
{
    check_bad_sink("\"tag\": \"x\", \"limit\": \"ten\"", "\"ten\"",
                   "logsink \"fixture_good\": key \"limit\": expected an integer, got string");
}

TEST(config_wrong_type_bool)
{
    check_bad_sink("\"tag\": \"x\", \"fail_create\": 1", "1}",
                   "logsink \"fixture_good\": key \"fail_create\": expected true or false, got "
                   "integer");
}

TEST(config_missing_required_key)
{
    check_bad_sink("\"limit\": 3", "{\"type\": \"fixture_good\"",
                   "logsink \"fixture_good\": key \"tag\": missing (required, type string)");
}

TEST(config_bad_enum)
{
    check_bad_sink("\"tag\": \"x\", \"mode\": \"sometimes\"", "\"sometimes\"",
                   "logsink \"fixture_good\": key \"mode\": \"sometimes\" is not one of: count, "
                   "drop");
}

TEST(config_bad_duration)
{
    check_bad_sink("\"tag\": \"x\", \"interval\": \"5 parsecs\"", "\"5 parsecs\"",
                   "logsink \"fixture_good\": key \"interval\": \"5 parsecs\" is not a duration "
                   "(use a number with ms, s, m, h or d, e.g. \"30s\")");
}

TEST(config_duration_without_unit)
{
    /* "30": seconds or milliseconds? Refused rather than guessed. */
    check_bad_sink("\"tag\": \"x\", \"interval\": \"30\"", "\"30\"",
                   "logsink \"fixture_good\": key \"interval\": \"30\" is not a duration");
}

TEST(config_bad_size)
{
    check_bad_sink("\"tag\": \"x\", \"buffer\": \"12 furlongs\"", "\"12 furlongs\"",
                   "logsink \"fixture_good\": key \"buffer\": \"12 furlongs\" is not a size (use "
                   "bytes or B, KB, MB, GB, KiB, MiB, GiB, e.g. \"64KiB\")");
}

TEST(config_negative_size)
{
    check_bad_sink("\"tag\": \"x\", \"buffer\": -1", "-1",
                   "logsink \"fixture_good\": key \"buffer\": must not be negative");
}

TEST(config_out_of_range)
{
    check_bad_sink("\"tag\": \"x\", \"limit\": 5000", "5000",
                   "logsink \"fixture_good\": key \"limit\": value 5000 is outside [0, 1000]");
}

TEST(config_core_bad_level)
{
    check_bad_config("{\n  \"log\": {\"level\": \"loud\"}\n}\n", "\"loud\"",
                     "log: key \"level\": \"loud\" is not one of: debug, info, warn, error, off");
}

TEST(config_duplicate_key)
{
    check_bad_config("{\n  \"log\": {},\n  \"log\": {}\n}\n", "\"log\": {}\n}",
                     "duplicate key \"log\"");
}

/* ---- A log file that cannot be opened ---------------------------------------------------- */

/* logsink_file.so in $KSOCK_PLUGIN_PATH (build/plugins), or NULL. */
static bool file_sink_built(void)
{
    const char *env = getenv("KSOCK_PLUGIN_PATH");
    if (env == NULL) return false;
    char *copy = strdup(env), *save = NULL;
    bool found = false;
    for (char *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        char path[PATH_MAX];
        fmt(path, sizeof(path), "%s/logsink_file.so", d);
        found = access(path, R_OK) == 0;
    }
    free(copy);
    return found;
}

TEST(log_file_cannot_be_opened)
{
    if (!file_sink_built())
        SKIP("logsink_file.so is not in $KSOCK_PLUGIN_PATH (plugins/logsink_file not built)");
    char dir[PATH_MAX], cfg[PATH_MAX], logpath[PATH_MAX], text[2 * PATH_MAX];
    make_tmpdir(dir);
    fmt(logpath, sizeof(logpath), "%s/no/such/dir/ksockd.log", dir);
    fmt(text, sizeof(text), "{\"log\": {\"sinks\": [{\"type\": \"file\", \"path\": \"%s\"}]}}\n",
        logpath);
    config_file(cfg, dir, "ksockd.json", text);
    proc_t p;
    run_ksockd(&p, dir, "--config", cfg, NULL);
    ASSERT_EQ(p.timed_out, 0);
    ASSERT_NE(p.exit_code, 0);
    ASSERT_EQ(p.exit_code, 2);
    ASSERT_CONTAINS(p.err, logpath);
    ASSERT_CONTAINS(p.err, "No such file or directory");
    assert_not_started(&p);
    proc_free(&p);
    rm_rf(dir);
}

/* ---- The runner: test.h's TEST_LIST, plus TAP SKIP for status 77 ------------------------- */

static const test_entry_t tests[] = {
    TEST_ENTRY(refuse_notelf),
    TEST_ENTRY(refuse_no_entry),
    TEST_ENTRY(refuse_null_desc),
    TEST_ENTRY(refuse_bad_magic),
    TEST_ENTRY(refuse_newer_major),
    TEST_ENTRY(refuse_newer_minor),
    TEST_ENTRY(refuse_short_desc),
    TEST_ENTRY(refuse_short_vtable),
    TEST_ENTRY(refuse_short_option),
    TEST_ENTRY(refuse_unresolved),
    TEST_ENTRY(refuse_newer_symbols),
    TEST_ENTRY(refuse_missing_fn),
    TEST_ENTRY(refuse_bad_kind),
    TEST_ENTRY(refuse_bad_name),
    TEST_ENTRY(refuse_null_vtable),
    TEST_ENTRY(refuse_no_opts_size),
    TEST_ENTRY(refuse_dup_option),
    TEST_ENTRY(refuse_empty_enum),
    TEST_ENTRY(refuse_bad_default),
    TEST_ENTRY(refuse_init_fails),
    TEST_ENTRY(refuse_misnamed),
    TEST_ENTRY(refuse_duplicate_name),
    TEST_ENTRY(refuse_not_a_regular_file),
    TEST_ENTRY(missing_plugin_lists_search_path),
    TEST_ENTRY(invalid_names_are_not_looked_up),
    TEST_ENTRY(good_loads),
    TEST_ENTRY(transport_built_for_1_0_loads_without_pause_read),
    TEST_ENTRY(good_two_instances_have_their_own_state),
    TEST_ENTRY(create_failure_is_reported_with_owner),
    TEST_ENTRY(options_are_checked_before_plugin_code_runs),
    TEST_ENTRY(teardown_order),
    TEST_ENTRY(logging_through_the_plugin),
    TEST_ENTRY(sink_may_log_from_its_callbacks),
    TEST_ENTRY(teardown_with_pending_drop_reports),
    TEST_ENTRY(builtin_plugin),
    TEST_ENTRY(optional_functions_get_defaults),
    TEST_ENTRY(serializer_without_decode_envelope_is_refused),
    TEST_ENTRY(ksockd_refuses_notelf),
    TEST_ENTRY(ksockd_refuses_no_entry),
    TEST_ENTRY(ksockd_refuses_null_desc),
    TEST_ENTRY(ksockd_refuses_bad_magic),
    TEST_ENTRY(ksockd_refuses_newer_major),
    TEST_ENTRY(ksockd_refuses_newer_minor),
    TEST_ENTRY(ksockd_refuses_short_desc),
    TEST_ENTRY(ksockd_refuses_short_vtable),
    TEST_ENTRY(ksockd_refuses_short_option),
    TEST_ENTRY(ksockd_refuses_unresolved),
    TEST_ENTRY(ksockd_refuses_newer_symbols),
    TEST_ENTRY(ksockd_refuses_missing_fn),
    TEST_ENTRY(ksockd_refuses_bad_kind),
    TEST_ENTRY(ksockd_refuses_bad_name),
    TEST_ENTRY(ksockd_refuses_null_vtable),
    TEST_ENTRY(ksockd_refuses_no_opts_size),
    TEST_ENTRY(ksockd_refuses_dup_option),
    TEST_ENTRY(ksockd_refuses_empty_enum),
    TEST_ENTRY(ksockd_refuses_bad_default),
    TEST_ENTRY(ksockd_refuses_init_fails),
    TEST_ENTRY(ksockd_refuses_missing_plugin),
    TEST_ENTRY(ksockd_list_plugins_reports_refusals),
    TEST_ENTRY(ksockd_describe_plugin),
    TEST_ENTRY(ksockd_check_config_accepts_good_fixture),
    TEST_ENTRY(ksockd_runs_with_good_fixture),
    TEST_ENTRY(config_syntax_error),
    TEST_ENTRY(config_syntax_error_unterminated),
    TEST_ENTRY(config_syntax_error_empty),
    TEST_ENTRY(config_not_an_object),
    TEST_ENTRY(config_unknown_top_level_key),
    TEST_ENTRY(config_unknown_plugin_key),
    TEST_ENTRY(config_wrong_type),
    TEST_ENTRY(config_wrong_type_bool),
    TEST_ENTRY(config_missing_required_key),
    TEST_ENTRY(config_bad_enum),
    TEST_ENTRY(config_bad_duration),
    TEST_ENTRY(config_duration_without_unit),
    TEST_ENTRY(config_bad_size),
    TEST_ENTRY(config_negative_size),
    TEST_ENTRY(config_out_of_range),
    TEST_ENTRY(config_core_bad_level),
    TEST_ENTRY(config_duplicate_key),
    TEST_ENTRY(log_file_cannot_be_opened),
};

/*
 * test.h's runner, except that a child exiting with TEST_SKIP_STATUS is a
 * TAP "# SKIP" rather than a failure. (Candidate for test.h itself.)
 */
int main(int argc, char **argv)
{
    size_t n = sizeof(tests) / sizeof(tests[0]), run = 0, k = 0;
    int failed = 0;
    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < n; i++)
        if (argc < 2 || strcmp(argv[1], tests[i].name) == 0) run++;
    printf("1..%zu\n", run);
    for (size_t i = 0; i < n; i++) {
        if (argc >= 2 && strcmp(argv[1], tests[i].name) != 0) continue;
        const char *verdict = "ok";
        const char *directive = "";
        if (getenv("KSOCK_TEST_NOFORK")) {
            tests[i].fn();
        } else {
            fflush(stdout);
            pid_t pid = fork();
            if (pid < 0) return 1;
            if (pid == 0) {
                tests[i].fn();
                exit(0); /* not _exit(): LeakSanitizer checks in an atexit handler */
            }
            int status = 0;
            while (waitpid(pid, &status, 0) < 0) {
            }
            if (WIFEXITED(status) && WEXITSTATUS(status) == TEST_SKIP_STATUS) {
                directive = " # SKIP see the reason above";
            } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                if (WIFSIGNALED(status))
                    printf("# %s: killed by signal %d\n", tests[i].name, WTERMSIG(status));
                else
                    printf("# %s: exit status %d\n", tests[i].name, WEXITSTATUS(status));
                verdict = "not ok";
                failed++;
            }
        }
        printf("%s %zu - %s%s\n", verdict, ++k, tests[i].name, directive);
        fflush(stdout);
    }
    return failed ? 1 : 0;
}
