/*
 * The producer: librdkafka's event API on the main queue, drained on the
 * loop. Each record carries a small token (callback + user data) as its
 * librdkafka opaque; tokens in flight are kept on a list so that a producer
 * destroyed with records still pending fires every remaining callback
 * rather than leak it.
 */
#include "kafka_internal.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN_SLAB 1024 /* tokens allocated together */
#define DR_CHUNK   64

typedef struct token_s {
    struct token_s *prev, *next;
    ksock_kafka_delivery_cb cb;
    void *data;
} token_t;

/*
 * Tokens come from slabs and go back to a free list, never to malloc: a
 * malloc/free pair per record costs more than the rest of our send path.
 * The slabs grow to the peak number of records in flight, which
 * queue.buffering.max.messages bounds, and are freed with the producer.
 */
typedef struct slab_s {
    struct slab_s *next;
    token_t t[TOKEN_SLAB];
} slab_t;

typedef struct flush_s {
    struct flush_s *next;
    ksock_kafka_producer_t *p;
    ksock_kafka_flush_cb cb;
    void *data;
    struct event *timer;
} flush_t;

struct ksock_kafka_producer_s {
    ksock__khead_t head; /* first: librdkafka's opaque */
    ksock__klink_t link; /* in the runtime's list of open handles */
    ksock_runtime_t *rt;
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    ksock__kwake_t wake;
    int batch;
    token_t inflight; /* sentinel of a circular list */
    size_t pending;
    token_t *spare; /* free list */
    slab_t *slabs;
    flush_t *flushes;
    ksock_kafka_stats_cb stats_cb;
    void *stats_data;
    void *data;
    int in_cb;           /* > 0 while user callbacks may run */
    bool closing;        /* destroy started: no more sends */
    bool destroy_queued; /* destroy asked for from inside a callback */
    int destroy_timeout;
};

static void really_destroy(ksock_kafka_producer_t *p, int timeout_ms);

/* ---- Tokens ----------------------------------------------------------------- */

static token_t *token_get(ksock_kafka_producer_t *p)
{
    if (p->spare == NULL) {
        slab_t *s = malloc(sizeof(*s));
        if (s == NULL) return NULL;
        s->next = p->slabs;
        p->slabs = s;
        for (size_t i = 0; i < TOKEN_SLAB; i++) {
            s->t[i].next = p->spare;
            p->spare = &s->t[i];
        }
    }
    token_t *t = p->spare;
    p->spare = t->next;
    return t;
}

static void token_put(ksock_kafka_producer_t *p, token_t *t)
{
    t->next = p->spare;
    p->spare = t;
}

static void token_link(ksock_kafka_producer_t *p, token_t *t)
{
    t->prev = p->inflight.prev;
    t->next = &p->inflight;
    p->inflight.prev->next = t;
    p->inflight.prev = t;
    p->pending++;
}

static void token_unlink(ksock_kafka_producer_t *p, token_t *t)
{
    t->prev->next = t->next;
    t->next->prev = t->prev;
    p->pending--;
}

/* ---- Sending ----------------------------------------------------------------- */

static rd_kafka_headers_t *make_headers(const ksock_kafka_record_t *rec)
{
    if (rec->header_count == 0) return NULL;
    rd_kafka_headers_t *h = rd_kafka_headers_new(rec->header_count);
    for (size_t i = 0; i < rec->header_count; i++) {
        const ksock_kafka_header_t *x = &rec->headers[i];
        rd_kafka_header_add(h, x->name, -1, x->value, (ssize_t)x->value_len);
    }
    return h;
}

int ksock_kafka_send(ksock_kafka_producer_t *p, const ksock_kafka_record_t *rec,
                     ksock_kafka_delivery_cb cb)
{
    if (p->closing) return KSOCK_E_STATE;
    if (rec == NULL || rec->topic == NULL || (rec->header_count && rec->headers == NULL))
        return KSOCK_E_INVAL;
    for (size_t i = 0; i < rec->header_count; i++)
        if (rec->headers[i].name == NULL) return KSOCK_E_INVAL;
    token_t *t = token_get(p);
    if (t == NULL) return KSOCK_E_NOMEM;
    t->cb = cb;
    t->data = rec->data;
    rd_kafka_headers_t *hdrs = make_headers(rec);
    int32_t part =
        (rec->flags & KSOCK_KAFKA_RECORD_F_PARTITION) ? rec->partition : RD_KAFKA_PARTITION_UA;
    /* F_COPY: the caller's buffers are borrowed for this call only. */
    rd_kafka_resp_err_t err =
        rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(rec->topic), RD_KAFKA_V_PARTITION(part),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                          RD_KAFKA_V_KEY((void *)rec->key, rec->key ? rec->key_len : 0),
                          RD_KAFKA_V_VALUE((void *)rec->value, rec->value ? rec->value_len : 0),
                          RD_KAFKA_V_TIMESTAMP(rec->timestamp_ms), RD_KAFKA_V_HEADERS(hdrs),
                          RD_KAFKA_V_OPAQUE(t), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* On failure the headers stay ours. */
        if (hdrs) rd_kafka_headers_destroy(hdrs);
        token_put(p, t);
        return ksock_kafka_err_map(err);
    }
    token_link(p, t);
    return 0;
}

