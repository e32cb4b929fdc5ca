/*
 * Fan-out (docs/bridge.md, How a subscription is fed): each topic with
 * subscribers has one shared Kafka reader at the head, a consumer with a
 * manual assignment of every partition and no group. Each record it reads
 * is encoded once per serializer in use among the topic's joined
 * subscribers, and that one frame is queued on all of them with one
 * send_many call (one lock, one wake-up of the transport's thread).
 *
 * A full send queue is first taken for a burst (the server writes more than
 * it has had time to send, which a healthy client drains in milliseconds),
 * not for a slow client: the record, and those after it, are held in the
 * bridge (16 MiB per topic; beyond that the Kafka reader pauses) and handed
 * over again, in order, once the full queues drained (the per-subscriber
 * `next` offset skips those who had them), for at most
 * bridge.slow_client_grace. A subscriber still full then is a slow client:
 * it gets the slow-client policy (close with 1013, or drop and a gap notice
 * later) and, from then on, gets it at once, without pausing anyone. So a
 * slow client delays the others once, by at most the grace (docs/bridge.md,
 * Slow clients).
 *
 * Partitions added to a topic are found by a periodic lookup
 * (partition_refresh) and read from their first record.
 */
#include "bridge_internal.h"

/* ---- Record envelopes -------------------------------------------------------- */

void ksock__br_record_env(const ksock_kafka_message_t *m, ksock_envelope_t *env,
                          ksock_header_t *hbuf, size_t n, ksock_header_t **heap)
{
    ksock_envelope_init(env);
    env->op = KSOCK_OP_RECORD;
    env->topic = m->topic;
    env->topic_len = strlen(m->topic);
    env->partition = m->partition;
    env->offset = m->offset;
    env->timestamp = m->timestamp_ms >= 0 ? m->timestamp_ms : -1;
    env->key = (ksock_bytes_t){m->key, m->key_len, m->key != NULL};
    env->value = (ksock_bytes_t){m->value, m->value_len, m->value != NULL};
    *heap = NULL;
    if (m->header_count == 0) return;
    ksock_header_t *h = hbuf;
    if (m->header_count > n) {
        h = *heap = malloc(m->header_count * sizeof(*h));
        if (h == NULL) return; /* the caller sees nheaders 0 and refuses to send a partial record */
    }
    size_t k = 0;
    for (size_t i = 0; i < m->header_count; i++) {
        ksock_kafka_header_t kh;
        if (ksock_kafka_message_header(m, i, &kh) != 0) continue;
        h[k++] = (ksock_header_t){kh.name, strlen(kh.name),
                                  (ksock_bytes_t){kh.value, kh.value_len, kh.value != NULL}};
    }
    env->headers = h;
    env->nheaders = k;
}

/* ---- Groups: the joined subscribers of a topic, by serializer ----------------- */

void ksock__br_group_add(ksock_bridge_t *b, sub_t *s)
{
    (void)b;
    if (s->group) return;
    topic_t *t = s->topic;
    group_t *g = t->groups;
    while (g && g->ser != s->conn->ser)
        g = g->next;
    if (g == NULL) {
        if ((g = calloc(1, sizeof(*g))) == NULL) goto nomem;
        g->ser = s->conn->ser;
        g->next = t->groups;
        t->groups = g;
    }
    if (g->n == g->cap) {
        size_t ncap = g->cap ? g->cap * 2 : 8;
        sub_t **v = realloc(g->subs, ncap * sizeof(*v));
        if (v == NULL) goto nomem;
        g->subs = v;
        g->cap = ncap;
    }
    s->gidx = g->n;
    g->subs[g->n++] = s;
    s->group = g;
    return;
nomem:
    /* Without a place in the group it would silently get nothing: close it instead. */
    ksock__br_conn_close(b, s->conn, CLOSE_INTERNAL, "out of memory");
}

