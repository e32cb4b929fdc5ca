/*
 * logsink "http" through the real loader, against a collector the test
 * runs: a libevent evhttp server on 127.0.0.1 in the runtime's own loop
 * (deterministic), or on its own thread when the runtime's loop cannot run
 * (destroy). Covers batching, headers, ndjson content, the bounded queue
 * and its drop-oldest policy, refused and hung collectors, 5xx/4xx
 * answers, the final flush on destroy and its time bound.
 */
#include "logsink_test.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

/* ---- The collector ------------------------------------------------------------ */

#define MAX_LINES 4096
#define MAX_REQS  512

typedef struct collector_s {
    struct event_base *base;
    struct evhttp *http;
    int port;
    pthread_mutex_t lock;
    /* answers: the first `fail_n` requests get `fail_status` */
    int fail_n, fail_status;
    /* what arrived (accepted requests only for `lines`) */
    int nreq;
    int req_status[MAX_REQS];
    int req_lines[MAX_REQS];
    char *req_body[MAX_REQS];
    char *lines[MAX_LINES];
    size_t nlines;
    char content_type[128], api_key[128], uri[256], host[128];
    bool bad_method;
    /* thread mode */
    pthread_t thread;
    struct event *stop_ev;
    _Atomic int stop;
} collector_t;

static void collector_cb(struct evhttp_request *req, void *arg)
{
    collector_t *c = arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    char *body = malloc(len + 1);
    evbuffer_remove(in, body, len);
    body[len] = '\0';
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    const char *ct = evhttp_find_header(h, "Content-Type");
    const char *key = evhttp_find_header(h, "X-Api-Key");
    const char *host = evhttp_find_header(h, "Host");

    pthread_mutex_lock(&c->lock);
    int status = c->nreq < c->fail_n ? c->fail_status : 200;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) c->bad_method = true;
    snprintf(c->content_type, sizeof(c->content_type), "%s", ct ? ct : "");
    snprintf(c->api_key, sizeof(c->api_key), "%s", key ? key : "");
    snprintf(c->host, sizeof(c->host), "%s", host ? host : "");
    snprintf(c->uri, sizeof(c->uri), "%s", evhttp_request_get_uri(req));
    if (c->nreq < MAX_REQS) {
        c->req_status[c->nreq] = status;
        c->req_body[c->nreq] = strdup(body);
        int n = 0;
        if (status == 200) {
            char *save = NULL;
            for (char *l = strtok_r(body, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                if (c->nlines < MAX_LINES) c->lines[c->nlines++] = strdup(l);
                n++;
            }
        }
        c->req_lines[c->nreq] = n;
    }
    c->nreq++;
    pthread_mutex_unlock(&c->lock);
    free(body);
    evhttp_send_reply(req, status, status == 200 ? "OK" : "Nope", NULL);
}

/* Start on `base` at `port` (0: any). */
static void collector_start(collector_t *c, struct event_base *base, int port)
{
    c->base = base;
    c->http = evhttp_new(base);
    ASSERT_NOT_NULL(c->http);
    evhttp_set_gencb(c->http, collector_cb, c);
    struct evhttp_bound_socket *bs =
        evhttp_bind_socket_with_handle(c->http, "127.0.0.1", (ev_uint16_t)port);
    if (bs == NULL) TEST_FAIL_("cannot bind 127.0.0.1:%d", port);
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    ASSERT_OK(getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sa, &sl));
    c->port = ntohs(sa.sin_port);
}

static void collector_free(collector_t *c)
{
    if (c->http) evhttp_free(c->http);
    c->http = NULL;
    for (size_t i = 0; i < c->nlines; i++)
        free(c->lines[i]);
    for (int i = 0; i < c->nreq && i < MAX_REQS; i++)
        free(c->req_body[i]);
}

static void collector_stop_check(evutil_socket_t fd, short what, void *arg)
{
    collector_t *c = arg;
    (void)fd;
    (void)what;
    if (atomic_load(&c->stop)) event_base_loopbreak(c->base);
}

static void *collector_thread(void *arg)
{
    collector_t *c = arg;
    event_base_dispatch(c->base);
    return NULL;
}

