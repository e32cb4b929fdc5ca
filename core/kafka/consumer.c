/*
 * The consumer: librdkafka's high-level consumer with its main queue
 * forwarded to the consumer queue, drained on the loop with
 * rd_kafka_consume_batch_queue(). Rebalance, error, statistics and commit
 * callbacks are served by that same call, so they run on the loop too.
 *
 * Backpressure: a handler that cannot take a message returns
 * KSOCK_KAFKA_PAUSE (or calls ksock_kafka_consumer_pause()). The partition
 * is paused in librdkafka, which stops fetching it and drops what it had
 * queued for it; messages of that partition we already hold are parked, in
 * order, and handed over first on resume. librdkafka refetches from the
 * position after the last message it gave us, so parked plus refetched is
 * exactly the rest of the partition.
 *
 * One unit (~890 lines): assignment, rebalance, commits and the queue
 * drain all act on the same librdkafka handle and partition list under
 * librdkafka's callback rules, which are easier to keep right in one file.
 */
#include "kafka_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct parked_s {
    struct parked_s *next;
    rd_kafka_message_t *m;
} parked_t;

typedef struct paused_s {
    char *topic;
    int32_t partition;
} paused_t;

/* An assignment at a timestamp: the offset lookup runs on its own thread. */
typedef struct lookup_s {
    struct lookup_s *next;
    ksock_kafka_consumer_t *c;
    pthread_t thread;
    rd_kafka_topic_partition_list_t *parts;
    int timeout_ms;
    _Atomic int done;
    rd_kafka_resp_err_t err;
    ksock_kafka_assign_cb cb;
    void *data;
} lookup_t;

/* An explicit commit waiting for its result. */
typedef struct commit_s {
    struct commit_s *next, *prev;
    ksock_kafka_consumer_t *c;
    ksock_kafka_commit_cb cb;
    void *data;
} commit_t;

struct ksock_kafka_consumer_s {
    ksock__khead_t head; /* first: librdkafka's opaque */
    ksock__klink_t link;
    ksock_runtime_t *rt;
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    ksock__kwake_t wake;
    int batch;
    rd_kafka_message_t **buf; /* batch slots */
    rd_kafka_topic_partition_list_t *topics;
    ksock_kafka_message_cb cb;
    void *cb_data;
    ksock_kafka_rebalance_cb rebalance_cb;
    void *rebalance_data;
    ksock_kafka_stats_cb stats_cb;
    void *stats_data;
    void *data;
    bool started, auto_store, has_group;
    rd_kafka_topic_partition_list_t *pending_assign; /* manual assignment made while stopped */
    unsigned gen;                                    /* bumped on every assignment change */
    parked_t *parked, *parked_tail;
    size_t n_parked;
    paused_t *paused;
    size_t n_paused, cap_paused;
    lookup_t *lookups;
    commit_t commits; /* sentinel */
    uint64_t delivered;
    int in_cb;
    bool closing, destroy_queued;
};

static void really_destroy(ksock_kafka_consumer_t *c);

/* ---- Partition lists ------------------------------------------------------------ */

static rd_kafka_topic_partition_list_t *to_rd(const ksock_kafka_partition_t *parts, size_t n)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)(n ? n : 1));
    for (size_t i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, parts[i].topic, parts[i].partition)->offset =
            parts[i].offset;
    return l;
}

/* A borrowed view of `l` for a callback; free() the array afterwards. */
static ksock_kafka_partition_t *from_rd(const rd_kafka_topic_partition_list_t *l, size_t *n)
{
    *n = l ? (size_t)l->cnt : 0;
    ksock_kafka_partition_t *v = calloc(*n ? *n : 1, sizeof(*v));
    for (size_t i = 0; v && i < *n; i++) {
        const rd_kafka_topic_partition_t *e = &l->elems[i];
        v[i] = (ksock_kafka_partition_t){e->topic, e->partition, e->offset,
                                         ksock_kafka_err_map(e->err)};
    }
    if (v == NULL) *n = 0;
    return v;
}

static bool valid_parts(const ksock_kafka_partition_t *parts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (parts[i].topic == NULL || parts[i].partition < 0) return false;
    return n == 0 || parts != NULL;
}

/* ---- Paused partitions and parked messages ---------------------------------------- */

