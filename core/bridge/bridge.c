/*
 * The bridge (docs/bridge.md): transport events in, envelopes decoded with
 * the connection's serializer, publishes sent to Kafka, replies encoded
 * and sent back.
 *
 * Files: this one (public API, transport events, serializers), conns.c,
 * publish.c; bridge_internal.h has what they share.
 *
 * Backpressure (docs/bridge.md, Bounds): a connection at max_inflight, or
 * with replies waiting for room in its send queue, is paused with the
 * transport's pause_read, so the client's publishes wait in TCP rather
 * than being refused; it resumes when acks bring it to 3/4 of the bound
 * and the waiting replies are sent.
 */
#include "bridge_internal.h"

/* ---- Serializers ------------------------------------------------------------ */

/* Make serializer `name`'s instance and add it to the bridge's list. */
int ksock__br_serializer_add(ksock_bridge_t *b, const char *name, const ksock_config_t *doc,
                             const ksock_cfg_t *opts, char *errstr, size_t errstr_size)
{
    ksock_plugin_t *p;
    int rc = ksock_plugin_find(b->rt, KSOCK_PLUGIN_SERIALIZER, name, &p, errstr, errstr_size);
    if (rc != 0) return rc;
    serializer_t *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->name = strdup(name)) == NULL) {
        free(s);
        return KSOCK_E_NOMEM;
    }
    rc = ksock_plugin_instance_new(b->rt, p, name, doc, opts, NULL, &s->pi, errstr, errstr_size);
    if (rc != 0) {
        free(s->name);
        free(s);
        return rc;
    }
    serializer_t **tail = &b->serializers; /* in order: the first is the preferred one */
    while (*tail)
        tail = &(*tail)->next;
    *tail = s;
    return 0;
}

/*
 * The serializer instance for `name`. A bridge made from a config serves
 * the ones it loaded at start; one made with ksock_bridge_new() loads a
 * serializer on first use with its default options. Loop thread.
 */
static int serializer_get(ksock_bridge_t *b, const char *name, serializer_t **out, char *err,
                          size_t errlen)
{
    for (serializer_t *s = b->serializers; s; s = s->next) {
        if (strcmp(s->name, name) == 0) {
            *out = s;
            return 0;
        }
    }
    if (b->serializers_fixed) {
        ksock_errstr_set(err, errlen, "serializer \"%s\" is not served", name);
        return KSOCK_E_NOENT;
    }
    int rc = ksock__br_serializer_add(b, name, NULL, NULL, err, errlen);
    if (rc != 0) return rc;
    return serializer_get(b, name, out, err, errlen);
}

/* Is `name` in the served set? Transport thread, under rlock (a bridge made from a config). */
static bool serializer_served(const ksock_bridge_t *b, const char *name)
{
    for (const serializer_t *s = b->serializers; s; s = s->next)
        if (strcmp(s->name, name) == 0) return true;
    return false;
}

/* ---- Transport events ------------------------------------------------------- */

/*
 * Transport thread. Only the authenticator and malloc run here; the
 * connection joins the table in on_open, on the loop.
 */
