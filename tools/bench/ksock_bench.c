/*
 * ksock-bench: a load generator for ksockd (docs/benchmarks.md, Fan-out).
 *
 *   ksock-bench fanout  --url ws://127.0.0.1:PORT/ --subscribers N --records M [--rate R]
 *   ksock-bench idle    --url ... --subscribers N
 *   ksock-bench publish --url ... --connections K --window W --records M
 *
 * fanout: N WebSocket subscribers to one topic (start latest); once every one is subscribed, a
 * librdkafka producer thread writes M records whose values start with their send time
 * (CLOCK_REALTIME ns in ASCII). Every subscriber must receive every record: per connection and
 * partition the offsets must follow each other exactly (a repeat is a duplicate, a jump a gap).
 * Reports deliveries/s, produce-to-receive latency, missing records, and the CPU seconds of the
 * server (--server-pid, /proc), of the generator's I/O threads and of the producer.
 * idle: N connections, each subscribed; the server's VmRSS growth per connection.
 * publish: K connections pipelining W publishes each (M in total); acks/s, then a raw
 * librdkafka loop producing M records to the same topic as the baseline, and the ratio.
 *
 * Human-readable lines, then one JSON line with every figure (the last line of stdout).
 * Exit status: 0 all delivered (fanout) / all acked (publish), 1 something missing or refused,
 * 2 usage.
 */
#include "kb.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *mode_name, *label;
    int server_pid;
    double settle_s, timeout_s;
    char json[4096];
    size_t jlen;
} kb_opts_t;

static kb_opts_t o;

/* ---- figures into the final JSON line ---- */

static void jnum(const char *k, double v)
{
    o.jlen += (size_t)snprintf(o.json + o.jlen, sizeof(o.json) - o.jlen, ",\"%s\":%.6g", k, v);
}

static void jint(const char *k, long long v)
{
    o.jlen += (size_t)snprintf(o.json + o.jlen, sizeof(o.json) - o.jlen, ",\"%s\":%lld", k, v);
}

static void jstr(const char *k, const char *v)
{
    o.jlen += (size_t)snprintf(o.json + o.jlen, sizeof(o.json) - o.jlen, ",\"%s\":\"%s\"", k, v);
}

/* ---- /proc and CPU clocks ---- */

