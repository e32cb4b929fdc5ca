/*
 * logsink "file" through the real loader: contents in both formats, levels
 * per sink, buffering and the flush timer, reopen after a rename
 * (logrotate), paths that cannot be opened, write errors, threads.
 */
#include "logsink_test.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>

static const char *file_sink(const char *name, const char *path, const char *level,
                             const char *format, const char *extra)
{
    return lt_fmt("{\"type\":\"file\",\"name\":\"%s\",\"path\":\"%s\",\"level\":\"%s\","
                  "\"format\":\"%s\"%s%s}",
                  name, path, level, format, extra ? "," : "", extra ? extra : "");
}

static void log_sample(ksock_runtime_t *rt)
{
    ksock_kv_t kv[] = {KSOCK_KV_STR("user", "alice smith"), KSOCK_KV_I64("n", 42)};
    ksock_log(rt, KSOCK_LOG_INFO, "test", kv, 2, "hello %s", "world");
    ksock_kv_t kv2[] = {KSOCK_KV_BOOL("ok", true), KSOCK_KV_DBL("ratio", 0.5)};
    ksock_log(rt, KSOCK_LOG_DEBUG, "test.sub", kv2, 2, "second \"quoted\"");
}

TEST(file_text_and_json_contents)
{
    lt_tmpdir();
    const char *txt = lt_path("a.log"), *js = lt_path("a.json");
    char cfg[4096];
    snprintf(cfg, sizeof(cfg), "{\"log\":{\"sinks\":[%s,",
             file_sink("t", txt, "debug", "text", NULL));
    snprintf(cfg + strlen(cfg), sizeof(cfg) - strlen(cfg), "%s]}}",
             file_sink("j", js, "debug", "json", NULL));
    ksock_runtime_t *rt = lt_runtime(cfg);
    log_sample(rt);
    ksock_runtime_destroy(rt); /* destroy flushes */

    /* Text: "TIME LEVEL component: message key=value ..." */
    char *t = lt_read_file(txt);
    char *lines[16];
    size_t n = lt_lines(t, lines, 16);
    ASSERT_EQ(n, 2);
    lt_assert_time(lines[0]);
    ASSERT_STR_EQ(strchr(lines[0], ' '), " INFO  test: hello world user=\"alice smith\" n=42");
    lt_assert_time(lines[1]);
    ASSERT_STR_EQ(strchr(lines[1], ' '), " DEBUG test.sub: second \"quoted\" ok=true ratio=0.5");
    free(t);

    /* JSON: parse each line back. */
    char *j = lt_read_file(js);
    n = lt_lines(j, lines, 16);
    ASSERT_EQ(n, 2);
    yajl_val v = lt_json(lines[0]);
    lt_assert_time(lt_jstr(v, "time", NULL));
    ASSERT_STR_EQ(lt_jstr(v, "level", NULL), "info");
    ASSERT_STR_EQ(lt_jstr(v, "component", NULL), "test");
    ASSERT_STR_EQ(lt_jstr(v, "message", NULL), "hello world");
    ASSERT_STR_EQ(lt_jstr(v, "context", "user"), "alice smith");
    long long num = 0;
    ASSERT(lt_jint(v, "context", "n", &num));
    ASSERT_EQ(num, 42);
    yajl_tree_free(v);

    v = lt_json(lines[1]);
    ASSERT_STR_EQ(lt_jstr(v, "level", NULL), "debug");
    ASSERT_STR_EQ(lt_jstr(v, "component", NULL), "test.sub");
    ASSERT_STR_EQ(lt_jstr(v, "message", NULL), "second \"quoted\"");
    const char *okp[] = {"context", "ok", NULL};
    ASSERT(YAJL_IS_TRUE(yajl_tree_get(v, okp, yajl_t_true)));
    const char *rp[] = {"context", "ratio", NULL};
    yajl_val r = yajl_tree_get(v, rp, yajl_t_number);
    ASSERT_NOT_NULL(r);
    ASSERT(YAJL_GET_DOUBLE(r) == 0.5);
    yajl_tree_free(v);
    free(j);
}

