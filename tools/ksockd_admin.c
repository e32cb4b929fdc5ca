/*
 * ksockd's admin HTTP endpoint (ksockd_admin.h; docs/operations.md, Admin
 * endpoint).
 *
 * /healthz asks Kafka, through librdkafka, whether it answers: a metadata
 * request on the producer's handle, on a thread (it blocks up to
 * health_timeout). The answer is kept for health_cache, and requests that
 * arrive while a probe runs wait for it, so a storm of probes makes at most
 * one metadata request per health_cache. Deferred replies are safe with
 * libevent 2.1: a request whose client went away is detached from its
 * connection, and answering it later only frees it.
 */
#include "ksockd_admin.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <librdkafka/rdkafka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define COMPONENT "admin"

typedef struct {
    char *address;
    int64_t port;
    int64_t health_timeout; /* ms */
    int64_t health_cache;   /* ms */
} admin_opts_t;

static const ksock_option_t admin_schema[] = {
    KSOCK_OPTION("address", KSOCK_OPT_STRING, 0, "127.0.0.1", admin_opts_t, address,
                 "Address the admin endpoint binds, exactly (a literal or a name; loopback by "
                 "default). Anyone who reaches it reads the metrics: a non-loopback address is "
                 "logged as a warning"),
    KSOCK_OPTION_RANGE("port", KSOCK_OPT_INT, KSOCK_OPT_REQUIRED, NULL, admin_opts_t, port, 1,
                       65535, "TCP port of the admin endpoint (GET /healthz, /readyz, /metrics)"),
    KSOCK_OPTION_RANGE("health_timeout", KSOCK_OPT_DURATION, 0, "2s", admin_opts_t, health_timeout,
                       100, 60000,
                       "How long /healthz's Kafka metadata request may take before Kafka counts "
                       "as unreachable (503)"),
    KSOCK_OPTION_RANGE("health_cache", KSOCK_OPT_DURATION, 0, "1s", admin_opts_t, health_cache, 0,
                       3600000,
                       "How long a /healthz answer about Kafka is reused: at most one metadata "
                       "request per this interval, however many probes arrive"),
    KSOCK_OPTION_END,
};

struct ksockd_admin_s {
    ksock_runtime_t *rt;
    admin_opts_t o;
    struct evhttp *http;
    ksock_kafka_producer_t *producer;
    const ksock_bridge_t *bridge;
    ksockd_admin_state_t state;
    uint64_t started_ns;
    /* The Kafka probe: a thread, an eventfd it writes when done, the requests waiting for it. */
    pthread_t thread;
    bool probing;
    int fd;
    struct event *fd_ev;
    int probe_err;          /* rd_kafka_resp_err_t of the last probe */
    char probe_reason[256]; /* written by the thread, read after the eventfd */
    bool have_result;
    bool kafka_ok;
    char reason[256];
    uint64_t checked_ns;
    struct evhttp_request **waiting;
    size_t nwaiting, capwaiting;
};

const ksock_option_t *ksockd_admin_schema(void)
{
    return admin_schema;
}

static int opts_read(const ksock_config_t *cfg, admin_opts_t *o, char *err, size_t n)
{
    memset(o, 0, sizeof(*o));
    const ksock_cfg_t *sec = ksock_cfg_get(ksock_config_root(cfg), "admin");
    if (sec == NULL) return 0;
    return ksock_options_apply(admin_schema, sizeof(ksock_option_t), cfg, sec, "admin", NULL, o,
                               err, n);
}

int ksockd_admin_check(const ksock_config_t *cfg, char *errstr, size_t errstr_size)
{
    admin_opts_t o;
    int rc = opts_read(cfg, &o, errstr, errstr_size);
    ksock_options_free(admin_schema, sizeof(ksock_option_t), &o);
    return rc;
}

/* ---- Replies ------------------------------------------------------------------------ */

static void reply(struct evhttp_request *req, int code, const char *ctype, const void *body,
                  size_t len)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", ctype);
    evhttp_add_header(h, "Cache-Control", "no-store");
    struct evbuffer *b = evbuffer_new();
    if (b == NULL) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) evbuffer_add(b, body, len);
    evhttp_send_reply(req, code, code == 200 ? "OK" : "Service Unavailable", b);
    evbuffer_free(b);
}

static void reply_text(struct evhttp_request *req, int code, const char *fmt, const char *arg)
{
    char body[512];
    int n = snprintf(body, sizeof(body), fmt, arg);
    reply(req, code, "text/plain; charset=utf-8", body, n < 0 ? 0 : strlen(body));
}

/* ---- /healthz ------------------------------------------------------------------------ */

static void health_answer(ksockd_admin_t *a, struct evhttp_request *req)
{
    if (a->kafka_ok)
        reply_text(req, 200, "ok%s\n", "");
    else
        reply_text(req, 503, "%s\n", a->reason);
}

/*
 * The probe's rule: Kafka is reachable when a metadata request (brokers
 * and the topics the producer knows) on the producer's handle is answered
 * within health_timeout and names at least one broker.
 */