/* A collector with its own base and thread. */
static void collector_start_thread(collector_t *c)
{
    struct event_base *base = event_base_new();
    ASSERT_NOT_NULL(base);
    collector_start(c, base, 0);
    c->stop_ev = event_new(base, -1, EV_PERSIST, collector_stop_check, c);
    struct timeval tv = {0, 10000};
    event_add(c->stop_ev, &tv);
    ASSERT_OK(pthread_create(&c->thread, NULL, collector_thread, c));
}

static void collector_stop_thread(collector_t *c)
{
    atomic_store(&c->stop, 1);
    pthread_join(c->thread, NULL);
    event_free(c->stop_ev);
    collector_free(c);
    event_base_free(c->base);
}

/* Lines from the "test" component, parsed: their context "i" values, in arrival order. */
static size_t collector_test_ids(collector_t *c, long long *ids, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->nlines; i++) {
        yajl_val v = lt_json(c->lines[i]);
        const char *comp = lt_jstr(v, "component", NULL);
        long long id;
        if (comp && strcmp(comp, "test") == 0 && lt_jint(v, "context", "i", &id) && n < max)
            ids[n++] = id;
        yajl_tree_free(v);
    }
    pthread_mutex_unlock(&c->lock);
    return n;
}

typedef struct {
    collector_t *c;
    size_t want;
} want_t;

static bool have_test_lines(void *arg)
{
    want_t *w = arg;
    static long long ids[MAX_LINES];
    return collector_test_ids(w->c, ids, MAX_LINES) >= w->want;
}

/* ---- Helpers ------------------------------------------------------------------------ */

static const char *http_sink(int port, const char *extra)
{
    return lt_fmt("{\"log\":{\"sinks\":[{\"type\":\"http\",\"name\":\"h\",\"level\":\"debug\","
                  "\"url\":\"http://127.0.0.1:%d/ingest?src=test\"%s%s}]}}",
                  port, extra ? "," : "", extra ? extra : "");
}

static void log_ids(ksock_runtime_t *rt, int from, int to)
{
    for (int i = from; i < to; i++) {
        ksock_kv_t kv[] = {KSOCK_KV_I64("i", i), KSOCK_KV_STR("tag", "x y")};
        ksock_log(rt, KSOCK_LOG_INFO, "test", kv, 2, "record %d", i);
    }
}

/* A port nothing listens on. */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_OK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)));
    socklen_t sl = sizeof(sa);
    ASSERT_OK(getsockname(fd, (struct sockaddr *)&sa, &sl));
    close(fd);
    return ntohs(sa.sin_port);
}

/* A listener that never accepts: connections complete in the backlog, nothing answers. */
static int hung_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_OK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)));
    ASSERT_OK(listen(fd, 16));
    socklen_t sl = sizeof(sa);
    ASSERT_OK(getsockname(fd, (struct sockaddr *)&sa, &sl));
    *port = ntohs(sa.sin_port);
    return fd;
}

/* A ticker proves the loop is never blocked: it records the longest gap between ticks. */
typedef struct {
    ksock_timer_t *t;
    uint64_t last, max_gap;
    int ticks;
} ticker_t;

static void ticker_cb(ksock_timer_t *t, void *data)
{
    ticker_t *k = data;
    (void)t;
    uint64_t now = lt_ms();
    if (k->last && now - k->last > k->max_gap) k->max_gap = now - k->last;
    k->last = now;
    k->ticks++;
}

static void ticker_start(ksock_runtime_t *rt, ticker_t *k)
{
    memset(k, 0, sizeof(*k));
    ASSERT_OK(ksock_timer_init(rt, &k->t, ticker_cb, k));
    ASSERT_OK(ksock_timer_start(k->t, 10, 10));
}

/* The sink counts a batch written when the answer is back, after the collector saw it. */
static bool stats_written_ge(void *arg)
{
    void **a = arg;
    return lt_stats(a[0], "h").written >= (uint64_t)(uintptr_t)a[1];
}

static bool stats_errors_ge(void *arg)
{
    void **a = arg;
    return lt_stats(a[0], "h").errors >= (uint64_t)(uintptr_t)a[1];
}