static paused_t *paused_find(ksock_kafka_consumer_t *c, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < c->n_paused; i++)
        if (c->paused[i].partition == partition && strcmp(c->paused[i].topic, topic) == 0)
            return &c->paused[i];
    return NULL;
}

static int paused_add(ksock_kafka_consumer_t *c, const char *topic, int32_t partition)
{
    if (c->n_paused == c->cap_paused) {
        size_t cap = c->cap_paused ? c->cap_paused * 2 : 8;
        paused_t *v = realloc(c->paused, cap * sizeof(*v));
        if (v == NULL) return KSOCK_E_NOMEM;
        c->paused = v;
        c->cap_paused = cap;
    }
    char *t = strdup(topic);
    if (t == NULL) return KSOCK_E_NOMEM;
    c->paused[c->n_paused++] = (paused_t){t, partition};
    return 0;
}

static void paused_remove(ksock_kafka_consumer_t *c, paused_t *p)
{
    free(p->topic);
    *p = c->paused[--c->n_paused];
}

static void park(ksock_kafka_consumer_t *c, rd_kafka_message_t *m)
{
    parked_t *p = malloc(sizeof(*p));
    if (p == NULL) {
        /* Dropped, not lost: it was not stored, so a restart reads it again. */
        ksock_report_error(c->rt, KSOCK_E_NOMEM, KSOCK__KAFKA_COMPONENT,
                           "%s: no memory to hold a message of paused %s [%d]",
                           rd_kafka_name(c->rk), rd_kafka_topic_name(m->rkt), m->partition);
        rd_kafka_message_destroy(m);
        return;
    }
    p->next = NULL;
    p->m = m;
    if (c->parked_tail)
        c->parked_tail->next = p;
    else
        c->parked = p;
    c->parked_tail = p;
    c->n_parked++;
}

/* Drop parked messages; all of them, or those of one partition (topic != NULL). */
static void parked_drop(ksock_kafka_consumer_t *c, const char *topic, int32_t partition)
{
    parked_t **pp = &c->parked, *last = NULL;
    while (*pp) {
        parked_t *p = *pp;
        if (topic == NULL ||
            (p->m->partition == partition && strcmp(rd_kafka_topic_name(p->m->rkt), topic) == 0)) {
            *pp = p->next;
            rd_kafka_message_destroy(p->m);
            free(p);
            c->n_parked--;
        } else {
            last = p;
            pp = &p->next;
        }
    }
    c->parked_tail = last;
}

/* Forget pause state and parked messages of partitions that are no longer ours. */
static void forget(ksock_kafka_consumer_t *c, const rd_kafka_topic_partition_list_t *l)
{
    if (l == NULL) {
        parked_drop(c, NULL, 0);
        while (c->n_paused)
            paused_remove(c, &c->paused[0]);
        return;
    }
    for (int i = 0; i < l->cnt; i++) {
        parked_drop(c, l->elems[i].topic, l->elems[i].partition);
        paused_t *p = paused_find(c, l->elems[i].topic, l->elems[i].partition);
        if (p) paused_remove(c, p);
    }
}

/* ---- Handing messages over --------------------------------------------------------- */

static int call_handler(ksock_kafka_consumer_t *c, rd_kafka_message_t *m)
{
    rd_kafka_timestamp_type_t tt;
    int64_t ts = rd_kafka_message_timestamp(m, &tt);
    rd_kafka_headers_t *h = NULL;
    size_t nh =
        rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR ? rd_kafka_header_cnt(h) : 0;
    ksock_kafka_message_t msg = {rd_kafka_topic_name(m->rkt),
                                 m->partition,
                                 m->offset,
                                 ts,
                                 (int)tt,
                                 m->key,
                                 m->key_len,
                                 m->payload,
                                 m->len,
                                 nh,
                                 m};
    int rc = c->cb(c, &msg, c->cb_data);
    if (rc == 0) {
        c->delivered++;
        /* At-least-once: the position moves only once the handler is done with it. */
        if (c->auto_store && c->has_group) rd_kafka_offset_store(m->rkt, m->partition, m->offset);
    }
    return rc;
}