/* Whole file, checking that its length is what strlen sees (no raw NUL). */
static char *read_exact(const char *path)
{
    struct stat st;
    ASSERT_OK(stat(path, &st));
    char *d = lt_read_file(path);
    ASSERT_EQ(strlen(d), (size_t)st.st_size);
    return d;
}

/* Client-controlled bytes reach a log file escaped, in both formats (docs/logging.md). */
TEST(file_hostile_values_escaped)
{
    lt_tmpdir();
    const char *txt = lt_path("h.log"), *js = lt_path("h.json");
    char cfg[4096];
    snprintf(cfg, sizeof(cfg), "{\"log\":{\"sinks\":[%s,",
             file_sink("t", txt, "debug", "text", NULL));
    snprintf(cfg + strlen(cfg), sizeof(cfg) - strlen(cfg), "%s]}}",
             file_sink("j", js, "debug", "json", NULL));
    ksock_runtime_t *rt = lt_runtime(cfg);
    lt_log_hostile(rt, true);
    ksock_runtime_destroy(rt);

    char *t = read_exact(txt);
    lt_assert_clean(t, strlen(t));
    ASSERT_EQ(lt_count(t, "\n"), 1); /* one record, one line */
    ASSERT_NOT_NULL(strstr(t, " WARN  test\\x1b\\n\\xff: reason=a\\x1b[2Jb\\nc\\rd\\te\\x7f"
                              "f\\xff\\xfeg\\xed\\xa0\\x80h\\u009bi\"\\\\j nul=\\x00 end "
                              "reason=\"a\\x1b[2Jb\\nc\\rd\\te\\x7ff\\xff\\xfeg\\xed\\xa0\\x80"
                              "h\\u009bi\\\"\\\\j\" k\\x1b[1m\\n\\xff=v big=\"a\\x1b[2J"));
    free(t);

    char *j = read_exact(js);
    lt_assert_clean(j, strlen(j));
    ASSERT_EQ(lt_count(j, "\n"), 1);
    yajl_val v = lt_json(j);
    ASSERT_STR_EQ(lt_jstr(v, "component", NULL), "test\x1b\n\xef\xbf\xbd");
    ASSERT_STR_EQ(lt_jstr(v, "message", NULL), "reason=" LT_HOSTILE_JSON " nul="); /* ends at NUL */
    ASSERT_STR_EQ(lt_jstr(v, "context", "reason"), LT_HOSTILE_JSON);
    ASSERT_STR_EQ(lt_jstr(v, "context", "k\x1b[1m\n\xef\xbf\xbd"), "v");
    const char *big = lt_jstr(v, "context", "big");
    ASSERT_NOT_NULL(big);
    ASSERT_EQ(strncmp(big, LT_HOSTILE_JSON, strlen(LT_HOSTILE_JSON)), 0);
    yajl_tree_free(v);
    free(j);
}

TEST(file_level_per_sink)
{
    lt_tmpdir();
    const char *all = lt_path("all.log"), *warn = lt_path("warn.log");
    const char *cfg =
        lt_fmt("{\"log\":{\"sinks\":[%s,%s]}}", file_sink("all", all, "debug", "text", NULL),
               file_sink("warn", warn, "warn", "json", NULL));
    ksock_runtime_t *rt = lt_runtime(cfg);
    ASSERT_EQ(ksock_log_threshold(rt), KSOCK_LOG_DEBUG);
    ksock_log(rt, KSOCK_LOG_DEBUG, "test", NULL, 0, "m-debug");
    ksock_log(rt, KSOCK_LOG_INFO, "test", NULL, 0, "m-info");
    ksock_log(rt, KSOCK_LOG_WARN, "test", NULL, 0, "m-warn");
    ksock_log(rt, KSOCK_LOG_ERROR, "test", NULL, 0, "m-error");
    ksock_runtime_destroy(rt);

    char *a = lt_read_file(all), *w = lt_read_file(warn);
    ASSERT_EQ(lt_count(a, "test: m-"), 4);
    ASSERT_EQ(lt_count(a, "DEBUG test: m-debug\n"), 1);
    ASSERT_EQ(lt_count(a, "ERROR test: m-error\n"), 1);
    ASSERT_EQ(lt_count(w, "\"component\":\"test\""), 2);
    ASSERT_EQ(lt_count(w, "\"message\":\"m-debug\""), 0);
    ASSERT_EQ(lt_count(w, "\"message\":\"m-info\""), 0);
    ASSERT_EQ(lt_count(w, "\"level\":\"warn\",\"component\":\"test\",\"message\":\"m-warn\""), 1);
    ASSERT_EQ(lt_count(w, "\"level\":\"error\",\"component\":\"test\",\"message\":\"m-error\""), 1);
    free(a);
    free(w);
}

