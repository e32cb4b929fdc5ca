/*
 * bench_kafka: records/s through libksock's Kafka API versus a plain
 * librdkafka loop with the same settings, producing and consuming, against
 * a real broker, in the same run.
 *
 *   bench_kafka [-b BOOTSTRAP] [-n RECORDS] [-r REPS] [-s SIZE,...]
 *
 * RECORDS defaults to 1,000,000 for values up to 256 B and 300,000 above
 * (so that one run lasts a second or more); REPS to 8 (even: each side goes
 * first equally often, the second run of a pair tends to find the broker
 * busier); sizes to 100,1024.
 *
 * BOOTSTRAP defaults to $KSOCK_KAFKA_BOOTSTRAP (tools/kafka/ksock-kafka run
 * exports it). For each value size: REPS rounds, alternating which side
 * goes first; each round produces RECORDS records raw and RECORDS through
 * ksock into the same topic (3 partitions), then consumes the first RECORDS
 * records of it from the beginning, raw and through ksock. Each measured run
 * starts after a 0.7 s pause. The table gives the median rate of each side,
 * the median of the per-round ratios ksock/raw, and CPU time per record
 * (all threads); per-round figures go to stderr.
 *
 * Identical settings on both sides: acks=all, enable.idempotence=true,
 * librdkafka's defaults otherwise (linger.ms 5, batch.num.messages 10000,
 * no compression); both consumers have a group.id, no auto commit, and
 * store every consumed offset (librdkafka stores when a message is handed
 * out, ksock after the handler returned).
 *
 *   raw produce:  rd_kafka_producev() + rd_kafka_poll(rk, 0) every 1000 records,
 *                 rd_kafka_poll(rk, 10) when the queue is full, dr_msg_cb counting
 *   ksock produce: ksock_kafka_send() + ksock_runtime_run_once(rt, false) every
 *                 1000 records, run_once(rt, true) when the queue is full
 *   raw consume:  rd_kafka_consumer_poll(rk, 100) until RECORDS messages
 *   ksock consume: handler counting on the loop (ksock_runtime_run) until RECORDS
 *   (consumers are timed from their first message to their last)
 */
#include <ksock/ksock.h>
#include <librdkafka/rdkafka.h>

#include <getopt.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PARTITIONS 3
#define MAX_REPS   16
#define SETTLE_US  700000 /* before each measured run: the broker finishes the last one's work */

static const char *bootstrap;
static const char *only; /* -x raw|ksock: run one side only (for profiling) */
static long records;     /* per run: -n, or by value size (see main) */
static long records_opt;

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "bench_kafka: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(1);
}

static double now_s(void)
{
    return (double)ksock_now_ns() / 1e9;
}

/*
 * Process CPU time (all threads: ours, librdkafka's). Wall-clock rates on a
 * shared 2-core machine are noisy; CPU per record says whether a difference
 * is work we add or scheduling.
 */
static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static double last_cpu_us; /* CPU microseconds per record of the last run */

static double rate(double t0, double c0)
{
    last_cpu_us = (cpu_s() - c0) * 1e6 / (double)records;
    return (double)records / (now_s() - t0);
}

/*
 * Consumers are timed from their first message: the start (connect, offset
 * lookup, first fetch) sometimes takes half a second longer, on either side,
 * and would make the figures bimodal.
 */
static double first_t, first_c;
static void first_message(void)
{
    first_t = now_s();
    first_c = cpu_s();
}

static double consume_rate(void)
{
    last_cpu_us = (cpu_s() - first_c) * 1e6 / (double)(records - 1);
    return (double)(records - 1) / (now_s() - first_t);
}

/* The settings both sides share, as key/value pairs. */
static const char *const common_producer[] = {"acks", "all", "enable.idempotence", "true", NULL};

static rd_kafka_conf_t *raw_conf(const char *const *kv)
{
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, err, sizeof(err)) != 0) die("%s", err);
    for (size_t i = 0; kv && kv[i]; i += 2)
        if (rd_kafka_conf_set(c, kv[i], kv[i + 1], err, sizeof(err)) != 0) die("%s", err);
    return c;
}