static void *probe_main(void *arg)
{
    ksockd_admin_t *a = arg;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_t *rk = ksock_kafka_producer_handle(a->producer);
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, NULL, &md, (int)a->o.health_timeout);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md->broker_cnt == 0)
        err = RD_KAFKA_RESP_ERR__TRANSPORT;
    if (md) rd_kafka_metadata_destroy(md);
    a->probe_err = err;
    if (err)
        snprintf(a->probe_reason, sizeof(a->probe_reason),
                 "Kafka unreachable: metadata request failed within %" PRId64 " ms: %s",
                 a->o.health_timeout, rd_kafka_err2str(err));
    uint64_t one = 1;
    ssize_t w = write(a->fd, &one, sizeof(one));
    (void)w; /* an eventfd write fails only on overflow, which leaves it readable */
    return NULL;
}

static void probe_done(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    ksockd_admin_t *a = arg;
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof(v));
    (void)r;
    if (!a->probing) return;
    pthread_join(a->thread, NULL);
    a->probing = false;
    bool was = a->kafka_ok || !a->have_result;
    a->kafka_ok = a->probe_err == 0;
    snprintf(a->reason, sizeof(a->reason), "%s", a->kafka_ok ? "ok" : a->probe_reason);
    a->have_result = true;
    a->checked_ns = ksock_now_ns();
    if (was != a->kafka_ok)
        ksock_log(a->rt, a->kafka_ok ? KSOCK_LOG_INFO : KSOCK_LOG_WARN, COMPONENT, NULL, 0,
                  "healthz: %s", a->kafka_ok ? "Kafka reachable" : a->reason);
    for (size_t i = 0; i < a->nwaiting; i++)
        health_answer(a, a->waiting[i]);
    a->nwaiting = 0;
}

static void on_healthz(ksockd_admin_t *a, struct evhttp_request *req)
{
    if (a->producer == NULL) {
        reply_text(req, 503, "%s\n", "no kafka section: nothing to reach");
        return;
    }
    if (a->have_result && ksock_now_ns() - a->checked_ns < (uint64_t)a->o.health_cache * 1000000u) {
        health_answer(a, req);
        return;
    }
    if (a->nwaiting == a->capwaiting) {
        size_t n = a->capwaiting ? a->capwaiting * 2 : 8;
        struct evhttp_request **v = realloc(a->waiting, n * sizeof(*v));
        if (v == NULL) {
            evhttp_send_error(req, 500, "out of memory");
            return;
        }
        a->waiting = v;
        a->capwaiting = n;
    }
    if (!a->probing) {
        if (pthread_create(&a->thread, NULL, probe_main, a) != 0) {
            reply_text(req, 503, "%s\n", "cannot start the Kafka probe (no thread)");
            return;
        }
        a->probing = true;
    }
    a->waiting[a->nwaiting++] = req;
}

/* ---- /readyz and /metrics --------------------------------------------------------------- */

static void on_readyz(ksockd_admin_t *a, struct evhttp_request *req)
{
    switch (a->state) {
    case KSOCKD_ADMIN_READY:
        reply_text(req, 200, "ready%s\n", "");
        break;
    case KSOCKD_ADMIN_DRAINING:
        reply_text(req, 503, "%s\n", "draining: stopping on a signal");
        break;
    default:
        reply_text(req, 503, "%s\n", "starting");
        break;
    }
}

/* What ksockd knows besides the bridge: its build, its uptime, its state, Kafka's health. */
static int daemon_metrics(ksockd_admin_t *a, ksock_buf_t *out)
{
    double up = (double)(ksock_now_ns() - a->started_ns) / 1e9;
    int rc = ksock_buf_appendf(
        out,
        "# HELP ksock_build_info The running ksockd's version.\n# TYPE ksock_build_info gauge\n"
        "ksock_build_info{version=\"%s\"} 1\n"
        "# HELP ksock_uptime_seconds Seconds since ksockd started.\n"
        "# TYPE ksock_uptime_seconds gauge\nksock_uptime_seconds %.3f\n"
        "# HELP ksock_ready 1 when /readyz answers 200.\n# TYPE ksock_ready gauge\n"
        "ksock_ready %d\n"
        "# HELP ksock_draining 1 while the drain of a SIGTERM or SIGINT runs.\n"
        "# TYPE ksock_draining gauge\nksock_draining %d\n",
        ksock_version(), up, a->state == KSOCKD_ADMIN_READY, a->state == KSOCKD_ADMIN_DRAINING);
    if (rc == 0 && a->have_result)
        rc = ksock_buf_appendf(out,
                               "# HELP ksock_kafka_reachable The last /healthz probe of Kafka: 1 "
                               "reachable, 0 not.\n# TYPE ksock_kafka_reachable gauge\n"
                               "ksock_kafka_reachable %d\n",
                               a->kafka_ok);
    return rc;
}

