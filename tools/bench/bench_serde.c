/*
 * Serializer benchmark (docs/benchmarks.md): encode and decode of a Kafka
 * record envelope (op record, topic, partition, offset, timestamp, key,
 * two headers) with 100 B, 1 KiB and 16 KiB values, per format, through
 * the plugins loaded by the real loader. One thread: the figures are per
 * core.
 *
 *   bench_serde [--time SECONDS]         the table: envelopes/s and bytes on the wire
 *   bench_serde --callgrind-table [N]    instructions per envelope, each cell measured by
 *                                        running valgrind --tool=callgrind on the mode below
 *   bench_serde --callgrind FORMAT encode|decode SIZE N
 *                                        N operations with callgrind's instrumentation on
 *                                        around the loop only (use --instr-atstart=no)
 *
 * FORMAT is json, msgpack, protobuf, or json-embed (json with the topic
 * declared JSON and a JSON value, so value_json is validated and embedded).
 * Plugins come from $KSOCK_PLUGIN_PATH, else the build's plugin directory.
 */
#include <ksock/ksock.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#endif
#endif
#ifndef CALLGRIND_START_INSTRUMENTATION /* no valgrind headers: the mode still runs,               \
                                           uninstrumented */
#define CALLGRIND_ZERO_STATS
#define CALLGRIND_START_INSTRUMENTATION
#define CALLGRIND_STOP_INSTRUMENTATION
#define CALLGRIND_DUMP_STATS_AT(s)
#endif

static const char *const formats[] = {"json", "json-embed", "msgpack", "protobuf"};
static const size_t sizes[] = {100, 1024, 16384};
#define NFORMATS 4
#define NSIZES   3

typedef struct bench_s {
    ksock_runtime_t *rt;
    ksock_config_t *doc;
    ksock_plugin_instance_t *pi;
    const ksock_serializer_vtable_t *vt;
    ksock_value_limits_t lim;
    ksock_envelope_t env;
    ksock_header_t headers[2];
    char *value;
} bench_t;

static void die(const char *what, const char *err)
{
    fprintf(stderr, "bench_serde: %s: %s\n", what, err);
    exit(1);
}

/* A record as the bridge would push it. A JSON-shaped value for json-embed, text otherwise. */
static void make_envelope(bench_t *b, const char *format, size_t size)
{
    b->value = malloc(size);
    for (size_t i = 0; i < size; i++)
        b->value[i] = (char)('a' + i % 26);
    if (strcmp(format, "json-embed") == 0) {
        memcpy(b->value, "{\"d\":\"", 6);
        memcpy(b->value + size - 2, "\"}", 2);
    }
    b->headers[0] = (ksock_header_t){"trace-id", 8, {"4bf92f3577b34da6", 16, true}};
    b->headers[1] = (ksock_header_t){"content-type", 12, {"application/json", 16, true}};
    ksock_envelope_init(&b->env);
    b->env.op = KSOCK_OP_RECORD;
    b->env.topic = strcmp(format, "json-embed") == 0 ? "json.orders.eu-w" : "orders.eu-west-1";
    b->env.topic_len = 16;
    b->env.partition = 7;
    b->env.offset = 123456789;
    b->env.timestamp = 1700000000000;
    b->env.key = (ksock_bytes_t){"user-1234567", 12, true};
    b->env.value = (ksock_bytes_t){b->value, size, true};
    b->env.headers = b->headers;
    b->env.nheaders = 2;
}

static void bench_open(bench_t *b, const char *format, size_t size)
{
    char err[512];
    memset(b, 0, sizeof(*b));
    if (ksock_runtime_new(&b->rt, err, sizeof(err)) != 0) die("runtime", err);
#ifdef KSOCK_BENCH_PLUGIN_DIR
    if (getenv("KSOCK_PLUGIN_PATH") == NULL) ksock_plugin_path_add(b->rt, KSOCK_BENCH_PLUGIN_DIR);
#endif
    bool embed = strcmp(format, "json-embed") == 0;
    const char *name = embed ? "json" : format;
    ksock_plugin_t *p;
    if (ksock_plugin_find(b->rt, KSOCK_PLUGIN_SERIALIZER, name, &p, err, sizeof(err)) != 0)
        die(name, err);
    const char *opts = "{\"json_topics\":[\"json.*\"]}";
    if (embed && ksock_config_load_string("bench", opts, strlen(opts), &b->doc, err, sizeof(err)))
        die("options", err);
    if (ksock_plugin_instance_new(b->rt, p, "bench", b->doc,
                                  b->doc ? ksock_config_root(b->doc) : NULL, NULL, &b->pi, err,
                                  sizeof(err)) != 0)
        die(name, err);
    b->vt = ksock_plugin_instance_vtable(b->pi);
    ksock_value_limits_default(&b->lim);
    make_envelope(b, format, size);
}

static void bench_close(bench_t *b)
{
    ksock_plugin_instance_free(b->pi);
    ksock_config_free(b->doc);
    ksock_runtime_destroy(b->rt);
    free(b->value);
}

/* Encode into a reused buffer (as the bridge does: one frame per serializer, shared). */
static void encode_n(bench_t *b, ksock_buf_t *out, long n)
{
    char err[256];
    for (long i = 0; i < n; i++) {
        out->len = 0;
        if (b->vt->encode_envelope(ksock_plugin_instance_inst(b->pi), &b->env, out, err,
                                   sizeof(err)) != 0)
            die("encode", err);
    }
}