static int on_handshake(void *data, ksock_conn_id_t id, const ksock_handshake_t *hs,
                        void **conn_data, char *errstr, size_t errstr_size)
{
    ksock_bridge_t *b = data;
    atomic_fetch_add(&b->handshakes, 1);
    const char *sp = hs->subprotocol;
    if (sp == NULL || strncmp(sp, SUBPROTO_PREFIX, strlen(SUBPROTO_PREFIX)) != 0 ||
        sp[strlen(SUBPROTO_PREFIX)] == '\0') {
        ksock_errstr_set(errstr, errstr_size,
                         "a ksock.v1.<serializer> subprotocol is required (docs/protocol.md)");
        ksock_log(b->rt, KSOCK_LOG_INFO, COMPONENT,
                  (ksock_kv_t[]){KSOCK_KV_I64("conn", id), KSOCK_KV_STR("peer", hs->peer_addr)}, 2,
                  "refused: no ksock.v1 subprotocol");
        atomic_fetch_add(&b->refused, 1);
        atomic_fetch_add(&b->auth_failed[ksock__br_auth_reason(KSOCK_E_PROTO, NULL)], 1);
        return KSOCK_E_PROTO;
    }
    ksock_principal_t *p = NULL;
    int rc = 0;
    pthread_mutex_lock(&b->rlock); /* a reload swaps the authenticator and the serializers */
    if (b->serializers_fixed && !serializer_served(b, sp + strlen(SUBPROTO_PREFIX))) {
        ksock_errstr_set(errstr, errstr_size, "subprotocol %s is not served", sp);
        rc = KSOCK_E_PROTO;
    } else if (b->av != NULL) {
        rc = b->av->authenticate(b->auth->inst, hs, &p, errstr, errstr_size);
    } else {
        p = ksock_principal_new("anonymous");
        rc = p == NULL ? KSOCK_E_NOMEM
                       : ksock_principal_allow(p, "*", KSOCK_PERM_PUBLISH | KSOCK_PERM_SUBSCRIBE);
    }
    pthread_mutex_unlock(&b->rlock);
    if (rc == 0 && p == NULL) rc = KSOCK_E_INTERNAL;
    conn_t *c = rc == 0 ? calloc(1, sizeof(*c)) : NULL;
    if (rc == 0 && c == NULL) rc = KSOCK_E_NOMEM;
    if (rc == 0 &&
        (c->principal = p, rc = ksock__br_limits_admit(b, c, errstr, errstr_size)) != 0) {
        free(c); /* not counted: nothing else to undo */
        c = NULL;
    }
    if (rc != 0) {
        ksock_principal_free(p);
        ksock_log(b->rt, KSOCK_LOG_INFO, COMPONENT,
                  (ksock_kv_t[]){KSOCK_KV_I64("conn", id), KSOCK_KV_STR("peer", hs->peer_addr),
                                 KSOCK_KV_STR("code", ksock_err_name(rc))},
                  3, "refused: %s", errstr[0] ? errstr : ksock_strerror(rc));
        atomic_fetch_add(&b->refused, 1);
        if (rc != KSOCK_E_LIMIT) /* a limit is counted as one (limits.c), not as an auth failure */
            atomic_fetch_add(&b->auth_failed[ksock__br_auth_reason(rc, errstr)], 1);
        return rc;
    }
    c->id = id;
    *conn_data = c;
    return 0;
}

const unsigned ksock__br_http_statuses[BR_HTTP_REFUSALS] = {400, 403, 404, 426, 503, 0};

/* Transport thread: an upgrade the transport refused before asking us (ABI 1.2). */
static void on_refused(void *data, unsigned status, const char *why)
{
    ksock_bridge_t *b = data;
    size_t i = 0;
    while (i < BR_HTTP_REFUSALS - 1 && ksock__br_http_statuses[i] != status)
        i++;
    atomic_fetch_add(&b->refused_http[i], 1);
    /* The limit websocket.max_connections, not shutting down or out of memory (also 503). */
    if (status == 503 && why && strcmp(why, "too many connections") == 0)
        atomic_fetch_add(&b->refused_full, 1);
}

