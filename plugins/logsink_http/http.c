/*
 * logsink "http": records POSTed in batches of JSON lines (ndjson) to a
 * collector, with libevent's HTTP client on the core loop.
 *
 * Data path. write() (any thread, under the core's logger lock) formats the
 * record as one JSON line and appends it to a bounded queue under this
 * sink's own mutex; it never touches the network or the event base (the
 * core's base is built without libevent locking). The loop sends: a
 * repeating timer every flush_interval, and a "kick" as soon as a full
 * batch is waiting. write() posts the kick to the loop only on the
 * transition "queue now holds a full batch" and only if no kick is pending,
 * so a busy logger causes one post per batch, not one per record.
 *
 * Delivery. One request in flight at a time. The batch being sent (or
 * retried) is taken out of the queue but still counts against queue_max and
 * queue_bytes, so memory stays bounded. A 2xx answer delivers the batch. A
 * connection error, a timeout, a 5xx, 408 or 429 retries the same batch
 * after a capped exponential backoff (retry_initial doubling up to
 * retry_max, with jitter in [d/2, d] so a fleet does not retry in step);
 * other 4xx answers mean the collector will never take this batch, so it is
 * dropped and counted rather than blocking the queue forever.
 *
 * Drop policy at the bound: the OLDEST queued record goes. During an
 * outage the batch in flight (the first records of the outage, which
 * usually explain it) is kept and retried, and the queue keeps the most
 * recent records, which describe the present when the collector returns.
 * What is lost is the middle, and the dropped counter says how much. A
 * record that does not fit even in an empty queue is refused (write()
 * returns an error, and the core counts it).
 *
 * Shutdown. destroy() spends at most shutdown_timeout sending what is left
 * on a private event_base (it may run while the core loop is running, so it
 * cannot re-enter that loop), then drops and counts the rest. A batch that
 * was in flight is sent again: the collector may see it twice
 * (at-least-once).
 *
 * Only http:// is supported; https:// is refused at start-up (libevent's
 * client does TLS only through OpenSSL bufferevents, and this project uses
 * GnuTLS: a local forwarder such as Fluent Bit or Vector can add TLS).
 *
 * One unit (~920 lines): the bounded queue, batching, the libevent HTTP
 * client and the backoff are one delivery loop for one sink instance.
 */
#include <ksock/logsink.h>
#include <ksock/runtime.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HTTP_SUMMARY_INTERVAL_NS (60ull * 1000000000ull)
#define HTTP_MAX_RESPONSE_BODY   (64 * 1024)
#define HTTP_MAX_HEADERS         64

typedef struct http_opts_s {
    char *url;
    int64_t queue_max;
    int64_t queue_bytes;
    int64_t batch_max;
    int64_t batch_bytes;
    int64_t flush_interval;
    int64_t timeout;
    int64_t retry_initial;
    int64_t retry_max;
    int64_t shutdown_timeout;
    const ksock_cfg_t *headers;
} http_opts_t;

static const ksock_option_t http_options[] = {
    KSOCK_OPTION("url", KSOCK_OPT_STRING, KSOCK_OPT_REQUIRED, NULL, http_opts_t, url,
                 "Collector endpoint, http://host[:port]/path (https is not supported)."),
    KSOCK_OPTION_RANGE("queue_max", KSOCK_OPT_INT, 0, "10000", http_opts_t, queue_max, 1, 1000000,
                       "Most records held (queued plus in flight); the oldest "
                       "queued record is dropped beyond it."),
    KSOCK_OPTION_RANGE("queue_bytes", KSOCK_OPT_SIZE, 0, "16MiB", http_opts_t, queue_bytes, 1024,
                       (int64_t)1 << 32, "Most bytes of formatted records held; same drop policy."),
    KSOCK_OPTION_RANGE("batch_max", KSOCK_OPT_INT, 0, "500", http_opts_t, batch_max, 1, 100000,
                       "Most records in one POST."),
    KSOCK_OPTION_RANGE("batch_bytes", KSOCK_OPT_SIZE, 0, "1MiB", http_opts_t, batch_bytes, 256,
                       (int64_t)1 << 30,
                       "Most bytes in one POST body (a single larger record goes alone)."),
    KSOCK_OPTION_RANGE("flush_interval", KSOCK_OPT_DURATION, 0, "1s", http_opts_t, flush_interval,
                       1, 3600 * 1000, "Longest time a record waits for its batch to fill."),
    KSOCK_OPTION_RANGE("timeout", KSOCK_OPT_DURATION, 0, "5s", http_opts_t, timeout, 1, 3600 * 1000,
                       "Connect timeout, and longest silence while sending or waiting for "
                       "the answer."),
    KSOCK_OPTION_RANGE("retry_initial", KSOCK_OPT_DURATION, 0, "500ms", http_opts_t, retry_initial,
                       1, 3600 * 1000, "First delay before a failed POST is retried."),
    KSOCK_OPTION_RANGE("retry_max", KSOCK_OPT_DURATION, 0, "30s", http_opts_t, retry_max, 1,
                       24 * 3600 * 1000, "Cap of the doubling retry delay."),
    KSOCK_OPTION_RANGE("shutdown_timeout", KSOCK_OPT_DURATION, 0, "2s", http_opts_t,
                       shutdown_timeout, 0, 60 * 1000,
                       "Time spent delivering what is left when the sink is closed; 0 drops it."),
    KSOCK_OPTION("headers", KSOCK_OPT_OBJECT, 0, NULL, http_opts_t, headers,
                 "Extra request headers, an object of name: string value (e.g. Authorization)."),
    KSOCK_OPTION_END,
};