/* Deliver `m` or park it. Takes ownership of m. */
static void hand_over(ksock_kafka_consumer_t *c, rd_kafka_message_t *m)
{
    const char *topic = rd_kafka_topic_name(m->rkt);
    if (paused_find(c, topic, m->partition)) {
        park(c, m);
        return;
    }
    /* A pause that fails means the partition is gone: the message goes with it. */
    if (call_handler(c, m) == KSOCK_KAFKA_PAUSE &&
        ksock_kafka_consumer_pause(c, topic, m->partition) == 0) {
        park(c, m); /* first in line on resume */
        return;
    }
    rd_kafka_message_destroy(m);
}

/* Hand over parked messages of partitions no longer paused, in order. Returns how many. */
static int drain_parked(ksock_kafka_consumer_t *c, int budget)
{
    int n = 0;
    parked_t **pp = &c->parked, *last = NULL;
    while (*pp && n < budget && c->started && !c->destroy_queued) {
        parked_t *p = *pp;
        const char *topic = rd_kafka_topic_name(p->m->rkt);
        if (paused_find(c, topic, p->m->partition)) {
            last = p;
            pp = &p->next;
            continue;
        }
        n++;
        /*
         * Out of the list while the handler runs: stop() or assign() from
         * inside it drops the parked messages (forget), this one included.
         */
        *pp = p->next;
        c->n_parked--;
        unsigned gen = c->gen;
        int rc = call_handler(c, p->m);
        if (c->gen != gen || !c->started || c->destroy_queued) {
            rd_kafka_message_destroy(p->m);
            free(p);
            return n; /* the list was reset under us: nothing of it is ours to walk */
        }
        if (rc == KSOCK_KAFKA_PAUSE && ksock_kafka_consumer_pause(c, topic, p->m->partition) == 0) {
            /* Back at its place, still first of its partition. */
            p->next = *pp;
            *pp = p;
            c->n_parked++;
            last = p;
            pp = &p->next;
            continue;
        }
        rd_kafka_message_destroy(p->m);
        free(p);
    }
    if (*pp == NULL) c->parked_tail = last;
    return n;
}

static bool parked_ready(ksock_kafka_consumer_t *c)
{
    for (parked_t *p = c->parked; p; p = p->next)
        if (!paused_find(c, rd_kafka_topic_name(p->m->rkt), p->m->partition)) return true;
    return false;
}

static void on_message_error(ksock_kafka_consumer_t *c, rd_kafka_message_t *m)
{
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) return;
    char reason[512];
    if (m->rkt)
        snprintf(reason, sizeof(reason), "%s [%d]: %s", rd_kafka_topic_name(m->rkt), m->partition,
                 rd_kafka_message_errstr(m));
    else
        snprintf(reason, sizeof(reason), "%s", rd_kafka_message_errstr(m));
    ksock__kreport(&c->head, c->rk, m->err, m->err == RD_KAFKA_RESP_ERR__FATAL, reason);
}

/* Is m from a partition still assigned? Only asked after the assignment changed. */
static bool still_assigned(const rd_kafka_topic_partition_list_t *now, rd_kafka_message_t *m)
{
    return now &&
           rd_kafka_topic_partition_list_find(now, rd_kafka_topic_name(m->rkt), m->partition);
}

static void dispatch(ksock_kafka_consumer_t *c, rd_kafka_message_t **v, size_t n, unsigned gen)
{
    rd_kafka_topic_partition_list_t *now = NULL;
    for (size_t i = 0; i < n; i++) {
        rd_kafka_message_t *m = v[i];
        if (m->err) {
            on_message_error(c, m);
            rd_kafka_message_destroy(m);
            continue;
        }
        if (c->gen != gen && now == NULL) rd_kafka_assignment(c->rk, &now);
        /* Leftovers of an assignment that changed under us are dropped, not delivered. */
        if (!c->started || c->destroy_queued || (c->gen != gen && !still_assigned(now, m))) {
            rd_kafka_message_destroy(m);
            continue;
        }
        hand_over(c, m);
    }
    if (now) rd_kafka_topic_partition_list_destroy(now);
}

/* ---- Assignment at a timestamp ------------------------------------------------------ */

static void *lookup_main(void *arg)
{
    lookup_t *l = arg;
    l->err = rd_kafka_offsets_for_times(l->c->rk, l->parts, l->timeout_ms);
    atomic_store(&l->done, 1);
    ksock__kwake_signal(&l->c->wake); /* the eventfd write is the thread-safe way back */
    return NULL;
}

static int apply_assign(ksock_kafka_consumer_t *c, rd_kafka_topic_partition_list_t *l);