static void on_open(void *data, ksock_conn_id_t id, void *conn_data, const char *subprotocol)
{
    ksock_bridge_t *b = data;
    conn_t *c = conn_data;
    if (c == NULL) return; /* not one of ours (cannot happen on a listening transport) */
    c->id = id;
    ksock__br_conn_insert(b, c);
    b->stats.connections++;
    char err[512];
    serializer_t *s = NULL;
    const char *name = subprotocol ? subprotocol + strlen(SUBPROTO_PREFIX) : "";
    int rc = subprotocol ? serializer_get(b, name, &s, err, sizeof(err)) : KSOCK_E_PROTO;
    if (rc != 0) {
        ksock_log(b->rt, KSOCK_LOG_WARN, COMPONENT,
                  (ksock_kv_t[]){KSOCK_KV_I64("conn", id),
                                 KSOCK_KV_STR("subprotocol", subprotocol ? subprotocol : "")},
                  2, "no serializer for the subprotocol: %s", subprotocol ? err : "none");
        ksock__br_conn_close(b, c, 1002, "no serializer for this subprotocol");
        return;
    }
    c->ser = s;
    s->refs++; /* a reload keeps it alive while this connection uses it (reload.c) */
    ksock__br_token_arm(b, c);
    ksock_log(b->rt, KSOCK_LOG_DEBUG, COMPONENT,
              (ksock_kv_t[]){KSOCK_KV_I64("conn", id),
                             KSOCK_KV_STR("subject", c->principal->subject),
                             KSOCK_KV_STR("subprotocol", subprotocol)},
              3, "connection open");
}

static void on_message(void *data, ksock_conn_id_t id, void *conn_data, ksock_frame_type_t type,
                       const void *payload, size_t len)
{
    (void)id;
    (void)type;
    ksock_bridge_t *b = data;
    conn_t *c = conn_data;
    if (c == NULL || c->ser == NULL || c->closing || b->stopped) return;
    if (b->stall_ms > 0) { /* test hook (docs/bridge.md): stall the loop once */
        struct timespec ts = {(time_t)(b->stall_ms / 1000), (long)(b->stall_ms % 1000) * 1000000L};
        b->stall_ms = 0;
        nanosleep(&ts, NULL);
    }
    b->last_msg_ns = ksock_now_ns();
    char err[512];
    ksock_value_limits_t lim;
    ksock_serde_get_limits(b->rt, &lim);
    ksock_envelope_t env;
    ksock_envelope_init(&env);
    int rc = SV(c)->decode_envelope(SI(c), payload, len, &lim, &env, err, sizeof(err));
    if (rc != 0) {
        /* A well-formed envelope that breaks the rules is a protocol error, the rest decode errors.
         */
        int code = rc == KSOCK_E_PROTO   ? KSOCK_E_PROTO
                   : rc == KSOCK_E_LIMIT ? KSOCK_E_LIMIT
                                         : KSOCK_E_DECODE;
        /* A decoder leaves the id set when it decoded: echo it so a pipelining client can match. */
        ksock__br_reply_error(b, c, env.id, env.id ? env.id_len : 0, NULL, 0, code, err);
        ksock_envelope_clear(&env);
        return;
    }
    switch (env.op) {
    case KSOCK_OP_PUBLISH:
        ksock__br_do_publish(b, c, &env);
        break;
    case KSOCK_OP_PING: {
        ksock_envelope_t pong;
        ksock_envelope_init(&pong);
        pong.op = KSOCK_OP_PONG;
        pong.id = env.id;
        pong.id_len = env.id_len;
        ksock__br_reply(b, c, &pong);
        break;
    }
    case KSOCK_OP_PONG:
        break; /* an answer to nothing we sent; allowed ("either" direction), ignored */
    case KSOCK_OP_SUBSCRIBE:
        ksock__br_do_subscribe(b, c, &env);
        break;
    case KSOCK_OP_UNSUBSCRIBE:
        ksock__br_do_unsubscribe(b, c, &env);
        break;
    case KSOCK_OP_TOKEN:
        ksock__br_do_token(b, c, &env);
        break;
    default: {
        char msg[96];
        snprintf(msg, sizeof(msg), "op %s is sent by the server, not by clients",
                 ksock_op_name(env.op) ? ksock_op_name(env.op) : "?");
        ksock__br_reply_error(b, c, env.id, env.id_len, NULL, 0, KSOCK_E_PROTO, msg);
        break;
    }
    }
    ksock_envelope_clear(&env);
}

static void on_writable(void *data, ksock_conn_id_t id, void *conn_data)
{
    (void)id;
    ksock_bridge_t *b = data;
    conn_t *c = conn_data;
    if (c == NULL || c->closing || b->stopped) return;
    ksock__br_conn_flush_overflow(b, c);
    ksock__br_subs_writable(b, c);
    ksock__br_conn_update_pause(b, c);
    ksock__br_drain_check(b);
}