static ksock_kafka_conf_t *ksock_conf(const char *const *kv)
{
    char err[512];
    ksock_kafka_conf_t *c;
    ksock_kafka_conf_new(&c);
    if (ksock_kafka_conf_set(c, "bootstrap.servers", bootstrap, err, sizeof(err)) != 0 ||
        ksock_kafka_conf_set_list(c, kv, err, sizeof(err)) != 0)
        die("%s", err);
    return c;
}

static void create_topic(const char *topic)
{
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, raw_conf(NULL), err, sizeof(err));
    if (rk == NULL) die("%s", err);
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, PARTITIONS, 1, err, sizeof(err));
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    if (ev == NULL || rd_kafka_event_error(ev)) die("CreateTopics %s failed", topic);
    rd_kafka_event_destroy(ev);
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_queue_destroy(q);
    /* Let every partition get its leader before the clock starts. */
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    for (int i = 0; i < 50; i++) {
        const struct rd_kafka_metadata *md;
        int ok = 0;
        if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == 0) {
            ok = md->topics[0].err == 0 && md->topics[0].partition_cnt == PARTITIONS;
            rd_kafka_metadata_destroy(md);
        }
        if (ok) break;
        usleep(100000);
    }
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
}

/* ---- produce ----------------------------------------------------------------------------------
 */

static long raw_acked, raw_failed;
static void raw_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    if (m->err)
        raw_failed++;
    else
        raw_acked++;
}

static double produce_raw(const char *topic, const char *value, size_t len)
{
    char err[512];
    rd_kafka_conf_t *c = raw_conf(common_producer);
    rd_kafka_conf_set_dr_msg_cb(c, raw_dr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    if (rk == NULL) die("%s", err);
    raw_acked = raw_failed = 0;
    usleep(SETTLE_US);
    double t0 = now_s(), c0 = cpu_s();
    for (long i = 0; i < records;) {
        rd_kafka_resp_err_t e =
            rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(rk, 10);
            continue;
        }
        if (e) die("produce: %s", rd_kafka_err2str(e));
        if (++i % 1000 == 0) rd_kafka_poll(rk, 0);
    }
    while (raw_acked + raw_failed < records)
        rd_kafka_poll(rk, 100);
    double r = rate(t0, c0);
    if (raw_failed) die("raw produce: %s records failed", "some");
    rd_kafka_destroy(rk);
    return r;
}

static long ks_acked, ks_failed;
static void ks_dr(ksock_kafka_producer_t *p, const ksock_kafka_delivery_t *d, void *data)
{
    if (d->err)
        ks_failed++;
    else
        ks_acked++;
}

static double produce_ksock(ksock_runtime_t *rt, const char *topic, const char *value, size_t len)
{
    char err[512];
    ksock_kafka_conf_t *c = ksock_conf(common_producer);
    ksock_kafka_producer_t *p;
    if (ksock_kafka_producer_new(rt, &p, c, err, sizeof(err)) != 0) die("%s", err);
    ksock_kafka_conf_free(c);
    ks_acked = ks_failed = 0;
    ksock_kafka_record_t rec = {.topic = topic, .value = value, .value_len = len};
    usleep(SETTLE_US);
    double t0 = now_s(), c0 = cpu_s();
    for (long i = 0; i < records;) {
        int rc = ksock_kafka_send(p, &rec, ks_dr);
        if (rc == KSOCK_E_QUEUE_FULL) {
            ksock_runtime_run_once(rt, true); /* until deliveries free room */
            continue;
        }
        if (rc) die("send: %s", ksock_strerror(rc));
        if (++i % 1000 == 0) ksock_runtime_run_once(rt, false);
    }
    while (ks_acked + ks_failed < records)
        ksock_runtime_run_once(rt, true);
    double r = rate(t0, c0);
    if (ks_failed) die("ksock produce: %s records failed", "some");
    ksock_kafka_producer_destroy(p, 5000);
    return r;
}