int ksock_kafka_send_batch(ksock_kafka_producer_t *p, const ksock_kafka_record_t *recs, size_t n,
                           ksock_kafka_delivery_cb cb, size_t *queued)
{
    size_t i = 0;
    int rc = 0;
    for (; i < n; i++) {
        rc = ksock_kafka_send(p, &recs[i], cb);
        if (rc != 0) break;
    }
    if (queued) *queued = i;
    return rc;
}

size_t ksock_kafka_producer_pending(const ksock_kafka_producer_t *p)
{
    return p->pending;
}

/* ---- Events from librdkafka ----------------------------------------------------- */

static void deliver(ksock_kafka_producer_t *p, const rd_kafka_message_t *m)
{
    token_t *t = m->_private;
    if (t == NULL) return;
    token_unlink(p, t);
    if (t->cb) {
        int err = ksock_kafka_err_map(m->err);
        ksock_kafka_delivery_t d = {
            .err = err,
            .kafka_err = m->err,
            .errstr = err ? rd_kafka_err2str(m->err) : NULL,
            .topic = rd_kafka_topic_name(m->rkt),
            .partition = m->partition,
            .offset = err ? -1 : m->offset,
            .timestamp_ms = rd_kafka_message_timestamp(m, NULL),
            .key = m->key,
            .key_len = m->key_len,
            .value = m->payload,
            .value_len = m->len,
            .persisted = (ksock_kafka_persisted_t)rd_kafka_message_status(m),
        };
        t->cb(p, &d, t->data);
    }
    token_put(p, t);
}

static void on_dr(ksock_kafka_producer_t *p, rd_kafka_event_t *ev)
{
    const rd_kafka_message_t *msgs[DR_CHUNK];
    size_t n;
    /* The whole event, even if a callback asked for destroy: these outcomes are known. */
    while ((n = rd_kafka_event_message_array(ev, msgs, DR_CHUNK)) > 0)
        for (size_t i = 0; i < n; i++)
            deliver(p, msgs[i]);
}

static void on_error(ksock_kafka_producer_t *p, rd_kafka_event_t *ev)
{
    rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
    bool fatal = rd_kafka_event_error_is_fatal(ev);
    char reason[512];
    if (fatal) {
        /* The event only says "fatal"; the cause is kept on the handle. */
        err = rd_kafka_fatal_error(p->rk, reason, sizeof(reason));
    } else {
        snprintf(reason, sizeof(reason), "%s", rd_kafka_event_error_string(ev));
    }
    ksock__kreport(&p->head, p->rk, err, fatal, reason);
}

static void on_event(ksock_kafka_producer_t *p, rd_kafka_event_t *ev)
{
    switch (rd_kafka_event_type(ev)) {
    case RD_KAFKA_EVENT_DR:
        on_dr(p, ev);
        break;
    case RD_KAFKA_EVENT_ERROR:
        on_error(p, ev);
        break;
    case RD_KAFKA_EVENT_STATS:
        if (p->stats_cb) {
            const char *json = rd_kafka_event_stats(ev);
            p->stats_cb(rd_kafka_name(p->rk), json, strlen(json), p->stats_data);
        }
        break;
    default:
        break;
    }
}

/* Serve up to `max` events; the first poll may wait `wait_ms`. Returns how many. */
static int serve(ksock_kafka_producer_t *p, int max, int wait_ms)
{
    int n = 0;
    while (n < max) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(p->q, n == 0 ? wait_ms : 0);
        if (ev == NULL) break;
        on_event(p, ev);
        rd_kafka_event_destroy(ev);
        n++;
    }
    return n;
}

/* ---- Flush ------------------------------------------------------------------------ */

static void flush_free(flush_t *f)
{
    if (f->timer) event_free(f->timer);
    free(f);
}

static void flush_unlink(ksock_kafka_producer_t *p, flush_t *f)
{
    for (flush_t **pp = &p->flushes; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            return;
        }
}