/* Records wait in the buffer until the flush timer fires, not longer. */
TEST(file_flush_timer)
{
    lt_tmpdir();
    const char *p = lt_path("t.log");
    ksock_runtime_t *rt =
        lt_runtime(lt_fmt("{\"log\":{\"sinks\":[%s]}}",
                          file_sink("f", p, "debug", "text",
                                    "\"flush_interval\":\"100ms\",\"buffer_size\":\"64KiB\"")));
    uint64_t t0 = lt_ms();
    ksock_log(rt, KSOCK_LOG_INFO, "test", NULL, 0, "buffered");
    char *c = lt_read_file(p);
    ASSERT_EQ(lt_count(c, "buffered"), 0); /* still in memory */
    free(c);
    ASSERT_EQ(lt_stats(rt, "f").written, 0);

    lt_run_for(rt, 400);
    c = lt_read_file(p);
    ASSERT_EQ(lt_count(c, "INFO  test: buffered\n"), 1);
    free(c);
    ASSERT_EQ(lt_stats(rt, "f").written, 1);
    ASSERT_GE(lt_ms() - t0, 100);

    /* ksock_log_flush() writes at once. */
    ksock_log(rt, KSOCK_LOG_INFO, "test", NULL, 0, "flushed");
    ksock_log_flush(rt);
    c = lt_read_file(p);
    ASSERT_EQ(lt_count(c, "test: flushed\n"), 1);
    free(c);
    ksock_runtime_destroy(rt);
}

/* A full buffer is written without the loop running; so is an error record. */
TEST(file_buffer_full_and_error_level)
{
    lt_tmpdir();
    const char *p = lt_path("t.log");
    ksock_runtime_t *rt = lt_runtime(lt_fmt(
        "{\"log\":{\"sinks\":[%s]}}",
        file_sink("f", p, "debug", "text", "\"flush_interval\":\"1h\",\"buffer_size\":512")));
    char pad[101];
    memset(pad, 'x', 100);
    pad[100] = '\0';
    for (int i = 0; i < 22; i++)
        ksock_log(rt, KSOCK_LOG_INFO, "test", NULL, 0, "r%02d %s", i, pad);
    char *c = lt_read_file(p);
    size_t n = lt_count(c, "INFO  test: r");
    free(c);
    /* ~150 bytes a record, 512-byte buffer: written four at a time, so
     * records 1..20 are on disk and the last two still buffered. */
    ASSERT_EQ(n, 20);

    ksock_log(rt, KSOCK_LOG_ERROR, "test", NULL, 0, "boom");
    c = lt_read_file(p);
    ASSERT_EQ(lt_count(c, "INFO  test: r"), 22); /* the error record pushed everything out */
    ASSERT_EQ(lt_count(c, "ERROR test: boom\n"), 1);
    free(c);
    ksock_runtime_destroy(rt);
}

/* buffer_size 0: every record is written when it is logged. */
TEST(file_unbuffered)
{
    lt_tmpdir();
    const char *p = lt_path("t.log");
    ksock_runtime_t *rt = lt_runtime(lt_fmt(
        "{\"log\":{\"sinks\":[%s]}}", file_sink("f", p, "debug", "json", "\"buffer_size\":0")));
    ksock_log(rt, KSOCK_LOG_DEBUG, "test", NULL, 0, "now");
    char *c = lt_read_file(p);
    ASSERT_EQ(lt_count(c, "\"message\":\"now\""), 1);
    free(c);
    ksock_runtime_destroy(rt);
}

