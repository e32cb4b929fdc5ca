/*
 * Subscriptions (docs/protocol.md, Subscriptions; docs/bridge.md): the
 * subscribe and unsubscribe requests, their answers, and the catch-up
 * readers that feed a subscription starting behind the shared reader.
 *
 * A subscribe to a topic whose shared reader runs and that starts at
 * `latest` is answered at once, at the reader's position. Any other waits
 * for a lookup (lookup.c): the topic's first one, which starts the shared
 * reader at the end offsets, or its own (first and end offsets, offsets at
 * a time). Then, per partition, a start at or past the shared reader's
 * position joins the shared stream; a start behind it is read by a
 * catch-up reader of the subscription's own, which hands the partition
 * over to the shared stream once it reaches the shared reader's position.
 * The per-partition `next` offset makes the hand-over exact: a record is
 * delivered only at or after it, and `next` moves past each one delivered.
 */
#include "bridge_internal.h"

/* ---- Answers ------------------------------------------------------------------ */

static void reply_offsets(ksock_bridge_t *b, sub_t *s, ksock_op_t op, const char *id, size_t id_len,
                          const ksock_partition_offset_t *offs, size_t n, int code, const char *msg)
{
    ksock_envelope_t e;
    ksock_envelope_init(&e);
    e.op = op;
    e.id = id;
    e.id_len = id_len;
    e.topic = s->topic->name;
    e.topic_len = strlen(s->topic->name);
    e.start = KSOCK_START_OFFSETS;
    e.offsets = offs;
    e.noffsets = n;
    e.error_code = code;
    e.error_message = msg;
    e.error_message_len = msg ? strlen(msg) : 0;
    ksock__br_reply(b, s->conn, &e);
}

/*
 * The -32 for `s`: every partition with an open gap, at the first record it
 * did not receive. A gap stays open (and is named again by a later -32)
 * until a record of its partition is delivered.
 */
void ksock__br_sub_send_gap(ksock_bridge_t *b, sub_t *s, const char *id, size_t id_len,
                            const char *why)
{
    ksock_partition_offset_t *offs = calloc(s->nparts > 0 ? (size_t)s->nparts : 1, sizeof(*offs));
    if (offs == NULL) {
        ksock__br_conn_close(b, s->conn, CLOSE_INTERNAL, "out of memory");
        return;
    }
    size_t n = 0;
    for (int32_t p = 0; p < s->nparts; p++) {
        if (s->gap[p] < 0) continue;
        offs[n++] = (ksock_partition_offset_t){p, s->gap[p]};
    }
    s->gap_pending = false;
    if (n > 0) reply_offsets(b, s, KSOCK_OP_ERROR, id, id_len, offs, n, KSOCK_E_SKIPPED, why);
    free(offs);
}

/* Refuse a subscription with `code`, answering its id, and end it. */
static void sub_fail(ksock_bridge_t *b, sub_t *s, int code, const char *msg)
{
    b->stats.subscribe_errors++;
    ksock__br_reply_error(b, s->conn, s->rq ? s->rq->id : NULL, s->rq ? s->rq->id_len : 0,
                          s->topic->name, strlen(s->topic->name), code, msg);
    ksock__br_sub_free(b, s);
}

/* ---- Lifetime ------------------------------------------------------------------ */

static void sub_req_free(sub_t *s)
{
    if (s->rq == NULL) return;
    free(s->rq->id);
    free(s->rq);
    s->rq = NULL;
}

static sub_t *sub_find(conn_t *c, const char *name)
{
    for (sub_t *s = c->subs; s; s = s->cnext)
        if (strcmp(s->topic->name, name) == 0) return s;
    return NULL;
}

/*
 * Size the per-partition arrays for n partitions, in one allocation (memory
 * per idle subscriber counts: docs/benchmarks.md); new partitions start not
 * fed, without a gap.
 */