/* ---- consume ----------------------------------------------------------------------------------
 */

static const char *const common_consumer[] = {"enable.auto.commit", "false", NULL};

static double consume_raw(const char *topic, const char *group, size_t len)
{
    char err[512];
    rd_kafka_conf_t *c = raw_conf(common_consumer);
    rd_kafka_conf_set(c, "group.id", group, err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    if (rk == NULL) die("%s", err);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(PARTITIONS);
    for (int i = 0; i < PARTITIONS; i++)
        rd_kafka_topic_partition_list_add(l, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    long n = 0;
    size_t bytes = 0;
    usleep(SETTLE_US);
    rd_kafka_assign(rk, l);
    while (n < records) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m == NULL) continue;
        if (m->err == 0) {
            if (n++ == 0) first_message();
            bytes += m->len;
        }
        rd_kafka_message_destroy(m);
    }
    double r = consume_rate();
    if (bytes != (size_t)records * len) die("raw consume: %s", "wrong byte count");
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return r;
}

static long ks_n;
static size_t ks_bytes;
static int ks_handler(ksock_kafka_consumer_t *c, const ksock_kafka_message_t *m, void *data)
{
    /* The rest of the drain batch still arrives after the stop request: not counted. */
    if (ks_n == records) return 0;
    if (ks_n == 0) first_message();
    ks_bytes += m->value_len;
    if (++ks_n == records) ksock_runtime_stop(data);
    return 0;
}

static double consume_ksock(ksock_runtime_t *rt, const char *topic, const char *group, size_t len)
{
    char err[512];
    ksock_kafka_conf_t *c = ksock_conf(common_consumer);
    ksock_kafka_conf_set(c, "group.id", group, err, sizeof(err));
    ksock_kafka_consumer_t *cons;
    if (ksock_kafka_consumer_new(rt, &cons, c, NULL, ks_handler, rt, err, sizeof(err)) != 0)
        die("%s", err);
    ksock_kafka_conf_free(c);
    ksock_kafka_partition_t parts[PARTITIONS];
    for (int i = 0; i < PARTITIONS; i++)
        parts[i] = (ksock_kafka_partition_t){topic, i, KSOCK_KAFKA_OFFSET_BEGINNING, 0};
    ks_n = 0;
    ks_bytes = 0;
    usleep(SETTLE_US);
    ksock_kafka_consumer_assign(cons, parts, PARTITIONS);
    ksock_kafka_consumer_start(cons);
    ksock_runtime_run(rt);
    double r = consume_rate();
    if (ks_bytes != (size_t)records * len) die("ksock consume: %s", "wrong byte count");
    ksock_kafka_consumer_destroy(cons);
    return r;
}

/* ---- driver -------------------------------------------------------------------------------------
 */

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/*
 * The ratio is the median of the per-round ratios: raw and ksock of one round
 * run back to back under the same machine load, so pairing them cancels most
 * of the drift that other work on a shared machine causes between rounds.
 */
static void report(const char *what, size_t len, double raw[2][MAX_REPS], double ks[2][MAX_REPS],
                   int reps)
{
    double ratio[MAX_REPS];
    for (int i = 0; i < reps; i++)
        ratio[i] = ks[0][i] / raw[0][i];
    double q = median(ratio, reps);
    double r = median(raw[0], reps), k = median(ks[0], reps);
    double rc = median(raw[1], reps), kc = median(ks[1], reps);
    printf("| %-7s | %5zu B | %7ld | %10.0f | %11.0f | %7.1f %% | %5.2f | %5.2f |\n", what, len,
           records, r, k, 100.0 * q, rc, kc);
    fflush(stdout);
}

