/*
 * bench_log: what logging costs.
 *
 *   - records/s through the file sink (the plugin, loaded by the real
 *     loader), text and json, each record with two context values; the
 *     time includes the final flush to the kernel (not fsync);
 *   - the same from two threads at once (contention on the logger lock);
 *   - the cost of a call filtered out by level: ksock_log() itself, and the
 *     KSOCK_DEBUG() macro, which tests the level before evaluating its
 *     arguments.
 *
 * Usage: bench_log [records (1000000)] [filtered calls (50000000)] [dir (/tmp)]
 * Plugins are found through $KSOCK_PLUGIN_PATH, else the build's plugins/.
 * Targets (issue): >= 300k records/s written, >= 1M calls/s filtered out.
 */
#include <ksock/config.h>
#include <ksock/log.h>
#include <ksock/plugin.h>
#include <ksock/runtime.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef KSOCK_BENCH_PLUGIN_DIR
#define KSOCK_BENCH_PLUGIN_DIR ""
#endif

static double now_s(void)
{
    return (double)ksock_now_ns() / 1e9;
}

static ksock_runtime_t *runtime_with(const char *json)
{
    char err[1024];
    ksock_runtime_t *rt;
    ksock_config_t *cfg;
    if (ksock_runtime_new(&rt, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench_log: runtime: %s\n", err);
        exit(1);
    }
    static const char plugin_dir[] = KSOCK_BENCH_PLUGIN_DIR;
    if (getenv("KSOCK_PLUGIN_PATH") == NULL && plugin_dir[0] != '\0')
        ksock_plugin_path_add(rt, plugin_dir);
    if (ksock_config_load_string("bench", json, strlen(json), &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench_log: config: %s\n", err);
        exit(1);
    }
    ksock_runtime_adopt_config(rt, cfg);
    if (ksock_runtime_configure(rt, cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench_log: configure: %s\n", err);
        exit(1);
    }
    return rt;
}

static void row(const char *name, unsigned long long calls, double secs, const char *extra)
{
    printf("%-28s %10llu %9.0f %9.1f %12.0f  %s\n", name, calls, secs * 1e3,
           secs * 1e9 / (double)calls, (double)calls / secs, extra ? extra : "");
}

typedef struct {
    ksock_runtime_t *rt;
    unsigned long long n;
    long long base;
} job_t;

static void *log_n(void *arg)
{
    job_t *j = arg;
    for (unsigned long long i = 0; i < j->n; i++) {
        ksock_kv_t kv[2] = {KSOCK_KV_STR("topic", "orders"),
                            KSOCK_KV_I64("offset", j->base + (long long)i)};
        ksock_log(j->rt, KSOCK_LOG_INFO, "bench", kv, 2, "delivered record %llu to client", i);
    }
    return NULL;
}

/* Records/s through the file sink, `threads` loggers at once. */
static double bench_file(const char *dir, const char *format, unsigned long long n, int threads)
{
    char path[512], json[1024], name[64], extra[64];
    snprintf(path, sizeof(path), "%s/bench_log-%d-%s-%d.log", dir, (int)getpid(), format, threads);
    unlink(path);
    snprintf(json, sizeof(json),
             "{\"log\":{\"sinks\":[{\"type\":\"file\",\"path\":\"%s\",\"format\":\"%s\","
             "\"level\":\"info\"}]}}",
             path, format);
    ksock_runtime_t *rt = runtime_with(json);
    pthread_t th[8];
    job_t jobs[8];
    n -= n % (unsigned long long)threads;
    double t0 = now_s();
    for (int i = 0; i < threads; i++) {
        jobs[i] = (job_t){rt, n / (unsigned long long)threads, (long long)i << 40};
        if (threads == 1)
            log_n(&jobs[i]);
        else
            pthread_create(&th[i], NULL, log_n, &jobs[i]);
    }
    if (threads > 1)
        for (int i = 0; i < threads; i++)
            pthread_join(th[i], NULL);
    ksock_log_flush(rt);
    double secs = now_s() - t0;

    ksock_log_sink_stats_t st;
    ksock_log_stats(rt, &st, 1);
    ksock_runtime_destroy(rt);
    struct stat sb;
    double bytes = stat(path, &sb) == 0 ? (double)sb.st_size : 0;
    unlink(path);
    if (st.written != n || st.dropped != 0) {
        fprintf(stderr, "bench_log: %s: written %llu dropped %llu of %llu\n", format,
                (unsigned long long)st.written, (unsigned long long)st.dropped, n);
        exit(1);
    }
    snprintf(name, sizeof(name), "file sink, %s%s", format, threads > 1 ? ", 2 threads" : "");
    snprintf(extra, sizeof(extra), "%.0f MB/s, %.0f B/record", bytes / 1e6 / secs,
             bytes / (double)n);
    row(name, n, secs, extra);
    return (double)n / secs;
}

/* Calls filtered out by level: the sink accepts "error", we log "debug". */
static void bench_filtered(const char *dir, unsigned long long n, double *rate_fn,
                           double *rate_macro)
{
    char json[1024];
    snprintf(json, sizeof(json),
             "{\"log\":{\"sinks\":[{\"type\":\"file\",\"path\":\"%s/bench_log-%d-filtered.log\","
             "\"level\":\"error\"}]}}",
             dir, (int)getpid());
    ksock_runtime_t *rt = runtime_with(json);
    double t0 = now_s();
    for (unsigned long long i = 0; i < n; i++) {
        ksock_kv_t kv[2] = {KSOCK_KV_STR("topic", "orders"), KSOCK_KV_I64("offset", (long long)i)};
        ksock_log(rt, KSOCK_LOG_DEBUG, "bench", kv, 2, "delivered record %llu to client", i);
    }
    double secs = now_s() - t0;
    row("filtered, ksock_log()", n, secs, "2 context values");
    *rate_fn = (double)n / secs;

    t0 = now_s();
    for (unsigned long long i = 0; i < n; i++)
        KSOCK_DEBUG(rt, "bench", "delivered record %llu to client", i);
    secs = now_s() - t0;
    row("filtered, KSOCK_DEBUG()", n, secs, "level test before the call");
    *rate_macro = (double)n / secs;

    ksock_log_sink_stats_t st;
    ksock_log_stats(rt, &st, 1);
    if (st.written != 0) {
        fprintf(stderr, "bench_log: filtered records were written\n");
        exit(1);
    }
    ksock_runtime_destroy(rt);
    snprintf(json, sizeof(json), "%s/bench_log-%d-filtered.log", dir, (int)getpid());
    unlink(json);
}

int main(int argc, char **argv)
{
    unsigned long long n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000ull;
    unsigned long long nf = argc > 2 ? strtoull(argv[2], NULL, 10) : 50000000ull;
    const char *dir = argc > 3 ? argv[3] : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (n < 2 || nf < 1) {
        fprintf(stderr, "usage: bench_log [records] [filtered calls] [dir]\n");
        return 2;
    }

    printf("%-28s %10s %9s %9s %12s\n", "case", "calls", "total ms", "ns/call", "calls/s");
    double text = bench_file(dir, "text", n, 1);
    double json = bench_file(dir, "json", n, 1);
    bench_file(dir, "text", n, 2);
    double f_fn, f_macro;
    bench_filtered(dir, nf, &f_fn, &f_macro);

    double written = text < json ? text : json;
    printf("\ntarget >= 300000 records/s written: %s (slowest format %.0f/s)\n",
           written >= 300000 ? "met" : "MISSED", written);
    printf("target >= 1000000 calls/s filtered: %s (ksock_log() %.0f/s)\n",
           f_fn >= 1000000 ? "met" : "MISSED", f_fn);
    (void)f_macro;
    return written >= 300000 && f_fn >= 1000000 ? 0 : 1;
}