static int sub_grow(sub_t *s, int32_t n)
{
    if (n <= s->nparts) return 0;
    size_t un = (size_t)n;
    char *m = malloc(un * (2 * sizeof(int64_t) + 2 * sizeof(bool)));
    if (m == NULL) return KSOCK_E_NOMEM;
    int64_t *next = (int64_t *)m, *gap = next + un;
    bool *joined = (bool *)(gap + un), *catching = joined + un;
    size_t old = (size_t)s->nparts;
    if (old) {
        memcpy(next, s->next, old * sizeof(*next));
        memcpy(gap, s->gap, old * sizeof(*gap));
        memcpy(joined, s->joined, old * sizeof(*joined));
        memcpy(catching, s->catching, old * sizeof(*catching));
    }
    for (size_t p = old; p < un; p++) {
        next[p] = 0;
        gap[p] = -1;
        joined[p] = catching[p] = false;
    }
    free(s->next); /* the one allocation */
    s->next = next;
    s->gap = gap;
    s->joined = joined;
    s->catching = catching;
    s->nparts = n;
    return 0;
}

static void catchup_end(ksock_bridge_t *b, sub_t *s)
{
    if (s->cu == NULL) return;
    ksock__br_reader_retire(b, s->cu, s->cu_born);
    s->cu = NULL;
    b->ncatchup--;
    b->stats.readers--;
}

void ksock__br_sub_free(ksock_bridge_t *b, sub_t *s)
{
    conn_t *c = s->conn;
    topic_t *t = s->topic;
    for (sub_t **pp = &c->subs; *pp; pp = &(*pp)->cnext) {
        if (*pp == s) {
            *pp = s->cnext;
            break;
        }
    }
    c->nsubs--;
    *s->tprev = s->tnext;
    if (s->tnext) s->tnext->tprev = s->tprev;
    ksock__br_sub_unfull(b, s);
    ksock__br_group_remove(s);
    catchup_end(b, s);
    if (s->lk) s->lk->sub = NULL;
    sub_req_free(s);
    free(s->next); /* with gap, joined and catching (sub_grow) */
    free(s);
    b->stats.subscriptions--;
    t->nsubs--;
    ksock__br_topic_put(b, t);
}

void ksock__br_subs_conn_gone(ksock_bridge_t *b, conn_t *c)
{
    while (c->subs)
        ksock__br_sub_free(b, c->subs);
}

/* ---- Catch-up readers ---------------------------------------------------------- */

static void join(ksock_bridge_t *b, sub_t *s, int32_t p)
{
    if (s->catching[p]) {
        s->catching[p] = false;
        s->ncatching--;
    }
    s->joined[p] = true;
    ksock__br_group_add(b, s);
    if (s->ncatching == 0) catchup_end(b, s);
}

static int catchup_on_message(ksock_kafka_consumer_t *kc, const ksock_kafka_message_t *m,
                              void *data)
{
    (void)kc;
    sub_t *s = data;
    ksock_bridge_t *b = s->topic->b;
    conn_t *c = s->conn;
    int32_t p = m->partition;
    if (b->stopped || c->closing || p < 0 || p >= s->nparts || !s->catching[p] ||
        m->offset < s->next[p])
        return 0;
    if (c->ovf_head) { /* replies wait for room: so does this record */
        s->catch_paused = true;
        return KSOCK_KAFKA_PAUSE;
    }
    ksock_header_t hbuf[16], *heap;
    ksock_envelope_t env;
    ksock__br_record_env(m, &env, hbuf, 16, &heap);
    char err[256];
    ksock_buf_t buf = KSOCK_BUF_INIT;
    int rc = (m->header_count > 16 && heap == NULL)
                 ? KSOCK_E_NOMEM
                 : SV(c)->encode_envelope(SI(c), &env, &buf, err, sizeof(err));
    free(heap);
    size_t flen = buf.len;
    ksock_frame_t *f =
        rc == 0 ? ksock_frame_adopt(SV(c)->frame_type(SI(c)), buf.data, buf.len) : NULL;
    if (f == NULL) {
        ksock_buf_free(&buf);
        ksock__br_conn_close(b, c, CLOSE_INTERNAL, "cannot encode a record");
        return 0;
    }
    b->stats.encodes++;
    rc = b->tv->send(b->transport->inst, c->id, f);
    ksock_frame_unref(f);
    if (rc == KSOCK_E_QUEUE_FULL) { /* not queued: handed over again after the resume */
        s->catch_paused = true;
        return KSOCK_KAFKA_PAUSE;
    }
    if (rc != 0) return 0;
    b->stats.deliveries++;
    c->ser->delivered++;
    c->ser->bytes += flen;
    s->next[p] = m->offset + 1;
    s->gap[p] = -1;
    if (s->next[p] >= s->topic->pos[p]) join(b, s, p);
    return 0;
}