/* One formatted record: a JSON line with its '\n'. */
typedef struct http_item_s {
    size_t len;
    char data[];
} http_item_t;

typedef struct http_header_s {
    char *name;
    char *value;
} http_header_t;

typedef struct http_sink_s http_sink_t;

/*
 * What a post to the loop points at. The instance may be destroyed (on
 * reconfiguration) while a post is still queued, so the post holds a
 * reference to this small struct instead; destroy() clears `sink`.
 * Both the post callback and destroy() run on the loop thread.
 */
typedef struct http_waker_s {
    _Atomic int refs;
    http_sink_t *sink;
} http_waker_t;

struct http_sink_s {
    ksock_runtime_t *rt;
    const char *component; /* borrowed from the ctx until destroy returns */
    struct event_base *base;

    /* From the options. */
    char *url;      /* for messages */
    char *host;     /* to connect to (no IPv6 brackets) */
    char *host_hdr; /* Host: value */
    char *path;     /* request target: path and query */
    int port;
    http_header_t *headers;
    size_t nheaders;
    bool custom_content_type;
    size_t queue_max, queue_bytes_max, batch_max, batch_bytes;
    uint64_t timeout_ms, retry_initial_ms, retry_max_ms, shutdown_ms;

    /* write() only (the logger lock serializes it). */
    ksock_buf_t scratch;

    /* Shared between write() and the loop. */
    pthread_mutex_t lock;
    http_item_t **ring; /* queue_max slots */
    size_t head, count, bytes;
    size_t inflight_n, inflight_bytes; /* the batch out of the ring, counted in the bound */
    bool kick_pending;
    uint64_t written, dropped, errors;
    uint64_t queue_drops_unreported; /* queue-full drops since the last report */

    /* Loop thread only. */
    http_waker_t *waker;
    ksock_timer_t *flush_timer, *kick_timer, *retry_timer;
    struct evdns_base *dns;
    struct evhttp_connection *conn;
    bool conn_stale;           /* free and recreate before the next request */
    bool req_active;           /* a request is in flight */
    bool closing;              /* destroy() has begun */
    http_item_t **batch_items; /* scratch for building a batch, batch_max slots */
    ksock_buf_t body;          /* the current batch, kept until delivered or dropped */
    size_t batch_n;
    int last_error;   /* enum evhttp_request_error of the last failure, or -1 */
    unsigned attempt; /* consecutive failures of the current batch */
    uint64_t rng;

    /* Failure reporting, loop thread only. */
    bool failing, fail_reported;
    uint64_t run_failures, run_dropped, fail_last_report_ns, drop_last_report_ns;
    char fail_reason[160];
};

/* ---- Queue (under hs->lock) --------------------------------------------- */

static http_item_t *queue_pop(http_sink_t *hs)
{
    http_item_t *it = hs->ring[hs->head];
    hs->ring[hs->head] = NULL;
    hs->head = (hs->head + 1) % hs->queue_max;
    hs->count--;
    hs->bytes -= it->len;
    return it;
}

static bool queue_has_full_batch(const http_sink_t *hs)
{
    return hs->count >= hs->batch_max || hs->bytes >= hs->batch_bytes;
}

/* ---- Waking the loop ----------------------------------------------------- */

static void waker_unref(http_waker_t *w)
{
    if (atomic_fetch_sub(&w->refs, 1) == 1) free(w);
}

static void http_try_send(http_sink_t *hs);

static void http_kick_post_cb(ksock_runtime_t *rt, void *arg)
{
    http_waker_t *w = arg;
    http_sink_t *hs = w->sink;
    if (hs != NULL && !hs->closing) {
        pthread_mutex_lock(&hs->lock);
        hs->kick_pending = false;
        pthread_mutex_unlock(&hs->lock);
        http_try_send(hs);
    }
    waker_unref(w);
}

/* ---- write() -------------------------------------------------------------- */