static void decode_n(bench_t *b, const ksock_buf_t *frame, long n)
{
    char err[256];
    for (long i = 0; i < n; i++) {
        ksock_envelope_t e;
        ksock_envelope_init(&e);
        if (b->vt->decode_envelope(ksock_plugin_instance_inst(b->pi), frame->data, frame->len,
                                   &b->lim, &e, err, sizeof(err)) != 0)
            die("decode", err);
        ksock_envelope_clear(&e);
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Operations per second, running batches until `secs` have passed. */
static double rate(bench_t *b, ksock_buf_t *frame, bool decode, double secs)
{
    ksock_buf_t scratch = KSOCK_BUF_INIT;
    long batch = 1000, total = 0;
    decode ? decode_n(b, frame, batch) : encode_n(b, &scratch, batch); /* warm up */
    double t0 = now_s(), t;
    do {
        decode ? decode_n(b, frame, batch) : encode_n(b, &scratch, batch);
        total += batch;
        t = now_s();
    } while (t - t0 < secs);
    ksock_buf_free(&scratch);
    return (double)total / (t - t0);
}

static void table(double secs)
{
    printf("%-11s %7s %9s %14s %14s %10s %10s\n", "format", "value", "wire B", "encode env/s",
           "decode env/s", "enc ns", "dec ns");
    for (int f = 0; f < NFORMATS; f++) {
        for (int s = 0; s < NSIZES; s++) {
            bench_t b;
            bench_open(&b, formats[f], sizes[s]);
            ksock_buf_t frame = KSOCK_BUF_INIT;
            encode_n(&b, &frame, 1);
            double enc = rate(&b, &frame, false, secs), dec = rate(&b, &frame, true, secs);
            printf("%-11s %7zu %9zu %14.0f %14.0f %10.1f %10.1f\n", formats[f], sizes[s], frame.len,
                   enc, dec, 1e9 / enc, 1e9 / dec);
            fflush(stdout);
            ksock_buf_free(&frame);
            bench_close(&b);
        }
    }
}

/* N operations with callgrind instrumentation on around the loop only. */
static int callgrind_one(const char *format, const char *op, size_t size, long n)
{
    bench_t b;
    bench_open(&b, format, size);
    ksock_buf_t frame = KSOCK_BUF_INIT, scratch = KSOCK_BUF_INIT;
    encode_n(&b, &frame, 1);
    bool decode = strcmp(op, "decode") == 0;
    decode ? decode_n(&b, &frame, 10) : encode_n(&b, &scratch, 10); /* warm caches and lazy init */
    CALLGRIND_ZERO_STATS;
    CALLGRIND_START_INSTRUMENTATION;
    decode ? decode_n(&b, &frame, n) : encode_n(&b, &scratch, n);
    CALLGRIND_STOP_INSTRUMENTATION;
    CALLGRIND_DUMP_STATS_AT("loop");
    ksock_buf_free(&frame);
    ksock_buf_free(&scratch);
    bench_close(&b);
    return 0;
}

/* Run valgrind on ourselves for one cell; returns instructions per envelope. */
static double callgrind_cell(const char *self, const char *format, const char *op, size_t size,
                             long n)
{
    char out[] = "/tmp/ksock-callgrind-XXXXXX";
    int fd = mkstemp(out);
    if (fd < 0) die("mkstemp", "failed");
    close(fd);
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=%s '%s' "
             "--callgrind %s %s %zu %ld >/dev/null 2>&1",
             out, self, format, op, size, n);
    if (system(cmd) != 0) die("valgrind", cmd);
    /* Dumps go to OUT.1 (the loop) and OUT (the rest, with instrumentation off). */
    char dump[64];
    snprintf(dump, sizeof(dump), "%s.1", out);
    FILE *f = fopen(dump, "r");
    if (f == NULL) die("callgrind output", dump);
    char line[512];
    double ir = -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "summary:", 8) == 0 || strncmp(line, "totals:", 7) == 0)
            ir = atof(line + 8);
    fclose(f);
    unlink(dump);
    unlink(out);
    return ir / (double)n;
}

static void callgrind_table(const char *self, long n)
{
    printf("callgrind instructions per envelope (%ld envelopes per cell)\n", n);
    printf("%-11s %7s %12s %12s\n", "format", "value", "encode Ir", "decode Ir");
    for (int f = 0; f < NFORMATS; f++)
        for (int s = 0; s < NSIZES; s++) {
            double enc = callgrind_cell(self, formats[f], "encode", sizes[s], n);
            double dec = callgrind_cell(self, formats[f], "decode", sizes[s], n);
            printf("%-11s %7zu %12.0f %12.0f\n", formats[f], sizes[s], enc, dec);
            fflush(stdout);
        }
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "--callgrind") == 0)
        return callgrind_one(argv[2], argv[3], (size_t)atol(argv[4]), atol(argv[5]));
    if (argc >= 2 && strcmp(argv[1], "--callgrind-table") == 0) {
        char self[1024];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n < 0) die("readlink", "/proc/self/exe");
        self[n] = '\0';
        callgrind_table(self, argc >= 3 ? atol(argv[2]) : 10000);
        return 0;
    }
    double secs = 1.0;
    if (argc == 3 && strcmp(argv[1], "--time") == 0)
        secs = atof(argv[2]);
    else if (argc != 1) {
        fprintf(stderr, "usage: bench_serde [--time S] | --callgrind-table [N] | "
                        "--callgrind FORMAT encode|decode SIZE N\n");
        return 2;
    }
    table(secs);
    return 0;
}