/* Shared set-up: runtime first, then collector on its base, then the sink. */
static ksock_runtime_t *rt_with_collector(collector_t *c, int port, const char *extra, bool start)
{
    ksock_runtime_t *rt;
    ASSERT_OK(ksock_runtime_new(&rt, NULL, 0));
    pthread_mutex_init(&c->lock, NULL);
    if (start) {
        collector_start(c, ksock_runtime_event_base(rt), port);
        port = c->port;
    }
    ksock_config_t *cfg;
    const char *json = http_sink(port, extra);
    char err[512];
    ASSERT_OK(ksock_config_load_string("t.json", json, strlen(json), &cfg, err, sizeof(err)));
    ksock_runtime_adopt_config(rt, cfg);
    if (ksock_runtime_configure(rt, cfg, err, sizeof(err)) != 0) TEST_FAIL_("%s", err);
    return rt;
}

/* ---- Tests ---------------------------------------------------------------------------- */

TEST(http_delivers_ndjson_batches)
{
    collector_t c = {0};
    ksock_runtime_t *rt = rt_with_collector(
        &c, 0,
        "\"batch_max\":10,\"flush_interval\":\"50ms\",\"headers\":{\"X-Api-Key\":\"s3cret\"}",
        true);
    log_ids(rt, 0, 25);
    want_t w = {&c, 25};
    ASSERT(lt_run_until(rt, have_test_lines, &w, 5000));

    long long ids[64];
    size_t n = collector_test_ids(&c, ids, 64);
    ASSERT_EQ(n, 25);
    for (size_t i = 0; i < n; i++)
        ASSERT_EQ(ids[i], (long long)i); /* in order, once */
    ASSERT(!c.bad_method);
    ASSERT_STR_EQ(c.content_type, "application/x-ndjson");
    ASSERT_STR_EQ(c.api_key, "s3cret");
    ASSERT_STR_EQ(c.uri, "/ingest?src=test");
    ASSERT_STR_EQ(c.host, lt_fmt("127.0.0.1:%d", c.port));
    for (int i = 0; i < c.nreq; i++)
        ASSERT_LE(c.req_lines[i], 10);
    ASSERT_GE(c.nreq, 3);
    /* Every line is a whole record. */
    yajl_val v = lt_json(c.lines[0]);
    lt_assert_time(lt_jstr(v, "time", NULL));
    ASSERT_STR_EQ(lt_jstr(v, "level", NULL), "info");
    ASSERT_STR_EQ(lt_jstr(v, "message", NULL), "record 0");
    ASSERT_STR_EQ(lt_jstr(v, "context", "tag"), "x y");
    yajl_tree_free(v);

    void *a[2] = {rt, (void *)(uintptr_t)25};
    ASSERT(lt_run_until(rt, stats_written_ge, a, 2000));
    ksock_log_sink_stats_t st = lt_stats(rt, "h");
    ASSERT_EQ(st.written, 25);
    ASSERT_EQ(st.dropped, 0);
    ASSERT_EQ(st.errors, 0);
    collector_free(&c); /* its evhttp lives on the runtime's base */
    ksock_runtime_destroy(rt);
}

static bool have_hostile_line(void *arg)
{
    collector_t *c = arg;
    pthread_mutex_lock(&c->lock);
    bool found = false;
    for (size_t i = 0; i < c->nlines && !found; i++)
        found = strstr(c->lines[i], "nul=") != NULL;
    pthread_mutex_unlock(&c->lock);
    return found;
}

/* Client-controlled bytes reach the collector as valid JSON (docs/logging.md). */
TEST(http_hostile_values_escaped)
{
    collector_t c = {0};
    ksock_runtime_t *rt = rt_with_collector(&c, 0, "\"flush_interval\":\"50ms\"", true);
    lt_log_hostile(rt, true);
    ASSERT(lt_run_until(rt, have_hostile_line, &c, 5000));
    pthread_mutex_lock(&c.lock);
    const char *body = c.req_body[c.nreq - 1];
    lt_assert_clean(body, strlen(body));
    const char *line = NULL;
    for (size_t i = 0; i < c.nlines; i++)
        if (strstr(c.lines[i], "nul=")) line = c.lines[i];
    yajl_val v = lt_json(line);
    pthread_mutex_unlock(&c.lock);
    ASSERT_STR_EQ(lt_jstr(v, "context", "reason"), LT_HOSTILE_JSON);
    ASSERT_STR_EQ(lt_jstr(v, "message", NULL), "reason=" LT_HOSTILE_JSON " nul=");
    ASSERT_STR_EQ(lt_jstr(v, "component", NULL), "test\x1b\n\xef\xbf\xbd");
    yajl_tree_free(v);
    collector_free(&c);
    ksock_runtime_destroy(rt);
}