/* logrotate: rename, then SIGHUP (ksock_log_reopen). */
TEST(file_reopen_after_rename)
{
    lt_tmpdir();
    const char *p = lt_path("app.log"), *rotated = lt_path("app.log.1");
    ksock_runtime_t *rt =
        lt_runtime(lt_fmt("{\"log\":{\"sinks\":[%s]}}",
                          file_sink("f", p, "debug", "text", "\"flush_interval\":\"1h\"")));
    ksock_log(rt, KSOCK_LOG_INFO, "test", NULL, 0, "before-rotation");
    ASSERT_OK(rename(p, rotated));
    /* Still buffered at the rename: the reopen writes it to the old file first. */
    ksock_log_reopen(rt);
    ksock_log(rt, KSOCK_LOG_INFO, "test", NULL, 0, "after-rotation");
    ksock_runtime_destroy(rt);

    char *old = lt_read_file(rotated), *cur = lt_read_file(p);
    ASSERT_EQ(lt_count(old, "test: before-rotation\n"), 1);
    ASSERT_EQ(lt_count(old, "after-rotation"), 0);
    ASSERT_EQ(lt_count(cur, "test: after-rotation\n"), 1);
    ASSERT_EQ(lt_count(cur, "before-rotation"), 0);
    free(old);
    free(cur);
}

/* A reopen that fails keeps the old file and reports, naming the path. */
TEST(file_reopen_failure_keeps_writing)
{
    lt_tmpdir();
    ASSERT_OK(mkdir(lt_path("d"), 0755));
    const char *p = lt_path("d/app.log");
    ksock_runtime_t *rt =
        lt_runtime(lt_fmt("{\"log\":{\"sinks\":[%s]}}",
                          file_sink("f", p, "debug", "text", "\"flush_interval\":\"20ms\"")));
    lt_errors_t errs;
    memset(&errs, 0, sizeof(errs));
    ksock_on_error(rt, lt_on_error, &errs);
    ksock_log(rt, KSOCK_LOG_INFO, "test", NULL, 0, "one");
    ASSERT_OK(rename(lt_path("d"), lt_path("moved")));
    ksock_log_reopen(rt); /* d/app.log cannot be created: d is gone */
    ksock_log(rt, KSOCK_LOG_INFO, "test", NULL, 0, "two");
    lt_run_for(rt, 200);
    ASSERT_GE(errs.count, 1);
    ASSERT_CONTAINS(errs.messages, "cannot reopen");
    ASSERT_CONTAINS(errs.messages, p);
    ASSERT_CONTAINS(errs.messages, "No such file or directory");
    ASSERT_GE(lt_stats(rt, "f").errors, 1);
    ksock_runtime_destroy(rt);
    char *c = lt_read_file(lt_path("moved/app.log"));
    ASSERT_EQ(lt_count(c, "test: one\n"), 1);
    ASSERT_EQ(lt_count(c, "test: two\n"), 1);
    free(c);
}

TEST(file_unopenable_missing_dir)
{
    lt_tmpdir();
    const char *p = lt_path("no/such/dir/app.log");
    char err[1024] = "";
    ksock_runtime_t *rt = NULL;
    int rc = lt_try_runtime(
        lt_fmt("{\"log\":{\"sinks\":[%s]}}", file_sink("f", p, "info", "text", NULL)), &rt, err,
        sizeof(err));
    ASSERT_EQ(rc, KSOCK_E_IO);
    ASSERT_NULL(rt);
    ASSERT_CONTAINS(err, p);
    ASSERT_CONTAINS(err, "No such file or directory");
}

TEST(file_unopenable_is_directory)
{
    const char *dir = lt_tmpdir();
    char err[1024] = "";
    ksock_runtime_t *rt = NULL;
    int rc = lt_try_runtime(
        lt_fmt("{\"log\":{\"sinks\":[%s]}}", file_sink("f", dir, "info", "text", NULL)), &rt, err,
        sizeof(err));
    ASSERT_EQ(rc, KSOCK_E_IO);
    ASSERT_CONTAINS(err, lt_fmt("\"%s\"", dir));
    ASSERT_CONTAINS(err, "Is a directory");
}