static void lookup_finish(ksock_kafka_consumer_t *c, lookup_t *l, bool cancel)
{
    pthread_join(l->thread, NULL);
    int status = cancel ? KSOCK_E_CANCELED : ksock_kafka_err_map(l->err);
    for (int i = 0; status == 0 && i < l->parts->cnt; i++)
        status = ksock_kafka_err_map(l->parts->elems[i].err);
    if (status == 0) status = apply_assign(c, l->parts);
    size_t n;
    ksock_kafka_partition_t *v = from_rd(l->parts, &n);
    l->cb(c, status, v, n, l->data);
    free(v);
    rd_kafka_topic_partition_list_destroy(l->parts);
    free(l);
}

static void lookups_reap(ksock_kafka_consumer_t *c, bool cancel)
{
    lookup_t **pp = &c->lookups;
    while (*pp) {
        lookup_t *l = *pp;
        if (!cancel && !atomic_load(&l->done)) {
            pp = &l->next;
            continue;
        }
        *pp = l->next;
        lookup_finish(c, l, cancel);
    }
}

int ksock_kafka_consumer_assign_at_time(ksock_kafka_consumer_t *c,
                                        const ksock_kafka_partition_t *parts, size_t n,
                                        int64_t timestamp_ms, int timeout_ms,
                                        ksock_kafka_assign_cb cb, void *data)
{
    if (c->closing) return KSOCK_E_STATE;
    if (c->topics) return KSOCK_E_STATE; /* the group decides the assignment */
    if (cb == NULL || n == 0 || !valid_parts(parts, n)) return KSOCK_E_INVAL;
    lookup_t *l = calloc(1, sizeof(*l));
    if (l == NULL) return KSOCK_E_NOMEM;
    l->c = c;
    l->parts = to_rd(parts, n);
    for (int i = 0; i < l->parts->cnt; i++)
        l->parts->elems[i].offset = timestamp_ms;
    l->timeout_ms = timeout_ms;
    l->cb = cb;
    l->data = data;
    if (pthread_create(&l->thread, NULL, lookup_main, l) != 0) {
        rd_kafka_topic_partition_list_destroy(l->parts);
        free(l);
        return KSOCK_E_NOMEM;
    }
    l->next = c->lookups;
    c->lookups = l;
    return 0;
}

/* ---- The drain -------------------------------------------------------------------------- */

static void consumer_drain(void *arg)
{
    ksock_kafka_consumer_t *c = arg;
    c->in_cb++;
    lookups_reap(c, false);
    int budget = c->batch - drain_parked(c, c->batch);
    ssize_t n = 0;
    if (budget > 0 && !c->destroy_queued) {
        unsigned gen = c->gen;
        /* Serves rebalance/error/stats/commit callbacks too, on this thread. */
        n = rd_kafka_consume_batch_queue(c->q, 0, c->buf, (size_t)budget);
        if (n > 0) dispatch(c, c->buf, (size_t)n, gen);
    }
    c->in_cb--;
    if (c->destroy_queued && c->in_cb == 0) {
        really_destroy(c);
        return;
    }
    /* Cut at the batch size, or more is waiting: continue after other events ran. */
    if (n == budget || rd_kafka_queue_length(c->q) > 0 || (c->started && parked_ready(c)))
        ksock__kwake_again(&c->wake);
}

/* ---- librdkafka callbacks (served inside rd_kafka_consume_batch_queue) ------------------ */

static void notify_rebalance(ksock_kafka_consumer_t *c, ksock_kafka_rebalance_t what,
                             const rd_kafka_topic_partition_list_t *l)
{
    if (c->rebalance_cb == NULL) return;
    size_t n;
    ksock_kafka_partition_t *v = from_rd(l, &n);
    for (size_t i = 0; i < n; i++)
        v[i].offset = KSOCK_KAFKA_OFFSET_INVALID;
    c->rebalance_cb(c, what, v, n, c->rebalance_data);
    free(v);
}

