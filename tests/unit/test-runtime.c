/* The loop: posts from other threads, timers, signals, stop, error delivery. */
#include "test.h"

#include <ksock/ksock.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>

static ksock_runtime_t *new_rt(void)
{
    ksock_runtime_t *rt;
    char err[256];
    ASSERT_OK(ksock_runtime_new(&rt, err, sizeof(err)));
    return rt;
}

/* ---- posts ---- */

#define THREADS    4
#define PER_THREAD 10000

typedef struct {
    ksock_runtime_t *rt;
    int id;
} thread_arg_t;

static int last_seen[THREADS];
static int total;
static pthread_t loop_thread;

static void on_post(ksock_runtime_t *rt, void *arg)
{
    intptr_t v = (intptr_t)arg;
    int tid = (int)(v / PER_THREAD), seq = (int)(v % PER_THREAD);
    ASSERT(pthread_equal(pthread_self(), loop_thread));
    ASSERT_EQ(seq, last_seen[tid] + 1); /* per-poster order is kept */
    last_seen[tid] = seq;
    if (++total == THREADS * PER_THREAD) ksock_runtime_stop(rt);
}

static void *poster(void *p)
{
    thread_arg_t *a = p;
    for (int i = 0; i < PER_THREAD; i++)
        ASSERT_OK(ksock_runtime_post(a->rt, on_post, (void *)(intptr_t)(a->id * PER_THREAD + i)));
    return NULL;
}

TEST(posts_from_threads_run_on_loop_in_order)
{
    ksock_runtime_t *rt = new_rt();
    pthread_t th[THREADS];
    thread_arg_t args[THREADS];
    loop_thread = pthread_self();
    for (int i = 0; i < THREADS; i++) {
        last_seen[i] = -1;
        args[i] = (thread_arg_t){rt, i};
        pthread_create(&th[i], NULL, poster, &args[i]);
    }
    ASSERT_OK(ksock_runtime_run(rt));
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    ASSERT_EQ(total, THREADS * PER_THREAD);
    ksock_runtime_destroy(rt);
}

static int flag;
static void set_flag(ksock_runtime_t *rt, void *arg)
{
    flag = 1;
}

TEST(post_never_runs_inside_the_call)
{
    ksock_runtime_t *rt = new_rt();
    flag = 0;
    ASSERT_OK(ksock_runtime_post(rt, set_flag, NULL));
    ASSERT_EQ(flag, 0);
    ASSERT_OK(ksock_runtime_run_once(rt, false));
    ASSERT_EQ(flag, 1);
    ksock_runtime_destroy(rt);
}

TEST(pending_posts_run_at_destroy)
{
    ksock_runtime_t *rt = new_rt();
    flag = 0;
    ASSERT_OK(ksock_runtime_post(rt, set_flag, NULL));
    ksock_runtime_destroy(rt); /* the arg would leak otherwise: destroy must run it */
    ASSERT_EQ(flag, 1);
}

/* ---- timers ---- */

typedef struct {
    int fired;
    uint64_t first_ns, last_ns;
    ksock_runtime_t *rt;
} tstate_t;

static void on_tick(ksock_timer_t *t, void *data)
{
    tstate_t *s = data;
    uint64_t now = ksock_now_ns();
    if (s->fired++ == 0) s->first_ns = now;
    s->last_ns = now;
    if (s->fired == 5) {
        ksock_timer_close(t); /* closing from inside the callback is allowed */
        ksock_runtime_stop(s->rt);
    }
}

TEST(repeating_timer_and_close_in_callback)
{
    ksock_runtime_t *rt = new_rt();
    tstate_t s = {0, 0, 0, rt};
    ksock_timer_t *t;
    ASSERT_OK(ksock_timer_init(rt, &t, on_tick, &s));
    ASSERT(!ksock_timer_is_active(t));
    uint64_t start = ksock_now_ns();
    ASSERT_OK(ksock_timer_start(t, 20, 10));
    ASSERT(ksock_timer_is_active(t));
    ASSERT_OK(ksock_runtime_run(rt));
    ASSERT_EQ(s.fired, 5);
    /* Loose bounds: first after >= 20 ms, four repeats take >= 40 ms. */
    ASSERT_GE((int64_t)(s.first_ns - start), 19 * 1000000LL);
    ASSERT_GE((int64_t)(s.last_ns - s.first_ns), 39 * 1000000LL);
    ksock_runtime_destroy(rt);
}

static void never(ksock_timer_t *t, void *data)
{
    ASSERT(0);
}

static void stop_rt(ksock_timer_t *t, void *data)
{
    ksock_runtime_stop(data);
}

TEST(stopped_timer_does_not_fire)
{
    ksock_runtime_t *rt = new_rt();
    ksock_timer_t *t, *guard;
    ASSERT_OK(ksock_timer_init(rt, &t, never, NULL));
    ASSERT_OK(ksock_timer_init(rt, &guard, stop_rt, rt));
    ASSERT_OK(ksock_timer_start(t, 10, 0));
    ksock_timer_stop(t);
    ASSERT_OK(ksock_timer_start(guard, 50, 0));
    ASSERT_OK(ksock_runtime_run(rt));
    ksock_timer_close(t);
    ksock_timer_close(guard);
    ksock_runtime_destroy(rt);
}