static void on_close(void *data, ksock_conn_id_t id, void *conn_data, int code, const char *reason,
                     int err)
{
    ksock_bridge_t *b = data;
    conn_t *c = conn_data;
    if (c == NULL) return;
    ksock_log(b->rt, KSOCK_LOG_DEBUG, COMPONENT,
              (ksock_kv_t[]){KSOCK_KV_I64("conn", id), KSOCK_KV_I64("code", code),
                             KSOCK_KV_STR("reason", reason ? reason : ""),
                             KSOCK_KV_I64("inflight", c->inflight)},
              4, "connection closed%s%s", err ? ": " : "", err ? ksock_err_name(err) : "");
    if (c->ovf_head) b->nwaiting--;
    if (code == 1009) b->stats.limit_too_big++; /* the transport's max_message_size */
    ksock__br_subs_conn_gone(b, c);
    ksock__br_serializer_release(b, c->ser); /* after its subscriptions left their groups */
    ksock__br_conn_remove(b, c);
    ksock__br_conn_free(c);
    ksock__br_drain_check(b);
}

/* ---- Public API ------------------------------------------------------------- */

int ksock_bridge_new(ksock_runtime_t *rt, ksock_plugin_instance_t *transport,
                     ksock_plugin_instance_t *auth, ksock_kafka_producer_t *producer,
                     const ksock_bridge_opts_t *opts, ksock_bridge_t **out, char *errstr,
                     size_t errstr_size)
{
    *out = NULL;
    if (rt == NULL || transport == NULL || producer == NULL) {
        ksock_errstr_set(errstr, errstr_size, "bridge: runtime, transport and producer are needed");
        return KSOCK_E_INVAL;
    }
    if (ksock_plugin_desc(transport->plugin)->kind != KSOCK_PLUGIN_TRANSPORT ||
        (auth && ksock_plugin_desc(auth->plugin)->kind != KSOCK_PLUGIN_AUTH)) {
        ksock_errstr_set(errstr, errstr_size, "bridge: wrong plugin kind for transport or auth");
        return KSOCK_E_INVAL;
    }
    ksock_bridge_opts_t o = {.size = sizeof(o)};
    if (opts) {
        if (opts->size < offsetof(ksock_bridge_opts_t, anonymous) + sizeof(bool)) {
            ksock_errstr_set(errstr, errstr_size, "bridge: opts->size too small");
            return KSOCK_E_INVAL;
        }
        o.max_inflight = opts->max_inflight;
        o.anonymous = opts->anonymous;
        if (KSOCK_HAS_FIELD(opts, ksock_bridge_opts_t, slow_policy)) {
            o.kafka = opts->kafka;
            o.slow_policy = opts->slow_policy;
        }
        if (KSOCK_HAS_FIELD(opts, ksock_bridge_opts_t, publish_burst)) {
            o.max_connections_per_principal = opts->max_connections_per_principal;
            o.publish_rate = opts->publish_rate;
            o.publish_burst = opts->publish_burst;
        }
    }
    if (o.slow_policy != KSOCK_BRIDGE_SLOW_CLOSE && o.slow_policy != KSOCK_BRIDGE_SLOW_DROP) {
        ksock_errstr_set(errstr, errstr_size, "bridge: unknown slow_policy %d", (int)o.slow_policy);
        return KSOCK_E_INVAL;
    }
    if (o.max_inflight == 0) o.max_inflight = KSOCK_BRIDGE_DEFAULT_MAX_INFLIGHT;
    if (auth == NULL && !o.anonymous) {
        ksock_errstr_set(errstr, errstr_size,
                         "bridge: no authenticator and anonymous access not enabled");
        return KSOCK_E_INVAL;
    }
    ksock_bridge_t *b = calloc(1, sizeof(*b));
    if (b == NULL) return KSOCK_E_NOMEM;
    b->nbuckets = 64;
    b->buckets = calloc(b->nbuckets, sizeof(*b->buckets));
    if (b->buckets == NULL || ksock__br_limits_init(b) != 0) {
        free(b->buckets);
        free(b);
        return KSOCK_E_NOMEM;
    }
    pthread_mutex_init(&b->rlock, NULL);
    if (o.kafka && ksock_kafka_conf_dup(o.kafka, &b->kconf) != 0) {
        ksock__br_limits_free(b);
        pthread_mutex_destroy(&b->rlock);
        free(b->buckets);
        free(b);
        return KSOCK_E_NOMEM;
    }
    o.kafka = NULL; /* b->kconf is the bridge's copy */
    b->lk_fd = -1;
    b->slow_policy = o.slow_policy;
    b->max_subscriptions = BRIDGE_MAX_SUBSCRIPTIONS;
    b->max_catchup = BRIDGE_MAX_CATCHUP;
    b->max_per_principal = o.max_connections_per_principal;
    b->publish_rate = o.publish_rate;
    b->publish_burst = o.publish_burst ? o.publish_burst : o.publish_rate;
    b->partition_refresh_ms = 10000;
    b->reader_linger_ms = 30000;
    b->slow_grace_ms = 500;
    b->lookup_timeout_ms = 5000;
    b->rt = rt;
    b->transport = transport;
    b->tv = transport->vtable;
    b->auth = auth;
    b->av = auth ? auth->vtable : NULL;
    b->producer = producer;
    b->opts = o;
    b->can_pause =
        KSOCK_HAS_FIELD(b->tv, ksock_transport_vtable_t, pause_read) && b->tv->pause_read != NULL;
    b->can_send_many =
        KSOCK_HAS_FIELD(b->tv, ksock_transport_vtable_t, send_many) && b->tv->send_many != NULL;
    b->resume_at = o.max_inflight - (o.max_inflight + 3) / 4;
    b->drain_timeout_ms = 5000;
    const char *stall = getenv("KSOCK_TEST_STALL_MS");
    if (stall) b->stall_ms = strtoull(stall, NULL, 10);
    *out = b;
    return 0;
}