/* The server's utime + stime in seconds, -1 without --server-pid. */
static double server_cpu_s(void)
{
    char path[64], buf[1024];
    if (o.server_pid <= 0) return -1;
    snprintf(path, sizeof(path), "/proc/%d/stat", o.server_pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (p == NULL) return -1;
    unsigned long long ut = 0, st = 0;
    /* fields 3..15 after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt
     * cmajflt utime stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* VmRSS in KiB of `pid` (0: this process), -1 when unreadable. */
static long rss_kib(int pid)
{
    char path[64], line[256];
    long kib = -1;
    if (pid > 0)
        snprintf(path, sizeof(path), "/proc/%d/status", pid);
    else
        snprintf(path, sizeof(path), "/proc/self/status");
    FILE *f = fopen(path, "r");
    if (f == NULL) return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    fclose(f);
    return kib;
}

/* The server's VmRSS in KiB, -1 without --server-pid. */
static long server_rss_kib(void)
{
    return o.server_pid > 0 ? rss_kib(o.server_pid) : -1;
}

static double clock_s(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* CPU seconds of the I/O threads (read from this thread through their clocks). */
static double io_cpu_s(kb_run_t *r)
{
    double s = 0;
    for (int i = 0; i < r->nthreads; i++) {
        clockid_t id;
        if (pthread_getcpuclockid(r->threads[i].tid, &id) == 0) s += clock_s(id);
    }
    return s;
}

typedef struct {
    double server, self, io, main_thread;
    int64_t mono;
} snap_t;

static snap_t snap(kb_run_t *r)
{
    return (snap_t){server_cpu_s(), self_cpu_s(), io_cpu_s(r), clock_s(CLOCK_THREAD_CPUTIME_ID),
                    kb_mono_ns()};
}

static void sleep_s(double s)
{
    struct timespec t = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&t, NULL);
}

/* ---- phases ---- */

/* Waits until every connection is open (and answered its subscribe); 0, or -1 on a timeout. */
static int wait_ready(kb_run_t *r, int report)
{
    kb_counts_t c;
    int64_t t0 = kb_mono_ns(), limit = (int64_t)(30e9 + (double)r->nconns * 5e6);
    for (;;) {
        kb_totals(r, &c);
        long open = (long)c.open, done = (long)(c.open + c.closed);
        long answered = (long)(c.subscribed + c.sub_errors);
        if (done >= r->nconns && (!r->subscribe || answered >= open)) break;
        if (kb_mono_ns() - t0 > limit) {
            fprintf(stderr, "ksock-bench: timeout: %ld open, %ld closed, %ld of them answered\n",
                    open, (long)c.closed, answered);
            return -1;
        }
        sleep_s(0.01);
    }
    double t = (double)(kb_mono_ns() - t0) / 1e9;
    if (!report) return c.closed ? -1 : 0;
    printf("connections: %lu open, %lu failed, in %.2f s", (unsigned long)c.open,
           (unsigned long)c.closed, t);
    if (r->subscribe)
        printf("; subscribed %lu, refused %lu", (unsigned long)c.subscribed,
               (unsigned long)c.sub_errors);
    printf("\n");
    jint("open", (long long)c.open);
    jint("connect_failed", (long long)c.closed);
    jnum("connect_s", t);
    if (r->subscribe) jint("subscribe_refused", (long long)c.sub_errors);
    return c.closed || c.sub_errors ? -1 : 0;
}

static void latency(kb_run_t *r, const char *what)
{
    kb_hist_t *h = calloc(1, sizeof(*h));
    if (h == NULL) return;
    for (int i = 0; i < r->nthreads; i++)
        kb_hist_merge(h, &r->threads[i].hist);
    double p50 = (double)kb_hist_pct(h, 50) / 1e3, p99 = (double)kb_hist_pct(h, 99) / 1e3,
           p999 = (double)kb_hist_pct(h, 99.9) / 1e3, max = (double)h->max / 1e3;
    printf("latency %s (us): p50 %.0f  p99 %.0f  p99.9 %.0f  max %.0f  (%llu samples)\n", what, p50,
           p99, p999, max, (unsigned long long)h->count);
    jnum("lat_p50_us", p50);
    jnum("lat_p99_us", p99);
    jnum("lat_p999_us", p999);
    jnum("lat_max_us", max);
    free(h);
}

static void cpu_report(kb_run_t *r, const snap_t *a, const snap_t *b, double events)
{
    double io = b->io - a->io, server = b->server - a->server;
    double self = b->self - a->self - (b->main_thread - a->main_thread);
    double producer = self - io; /* the producer thread and librdkafka's */
    printf("CPU s: generator I/O threads %.2f (%.2f us/delivery)", io,
           events > 0 ? io * 1e6 / events : 0);
    if (o.server_pid > 0)
        printf(", server %.2f (%.2f us/delivery, %.0f deliveries per server CPU-second)", server,
               events > 0 ? server * 1e6 / events : 0, server > 0 ? events / server : 0);
    if (r->mode == KB_FANOUT) printf(", producer %.2f", producer);
    printf("\n");
    jnum("client_cpu_s", io);
    jnum("client_us_per_delivery", events > 0 ? io * 1e6 / events : 0);
    if (r->mode == KB_FANOUT) jnum("producer_cpu_s", producer);
    if (o.server_pid > 0) {
        jnum("server_cpu_s", server);
        jnum("server_us_per_delivery", events > 0 ? server * 1e6 / events : 0);
        jnum("deliveries_per_server_cpu_s", server > 0 ? events / server : 0);
        jnum("client_to_server_cpu", server > 0 ? io / server : 0);
    }
}

typedef struct {
    kb_run_t *run;
    kb_prod_result_t res;
    int rc;
    _Atomic int done;
} prod_arg_t;

static void *producer_main(void *p)
{
    prod_arg_t *a = p;
    a->rc = kb_produce(a->run, &a->res);
    atomic_store(&a->done, 1);
    return NULL;
}

/* Waits until `target` events (records or acks) arrived or nothing came for timeout_s. */
static void wait_events(kb_run_t *r, uint64_t target, _Atomic int *producer_done)
{
    kb_counts_t c;
    uint64_t last_n = 0;
    int64_t last_change = kb_mono_ns(), last_print = last_change;
    for (;;) {
        kb_totals(r, &c);
        uint64_t n = r->mode == KB_PUBLISH ? c.acks + c.errors : c.records;
        int64_t now = kb_mono_ns();
        if (n >= target) break;
        if (n != last_n) last_n = n, last_change = now;
        int quiet = producer_done == NULL || atomic_load(producer_done);
        if (quiet && (double)(now - last_change) / 1e9 > o.timeout_s) {
            fprintf(stderr, "ksock-bench: nothing new for %.0f s, giving up at %llu of %llu\n",
                    o.timeout_s, (unsigned long long)n, (unsigned long long)target);
            break;
        }
        if (now - last_print > 2000000000) {
            fprintf(stderr, "  ... %llu of %llu\n", (unsigned long long)n,
                    (unsigned long long)target);
            last_print = now;
        }
        sleep_s(0.02);
    }
}

/* Per-subscriber completeness: every one must have every record. */
static long completeness(kb_run_t *r)
{
    long incomplete = 0, missing = 0, dups = 0, gaps = 0;
    for (int i = 0; i < r->nconns; i++) {
        kb_conn_t *c = &r->conns[i];
        if (c->received < r->records) incomplete++, missing += r->records - c->received;
        dups += c->dups;
        gaps += c->gaps;
    }
    printf("expected %lld, received %lld, missing %ld (%ld subscribers incomplete), "
           "duplicates %ld, offset gaps %ld\n",
           (long long)r->records * r->nconns, (long long)r->records * r->nconns - missing, missing,
           incomplete, dups, gaps);
    jint("expected", (long long)r->records * r->nconns);
    jint("received", (long long)r->records * r->nconns - missing);
    jint("missing", missing);
    jint("incomplete_subscribers", incomplete);
    jint("duplicates", dups);
    jint("gaps", gaps);
    return missing + dups + gaps;
}

/* A run that ends early: its threads stopped and connections closed; returns 1. */
static int stop_ws(kb_run_t *r)
{
    kb_ws_join(r);
    kb_ws_close_all(r);
    return 1;
}

static int run_fanout(kb_run_t *r)
{
    char err[512];
    prod_arg_t pa = {.run = r};
    if (kb_kafka_prepare(r, &pa.res, err, sizeof(err)) != 0 ||
        kb_ws_start(r, err, sizeof(err)) != 0) {
        fprintf(stderr, "ksock-bench: %s\n", err);
        return 1;
    }
    if (wait_ready(r, 1) != 0) {
        kb_producer_close(&pa.res);
        return stop_ws(r);
    }
    sleep_s(o.settle_s); /* the server's consumer reaches `latest` before anything is produced */
    pthread_t pt;
    snap_t a = snap(r);
    if (pthread_create(&pt, NULL, producer_main, &pa) != 0) return 1;
    wait_events(r, (uint64_t)r->records * (uint64_t)r->nconns, &pa.done);
    snap_t b = snap(r);
    pthread_join(pt, NULL);
    kb_ws_join(r);
    kb_counts_t c;
    kb_totals(r, &c);
    double span = (double)(c.last_ns - c.first_ns) / 1e9;
    double prod_s = (double)(pa.res.t1_ns - pa.res.t0_ns) / 1e9;
    printf("produced %ld records (%ld failed) in %.2f s (%.0f/s)%s%s\n", pa.res.produced,
           pa.res.failed, prod_s, prod_s > 0 ? (double)pa.res.produced / prod_s : 0,
           pa.res.err[0] ? ": " : "", pa.res.err);
    printf("deliveries: %llu in %.2f s = %.0f/s\n", (unsigned long long)c.records, span,
           span > 0 ? (double)c.records / span : 0);
    jint("produced", pa.res.produced);
    jnum("produce_s", prod_s);
    jint("deliveries", (long long)c.records);
    jnum("delivery_s", span);
    jnum("deliveries_per_s", span > 0 ? (double)c.records / span : 0);
    long bad = completeness(r);
    latency(r, "produce->receive");
    cpu_report(r, &a, &b, (double)c.records);
    printf("notices: %llu skipped (-32), %llu subscribed offsets other than the watermarks, "
           "%llu connections closed, %llu bad frames\n",
           (unsigned long long)c.skipped, (unsigned long long)c.start_moved,
           (unsigned long long)c.closed, (unsigned long long)c.bad_frames);
    jint("skipped_notices", (long long)c.skipped);
    jint("start_moved", (long long)c.start_moved);
    jint("closed", (long long)c.closed);
    jint("bad_frames", (long long)c.bad_frames);
    jnum("frames_per_read", c.reads ? (double)c.records / (double)c.reads : 0);
    jint("server_rss_kib", server_rss_kib());
    kb_ws_close_all(r);
    return bad || pa.rc || c.bad_frames ? 1 : 0;
}

static int run_idle(kb_run_t *r)
{
    char err[512];
    /* ksockd never creates a topic: make it (or find it) when there is a broker to ask */
    if (r->subscribe && r->bootstrap && kb_kafka_prepare(r, NULL, err, sizeof(err)) != 0) {
        fprintf(stderr, "ksock-bench: %s\n", err);
        return 1;
    }
    long before = server_rss_kib(), self_before = rss_kib(0);
    if (kb_ws_start(r, err, sizeof(err)) != 0) {
        fprintf(stderr, "ksock-bench: %s\n", err);
        return 1;
    }
    int rc = wait_ready(r, 1);
    sleep_s(o.settle_s);
    long after = server_rss_kib(), self_after = rss_kib(0);
    printf("ksock-bench's own VmRSS: %ld KiB before, %ld KiB with %d connections\n", self_before,
           self_after, r->nconns);
    jint("client_rss_before_kib", self_before);
    jint("client_rss_after_kib", self_after);
    if (before >= 0 && after >= 0) {
        double per = (double)(after - before) * 1024.0 / r->nconns;
        printf("server VmRSS: %ld KiB before, %ld KiB with %d connections: %.0f B per connection\n",
               before, after, r->nconns, per);
        jint("rss_before_kib", before);
        jint("rss_after_kib", after);
        jnum("rss_bytes_per_conn", per);
    }
    kb_ws_join(r);
    kb_ws_close_all(r);
    return rc ? 1 : 0;
}

/*
 * The first publishes to a topic wait for ksockd's producer to learn it (metadata, the
 * idempotent producer's id): most of a second, which is not the throughput. So 1,000 publishes
 * on one connection go first, untimed.
 */
static int publish_warmup(kb_run_t *r, char *err, size_t errlen)
{
    kb_run_t w = *r;
    w.nconns = 1;
    w.nthreads = 1;
    w.records = 1000;
    w.threads = NULL;
    if (kb_ws_start(&w, err, errlen) != 0) return -1;
    int rc = wait_ready(&w, 0);
    if (rc == 0) {
        atomic_store(&w.go, 1);
        wait_events(&w, (uint64_t)w.records, NULL);
    }
    kb_ws_join(&w);
    kb_ws_close_all(&w);
    free(w.threads);
    if (rc) snprintf(err, errlen, "warm-up: could not connect");
    return rc;
}

static int run_publish(kb_run_t *r)
{
    char err[512];
    if (kb_kafka_prepare(r, NULL, err, sizeof(err)) != 0 ||
        publish_warmup(r, err, sizeof(err)) != 0 || kb_ws_start(r, err, sizeof(err)) != 0) {
        fprintf(stderr, "ksock-bench: %s\n", err);
        return 1;
    }
    if (wait_ready(r, 1) != 0) return stop_ws(r);
    snap_t a = snap(r);
    atomic_store(&r->go, 1);
    wait_events(r, (uint64_t)r->records, NULL);
    snap_t b = snap(r);
    kb_ws_join(r);
    kb_counts_t c;
    kb_totals(r, &c);
    double span = (double)(c.last_ns - a.mono) / 1e9,
           ws_rate = span > 0 ? (double)c.acks / span : 0;
    printf("ksockd: %llu acks, %llu errors in %.2f s = %.0f acks/s\n", (unsigned long long)c.acks,
           (unsigned long long)c.errors, span, ws_rate);
    jint("acks", (long long)c.acks);
    jint("errors", (long long)c.errors);
    jnum("acks_per_s", ws_rate);
    latency(r, "publish->ack");
    cpu_report(r, &a, &b, (double)c.acks);
    kb_ws_close_all(r);

    kb_prod_result_t raw; /* the same records straight to librdkafka, warmed up the same way */
    int rrc = kb_producer_open(r, &raw, 1);
    double c0 = self_cpu_s();
    if (rrc == 0) rrc = kb_produce(r, &raw);
    double raw_cpu = self_cpu_s() - c0, raw_s = (double)(raw.t1_ns - raw.t0_ns) / 1e9;
    double raw_rate = raw_s > 0 ? (double)raw.produced / raw_s : 0;
    printf(
        "raw librdkafka: %ld delivered, %ld failed in %.2f s = %.0f records/s (%.2f CPU s)%s%s\n",
        raw.produced, raw.failed, raw_s, raw_rate, raw_cpu, raw.err[0] ? ": " : "", raw.err);
    printf("ratio ksockd/raw: %.3f\n", raw_rate > 0 ? ws_rate / raw_rate : 0);
    jnum("raw_per_s", raw_rate);
    jnum("raw_cpu_s", raw_cpu);
    jnum("ratio", raw_rate > 0 ? ws_rate / raw_rate : 0);
    return c.acks == (uint64_t)r->records && rrc == 0 ? 0 : 1;
}

/* ---- options ---- */

static void usage(FILE *f)
{
    fprintf(f, "usage: ksock-bench fanout|idle|publish --url ws://HOST:PORT/PATH [options]\n"
               "  --format json|msgpack   subprotocol ksock.v1.json (default) or ksock.v1.msgpack\n"
               "  --subscribers N         connections (alias --connections), default 100\n"
               "  --topic T               default ksock-bench-PID (created when missing)\n"
               "  --partitions P          when the topic is created, default 3\n"
               "  --bootstrap B           Kafka, default $KSOCK_KAFKA_BOOTSTRAP\n"
               "  --records M             fanout: produced; publish: in total (default 10000)\n"
               "  --value-size B          default 100 (at least 19: the send time)\n"
               "  --rate R                fanout: records/s, default as fast as possible\n"
               "  --linger MS             fanout producer's linger.ms, default 1\n"
               "  --window W              publish: in flight per connection, default 64\n"
               "  --threads 1|2           I/O threads, default 1\n"
               "  --server-pid PID        ksockd's pid: its CPU and VmRSS are reported\n"
               "  --settle S              pause after subscribing (default 1; idle 2)\n"
               "  --timeout S             give up when nothing arrives for S seconds (default 10)\n"
               "  --connect-window N      handshakes in progress per thread (default 128)\n"
               "  --no-subscribe          idle: connections only\n"
               "  --coalesce-us U         pause U us after a turn with few connections ready,\n"
               "                          so each read takes more frames (default 0)\n"
               "  --label L               copied into the JSON line\n");
}

static int parse_url(kb_run_t *r, const char *url)
{
    static char host[64], path[256];
    int port = 0, n = 0;
    if (sscanf(url, "ws://%63[^:/]:%d%n", host, &port, &n) != 2 || port <= 0 || port > 65535)
        return -1;
    snprintf(path, sizeof(path), "%s", url[n] ? url + n : "/");
    r->host = host, r->port = port, r->path = path;
    return 0;
}

static int valid_topic(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 249) return 0;
    for (size_t i = 0; i < n; i++)
        if (!(t[i] == '.' || t[i] == '_' || t[i] == '-' || (t[i] >= '0' && t[i] <= '9') ||
              (t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z')))
            return 0;
    return 1;
}

/* Options: each writes one variable; `fmt` and `url` are checked after the loop. */
typedef struct {
    const char *name;
    char type; /* 'i' int, 'l' long, 'd' double, 's' string, '0' flag that clears an int */
    void *p;
} kb_opt_t;

static int read_opts(kb_run_t *r, int argc, char **argv, const char **url, const char **fmt)
{
    const kb_opt_t t[] = {{"url", 's', url},
                          {"format", 's', fmt},
                          {"subscribers", 'i', &r->nconns},
                          {"connections", 'i', &r->nconns},
                          {"topic", 's', &r->topic},
                          {"partitions", 'i', &r->partitions},
                          {"bootstrap", 's', &r->bootstrap},
                          {"records", 'l', &r->records},
                          {"value-size", 'i', &r->value_size},
                          {"rate", 'd', &r->rate},
                          {"linger", 'i', &r->linger_ms},
                          {"window", 'i', &r->window},
                          {"threads", 'i', &r->nthreads},
                          {"server-pid", 'i', &o.server_pid},
                          {"settle", 'd', &o.settle_s},
                          {"timeout", 'd', &o.timeout_s},
                          {"connect-window", 'i', &r->connect_window},
                          {"no-subscribe", '0', &r->subscribe},
                          {"label", 's', &o.label},
                          {"coalesce-us", 'i', &r->coalesce_us}};
    enum { N = sizeof(t) / sizeof(t[0]) };
    struct option lo[N + 2];
    for (int i = 0; i < N; i++)
        lo[i] = (struct option){t[i].name, t[i].type == '0' ? 0 : 1, NULL, 256 + i};
    lo[N] = (struct option){"help", 0, NULL, 'h'};
    lo[N + 1] = (struct option){NULL, 0, NULL, 0};
    int opt;
    while ((opt = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (opt == 'h') usage(stdout), exit(0);
        if (opt < 256 || opt >= 256 + N) return -1;
        const kb_opt_t *k = &t[opt - 256];
        char *end = optarg;
        switch (k->type) {
        case 'i':
            *(int *)k->p = (int)strtol(optarg, &end, 10);
            break;
        case 'l':
            *(long *)k->p = strtol(optarg, &end, 10);
            break;
        case 'd':
            *(double *)k->p = strtod(optarg, &end);
            break;
        case 's':
            *(const char **)k->p = optarg, end = optarg + strlen(optarg);
            break;
        case '0':
            *(int *)k->p = 0;
            break;
        }
        if (end && *end) return -1; /* "10x" is not a number */
    }
    return 0;
}

static int parse(kb_run_t *r, int argc, char **argv)
{
    static char topic[64];
    const char *url = NULL, *fmt = "json";
    if (read_opts(r, argc, argv, &url, &fmt) != 0) return -1;
    if (optind != argc - 1 || url == NULL || parse_url(r, url) != 0) return -1;
    if (strcmp(fmt, "json") != 0 && strcmp(fmt, "msgpack") != 0) return -1;
    r->fmt = strcmp(fmt, "json") == 0 ? KB_JSON : KB_MSGPACK;
    o.mode_name = argv[optind];
    if (strcmp(o.mode_name, "fanout") == 0)
        r->mode = KB_FANOUT;
    else if (strcmp(o.mode_name, "idle") == 0)
        r->mode = KB_IDLE;
    else if (strcmp(o.mode_name, "publish") == 0)
        r->mode = KB_PUBLISH;
    else
        return -1;
    if (r->topic == NULL) {
        snprintf(topic, sizeof(topic), "ksock-bench-%d", (int)getpid());
        r->topic = topic;
    }
    if (r->mode == KB_PUBLISH) r->subscribe = 0;
    if (o.settle_s < 0) o.settle_s = r->mode == KB_IDLE ? 2 : 1;
    if (r->nconns < 1 || r->nthreads < 1 || r->nthreads > 2 || r->records < 1 ||
        r->value_size < 19 || r->value_size > 60000 || r->window < 1 || r->partitions < 1 ||
        r->connect_window < 1 || r->coalesce_us < 0 || r->coalesce_us > 100000 || r->rate < 0 ||
        !valid_topic(r->topic))
        return -1;
    if (r->mode != KB_IDLE && r->bootstrap == NULL) {
        fprintf(stderr, "ksock-bench: no broker: --bootstrap or $KSOCK_KAFKA_BOOTSTRAP\n");
        return -1;
    }
    return 0;
}

/* 10,000 connections need more descriptors than the usual soft limit of 1024. */
static void raise_nofile(int need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= (rlim_t)need + 64) return;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)need + 64)
        fprintf(stderr, "ksock-bench: warning: RLIMIT_NOFILE %llu is below %d connections\n",
                (unsigned long long)rl.rlim_cur, need);
}

int main(int argc, char **argv)
{
    kb_run_t r = {.fmt = KB_JSON,
                  .host = "127.0.0.1",
                  .nconns = 100,
                  .nthreads = 1,
                  .partitions = 3,
                  .connect_window = 128,
                  .subscribe = 1,
                  .records = 10000,
                  .value_size = 100,
                  .window = 64,
                  .linger_ms = 1};
    r.bootstrap = getenv("KSOCK_KAFKA_BOOTSTRAP");
    o.settle_s = -1;
    o.timeout_s = 10;
    if (parse(&r, argc, argv) != 0) {
        usage(stderr);
        return 2;
    }
    raise_nofile(r.nconns);
    o.jlen = (size_t)snprintf(o.json, sizeof(o.json), "{\"tool\":\"ksock-bench\"");
    jstr("mode", o.mode_name);
    if (o.label) jstr("label", o.label);
    jstr("format", r.fmt == KB_JSON ? "json" : "msgpack");
    jint("connections", r.nconns);
    jint("threads", r.nthreads);
    if (r.mode != KB_IDLE) {
        jint("records", r.records);
        jint("value_size", r.value_size);
        jstr("topic", r.topic);
    }
    if (r.mode == KB_FANOUT) jnum("rate", r.rate);
    if (r.mode == KB_PUBLISH) jint("window", r.window);
    printf("ksock-bench %s: %d connections (%s), %d I/O thread(s), %s:%d%s\n", o.mode_name,
           r.nconns, r.fmt == KB_JSON ? "ksock.v1.json" : "ksock.v1.msgpack", r.nthreads, r.host,
           r.port, r.path);
    int rc = r.mode == KB_FANOUT ? run_fanout(&r)
             : r.mode == KB_IDLE ? run_idle(&r)
                                 : run_publish(&r);
    jint("ok", rc == 0);
    printf("%s}\n", o.json);
    free(r.threads); /* kept after the run for its figures */
    free(r.start_offsets);
    return rc;
}