static void report_error_obj(ksock_kafka_consumer_t *c, const char *what, rd_kafka_error_t *e)
{
    if (e == NULL) return;
    ksock_report_error(c->rt, ksock__kerror_code(e), KSOCK__KAFKA_COMPONENT, "%s: %s: %s",
                       rd_kafka_name(c->rk), what, rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    ksock_kafka_consumer_t *c = opaque;
    bool coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    c->gen++;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (coop)
            report_error_obj(c, "incremental assign", rd_kafka_incremental_assign(rk, parts));
        else if ((err = rd_kafka_assign(rk, parts)) != RD_KAFKA_RESP_ERR_NO_ERROR)
            ksock__kreport(&c->head, rk, err, false, "assign failed");
        notify_rebalance(c, KSOCK_KAFKA_ASSIGNED, parts);
        return;
    }
    if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
        ksock__kreport(&c->head, rk, err, false, "rebalance failed");
    /* Before letting go: the user's last chance to store or commit. */
    notify_rebalance(c, rd_kafka_assignment_lost(rk) ? KSOCK_KAFKA_LOST : KSOCK_KAFKA_REVOKED,
                     parts);
    forget(c, parts);
    if (coop)
        report_error_obj(c, "incremental unassign", rd_kafka_incremental_unassign(rk, parts));
    else
        rd_kafka_assign(rk, NULL);
}

static void on_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    ksock_kafka_consumer_t *c = opaque;
    char buf[512];
    bool fatal = err == RD_KAFKA_RESP_ERR__FATAL;
    if (fatal) {
        err = rd_kafka_fatal_error(rk, buf, sizeof(buf));
        reason = buf;
    }
    ksock__kreport(&c->head, rk, (rd_kafka_resp_err_t)err, fatal, reason);
}

static int on_stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    ksock_kafka_consumer_t *c = opaque;
    if (c->stats_cb) c->stats_cb(rd_kafka_name(rk), json, len, c->stats_data);
    return 0; /* librdkafka frees json */
}

/* Automatic commits: only failures are news. */
static void on_auto_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        ksock__kreport(&((ksock_kafka_consumer_t *)opaque)->head, rk, err, false,
                       "offset commit failed");
}

/* ---- Create ----------------------------------------------------------------------------- */

static int copy_topics(ksock_kafka_consumer_t *c, const char *const *topics)
{
    size_t n = 0;
    while (topics && topics[n])
        n++;
    if (n == 0) return 0;
    c->topics = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(c->topics, topics[i], RD_KAFKA_PARTITION_UA);
    return 0;
}

static void force_close(ksock__klink_t *l)
{
    ksock_kafka_consumer_t *c =
        (ksock_kafka_consumer_t *)((char *)l - offsetof(ksock_kafka_consumer_t, link));
    c->in_cb = 0;
    really_destroy(c);
}

static void conf_callbacks(rd_kafka_conf_t *rdc, ksock_kafka_consumer_t *c)
{
    rd_kafka_conf_set_opaque(rdc, c);
    rd_kafka_conf_set_log_cb(rdc, ksock__klog_cb);
    rd_kafka_conf_set_rebalance_cb(rdc, on_rebalance);
    rd_kafka_conf_set_error_cb(rdc, on_error_cb);
    rd_kafka_conf_set_stats_cb(rdc, on_stats_cb);
    rd_kafka_conf_set_offset_commit_cb(rdc, on_auto_commit);
    rd_kafka_conf_set_ssl_cert_verify_cb(rdc, ksock__kverify_cb);
}

/* Free a consumer that never got its librdkafka handle, or whose setup failed after. */
static void free_early(ksock_kafka_consumer_t *c)
{
    ksock__kwake_close(&c->wake);
    if (c->q) rd_kafka_queue_destroy(c->q);
    if (c->rk) rd_kafka_destroy(c->rk);
    if (c->topics) rd_kafka_topic_partition_list_destroy(c->topics);
    free(c->buf);
    ksock__khead_destroy(&c->head);
    free(c);
}