static int http_write(void *inst, const ksock_log_record_t *rec)
{
    http_sink_t *hs = inst;
    /* Collectors parse JSON lines: the sink's format is always json (see docs). */
    hs->scratch.len = 0;
    if (ksock_log_record_format(rec, KSOCK_LOG_FORMAT_JSON, &hs->scratch) != 0)
        return KSOCK_E_NOMEM;
    size_t len = hs->scratch.len;
    if (len > hs->queue_bytes_max) return KSOCK_E_TOOBIG; /* the core counts it */
    http_item_t *it = malloc(sizeof(*it) + len);
    if (it == NULL) return KSOCK_E_NOMEM;
    it->len = len;
    memcpy(it->data, hs->scratch.data, len);

    bool post = false;

    pthread_mutex_lock(&hs->lock);
    bool was_full = queue_has_full_batch(hs);
    /* Drop the oldest queued records until the new one fits. */
    while (hs->count > 0 && (hs->count + hs->inflight_n + 1 > hs->queue_max ||
                             hs->bytes + hs->inflight_bytes + len > hs->queue_bytes_max)) {
        free(queue_pop(hs));
        hs->dropped++;
        hs->queue_drops_unreported++;
    }
    if (hs->count + hs->inflight_n + 1 > hs->queue_max ||
        hs->bytes + hs->inflight_bytes + len > hs->queue_bytes_max) {
        /* The batch in flight fills the bound on its own: refuse this one. */
        pthread_mutex_unlock(&hs->lock);
        free(it);
        return KSOCK_E_QUEUE_FULL;
    }
    hs->ring[(hs->head + hs->count) % hs->queue_max] = it;
    hs->count++;
    hs->bytes += len;
    if (!was_full && queue_has_full_batch(hs) && !hs->kick_pending) {
        hs->kick_pending = true;
        post = true;
        atomic_fetch_add(&hs->waker->refs, 1);
    }
    pthread_mutex_unlock(&hs->lock);

    if (post && ksock_runtime_post(hs->rt, http_kick_post_cb, hs->waker) != 0) {
        /* Shutting down or out of memory: the flush timer still sends it. */
        waker_unref(hs->waker);
        pthread_mutex_lock(&hs->lock);
        hs->kick_pending = false;
        pthread_mutex_unlock(&hs->lock);
    }
    return 0;
}

/* ---- Requests --------------------------------------------------------------- */

/* Move up to one batch from the queue into hs->body. Loop thread. */
static void http_take_batch(http_sink_t *hs)
{
    size_t n = 0, bytes = 0;
    pthread_mutex_lock(&hs->lock);
    while (hs->count > 0 && n < hs->batch_max) {
        size_t next = hs->ring[hs->head]->len;
        if (n > 0 && bytes + next > hs->batch_bytes) break;
        hs->batch_items[n++] = queue_pop(hs);
        bytes += next;
    }
    hs->inflight_n = n;
    hs->inflight_bytes = bytes;
    pthread_mutex_unlock(&hs->lock);

    /* Copy outside the lock so loggers do not wait for a megabyte memcpy. */
    hs->body.len = 0;
    if (ksock_buf_reserve(&hs->body, bytes) != 0) {
        /* Cannot build the body: these records are lost. */
        pthread_mutex_lock(&hs->lock);
        hs->dropped += n;
        hs->inflight_n = hs->inflight_bytes = 0;
        pthread_mutex_unlock(&hs->lock);
        for (size_t i = 0; i < n; i++)
            free(hs->batch_items[i]);
        hs->batch_n = 0;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        ksock_buf_append(&hs->body, hs->batch_items[i]->data, hs->batch_items[i]->len);
        free(hs->batch_items[i]);
    }
    hs->batch_n = n;
}

/* The batch is finished with: delivered (sent) or given up (dropped). */
static void http_batch_done(http_sink_t *hs, bool delivered)
{
    pthread_mutex_lock(&hs->lock);
    if (delivered)
        hs->written += hs->batch_n;
    else
        hs->dropped += hs->batch_n;
    hs->inflight_n = hs->inflight_bytes = 0;
    pthread_mutex_unlock(&hs->lock);
    hs->batch_n = 0;
    hs->body.len = 0;
}

static struct evhttp_request *http_request_new(http_sink_t *hs,
                                               void (*cb)(struct evhttp_request *, void *),
                                               void (*error_cb)(enum evhttp_request_error, void *),
                                               void *arg)
{
    struct evhttp_request *req = evhttp_request_new(cb, arg);
    if (req == NULL) return NULL;
    evhttp_request_set_error_cb(req, error_cb);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    bool has_host = false;
    for (size_t i = 0; i < hs->nheaders; i++) {
        evhttp_add_header(h, hs->headers[i].name, hs->headers[i].value);
        has_host |= strcasecmp(hs->headers[i].name, "Host") == 0;
    }
    if (!has_host) evhttp_add_header(h, "Host", hs->host_hdr);
    if (!hs->custom_content_type) evhttp_add_header(h, "Content-Type", "application/x-ndjson");
    evhttp_add_header(h, "User-Agent", "ksock-logsink-http/" KSOCK_VERSION_STRING);
    if (evbuffer_add(evhttp_request_get_output_buffer(req), hs->body.data, hs->body.len) != 0) {
        evhttp_request_free(req);
        return NULL;
    }
    return req;
}

