/*
 * A small test harness in the manner of libuv's test/task.h: a list of
 * tests per file, typed ASSERT_* macros, TAP output (meson runs the
 * programs with protocol 'tap', and tools/test counts every "ok"/"not ok").
 *
 *   TEST(name) { ASSERT_EQ(1, 1); }
 *   TEST_LIST(TEST_ENTRY(name), ...)
 *
 * Each test runs in a forked child so a crash or a failed assertion fails
 * that test only; KSOCK_TEST_NOFORK=1 runs them in-process (for gdb).
 * `prog NAME` runs only the named test.
 */
#ifndef KSOCK_TEST_H
#define KSOCK_TEST_H

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef void (*test_fn)(void);
typedef struct {
    const char *name;
    test_fn fn;
} test_entry_t;

#define TEST(name) static void test_##name(void)
#define TEST_ENTRY(name)                                                                           \
    {                                                                                              \
#name, test_##name                                                                         \
    }

#define TEST_FAIL_(...)                                                                            \
    do {                                                                                           \
        fprintf(stderr, "# %s:%d: ", __FILE__, __LINE__);                                          \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        fflush(stderr);                                                                            \
        abort();                                                                                   \
    } while (0)

#define ASSERT(expr)                                                                               \
    do {                                                                                           \
        if (!(expr)) TEST_FAIL_("assertion failed: %s", #expr);                                    \
    } while (0)

#define ASSERT_INT_OP_(a, op, b)                                                                   \
    do {                                                                                           \
        int64_t a_ = (int64_t)(a), b_ = (int64_t)(b);                                              \
        if (!(a_ op b_)) TEST_FAIL_("%s %s %s: %" PRId64 " vs %" PRId64, #a, #op, #b, a_, b_);     \
    } while (0)

#define ASSERT_EQ(a, b)    ASSERT_INT_OP_(a, ==, b)
#define ASSERT_NE(a, b)    ASSERT_INT_OP_(a, !=, b)
#define ASSERT_LT(a, b)    ASSERT_INT_OP_(a, <, b)
#define ASSERT_LE(a, b)    ASSERT_INT_OP_(a, <=, b)
#define ASSERT_GT(a, b)    ASSERT_INT_OP_(a, >, b)
#define ASSERT_GE(a, b)    ASSERT_INT_OP_(a, >=, b)
#define ASSERT_OK(expr)    ASSERT_INT_OP_(expr, ==, 0)
#define ASSERT_NULL(p)     ASSERT((p) == NULL)
#define ASSERT_NOT_NULL(p) ASSERT((p) != NULL)

#define ASSERT_STR_EQ(a, b)                                                                        \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0)                                       \
            TEST_FAIL_("%s == %s: \"%s\" vs \"%s\"", #a, #b, a_ ? a_ : "(null)",                   \
                       b_ ? b_ : "(null)");                                                        \
    } while (0)

/* Substring check, for error messages. */
#define ASSERT_CONTAINS(hay, needle)                                                               \
    do {                                                                                           \
        const char *h_ = (hay), *n_ = (needle);                                                    \
        if (h_ == NULL || strstr(h_, n_) == NULL)                                                  \
            TEST_FAIL_("%s does not contain \"%s\": \"%s\"", #hay, n_, h_ ? h_ : "(null)");        \
    } while (0)

#define ASSERT_MEM_EQ(a, b, n) ASSERT(memcmp((a), (b), (n)) == 0)

/* Skip the current test (e.g. a service the run did not provide); TAP "# SKIP". */
#define TEST_SKIP_STATUS 77
#define TEST_SKIP(...)                                                                             \
    do {                                                                                           \
        printf("# skip: ");                                                                        \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        fflush(stdout);                                                                            \
        exit(TEST_SKIP_STATUS);                                                                    \
    } while (0)

static inline int test_run_one_(const test_entry_t *t)
{
    if (getenv("KSOCK_TEST_NOFORK")) {
        t->fn();
        return 0;
    }
    /* 0 pass, -1 fail, TEST_SKIP_STATUS skipped */
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        t->fn();
        /* exit(), not _exit(): LeakSanitizer checks for leaks in an atexit handler. */
        exit(0);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == TEST_SKIP_STATUS) return TEST_SKIP_STATUS;
    if (WIFSIGNALED(status))
        printf("# %s: killed by signal %d\n", t->name, WTERMSIG(status));
    else
        printf("# %s: exit status %d\n", t->name, WEXITSTATUS(status));
    return -1;
}

#define TEST_LIST(...)                                                                             \
    static const test_entry_t test_list_[] = {__VA_ARGS__};                                        \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        size_t n = sizeof(test_list_) / sizeof(test_list_[0]), run = 0;                            \
        int failed = 0;                                                                            \
        signal(SIGPIPE, SIG_IGN);                                                                  \
        for (size_t i = 0; i < n; i++)                                                             \
            if (argc < 2 || strcmp(argv[1], test_list_[i].name) == 0) run++;                       \
        printf("1..%zu\n", run);                                                                   \
        size_t k = 0;                                                                              \
        for (size_t i = 0; i < n; i++) {                                                           \
            if (argc >= 2 && strcmp(argv[1], test_list_[i].name) != 0) continue;                   \
            int rc = test_run_one_(&test_list_[i]);                                                \
            printf("%sok %zu - %s%s\n", rc == 0 || rc == TEST_SKIP_STATUS ? "" : "not ", ++k,      \
                   test_list_[i].name, rc == TEST_SKIP_STATUS ? " # SKIP" : "");                   \
            fflush(stdout);                                                                        \
            if (rc != 0 && rc != TEST_SKIP_STATUS) failed++;                                       \
        }                                                                                          \
        return failed ? 1 : 0;                                                                     \
    }

#endif