int ksock_bridge_start(ksock_bridge_t *b, char *errstr, size_t errstr_size)
{
    if (b->started) {
        ksock_errstr_set(errstr, errstr_size, "bridge: already started");
        return KSOCK_E_STATE;
    }
    ksock_transport_events_t ev = {
        .size = sizeof(ev),
        .data = b,
        .on_handshake = on_handshake,
        .on_open = on_open,
        .on_message = on_message,
        .on_writable = on_writable,
        .on_close = on_close,
        .subprotocols = b->subprotocols,
        .on_refused = on_refused,
    };
    int rc = b->tv->listen(b->transport->inst, &ev, errstr, errstr_size);
    if (rc != 0) return rc;
    b->started = true;
    if (b->cfg) ksock__br_log_config(b);
    return 0;
}

void ksock_bridge_stop(ksock_bridge_t *b)
{
    if (b == NULL || !b->started || b->stopped) return;
    b->stopped = true;
    if (b->drain_timer) ksock_timer_stop(b->drain_timer);
    b->drain_cb = NULL;
    /* The close events this posts are handled if the loop runs again, else freed by the transport.
     */
    b->tv->stop(b->transport->inst);
}

int ksock_bridge_drain(ksock_bridge_t *b, uint64_t timeout_ms, ksock_bridge_drain_cb cb, void *data)
{
    if (b->draining || b->stopped) return KSOCK_E_STATE;
    if (b->drain_timer == NULL) {
        int rc = ksock_timer_init(b->rt, &b->drain_timer, ksock__br_drain_timer_cb, b);
        if (rc != 0) return rc;
    }
    int rc = ksock_timer_start(b->drain_timer, DRAIN_TICK_MS, DRAIN_TICK_MS);
    if (rc != 0) return rc;
    b->draining = true;
    if (timeout_ms == KSOCK_BRIDGE_DRAIN_CONFIGURED) timeout_ms = b->drain_timeout_ms;
    b->drain_deadline = ksock_now_ns() + timeout_ms * 1000000ull;
    b->drain_cb = cb;
    b->drain_data = data;
    /* Paused connections at their in-flight bound resume: what they hold is refused at once. */
    for (size_t i = 0; i < b->nbuckets; i++)
        for (conn_t *c = b->buckets[i]; c; c = c->next)
            ksock__br_conn_update_pause(b, c);
    return 0;
}