/* A full batch is sent at once (kick), a partial one waits for the flush interval. */
TEST(http_full_batch_kicks)
{
    collector_t c = {0};
    ksock_runtime_t *rt =
        rt_with_collector(&c, 0, "\"batch_max\":5,\"flush_interval\":\"1h\"", true);
    log_ids(rt, 0, 5);
    want_t w = {&c, 5};
    ASSERT(lt_run_until(rt, have_test_lines, &w, 2000));
    ASSERT_EQ(c.nreq, 1);
    ASSERT_EQ(c.req_lines[0], 5);

    log_ids(rt, 5, 8); /* not a full batch, and the interval is an hour */
    lt_run_for(rt, 300);
    ASSERT_EQ(c.nreq, 1);
    ksock_log_flush(rt); /* flush hands it over now */
    w.want = 8;
    ASSERT(lt_run_until(rt, have_test_lines, &w, 2000));
    ASSERT_EQ(c.nreq, 2);
    collector_free(&c); /* its evhttp lives on the runtime's base */
    ksock_runtime_destroy(rt);
}

/* Records from other threads reach the collector; the loop is woken, not polled. */
static void *thread_logger(void *arg)
{
    log_ids(arg, 0, 1000);
    return NULL;
}

TEST(http_from_threads)
{
    collector_t c = {0};
    ksock_runtime_t *rt =
        rt_with_collector(&c, 0, "\"batch_max\":100,\"flush_interval\":\"1h\"", true);
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, thread_logger, rt));
    want_t w = {&c, 1000};
    /*
     * A bound for a hang, not a timing assertion: it returns as soon as the lines are in. The
     * sanitizer build needs seconds of CPU for these 1000 records (about 10 s when run with
     * fast_unwind_on_malloc=0).
     */
    ASSERT(lt_run_until(rt, have_test_lines, &w, 60000));
    pthread_join(th, NULL);
    static long long ids[MAX_LINES];
    size_t n = collector_test_ids(&c, ids, MAX_LINES);
    ASSERT_EQ(n, 1000);
    for (size_t i = 0; i < n; i++)
        ASSERT_EQ(ids[i], (long long)i);
    /* Only full batches were kicked (the interval is an hour): 10 of 100. */
    ASSERT_EQ(c.nreq, 10);
    collector_free(&c); /* its evhttp lives on the runtime's base */
    ksock_runtime_destroy(rt);
}

/*
 * Collector down (connection refused): the queue stays within queue_max,
 * the oldest queued records are dropped and counted, the batch in flight
 * (the first records) is kept, the loop keeps its timers on time; when the
 * collector comes up, what was kept arrives, in order.
 */
