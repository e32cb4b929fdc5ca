/*
 * The runtime: one libevent loop, cross-thread posts, timers, signals and
 * the error handler. Everything else (logger, plugins) hangs off it.
 */
#include "internal.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

typedef struct ksock__post_s {
    struct ksock__post_s *next;
    ksock_work_cb cb;
    void *arg;
} ksock__post_t;

/* ---- Time --------------------------------------------------------------- */

uint64_t ksock_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t ksock_wallclock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- Cross-thread posts --------------------------------------------------- */

/*
 * Take the whole pending list under the lock and run it outside the lock,
 * so a callback may post again without deadlocking. A stop request rides
 * on the same eventfd because write(2) is async-signal-safe and
 * event_base_loopbreak() is not.
 */
static void run_posts(ksock_runtime_t *rt)
{
    pthread_mutex_lock(&rt->post_lock);
    ksock__post_t *p = rt->post_head;
    rt->post_head = rt->post_tail = NULL;
    pthread_mutex_unlock(&rt->post_lock);
    while (p) {
        ksock__post_t *next = p->next;
        p->cb(rt, p->arg);
        free(p);
        p = next;
    }
}

static void on_post_fd(evutil_socket_t fd, short what, void *arg)
{
    ksock_runtime_t *rt = arg;
    uint64_t v;
    while (read(fd, &v, sizeof(v)) > 0) {
    }
    run_posts(rt);
    /* A stop requested before run() is honoured as soon as run() starts. */
    int one = 1;
    if (atomic_compare_exchange_strong(&rt->stopping, &one, 0)) event_base_loopbreak(rt->base);
}

static void wake(ksock_runtime_t *rt)
{
    uint64_t one = 1;
    ssize_t n;
    do {
        n = write(rt->post_fd, &one, sizeof(one));
    } while (n < 0 && errno == EINTR);
}

int ksock_runtime_post(ksock_runtime_t *rt, ksock_work_cb cb, void *arg)
{
    if (atomic_load(&rt->stopping) == 2) return KSOCK_E_SHUTDOWN;
    ksock__post_t *p = malloc(sizeof(*p));
    if (p == NULL) return KSOCK_E_NOMEM;
    p->next = NULL;
    p->cb = cb;
    p->arg = arg;
    pthread_mutex_lock(&rt->post_lock);
    int was_empty = rt->post_head == NULL;
    if (rt->post_tail)
        rt->post_tail->next = p;
    else
        rt->post_head = p;
    rt->post_tail = p;
    pthread_mutex_unlock(&rt->post_lock);
    /* One wake-up per empty->non-empty transition is enough. */
    if (was_empty) wake(rt);
    return 0;
}

/* ---- Lifecycle ------------------------------------------------------------ */

int ksock_runtime_new(ksock_runtime_t **rtp, char *errstr, size_t errstr_size)
{
    *rtp = NULL;
    ksock_runtime_t *rt = calloc(1, sizeof(*rt));
    if (rt == NULL) return KSOCK_E_NOMEM;
    int rc = KSOCK_E_IO;
    bool log_ready = false;
    pthread_mutex_init(&rt->post_lock, NULL);
    rt->post_fd = -1;

    struct event_config *ecfg = event_config_new();
    if (ecfg) {
        /* Our signals go through libevent; we never fork from the loop. */
        event_config_set_flag(ecfg, EVENT_BASE_FLAG_NOLOCK);
        rt->base = event_base_new_with_config(ecfg);
        event_config_free(ecfg);
    }
    if (rt->base == NULL) {
        ksock_errstr_set(errstr, errstr_size, "cannot create libevent base");
        goto fail;
    }
    rt->post_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (rt->post_fd < 0) {
        ksock_errstr_set(errstr, errstr_size, "eventfd: %s", strerror(errno));
        goto fail;
    }
    rt->post_ev = event_new(rt->base, rt->post_fd, EV_READ | EV_PERSIST, on_post_fd, rt);
    if (rt->post_ev == NULL || event_add(rt->post_ev, NULL) != 0) {
        ksock_errstr_set(errstr, errstr_size, "cannot watch the post eventfd");
        goto fail;
    }
    if ((rc = ksock__log_init(rt)) != 0) {
        ksock_errstr_set(errstr, errstr_size, "cannot initialise logging: %s", ksock_strerror(rc));
        goto fail;
    }
    log_ready = true;
    /* The client API's default reconnect policy is part of the library. */
    rc = ksock_plugins_register_builtin(rt, ksock__backoff_entry, errstr, errstr_size);
    if (rc != 0) goto fail;
    *rtp = rt;
    return 0;
fail:
    if (log_ready) ksock__log_destroy(rt);
    ksock__plugins_destroy(rt);
    if (rt->post_ev) event_free(rt->post_ev);
    if (rt->post_fd >= 0) close(rt->post_fd);
    if (rt->base) event_base_free(rt->base);
    pthread_mutex_destroy(&rt->post_lock);
    free(rt);
    return rc;
}