void ksock__br_group_remove(sub_t *s)
{
    group_t *g = s->group;
    if (g == NULL) return;
    sub_t *last = g->subs[--g->n];
    g->subs[s->gidx] = last;
    last->gidx = s->gidx;
    s->group = NULL;
}

/* ---- Congestion: records held for full queues, for a bounded time ---------------- */

/* A record held while some subscribers' queues are full: an owned copy of its envelope. */
typedef struct held_s {
    struct held_s *next;
    ksock_envelope_t env; /* points into the rest of this allocation */
    size_t size;
    max_align_t data_[];
} held_t;

static void slow(ksock_bridge_t *b, sub_t *s, int32_t p, int64_t o);
static bool dispatch(ksock_bridge_t *b, topic_t *t, const ksock_envelope_t *env);

/* Copy env to the end of t's held records; KSOCK_E_NOMEM. */
static int hold(topic_t *t, const ksock_envelope_t *env)
{
    size_t size =
        sizeof(held_t) + env->nheaders * sizeof(ksock_header_t) + env->key.len + env->value.len;
    for (size_t i = 0; i < env->nheaders; i++)
        size += env->headers[i].key_len + env->headers[i].value.len;
    held_t *h = malloc(size);
    if (h == NULL) return KSOCK_E_NOMEM;
    h->next = NULL;
    h->size = size;
    h->env = *env;
    h->env.topic = t->name;
    ksock_header_t *hd = (ksock_header_t *)h->data_;
    char *d = (char *)(hd + env->nheaders);
    h->env.headers = hd;
#define KSOCK_HOLD_COPY(dst, src, n) (memcpy(d, (src), (n)), (dst) = d, d += (n))
    if (env->key.present) KSOCK_HOLD_COPY(h->env.key.data, env->key.data, env->key.len);
    if (env->value.present) KSOCK_HOLD_COPY(h->env.value.data, env->value.data, env->value.len);
    for (size_t i = 0; i < env->nheaders; i++) {
        hd[i] = env->headers[i];
        KSOCK_HOLD_COPY(hd[i].key, env->headers[i].key, env->headers[i].key_len);
        if (env->headers[i].value.present)
            KSOCK_HOLD_COPY(hd[i].value.data, env->headers[i].value.data,
                            env->headers[i].value.len);
    }
#undef KSOCK_HOLD_COPY
    if (t->hold_tail)
        t->hold_tail->next = h;
    else
        t->hold_head = h;
    t->hold_tail = h;
    t->hold_bytes += size;
    return 0;
}

static void hold_free(topic_t *t)
{
    for (held_t *h = t->hold_head, *next; h; h = next) {
        next = h->next;
        free(h);
    }
    t->hold_head = t->hold_tail = NULL;
    t->hold_bytes = 0;
}

static void grace_cb(ksock_timer_t *tm, void *data);

/* While records are held, the grace check runs every quarter of the grace. */
static void congestion_start(ksock_bridge_t *b, topic_t *t)
{
    if (!t->paused) b->congestions++;
    t->paused = true;
    uint64_t tick = b->slow_grace_ms / 4 ? b->slow_grace_ms / 4 : 1;
    if (t->grace == NULL && ksock_timer_init(b->rt, &t->grace, grace_cb, t) != 0) return;
    if (!ksock_timer_is_active(t->grace)) ksock_timer_start(t->grace, tick, tick);
}

/*
 * Hand the held records over, in order, until one finds a queue full again
 * (the others keep them: `next` skips what they had). When none is left,
 * the congestion is over and the Kafka reader, if the hold was full and it
 * paused, resumes.
 */
static void hold_drain(ksock_bridge_t *b, topic_t *t)
{
    while (t->hold_head) {
        held_t *h = t->hold_head;
        if (dispatch(b, t, &h->env)) {
            congestion_start(b, t);
            return;
        }
        t->pos[h->env.partition] = h->env.offset + 1;
        b->stats.records++;
        t->hold_head = h->next;
        if (t->hold_head == NULL) t->hold_tail = NULL;
        t->hold_bytes -= h->size;
        free(h);
    }
    t->paused = false;
    if (t->grace) ksock_timer_stop(t->grace);
    if (t->kpaused) {
        t->kpaused = false;
        for (int32_t p = 0; p < t->nparts; p++) /* those not paused: nothing to do */
            ksock_kafka_consumer_resume(t->head, t->name, p);
    }
}

