/*
 * Kafka lookups for subscriptions: does the topic exist, how many
 * partitions, their first and end offsets, and (for start: timestamp) the
 * offsets at a time. Each is a few broker round trips, so each runs on a
 * short-lived thread of its own against the bridge's `meta` handle (a
 * consumer that is never started: a consumer never creates a topic by
 * asking for it). The thread writes an eventfd when it is done; the loop
 * joins it and hands the result to subs.c. A lookup whose topic or
 * subscription went meanwhile is joined and dropped.
 */
#include "bridge_internal.h"

#include <event2/event.h>
#include <librdkafka/rdkafka.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void lookup_free(lookup_t *l)
{
    free(l->name);
    free(l->low);
    free(l->high);
    free(l->at);
    free(l);
}

static void fail(lookup_t *l, int code, const char *fmt, const char *what)
{
    l->err = code;
    snprintf(l->errmsg, sizeof(l->errmsg), fmt, what);
}

static void lookup_partitions(lookup_t *l, rd_kafka_t *rk)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, l->name, NULL);
    if (rkt == NULL) {
        fail(l, KSOCK_E_NOMEM, "%s", "out of memory");
        return;
    }
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, l->timeout_ms);
    rd_kafka_topic_destroy(rkt);
    if (err) {
        fail(l, KSOCK_E_KAFKA, "Kafka metadata: %s", rd_kafka_err2str(err));
        return;
    }
    if (md->topic_cnt != 1 || md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
        md->topics[0].partition_cnt == 0) {
        fail(l, KSOCK_E_UNKNOWN_TOPIC, "%s", "no such topic");
    } else if (md->topics[0].err) {
        fail(l, ksock_kafka_err_map(md->topics[0].err), "Kafka metadata: %s",
             rd_kafka_err2str(md->topics[0].err));
    } else {
        l->nparts = md->topics[0].partition_cnt;
    }
    rd_kafka_metadata_destroy(md);
}

static void lookup_offsets(lookup_t *l, rd_kafka_t *rk)
{
    size_t n = (size_t)l->nparts;
    l->low = calloc(n, sizeof(*l->low));
    l->high = calloc(n, sizeof(*l->high));
    if (l->low == NULL || l->high == NULL) {
        fail(l, KSOCK_E_NOMEM, "%s", "out of memory");
        return;
    }
    for (int32_t p = 0; p < l->nparts; p++) {
        rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(rk, l->name, p, &l->low[p],
                                                                   &l->high[p], l->timeout_ms);
        if (err) {
            fail(l, ksock_kafka_err_map(err), "Kafka offsets: %s", rd_kafka_err2str(err));
            return;
        }
    }
    if (l->ts < 0) return;
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(l->nparts);
    l->at = calloc(n, sizeof(*l->at));
    if (tl == NULL || l->at == NULL) {
        if (tl) rd_kafka_topic_partition_list_destroy(tl);
        fail(l, KSOCK_E_NOMEM, "%s", "out of memory");
        return;
    }
    for (int32_t p = 0; p < l->nparts; p++)
        rd_kafka_topic_partition_list_add(tl, l->name, p)->offset = l->ts;
    rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rk, tl, l->timeout_ms);
    for (int i = 0; err == 0 && i < tl->cnt; i++) {
        int32_t p = tl->elems[i].partition;
        if (tl->elems[i].err)
            err = tl->elems[i].err;
        else if (p >= 0 && p < l->nparts)
            l->at[p] = tl->elems[i].offset; /* -1: no record at or after the time */
    }
    rd_kafka_topic_partition_list_destroy(tl);
    if (err)
        fail(l, ksock_kafka_err_map(err), "Kafka offsets for times: %s", rd_kafka_err2str(err));
}

static void *lookup_main(void *arg)
{
    lookup_t *l = arg;
    rd_kafka_t *rk = ksock_kafka_consumer_handle(l->b->meta);
    lookup_partitions(l, rk);
    if (l->err == 0) lookup_offsets(l, rk);
    uint64_t one = 1;
    atomic_store(&l->done, true);
    ssize_t w = write(l->b->lk_fd, &one, sizeof(one));
    (void)w; /* an eventfd write fails only on overflow, which leaves it readable */
    return NULL;
}

/* Loop: join the lookups that are done and hand their results over. */
static void on_done(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    ksock_bridge_t *b = arg;
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof(v));
    (void)r;
    for (lookup_t **pp = &b->lookups; *pp;) {
        lookup_t *l = *pp;
        if (!atomic_load(&l->done)) {
            pp = &l->next;
            continue;
        }
        *pp = l->next;
        pthread_join(l->thread, NULL);
        if (l->for_sub && l->sub) {
            l->sub->lk = NULL;
            ksock__br_sub_lookup_done(b, l->sub, l);
        } else if (!l->for_sub && l->topic) {
            l->topic->lk = NULL;
            ksock__br_subs_topic_ready(b, l->topic, l);
        }
        lookup_free(l);
    }
}

static int meta_noop(ksock_kafka_consumer_t *c, const ksock_kafka_message_t *m, void *data)
{
    (void)c, (void)m, (void)data;
    return 0;
}

static int lookups_init(ksock_bridge_t *b)
{
    if (b->meta) return 0;
    char err[512];
    int rc =
        ksock_kafka_consumer_new(b->rt, &b->meta, b->kconf, NULL, meta_noop, b, err, sizeof(err));
    if (rc != 0) {
        ksock_log(b->rt, KSOCK_LOG_ERROR, COMPONENT, NULL, 0, "cannot make the lookup client: %s",
                  err);
        return rc;
    }
    b->lk_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (b->lk_fd < 0) return ksock_err_from_errno(errno);
    b->lk_ev =
        event_new(ksock_runtime_event_base(b->rt), b->lk_fd, EV_READ | EV_PERSIST, on_done, b);
    if (b->lk_ev == NULL || event_add(b->lk_ev, NULL) != 0) return KSOCK_E_NOMEM;
    return 0;
}

int ksock__br_lookup_start(ksock_bridge_t *b, topic_t *t, sub_t *s, const char *name, int64_t ts)
{
    int rc = lookups_init(b);
    if (rc != 0) return rc;
    lookup_t *l = calloc(1, sizeof(*l));
    if (l == NULL || (l->name = strdup(name)) == NULL) {
        free(l);
        return KSOCK_E_NOMEM;
    }
    l->b = b;
    l->topic = t;
    l->sub = s;
    l->for_sub = s != NULL;
    l->ts = ts;
    l->timeout_ms = b->lookup_timeout_ms;
    if (pthread_create(&l->thread, NULL, lookup_main, l) != 0) {
        lookup_free(l);
        return KSOCK_E_NOMEM;
    }
    l->next = b->lookups;
    b->lookups = l;
    if (s)
        s->lk = l;
    else
        t->lk = l;
    return 0;
}

void ksock__br_lookups_free(ksock_bridge_t *b)
{
    for (lookup_t *l = b->lookups, *next; l; l = next) {
        next = l->next;
        pthread_join(l->thread, NULL); /* bounded by lookup_timeout_ms per round trip */
        lookup_free(l);
    }
    b->lookups = NULL;
    if (b->lk_ev) event_free(b->lk_ev);
    if (b->lk_fd >= 0) close(b->lk_fd);
    b->lk_ev = NULL;
    b->lk_fd = -1;
    ksock_kafka_consumer_destroy(b->meta);
    b->meta = NULL;
}
