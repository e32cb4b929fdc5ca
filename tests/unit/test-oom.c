/*
 * Out of memory is an error code (docs/errors.md): every allocation that
 * libksock makes is failed in turn, and each call must then return 0 or
 * KSOCK_E_NOMEM, never abort or crash, and leak nothing of its own.
 *
 * The program replaces malloc, calloc, realloc and free (ELF interposition:
 * the executable's definitions win for every shared object) and fails only
 * allocations whose caller is inside libksock, so yajl, libevent and the
 * plugins allocate normally. Under AddressSanitizer, which owns malloc, the
 * tests skip.
 */

#include "test.h"

#include <ksock/ksock.h>
#include <ksock/ws.h>
#include <dlfcn.h>
#include <execinfo.h>
#include <link.h>
#include <stdatomic.h>
#include <stdint.h>

#if defined(__SANITIZE_ADDRESS__)
#define OOM_HOOKS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OOM_HOOKS 0
#endif
#endif
#ifndef OOM_HOOKS
#define OOM_HOOKS 1
#endif

#if OOM_HOOKS
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t m);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);

static uintptr_t lib_lo, lib_hi; /* libksock's mapped range */
static long fail_at = -1;        /* fail the fail_at-th libksock allocation (1-based) */
static long seen, nfailed;
static atomic_flag lock = ATOMIC_FLAG_INIT;
static bool trace; /* OOM_TRACE=1: print where each failed allocation came from */

/* libksock's live allocations, to find leaks: an open-addressed set of pointers. */
#define SLOTS 65536
static void *live[SLOTS];
static long nlive;

static void lock_take(void)
{
    while (atomic_flag_test_and_set_explicit(&lock, memory_order_acquire)) {
    }
}
static void lock_give(void)
{
    atomic_flag_clear_explicit(&lock, memory_order_release);
}

static size_t slot_of(void *p)
{
    return (size_t)(((uintptr_t)p >> 4) * 2654435761u) % SLOTS;
}

static void live_add(void *p)
{
    for (size_t i = slot_of(p);; i = (i + 1) % SLOTS) {
        if (live[i] == NULL || live[i] == (void *)1) {
            live[i] = p;
            nlive++;
            return;
        }
    }
}

static void live_del(void *p)
{
    for (size_t i = slot_of(p); live[i] != NULL; i = (i + 1) % SLOTS) {
        if (live[i] == p) {
            live[i] = (void *)1; /* tombstone */
            nlive--;
            return;
        }
    }
}

static bool from_lib(void *ra)
{
    return (uintptr_t)ra >= lib_lo && (uintptr_t)ra < lib_hi;
}

/* True when this allocation (called from `ra`) must fail. */
static bool should_fail(void *ra)
{
    if (!from_lib(ra)) return false;
    lock_take();
    bool f = fail_at > 0 && ++seen == fail_at;
    if (f) nfailed++;
    lock_give();
    if (f && trace) {
        void *bt[16];
        backtrace_symbols_fd(bt, backtrace(bt, 16), 2);
    }
    return f;
}

static void track(void *ra, void *p)
{
    if (p == NULL || !from_lib(ra)) return;
    lock_take();
    live_add(p);
    lock_give();
}

static void untrack(void *p)
{
    if (p == NULL) return;
    lock_take();
    live_del(p);
    lock_give();
}

void *malloc(size_t n)
{
    void *ra = __builtin_return_address(0);
    if (should_fail(ra)) return NULL;
    void *p = __libc_malloc(n);
    track(ra, p);
    return p;
}

void *calloc(size_t n, size_t m)
{
    void *ra = __builtin_return_address(0);
    if (should_fail(ra)) return NULL;
    void *p = __libc_calloc(n, m);
    track(ra, p);
    return p;
}

void *realloc(void *old, size_t n)
{
    void *ra = __builtin_return_address(0);
    if (should_fail(ra)) return NULL;
    void *p = __libc_realloc(old, n);
    if (p != NULL || n == 0) untrack(old);
    /* A block reallocated by libksock is libksock's, whoever made it. */
    track(ra, p);
    return p;
}

void free(void *p)
{
    untrack(p);
    __libc_free(p);
}

static int find_lib(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    if (info->dlpi_addr != (uintptr_t)data) return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD) continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
        if (lib_lo == 0 || lo < lib_lo) lib_lo = lo;
        if (hi > lib_hi) lib_hi = hi;
    }
    return 1;
}

static void oom_init(void)
{
    Dl_info di;
    void *bt[2];
    backtrace(bt, 2); /* loads libgcc now, not from inside malloc */
    trace = getenv("OOM_TRACE") != NULL;
    ASSERT(dladdr((void *)ksock_version, &di) != 0);
    dl_iterate_phdr(find_lib, di.dli_fbase);
    ASSERT(lib_hi > lib_lo);
}

/*
 * Run `op` once with no failure, then with the 1st, 2nd, ... libksock
 * allocation failing, until a run needs fewer allocations than the one
 * failed. `op` returns what the API returned; it must be 0 or NOMEM, and
 * unless `leaks` is false (the op hands memory over), no libksock
 * allocation may outlive it.
 */
