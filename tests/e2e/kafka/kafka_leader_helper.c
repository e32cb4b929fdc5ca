/*
 * Helper for leader_kill.py (three brokers, a partition leader killed during
 * a produce run). Uses the public API for producing and consuming.
 *
 *   kafka_leader_helper create BOOTSTRAP TOPIC PARTITIONS
 *       topic with replication factor 3 and min.insync.replicas=2
 *   kafka_leader_helper produce BOOTSTRAP TOPIC COUNT KEYS RATE ACKFILE
 *       COUNT records, key "key-<i % KEYS>", value "<key>:<seq within key>", at most
 *       RATE records/s; every success is written to ACKFILE as
 *       "partition offset key seq"; prints "acked N" now and then and a final
 *       "done acked=N failed=M" line
 *   kafka_leader_helper verify BOOTSTRAP TOPIC PARTITIONS KEYS ACKFILE
 *       reads every partition from the beginning to its end and checks that each
 *       acknowledged record is there, at its offset, that no (key, seq) appears
 *       twice, and that each key's seqs only go up; prints a summary, exit 0 if all hold
 */
#include "kt.h"

#include <librdkafka/rdkafka.h>

/* ---- create ---------------------------------------------------------------------------------- */

static int cmd_create(char **argv)
{
    const char *cfg[] = {"min.insync.replicas", "2", NULL};
    kt_create_topic(argv[0], argv[1], atoi(argv[2]), 3, cfg);
    printf("created %s with %s partitions, replication factor 3, min.insync.replicas=2\n", argv[1],
           argv[2]);
    return 0;
}

/* ---- produce --------------------------------------------------------------------------------- */

typedef struct {
    ksock_runtime_t *rt;
    ksock_kafka_producer_t *p;
    const char *topic;
    long count, keys, rate, sent, acked, failed;
    long *next_seq;
    FILE *ack;
    uint64_t t0;
    ksock_timer_t *pump;
    int last_err;
} prod_t;

static void on_delivery(ksock_kafka_producer_t *p, const ksock_kafka_delivery_t *d, void *data)
{
    prod_t *s = ksock_kafka_producer_get_data(p);
    if (d->err) {
        s->failed++;
        s->last_err = d->err;
    } else {
        /* value is "<key>:<seq>"; the ack file gets it with where it landed */
        fprintf(s->ack, "%d %" PRId64 " %.*s\n", d->partition, d->offset, (int)d->value_len,
                (const char *)d->value);
        if (++s->acked % 5000 == 0) {
            printf("acked %ld\n", s->acked);
            fflush(stdout);
        }
    }
    if (s->acked + s->failed == s->count) ksock_runtime_stop(s->rt);
}

/* Send what the rate allows so far; the queue bound pushes back with QUEUE_FULL. */
static void pump(ksock_timer_t *t, void *data)
{
    prod_t *s = data;
    long allowed = (long)((kt_ms() - s->t0) * (uint64_t)s->rate / 1000u) + 100;
    while (s->sent < s->count && s->sent < allowed) {
        char key[32], val[64];
        long k = s->sent % s->keys;
        snprintf(key, sizeof(key), "key-%ld", k);
        int n = snprintf(val, sizeof(val), "%s:%ld", key, s->next_seq[k]);
        ksock_kafka_record_t r = {.topic = s->topic,
                                  .key = key,
                                  .key_len = strlen(key),
                                  .value = val,
                                  .value_len = (size_t)n};
        int rc = ksock_kafka_send(s->p, &r, on_delivery);
        if (rc == KSOCK_E_QUEUE_FULL) return; /* next tick */
        if (rc != 0) TEST_FAIL_("send: %s", ksock_strerror(rc));
        s->next_seq[k]++;
        s->sent++;
    }
    if (s->sent == s->count) ksock_timer_stop(t);
}

static int cmd_produce(char **argv)
{
    prod_t s = {
        .topic = argv[1], .count = atol(argv[2]), .keys = atol(argv[3]), .rate = atol(argv[4])};
    s.next_seq = calloc((size_t)s.keys, sizeof(long));
    s.ack = fopen(argv[5], "w");
    ASSERT_NOT_NULL(s.ack);
    s.rt = kt_runtime();
    /* Long enough to outlast a leader election; idempotence and acks=all are our defaults. */
    ksock_kafka_conf_t *c = kt_conf("bootstrap.servers", argv[0], "message.timeout.ms", "120000",
                                    "linger.ms", "5", NULL);
    char err[512];
    if (ksock_kafka_producer_new(s.rt, &s.p, c, err, sizeof(err)) != 0) TEST_FAIL_("%s", err);
    ksock_kafka_conf_free(c);
    ksock_kafka_producer_set_data(s.p, &s);
    ASSERT_OK(ksock_timer_init(s.rt, &s.pump, pump, &s));
    s.t0 = kt_ms();
    ASSERT_OK(ksock_timer_start(s.pump, 1, 5));
    ASSERT_OK(ksock_runtime_run(s.rt));
    ksock_timer_close(s.pump);
    ksock_kafka_producer_destroy(s.p, 5000);
    fclose(s.ack);
    printf("done acked=%ld failed=%ld in %.1f s%s%s\n", s.acked, s.failed,
           (double)(kt_ms() - s.t0) / 1000.0, s.failed ? ", last error " : "",
           s.failed ? ksock_err_name(s.last_err) : "");
    ksock_runtime_destroy(s.rt);
    free(s.next_seq);
    return 0;
}

