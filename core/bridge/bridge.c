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
 *
 * Backpressure (docs/bridge.md, Bounds): a connection at max_inflight, or
 * with replies waiting for room in its send queue, is paused with the
 * transport's pause_read, so the client's publishes wait in TCP rather
 * than being refused; it resumes when acks bring it to 3/4 of the bound
 * and the waiting replies are sent.
 */
#include <ksock/bridge.h>
#include <ksock/error.h>
#include <ksock/log.h>
#include <ksock/runtime.h>
#include <ksock/serde.h>

#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define COMPONENT       "bridge"
#define SUBPROTO_PREFIX "ksock.v1."
/* Close codes (RFC 6455): 1013 Try Again Later, 1011 Internal Error. */
#define CLOSE_TRY_AGAIN 1013
#define CLOSE_INTERNAL  1011
/* A drain ends only after clients were quiet this long (see drain_done). */
#define DRAIN_QUIET_MS 250
#define DRAIN_TICK_MS  50

typedef struct reply_s {
    struct reply_s *next;
    ksock_frame_t *frame;
} reply_t;

typedef struct conn_s {
    ksock_conn_id_t id;
    struct conn_s *next; /* hash chain */
    ksock_principal_t *principal;
    const ksock_serializer_vtable_t *sv; /* set in on_open */
    void *sinst;
    uint32_t inflight;
    reply_t *ovf_head, *ovf_tail; /* replies waiting for room in the send queue, in order */
    bool registered;              /* in the table (on_open seen) */
    bool closing;                 /* we asked the transport to close it */
    bool paused;                  /* we asked the transport to stop delivering its messages */
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
    bool can_pause;             /* the transport has pause_read (ABI 1.1) */
    uint32_t resume_at;         /* in flight at or below which a paused connection resumes */
    bool draining;              /* ksock_bridge_drain() called */
    size_t nwaiting;            /* connections with replies in their overflow list */
    ksock_timer_t *drain_timer; /* polls the drain every DRAIN_TICK_MS */
    uint64_t drain_deadline;    /* ksock_now_ns() */
    uint64_t last_msg_ns;       /* the last message a client sent */
    ksock_bridge_drain_cb drain_cb;
    void *drain_data;
    uint64_t stall_ms; /* KSOCK_TEST_STALL_MS: test hook, see on_message */
    ksock_bridge_stats_t stats;
    _Atomic uint64_t refused; /* handshakes refused: counted on the transport's thread */
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
    for (reply_t *r = c->ovf_head, *next; r; r = next) {
        next = r->next;
        ksock_frame_unref(r->frame);
        free(r);
    }
    ksock_principal_free(c->principal);
    free(c);
}

/*
 * Pause reading a connection that is at its in-flight bound or has
 * replies waiting, and resume it once both are gone (with hysteresis on
 * the in-flight count, so it does not flap on every ack). While draining
 * publishes add nothing in flight (they are refused), so only waiting
 * replies keep a connection paused.
 */
