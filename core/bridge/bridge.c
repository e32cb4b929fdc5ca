/*
 * The bridge (docs/bridge.md): transport events in, envelopes decoded with
 * the connection's serializer, publishes sent to Kafka, replies encoded
 * and sent back.
 *
 * A delivery callback can fire after its connection is gone, so a pending
 * publish names its connection by id and looks it up when the outcome
 * arrives; a missing id means the reply is dropped. Pending publishes are
 * also on a list owned by the bridge, so that freeing the bridge first
 * detaches them and a late callback only frees its own memory.
 */
#include <ksock/bridge.h>
#include <ksock/error.h>
#include <ksock/log.h>
#include <ksock/runtime.h>
#include <ksock/serde.h>

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COMPONENT       "bridge"
#define SUBPROTO_PREFIX "ksock.v1."
/* Close codes (RFC 6455): 1013 Try Again Later, 1011 Internal Error. */
#define CLOSE_TRY_AGAIN 1013
#define CLOSE_INTERNAL  1011

typedef struct conn_s {
    ksock_conn_id_t id;
    struct conn_s *next; /* hash chain */
    ksock_principal_t *principal;
    const ksock_serializer_vtable_t *sv; /* set in on_open */
    void *sinst;
    uint32_t inflight;
    bool registered; /* in the table (on_open seen) */
    bool closing;    /* we asked the transport to close it */
} conn_t;

typedef struct pending_s {
    ksock_bridge_t *bridge; /* NULL once the bridge is freed */
    struct pending_s *prev, *next;
    ksock_conn_id_t conn;
    char *id; /* the publish's id, NULL if it had none */
    size_t id_len;
    char *topic;
} pending_t;

typedef struct serializer_s {
    char *name;
    ksock_plugin_instance_t *pi;
    struct serializer_s *next;
} serializer_t;

struct ksock_bridge_s {
    ksock_runtime_t *rt;
    ksock_plugin_instance_t *transport;
    const ksock_transport_vtable_t *tv;
    ksock_plugin_instance_t *auth;
    const ksock_auth_vtable_t *av;
    ksock_kafka_producer_t *producer;
    ksock_bridge_opts_t opts;
    conn_t **buckets;
    size_t nbuckets, nconns;
    pending_t *pending;
    serializer_t *serializers;
    bool started, stopped;
    ksock_bridge_stats_t stats;
};

/* ---- Connection table ------------------------------------------------------- */

static size_t bucket_of(const ksock_bridge_t *b, ksock_conn_id_t id)
{
    return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 20) & (b->nbuckets - 1);
}

static conn_t *conn_find(const ksock_bridge_t *b, ksock_conn_id_t id)
{
    for (conn_t *c = b->buckets[bucket_of(b, id)]; c; c = c->next)
        if (c->id == id) return c;
    return NULL;
}

/* Double the table when it holds more connections than buckets. */
static void table_grow(ksock_bridge_t *b)
{
    size_t n = b->nbuckets * 2;
    conn_t **nb = calloc(n, sizeof(*nb));
    if (nb == NULL) return; /* longer chains, still correct */
    conn_t **old = b->buckets;
    size_t oldn = b->nbuckets;
    b->buckets = nb;
    b->nbuckets = n;
    for (size_t i = 0; i < oldn; i++) {
        for (conn_t *c = old[i], *next; c; c = next) {
            next = c->next;
            size_t k = bucket_of(b, c->id);
            c->next = nb[k];
            nb[k] = c;
        }
    }
    free(old);
}

static void conn_insert(ksock_bridge_t *b, conn_t *c)
{
    if (b->nconns >= b->nbuckets) table_grow(b);
    size_t k = bucket_of(b, c->id);
    c->next = b->buckets[k];
    b->buckets[k] = c;
    c->registered = true;
    b->nconns++;
}

static void conn_remove(ksock_bridge_t *b, conn_t *c)
{
    if (!c->registered) return;
    for (conn_t **pp = &b->buckets[bucket_of(b, c->id)]; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            b->nconns--;
            break;
        }
    }
    c->registered = false;
}

static void conn_free(conn_t *c)
{
    if (c == NULL) return;
    ksock_principal_free(c->principal);
    free(c);
}