/* A FIFO nobody reads: refused at once instead of blocking start-up in open(). */
TEST(file_fifo_without_reader_refused)
{
    lt_tmpdir();
    const char *p = lt_path("fifo");
    ASSERT_OK(mkfifo(p, 0600));
    alarm(10); /* the old open() blocked forever: fail the test instead */
    char err[1024] = "";
    ksock_runtime_t *rt = NULL;
    int rc = lt_try_runtime(
        lt_fmt("{\"log\":{\"sinks\":[%s]}}", file_sink("f", p, "info", "text", NULL)), &rt, err,
        sizeof(err));
    alarm(0);
    ASSERT_EQ(rc, KSOCK_E_IO);
    ASSERT_CONTAINS(err, lt_fmt("\"%s\": a FIFO with no reader", p));
}

TEST(file_options_refused)
{
    lt_tmpdir();
    const char *p = lt_path("a.log");
    char err[1024] = "";
    ksock_runtime_t *rt = NULL;
    /* mode is an octal string */
    int rc = lt_try_runtime(lt_fmt("{\"log\":{\"sinks\":[%s]}}",
                                   file_sink("f", p, "info", "text", "\"mode\":\"rw-r-----\"")),
                            &rt, err, sizeof(err));
    ASSERT_EQ(rc, KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "mode");
    ASSERT_CONTAINS(err, "rw-r-----");
    /* unknown keys are errors */
    rc = lt_try_runtime(
        lt_fmt("{\"log\":{\"sinks\":[%s]}}", file_sink("f", p, "info", "text", "\"bufer_size\":1")),
        &rt, err, sizeof(err));
    ASSERT_EQ(rc, KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "bufer_size");
    /* path is required */
    rc = lt_try_runtime("{\"log\":{\"sinks\":[{\"type\":\"file\"}]}}", &rt, err, sizeof(err));
    ASSERT_EQ(rc, KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "path");
    /* nothing was created on the way */
    struct stat st;
    ASSERT_EQ(stat(p, &st), -1);
}

TEST(file_mode)
{
    lt_tmpdir();
    umask(022);
    const char *p = lt_path("private.log"), *q = lt_path("default.log");
    ksock_runtime_t *rt = lt_runtime(lt_fmt("{\"log\":{\"sinks\":[%s,%s]}}",
                                            file_sink("p", p, "info", "text", "\"mode\":\"0600\""),
                                            file_sink("d", q, "info", "text", NULL)));
    struct stat st;
    ASSERT_OK(stat(p, &st));
    ASSERT_EQ(st.st_mode & 07777, 0600);
    ASSERT_OK(stat(q, &st));
    ASSERT_EQ(st.st_mode & 07777, 0640);
    ksock_runtime_destroy(rt);
}

/* Appends to an existing file, never truncates it. */
TEST(file_appends)
{
    lt_tmpdir();
    const char *p = lt_path("a.log");
    FILE *f = fopen(p, "w");
    ASSERT_NOT_NULL(f);
    fputs("existing line\n", f);
    fclose(f);
    ksock_runtime_t *rt =
        lt_runtime(lt_fmt("{\"log\":{\"sinks\":[%s]}}", file_sink("f", p, "info", "text", NULL)));
    ksock_log(rt, KSOCK_LOG_INFO, "test", NULL, 0, "appended");
    ksock_runtime_destroy(rt);
    char *c = lt_read_file(p);
    ASSERT_EQ(strncmp(c, "existing line\n", 14), 0);
    ASSERT_EQ(lt_count(c, "test: appended\n"), 1);
    free(c);
}