static struct evhttp_connection *http_conn_new(http_sink_t *hs, struct event_base *base,
                                               struct evdns_base *dns, uint64_t timeout_ms)
{
    struct evhttp_connection *c =
        evhttp_connection_base_new(base, dns, hs->host, (unsigned short)hs->port);
    if (c == NULL) return NULL;
    struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
    evhttp_connection_set_timeout_tv(c, &tv);
    evhttp_connection_set_retries(c, 0); /* we retry, with backoff, ourselves */
    evhttp_connection_set_max_body_size(c, HTTP_MAX_RESPONSE_BODY);
    return c;
}

static const char *http_error_name(int e)
{
    switch (e) {
    case EVREQ_HTTP_TIMEOUT:
        return "timed out";
    case EVREQ_HTTP_EOF:
        return "connection failed or closed";
    case EVREQ_HTTP_INVALID_HEADER:
        return "invalid response header";
    case EVREQ_HTTP_BUFFER_ERROR:
        return "connection error";
    case EVREQ_HTTP_REQUEST_CANCEL:
        return "canceled";
    case EVREQ_HTTP_DATA_TOO_LONG:
        return "response too long";
    default:
        return "connection failed";
    }
}

static int http_error_code(int e)
{
    return e == EVREQ_HTTP_TIMEOUT ? KSOCK_E_TIMEDOUT
           : e == EVREQ_HTTP_EOF   ? KSOCK_E_CLOSED
                                   : KSOCK_E_IO;
}

/* ---- Reporting (loop thread, never under any lock) ------------------------- */

static void http_report(http_sink_t *hs)
{
    uint64_t now = ksock_now_ns();
    pthread_mutex_lock(&hs->lock);
    uint64_t qdrops = hs->queue_drops_unreported;
    bool report_drops = qdrops > 0 && (hs->drop_last_report_ns == 0 ||
                                       now - hs->drop_last_report_ns >= HTTP_SUMMARY_INTERVAL_NS);
    if (report_drops) hs->queue_drops_unreported = 0;
    pthread_mutex_unlock(&hs->lock);

    if (report_drops) {
        hs->drop_last_report_ns = now;
        ksock_report_error(hs->rt, KSOCK_E_QUEUE_FULL, hs->component,
                           "queue full (queue_max=%zu, queue_bytes=%zu): dropped the %llu oldest "
                           "records not yet delivered to %s",
                           hs->queue_max, hs->queue_bytes_max, (unsigned long long)qdrops, hs->url);
    }
    if (hs->failing && !hs->fail_reported) {
        hs->fail_reported = true;
        hs->fail_last_report_ns = now;
        ksock_report_error(
            hs->rt, hs->last_error >= 0 ? http_error_code(hs->last_error) : KSOCK_E_PROTO,
            hs->component, "POST %s: %s; retrying with backoff", hs->url, hs->fail_reason);
        hs->run_failures = 0;
    } else if (hs->failing && hs->run_failures > 0 &&
               now - hs->fail_last_report_ns >= HTTP_SUMMARY_INTERVAL_NS) {
        hs->fail_last_report_ns = now;
        ksock_report_error(hs->rt,
                           hs->last_error >= 0 ? http_error_code(hs->last_error) : KSOCK_E_PROTO,
                           hs->component, "POST %s still failing: %s (%llu more attempts)", hs->url,
                           hs->fail_reason, (unsigned long long)hs->run_failures);
        hs->run_failures = 0;
    }
}

/* Leave the failing state after a delivery; say so if the failure was reported. */
static void http_recovered(http_sink_t *hs)
{
    bool was_reported = hs->failing && hs->fail_reported;
    hs->failing = hs->fail_reported = false;
    hs->attempt = 0;
    hs->run_failures = 0;
    if (was_reported) {
        ksock_kv_t kv[] = {KSOCK_KV_STR("url", hs->url)};
        ksock_log(hs->rt, KSOCK_LOG_WARN, hs->component, kv, 1,
                  "delivering to the collector again");
    }
}

/* ---- The request cycle (loop thread) ---------------------------------------- */

static uint64_t http_backoff_ms(http_sink_t *hs)
{
    uint64_t d = hs->retry_initial_ms;
    for (unsigned i = 1; i < hs->attempt && d < hs->retry_max_ms; i++)
        d *= 2;
    if (d > hs->retry_max_ms) d = hs->retry_max_ms;
    /* xorshift64: jitter only, no need for a good generator. */
    hs->rng ^= hs->rng << 13;
    hs->rng ^= hs->rng >> 7;
    hs->rng ^= hs->rng << 17;
    uint64_t half = d / 2;
    return half + (half ? hs->rng % (d - half + 1) : d);
}