/* ---- Serializers ------------------------------------------------------------ */

/*
 * The serializer instance for `name`, created on first use with its
 * default options and kept until the bridge is freed. Loop thread.
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
    ksock_plugin_t *p;
    int rc = ksock_plugin_find(b->rt, KSOCK_PLUGIN_SERIALIZER, name, &p, err, errlen);
    if (rc != 0) return rc;
    serializer_t *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->name = strdup(name)) == NULL) {
        free(s);
        return KSOCK_E_NOMEM;
    }
    rc = ksock_plugin_instance_new(b->rt, p, name, NULL, NULL, NULL, &s->pi, err, errlen);
    if (rc != 0) {
        free(s->name);
        free(s);
        return rc;
    }
    s->next = b->serializers;
    b->serializers = s;
    *out = s;
    return 0;
}

/* ---- Replies ---------------------------------------------------------------- */

static void conn_close(ksock_bridge_t *b, conn_t *c, int code, const char *reason)
{
    if (c->closing) return;
    c->closing = true;
    b->tv->close(b->transport->inst, c->id, code, reason);
}

/*
 * Encode `env` with the connection's serializer and queue it. A full send
 * queue means the client does not read its replies: dropping one silently
 * would leave a publish unanswered, so the connection is closed with 1013
 * instead and the client retries after reconnecting.
 */
static void reply(ksock_bridge_t *b, conn_t *c, const ksock_envelope_t *env)
{
    if (c->closing || c->sv == NULL) return;
    char err[256];
    ksock_buf_t buf = KSOCK_BUF_INIT;
    int rc = c->sv->encode_envelope(c->sinst, env, &buf, err, sizeof(err));
    if (rc != 0) {
        ksock_log(
            b->rt, KSOCK_LOG_ERROR, COMPONENT,
            (ksock_kv_t[]){KSOCK_KV_I64("conn", c->id), KSOCK_KV_STR("op", ksock_op_name(env->op))},
            2, "cannot encode a reply: %s", err);
        ksock_buf_free(&buf);
        conn_close(b, c, CLOSE_INTERNAL, "cannot encode a reply");
        return;
    }
    ksock_frame_t *f = ksock_frame_adopt(c->sv->frame_type(c->sinst), buf.data, buf.len);
    if (f == NULL) {
        ksock_buf_free(&buf);
        conn_close(b, c, CLOSE_INTERNAL, "out of memory");
        return;
    }
    rc = b->tv->send(b->transport->inst, c->id, f);
    ksock_frame_unref(f);
    if (rc == KSOCK_E_QUEUE_FULL) {
        b->stats.send_full++;
        ksock_log(b->rt, KSOCK_LOG_WARN, COMPONENT, (ksock_kv_t[]){KSOCK_KV_I64("conn", c->id)}, 1,
                  "send queue full (client not reading replies): closing with 1013");
        conn_close(b, c, CLOSE_TRY_AGAIN, "send queue full");
    }
}

static void reply_error(ksock_bridge_t *b, conn_t *c, const char *id, size_t id_len,
                        const char *topic, size_t topic_len, int code, const char *msg)
{
    ksock_envelope_t e;
    ksock_envelope_init(&e);
    e.op = KSOCK_OP_ERROR;
    e.id = id;
    e.id_len = id_len;
    if (topic && topic_len > 0) {
        e.topic = topic;
        e.topic_len = topic_len;
    }
    e.error_code = code;
    e.error_message = msg;
    e.error_message_len = msg ? strlen(msg) : 0;
    reply(b, c, &e);
}

/* ---- Publish ---------------------------------------------------------------- */

/* The protocol's Kafka codes for a send or delivery failure (docs/bridge.md). */
static int kafka_code(int err)
{
    switch (err) {
    case KSOCK_E_KAFKA:
    case KSOCK_E_KAFKA_FATAL:
    case KSOCK_E_UNKNOWN_TOPIC:
    case KSOCK_E_TOOBIG:
    case KSOCK_E_QUEUE_FULL:
        return err;
    default:
        return ksock_err_is_retriable(err) ? KSOCK_E_KAFKA : KSOCK_E_KAFKA_FATAL;
    }
}