int ksock_kafka_consumer_new(ksock_runtime_t *rt, ksock_kafka_consumer_t **cp,
                             const ksock_kafka_conf_t *conf, const char *const *topics,
                             ksock_kafka_message_cb cb, void *data, char *errstr,
                             size_t errstr_size)
{
    *cp = NULL;
    if (cb == NULL) {
        ksock_errstr_set(errstr, errstr_size, "kafka: a consumer needs a message handler");
        return KSOCK_E_INVAL;
    }
    if (!ksock_runtime_on_loop_thread(rt)) {
        ksock_errstr_set(errstr, errstr_size, "kafka: consumers are created on the loop thread");
        return KSOCK_E_STATE;
    }
    ksock_kafka_consumer_t *c = calloc(1, sizeof(*c));
    if (c == NULL) return KSOCK_E_NOMEM;
    c->rt = rt;
    ksock__khead_init(&c->head, rt, "consumer");
    c->cb = cb;
    c->cb_data = data;
    c->commits.next = c->commits.prev = &c->commits;
    copy_topics(c, topics);
    rd_kafka_conf_t *rdc = NULL;
    ksock__kbuild_t info;
    int rc = ksock__kconf_build(rt, KSOCK__KCONSUMER, conf, &rdc, &info, errstr, errstr_size);
    if (rc != 0) {
        free_early(c);
        return rc;
    }
    c->batch = info.dispatch_batch;
    c->auto_store = info.auto_store;
    c->has_group = info.has_group;
    c->buf = calloc((size_t)c->batch, sizeof(*c->buf));
    conf_callbacks(rdc, c);
    char why[512];
    c->rk = c->buf ? rd_kafka_new(RD_KAFKA_CONSUMER, rdc, why, sizeof(why)) : NULL;
    if (c->rk == NULL) {
        ksock__knew_failed(rdc, "consumer", c->buf ? why : "out of memory", errstr, errstr_size);
        rd_kafka_conf_destroy(rdc);
        free_early(c);
        return c->buf ? KSOCK_E_CONFIG : KSOCK_E_NOMEM;
    }
    /* One queue for everything: errors, rebalances and messages arrive in order. */
    rd_kafka_poll_set_consumer(c->rk);
    c->q = rd_kafka_queue_get_consumer(c->rk);
    rc = ksock__kwake_init(&c->wake, rt, c->q, consumer_drain, c);
    if (rc != 0) {
        ksock_errstr_set(errstr, errstr_size, "kafka: cannot attach the consumer to the loop");
        free_early(c);
        return rc;
    }
    c->link.force_close = force_close;
    ksock__kctx_link(rt, &c->link);
    KSOCK_INFO(rt, KSOCK__KAFKA_COMPONENT, "consumer %s created", rd_kafka_name(c->rk));
    *cp = c;
    return 0;
}

/* ---- Start / stop / assign ------------------------------------------------------------ */

static int apply_assign(ksock_kafka_consumer_t *c, rd_kafka_topic_partition_list_t *l)
{
    if (!c->started) {
        /* Applied by start(): nothing fetched while stopped can then be lost. */
        if (c->pending_assign) rd_kafka_topic_partition_list_destroy(c->pending_assign);
        c->pending_assign = l ? rd_kafka_topic_partition_list_copy(l) : NULL;
        return 0;
    }
    c->gen++;
    forget(c, NULL);
    rd_kafka_resp_err_t err = rd_kafka_assign(c->rk, l && l->cnt ? l : NULL);
    return ksock_kafka_err_map(err);
}

int ksock_kafka_consumer_assign(ksock_kafka_consumer_t *c, const ksock_kafka_partition_t *parts,
                                size_t n)
{
    if (c->closing || c->topics) return KSOCK_E_STATE;
    if (!valid_parts(parts, n)) return KSOCK_E_INVAL;
    rd_kafka_topic_partition_list_t *l = to_rd(parts, n);
    int rc = apply_assign(c, l);
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

int ksock_kafka_consumer_start(ksock_kafka_consumer_t *c)
{
    if (c->closing) return KSOCK_E_STATE;
    if (c->started) return 0;
    if (c->topics && !c->has_group) {
        ksock_report_error(c->rt, KSOCK_E_CONFIG, KSOCK__KAFKA_COMPONENT,
                           "%s: subscribing to topics needs group.id", rd_kafka_name(c->rk));
        return KSOCK_E_CONFIG;
    }
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (c->topics) err = rd_kafka_subscribe(c->rk, c->topics);
    if (err) return ksock_kafka_err_map(err);
    c->started = true;
    if (c->pending_assign) {
        rd_kafka_topic_partition_list_t *l = c->pending_assign;
        c->pending_assign = NULL;
        int rc = apply_assign(c, l);
        rd_kafka_topic_partition_list_destroy(l);
        if (rc != 0) return rc;
    }
    ksock__kwake_again(&c->wake);
    return 0;
}

int ksock_kafka_consumer_stop(ksock_kafka_consumer_t *c)
{
    if (!c->started) return 0;
    c->started = false;
    c->gen++;
    forget(c, NULL);
    /* Group mode: the revocation arrives through the queue and is served by the drain. */
    rd_kafka_resp_err_t err =
        c->topics ? rd_kafka_unsubscribe(c->rk) : rd_kafka_assign(c->rk, NULL);
    return ksock_kafka_err_map(err);
}

/* ---- Pause / resume / store / commit ------------------------------------------------ */

static rd_kafka_resp_err_t pause_resume(ksock_kafka_consumer_t *c, const char *topic,
                                        int32_t partition, bool pause)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition);
    rd_kafka_resp_err_t err =
        pause ? rd_kafka_pause_partitions(c->rk, l) : rd_kafka_resume_partitions(c->rk, l);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) err = l->elems[0].err;
    rd_kafka_topic_partition_list_destroy(l);
    return err;
}