/*
 * A subscriber full for longer than the grace (no on_writable since) is a
 * slow client after all; one that keeps draining is not, however long the
 * burst lasts.
 */
static void grace_cb(ksock_timer_t *tm, void *data)
{
    (void)tm;
    topic_t *t = data;
    ksock_bridge_t *b = t->b;
    uint64_t now = ksock_now_ns(), grace = b->slow_grace_ms * 1000000ull;
    bool judged = false;
    for (sub_t *s = t->subs; s; s = s->tnext) {
        if (!s->full || now - s->full_since < grace) continue;
        s->full = false;
        s->judged = judged = true;
        t->nfull--;
        for (int32_t p = 0; p < s->nparts; p++) /* the policy as of the first record it lacks */
            if (s->joined[p] && s->next[p] <= t->pos[p]) {
                slow(b, s, p, s->next[p]);
                break;
            }
    }
    if (judged && t->nfull == 0) hold_drain(b, t);
}

/* ---- Sending one record to a group --------------------------------------------- */

static bool scratch_reserve(ksock_bridge_t *b, size_t n)
{
    if (n <= b->fo_cap) return true;
    size_t ncap = b->fo_cap ? b->fo_cap : 64;
    while (ncap < n)
        ncap *= 2;
    ksock_conn_id_t *ids = realloc(b->fo_ids, ncap * sizeof(*ids));
    if (ids) b->fo_ids = ids;
    int *rc = realloc(b->fo_rc, ncap * sizeof(*rc));
    if (rc) b->fo_rc = rc;
    sub_t **subs = realloc(b->fo_subs, ncap * sizeof(*subs));
    if (subs) b->fo_subs = subs;
    sub_t **full = realloc(b->fo_full, ncap * sizeof(*full));
    if (full) b->fo_full = full;
    if (ids == NULL || rc == NULL || subs == NULL || full == NULL) return false;
    b->fo_cap = ncap;
    return true;
}

/* A record that did not fit in a subscriber's send queue. */
static void slow(ksock_bridge_t *b, sub_t *s, int32_t p, int64_t o)
{
    conn_t *c = s->conn;
    b->queue_drops++;
    if (b->slow_policy == KSOCK_BRIDGE_SLOW_DROP) {
        if (s->gap[p] < 0) s->gap[p] = o;
        s->gap_pending = true;
        s->next[p] = o + 1;
        b->stats.slow_dropped++;
        return;
    }
    if (c->closing) return;
    b->stats.slow_closed++;
    ksock_log(b->rt, KSOCK_LOG_WARN, COMPONENT,
              (ksock_kv_t[]){KSOCK_KV_I64("conn", c->id), KSOCK_KV_STR("topic", s->topic->name),
                             KSOCK_KV_I64("partition", p), KSOCK_KV_I64("offset", o)},
              4, "slow client: send queue full, closing with 1013");
    ksock__br_conn_close(b, c, CLOSE_TRY_AGAIN, "slow client: send queue full");
}

enum { WANT_NO, WANT_SEND, WANT_FULL };

/* Does `s` take record (p, o) from the shared reader now? Drops count here too. */
static int wants(ksock_bridge_t *b, sub_t *s, int32_t p, int64_t o)
{
    if (!s->joined[p] || o < s->next[p] || s->conn->closing) return WANT_NO;
    if (s->gap_pending) { /* dropping (drop policy): the notice must go first */
        slow(b, s, p, o);
        return WANT_NO;
    }
    if (s->full || s->conn->ovf_head) return WANT_FULL; /* known full: waits for on_writable */
    return WANT_SEND;
}