static void conn_update_pause(ksock_bridge_t *b, conn_t *c)
{
    if (!b->can_pause || c->closing || b->stopped) return;
    bool want;
    if (c->ovf_head != NULL)
        want = true;
    else if (b->draining)
        want = false;
    else if (c->inflight >= b->opts.max_inflight)
        want = true;
    else if (c->inflight <= b->resume_at)
        want = false;
    else
        want = c->paused;
    if (want == c->paused) return;
    c->paused = want;
    if (want) b->stats.paused++;
    b->tv->pause_read(b->transport->inst, c->id, want);
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

/* Send the replies that waited for room, in order, until the queue is full again. */
static void conn_flush_overflow(ksock_bridge_t *b, conn_t *c)
{
    if (c->ovf_head == NULL) return;
    while (c->ovf_head) {
        reply_t *r = c->ovf_head;
        int rc = b->tv->send(b->transport->inst, c->id, r->frame);
        if (rc == KSOCK_E_QUEUE_FULL) break; /* on_writable comes again */
        c->ovf_head = r->next;
        if (c->ovf_head == NULL) c->ovf_tail = NULL;
        ksock_frame_unref(r->frame);
        free(r);
    }
    if (c->ovf_head == NULL) b->nwaiting--;
}

/*
 * A full send queue means the client reads its replies slower than it
 * sends publishes. With pause_read the reply waits in the connection's
 * overflow list and reading stops until on_writable has sent it, so the
 * list holds at most the replies of what was in flight. A transport
 * without pause_read leaves no bounded way to wait: the connection is
 * closed with 1013 (a reply dropped silently would leave a publish
 * unanswered).
 */
static void send_frame(ksock_bridge_t *b, conn_t *c, ksock_frame_t *f)
{
    int rc = c->ovf_head ? KSOCK_E_QUEUE_FULL : b->tv->send(b->transport->inst, c->id, f);
    if (rc != KSOCK_E_QUEUE_FULL) return;
    b->stats.send_full++;
    reply_t *r = b->can_pause ? malloc(sizeof(*r)) : NULL;
    if (r == NULL) {
        ksock_log(b->rt, KSOCK_LOG_WARN, COMPONENT, (ksock_kv_t[]){KSOCK_KV_I64("conn", c->id)}, 1,
                  "send queue full (client not reading replies): closing with 1013");
        conn_close(b, c, CLOSE_TRY_AGAIN, "send queue full");
        return;
    }
    r->next = NULL;
    r->frame = ksock_frame_ref(f);
    if (c->ovf_head == NULL) b->nwaiting++;
    if (c->ovf_tail)
        c->ovf_tail->next = r;
    else
        c->ovf_head = r;
    c->ovf_tail = r;
    conn_update_pause(b, c);
}

/* Encode `env` with the connection's serializer and send it (send_frame). */
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
    send_frame(b, c, f);
    ksock_frame_unref(f);
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

/* ---- Draining ---------------------------------------------------------------- */

static void drain_finish(ksock_bridge_t *b, int status)
{
    ksock_bridge_drain_cb cb = b->drain_cb;
    b->drain_cb = NULL;
    if (b->drain_timer) ksock_timer_stop(b->drain_timer);
    if (cb) cb(b, status, b->drain_data);
}

/*
 * A drain is done when no publish is pending, no reply waits for room,
 * and no client sent anything for DRAIN_QUIET_MS. The last condition is
 * for the close that follows: libwebsockets 4.1 does not read on after
 * sending its close frame when the peer is still sending, so the socket is
 * reset, and a reset can destroy replies the client has not read yet. A
 * client stops sending once it has been answered KSOCK_E_SHUTDOWN.
 */
static bool drain_done(const ksock_bridge_t *b)
{
    return b->pending == NULL && b->nwaiting == 0 &&
           ksock_now_ns() - b->last_msg_ns >= DRAIN_QUIET_MS * 1000000ull;
}

/* After a delivery, a flush or a close. */
static void drain_check(ksock_bridge_t *b)
{
    if (b->draining && b->drain_cb && drain_done(b)) drain_finish(b, 0);
}

/*
 * The drain timer, every DRAIN_TICK_MS (so the callback never runs inside
 * ksock_bridge_drain()). At the deadline what is still pending may yet
 * reach Kafka, so it is answered "outcome unknown" (-27, retriable), never
 * "not produced"; its late delivery report only frees memory.
 */
static void drain_timer_cb(ksock_timer_t *t, void *data)
{
    (void)t;
    ksock_bridge_t *b = data;
    if (drain_done(b)) {
        drain_finish(b, 0);
        return;
    }
    if (ksock_now_ns() < b->drain_deadline) return;
    if (b->pending == NULL) {
        drain_finish(b, KSOCK_E_TIMEDOUT);
        return;
    }
    while (b->pending) {
        pending_t *p = b->pending;
        pending_unlink(b, p);
        p->bridge = NULL;
        b->stats.drain_unknown++;
        conn_t *c = b->stopped ? NULL : conn_find(b, p->conn);
        if (c) {
            c->inflight--;
            reply_error(b, c, p->id, p->id_len, p->topic, strlen(p->topic), KSOCK_E_KAFKA,
                        "server shutting down: no delivery report in time; the record may or may "
                        "not be in Kafka");
        }
    }
    ksock_log(b->rt, KSOCK_LOG_WARN, COMPONENT,
              (ksock_kv_t[]){KSOCK_KV_I64("unknown", (int64_t)b->stats.drain_unknown)}, 1,
              "drain timed out: publishes still pending were answered with an unknown outcome");
    drain_finish(b, KSOCK_E_TIMEDOUT);
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
    conn_t *c = b->stopped ? NULL : conn_find(b, p->conn);
    if (d->err == 0)
        b->stats.published++;
    else
        b->stats.publish_errors++;
    if (c == NULL) {
        b->stats.dropped++;
        pending_free(p);
        drain_check(b);
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
    conn_update_pause(b, c);
    drain_check(b);
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

/*
 * Kafka's own rule for topic names (1-249 of [a-zA-Z0-9._-], not "." or
 * ".."), checked here so that nothing else reaches Kafka: no NUL that would
 * make us check one topic and produce to another, no byte a reply or a log
 * line would have to escape.
 */
static bool topic_valid(const char *t, size_t n)
{
    if (t == NULL || n == 0 || n > 249) return false;
    if ((n == 1 && t[0] == '.') || (n == 2 && t[0] == '.' && t[1] == '.')) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)t[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

static void do_publish(ksock_bridge_t *b, conn_t *c, const ksock_envelope_t *env)
{
    char msg[256];
    if (!topic_valid(env->topic, env->topic_len)) {
        /* Not echoed: it is not a name, and may hold bytes a reply cannot carry. */
        reply_error(b, c, env->id, env->id_len, NULL, 0, KSOCK_E_PROTO,
                    "invalid topic name: Kafka allows 1 to 249 characters of [a-zA-Z0-9._-], "
                    "not \".\" or \"..\"");
        return;
    }
    if (b->draining) {
        b->stats.shutdown_refused++;
        reply_error(b, c, env->id, env->id_len, env->topic, env->topic_len, KSOCK_E_SHUTDOWN,
                    "server shutting down: not produced; publish again after reconnecting");
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
    if (c->inflight >= b->opts.max_inflight) { /* only without pause_read (a 1.0 transport) */
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
    if (c->inflight > b->stats.inflight_max) b->stats.inflight_max = c->inflight;
    conn_update_pause(b, c);
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
        atomic_fetch_add(&b->refused, 1);
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
        atomic_fetch_add(&b->refused, 1);
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
    if (c == NULL || c->sv == NULL || c->closing || b->stopped) return;
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
    int rc = c->sv->decode_envelope(c->sinst, payload, len, &lim, &env, err, sizeof(err));
    if (rc != 0) {
        /* A well-formed envelope that breaks the rules is a protocol error, the rest decode errors.
         */
        int code = rc == KSOCK_E_PROTO   ? KSOCK_E_PROTO
                   : rc == KSOCK_E_LIMIT ? KSOCK_E_LIMIT
                                         : KSOCK_E_DECODE;
        /* A decoder leaves the id set when it decoded: echo it so a pipelining client can match. */
        reply_error(b, c, env.id, env.id ? env.id_len : 0, NULL, 0, code, err);
        ksock_envelope_clear(&env);
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
    (void)id;
    ksock_bridge_t *b = data;
    conn_t *c = conn_data;
    if (c == NULL || c->closing || b->stopped) return;
    conn_flush_overflow(b, c);
    conn_update_pause(b, c);
    drain_check(b);
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
    conn_remove(b, c);
    conn_free(c);
    drain_check(b);
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
    b->can_pause =
        KSOCK_HAS_FIELD(b->tv, ksock_transport_vtable_t, pause_read) && b->tv->pause_read != NULL;
    b->resume_at = o.max_inflight - (o.max_inflight + 3) / 4;
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
    };
    int rc = b->tv->listen(b->transport->inst, &ev, errstr, errstr_size);
    if (rc == 0) b->started = true;
    return rc;
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
        int rc = ksock_timer_init(b->rt, &b->drain_timer, drain_timer_cb, b);
        if (rc != 0) return rc;
    }
    int rc = ksock_timer_start(b->drain_timer, DRAIN_TICK_MS, DRAIN_TICK_MS);
    if (rc != 0) return rc;
    b->draining = true;
    b->drain_deadline = ksock_now_ns() + timeout_ms * 1000000ull;
    b->drain_cb = cb;
    b->drain_data = data;
    /* Paused connections at their in-flight bound resume: what they hold is refused at once. */
    for (size_t i = 0; i < b->nbuckets; i++)
        for (conn_t *c = b->buckets[i]; c; c = c->next)
            conn_update_pause(b, c);
    return 0;
}

void ksock_bridge_stats(const ksock_bridge_t *b, ksock_bridge_stats_t *out)
{
    *out = b->stats;
    out->refused = atomic_load(&b->refused);
}

void ksock_bridge_free(ksock_bridge_t *b)
{
    if (b == NULL) return;
    ksock_bridge_stop(b);
    if (b->drain_timer) ksock_timer_close(b->drain_timer);
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