/*
 * ksock_bridge_stats has two symbol versions (core/libksock.map): 1.1's
 * reads the struct's size; 1.0's writes the six counters of the 1.0
 * struct, which had no size field, so a program built then cannot be
 * written past the end of its struct by this library.
 */
KSOCK_VISIBLE void ksock__bridge_stats_1_1(const ksock_bridge_t *b, ksock_bridge_stats_t *out);
KSOCK_VISIBLE void ksock__bridge_stats_1_0(const ksock_bridge_t *b, uint64_t out[6]);
__asm__(".symver ksock__bridge_stats_1_1,ksock_bridge_stats@@KSOCK_1.1");
__asm__(".symver ksock__bridge_stats_1_0,ksock_bridge_stats@KSOCK_1.0");

void ksock__bridge_stats_1_1(const ksock_bridge_t *b, ksock_bridge_stats_t *out)
{
    ksock_bridge_stats_t st = b->stats;
    st.refused = atomic_load(&b->refused);
    st.limit_principal = atomic_load(&b->refused_principal);
    st.limit_connections = atomic_load(&b->refused_full);
    size_t n = out->size < sizeof(st) ? out->size : sizeof(st);
    if (n > sizeof(st.size))
        memcpy((char *)out + sizeof(st.size), (char *)&st + sizeof(st.size), n - sizeof(st.size));
}

void ksock__bridge_stats_1_0(const ksock_bridge_t *b, uint64_t out[6])
{
    const ksock_bridge_stats_t *s = &b->stats;
    uint64_t v[6] = {s->connections, atomic_load(&b->refused),
                     s->published,   s->publish_errors,
                     s->dropped,     s->send_full};
    memcpy(out, v, sizeof(v));
}

void ksock_bridge_destroy(ksock_bridge_t *b)
{
    if (b == NULL) return;
    ksock_bridge_stop(b);
    if (b->owns_instances) {
        /* The transport first: destroyed, it delivers none of the close events it still holds. */
        ksock_plugin_instance_free(b->transport);
        ksock_plugin_instance_free(b->auth);
        b->transport = b->auth = NULL;
    }
    if (b->drain_timer) ksock_timer_close(b->drain_timer);
    for (pending_t *p = b->pending; p; p = p->next)
        p->bridge = NULL; /* a late delivery frees its own memory only */
    for (size_t i = 0; i < b->nbuckets; i++) {
        for (conn_t *c = b->buckets[i], *next; c; c = next) {
            next = c->next;
            ksock__br_subs_conn_gone(b, c);
            ksock__br_conn_free(c);
        }
    }
    free(b->buckets);
    ksock__br_limits_free(b); /* after the connections, which give their counts back */
    ksock__br_topics_free(b); /* those waiting for a lookup */
    ksock__br_retired_free(b);
    ksock__br_lookups_free(b);
    ksock_kafka_conf_free(b->kconf);
    free(b->fo_ids);
    free(b->fo_rc);
    free(b->fo_subs);
    free(b->fo_full);
    ksock__br_serializers_free(b->serializers);
    ksock__br_reload_free(b); /* the retired ones too */
    for (size_t i = 0; b->subprotocols && b->subprotocols[i]; i++)
        free((char *)b->subprotocols[i]);
    free(b->subprotocols);
    free(b);
}

void ksock_bridge_free(ksock_bridge_t *b)
{
    ksock_bridge_destroy(b);
}