static void http_failed(http_sink_t *hs, int evreq_error, int status)
{
    hs->conn_stale = true; /* freed before the next attempt, not inside libevent's callback */
    pthread_mutex_lock(&hs->lock);
    hs->errors++;
    pthread_mutex_unlock(&hs->lock);
    hs->last_error = status ? -1 : evreq_error;
    if (status)
        snprintf(hs->fail_reason, sizeof(hs->fail_reason), "collector answered HTTP %d", status);
    else
        snprintf(hs->fail_reason, sizeof(hs->fail_reason), "%s", http_error_name(evreq_error));
    if (!hs->failing) {
        hs->failing = true;
        hs->fail_reported = false;
    }
    hs->run_failures++;

    /* A 4xx other than 408/429 will fail the same way forever: give up on
     * this batch (counted as dropped) and go on with the next one. The run
     * stays "failing" so reports stay rate-limited until a batch gets in. */
    if (status >= 400 && status < 500 && status != 408 && status != 429) {
        snprintf(hs->fail_reason, sizeof(hs->fail_reason),
                 "collector answered HTTP %d; batches it refuses are dropped", status);
        http_batch_done(hs, false);
        hs->attempt = 0;
        http_report(hs);
        return;
    }
    hs->attempt++;
    ksock_timer_start(hs->retry_timer, http_backoff_ms(hs), 0);
    http_report(hs);
}

static void http_error_cb(enum evhttp_request_error err, void *arg)
{
    http_sink_t *hs = arg;
    hs->last_error = (int)err;
}

static void http_done_cb(struct evhttp_request *req, void *arg)
{
    http_sink_t *hs = arg;
    if (hs->closing || !hs->req_active) return;
    hs->req_active = false;
    int status = req ? evhttp_request_get_response_code(req) : 0;
    if (status >= 200 && status < 300) {
        http_batch_done(hs, true);
        http_recovered(hs);
        pthread_mutex_lock(&hs->lock);
        bool more = queue_has_full_batch(hs);
        pthread_mutex_unlock(&hs->lock);
        /* A backlog (after an outage) drains batch after batch, each on a
         * fresh loop iteration rather than inside libevent's callback. */
        if (more) ksock_timer_start(hs->kick_timer, 0, 0);
        http_report(hs);
        return;
    }
    http_failed(hs, status ? -1 : hs->last_error, status);
}

static void http_send_batch(http_sink_t *hs)
{
    if (hs->conn_stale && hs->conn) {
        evhttp_connection_free(hs->conn);
        hs->conn = NULL;
    }
    hs->conn_stale = false;
    if (hs->conn == NULL) hs->conn = http_conn_new(hs, hs->base, hs->dns, hs->timeout_ms);
    struct evhttp_request *req =
        hs->conn ? http_request_new(hs, http_done_cb, http_error_cb, hs) : NULL;
    if (req == NULL) {
        http_failed(hs, EVREQ_HTTP_BUFFER_ERROR, 0);
        return;
    }
    hs->last_error = EVREQ_HTTP_EOF;
    hs->req_active = true;
    if (evhttp_make_request(hs->conn, req, EVHTTP_REQ_POST, hs->path) != 0) {
        /* libevent may already have called http_done_cb (and freed req). */
        if (hs->req_active) {
            hs->req_active = false;
            http_failed(hs, EVREQ_HTTP_EOF, 0);
        }
    }
}

static void http_try_send(http_sink_t *hs)
{
    if (hs->closing || hs->req_active || ksock_timer_is_active(hs->retry_timer)) return;
    if (hs->batch_n == 0) http_take_batch(hs);
    if (hs->batch_n == 0) return;
    http_send_batch(hs);
}

static void http_flush_timer_cb(ksock_timer_t *t, void *data)
{
    http_sink_t *hs = data;
    (void)t;
    http_try_send(hs);
    http_report(hs);
}

static void http_kick_timer_cb(ksock_timer_t *t, void *data)
{
    (void)t;
    http_try_send(data);
}

static void http_retry_timer_cb(ksock_timer_t *t, void *data)
{
    http_sink_t *hs = data;
    (void)t;
    if (hs->closing || hs->req_active) return;
    if (hs->batch_n == 0) http_take_batch(hs);
    if (hs->batch_n > 0) http_send_batch(hs);
}

/* ---- Shutdown: the final flush ------------------------------------------------- */

typedef struct http_final_s {
    struct event_base *base;
    int status; /* 0 until answered; -1 on failure */
} http_final_t;

static void http_final_cb(struct evhttp_request *req, void *arg)
{
    http_final_t *f = arg;
    int st = req ? evhttp_request_get_response_code(req) : 0;
    f->status = st > 0 ? st : -1;
    event_base_loopbreak(f->base);
}

