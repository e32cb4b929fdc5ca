/*
 * The bridge's connection table (by transport connection id), pausing a
 * connection's reading, and replies: encoded with the connection's
 * serializer and queued, or kept in order in the connection's overflow
 * list while its send queue is full (docs/bridge.md, Bounds).
 */
#include "bridge_internal.h"

/* ---- Connection table ------------------------------------------------------- */

static size_t bucket_of(const ksock_bridge_t *b, ksock_conn_id_t id)
{
    return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 20) & (b->nbuckets - 1);
}

conn_t *ksock__br_conn_find(const ksock_bridge_t *b, ksock_conn_id_t id)
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

void ksock__br_conn_insert(ksock_bridge_t *b, conn_t *c)
{
    if (b->nconns >= b->nbuckets) table_grow(b);
    size_t k = bucket_of(b, c->id);
    c->next = b->buckets[k];
    b->buckets[k] = c;
    c->registered = true;
    b->nconns++;
}

void ksock__br_conn_remove(ksock_bridge_t *b, conn_t *c)
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

void ksock__br_conn_free(conn_t *c)
{
    if (c == NULL) return;
    for (reply_t *r = c->ovf_head, *next; r; r = next) {
        next = r->next;
        ksock_frame_unref(r->frame);
        free(r);
    }
    ksock__br_limits_conn_free(c);
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
void ksock__br_conn_update_pause(ksock_bridge_t *b, conn_t *c)
{
    if (!b->can_pause || c->closing || b->stopped) return;
    if (c->inflight >= b->opts.max_inflight)
        c->at_bound = true;
    else if (c->inflight <= b->resume_at)
        c->at_bound = false;
    /* The publish rate (limits.c) pauses too, on its own timer. */
    bool want = c->ovf_head != NULL || (!b->draining && (c->at_bound || c->rate_paused));
    if (want == c->paused) return;
    c->paused = want;
    if (want) b->stats.paused++;
    b->tv->pause_read(b->transport->inst, c->id, want);
}

/* ---- Replies ---------------------------------------------------------------- */

void ksock__br_conn_close(ksock_bridge_t *b, conn_t *c, int code, const char *reason)
{
    if (c->closing) return;
    c->closing = true;
    b->tv->close(b->transport->inst, c->id, code, reason);
}

/* Send the replies that waited for room, in order, until the queue is full again. */
void ksock__br_conn_flush_overflow(ksock_bridge_t *b, conn_t *c)
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
 * sends publishes. With pause_read the ksock__br_reply waits in the connection's
 * overflow list and reading stops until on_writable has sent it, so the
 * list holds at most the replies of what was in flight. A transport
 * without pause_read leaves no bounded way to wait: the connection is
 * closed with 1013 (a ksock__br_reply dropped silently would leave a publish
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
        ksock__br_conn_close(b, c, CLOSE_TRY_AGAIN, "send queue full");
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
    ksock__br_conn_update_pause(b, c);
}

/* Encode `env` with the connection's serializer and send it (send_frame). */
void ksock__br_reply(ksock_bridge_t *b, conn_t *c, const ksock_envelope_t *env)
{
    if (c->closing || c->ser == NULL) return;
    char err[256];
    ksock_buf_t buf = KSOCK_BUF_INIT;
    int rc = SV(c)->encode_envelope(SI(c), env, &buf, err, sizeof(err));
    if (rc != 0) {
        ksock_log(
            b->rt, KSOCK_LOG_ERROR, COMPONENT,
            (ksock_kv_t[]){KSOCK_KV_I64("conn", c->id), KSOCK_KV_STR("op", ksock_op_name(env->op))},
            2, "cannot encode a ksock__br_reply: %s", err);
        ksock_buf_free(&buf);
        ksock__br_conn_close(b, c, CLOSE_INTERNAL, "cannot encode a ksock__br_reply");
        return;
    }
    ksock_frame_t *f = ksock_frame_adopt(SV(c)->frame_type(SI(c)), buf.data, buf.len);
    if (f == NULL) {
        ksock_buf_free(&buf);
        ksock__br_conn_close(b, c, CLOSE_INTERNAL, "out of memory");
        return;
    }
    send_frame(b, c, f);
    ksock_frame_unref(f);
}

void ksock__br_reply_error(ksock_bridge_t *b, conn_t *c, const char *id, size_t id_len,
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
    ksock__br_reply(b, c, &e);
}