/* ---- verify ---------------------------------------------------------------------------------- */

#define MAXP 64
typedef struct {
    ksock_runtime_t *rt;
    long keys;
    int parts;
    int64_t end[MAXP];  /* high watermark per partition */
    int64_t next[MAXP]; /* next offset expected per partition */
    size_t reached;     /* partitions read to their end */
    long *last_seq;     /* per key */
    char **at[MAXP];    /* at[p][offset] = "key:seq" */
    long consumed, order_errors, gaps;
} ver_t;

static int on_record(ksock_kafka_consumer_t *c, const ksock_kafka_message_t *m, void *data)
{
    ver_t *v = data;
    int32_t p = m->partition;
    if (m->offset != v->next[p]) v->gaps++; /* compaction is off: offsets are dense */
    v->next[p] = m->offset + 1;
    char val[64];
    snprintf(val, sizeof(val), "%.*s", (int)m->value_len, (const char *)m->value);
    if (m->offset < v->end[p]) v->at[p][m->offset] = strdup(val);
    long k = -1, seq = -1;
    if (sscanf(val, "key-%ld:%ld", &k, &seq) != 2 || k < 0 || k >= v->keys) {
        v->order_errors++;
    } else {
        if (seq <= v->last_seq[k]) v->order_errors++; /* per-key order, and no duplicates */
        v->last_seq[k] = seq;
    }
    v->consumed++;
    if (v->next[p] == v->end[p]) v->reached++;
    return 0;
}

static int cmd_verify(char **argv)
{
    ver_t v = {.parts = atoi(argv[2]), .keys = atol(argv[3])};
    ASSERT(v.parts > 0 && v.parts <= MAXP);
    v.last_seq = malloc((size_t)v.keys * sizeof(long));
    for (long k = 0; k < v.keys; k++)
        v.last_seq[k] = -1;
    v.rt = kt_runtime();
    ksock_kafka_conf_t *c = kt_conf("bootstrap.servers", argv[0], NULL);
    ksock_kafka_consumer_t *cons;
    char err[512];
    if (ksock_kafka_consumer_new(v.rt, &cons, c, NULL, on_record, &v, err, sizeof(err)) != 0)
        TEST_FAIL_("%s", err);
    ksock_kafka_conf_free(c);
    /* Where each partition ends (escape hatch: a metadata call the API does not wrap). */
    ksock_kafka_partition_t parts[MAXP];
    for (int p = 0; p < v.parts; p++) {
        int64_t lo, hi;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(ksock_kafka_consumer_handle(cons),
                                                                 argv[1], p, &lo, &hi, 30000);
        if (e) TEST_FAIL_("watermarks of %s [%d]: %s", argv[1], p, rd_kafka_err2str(e));
        v.end[p] = hi;
        v.at[p] = calloc((size_t)hi + 1, sizeof(char *));
        if (hi == 0) v.reached++;
        parts[p] = (ksock_kafka_partition_t){argv[1], p, KSOCK_KAFKA_OFFSET_BEGINNING, 0};
    }
    ASSERT_OK(ksock_kafka_consumer_assign(cons, parts, (size_t)v.parts));
    ASSERT_OK(ksock_kafka_consumer_start(cons));
    if (!kt_wait_count(v.rt, &v.reached, (size_t)v.parts, 120000))
        TEST_FAIL_("read %ld records, %zu of %d partitions reached their end", v.consumed,
                   v.reached, v.parts);
    ksock_kafka_consumer_destroy(cons);

    FILE *ack = fopen(argv[4], "r");
    ASSERT_NOT_NULL(ack);
    long acked = 0, missing = 0, misplaced = 0;
    int p;
    int64_t off;
    char val[64];
    while (fscanf(ack, "%d %" SCNd64 " %63s", &p, &off, val) == 3) {
        acked++;
        if (p < 0 || p >= v.parts || off < 0 || off >= v.end[p] || v.at[p][off] == NULL)
            missing++;
        else if (strcmp(v.at[p][off], val) != 0)
            misplaced++;
    }
    fclose(ack);
    printf("verify: %ld records in the topic, %ld acknowledged: %ld missing, %ld at another "
           "offset than acknowledged, %ld per-key order errors or duplicates, %ld offset gaps\n",
           v.consumed, acked, missing, misplaced, v.order_errors, v.gaps);
    for (p = 0; p < v.parts; p++) {
        for (int64_t o = 0; o < v.end[p]; o++)
            free(v.at[p][o]);
        free(v.at[p]);
    }
    free(v.last_seq);
    ksock_runtime_destroy(v.rt);
    return (missing || misplaced || v.order_errors || v.gaps || acked == 0) ? 1 : 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 5 && strcmp(argv[1], "create") == 0) return cmd_create(argv + 2);
    if (argc == 8 && strcmp(argv[1], "produce") == 0) return cmd_produce(argv + 2);
    if (argc == 7 && strcmp(argv[1], "verify") == 0) return cmd_verify(argv + 2);
    fprintf(stderr, "usage: %s create|produce|verify ... (see the source)\n", argv[0]);
    return 2;
}