static void http_final_error_cb(enum evhttp_request_error err, void *arg)
{
    (void)err;
    (void)arg;
}

/*
 * Deliver what is left within shutdown_ms on a private event_base: destroy()
 * may be called from a callback of the core loop, which cannot be entered
 * again. Whatever is not delivered by the deadline is dropped and counted.
 */
static void http_final_flush(http_sink_t *hs)
{
    uint64_t deadline = ksock_now_ns() + hs->shutdown_ms * 1000000ull;
    struct event_base *base = NULL;
    struct evdns_base *dns = NULL;
    struct evhttp_connection *conn = NULL;
    http_final_t f = {NULL, 0}; /* outlives conn: freeing conn must not see a dead f */
    if (hs->shutdown_ms == 0) goto drop;
    base = event_base_new();
    if (base == NULL) goto drop;
    if (hs->dns) {
        dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
        if (dns == NULL) goto drop;
    }
    for (;;) {
        if (hs->batch_n == 0) http_take_batch(hs);
        if (hs->batch_n == 0) break;
        uint64_t now = ksock_now_ns();
        if (now >= deadline) break;
        uint64_t left_ms = (deadline - now) / 1000000ull + 1;
        if (conn == NULL)
            conn =
                http_conn_new(hs, base, dns, left_ms < hs->timeout_ms ? left_ms : hs->timeout_ms);
        f.base = base;
        f.status = 0;
        struct evhttp_request *req =
            conn ? http_request_new(hs, http_final_cb, http_final_error_cb, &f) : NULL;
        if (req == NULL || evhttp_make_request(conn, req, EVHTTP_REQ_POST, hs->path) != 0) break;
        struct timeval tv = {(time_t)(left_ms / 1000), (suseconds_t)(left_ms % 1000) * 1000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
        if (f.status < 200 || f.status >= 300) break; /* no retries: we are shutting down */
        http_batch_done(hs, true);
    }
drop:
    if (conn) evhttp_connection_free(conn);
    if (dns) evdns_base_free(dns, 0);
    if (base) event_base_free(base);
    /* Count what is left as dropped. */
    if (hs->batch_n) http_batch_done(hs, false);
    pthread_mutex_lock(&hs->lock);
    while (hs->count > 0) {
        free(queue_pop(hs));
        hs->dropped++;
    }
    pthread_mutex_unlock(&hs->lock);
}

/* ---- Create / destroy --------------------------------------------------------- */

static void http_destroy(void *inst)
{
    http_sink_t *hs = inst;
    if (hs == NULL) return;
    hs->closing = true;
    ksock_timer_close(hs->flush_timer);
    ksock_timer_close(hs->kick_timer);
    ksock_timer_close(hs->retry_timer);
    /* Frees a request in flight without calling http_done_cb (which would
     * return early anyway: closing is set). */
    if (hs->conn) evhttp_connection_free(hs->conn);
    hs->conn = NULL;
    if (hs->ring) http_final_flush(hs);
    if (hs->dns) evdns_base_free(hs->dns, 0);
    if (hs->waker) {
        hs->waker->sink = NULL; /* a queued kick now does nothing */
        waker_unref(hs->waker);
    }
    for (size_t i = 0; i < hs->nheaders; i++) {
        free(hs->headers[i].name);
        free(hs->headers[i].value);
    }
    free(hs->headers);
    free(hs->ring);
    free(hs->batch_items);
    ksock_buf_free(&hs->scratch);
    ksock_buf_free(&hs->body);
    pthread_mutex_destroy(&hs->lock);
    free(hs->url);
    free(hs->host);
    free(hs->host_hdr);
    free(hs->path);
    free(hs);
}

/* RFC 9110 token characters, for header names. */
static bool http_is_token(const char *s)
{
    if (*s == '\0') return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) continue;
        if (strchr("!#$%&'*+-.^_`|~", c) == NULL) return false;
    }
    return true;
}