static void each_failure(int (*op)(void *), void *arg, bool leaks, long *nruns)
{
    oom_init();
    ASSERT_OK(op(arg));
    long before = nlive;
    for (long n = 1;; n++) {
        lock_take();
        fail_at = n;
        seen = nfailed = 0;
        lock_give();
        int rc = op(arg);
        lock_take();
        long f = nfailed;
        fail_at = -1;
        lock_give();
        if (f == 0) {
            ASSERT_OK(rc);
            *nruns = n;
            return;
        }
        if (rc != 0 && rc != KSOCK_E_NOMEM) {
            fprintf(stderr, "# allocation %ld failed: %s\n", n, ksock_err_name(rc));
            ASSERT_EQ(rc, KSOCK_E_NOMEM);
        }
        if (leaks && nlive != before) {
            fprintf(stderr, "# allocation %ld failed: %ld leaked\n", n, nlive - before);
            ASSERT_EQ(nlive, before);
        }
    }
}
#else
static void each_failure(int (*op)(void *), void *arg, bool leaks, long *nruns)
{
    (void)op;
    (void)arg;
    (void)leaks;
    (void)nruns;
    TEST_SKIP("AddressSanitizer owns malloc: no allocation failure injection");
}
#endif

/* ---- The operations ---- */

typedef struct {
    int64_t n;
    char *name;
    ksock_strlist_t tags;
} opts_t;

static const ksock_option_t schema[] = {
    KSOCK_OPTION("n", KSOCK_OPT_INT, 0, "1", opts_t, n, "a number"),
    KSOCK_OPTION("name", KSOCK_OPT_STRING, 0, "default", opts_t, name, "a string"),
    KSOCK_OPTION("tags", KSOCK_OPT_LIST, 0, NULL, opts_t, tags, "strings"), KSOCK_OPTION_END};

static int op_config(void *arg)
{
    (void)arg;
    const char *text = "{\"n\": 3, \"name\": \"a string\", \"tags\": [\"x\", \"y\", \"z\"],"
                       " /* a comment */ \"extra\": {\"k\": [1, 2.5, true, null]}}";
    const char *ignore[] = {"extra", NULL};
    ksock_config_t *cfg;
    char err[256];
    int rc = ksock_config_load_string("oom.json", text, strlen(text), &cfg, err, sizeof(err));
    if (rc != 0) return rc;
    opts_t o;
    memset(&o, 0, sizeof(o));
    rc = ksock_options_apply(schema, sizeof(ksock_option_t), cfg, ksock_config_root(cfg), "test",
                             ignore, &o, err, sizeof(err));
    if (rc == 0 && (o.n != 3 || strcmp(o.name, "a string") != 0 || o.tags.n != 3)) rc = -1000;
    ksock_options_free(schema, sizeof(ksock_option_t), &o);
    ksock_config_free(cfg);
    return rc;
}

static int op_runtime(void *arg)
{
    (void)arg;
    const char *text = "{\"plugin_path\": [\"/nonexistent/a\", \"/nonexistent/b\"],"
                       " \"log\": {\"level\": \"error\", \"sinks\": ["
                       " {\"type\": \"console\", \"name\": \"one\"},"
                       " {\"type\": \"console\", \"name\": \"two\", \"stream\": \"stderr\"}]}}";
    ksock_runtime_t *rt;
    ksock_config_t *cfg;
    char err[256];
    int rc = ksock_config_load_string("oom.json", text, strlen(text), &cfg, err, sizeof(err));
    if (rc != 0) return rc;
    rc = ksock_runtime_new(&rt, err, sizeof(err));
    if (rc != 0) {
        ksock_config_free(cfg);
        return rc;
    }
    ksock_runtime_adopt_config(rt, cfg);
    rc = ksock_config_check(rt, cfg, err, sizeof(err));
    if (rc == 0) rc = ksock_runtime_configure(rt, cfg, err, sizeof(err));
    if (rc == 0) {
        /* Delivered on the loop: with no memory the handler call alone is lost. */
        ksock_report_error(rt, KSOCK_E_IO, "oom", "reported");
        ksock_runtime_run_once(rt, false);
    }
    ksock_runtime_destroy(rt);
    return rc;
}

TEST(config_and_options_return_nomem)
{
    long runs = 0;
    each_failure(op_config, NULL, true, &runs);
    ASSERT_GT(runs, 5); /* the injection reached the code under test */
}

TEST(runtime_and_log_config_return_nomem)
{
    long runs = 0;
    each_failure(op_runtime, NULL, true, &runs);
    ASSERT_GT(runs, 10);
}

/* Adopting allocates nothing: it cannot fail even with no memory at all. */
static int op_adopt(void *arg)
{
    ksock_runtime_t *rt = arg;
    ksock_config_t *cfg[3];
    char err[256];
    for (int i = 0; i < 3; i++)
        if (ksock_config_load_string("a.json", "{}", 2, &cfg[i], err, sizeof(err)) != 0) {
            while (i-- > 0)
                ksock_config_free(cfg[i]);
            return KSOCK_E_NOMEM;
        }
    for (int i = 0; i < 3; i++) {
        ksock_runtime_adopt_config(rt, cfg[i]);
        ksock_runtime_adopt_config(rt, cfg[i]); /* twice: still freed once */
    }
    return 0;
}