TEST(http_refused_then_up)
{
    collector_t c = {0};
    int port = closed_port();
    ksock_runtime_t *rt =
        rt_with_collector(&c, port,
                          "\"queue_max\":100,\"batch_max\":10,\"flush_interval\":\"20ms\","
                          "\"retry_initial\":\"20ms\",\"retry_max\":\"100ms\",\"timeout\":\"1s\"",
                          false);
    lt_errors_t errs;
    memset(&errs, 0, sizeof(errs));
    ksock_on_error(rt, lt_on_error, &errs);
    ticker_t k;
    ticker_start(rt, &k);

    log_ids(rt, 0, 10); /* a full batch: sent at once, refused, kept for retry */
    void *a[2] = {rt, (void *)(uintptr_t)1};
    ASSERT(lt_run_until(rt, stats_errors_ge, a, 3000));
    log_ids(rt, 10, 300);
    lt_run_for(rt, 500);

    ksock_log_sink_stats_t st = lt_stats(rt, "h");
    ASSERT_EQ(st.written, 0);
    ASSERT_GE(st.errors, 3); /* retried */
    /* 290 more records into the 90 free places: at least 200 dropped. */
    ASSERT_GE(st.dropped, 200);
    ASSERT_LE(st.dropped, 300);
    ASSERT_GE(k.ticks, 30);
    ASSERT_LT(k.max_gap, 200);
    ASSERT_CONTAINS(errs.messages, "connection");
    ASSERT_CONTAINS(errs.messages, "queue full");

    collector_start(&c, ksock_runtime_event_base(rt), port);
    want_t w = {&c, 1};
    ASSERT(lt_run_until(rt, have_test_lines, &w, 3000));
    lt_run_for(rt, 500); /* let the backlog drain */
    static long long ids[MAX_LINES];
    size_t n = collector_test_ids(&c, ids, MAX_LINES);
    /* The first batch (0..9), then a contiguous run ending at the newest record. */
    ASSERT_GE(n, 80);
    ASSERT_LE(n, 100);
    for (int i = 0; i < 10; i++)
        ASSERT_EQ(ids[i], i);
    ASSERT_EQ(ids[n - 1], 299);
    for (size_t i = 11; i < n; i++)
        ASSERT_EQ(ids[i], ids[i - 1] + 1);
    ASSERT_GT(ids[10], 200);
    ksock_timer_close(k.t);
    collector_free(&c); /* its evhttp lives on the runtime's base */
    ksock_runtime_destroy(rt);
}

/* A collector that accepts and never answers: timeout, retry, no blocking. */
TEST(http_hung_collector)
{
    collector_t c = {0};
    int port;
    int lfd = hung_listener(&port);
    ksock_runtime_t *rt =
        rt_with_collector(&c, port,
                          "\"batch_max\":5,\"timeout\":\"200ms\",\"retry_initial\":\"50ms\","
                          "\"retry_max\":\"100ms\",\"flush_interval\":\"50ms\"",
                          false);
    lt_errors_t errs;
    memset(&errs, 0, sizeof(errs));
    ksock_on_error(rt, lt_on_error, &errs);
    ticker_t k;
    ticker_start(rt, &k);
    log_ids(rt, 0, 5);
    uint64_t t0 = lt_ms();
    void *a[2] = {rt, (void *)(uintptr_t)2};
    ASSERT(lt_run_until(rt, stats_errors_ge, a, 3000));
    /* two timeouts of 200ms with a backoff between them */
    ASSERT_GE(lt_ms() - t0, 400);
    ASSERT_LT(k.max_gap, 150);
    ASSERT_EQ(lt_stats(rt, "h").written, 0);
    ASSERT_CONTAINS(errs.messages, "timed out");

    /* The collector recovers on the same port: the same batch arrives. */
    close(lfd);
    collector_start(&c, ksock_runtime_event_base(rt), port);
    want_t w = {&c, 5};
    ASSERT(lt_run_until(rt, have_test_lines, &w, 3000));
    long long ids[16];
    ASSERT_EQ(collector_test_ids(&c, ids, 16), 5);
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(ids[i], i);
    ksock_timer_close(k.t);
    collector_free(&c); /* its evhttp lives on the runtime's base */
    ksock_runtime_destroy(rt);
}

/* 503 twice, then 200: the same batch is retried and delivered once. */
TEST(http_5xx_retried)
{
    collector_t c = {.fail_n = 2, .fail_status = 503};
    ksock_runtime_t *rt = rt_with_collector(
        &c, 0, "\"batch_max\":5,\"retry_initial\":\"10ms\",\"retry_max\":\"20ms\"", true);
    log_ids(rt, 0, 5);
    want_t w = {&c, 5};
    ASSERT(lt_run_until(rt, have_test_lines, &w, 3000));
    ASSERT_GE(c.nreq, 3);
    ASSERT_EQ(c.req_status[0], 503);
    ASSERT_EQ(c.req_status[1], 503);
    ASSERT_EQ(c.req_status[2], 200);
    ASSERT_STR_EQ(c.req_body[0], c.req_body[2]); /* the same batch */
    long long ids[16];
    ASSERT_EQ(collector_test_ids(&c, ids, 16), 5);
    void *a[2] = {rt, (void *)(uintptr_t)5};
    ASSERT(lt_run_until(rt, stats_written_ge, a, 2000));
    ksock_log_sink_stats_t st = lt_stats(rt, "h");
    ASSERT_EQ(st.errors, 2);
    ASSERT_EQ(st.dropped, 0);
    collector_free(&c); /* its evhttp lives on the runtime's base */
    ksock_runtime_destroy(rt);
}