/* Fire every waiting flush with `status`. A callback may add new waiters: those stay. */
static void flushes_fire(ksock_kafka_producer_t *p, int status)
{
    flush_t *list = p->flushes;
    p->flushes = NULL;
    while (list) {
        flush_t *f = list;
        list = f->next;
        f->cb(p, status, f->data);
        flush_free(f);
    }
}

static void on_flush_timeout(evutil_socket_t fd, short what, void *arg)
{
    flush_t *f = arg;
    ksock_kafka_producer_t *p = f->p;
    flush_unlink(p, f);
    p->in_cb++;
    f->cb(p, KSOCK_E_TIMEDOUT, f->data);
    p->in_cb--;
    flush_free(f);
    if (p->destroy_queued && p->in_cb == 0) really_destroy(p, p->destroy_timeout);
}

int ksock_kafka_producer_flush(ksock_kafka_producer_t *p, int timeout_ms, ksock_kafka_flush_cb cb,
                               void *data)
{
    if (p->closing || cb == NULL) return p->closing ? KSOCK_E_STATE : KSOCK_E_INVAL;
    flush_t *f = calloc(1, sizeof(*f));
    if (f == NULL) return KSOCK_E_NOMEM;
    f->p = p;
    f->cb = cb;
    f->data = data;
    f->timer = evtimer_new(ksock_runtime_event_base(p->rt), on_flush_timeout, f);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    if (f->timer == NULL || (timeout_ms >= 0 && evtimer_add(f->timer, &tv) != 0)) {
        flush_free(f);
        return KSOCK_E_NOMEM;
    }
    f->next = p->flushes;
    p->flushes = f;
    /* The drain fires it, also when nothing is pending, but never from inside this call. */
    ksock__kwake_again(&p->wake);
    return 0;
}

int ksock_kafka_producer_flush_sync(ksock_kafka_producer_t *p, int timeout_ms)
{
    uint64_t deadline = ksock_now_ns() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000u;
    p->in_cb++;
    while (p->pending > 0) {
        uint64_t now = ksock_now_ns();
        if (now >= deadline) break;
        int left = (int)((deadline - now) / 1000000u);
        serve(p, p->batch, left < 100 ? (left > 0 ? left : 1) : 100);
    }
    p->in_cb--;
    /* Events served here wrote to the eventfd: the loop's next drain is a cheap no-op. */
    return p->pending ? KSOCK_E_TIMEDOUT : 0;
}

/* ---- Drain on the loop ------------------------------------------------------------ */

static void producer_drain(void *arg)
{
    ksock_kafka_producer_t *p = arg;
    p->in_cb++;
    int n = serve(p, p->batch, 0);
    if (p->pending == 0 && p->flushes && !p->destroy_queued) flushes_fire(p, 0);
    p->in_cb--;
    if (p->destroy_queued && p->in_cb == 0) {
        really_destroy(p, p->destroy_timeout);
        return;
    }
    /* Cut at the batch size: come back after the loop has served others. */
    if (n == p->batch || rd_kafka_queue_length(p->q) > 0) ksock__kwake_again(&p->wake);
}

/* ---- Create / destroy ------------------------------------------------------------- */

static void force_close(ksock__klink_t *l)
{
    ksock_kafka_producer_t *p =
        (ksock_kafka_producer_t *)((char *)l - offsetof(ksock_kafka_producer_t, link));
    p->in_cb = 0;
    really_destroy(p, 0);
}