/* ---- stop from another thread, signals ---- */

static void *stopper(void *p)
{
    usleep(50000);
    ksock_runtime_stop(p);
    return NULL;
}

TEST(stop_from_another_thread)
{
    ksock_runtime_t *rt = new_rt();
    pthread_t th;
    pthread_create(&th, NULL, stopper, rt);
    ASSERT_OK(ksock_runtime_run(rt)); /* returns only because of the stop */
    pthread_join(th, NULL);
    ksock_runtime_destroy(rt);
}

TEST(stop_before_run_returns_promptly)
{
    ksock_runtime_t *rt = new_rt();
    ksock_runtime_stop(rt);
    ASSERT_OK(ksock_runtime_run(rt));
    ksock_runtime_destroy(rt);
}

static int got_signal;
static void on_sig(ksock_signal_t *s, int signum, void *data)
{
    got_signal = signum;
    ksock_runtime_stop(data);
}

TEST(signal_handled_on_loop)
{
    ksock_runtime_t *rt = new_rt();
    ksock_signal_t *s;
    ASSERT_OK(ksock_signal_start(rt, &s, SIGUSR1, on_sig, rt));
    raise(SIGUSR1);
    ASSERT_OK(ksock_runtime_run(rt));
    ASSERT_EQ(got_signal, SIGUSR1);
    ksock_signal_close(s);
    ksock_runtime_destroy(rt);
}

/* ---- errors ---- */

static int err_code;
static char err_comp[64];
static int err_retriable;

static void on_err(ksock_runtime_t *rt, const ksock_error_t *e, void *data)
{
    err_code = e->code;
    snprintf(err_comp, sizeof(err_comp), "%s", e->component);
    err_retriable = e->cls == KSOCK_ERRCLASS_RETRIABLE;
    ASSERT_CONTAINS(e->message, "broker 7 down");
    ksock_runtime_stop(rt);
}

static void *reporter(void *p)
{
    ksock_report_error(p, KSOCK_E_CONNREFUSED, "kafka", "broker %d down", 7);
    return NULL;
}

TEST(error_handler_runs_on_loop_from_any_thread)
{
    ksock_runtime_t *rt = new_rt();
    ksock_log_options_t lo = {sizeof(lo), KSOCK_LOG_OFF, "console", KSOCK_LOG_FORMAT_TEXT, NULL};
    char e[256];
    ASSERT_OK(ksock_log_configure(rt, &lo, e, sizeof(e))); /* keep test output quiet */
    ksock_on_error(rt, on_err, NULL);
    pthread_t th;
    pthread_create(&th, NULL, reporter, rt);
    pthread_join(th, NULL);
    ASSERT_EQ(err_code, 0); /* not delivered inside the reporting call */
    ASSERT_OK(ksock_runtime_run(rt));
    ASSERT_EQ(err_code, KSOCK_E_CONNREFUSED);
    ASSERT_STR_EQ(err_comp, "kafka");
    ASSERT(err_retriable);
    ksock_runtime_destroy(rt);
}

TEST(error_codes)
{
    ASSERT_STR_EQ(ksock_err_name(KSOCK_E_TIMEDOUT), "KSOCK_E_TIMEDOUT");
    ASSERT_STR_EQ(ksock_strerror(KSOCK_E_TIMEDOUT), "timed out");
    ASSERT(ksock_err_is_retriable(KSOCK_E_TIMEDOUT));
    ASSERT(!ksock_err_is_retriable(KSOCK_E_AUTH));
    ASSERT_STR_EQ(ksock_err_name(-9999), "KSOCK_E_UNKNOWN");
    ASSERT_EQ(ksock_err_class(-9999), KSOCK_ERRCLASS_FATAL);
    ASSERT_EQ(ksock_err_from_errno(ECONNREFUSED), KSOCK_E_CONNREFUSED);
    /* Every code is distinct and named. */
    int codes[] = {
#define XX(name, num, cls, msg) num,
        KSOCK_ERRNO_MAP(XX)
#undef XX
    };
    size_t n = sizeof(codes) / sizeof(codes[0]);
    for (size_t i = 0; i < n; i++) {
        ASSERT_LT(codes[i], 0);
        ASSERT(strcmp(ksock_err_name(codes[i]), "KSOCK_E_UNKNOWN") != 0);
        for (size_t j = 0; j < i; j++)
            ASSERT_NE(codes[i], codes[j]);
    }
}

TEST_LIST(TEST_ENTRY(posts_from_threads_run_on_loop_in_order),
          TEST_ENTRY(post_never_runs_inside_the_call), TEST_ENTRY(pending_posts_run_at_destroy),
          TEST_ENTRY(repeating_timer_and_close_in_callback),
          TEST_ENTRY(stopped_timer_does_not_fire), TEST_ENTRY(stop_from_another_thread),
          TEST_ENTRY(stop_before_run_returns_promptly), TEST_ENTRY(signal_handled_on_loop),
          TEST_ENTRY(error_handler_runs_on_loop_from_any_thread), TEST_ENTRY(error_codes))