/* write(2) fails (ENOSPC on /dev/full): drops and errors counted, reported once. */
TEST(file_write_errors_counted)
{
    lt_tmpdir();
    ksock_runtime_t *rt =
        lt_runtime(lt_fmt("{\"log\":{\"sinks\":[%s]}}", file_sink("f", "/dev/full", "info", "text",
                                                                  "\"flush_interval\":\"20ms\"")));
    lt_errors_t errs;
    memset(&errs, 0, sizeof(errs));
    ksock_on_error(rt, lt_on_error, &errs);
    for (int i = 0; i < 5; i++)
        ksock_log(rt, KSOCK_LOG_INFO, "test", NULL, 0, "lost %d", i);
    lt_run_for(rt, 150);
    ksock_log_sink_stats_t st = lt_stats(rt, "f");
    ASSERT_EQ(st.written, 0);
    ASSERT_GE(st.dropped, 5); /* 5, plus the error record the report itself logged */
    ASSERT_GE(st.errors, 1);
    ASSERT_EQ(errs.count, 1); /* the first failure of the run; summaries come a minute later */
    ASSERT_CONTAINS(errs.messages, "/dev/full");
    ASSERT_CONTAINS(errs.messages, "No space left on device");
    ksock_runtime_destroy(rt);
}

/* Loggers on several threads while the loop's flush timer writes: no record lost or torn. */
typedef struct {
    ksock_runtime_t *rt;
    int id;
} thr_arg_t;

#define THREADS    4
#define PER_THREAD 5000

static void *log_thread(void *p)
{
    thr_arg_t *a = p;
    for (int i = 0; i < PER_THREAD; i++) {
        ksock_kv_t kv[] = {KSOCK_KV_I64("t", a->id), KSOCK_KV_I64("i", i)};
        ksock_log(a->rt, KSOCK_LOG_INFO, "test", kv, 2, "from a thread");
    }
    return NULL;
}

static bool threads_done(void *arg)
{
    return atomic_load((_Atomic int *)arg) == THREADS;
}

static _Atomic int finished;

static void *log_thread_counted(void *p)
{
    log_thread(p);
    atomic_fetch_add(&finished, 1);
    return NULL;
}

TEST(file_threads)
{
    lt_tmpdir();
    const char *p = lt_path("t.json");
    ksock_runtime_t *rt = lt_runtime(lt_fmt(
        "{\"log\":{\"sinks\":[%s]}}",
        file_sink("f", p, "info", "json", "\"flush_interval\":\"1ms\",\"buffer_size\":\"4KiB\"")));
    pthread_t th[THREADS];
    thr_arg_t args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (thr_arg_t){rt, i};
        ASSERT_OK(pthread_create(&th[i], NULL, log_thread_counted, &args[i]));
    }
    ASSERT(lt_run_until(rt, threads_done, &finished, 30000));
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    ksock_runtime_destroy(rt);

    char *c = lt_read_file(p);
    static char *lines[THREADS * PER_THREAD + 16];
    size_t n = lt_lines(c, lines, THREADS * PER_THREAD + 16);
    ASSERT_EQ(n, THREADS * PER_THREAD);
    int next[THREADS] = {0};
    for (size_t i = 0; i < n; i++) {
        yajl_val v = lt_json(lines[i]);
        long long t = -1, k = -1;
        ASSERT(lt_jint(v, "context", "t", &t));
        ASSERT(lt_jint(v, "context", "i", &k));
        ASSERT(t >= 0 && t < THREADS);
        ASSERT_EQ(k, next[t]); /* each thread's records in order */
        next[t]++;
        yajl_tree_free(v);
    }
    free(c);
}

TEST_LIST(TEST_ENTRY(file_text_and_json_contents), TEST_ENTRY(file_hostile_values_escaped),
          TEST_ENTRY(file_level_per_sink), TEST_ENTRY(file_flush_timer),
          TEST_ENTRY(file_buffer_full_and_error_level), TEST_ENTRY(file_unbuffered),
          TEST_ENTRY(file_reopen_after_rename), TEST_ENTRY(file_reopen_failure_keeps_writing),
          TEST_ENTRY(file_unopenable_missing_dir), TEST_ENTRY(file_unopenable_is_directory),
          TEST_ENTRY(file_fifo_without_reader_refused), TEST_ENTRY(file_options_refused),
          TEST_ENTRY(file_mode), TEST_ENTRY(file_appends), TEST_ENTRY(file_write_errors_counted),
          TEST_ENTRY(file_threads))