/* ---- Configuration ---------------------------------------------------------- */

/*
 * Top-level keys. Each section is validated by the subsystem that owns it
 * (the log section by the logger, plugin options by their schemas); this
 * table catches unknown and mistyped sections.
 */
typedef struct {
    ksock_strlist_t plugin_path;
    const ksock_cfg_t *log;
    const ksock_cfg_t *kafka;
    const ksock_cfg_t *websocket;
    const ksock_cfg_t *auth;
    const ksock_cfg_t *bridge;
    const ksock_cfg_t *serializers;
    const ksock_cfg_t *admin;
} root_opts_t;

static const ksock_option_t root_schema[] = {
    KSOCK_OPTION("plugin_path", KSOCK_OPT_LIST, 0, NULL, root_opts_t, plugin_path,
                 "Directories searched for plugins before $KSOCK_PLUGIN_PATH and the installed "
                 "default"),
    KSOCK_OPTION("log", KSOCK_OPT_OBJECT, 0, NULL, root_opts_t, log,
                 "Logging: level, format and sinks (see the log section)"),
    KSOCK_OPTION("kafka", KSOCK_OPT_OBJECT, 0, NULL, root_opts_t, kafka,
                 "Kafka client properties: any librdkafka property, plus the keys of the kafka "
                 "section; \"bootstrap.servers\": \"embedded\" runs an in-memory cluster"),
    KSOCK_OPTION("websocket", KSOCK_OPT_OBJECT, 0, NULL, root_opts_t, websocket,
                 "WebSocket server for clients (docs/bridge.md): the options of the ws transport "
                 "plugin (listeners, subprotocols, TLS...), or of the one \"transport\" names. "
                 "Needs \"kafka\" and \"auth\"; absent: ksockd serves no clients"),
    KSOCK_OPTION("auth", KSOCK_OPT_OBJECT, 0, NULL, root_opts_t, auth,
                 "How WebSocket clients authenticate: {\"plugin\": \"jwt\", ...the plugin's "
                 "options}, or {\"plugin\": \"none\"} for anonymous clients allowed every topic "
                 "(local use only). Required with \"websocket\""),
    KSOCK_OPTION("bridge", KSOCK_OPT_OBJECT, 0, NULL, root_opts_t, bridge,
                 "How ksockd serves WebSocket clients: in-flight bound, drain timeout at "
                 "shutdown (see the bridge section)"),
    KSOCK_OPTION("serializers", KSOCK_OPT_OBJECT, 0, NULL, root_opts_t, serializers,
                 "The serializers WebSocket clients may choose, {\"NAME\": {the plugin's "
                 "options}, ...}, in order of preference: json's json_topics, say. Absent: every "
                 "serializer plugin in the search path that loads, with its defaults"),
    KSOCK_OPTION("admin", KSOCK_OPT_OBJECT, 0, NULL, root_opts_t, admin,
                 "ksockd's admin HTTP endpoint, /healthz, /readyz and /metrics (see the admin "
                 "section); absent: none"),
    KSOCK_OPTION_END};

