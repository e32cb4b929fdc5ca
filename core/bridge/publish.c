/*
 * Publishing (docs/bridge.md): checks, the record to Kafka, the ack or
 * error from its delivery report, and the shutdown drain.
 *
 * A delivery callback can fire after its connection is gone, so a pending
 * publish names its connection by id and looks it up when the outcome
 * arrives; a missing id means the reply is dropped. Pending publishes are
 * also on a list owned by the bridge, so that freeing the bridge first
 * detaches them and a late callback only frees its own memory.
 */
#include "bridge_internal.h"

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
 * A drain is done when no publish is pending, no ksock__br_reply waits for room,
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
void ksock__br_drain_check(ksock_bridge_t *b)
{
    if (b->draining && b->drain_cb && drain_done(b)) drain_finish(b, 0);
}

/*
 * The drain timer, every DRAIN_TICK_MS (so the callback never runs inside
 * ksock_bridge_drain()). At the deadline what is still pending may yet
 * reach Kafka, so it is answered "outcome unknown" (-27, retriable), never
 * "not produced"; its late delivery report only frees memory.
 */
void ksock__br_drain_timer_cb(ksock_timer_t *t, void *data)
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
        BR_COUNT_REFUSED(b, KSOCK_E_KAFKA);
        conn_t *c = b->stopped ? NULL : ksock__br_conn_find(b, p->conn);
        if (c) {
            c->inflight--;
            ksock__br_reply_error(
                b, c, p->id, p->id_len, p->topic, strlen(p->topic), KSOCK_E_KAFKA,
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
    conn_t *c = b->stopped ? NULL : ksock__br_conn_find(b, p->conn);
    if (d->err == 0) {
        b->stats.published++;
    } else {
        b->stats.publish_errors++;
        BR_COUNT_REFUSED(b, kafka_code(d->err));
    }
    if (c == NULL) {
        b->stats.dropped++;
        pending_free(p);
        ksock__br_drain_check(b);
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
        ksock__br_reply(b, c, &e);
    } else {
        ksock__br_reply_error(b, c, p->id, p->id_len, p->topic, strlen(p->topic),
                              kafka_code(d->err), d->errstr ? d->errstr : ksock_strerror(d->err));
    }
    pending_free(p);
    ksock__br_conn_update_pause(b, c);
    ksock__br_drain_check(b);
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
 * make us check one topic and produce to another, no byte a ksock__br_reply or a log
 * line would have to escape.
 */
bool ksock__br_topic_valid(const char *t, size_t n)
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

/*
 * Kafka's headers from the envelope's: names copied into one block so they
 * are NUL-terminated (*names, freed by the caller with *out). Returns 0,
 * KSOCK_E_PROTO (a name holds U+0000: Kafka names are C strings) or
 * KSOCK_E_NOMEM.
 */
static int kafka_headers(const ksock_envelope_t *env, ksock_kafka_header_t **out, char **names)
{
    *out = NULL;
    *names = NULL;
    if (env->nheaders == 0) return 0;
    size_t total = 0;
    for (size_t i = 0; i < env->nheaders; i++) {
        if (memchr(env->headers[i].key, '\0', env->headers[i].key_len) != NULL)
            return KSOCK_E_PROTO;
        total += env->headers[i].key_len + 1;
    }
    ksock_kafka_header_t *hdrs = calloc(env->nheaders, sizeof(*hdrs));
    char *w = malloc(total);
    if (hdrs == NULL || w == NULL) {
        free(hdrs);
        free(w);
        return KSOCK_E_NOMEM;
    }
    *out = hdrs;
    *names = w;
    for (size_t i = 0; i < env->nheaders; i++) {
        const ksock_header_t *h = &env->headers[i];
        memcpy(w, h->key, h->key_len);
        w[h->key_len] = '\0';
        hdrs[i].name = w;
        w += h->key_len + 1;
        hdrs[i].value = h->value.present ? (h->value.data ? h->value.data : "") : NULL;
        hdrs[i].value_len = h->value.present ? h->value.len : 0;
    }
    return 0;
}

/*
 * Refusals that need no Kafka: the topic rule, the drain, the principal's
 * right, the in-flight bound of a 1.0 transport. 0 when the publish may
 * go on; otherwise the error was sent. `topic` is NUL-terminated.
 */
static int publish_refused(ksock_bridge_t *b, conn_t *c, const ksock_envelope_t *env,
                           const char *topic)
{
    char msg[128];
    int code;
    const char *why;
    if (b->draining) {
        b->stats.shutdown_refused++;
        code = KSOCK_E_SHUTDOWN;
        why = "server shutting down: not produced; publish again after reconnecting";
    } else if (!ksock_principal_can(c->principal, topic, KSOCK_PERM_PUBLISH)) {
        b->stats.publish_errors++;
        code = KSOCK_E_FORBIDDEN;
        why = "not allowed to publish to this topic";
    } else if (c->inflight >= b->opts.max_inflight) { /* only without pause_read (1.0) */
        b->stats.publish_errors++;
        snprintf(msg, sizeof(msg), "%u publishes in flight on this connection: wait for acks",
                 (unsigned)c->inflight);
        code = KSOCK_E_QUEUE_FULL;
        why = msg;
    } else {
        return 0;
    }
    BR_COUNT_REFUSED(b, code);
    ksock__br_reply_error(b, c, env->id, env->id_len, env->topic, env->topic_len, code, why);
    return code;
}

/* Hand the record to the producer; `p` (which owns the topic) is pending from here. */
static int publish_send(ksock_bridge_t *b, conn_t *c, const ksock_envelope_t *env, pending_t *p,
                        const ksock_kafka_header_t *hdrs)
{
    /* An empty key or value is not a null one: keep a non-NULL pointer for present bytes. */
    ksock_kafka_record_t rec = {
        .topic = p->topic,
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
    if (rc != 0) return rc;
    p->next = b->pending;
    if (b->pending) b->pending->prev = p;
    b->pending = p;
    c->inflight++;
    if (c->inflight > b->stats.inflight_max) b->stats.inflight_max = c->inflight;
    ksock__br_conn_update_pause(b, c);
    return 0;
}

void ksock__br_do_publish(ksock_bridge_t *b, conn_t *c, const ksock_envelope_t *env)
{
    if (!ksock__br_rate_take(b, c, env)) return; /* every publish counts, whatever its fate */
    if (!ksock__br_topic_valid(env->topic, env->topic_len)) {
        BR_COUNT_REFUSED(b, KSOCK_E_PROTO);
        /* Not echoed: it is not a name, and may hold bytes a reply cannot carry. */
        ksock__br_reply_error(
            b, c, env->id, env->id_len, NULL, 0, KSOCK_E_PROTO,
            "invalid topic name: Kafka allows 1 to 249 characters of [a-zA-Z0-9._-], "
            "not \".\" or \"..\"");
        return;
    }
    pending_t *p = calloc(1, sizeof(*p));
    if (p == NULL || (p->topic = memdup_z(env->topic, env->topic_len)) == NULL ||
        (env->id && (p->id = memdup_z(env->id, env->id_len)) == NULL)) {
        if (p) pending_free(p);
        BR_COUNT_REFUSED(b, KSOCK_E_NOMEM);
        ksock__br_reply_error(b, c, env->id, env->id_len, NULL, 0, KSOCK_E_NOMEM, "out of memory");
        return;
    }
    p->bridge = b;
    p->conn = c->id;
    p->id_len = env->id_len;
    ksock_kafka_header_t *hdrs;
    char *names;
    int rc = publish_refused(b, c, env, p->topic);
    if (rc == 0 && (rc = kafka_headers(env, &hdrs, &names)) != 0) {
        BR_COUNT_REFUSED(b, rc);
        ksock__br_reply_error(b, c, env->id, env->id_len, env->topic, env->topic_len, rc,
                              rc == KSOCK_E_PROTO ? "header name contains NUL" : "out of memory");
    } else if (rc == 0) {
        rc = publish_send(b, c, env, p, hdrs);
        free(hdrs);
        free(names);
        if (rc != 0) {
            b->stats.publish_errors++;
            BR_COUNT_REFUSED(b, kafka_code(rc));
            ksock__br_reply_error(b, c, env->id, env->id_len, env->topic, env->topic_len,
                                  kafka_code(rc), ksock_strerror(rc));
        }
    }
    if (rc != 0) pending_free(p); /* frees topic and id too */
}