static void pending_free(pending_t *p)
{
    free(p->id);
    free(p->topic);
    free(p);
}

static void pending_unlink(ksock_bridge_t *b, pending_t *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        b->pending = p->next;
    if (p->next) p->next->prev = p->prev;
}

static void on_delivery(ksock_kafka_producer_t *prod, const ksock_kafka_delivery_t *d, void *data)
{
    (void)prod;
    pending_t *p = data;
    ksock_bridge_t *b = p->bridge;
    if (b == NULL) { /* the bridge is gone */
        pending_free(p);
        return;
    }
    pending_unlink(b, p);
    conn_t *c = conn_find(b, p->conn);
    if (d->err == 0)
        b->stats.published++;
    else
        b->stats.publish_errors++;
    if (c == NULL) {
        b->stats.dropped++;
        pending_free(p);
        return;
    }
    c->inflight--;
    if (d->err == 0) {
        ksock_envelope_t e;
        ksock_envelope_init(&e);
        e.op = KSOCK_OP_ACK;
        e.id = p->id;
        e.id_len = p->id_len;
        e.topic = p->topic;
        e.topic_len = strlen(p->topic);
        e.partition = d->partition;
        e.offset = d->offset;
        reply(b, c, &e);
    } else {
        reply_error(b, c, p->id, p->id_len, p->topic, strlen(p->topic), kafka_code(d->err),
                    d->errstr ? d->errstr : ksock_strerror(d->err));
    }
    pending_free(p);
}

static char *memdup_z(const char *s, size_t n)
{
    char *r = malloc(n + 1);
    if (r) {
        if (n) memcpy(r, s, n);
        r[n] = '\0';
    }
    return r;
}