static int catchup_start(ksock_bridge_t *b, sub_t *s, char *err, size_t n)
{
    ksock_kafka_partition_t *parts = calloc(s->ncatching, sizeof(*parts));
    if (parts == NULL) return KSOCK_E_NOMEM;
    size_t k = 0;
    for (int32_t p = 0; p < s->nparts; p++)
        if (s->catching[p])
            parts[k++] = (ksock_kafka_partition_t){s->topic->name, p, s->next[p], 0};
    ksock_kafka_conf_t *conf;
    int rc = ksock__br_reader_conf(b, false, &conf, err, n);
    if (rc == 0) {
        rc = ksock_kafka_consumer_new(b->rt, &s->cu, conf, NULL, catchup_on_message, s, err, n);
        s->cu_born = ksock_now_ns();
        ksock_kafka_conf_free(conf);
    }
    if (rc == 0) {
        b->ncatchup++;
        b->stats.readers++;
        rc = ksock_kafka_consumer_assign(s->cu, parts, k);
        if (rc == 0) rc = ksock_kafka_consumer_start(s->cu);
        if (rc != 0)
            ksock_errstr_set(err, n, "cannot start a catch-up reader: %s", ksock_strerror(rc));
    }
    free(parts);
    return rc;
}

/* ---- Starting a subscription ----------------------------------------------------- */

/*
 * Where each partition starts (docs/protocol.md, Where each start
 * begins). `low`/`high`/`at` come from a lookup of `ln` partitions (NULL
 * for `latest`). Requested offsets that retention deleted are noted in
 * s->gap for the -32 that follows `subscribed`.
 */
static int sub_starts(sub_t *s, const int64_t *low, const int64_t *high, const int64_t *at,
                      int32_t ln, char *err, size_t n)
{
    topic_t *t = s->topic;
    for (int32_t p = 0; p < t->nparts; p++)
        s->next[p] = t->pos[p]; /* latest, and partitions an offsets list leaves out */
    if (s->rq->start == KSOCK_START_LATEST || low == NULL) return 0;
    for (int32_t p = 0; p < t->nparts && p < ln; p++) {
        if (s->rq->start == KSOCK_START_EARLIEST)
            s->next[p] = low[p];
        else if (s->rq->start == KSOCK_START_TIMESTAMP)
            s->next[p] = at && at[p] >= 0 ? at[p] : high[p];
    }
    for (size_t i = 0; s->rq->start == KSOCK_START_OFFSETS && i < s->rq->nreq; i++) {
        int32_t p = s->rq->req[i].partition;
        int64_t o = s->rq->req[i].offset;
        if (p >= t->nparts) {
            ksock_errstr_set(err, n, "topic %s has no partition %d (it has %d)", t->name, (int)p,
                             (int)t->nparts);
            return KSOCK_E_UNKNOWN_TOPIC;
        }
        if (p >= ln) continue; /* added since the lookup: it started with the topic's reader */
        if (o < low[p]) {
            s->gap[p] = o;
            o = low[p];
        } else if (o > high[p]) {
            o = high[p];
        }
        s->next[p] = o;
    }
    return 0;
}

