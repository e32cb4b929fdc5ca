/*
 * ksock-bench: librdkafka directly (kb.h). The fan-out producer writes the records every
 * subscriber must receive; the raw loop is the publish mode's baseline. Both use the settings
 * ksockd's producer has by default (acks=all, enable.idempotence=true, docs/kafka.md), the
 * fan-out producer with a short linger so that latency is the bridge's, not the batching's.
 */
#include "kb.h"

#include <librdkafka/rdkafka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);

/* A producer handle; with `res`, delivery reports count into it (the conf's opaque). */
static rd_kafka_t *client(kb_run_t *r, int linger_ms, kb_prod_result_t *res, char *err,
                          size_t errlen)
{
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (res) {
        rd_kafka_conf_set_dr_msg_cb(c, dr);
        rd_kafka_conf_set_opaque(c, res);
    }
    char linger[16];
    snprintf(linger, sizeof(linger), "%d", linger_ms);
    const char *kv[] = {"bootstrap.servers",
                        r->bootstrap,
                        "acks",
                        "all",
                        "enable.idempotence",
                        "true",
                        linger_ms >= 0 ? "linger.ms" : NULL,
                        linger,
                        NULL};
    for (int i = 0; kv[i]; i += 2)
        if (rd_kafka_conf_set(c, kv[i], kv[i + 1], err, errlen) != RD_KAFKA_CONF_OK) {
            rd_kafka_conf_destroy(c);
            return NULL;
        }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, errlen); /* takes c on success */
    if (rk == NULL)
        rd_kafka_conf_destroy(c);
    else
        err[0] = 0; /* conf_set writes a message even when it succeeds (a topic-level property) */
    return rk;
}

/* The topic's partition count, 0 if it does not exist, -1 when the broker does not answer. */
static int partition_count(rd_kafka_t *rk, const char *topic)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md;
    int n = -1;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == 0) {
        n = md->topics[0].err ? 0 : md->topics[0].partition_cnt;
        for (int i = 0; n > 0 && i < md->topics[0].partition_cnt; i++)
            if (md->topics[0].partitions[i].leader < 0) n = 0; /* not ready yet */
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    return n;
}

static int create_topic(rd_kafka_t *rk, const char *topic, int partitions, char *err, size_t errlen)
{
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, 1, err, errlen);
    if (nt == NULL) return -1;
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    int rc = 0;
    if (ev == NULL) {
        snprintf(err, errlen, "CreateTopics %s: no answer in 30 s", topic);
        rc = -1;
    } else {
        size_t cnt;
        const rd_kafka_topic_result_t **res =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
        rd_kafka_resp_err_t e =
            cnt ? rd_kafka_topic_result_error(res[0]) : rd_kafka_event_error(ev);
        if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            snprintf(err, errlen, "CreateTopics %s: %s", topic, rd_kafka_err2str(e));
            rc = -1;
        }
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_queue_destroy(q);
    return rc;
}

/*
 * Creates the topic when it does not exist (run->partitions partitions), records its partition
 * count, opens the fan-out producer (`warm`, kb_producer_open) and then reads, per partition,
 * the high watermark: with the subscribers starting at
 * `latest` before anything is produced, that is the first offset each of them must get.
 */
int kb_kafka_prepare(kb_run_t *r, kb_prod_result_t *warm, char *err, size_t errlen)
{
    rd_kafka_t *rk = client(r, -1, NULL, err, errlen);
    if (rk == NULL) return -1;
    int n = partition_count(rk, r->topic), rc = -1;
    if (n == 0 && create_topic(rk, r->topic, r->partitions, err, errlen) != 0) goto out;
    for (int i = 0; i < 100 && (n = partition_count(rk, r->topic)) <= 0; i++)
        usleep(100000);
    if (n <= 0) {
        snprintf(err, errlen, "topic %s: no metadata from %s", r->topic, r->bootstrap);
        goto out;
    }
    r->partitions = n;
    if (warm && kb_producer_open(r, warm, 0) != 0) {
        snprintf(err, errlen, "producer: %s", warm->err);
        goto out;
    }
    free(r->start_offsets);
    r->start_offsets = calloc((size_t)n, sizeof(int64_t));
    if (r->start_offsets == NULL) goto out;
    for (int p = 0; p < n; p++) {
        int64_t lo, hi;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, r->topic, p, &lo, &hi, 10000);
        if (e) {
            snprintf(err, errlen, "watermarks of %s [%d]: %s", r->topic, p, rd_kafka_err2str(e));
            goto out;
        }
        r->start_offsets[p] = hi;
    }
    rc = 0;