static void bench_size(ksock_runtime_t *rt, size_t len, int reps)
{
    records = records_opt ? records_opt : len <= 256 ? 1000000 : 300000;
    char topic[128];
    snprintf(topic, sizeof(topic), "ksock-bench-%zu-%d", len, (int)getpid());
    create_topic(topic);
    char *value = malloc(len);
    for (size_t i = 0; i < len; i++)
        value[i] = (char)('a' + i % 26);
    /* [0] records/s, [1] CPU us/record; per round */
    double praw[2][MAX_REPS] = {{0}}, pks[2][MAX_REPS] = {{0}}, craw[2][MAX_REPS] = {{0}},
           cks[2][MAX_REPS] = {{0}};
    for (int i = 0; i < reps; i++) {
        char graw[200], gks[200];
        snprintf(graw, sizeof(graw), "%s-raw-%d", topic, i);
        snprintf(gks, sizeof(gks), "%s-ksock-%d", topic, i);
        /* Alternate who goes first, so neither side always gets the calmer broker. */
        for (int k = 0; k < 4; k++) {
            int step = i % 2 ? (k ^ 1) : k;
            if (only && (strcmp(only, "raw") == 0) != (step % 2 == 0)) continue;
            switch (step) {
            case 0:
                praw[0][i] = produce_raw(topic, value, len), praw[1][i] = last_cpu_us;
                break;
            case 1:
                pks[0][i] = produce_ksock(rt, topic, value, len), pks[1][i] = last_cpu_us;
                break;
            case 2:
                craw[0][i] = consume_raw(topic, graw, len), craw[1][i] = last_cpu_us;
                break;
            case 3:
                cks[0][i] = consume_ksock(rt, topic, gks, len), cks[1][i] = last_cpu_us;
                break;
            }
        }
        fprintf(stderr,
                "  round %d (%zu B): produce raw %.0f ksock %.0f, consume raw %.0f "
                "ksock %.0f records/s\n",
                i + 1, len, praw[0][i], pks[0][i], craw[0][i], cks[0][i]);
    }
    report("produce", len, praw, pks, reps);
    report("consume", len, craw, cks, reps);
    free(value);
}

int main(int argc, char **argv)
{
    int reps = 8, opt;
    char sizes[128] = "100,1024";
    bootstrap = getenv("KSOCK_KAFKA_BOOTSTRAP");
    while ((opt = getopt(argc, argv, "b:n:r:s:x:h")) != -1) {
        switch (opt) {
        case 'b':
            bootstrap = optarg;
            break;
        case 'n':
            records_opt = atol(optarg);
            break;
        case 'r':
            reps = atoi(optarg);
            break;
        case 's':
            snprintf(sizes, sizeof(sizes), "%s", optarg);
            break;
        case 'x':
            only = optarg;
            break;
        default:
            fprintf(stderr, "usage: %s [-b BOOTSTRAP] [-n RECORDS] [-r REPS] [-s SIZE,...]\n",
                    argv[0]);
            return 2;
        }
    }
    if (bootstrap == NULL) die("%s", "no broker: pass -b or set KSOCK_KAFKA_BOOTSTRAP");
    if (reps < 1 || reps > MAX_REPS || records_opt < 0) die("%s", "bad -r or -n");
    ksock_runtime_t *rt;
    char err[256];
    if (ksock_runtime_new(&rt, err, sizeof(err)) != 0) die("%s", err);
    ksock_log_options_t lo = {sizeof(lo), KSOCK_LOG_WARN, "console", KSOCK_LOG_FORMAT_TEXT, NULL};
    ksock_log_configure(rt, &lo, err, sizeof(err));
    printf("bench_kafka: median of %d rounds, librdkafka %s, broker %s\n\n", reps,
           rd_kafka_version_str(), bootstrap);
    printf("| what    | value   | records | raw rec/s  | ksock rec/s | ksock/raw | raw CPU us/rec "
           "| ksock CPU us/rec |\n");
    printf(
        "|---------|---------|---------|------------|-------------|-----------|-------|-------|\n");
    for (char *s = strtok(sizes, ","); s; s = strtok(NULL, ","))
        bench_size(rt, (size_t)atol(s), reps);
    ksock_runtime_destroy(rt);
    return 0;
}