static void do_publish(ksock_bridge_t *b, conn_t *c, const ksock_envelope_t *env)
{
    char msg[256];
    /* Kafka takes NUL-terminated names: a NUL inside would make us check one topic and produce to
     * another. */
    if (memchr(env->topic, '\0', env->topic_len) != NULL) {
        reply_error(b, c, env->id, env->id_len, NULL, 0, KSOCK_E_PROTO, "topic contains NUL");
        return;
    }
    char *topic = memdup_z(env->topic, env->topic_len);
    if (topic == NULL) {
        reply_error(b, c, env->id, env->id_len, NULL, 0, KSOCK_E_NOMEM, "out of memory");
        return;
    }
    /* From here every refusal names the topic and frees what was made so far. */
    ksock_kafka_header_t *hdrs = NULL;
    char *names = NULL;
    pending_t *p = NULL;
    int code;
    const char *why;
    if (!ksock_principal_can(c->principal, topic, KSOCK_PERM_PUBLISH)) {
        code = KSOCK_E_FORBIDDEN;
        why = "not allowed to publish to this topic";
        b->stats.publish_errors++;
        goto refuse;
    }
    if (c->inflight >= b->opts.max_inflight) {
        snprintf(msg, sizeof(msg), "%u publishes in flight on this connection: wait for acks",
                 (unsigned)c->inflight);
        code = KSOCK_E_QUEUE_FULL;
        why = msg;
        b->stats.publish_errors++;
        goto refuse;
    }
    /* Header names must be NUL-terminated too; copy them into one block. */
    if (env->nheaders > 0) {
        size_t total = 0;
        for (size_t i = 0; i < env->nheaders; i++) {
            if (memchr(env->headers[i].key, '\0', env->headers[i].key_len) != NULL) {
                code = KSOCK_E_PROTO;
                why = "header name contains NUL";
                goto refuse;
            }
            total += env->headers[i].key_len + 1;
        }
        hdrs = calloc(env->nheaders, sizeof(*hdrs));
        names = malloc(total);
        if (hdrs == NULL || names == NULL) goto nomem;
        char *w = names;
        for (size_t i = 0; i < env->nheaders; i++) {
            const ksock_header_t *h = &env->headers[i];
            memcpy(w, h->key, h->key_len);
            w[h->key_len] = '\0';
            hdrs[i].name = w;
            w += h->key_len + 1;
            hdrs[i].value = h->value.present ? (h->value.data ? h->value.data : "") : NULL;
            hdrs[i].value_len = h->value.present ? h->value.len : 0;
        }
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL || (env->id && (p->id = memdup_z(env->id, env->id_len)) == NULL)) goto nomem;
    p->bridge = b;
    p->conn = c->id;
    p->id_len = env->id_len;
    p->topic = topic;
    /* An empty key or value is not a null one: keep a non-NULL pointer for present bytes. */
    ksock_kafka_record_t rec = {
        .topic = topic,
        .key = env->key.present ? (env->key.data ? env->key.data : "") : NULL,
        .key_len = env->key.present ? env->key.len : 0,
        .value = env->value.present ? (env->value.data ? env->value.data : "") : NULL,
        .value_len = env->value.present ? env->value.len : 0,
        .headers = hdrs,
        .header_count = env->nheaders,
        .partition = env->partition >= 0 ? env->partition : 0,
        .flags = env->partition >= 0 ? KSOCK_KAFKA_RECORD_F_PARTITION : 0,
        .data = p,
    };
    int rc = ksock_kafka_send(b->producer, &rec, on_delivery);
    free(hdrs);
    free(names);
    if (rc != 0) {
        b->stats.publish_errors++;
        reply_error(b, c, env->id, env->id_len, env->topic, env->topic_len, kafka_code(rc),
                    ksock_strerror(rc));
        pending_free(p); /* frees topic too */
        return;
    }
    p->next = b->pending;
    if (b->pending) b->pending->prev = p;
    b->pending = p;
    c->inflight++;
    return;

nomem:
    code = KSOCK_E_NOMEM;
    why = "out of memory";
refuse:
    reply_error(b, c, env->id, env->id_len, env->topic, env->topic_len, code, why);
    if (p) {
        free(p->id);
        free(p);
    }
    free(hdrs);
    free(names);
    free(topic);
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
    const char *sp = hs->subprotocol;
    if (sp == NULL || strncmp(sp, SUBPROTO_PREFIX, strlen(SUBPROTO_PREFIX)) != 0 ||
        sp[strlen(SUBPROTO_PREFIX)] == '\0') {
        ksock_errstr_set(errstr, errstr_size,
                         "a ksock.v1.<serializer> subprotocol is required (docs/protocol.md)");
        ksock_log(b->rt, KSOCK_LOG_INFO, COMPONENT,
                  (ksock_kv_t[]){KSOCK_KV_I64("conn", id), KSOCK_KV_STR("peer", hs->peer_addr)}, 2,
                  "refused: no ksock.v1 subprotocol");
        return KSOCK_E_PROTO;
    }
    ksock_principal_t *p = NULL;
    int rc;
    if (b->av != NULL) {
        rc = b->av->authenticate(b->auth->inst, hs, &p, errstr, errstr_size);
    } else {
        p = ksock_principal_new("anonymous");
        rc = p == NULL ? KSOCK_E_NOMEM
                       : ksock_principal_allow(p, "*", KSOCK_PERM_PUBLISH | KSOCK_PERM_SUBSCRIBE);
    }
    if (rc == 0 && p == NULL) rc = KSOCK_E_INTERNAL;
    conn_t *c = rc == 0 ? calloc(1, sizeof(*c)) : NULL;
    if (rc == 0 && c == NULL) rc = KSOCK_E_NOMEM;
    if (rc != 0) {
        ksock_principal_free(p);
        ksock_log(b->rt, KSOCK_LOG_INFO, COMPONENT,
                  (ksock_kv_t[]){KSOCK_KV_I64("conn", id), KSOCK_KV_STR("peer", hs->peer_addr),
                                 KSOCK_KV_STR("code", ksock_err_name(rc))},
                  3, "refused: %s", errstr[0] ? errstr : ksock_strerror(rc));
        return rc;
    }
    c->id = id;
    c->principal = p;
    *conn_data = c;
    return 0;
}