static int http_parse_headers(http_sink_t *hs, const ksock_plugin_ctx_t *ctx,
                              const ksock_cfg_t *obj, char *errstr, size_t errstr_size)
{
    if (obj == NULL) return 0;
    const char *doc = ctx->doc ? ksock_config_name(ctx->doc) : "config";
    if (ksock_cfg_type(obj) != KSOCK_CFG_OBJECT) {
        ksock_errstr_set(errstr, errstr_size,
                         "%s:%d:%d: %s: key \"headers\": expected an object of strings, got %s",
                         doc, ksock_cfg_line(obj), ksock_cfg_column(obj), ctx->component,
                         ksock_cfg_type_name(ksock_cfg_type(obj)));
        return KSOCK_E_CONFIG;
    }
    size_t n = ksock_cfg_count(obj);
    if (n > HTTP_MAX_HEADERS) {
        ksock_errstr_set(errstr, errstr_size, "%s: key \"headers\": more than %d headers",
                         ctx->component, HTTP_MAX_HEADERS);
        return KSOCK_E_CONFIG;
    }
    hs->headers = calloc(n ? n : 1, sizeof(*hs->headers));
    if (hs->headers == NULL) return KSOCK_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        const char *name = NULL;
        const ksock_cfg_t *v = ksock_cfg_at(obj, i, &name);
        const char *value = ksock_cfg_string(v);
        const char *why = NULL;
        if (name == NULL || !http_is_token(name))
            why = "is not a valid header name";
        else if (value == NULL)
            why = "must have a string value";
        else if (strpbrk(value, "\r\n") != NULL)
            why = "must not contain CR or LF";
        else if (strcasecmp(name, "Content-Length") == 0 ||
                 strcasecmp(name, "Transfer-Encoding") == 0 || strcasecmp(name, "Connection") == 0)
            why = "is managed by the sink and cannot be set";
        if (why) {
            ksock_errstr_set(errstr, errstr_size, "%s:%d:%d: %s: key \"headers\": \"%s\" %s", doc,
                             ksock_cfg_line(v), ksock_cfg_column(v), ctx->component,
                             name ? name : "", why);
            return KSOCK_E_CONFIG;
        }
        hs->headers[i].name = strdup(name);
        hs->headers[i].value = strdup(value);
        hs->nheaders = i + 1;
        if (hs->headers[i].name == NULL || hs->headers[i].value == NULL) return KSOCK_E_NOMEM;
        if (strcasecmp(name, "Content-Type") == 0) hs->custom_content_type = true;
    }
    return 0;
}

static int http_parse_url(http_sink_t *hs, const ksock_plugin_ctx_t *ctx, const char *url,
                          char *errstr, size_t errstr_size)
{
    struct evhttp_uri *u = evhttp_uri_parse(url);
    const char *why = NULL;
    int rc = KSOCK_E_CONFIG;
    const char *scheme = u ? evhttp_uri_get_scheme(u) : NULL;
    const char *host = u ? evhttp_uri_get_host(u) : NULL;
    if (u == NULL || scheme == NULL)
        why = "is not an absolute URL such as http://collector:8080/ingest";
    else if (strcasecmp(scheme, "https") == 0) {
        why = "https is not supported by this sink; use http:// (e.g. to a local forwarder "
              "that adds TLS)";
        rc = KSOCK_E_UNSUPPORTED;
    } else if (strcasecmp(scheme, "http") != 0)
        why = "must start with http://";
    else if (host == NULL || host[0] == '\0')
        why = "has no host";
    else if (evhttp_uri_get_userinfo(u) != NULL)
        why = "must not carry user:password (set an Authorization header in \"headers\")";
    if (why) {
        ksock_errstr_set(errstr, errstr_size, "%s: key \"url\": \"%s\" %s", ctx->component, url,
                         why);
        if (u) evhttp_uri_free(u);
        return rc;
    }
    int port = evhttp_uri_get_port(u);
    hs->port = port > 0 ? port : 80;
    /* IPv6 literals come bracketed: keep the brackets for Host:, not for connect(). */
    size_t hl = strlen(host);
    if (host[0] == '[' && hl > 2 && host[hl - 1] == ']')
        hs->host = strndup(host + 1, hl - 2);
    else
        hs->host = strdup(host);
    char buf[600];
    if (port > 0)
        snprintf(buf, sizeof(buf), "%s:%d", host, port);
    else
        snprintf(buf, sizeof(buf), "%s", host);
    hs->host_hdr = strdup(buf);
    const char *path = evhttp_uri_get_path(u), *query = evhttp_uri_get_query(u);
    snprintf(buf, sizeof(buf), "%s%s%s", path && *path ? path : "/", query ? "?" : "",
             query ? query : "");
    hs->path = strdup(buf);
    evhttp_uri_free(u);
    if (hs->host == NULL || hs->host_hdr == NULL || hs->path == NULL) return KSOCK_E_NOMEM;
    return 0;
}

/* True when `host` is an IPv4 or IPv6 literal: no resolver needed. */
static bool http_host_is_numeric(const char *host)
{
    struct evutil_addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_flags = EVUTIL_AI_NUMERICHOST;
    hints.ai_family = AF_UNSPEC;
    if (evutil_getaddrinfo(host, NULL, &hints, &res) != 0) return false;
    evutil_freeaddrinfo(res);
    return true;
}