const ksock_option_t *ksock_config_schema(const char *section)
{
    if (strcmp(section, "root") == 0) return root_schema;
    if (strcmp(section, "log") == 0) return ksock__log_schema();
    if (strcmp(section, "log.sink") == 0) return ksock__log_sink_schema();
    if (strcmp(section, "log.sink.console") == 0) return ksock__log_console_schema();
    if (strcmp(section, "kafka") == 0) return ksock_kafka_options_schema();
    return NULL;
}

static int check_root(const ksock_config_t *cfg, char *errstr, size_t errstr_size)
{
    const ksock_cfg_t *root = ksock_config_root(cfg);
    if (ksock_cfg_type(root) != KSOCK_CFG_OBJECT) {
        ksock_errstr_set(errstr, errstr_size,
                         "%s:%d:%d: the configuration must be a JSON object, got %s",
                         ksock_config_name(cfg), ksock_cfg_line(root), ksock_cfg_column(root),
                         ksock_cfg_type_name(ksock_cfg_type(root)));
        return KSOCK_E_CONFIG;
    }
    root_opts_t ro;
    memset(&ro, 0, sizeof(ro));
    int rc = ksock_options_apply(root_schema, sizeof(ksock_option_t), cfg, root, "ksockd", NULL,
                                 &ro, errstr, errstr_size);
    ksock_options_free(root_schema, sizeof(ksock_option_t), &ro);
    return rc;
}

int ksock_runtime_configure(ksock_runtime_t *rt, const ksock_config_t *cfg, char *errstr,
                            size_t errstr_size)
{
    int rc = check_root(cfg, errstr, errstr_size);
    if (rc != 0) return rc;
    const ksock_cfg_t *root = ksock_config_root(cfg);
    rc = ksock__plugins_configure(rt, cfg, root, errstr, errstr_size);
    if (rc != 0) return rc;
    return ksock__log_configure(rt, cfg, ksock_cfg_get(root, "log"), false, errstr, errstr_size);
}

int ksock_config_check(ksock_runtime_t *rt, const ksock_config_t *cfg, char *errstr,
                       size_t errstr_size)
{
    int rc = check_root(cfg, errstr, errstr_size);
    if (rc != 0) return rc;
    const ksock_cfg_t *root = ksock_config_root(cfg);
    rc = ksock__plugins_configure(rt, cfg, root, errstr, errstr_size);
    if (rc != 0) return rc;
    return ksock__log_configure(rt, cfg, ksock_cfg_get(root, "log"), true, errstr, errstr_size);
}

void ksock_runtime_adopt_config(ksock_runtime_t *rt, ksock_config_t *cfg)
{
    /*
     * Kept until destroy: instances created from a document borrow its nodes.
     * The list is linked through the documents themselves, so adopting
     * allocates nothing and cannot fail (the API returns void).
     */
    for (ksock_config_t *c = rt->owned_cfgs; c; c = *ksock__config_adopted_next(c))
        if (c == cfg) return;
    *ksock__config_adopted_next(cfg) = rt->owned_cfgs;
    rt->owned_cfgs = cfg;
}