static void sub_apply(ksock_bridge_t *b, sub_t *s, const int64_t *low, const int64_t *high,
                      const int64_t *at, int32_t ln)
{
    topic_t *t = s->topic;
    char err[512] = "";
    if (sub_grow(s, t->nparts) != 0) {
        sub_fail(b, s, KSOCK_E_NOMEM, "out of memory");
        return;
    }
    int rc = sub_starts(s, low, high, at, ln, err, sizeof(err));
    if (rc != 0) {
        sub_fail(b, s, rc, err);
        return;
    }
    s->ncatching = 0;
    for (int32_t p = 0; p < t->nparts; p++) {
        s->catching[p] = s->next[p] < t->pos[p];
        s->joined[p] = !s->catching[p];
        s->ncatching += s->catching[p];
    }
    if (s->ncatching > 0 && b->ncatchup >= b->max_catchup) {
        snprintf(err, sizeof(err),
                 "%" PRIu64 " subscriptions are catching up already (bridge.max_catchup_readers); "
                 "retry later, or start at latest",
                 b->ncatchup);
        sub_fail(b, s, KSOCK_E_LIMIT, err);
        return;
    }
    if (s->ncatching > 0 && (rc = catchup_start(b, s, err, sizeof(err))) != 0) {
        sub_fail(b, s, rc, err);
        return;
    }
    size_t np = t->nparts > 0 ? (size_t)t->nparts : 1;
    ksock_partition_offset_t *offs = calloc(np, sizeof(*offs));
    if (offs == NULL) {
        sub_fail(b, s, KSOCK_E_NOMEM, "out of memory");
        return;
    }
    for (int32_t p = 0; p < t->nparts; p++)
        offs[p] = (ksock_partition_offset_t){p, s->next[p]};
    reply_offsets(b, s, KSOCK_OP_SUBSCRIBED, s->rq->id, s->rq->id_len, offs, (size_t)t->nparts, 0,
                  NULL);
    free(offs);
    s->active = true;
    b->stats.subscribed++;
    for (int32_t p = 0; p < t->nparts; p++)
        if (s->gap[p] >= 0) {
            ksock__br_sub_send_gap(b, s, s->rq->id, s->rq->id_len,
                                   "records deleted by retention: starting at the first one left");
            break;
        }
    sub_req_free(s); /* answered: what the request said is no longer needed */
    if (s->ncatching < (size_t)t->nparts) ksock__br_group_add(b, s);
}

void ksock__br_sub_lookup_done(ksock_bridge_t *b, sub_t *s, const lookup_t *l)
{
    if (l->err != 0) {
        sub_fail(b, s, l->err, l->errmsg);
        return;
    }
    sub_apply(b, s, l->low, l->high, l->at, l->nparts);
}

/*
 * Before a topic's reader starts: refuse the waiting subscriptions whose
 * offsets name partitions the topic does not have. Returns KSOCK_E_NOENT
 * when none is left to start the reader for (nothing to do, no error).
 */
static int refuse_bad_partitions(ksock_bridge_t *b, topic_t *t, int32_t nparts)
{
    size_t left = 0;
    for (sub_t *s = t->subs, *next; s; s = next) {
        next = s->tnext;
        if (s->active || s->lk) continue;
        for (size_t i = 0; i < s->rq->nreq; i++) {
            if (s->rq->req[i].partition < nparts) continue;
            char err[160];
            snprintf(err, sizeof(err), "topic %s has no partition %d (it has %d)", t->name,
                     (int)s->rq->req[i].partition, (int)nparts);
            sub_fail(b, s, KSOCK_E_UNKNOWN_TOPIC, err);
            s = NULL;
            break;
        }
        if (s) left++;
    }
    return left ? 0 : KSOCK_E_NOENT;
}