TEST(adopt_config_never_allocates)
{
    ksock_runtime_t *rt;
    char err[256];
    ASSERT_OK(ksock_runtime_new(&rt, err, sizeof(err)));
    long runs = 0;
    /* Each run's documents are adopted by rt; destroy frees them all. */
    each_failure(op_adopt, rt, false, &runs);
    ksock_runtime_destroy(rt);
}

typedef struct {
    ksock_runtime_t *rt;
} ws_arg_t;

static int op_ws_connect(void *arg)
{
    ws_arg_t *a = arg;
    ksock_ws_manager_t *mgr;
    char err[256];
    int rc = ksock_ws_manager_new(a->rt, NULL, &mgr, err, sizeof(err));
    if (rc != 0) return rc;
    ksock_ws_security_opts_t so = {.size = sizeof(so), .token = "tok-en", .ca_file = "/x/ca.pem"};
    rc = ksock_ws_configure_security(mgr, &so);
    ksock_reconnect_opts_t ro;
    ksock_reconnect_opts_init(&ro);
    ro.policy_options_json = NULL;
    if (rc == 0) rc = ksock_ws_configure_reconnection(mgr, &ro);
    ksock_kvpair_t headers[] = {{"x-one", "1"}, {"x-two", "2"}};
    ksock_kvpair_t query[] = {{"topic", "a b/c"}, {"from", "earliest"}};
    ksock_ws_opts_t wo;
    ksock_ws_opts_init(&wo);
    wo.headers = headers;
    wo.nheaders = 2;
    wo.query = query;
    wo.nquery = 2;
    wo.insecure = true;
    ksock_ws_t *ws = NULL;
    /* Port 9 on loopback: nothing listens; the manager is freed before any event. */
    if (rc == 0) rc = ksock_ws_connect(mgr, "ws://127.0.0.1:9/ws", &wo, &ws, err, sizeof(err));
    if (rc == 0) rc = ksock_ws_close(ws, 1000, "bye");
    ksock_ws_manager_destroy(mgr);
    /* Events the transport thread posted before it stopped: they free themselves here. */
    ksock_runtime_run_once(a->rt, false);
    return rc;
}

TEST(ws_connect_returns_nomem)
{
    ws_arg_t a;
    char err[256];
    ASSERT_OK(ksock_runtime_new(&a.rt, err, sizeof(err)));
    long runs = 0;
    each_failure(op_ws_connect, &a, true, &runs);
    ASSERT_GT(runs, 10);
    ksock_runtime_destroy(a.rt);
}

/* Subscriptions (ws_subs.c): each call returns 0 or NOMEM and leaves nothing behind. */
static int op_ws_subscribe(void *arg)
{
    ws_arg_t *a = arg;
    ksock_ws_manager_t *mgr;
    char err[256];
    int rc = ksock_ws_manager_new(a->rt, NULL, &mgr, err, sizeof(err));
    if (rc != 0) return rc;
    ksock_ws_t *ws = NULL;
    rc = ksock_ws_connect(mgr, "ws://127.0.0.1:9/ws", NULL, &ws, err, sizeof(err));
    ksock_partition_offset_t po[] = {{0, 7}, {2, 9}};
    ksock_ws_subscribe_opts_t so;
    ksock_ws_subscribe_opts_init(&so);
    so.start = KSOCK_START_OFFSETS;
    so.offsets = po;
    so.noffsets = 2;
    so.id = "s1";
    if (rc == 0) rc = ksock_ws_subscribe(ws, "orders", &so, err, sizeof(err));
    if (rc == 0) rc = ksock_ws_subscribe(ws, "orders", NULL, err, sizeof(err)); /* replaces */
    if (rc == 0) rc = ksock_ws_subscribe(ws, "other", NULL, err, sizeof(err));
    size_t n = 0;
    if (rc == 0) rc = ksock_ws_position(ws, "orders", po, 2, &n);
    if (rc == 0) rc = ksock_ws_unsubscribe(ws, "other");
    if (rc == 0) rc = ksock_ws_close(ws, 1000, "bye");
    ksock_ws_manager_destroy(mgr);
    ksock_runtime_run_once(a->rt, false);
    return rc;
}

TEST(ws_subscribe_returns_nomem)
{
    ws_arg_t a;
    char err[256];
    ASSERT_OK(ksock_runtime_new(&a.rt, err, sizeof(err)));
    long runs = 0;
    each_failure(op_ws_subscribe, &a, true, &runs);
    ASSERT_GT(runs, 10);
    ksock_runtime_destroy(a.rt);
}

TEST_LIST(TEST_ENTRY(config_and_options_return_nomem),
          TEST_ENTRY(runtime_and_log_config_return_nomem), TEST_ENTRY(adopt_config_never_allocates),
          TEST_ENTRY(ws_connect_returns_nomem), TEST_ENTRY(ws_subscribe_returns_nomem))