int ksock_kafka_producer_new(ksock_runtime_t *rt, ksock_kafka_producer_t **pp,
                             const ksock_kafka_conf_t *conf, char *errstr, size_t errstr_size)
{
    *pp = NULL;
    if (!ksock_runtime_on_loop_thread(rt)) {
        ksock_errstr_set(errstr, errstr_size, "kafka: producers are created on the loop thread");
        return KSOCK_E_STATE;
    }
    ksock_kafka_producer_t *p = calloc(1, sizeof(*p));
    if (p == NULL) return KSOCK_E_NOMEM;
    p->rt = rt;
    ksock__khead_init(&p->head, rt, "producer");
    p->inflight.next = p->inflight.prev = &p->inflight;
    rd_kafka_conf_t *rdc = NULL;
    ksock__kbuild_t info;
    int rc = ksock__kconf_build(rt, KSOCK__KPRODUCER, conf, &rdc, &info, errstr, errstr_size);
    if (rc != 0) {
        ksock__khead_destroy(&p->head);
        free(p);
        return rc;
    }
    p->batch = info.dispatch_batch;
    rd_kafka_conf_set_opaque(rdc, p);
    rd_kafka_conf_set_log_cb(rdc, ksock__klog_cb);
    rd_kafka_conf_set_ssl_cert_verify_cb(rdc, ksock__kverify_cb);
    rd_kafka_conf_set_events(rdc, RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_ERROR | RD_KAFKA_EVENT_STATS);
    char why[512];
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, rdc, why, sizeof(why));
    if (p->rk == NULL) {
        ksock__knew_failed(rdc, "producer", why, errstr, errstr_size);
        rd_kafka_conf_destroy(rdc); /* not taken on failure */
        ksock__khead_destroy(&p->head);
        free(p);
        return KSOCK_E_CONFIG;
    }
    p->q = rd_kafka_queue_get_main(p->rk);
    rc = ksock__kwake_init(&p->wake, rt, p->q, producer_drain, p);
    if (rc != 0) {
        ksock_errstr_set(errstr, errstr_size, "kafka: cannot attach the producer to the loop");
        rd_kafka_queue_destroy(p->q);
        rd_kafka_destroy(p->rk);
        ksock__khead_destroy(&p->head);
        free(p);
        return rc;
    }
    p->link.force_close = force_close;
    ksock__kctx_link(rt, &p->link);
    KSOCK_INFO(rt, KSOCK__KAFKA_COMPONENT, "producer %s created", rd_kafka_name(p->rk));
    *pp = p;
    return 0;
}

/* Callbacks for records librdkafka never reported back (should not happen; never leak). */
static void cancel_leftovers(ksock_kafka_producer_t *p)
{
    while (p->inflight.next != &p->inflight) {
        token_t *t = p->inflight.next;
        token_unlink(p, t);
        if (t->cb) {
            ksock_kafka_delivery_t d = {
                .err = KSOCK_E_CANCELED,
                .kafka_err = RD_KAFKA_RESP_ERR__DESTROY,
                .errstr = "producer destroyed before the record's outcome was known",
                .partition = -1,
                .offset = -1,
                .persisted = KSOCK_KAFKA_POSSIBLY_PERSISTED,
            };
            t->cb(p, &d, t->data);
        }
        token_put(p, t);
    }
}

static void really_destroy(ksock_kafka_producer_t *p, int timeout_ms)
{
    p->closing = true;
    p->destroy_queued = false;
    p->in_cb++; /* a callback calling destroy again is ignored from here on */
    if (ksock_kafka_producer_flush_sync(p, timeout_ms) != 0) {
        KSOCK_WARN(p->rt, KSOCK__KAFKA_COMPONENT,
                   "producer %s: %zu record(s) still pending after %d ms; purging them",
                   rd_kafka_name(p->rk), p->pending, timeout_ms);
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        /* Purged records come back as delivery reports with a purge error. */
        ksock_kafka_producer_flush_sync(p, 2000);
    }
    cancel_leftovers(p);
    flushes_fire(p, KSOCK_E_CANCELED);
    ksock__kwake_close(&p->wake);
    rd_kafka_queue_destroy(p->q);
    rd_kafka_destroy(p->rk);
    ksock__kctx_unlink(p->rt, &p->link);
    while (p->slabs) {
        slab_t *s = p->slabs;
        p->slabs = s->next;
        free(s);
    }
    ksock__khead_destroy(&p->head);
    free(p);
}

void ksock_kafka_producer_destroy(ksock_kafka_producer_t *p, int timeout_ms)
{
    if (p == NULL || (p->closing && !p->destroy_queued && p->in_cb)) return;
    if (p->in_cb > 0) {
        /* Inside one of our callbacks: the drain finishes it once the callback returned. */
        p->closing = true;
        p->destroy_queued = true;
        p->destroy_timeout = timeout_ms;
        ksock__kwake_again(&p->wake);
        return;
    }
    really_destroy(p, timeout_ms);
}

/* ---- Accessors ------------------------------------------------------------------------ */

void ksock_kafka_producer_on_stats(ksock_kafka_producer_t *p, ksock_kafka_stats_cb cb, void *data)
{
    p->stats_cb = cb;
    p->stats_data = data;
}

void ksock_kafka_producer_set_data(ksock_kafka_producer_t *p, void *data)
{
    p->data = data;
}

void *ksock_kafka_producer_get_data(const ksock_kafka_producer_t *p)
{
    return p->data;
}

const char *ksock_kafka_producer_name(const ksock_kafka_producer_t *p)
{
    return rd_kafka_name(p->rk);
}

struct rd_kafka_s *ksock_kafka_producer_handle(ksock_kafka_producer_t *p)
{
    return p->rk;
}