static void on_metrics(ksockd_admin_t *a, struct evhttp_request *req)
{
    ksock_buf_t out = KSOCK_BUF_INIT;
    int rc = daemon_metrics(a, &out);
    if (rc == 0 && a->bridge) rc = ksock_bridge_metrics(a->bridge, &out);
    if (rc != 0)
        evhttp_send_error(req, 500, "out of memory");
    else
        reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", out.data, out.len);
    ksock_buf_free(&out);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    ksockd_admin_t *a = arg;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        evhttp_send_error(req, 405, "only GET and HEAD");
        return;
    }
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    if (path && strcmp(path, "/healthz") == 0)
        on_healthz(a, req);
    else if (path && strcmp(path, "/readyz") == 0)
        on_readyz(a, req);
    else if (path && strcmp(path, "/metrics") == 0)
        on_metrics(a, req);
    else
        evhttp_send_error(req, 404, "not found: /healthz, /readyz, /metrics");
}

/* ---- Lifetime ----------------------------------------------------------------------------- */

/* Log what the kernel bound, and warn when it is reachable from elsewhere. */
static void log_bound(ksockd_admin_t *a, struct evhttp_bound_socket *bs)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "?";
    bool loop = false;
    if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            const struct in_addr *ia = &((struct sockaddr_in *)&ss)->sin_addr;
            inet_ntop(AF_INET, ia, ip, sizeof(ip));
            loop = (ntohl(ia->s_addr) >> 24) == 127;
        } else if (ss.ss_family == AF_INET6) {
            const struct in6_addr *ia = &((struct sockaddr_in6 *)&ss)->sin6_addr;
            inet_ntop(AF_INET6, ia, ip, sizeof(ip));
            loop = IN6_IS_ADDR_LOOPBACK(ia);
        }
    }
    ksock_log(a->rt, loop ? KSOCK_LOG_INFO : KSOCK_LOG_WARN, COMPONENT,
              (ksock_kv_t[]){KSOCK_KV_STR("address", ip), KSOCK_KV_I64("port", a->o.port)}, 2,
              "admin endpoint listening%s",
              loop ? "" : " on a non-loopback address: anyone who reaches it reads the metrics");
}

static int admin_listen(ksockd_admin_t *a, char *errstr, size_t errstr_size)
{
    a->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct event_base *base = ksock_runtime_event_base(a->rt);
    if (a->fd < 0 ||
        (a->fd_ev = event_new(base, a->fd, EV_READ | EV_PERSIST, probe_done, a)) == NULL ||
        event_add(a->fd_ev, NULL) != 0 || (a->http = evhttp_new(base)) == NULL) {
        ksock_errstr_set(errstr, errstr_size, "admin: out of memory or file descriptors");
        return KSOCK_E_NOMEM;
    }
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
    evhttp_set_max_headers_size(a->http, 16384);
    evhttp_set_max_body_size(a->http, 4096);
    evhttp_set_timeout(a->http, 30);
    evhttp_set_gencb(a->http, on_request, a);
    struct evhttp_bound_socket *bs =
        evhttp_bind_socket_with_handle(a->http, a->o.address, (ev_uint16_t)a->o.port);
    if (bs == NULL) {
        int e = errno;
        ksock_errstr_set(errstr, errstr_size, "admin: cannot listen on %s port %" PRId64 ": %s",
                         a->o.address, a->o.port, e ? strerror(e) : "address does not resolve");
        return KSOCK_E_IO;
    }
    log_bound(a, bs);
    return 0;
}

int ksockd_admin_new(ksock_runtime_t *rt, const ksock_config_t *cfg,
                     ksock_kafka_producer_t *producer, ksockd_admin_t **out, char *errstr,
                     size_t errstr_size)
{
    *out = NULL;
    if (ksock_cfg_get(ksock_config_root(cfg), "admin") == NULL) return 0;
    ksockd_admin_t *a = calloc(1, sizeof(*a));
    if (a == NULL) return KSOCK_E_NOMEM;
    a->rt = rt;
    a->fd = -1;
    a->producer = producer;
    a->started_ns = ksock_now_ns();
    int rc = opts_read(cfg, &a->o, errstr, errstr_size);
    if (rc == 0) rc = admin_listen(a, errstr, errstr_size);
    if (rc != 0) {
        ksockd_admin_destroy(a);
        return rc;
    }
    *out = a;
    return 0;
}

void ksockd_admin_set_bridge(ksockd_admin_t *a, const ksock_bridge_t *b)
{
    if (a) a->bridge = b;
}

void ksockd_admin_set_state(ksockd_admin_t *a, ksockd_admin_state_t state)
{
    if (a) a->state = state;
}

void ksockd_admin_destroy(ksockd_admin_t *a)
{
    if (a == NULL) return;
    if (a->probing) pthread_join(a->thread, NULL);
    /* Answered before evhttp_free(): a request detached from its closed connection is freed so. */
    for (size_t i = 0; i < a->nwaiting; i++)
        reply_text(a->waiting[i], 503, "%s\n", "shutting down");
    free(a->waiting);
    if (a->http) evhttp_free(a->http);
    if (a->fd_ev) event_free(a->fd_ev);
    if (a->fd >= 0) close(a->fd);
    ksock_options_free(admin_schema, sizeof(ksock_option_t), &a->o);
    free(a);
}