static void set_full(topic_t *t, sub_t *s)
{
    if (s->full) return;
    s->full = true;
    s->full_since = ksock_now_ns();
    t->nfull++;
}

void ksock__br_sub_unfull(ksock_bridge_t *b, sub_t *s)
{
    topic_t *t = s->topic;
    if (!s->full) return;
    s->full = false;
    t->nfull--;
    if (t->paused && t->nfull == 0) hold_drain(b, t);
}

/*
 * The subscribers of a record whose queues are full: those already judged
 * slow get the policy now; the others are waited for (returns true: the
 * reader pauses).
 */
static bool full_ones(ksock_bridge_t *b, topic_t *t, sub_t **full, size_t nf, int32_t p, int64_t o)
{
    bool wait = false;
    for (size_t i = 0; i < nf; i++) {
        if (full[i]->judged || b->slow_grace_ms == 0) {
            slow(b, full[i], p, o);
        } else {
            set_full(t, full[i]);
            wait = true;
        }
    }
    return wait;
}

/* Returns true when the group is congested on this record (the reader pauses). */
static bool send_group(ksock_bridge_t *b, topic_t *t, group_t *g, const ksock_envelope_t *env)
{
    int32_t p = env->partition;
    int64_t o = env->offset;
    if (!scratch_reserve(b, g->n)) return false;
    size_t n = 0, nf = 0;
    for (size_t i = 0; i < g->n; i++) {
        sub_t *s = g->subs[i];
        int w = wants(b, s, p, o);
        if (w == WANT_SEND) {
            b->fo_subs[n] = s;
            b->fo_ids[n++] = s->conn->id;
        } else if (w == WANT_FULL) {
            b->fo_full[nf++] = s;
        }
    }
    if (n == 0) return full_ones(b, t, b->fo_full, nf, p, o);
    const ksock_serializer_vtable_t *sv = g->ser->pi->vtable;
    void *si = g->ser->pi->inst;
    char err[256];
    ksock_buf_t buf = KSOCK_BUF_INIT;
    int rc = sv->encode_envelope(si, env, &buf, err, sizeof(err));
    size_t flen = buf.len;
    ksock_frame_t *f = rc == 0 ? ksock_frame_adopt(sv->frame_type(si), buf.data, buf.len) : NULL;
    if (f == NULL) {
        ksock_buf_free(&buf);
        ksock_log(b->rt, KSOCK_LOG_ERROR, COMPONENT,
                  (ksock_kv_t[]){KSOCK_KV_STR("topic", env->topic ? g->subs[0]->topic->name : ""),
                                 KSOCK_KV_I64("partition", p), KSOCK_KV_I64("offset", o)},
                  3, "cannot encode a record for %s: %s", g->ser->name, rc ? err : "out of memory");
        for (size_t i = 0; i < n; i++) /* never a silent hole: they are told */
            slow(b, b->fo_subs[i], p, o);
        return false;
    }
    b->stats.encodes++;
    if (b->can_send_many) {
        b->tv->send_many(b->transport->inst, f, b->fo_ids, n, b->fo_rc);
    } else {
        for (size_t i = 0; i < n; i++)
            b->fo_rc[i] = b->tv->send(b->transport->inst, b->fo_ids[i], f);
    }
    ksock_frame_unref(f);
    uint64_t sent = 0;
    for (size_t i = 0; i < n; i++) {
        sub_t *s = b->fo_subs[i];
        if (b->fo_rc[i] == 0) {
            s->next[p] = o + 1;
            s->gap[p] = -1; /* a gap closes with the first record delivered after it */
            sent++;
        } else if (b->fo_rc[i] == KSOCK_E_QUEUE_FULL) {
            b->fo_full[nf++] = s;
        } else if (b->fo_rc[i] == KSOCK_E_NOMEM) {
            ksock__br_conn_close(b, s->conn, CLOSE_INTERNAL, "out of memory");
        } /* KSOCK_E_CLOSED: its on_close comes and ends the subscription */
    }
    b->stats.deliveries += sent;
    g->ser->delivered += sent;
    g->ser->bytes += sent * flen;
    return full_ones(b, t, b->fo_full, nf, p, o);
}