static void on_open(void *data, ksock_conn_id_t id, void *conn_data, const char *subprotocol)
{
    ksock_bridge_t *b = data;
    conn_t *c = conn_data;
    if (c == NULL) return; /* not one of ours (cannot happen on a listening transport) */
    c->id = id;
    conn_insert(b, c);
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
        conn_close(b, c, 1002, "no serializer for this subprotocol");
        return;
    }
    c->sv = s->pi->vtable;
    c->sinst = s->pi->inst;
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
    if (c == NULL || c->sv == NULL || c->closing) return;
    char err[512];
    ksock_value_limits_t lim;
    ksock_serde_get_limits(b->rt, &lim);
    ksock_envelope_t env;
    ksock_envelope_init(&env);
    int rc = c->sv->decode_envelope(c->sinst, payload, len, &lim, &env, err, sizeof(err));
    if (rc != 0) {
        /* A well-formed envelope that breaks the rules is a protocol error, the rest decode errors.
         */
        int code = rc == KSOCK_E_PROTO   ? KSOCK_E_PROTO
                   : rc == KSOCK_E_LIMIT ? KSOCK_E_LIMIT
                                         : KSOCK_E_DECODE;
        ksock_envelope_clear(&env);
        reply_error(b, c, NULL, 0, NULL, 0, code, err);
        return;
    }
    switch (env.op) {
    case KSOCK_OP_PUBLISH:
        do_publish(b, c, &env);
        break;
    case KSOCK_OP_PING: {
        ksock_envelope_t pong;
        ksock_envelope_init(&pong);
        pong.op = KSOCK_OP_PONG;
        pong.id = env.id;
        pong.id_len = env.id_len;
        reply(b, c, &pong);
        break;
    }
    case KSOCK_OP_PONG:
        break; /* an answer to nothing we sent; allowed ("either" direction), ignored */
    case KSOCK_OP_SUBSCRIBE:
    case KSOCK_OP_UNSUBSCRIBE:
        reply_error(b, c, env.id, env.id_len, env.topic, env.topic_len, KSOCK_E_UNSUPPORTED,
                    "subscribe and unsubscribe are not supported yet by this server");
        break;
    default: {
        char msg[96];
        snprintf(msg, sizeof(msg), "op %s is sent by the server, not by clients",
                 ksock_op_name(env.op) ? ksock_op_name(env.op) : "?");
        reply_error(b, c, env.id, env.id_len, NULL, 0, KSOCK_E_PROTO, msg);
        break;
    }
    }
    ksock_envelope_clear(&env);
}

static void on_writable(void *data, ksock_conn_id_t id, void *conn_data)
{
    (void)data;
    (void)id;
    (void)conn_data; /* replies never wait for the queue: a full one closes the connection */
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
    conn_remove(b, c);
    conn_free(c);
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
    if (b->buckets == NULL) {
        free(b);
        return KSOCK_E_NOMEM;
    }
    b->rt = rt;
    b->transport = transport;
    b->tv = transport->vtable;
    b->auth = auth;
    b->av = auth ? auth->vtable : NULL;
    b->producer = producer;
    b->opts = o;
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
    };
    int rc = b->tv->listen(b->transport->inst, &ev, errstr, errstr_size);
    if (rc == 0) b->started = true;
    return rc;
}

void ksock_bridge_stop(ksock_bridge_t *b)
{
    if (b == NULL || !b->started || b->stopped) return;
    b->stopped = true;
    b->tv->stop(b->transport->inst);
    /* The transport posts the close events of the connections it closed: deliver them now. */
    ksock_runtime_run_once(b->rt, false);
}

void ksock_bridge_stats(const ksock_bridge_t *b, ksock_bridge_stats_t *out)
{
    *out = b->stats;
}

void ksock_bridge_free(ksock_bridge_t *b)
{
    if (b == NULL) return;
    ksock_bridge_stop(b);
    for (pending_t *p = b->pending; p; p = p->next)
        p->bridge = NULL; /* a late delivery frees its own memory only */
    for (size_t i = 0; i < b->nbuckets; i++) {
        for (conn_t *c = b->buckets[i], *next; c; c = next) {
            next = c->next;
            conn_free(c);
        }
    }
    free(b->buckets);
    for (serializer_t *s = b->serializers, *next; s; s = next) {
        next = s->next;
        ksock_plugin_instance_free(s->pi);
        free(s->name);
        free(s);
    }
    free(b);
}