int ksock_kafka_consumer_pause(ksock_kafka_consumer_t *c, const char *topic, int32_t partition)
{
    if (topic == NULL) return KSOCK_E_INVAL;
    if (paused_find(c, topic, partition)) return 0;
    rd_kafka_resp_err_t err = pause_resume(c, topic, partition, true);
    if (err)
        return err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ? KSOCK_E_NOENT
                                                           : ksock_kafka_err_map(err);
    return paused_add(c, topic, partition);
}

int ksock_kafka_consumer_resume(ksock_kafka_consumer_t *c, const char *topic, int32_t partition)
{
    if (topic == NULL) return KSOCK_E_INVAL;
    paused_t *p = paused_find(c, topic, partition);
    if (p == NULL) return 0;
    rd_kafka_resp_err_t err = pause_resume(c, topic, partition, false);
    if (err)
        return err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ? KSOCK_E_NOENT
                                                           : ksock_kafka_err_map(err);
    paused_remove(c, p);
    /* Parked messages go first, from the loop: never inside this call. */
    if (c->n_parked) ksock__kwake_again(&c->wake);
    return 0;
}

int ksock_kafka_consumer_store(ksock_kafka_consumer_t *c, const char *topic, int32_t partition,
                               int64_t next_offset)
{
    if (topic == NULL || next_offset < 0) return KSOCK_E_INVAL;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = next_offset;
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(c->rk, l);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) err = l->elems[0].err;
    rd_kafka_topic_partition_list_destroy(l);
    return err == RD_KAFKA_RESP_ERR__STATE ? KSOCK_E_STATE : ksock_kafka_err_map(err);
}

static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    commit_t *r = opaque;
    r->prev->next = r->next;
    r->next->prev = r->prev;
    if (r->cb) {
        size_t n;
        ksock_kafka_partition_t *v = from_rd(offsets, &n);
        /* Nothing stored to commit is not a failure of the commit. */
        int status = err == RD_KAFKA_RESP_ERR__NO_OFFSET ? 0 : ksock_kafka_err_map(err);
        r->cb(r->c, status, v, n, r->data);
        free(v);
    }
    free(r);
}

int ksock_kafka_consumer_commit(ksock_kafka_consumer_t *c, const ksock_kafka_partition_t *offsets,
                                size_t n, ksock_kafka_commit_cb cb, void *data)
{
    if (c->closing) return KSOCK_E_STATE;
    if (!c->has_group) return KSOCK_E_CONFIG;
    if (!valid_parts(offsets, n)) return KSOCK_E_INVAL;
    commit_t *r = calloc(1, sizeof(*r));
    if (r == NULL) return KSOCK_E_NOMEM;
    r->c = c;
    r->cb = cb;
    r->data = data;
    rd_kafka_topic_partition_list_t *l = n ? to_rd(offsets, n) : NULL;
    /* The result comes back on our queue, so on_commit runs in the drain. */
    rd_kafka_resp_err_t err = rd_kafka_commit_queue(c->rk, l, c->q, on_commit, r);
    if (l) rd_kafka_topic_partition_list_destroy(l);
    if (err) {
        free(r);
        return ksock_kafka_err_map(err);
    }
    r->next = c->commits.next;
    r->prev = &c->commits;
    c->commits.next->prev = r;
    c->commits.next = r;
    return 0;
}

/* ---- Destroy ---------------------------------------------------------------------------- */