/* Send env to every group; true when some subscriber's queue was full (it waits). */
static bool dispatch(ksock_bridge_t *b, topic_t *t, const ksock_envelope_t *env)
{
    bool full = false;
    for (group_t *g = t->groups; g; g = g->next)
        full |= send_group(b, t, g, env);
    return full;
}

/*
 * The shared reader's handler: one record to every joined subscriber. A
 * record some full queue did not take is held (congestion, above), and so
 * is every record after it until the hold drains; only a full hold pauses
 * the Kafka reader.
 */
static int head_on_message(ksock_kafka_consumer_t *kc, const ksock_kafka_message_t *m, void *data)
{
    (void)kc;
    topic_t *t = data;
    ksock_bridge_t *b = t->b;
    int32_t p = m->partition;
    /* below pos: re-read after a re-assignment, already handed out */
    if (b->stopped || p < 0 || p >= t->nparts || m->offset < t->pos[p]) return 0;
    if (t->groups == NULL && t->hold_head == NULL) {
        t->pos[p] = m->offset + 1;
        b->stats.records++;
        return 0;
    }
    if (t->hold_head && t->hold_bytes >= BRIDGE_HOLD_MAX) {
        t->kpaused = true; /* the hold is full: Kafka waits (this record comes again) */
        return KSOCK_KAFKA_PAUSE;
    }
    ksock_header_t hbuf[16], *heap;
    ksock_envelope_t env;
    ksock__br_record_env(m, &env, hbuf, 16, &heap);
    if (m->header_count > 16 && heap == NULL) {
        for (group_t *g = t->groups; g; g = g->next)
            for (size_t i = 0; i < g->n; i++)
                if (g->subs[i]->joined[p] && m->offset >= g->subs[i]->next[p])
                    slow(b, g->subs[i], p, m->offset);
        return 0;
    }
    int rc = 0;
    if (t->hold_head) { /* records are held: this one goes behind them */
        if (hold(t, &env) != 0) {
            t->kpaused = true;
            rc = KSOCK_KAFKA_PAUSE;
        }
    } else if (dispatch(b, t, &env)) { /* some queue is full: held for those */
        if (hold(t, &env) != 0) {
            t->kpaused = true;
            rc = KSOCK_KAFKA_PAUSE;
        }
        congestion_start(b, t);
    } else {
        t->pos[p] = m->offset + 1;
        b->stats.records++;
    }
    free(heap);
    return rc;
}

/* ---- Retiring readers ----------------------------------------------------------- */

/*
 * librdkafka 2.0 (Debian 12) leaks a consumer destroyed in the first moments
 * after its assignment (seen with LeakSanitizer: a subscriber that leaves
 * right after `subscribed`). A reader is therefore stopped at once (no more
 * handler calls) and destroyed only once it is RETIRE_AGE_MS old.
 */
#define RETIRE_AGE_MS 3000

typedef struct retired_s {
    struct retired_s *next;
    ksock_kafka_consumer_t *kc;
    uint64_t due; /* ksock_now_ns() */
} retired_t;