out:
    rd_kafka_destroy(rk);
    return rc;
}

static void dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    kb_prod_result_t *res = opaque;
    if (m->err) {
        if (res->failed++ == 0)
            snprintf(res->err, sizeof(res->err), "delivery: %s", rd_kafka_err2str(m->err));
    } else {
        res->produced++;
    }
    (void)rk;
}

static double thread_cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int produce_one(rd_kafka_t *rk, kb_run_t *r, uint8_t *value, kb_prod_result_t *res)
{
    for (;;) {
        kb_value_fill(value, r->value_size, kb_real_ns());
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(r->topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_VALUE(value, (size_t)r->value_size), RD_KAFKA_V_END);
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            if (e) snprintf(res->err, sizeof(res->err), "produce: %s", rd_kafka_err2str(e));
            return e ? -1 : 0;
        }
        rd_kafka_poll(rk, 5);
    }
}

/*
 * A producer whose first record is already delivered: the topic's metadata and the idempotent
 * producer's id are fetched before the clock starts (they take most of a second, and the
 * records sent meanwhile would wait in librdkafka's queue with their send time already
 * written). The warm-up record goes to the topic like the others, before anyone subscribes
 * (fanout) or before the timed run (raw). `raw`: librdkafka's default linger, no rate.
 */
int kb_producer_open(kb_run_t *r, kb_prod_result_t *res, int raw)
{
    memset(res, 0, sizeof(*res));
    res->raw = raw;
    rd_kafka_t *rk = client(r, raw ? -1 : r->linger_ms, res, res->err, sizeof(res->err));
    if (rk == NULL) return -1;
    res->rk = rk;
    uint8_t *value = malloc((size_t)r->value_size);
    int rc = value ? produce_one(rk, r, value, res) : -1;
    free(value);
    if (rc == 0) rd_kafka_flush(rk, 30000);
    if (rc != 0 || res->produced != 1) {
        if (res->err[0] == 0) snprintf(res->err, sizeof(res->err), "warm-up record not delivered");
        rd_kafka_destroy(rk);
        res->rk = NULL;
        return -1;
    }
    res->produced = 0;
    return 0;
}

/*
 * Produces run->records values of run->value_size bytes, each starting with its send time
 * (kb_value_fill), at run->rate records/s (0, or a raw producer: as fast as the queue takes
 * them), waits for every delivery report and destroys the producer.
 */
int kb_produce(kb_run_t *r, kb_prod_result_t *res)
{
    rd_kafka_t *rk = res->rk;
    double rate = res->raw ? 0 : r->rate;
    uint8_t *value = malloc((size_t)r->value_size);
    if (rk == NULL || value == NULL) {
        free(value);
        return -1;
    }
    double c0 = thread_cpu_s();
    res->t0_ns = kb_mono_ns();
    for (long i = 0; i < r->records; i++) {
        if (rate > 0) { /* pace: never ahead of i / rate seconds since the start */
            int64_t due = res->t0_ns + (int64_t)((double)i * 1e9 / rate), now;
            while ((now = kb_mono_ns()) < due) {
                rd_kafka_poll(rk, 0);
                struct timespec ts = {0, due - now > 1000000 ? 1000000 : due - now};
                nanosleep(&ts, NULL);
            }
        }
        if (produce_one(rk, r, value, res) != 0) break;
        if (i % 256 == 255) rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 60000);
    rd_kafka_poll(rk, 0);
    res->t1_ns = kb_mono_ns();
    res->cpu_s = thread_cpu_s() - c0;
    free(value);
    rd_kafka_destroy(rk);
    res->rk = NULL;
    return res->produced == r->records ? 0 : -1;
}

/* A producer that kb_produce will not run after all (the run ended early). */
void kb_producer_close(kb_prod_result_t *res)
{
    if (res->rk) rd_kafka_destroy(res->rk);
    res->rk = NULL;
}