/* 400: the collector will never take that batch; drop it, go on. */
TEST(http_4xx_dropped)
{
    collector_t c = {.fail_n = 1, .fail_status = 400};
    ksock_runtime_t *rt = rt_with_collector(
        &c, 0, "\"batch_max\":5,\"retry_initial\":\"10ms\",\"flush_interval\":\"20ms\"", true);
    log_ids(rt, 0, 5);
    lt_run_until(rt, NULL, NULL, 200);
    ASSERT_EQ(c.req_status[0], 400);
    log_ids(rt, 5, 10);
    want_t w = {&c, 5};
    ASSERT(lt_run_until(rt, have_test_lines, &w, 3000));
    long long ids[64];
    size_t n = collector_test_ids(&c, ids, 64);
    ASSERT_GE(n, 5);
    ASSERT_EQ(ids[0], 5); /* 0..4 were refused for good */
    ksock_log_sink_stats_t st = lt_stats(rt, "h");
    ASSERT_GE(st.dropped, 5);
    ASSERT_EQ(st.errors, 1);
    collector_free(&c); /* its evhttp lives on the runtime's base */
    ksock_runtime_destroy(rt);
}

/* destroy() delivers what is queued (here through a collector on another thread). */
TEST(http_final_flush_on_destroy)
{
    collector_t c = {0};
    pthread_mutex_init(&c.lock, NULL);
    collector_start_thread(&c);
    ksock_runtime_t *rt =
        lt_runtime(http_sink(c.port, "\"flush_interval\":\"1h\",\"batch_max\":100"));
    log_ids(rt, 0, 7);
    ksock_runtime_destroy(rt); /* no loop iteration ran: only the final flush can send */
    long long ids[16];
    ASSERT_EQ(collector_test_ids(&c, ids, 16), 7);
    for (int i = 0; i < 7; i++)
        ASSERT_EQ(ids[i], i);
    collector_stop_thread(&c);
}

/* ...and gives up after shutdown_timeout when the collector hangs. */
TEST(http_destroy_bounded)
{
    int port;
    int lfd = hung_listener(&port);
    ksock_runtime_t *rt =
        lt_runtime(http_sink(port, "\"flush_interval\":\"1h\",\"batch_max\":3,\"shutdown_timeout\":"
                                   "\"300ms\",\"timeout\":\"5s\""));
    log_ids(rt, 0, 3);
    lt_run_for(rt, 50); /* the batch is now in flight, unanswered */
    log_ids(rt, 3, 5);  /* and two more are queued */
    uint64_t t0 = lt_ms();
    ksock_runtime_destroy(rt);
    uint64_t took = lt_ms() - t0;
    ASSERT_GE(took, 250);
    ASSERT_LT(took, 1500);
    close(lfd);
}

/* A host name is resolved asynchronously (evdns, /etc/hosts), not with a blocking getaddrinfo(). */
TEST(http_hostname)
{
    collector_t c = {0};
    ksock_runtime_t *rt;
    ASSERT_OK(ksock_runtime_new(&rt, NULL, 0));
    pthread_mutex_init(&c.lock, NULL);
    collector_start(&c, ksock_runtime_event_base(rt), 0);
    const char *json = lt_fmt("{\"log\":{\"sinks\":[{\"type\":\"http\",\"name\":\"h\","
                              "\"url\":\"http://localhost:%d/\",\"batch_max\":2}]}}",
                              c.port);
    ksock_config_t *cfg;
    char err[512];
    ASSERT_OK(ksock_config_load_string("t.json", json, strlen(json), &cfg, err, sizeof(err)));
    ksock_runtime_adopt_config(rt, cfg);
    if (ksock_runtime_configure(rt, cfg, err, sizeof(err)) != 0) TEST_FAIL_("%s", err);
    log_ids(rt, 0, 2);
    want_t w = {&c, 2};
    ASSERT(lt_run_until(rt, have_test_lines, &w, 5000));
    ASSERT_STR_EQ(c.host, lt_fmt("localhost:%d", c.port));
    ASSERT_STR_EQ(c.uri, "/");
    collector_free(&c);
    ksock_runtime_destroy(rt);
}