static void retire_cb(ksock_timer_t *tm, void *data)
{
    (void)tm;
    ksock_bridge_t *b = data;
    uint64_t now = ksock_now_ns();
    for (retired_t **pp = &b->retired; *pp;) {
        retired_t *r = *pp;
        if (r->due > now) {
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        ksock_kafka_consumer_destroy(r->kc);
        free(r);
    }
    if (b->retired == NULL) ksock_timer_stop(b->retire_timer);
}

void ksock__br_reader_retire(ksock_bridge_t *b, ksock_kafka_consumer_t *kc, uint64_t born)
{
    uint64_t due = born + RETIRE_AGE_MS * 1000000ull;
    ksock_kafka_consumer_stop(kc);
    retired_t *r = due > ksock_now_ns() && !b->stopped ? malloc(sizeof(*r)) : NULL;
    if (r == NULL ||
        (b->retire_timer == NULL && ksock_timer_init(b->rt, &b->retire_timer, retire_cb, b) != 0)) {
        free(r);
        ksock_kafka_consumer_destroy(kc); /* inside its own handler: done when that returns */
        return;
    }
    *r = (retired_t){b->retired, kc, due};
    b->retired = r;
    if (!ksock_timer_is_active(b->retire_timer)) ksock_timer_start(b->retire_timer, 500, 500);
}

void ksock__br_retired_free(ksock_bridge_t *b)
{
    while (b->retired) {
        retired_t *r = b->retired;
        b->retired = r->next;
        ksock_kafka_consumer_destroy(r->kc);
        free(r);
    }
    if (b->retire_timer) ksock_timer_close(b->retire_timer);
    b->retire_timer = NULL;
}

/* ---- Topics ----------------------------------------------------------------------- */

topic_t *ksock__br_topic_get(ksock_bridge_t *b, const char *name, bool create)
{
    for (topic_t *t = b->topics; t; t = t->next)
        if (strcmp(t->name, name) == 0) return t;
    if (!create) return NULL;
    topic_t *t = calloc(1, sizeof(*t));
    if (t == NULL || (t->name = strdup(name)) == NULL) {
        free(t);
        return NULL;
    }
    t->b = b;
    t->next = b->topics;
    b->topics = t;
    return t;
}

static void topic_free(ksock_bridge_t *b, topic_t *t)
{
    if (t->lk) t->lk->topic = NULL;
    if (t->refresh) ksock_timer_close(t->refresh);
    if (t->linger) ksock_timer_close(t->linger);
    if (t->grace) ksock_timer_close(t->grace);
    hold_free(t);
    if (t->head) {
        ksock__br_reader_retire(b, t->head, t->head_born);
        b->stats.readers--;
    }
    for (group_t *g = t->groups, *next; g; g = next) {
        next = g->next;
        free(g->subs);
        free(g);
    }
    free(t->pos);
    free(t->name);
    free(t);
}

static void topic_unlink_free(ksock_bridge_t *b, topic_t *t)
{
    for (topic_t **pp = &b->topics; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    }
    topic_free(b, t);
}

static void linger_cb(ksock_timer_t *tm, void *data)
{
    (void)tm;
    topic_t *t = data;
    if (t->nsubs == 0) topic_unlink_free(t->b, t);
}

/*
 * The last subscription of a topic went. Its shared reader stays for
 * bridge.reader_linger, at its position, so that a client that comes back
 * (a reconnect, a resubscribe) is answered at once and readers do not
 * churn; a topic never resolved goes at once.
 */
void ksock__br_topic_put(ksock_bridge_t *b, topic_t *t)
{
    if (t->nsubs > 0) return;
    if (t->resolved && !b->stopped && b->reader_linger_ms > 0 &&
        (t->linger || ksock_timer_init(b->rt, &t->linger, linger_cb, t) == 0) &&
        ksock_timer_start(t->linger, b->reader_linger_ms, 0) == 0)
        return;
    topic_unlink_free(b, t);
}

void ksock__br_topics_free(ksock_bridge_t *b)
{
    while (b->topics) {
        topic_t *t = b->topics;
        b->topics = t->next;
        topic_free(b, t);
    }
}

/* Assign every partition to the shared reader at t->pos. */
static int head_assign(topic_t *t)
{
    ksock_kafka_partition_t *parts = calloc((size_t)t->nparts, sizeof(*parts));
    if (parts == NULL) return KSOCK_E_NOMEM;
    for (int32_t p = 0; p < t->nparts; p++)
        parts[p] = (ksock_kafka_partition_t){t->name, p, t->pos[p], 0};
    int rc = ksock_kafka_consumer_assign(t->head, parts, (size_t)t->nparts);
    free(parts);
    return rc;
}

static void refresh_cb(ksock_timer_t *tm, void *data)
{
    (void)tm;
    topic_t *t = data;
    if (t->lk == NULL) ksock__br_lookup_start(t->b, t, NULL, t->name, -1);
}

/* A reader's configuration: the bridge's, with bounded prefetch (memory per reader). */
int ksock__br_reader_conf(ksock_bridge_t *b, bool head, ksock_kafka_conf_t **out, char *err,
                          size_t n)
{
    int rc = ksock_kafka_conf_dup(b->kconf, out);
    if (rc != 0) return rc;
    if (ksock_kafka_conf_get(*out, "queued.max.messages.kbytes") == NULL)
        rc = ksock_kafka_conf_set(*out, "queued.max.messages.kbytes", head ? "16384" : "4096", err,
                                  n);
    if (rc == 0 && ksock_kafka_conf_get(*out, "fetch.wait.max.ms") == NULL)
        rc = ksock_kafka_conf_set(*out, "fetch.wait.max.ms", "100", err, n);
    if (rc != 0) {
        ksock_kafka_conf_free(*out);
        *out = NULL;
    }
    return rc;
}

/* The first lookup of a topic is done: start its shared reader at the end offsets. */
int ksock__br_topic_start(ksock_bridge_t *b, topic_t *t, const lookup_t *l, char *err, size_t n)
{
    t->pos = calloc((size_t)l->nparts, sizeof(*t->pos));
    if (t->pos == NULL) return KSOCK_E_NOMEM;
    memcpy(t->pos, l->high, (size_t)l->nparts * sizeof(*t->pos));
    t->nparts = l->nparts;
    ksock_kafka_conf_t *conf;
    int rc = ksock__br_reader_conf(b, true, &conf, err, n);
    if (rc != 0) return rc;
    rc = ksock_kafka_consumer_new(b->rt, &t->head, conf, NULL, head_on_message, t, err, n);
    t->head_born = ksock_now_ns();
    ksock_kafka_conf_free(conf);
    if (rc != 0) return rc;
    b->stats.readers++;
    if ((rc = head_assign(t)) != 0 || (rc = ksock_kafka_consumer_start(t->head)) != 0) {
        ksock_errstr_set(err, n, "cannot start the reader of %s: %s", t->name, ksock_strerror(rc));
        return rc;
    }
    if (b->partition_refresh_ms > 0 && ksock_timer_init(b->rt, &t->refresh, refresh_cb, t) == 0)
        ksock_timer_start(t->refresh, b->partition_refresh_ms, b->partition_refresh_ms);
    t->resolved = true;
    ksock_log(b->rt, KSOCK_LOG_DEBUG, COMPONENT,
              (ksock_kv_t[]){KSOCK_KV_STR("topic", t->name), KSOCK_KV_I64("partitions", t->nparts)},
              2, "shared reader started");
    return 0;
}

/* A refresh found more partitions: read them from their first record. */
void ksock__br_topic_grow(ksock_bridge_t *b, topic_t *t, const lookup_t *l)
{
    if (l->err != 0 || l->nparts <= t->nparts) return;
    int64_t *pos = realloc(t->pos, (size_t)l->nparts * sizeof(*pos));
    if (pos == NULL) return; /* the next refresh tries again */
    t->pos = pos;
    int32_t from = t->nparts;
    for (int32_t p = from; p < l->nparts; p++)
        t->pos[p] = l->low[p];
    t->nparts = l->nparts;
    int rc = head_assign(t);
    ksock_log(b->rt, rc ? KSOCK_LOG_ERROR : KSOCK_LOG_INFO, COMPONENT,
              (ksock_kv_t[]){KSOCK_KV_STR("topic", t->name), KSOCK_KV_I64("from", from),
                             KSOCK_KV_I64("partitions", t->nparts)},
              3, "partitions added%s%s", rc ? ": cannot assign them: " : "",
              rc ? ksock_strerror(rc) : "");
    ksock__br_subs_partitions_added(b, t, from);
}