static void commits_cancel(ksock_kafka_consumer_t *c)
{
    while (c->commits.next != &c->commits) {
        commit_t *r = c->commits.next;
        r->prev->next = r->next;
        r->next->prev = r->prev;
        if (r->cb) r->cb(c, KSOCK_E_CANCELED, NULL, 0, r->data);
        free(r);
    }
}

static void really_destroy(ksock_kafka_consumer_t *c)
{
    c->closing = true;
    c->destroy_queued = false;
    c->in_cb++; /* destroy called again from a callback below is ignored */
    lookups_reap(c, true);
    forget(c, NULL);
    /* librdkafka must stop writing to the eventfd before it is closed. */
    ksock__kwake_close(&c->wake);
    /* Leaves the group; serves the revocation (our rebalance callback) on this thread. */
    rd_kafka_consumer_close(c->rk);
    rd_kafka_queue_destroy(c->q);
    rd_kafka_destroy(c->rk);
    commits_cancel(c);
    ksock__kctx_unlink(c->rt, &c->link);
    if (c->topics) rd_kafka_topic_partition_list_destroy(c->topics);
    if (c->pending_assign) rd_kafka_topic_partition_list_destroy(c->pending_assign);
    free(c->paused);
    free(c->buf);
    ksock__khead_destroy(&c->head);
    free(c);
}

void ksock_kafka_consumer_destroy(ksock_kafka_consumer_t *c)
{
    if (c == NULL || (c->closing && !c->destroy_queued && c->in_cb)) return;
    if (c->in_cb > 0) {
        c->closing = true;
        c->destroy_queued = true;
        ksock__kwake_again(&c->wake);
        return;
    }
    really_destroy(c);
}

/* ---- Messages and accessors ------------------------------------------------------------ */

int ksock_kafka_message_header(const ksock_kafka_message_t *m, size_t idx,
                               ksock_kafka_header_t *out)
{
    rd_kafka_headers_t *h = NULL;
    const void *val;
    size_t len;
    const char *name;
    if (m == NULL || m->internal_ == NULL ||
        rd_kafka_message_headers(m->internal_, &h) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_all(h, idx, &name, &val, &len) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return KSOCK_E_NOENT;
    *out = (ksock_kafka_header_t){name, val, len};
    return 0;
}

int ksock_kafka_message_header_get(const ksock_kafka_message_t *m, const char *name,
                                   ksock_kafka_header_t *out)
{
    rd_kafka_headers_t *h = NULL;
    const void *val;
    size_t len;
    if (m == NULL || m->internal_ == NULL || name == NULL ||
        rd_kafka_message_headers(m->internal_, &h) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(h, name, &val, &len) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return KSOCK_E_NOENT;
    *out = (ksock_kafka_header_t){name, val, len};
    return 0;
}

void ksock_kafka_consumer_stats(const ksock_kafka_consumer_t *c, ksock_kafka_consumer_stats_t *out)
{
    ksock_kafka_consumer_stats_t s = {
        .size = sizeof(s),
        .delivered = c->delivered,
        .wakeups = c->wake.wakeups,
        .continued = c->wake.continued,
        .parked = c->n_parked,
        .paused = c->n_paused,
        .queued = rd_kafka_queue_length(c->q),
    };
    size_t n = out->size && out->size < sizeof(s) ? out->size : sizeof(s);
    memcpy(out, &s, n);
    out->size = n;
}

void ksock_kafka_consumer_on_rebalance(ksock_kafka_consumer_t *c, ksock_kafka_rebalance_cb cb,
                                       void *data)
{
    c->rebalance_cb = cb;
    c->rebalance_data = data;
}

void ksock_kafka_consumer_on_stats(ksock_kafka_consumer_t *c, ksock_kafka_stats_cb cb, void *data)
{
    c->stats_cb = cb;
    c->stats_data = data;
}

void ksock_kafka_consumer_set_data(ksock_kafka_consumer_t *c, void *data)
{
    c->data = data;
}

void *ksock_kafka_consumer_get_data(const ksock_kafka_consumer_t *c)
{
    return c->data;
}

const char *ksock_kafka_consumer_name(const ksock_kafka_consumer_t *c)
{
    return rd_kafka_name(c->rk);
}

struct rd_kafka_s *ksock_kafka_consumer_handle(ksock_kafka_consumer_t *c)
{
    return c->rk;
}