int ksock_runtime_run(ksock_runtime_t *rt)
{
    rt->loop_thread = pthread_self();
    atomic_store(&rt->loop_thread_set, 1);
    int rc = event_base_loop(rt->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return rc < 0 ? KSOCK_E_INTERNAL : 0;
}

int ksock_runtime_run_once(ksock_runtime_t *rt, bool block)
{
    rt->loop_thread = pthread_self();
    atomic_store(&rt->loop_thread_set, 1);
    int rc = event_base_loop(rt->base, EVLOOP_ONCE | (block ? 0 : EVLOOP_NONBLOCK));
    return rc < 0 ? KSOCK_E_INTERNAL : 0;
}

void ksock_runtime_stop(ksock_runtime_t *rt)
{
    int expected = 0;
    atomic_compare_exchange_strong(&rt->stopping, &expected, 1);
    wake(rt);
}

bool ksock_runtime_is_stopping(const ksock_runtime_t *rt)
{
    return atomic_load(&((ksock_runtime_t *)rt)->stopping) == 2;
}

void ksock_runtime_destroy(ksock_runtime_t *rt)
{
    if (rt == NULL) return;
    /* Teardown in order: finish queued work, stop sinks, then plugins, then the loop. */
    run_posts(rt);
    atomic_store(&rt->stopping, 2);
    /* Kafka first: closing its handles fires callbacks that may still log. */
    if (rt->kafka_state_free) rt->kafka_state_free(rt->kafka_state);
    rt->kafka_state = NULL;
    if (rt->serde_state_free) rt->serde_state_free(rt->serde_state);
    rt->serde_state = NULL;
    ksock__log_destroy(rt);
    /*
     * Work queued since the first run_posts() (by those callbacks, or by sinks
     * while closing) runs now, seeing is_stopping(), so it frees its argument.
     */
    run_posts(rt);
    ksock__plugins_destroy(rt);
    for (size_t i = 0; i < rt->plugin_path_n; i++)
        free(rt->plugin_path[i]);
    free(rt->plugin_path);
    event_free(rt->post_ev);
    close(rt->post_fd);
    event_base_free(rt->base);
    pthread_mutex_destroy(&rt->post_lock);
    while (rt->owned_cfgs) {
        ksock_config_t *next = *ksock__config_adopted_next(rt->owned_cfgs);
        ksock_config_free(rt->owned_cfgs);
        rt->owned_cfgs = next;
    }
    free(rt);
}

struct event_base *ksock_runtime_event_base(ksock_runtime_t *rt)
{
    return rt->base;
}

bool ksock_runtime_on_loop_thread(const ksock_runtime_t *rt)
{
    if (!atomic_load(&((ksock_runtime_t *)rt)->loop_thread_set)) return true;
    return pthread_equal(rt->loop_thread, pthread_self());
}

void ksock_runtime_set_data(ksock_runtime_t *rt, void *data)
{
    rt->data = data;
}

void *ksock_runtime_get_data(const ksock_runtime_t *rt)
{
    return rt->data;
}

void *ksock__runtime_serde_state(ksock_runtime_t *rt)
{
    return rt->serde_state;
}

void ksock__runtime_set_serde_state(ksock_runtime_t *rt, void *state, void (*free_fn)(void *))
{
    if (rt->serde_state_free && rt->serde_state && rt->serde_state != state)
        rt->serde_state_free(rt->serde_state);
    rt->serde_state = state;
    rt->serde_state_free = free_fn;
}

void *ksock__runtime_kafka_state(ksock_runtime_t *rt)
{
    return rt->kafka_state;
}

void ksock__runtime_set_kafka_state(ksock_runtime_t *rt, void *state, void (*free_fn)(void *))
{
    rt->kafka_state = state;
    rt->kafka_state_free = free_fn;
}

/* ---- Timers -------------------------------------------------------------- */

struct ksock_timer_s {
    ksock_runtime_t *rt;
    struct event *ev;
    ksock_timer_cb cb;
    void *data;
    uint64_t repeat_ms;
    int in_cb;
    int closed;
};

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    ksock_timer_t *t = arg;
    if (t->repeat_ms) {
        struct timeval tv = {(time_t)(t->repeat_ms / 1000),
                             (suseconds_t)(t->repeat_ms % 1000) * 1000};
        evtimer_add(t->ev, &tv);
    }
    t->in_cb = 1;
    t->cb(t, t->data);
    t->in_cb = 0;
    /* Closing from inside the callback defers the free to here. */
    if (t->closed) {
        event_free(t->ev);
        free(t);
    }
}

int ksock_timer_init(ksock_runtime_t *rt, ksock_timer_t **tp, ksock_timer_cb cb, void *data)
{
    ksock_timer_t *t = calloc(1, sizeof(*t));
    if (t == NULL) return KSOCK_E_NOMEM;
    t->rt = rt;
    t->cb = cb;
    t->data = data;
    t->ev = evtimer_new(rt->base, on_timer, t);
    if (t->ev == NULL) {
        free(t);
        return KSOCK_E_NOMEM;
    }
    *tp = t;
    return 0;
}