void ksock__br_subs_topic_ready(ksock_bridge_t *b, topic_t *t, const lookup_t *l)
{
    if (t->resolved) { /* a partition refresh */
        ksock__br_topic_grow(b, t, l);
        return;
    }
    char err[512] = "";
    int rc = l->err;
    t->nsubs++; /* held while its subscriptions start (one may fail and go) */
    if (rc != 0)
        snprintf(err, sizeof(err), "%s", l->errmsg);
    else
        rc = refuse_bad_partitions(b, t, l->nparts);
    if (rc == 0) rc = ksock__br_topic_start(b, t, l, err, sizeof(err));
    for (sub_t *s = t->subs, *next; s; s = next) {
        next = s->tnext;
        if (s->active || s->lk) continue;
        if (rc != 0)
            sub_fail(b, s, rc, err);
        else if (s->rq->start == KSOCK_START_TIMESTAMP) {
            int lrc = ksock__br_lookup_start(b, t, s, t->name, s->rq->start_ts);
            if (lrc != 0) sub_fail(b, s, lrc, "cannot start a Kafka lookup");
        } else
            sub_apply(b, s, l->low, l->high, NULL, l->nparts);
    }
    t->nsubs--;
    ksock__br_topic_put(b, t);
}

void ksock__br_subs_partitions_added(ksock_bridge_t *b, topic_t *t, int32_t from)
{
    ksock_partition_offset_t *offs = calloc((size_t)(t->nparts - from), sizeof(*offs));
    if (offs == NULL) return;
    for (sub_t *s = t->subs; s; s = s->tnext) {
        if (!s->active || s->nparts >= t->nparts) continue;
        int32_t old = s->nparts;
        if (sub_grow(s, t->nparts) != 0) {
            ksock__br_conn_close(b, s->conn, CLOSE_INTERNAL, "out of memory");
            continue;
        }
        for (int32_t p = old; p < t->nparts; p++) {
            s->next[p] = t->pos[p];
            s->joined[p] = true;
            offs[p - old] = (ksock_partition_offset_t){p, t->pos[p]};
        }
        reply_offsets(b, s, KSOCK_OP_SUBSCRIBED, NULL, 0, offs, (size_t)(t->nparts - old), 0, NULL);
        ksock__br_group_add(b, s);
    }
    free(offs);
}

/* ---- Requests -------------------------------------------------------------------- */

static sub_t *sub_new(ksock_bridge_t *b, conn_t *c, topic_t *t, const ksock_envelope_t *env)
{
    sub_t *s = calloc(1, sizeof(*s));
    if (s == NULL) return NULL;
    s->rq = calloc(1, sizeof(*s->rq) + env->noffsets * sizeof(s->rq->req[0]));
    if (s->rq == NULL) goto nomem;
    if (env->id) {
        s->rq->id = malloc(env->id_len + 1);
        if (s->rq->id == NULL) goto nomem;
        memcpy(s->rq->id, env->id, env->id_len);
        s->rq->id[env->id_len] = '\0';
        s->rq->id_len = env->id_len;
    }
    s->rq->start = env->start;
    s->rq->start_ts = env->start_timestamp;
    if (env->noffsets > 0) memcpy(s->rq->req, env->offsets, env->noffsets * sizeof(s->rq->req[0]));
    s->rq->nreq = env->noffsets;
    s->conn = c;
    s->topic = t;
    s->cnext = c->subs;
    c->subs = s;
    c->nsubs++;
    s->tnext = t->subs;
    if (t->subs) t->subs->tprev = &s->tnext;
    s->tprev = &t->subs;
    t->subs = s;
    t->nsubs++;
    if (t->linger) ksock_timer_stop(t->linger);
    b->stats.subscriptions++;
    return s;
nomem:
    sub_req_free(s);
    free(s);
    return NULL;
}

static void refuse(ksock_bridge_t *b, conn_t *c, const ksock_envelope_t *env, bool echo_topic,
                   int code, const char *msg)
{
    b->stats.subscribe_errors++;
    ksock__br_reply_error(b, c, env->id, env->id_len, echo_topic ? env->topic : NULL,
                          echo_topic ? env->topic_len : 0, code, msg);
}