static int http_create(const ksock_plugin_ctx_t *ctx, const void *options, void **inst,
                       char *errstr, size_t errstr_size)
{
    const http_opts_t *o = options;
    if (o->batch_max > o->queue_max) {
        ksock_errstr_set(errstr, errstr_size,
                         "%s: key \"batch_max\": %lld is larger than queue_max (%lld)",
                         ctx->component, (long long)o->batch_max, (long long)o->queue_max);
        return KSOCK_E_CONFIG;
    }
    if (o->retry_max < o->retry_initial) {
        ksock_errstr_set(errstr, errstr_size,
                         "%s: key \"retry_max\": must not be shorter than retry_initial",
                         ctx->component);
        return KSOCK_E_CONFIG;
    }

    http_sink_t *hs = calloc(1, sizeof(*hs));
    if (hs == NULL) return KSOCK_E_NOMEM;
    hs->rt = ctx->rt;
    hs->component = ctx->component;
    hs->base = ksock_runtime_event_base(ctx->rt);
    hs->queue_max = (size_t)o->queue_max;
    hs->queue_bytes_max = (size_t)o->queue_bytes;
    hs->batch_max = (size_t)o->batch_max;
    hs->batch_bytes = (size_t)o->batch_bytes;
    hs->timeout_ms = (uint64_t)o->timeout;
    hs->retry_initial_ms = (uint64_t)o->retry_initial;
    hs->retry_max_ms = (uint64_t)o->retry_max;
    hs->shutdown_ms = (uint64_t)o->shutdown_timeout;
    hs->last_error = -1;
    hs->rng = ksock_now_ns() | 1;
    pthread_mutex_init(&hs->lock, NULL);

    int rc = http_parse_url(hs, ctx, o->url, errstr, errstr_size);
    if (rc == 0) rc = http_parse_headers(hs, ctx, o->headers, errstr, errstr_size);
    if (rc != 0) goto fail;
    rc = KSOCK_E_NOMEM;
    hs->url = strdup(o->url);
    hs->ring = calloc(hs->queue_max, sizeof(*hs->ring));
    hs->batch_items = calloc(hs->batch_max, sizeof(*hs->batch_items));
    hs->waker = calloc(1, sizeof(*hs->waker));
    if (hs->url == NULL || hs->ring == NULL || hs->batch_items == NULL || hs->waker == NULL)
        goto fail;
    atomic_init(&hs->waker->refs, 1);
    hs->waker->sink = hs;
    /* Names resolve through evdns on the loop: getaddrinfo() would block it. */
    if (!http_host_is_numeric(hs->host)) {
        hs->dns = evdns_base_new(hs->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                               EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (hs->dns == NULL) {
            ksock_errstr_set(errstr, errstr_size, "%s: cannot start a DNS resolver for \"%s\"",
                             ctx->component, hs->host);
            rc = KSOCK_E_RESOLVE;
            goto fail;
        }
    }
    if (ksock_timer_init(ctx->rt, &hs->flush_timer, http_flush_timer_cb, hs) != 0 ||
        ksock_timer_init(ctx->rt, &hs->kick_timer, http_kick_timer_cb, hs) != 0 ||
        ksock_timer_init(ctx->rt, &hs->retry_timer, http_retry_timer_cb, hs) != 0 ||
        ksock_timer_start(hs->flush_timer, (uint64_t)o->flush_interval,
                          (uint64_t)o->flush_interval) != 0)
        goto fail;
    *inst = hs;
    return 0;
fail:
    if (rc == KSOCK_E_NOMEM)
        ksock_errstr_set(errstr, errstr_size, "%s: out of memory", ctx->component);
    http_destroy(hs);
    return rc;
}

static void http_set_format(void *inst, ksock_log_format_t fmt)
{
    /* Always JSON lines: see http_write(). */
    (void)inst;
    (void)fmt;
}

/* Hand the queue to the loop now rather than at the next tick. */
static void http_flush(void *inst)
{
    http_sink_t *hs = inst;
    if (!hs->closing) ksock_timer_start(hs->kick_timer, 0, 0);
}

static void http_stats(void *inst, uint64_t *written, uint64_t *dropped, uint64_t *errors)
{
    http_sink_t *hs = inst;
    pthread_mutex_lock(&hs->lock);
    *written = hs->written;
    *dropped = hs->dropped;
    *errors = hs->errors;
    pthread_mutex_unlock(&hs->lock);
}

static const ksock_logsink_vtable_t http_vtable = {
    .size = sizeof(ksock_logsink_vtable_t),
    .create = http_create,
    .destroy = http_destroy,
    .set_format = http_set_format,
    .write = http_write,
    .flush = http_flush,
    .reopen = NULL, /* connections are made per need; nothing to reopen */
    .stats = http_stats,
};

static const ksock_plugin_desc_t http_desc = {
    KSOCK_PLUGIN_HEADER(KSOCK_PLUGIN_LOGSINK),
    .name = "http",
    .version = KSOCK_VERSION_STRING,
    .description = "POST log records as JSON lines (ndjson) to an HTTP collector, batched",
    .options = http_options,
    .options_struct_size = sizeof(http_opts_t),
    .vtable = &http_vtable,
};

KSOCK_PLUGIN_DEFINE(logsink_http, http_desc)