int ksock_timer_start(ksock_timer_t *t, uint64_t timeout_ms, uint64_t repeat_ms)
{
    t->repeat_ms = repeat_ms;
    struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
    return evtimer_add(t->ev, &tv) == 0 ? 0 : KSOCK_E_INTERNAL;
}

void ksock_timer_stop(ksock_timer_t *t)
{
    t->repeat_ms = 0;
    evtimer_del(t->ev);
}

bool ksock_timer_is_active(const ksock_timer_t *t)
{
    return evtimer_pending(t->ev, NULL) != 0;
}

void ksock_timer_close(ksock_timer_t *t)
{
    if (t == NULL) return;
    t->repeat_ms = 0;
    evtimer_del(t->ev);
    if (t->in_cb) {
        t->closed = 1;
        return;
    }
    event_free(t->ev);
    free(t);
}

/* ---- Signals -------------------------------------------------------------- */

struct ksock_signal_s {
    struct event *ev;
    ksock_signal_cb cb;
    void *data;
};

static void on_signal(evutil_socket_t signum, short what, void *arg)
{
    ksock_signal_t *s = arg;
    s->cb(s, (int)signum, s->data);
}

int ksock_signal_start(ksock_runtime_t *rt, ksock_signal_t **sp, int signum, ksock_signal_cb cb,
                       void *data)
{
    ksock_signal_t *s = calloc(1, sizeof(*s));
    if (s == NULL) return KSOCK_E_NOMEM;
    s->cb = cb;
    s->data = data;
    s->ev = evsignal_new(rt->base, signum, on_signal, s);
    if (s->ev == NULL || evsignal_add(s->ev, NULL) != 0) {
        if (s->ev) event_free(s->ev);
        free(s);
        return KSOCK_E_INVAL;
    }
    *sp = s;
    return 0;
}

void ksock_signal_close(ksock_signal_t *s)
{
    if (s == NULL) return;
    event_free(s->ev);
    free(s);
}

/* ---- Errors ---------------------------------------------------------------- */

void ksock_on_error(ksock_runtime_t *rt, ksock_error_cb cb, void *data)
{
    rt->on_error = cb;
    rt->on_error_data = data;
}

typedef struct {
    int code;
    char *component;
    char *message;
} ksock__posted_error_t;

static void deliver_error(ksock_runtime_t *rt, void *arg)
{
    ksock__posted_error_t *pe = arg;
    if (rt->on_error && !ksock_runtime_is_stopping(rt)) {
        ksock_error_t e = {sizeof(e), pe->code, ksock_err_class(pe->code), pe->component,
                           pe->message};
        rt->on_error(rt, &e, rt->on_error_data);
    }
    free(pe->component);
    free(pe->message);
    free(pe);
}

void ksock_report_error(ksock_runtime_t *rt, int code, const char *component, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ksock_kv_t ctx[2] = {KSOCK_KV_STR("error", ksock_err_name(code)),
                         KSOCK_KV_BOOL("retriable", ksock_err_is_retriable(code))};
    ksock_log(rt, KSOCK_LOG_ERROR, component ? component : "core", ctx, 2, "%s", msg);
    if (rt->on_error == NULL) return;
    /*
     * Always deliver through the loop: the handler then never runs inside
     * the call that raised the error (which may hold locks) and always on
     * the loop thread.
     */
    ksock__posted_error_t *pe = calloc(1, sizeof(*pe));
    if (pe == NULL) return;
    pe->code = code;
    pe->component = ksock__strdup(component ? component : "core");
    pe->message = ksock__strdup(msg);
    /* Out of memory: the error was logged above; only the handler call is lost. */
    if (pe->component == NULL || pe->message == NULL ||
        ksock_runtime_post(rt, deliver_error, pe) != 0) {
        free(pe->component);
        free(pe->message);
        free(pe);
    }
}