void ksock__br_do_subscribe(ksock_bridge_t *b, conn_t *c, const ksock_envelope_t *env)
{
    if (b->kconf == NULL) {
        refuse(b, c, env, true, KSOCK_E_UNSUPPORTED, "this bridge has no Kafka reader configured");
        return;
    }
    if (b->draining) {
        refuse(b, c, env, true, KSOCK_E_SHUTDOWN, "the server is shutting down");
        return;
    }
    if (!ksock__br_topic_valid(env->topic, env->topic_len)) {
        refuse(b, c, env, false, KSOCK_E_PROTO,
               "not a valid Kafka topic name (1-249 of [a-zA-Z0-9._-], not . or ..)");
        return;
    }
    char name[256];
    memcpy(name, env->topic, env->topic_len);
    name[env->topic_len] = '\0';
    if (!ksock_principal_can(c->principal, name, KSOCK_PERM_SUBSCRIBE)) {
        refuse(b, c, env, true, KSOCK_E_FORBIDDEN, "not allowed to subscribe to this topic");
        return;
    }
    sub_t *old = sub_find(c, name);
    if (old) { /* a seek: the earlier subscription ends here */
        if (!old->active)
            ksock__br_reply_error(b, c, old->rq->id, old->rq->id_len, name, env->topic_len,
                                  KSOCK_E_CANCELED, "replaced by a later subscribe");
        ksock__br_sub_free(b, old);
    }
    if (c->nsubs >= b->max_subscriptions) {
        b->stats.limit_subscriptions++;
        refuse(b, c, env, true, KSOCK_E_LIMIT,
               "too many subscriptions on this connection (bridge.max_subscriptions)");
        return;
    }
    topic_t *t = ksock__br_topic_get(b, name, true);
    sub_t *s = t ? sub_new(b, c, t, env) : NULL;
    if (s == NULL) {
        if (t) ksock__br_topic_put(b, t);
        refuse(b, c, env, true, KSOCK_E_NOMEM, "out of memory");
        return;
    }
    int rc = 0;
    if (t->resolved && s->rq->start == KSOCK_START_LATEST)
        sub_apply(b, s, NULL, NULL, NULL, 0);
    else if (t->resolved)
        rc = ksock__br_lookup_start(b, t, s, name,
                                    s->rq->start == KSOCK_START_TIMESTAMP ? s->rq->start_ts : -1);
    else if (t->lk == NULL)
        rc = ksock__br_lookup_start(b, t, NULL, name, -1);
    if (rc != 0) sub_fail(b, s, rc, "cannot start a Kafka lookup");
}

void ksock__br_do_unsubscribe(ksock_bridge_t *b, conn_t *c, const ksock_envelope_t *env)
{
    char name[256];
    size_t n = env->topic_len < sizeof(name) - 1 ? env->topic_len : sizeof(name) - 1;
    memcpy(name, env->topic, n);
    name[n] = '\0';
    sub_t *s = env->topic_len < sizeof(name) - 1 ? sub_find(c, name) : NULL;
    if (s) {
        if (!s->active)
            ksock__br_reply_error(b, c, s->rq->id, s->rq->id_len, name, n, KSOCK_E_CANCELED,
                                  "ended by an unsubscribe");
        ksock__br_sub_free(b, s);
    }
    ksock_envelope_t e;
    ksock_envelope_init(&e);
    e.op = KSOCK_OP_UNSUBSCRIBED;
    e.id = env->id;
    e.id_len = env->id_len;
    e.topic = env->topic;
    e.topic_len = env->topic_len;
    ksock__br_reply(b, c, &e);
}

void ksock__br_subs_writable(ksock_bridge_t *b, conn_t *c)
{
    for (sub_t *s = c->subs; s && !c->ovf_head && !c->closing; s = s->cnext) {
        ksock__br_sub_unfull(b, s);
        if (s->gap_pending)
            ksock__br_sub_send_gap(b, s, NULL, 0,
                                   "slow client: records dropped while the send queue was full");
        if (s->catch_paused && s->cu) {
            s->catch_paused = false;
            for (int32_t p = 0; p < s->nparts; p++)
                if (s->catching[p]) ksock_kafka_consumer_resume(s->cu, s->topic->name, p);
        }
    }
}