/*
 * Reconfiguring replaces the sink while a wake-up for it is still queued
 * on the loop: the wake-up must find the sink gone, not freed memory (ASan).
 */
TEST(http_replaced_with_kick_pending)
{
    int port = closed_port();
    ksock_runtime_t *rt = lt_runtime(http_sink(port, "\"batch_max\":2,\"shutdown_timeout\":0"));
    log_ids(rt, 0, 2); /* a full batch: posts a kick, which has not run yet */
    ksock_log_options_t lo = {sizeof(lo), KSOCK_LOG_ERROR, "console", KSOCK_LOG_FORMAT_TEXT, NULL};
    char err[256];
    ASSERT_OK(ksock_log_configure(rt, &lo, err, sizeof(err))); /* destroys the http sink */
    lt_run_for(rt, 50);                                        /* runs the stale kick */
    ksock_log_sink_stats_t st[4];
    ASSERT_EQ(ksock_log_stats(rt, st, 4), 1);
    ASSERT_STR_EQ(st[0].type, "console");
    ksock_runtime_destroy(rt);
}

TEST(http_options_refused)
{
    char err[1024] = "";
    ksock_runtime_t *rt = NULL;
    int rc = lt_try_runtime(
        "{\"log\":{\"sinks\":[{\"type\":\"http\",\"url\":\"https://collector.example/x\"}]}}", &rt,
        err, sizeof(err));
    ASSERT_EQ(rc, KSOCK_E_UNSUPPORTED);
    ASSERT_CONTAINS(err, "https://collector.example/x");
    ASSERT_CONTAINS(err, "https is not supported");

    rc = lt_try_runtime("{\"log\":{\"sinks\":[{\"type\":\"http\",\"url\":\"ftp://x/y\"}]}}", &rt,
                        err, sizeof(err));
    ASSERT_EQ(rc, KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "http://");

    rc = lt_try_runtime("{\"log\":{\"sinks\":[{\"type\":\"http\",\"url\":\"http://127.0.0.1:1/\","
                        "\"headers\":{\"Content-Length\":\"5\"}}]}}",
                        &rt, err, sizeof(err));
    ASSERT_EQ(rc, KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "Content-Length");

    rc = lt_try_runtime("{\"log\":{\"sinks\":[{\"type\":\"http\",\"url\":\"http://127.0.0.1:1/\","
                        "\"headers\":{\"X-N\":5}}]}}",
                        &rt, err, sizeof(err));
    ASSERT_EQ(rc, KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "X-N");

    rc = lt_try_runtime("{\"log\":{\"sinks\":[{\"type\":\"http\",\"url\":\"http://127.0.0.1:1/\","
                        "\"queue_max\":10,\"batch_max\":20}]}}",
                        &rt, err, sizeof(err));
    ASSERT_EQ(rc, KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "batch_max");

    rc = lt_try_runtime("{\"log\":{\"sinks\":[{\"type\":\"http\"}]}}", &rt, err, sizeof(err));
    ASSERT_EQ(rc, KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "url");
}

TEST_LIST(TEST_ENTRY(http_hostile_values_escaped), TEST_ENTRY(http_delivers_ndjson_batches),
          TEST_ENTRY(http_full_batch_kicks), TEST_ENTRY(http_from_threads),
          TEST_ENTRY(http_refused_then_up), TEST_ENTRY(http_hung_collector),
          TEST_ENTRY(http_5xx_retried), TEST_ENTRY(http_4xx_dropped),
          TEST_ENTRY(http_final_flush_on_destroy), TEST_ENTRY(http_destroy_bounded),
          TEST_ENTRY(http_hostname), TEST_ENTRY(http_replaced_with_kick_pending),
          TEST_ENTRY(http_options_refused))
