/*
 * Subscriptions that resume by themselves (include/ksock/ws.h, "Envelopes
 * and subscriptions"; the protocol is docs/protocol.md, Subscriptions).
 *
 * Per subscription the library keeps the next offset of every partition.
 * A subscription is "pending" from the moment its subscribe is sent until
 * the `subscribed` with its id arrives: records of the topic in between
 * belong to an earlier subscription (the server replaces one with the
 * next) and are dropped. When the connection opens again after a loss,
 * every subscription not yet sent on the new connection is sent again,
 * with start "offsets" listing every partition known, so the application
 * sees each record once.
 *
 * Subscribe frames bypass the disconnected queue of ws.c: they are made
 * again on every open, so a queued copy would be a stale second subscribe.
 */
#include "ws_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long a resume refused with a retriable code (KSOCK_E_KAFKA...) waits before the next. */
#define RESUME_RETRY_MS 1000

struct ksock__ws_sub_s {
    ksock__ws_sub_t *next;
    char *topic;
    char *id; /* the wire id of its subscribes: the caller's or "ksock.sub.N" */
    /* the caller's start, used until a `subscribed` gives positions */
    ksock_start_t start;
    int64_t start_timestamp;
    ksock_partition_offset_t *req;
    size_t nreq;
    /* next offset per partition, sorted by partition */
    ksock_partition_offset_t *pos;
    size_t npos, cap;
    bool have_pos;           /* a `subscribed` arrived: a subscribe now is a resume */
    bool pending;            /* sent, `subscribed` not yet in: its topic's records are dropped */
    bool resume;             /* the pending subscribe is the library's */
    bool unsubscribing;      /* `unsubscribe` sent: records dropped until `unsubscribed` */
    bool retry;              /* a refused resume waits for sub_timer */
    ksock_conn_id_t sent_on; /* the connection its last subscribe went out on; 0 none */
};

static void sub_free(ksock__ws_sub_t *s)
{
    if (s == NULL) return;
    free(s->topic);
    free(s->id);
    free(s->req);
    free(s->pos);
    free(s);
}

static ksock__ws_sub_t *sub_find(const ksock_ws_t *ws, const char *topic, size_t len)
{
    for (ksock__ws_sub_t *s = ws->subs; s; s = s->next)
        if (strlen(s->topic) == len && memcmp(s->topic, topic, len) == 0) return s;
    return NULL;
}

static void sub_unlink(ksock_ws_t *ws, ksock__ws_sub_t *s)
{
    for (ksock__ws_sub_t **pp = &ws->subs; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            return;
        }
    }
}

static bool id_is(const ksock__ws_sub_t *s, const ksock_envelope_t *env)
{
    return env->id && strlen(s->id) == env->id_len && memcmp(s->id, env->id, env->id_len) == 0;
}

/* ---- Positions ------------------------------------------------------------------ */

/* The index of `partition` in s->pos, or where it would go (*found false). */
static size_t pos_search(const ksock__ws_sub_t *s, int32_t partition, bool *found)
{
    size_t lo = 0, hi = s->npos;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->pos[mid].partition < partition)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < s->npos && s->pos[lo].partition == partition;
    return lo;
}

/* Set partition's next offset; `only_new` leaves a known partition alone. 0 or NOMEM. */
static int pos_set(ksock__ws_sub_t *s, int32_t partition, int64_t offset, bool only_new)
{
    bool found;
    size_t i = pos_search(s, partition, &found);
    if (found) {
        if (!only_new) s->pos[i].offset = offset;
        return 0;
    }
    if (s->npos == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        ksock_partition_offset_t *p = realloc(s->pos, cap * sizeof(*p));
        if (p == NULL) return KSOCK_E_NOMEM;
        s->pos = p;
        s->cap = cap;
    }
    memmove(&s->pos[i + 1], &s->pos[i], (s->npos - i) * sizeof(*s->pos));
    s->pos[i] = (ksock_partition_offset_t){partition, offset};
    s->npos++;
    return 0;
}

/* ---- Sending ---------------------------------------------------------------------- */

static int encode_envelope(ksock_ws_t *ws, const ksock_envelope_t *env, ksock_frame_t **out,
                           char *errstr, size_t errstr_size)
{
    if (ws->sv == NULL) {
        ksock_errstr_set(errstr, errstr_size, "the connection's serializer is not a plugin");
        return KSOCK_E_INVAL;
    }
    ksock_buf_t b = KSOCK_BUF_INIT;
    int rc = ws->sv->encode_envelope(ws->sv_inst, env, &b, errstr, errstr_size);
    if (rc != 0) {
        ksock_buf_free(&b);
        return rc;
    }
    *out = ksock_frame_adopt(ws->strategy->frame_type, b.data, b.len);
    if (*out == NULL) {
        ksock_buf_free(&b);
        ksock_errstr_set(errstr, errstr_size, "out of memory");
        return KSOCK_E_NOMEM;
    }
    return 0;
}

int ksock_ws_send_envelope(ksock_ws_t *ws, const ksock_envelope_t *env, char *errstr,
                           size_t errstr_size)
{
    if (ws == NULL || env == NULL) return KSOCK_E_INVAL;
    ksock_frame_t *f = NULL;
    int rc = encode_envelope(ws, env, &f, errstr, errstr_size);
    if (rc != 0) return rc;
    rc = ksock__ws_send_frame(ws, f);
    ksock_frame_unref(f);
    if (rc != 0) ksock_errstr_set(errstr, errstr_size, "%s", ksock_strerror(rc));
    return rc;
}

/* True when a frame handed to the transport now goes out on this connection. */
static bool can_send_now(const ksock_ws_t *ws)
{
    return !ws->user_closed && ws->conn_id &&
           (ws->state == KSOCK_WS_OPEN || ws->state == KSOCK_WS_CONNECTING);
}

/* To the transport directly (see the opening comment), on the current connection. */
static int send_now(ksock_ws_t *ws, const ksock_envelope_t *env, char *errstr, size_t errstr_size)
{
    ksock_frame_t *f = NULL;
    int rc = encode_envelope(ws, env, &f, errstr, errstr_size);
    if (rc != 0) return rc;
    rc = ws->mgr->tv->send(ws->mgr->transport->inst, ws->conn_id, f);
    ksock_frame_unref(f);
    if (rc != 0) ksock_errstr_set(errstr, errstr_size, "%s", ksock_strerror(rc));
    return rc;
}

/* The subscribe for `s`: from its positions once it has some (a resume), else as asked. */
static void sub_envelope(const ksock__ws_sub_t *s, ksock_envelope_t *env)
{
    ksock_envelope_init(env);
    env->op = KSOCK_OP_SUBSCRIBE;
    env->id = s->id;
    env->id_len = strlen(s->id);
    env->topic = s->topic;
    env->topic_len = strlen(s->topic);
    if (s->have_pos && s->npos > 0) {
        env->start = KSOCK_START_OFFSETS;
        env->offsets = s->pos;
        env->noffsets = s->npos;
        return;
    }
    env->start = s->start;
    env->offsets = s->req;
    env->noffsets = s->nreq;
    env->start_timestamp = s->start_timestamp;
}

static int sub_send(ksock_ws_t *ws, ksock__ws_sub_t *s, char *errstr, size_t errstr_size)
{
    ksock_envelope_t env;
    sub_envelope(s, &env);
    int rc = send_now(ws, &env, errstr, errstr_size);
    if (rc != 0) return rc;
    s->sent_on = ws->conn_id;
    s->pending = true;
    s->resume = s->have_pos;
    s->retry = false;
    return 0;
}

/* Resend `s` on the open connection; a failure ends the connection, and the next one resumes. */
static void sub_resend(ksock_ws_t *ws, ksock__ws_sub_t *s)
{
    char err[256] = "";
    int rc = sub_send(ws, s, err, sizeof(err));
    if (rc == 0) return;
    ksock_report_error(ws->mgr->rt, rc, WS_COMPONENT,
                       "%s: cannot resume the subscription to %s: %s", ws->url, s->topic, err);
    ws->mgr->tv->close(ws->mgr->transport->inst, ws->conn_id, 1011, "cannot resume");
}

void ksock__ws_subs_opened(ksock_ws_t *ws)
{
    ksock__ws_sub_t *s = ws->subs, *next;
    for (; s && ws->state == KSOCK_WS_OPEN; s = next) {
        next = s->next;
        if (s->sent_on == ws->conn_id) continue;
        if (s->unsubscribing) {
            /* The server that had it is gone: nothing left to end. */
            sub_unlink(ws, s);
            sub_free(s);
            continue;
        }
        sub_resend(ws, s);
    }
}

static void sub_timer_cb(ksock_timer_t *t, void *data)
{
    ksock_ws_t *ws = data;
    (void)t;
    for (ksock__ws_sub_t *s = ws->subs; s && ws->state == KSOCK_WS_OPEN; s = s->next)
        if (s->retry) sub_resend(ws, s);
}

/* ---- Receiving ------------------------------------------------------------------------- */

/* The connection cannot keep its positions: end it, the next one resumes from what it has. */
static bool fail_nomem(ksock_ws_t *ws)
{
    ksock_report_error(ws->mgr->rt, KSOCK_E_NOMEM, WS_COMPONENT,
                       "%s: out of memory in a subscription's message", ws->url);
    ws->mgr->tv->close(ws->mgr->transport->inst, ws->conn_id, 1011, "out of memory");
    return false;
}

static bool on_record(ksock_ws_t *ws, ksock__ws_sub_t *s, const ksock_envelope_t *env)
{
    if (s->pending || s->unsubscribing) return false;
    if (pos_set(s, env->partition, env->offset + 1, false) != 0) return fail_nomem(ws);
    return true;
}

static int cmp_partition(const void *a, const void *b)
{
    const ksock_partition_offset_t *x = a, *y = b;
    return (x->partition > y->partition) - (x->partition < y->partition);
}

static bool on_subscribed(ksock_ws_t *ws, ksock__ws_sub_t *s, const ksock_envelope_t *env)
{
    if (env->id == NULL) {
        /* Partitions added; while pending, the coming answer lists them all. */
        if (s->pending || s->unsubscribing) return true;
        for (size_t i = 0; i < env->noffsets; i++)
            if (pos_set(s, env->offsets[i].partition, env->offsets[i].offset, true) != 0)
                return fail_nomem(ws);
        return true;
    }
    if (!s->pending || s->unsubscribing || !id_is(s, env)) return true;
    /* Where the subscription really starts: these replace what we had. */
    size_t n = env->noffsets;
    ksock_partition_offset_t *p = malloc((n ? n : 1) * sizeof(*p));
    if (p == NULL) return fail_nomem(ws);
    memcpy(p, env->offsets, n * sizeof(*p));
    qsort(p, n, sizeof(*p), cmp_partition);
    free(s->pos);
    s->pos = p;
    s->npos = s->cap = n;
    s->have_pos = true;
    s->pending = false;
    return true;
}

static void on_error(ksock_ws_t *ws, ksock__ws_sub_t *s, const ksock_envelope_t *env)
{
    /* -25: an earlier subscribe replaced by the pending one; -32 comes after `subscribed`. */
    if (!s->pending || !id_is(s, env) || env->error_code == KSOCK_E_CANCELED ||
        env->error_code == KSOCK_E_SKIPPED)
        return;
    if (s->resume && ksock_err_class(env->error_code) == KSOCK_ERRCLASS_RETRIABLE) {
        s->retry = true;
        s->sent_on = 0; /* a new connection sends it too */
        ksock_timer_start(ws->sub_timer, RESUME_RETRY_MS, 0);
        return;
    }
    sub_unlink(ws, s); /* refused: no subscription */
    sub_free(s);
}

/* What the subscriptions make of `env`; false: hold it back from on_envelope. */
static bool sub_account(ksock_ws_t *ws, const ksock_envelope_t *env)
{
    if (env->topic == NULL) return true;
    ksock__ws_sub_t *s = sub_find(ws, env->topic, env->topic_len);
    if (s == NULL) return true; /* not one of ours */
    switch (env->op) {
    case KSOCK_OP_RECORD:
        return on_record(ws, s, env);
    case KSOCK_OP_SUBSCRIBED:
        return on_subscribed(ws, s, env);
    case KSOCK_OP_ERROR:
        on_error(ws, s, env);
        return true;
    case KSOCK_OP_UNSUBSCRIBED:
        if (s->unsubscribing) {
            sub_unlink(ws, s);
            sub_free(s);
        }
        return true;
    default:
        return true;
    }
}

void ksock__ws_subs_message(ksock_ws_t *ws, const void *payload, size_t len)
{
    if ((ws->subs == NULL && ws->on_envelope == NULL && ws->on_token == NULL) || ws->sv == NULL)
        return;
    ksock_envelope_t env;
    ksock_envelope_init(&env);
    char err[256] = "";
    int rc = ws->sv->decode_envelope(ws->sv_inst, payload, len, ws->sv_lim, &env, err, sizeof(err));
    if (rc == KSOCK_E_NOMEM && ws->subs) {
        fail_nomem(ws); /* a record may be in it: the resume fetches it again */
    } else if (rc != 0) {
        ksock_report_error(ws->mgr->rt, rc, WS_COMPONENT,
                           "%s: a %zu-byte message is not an envelope: %s", ws->url, len, err);
    } else if (!ksock__ws_token_envelope(ws, &env) && sub_account(ws, &env) && ws->on_envelope) {
        ws->on_envelope(ws, &env);
    }
    ksock_envelope_clear(&env);
}

/* ---- Life ----------------------------------------------------------------------------------- */

int ksock__ws_subs_init(ksock_ws_t *ws)
{
    /* A caller-written strategy has no envelopes: then only the calls here refuse. */
    if (ksock__serde_plugin_of(ws->strategy, &ws->sv, &ws->sv_inst, &ws->sv_lim) != 0)
        ws->sv = NULL;
    return ksock_timer_init(ws->mgr->rt, &ws->sub_timer, sub_timer_cb, ws);
}

void ksock__ws_subs_free(ksock_ws_t *ws)
{
    ksock_timer_close(ws->sub_timer);
    ws->sub_timer = NULL;
    while (ws->subs) {
        ksock__ws_sub_t *s = ws->subs;
        ws->subs = s->next;
        sub_free(s);
    }
}

void ksock_ws_on_envelope(ksock_ws_t *ws, ksock_ws_envelope_cb cb)
{
    ws->on_envelope = cb;
}

/* ---- Subscribe, unsubscribe, position ------------------------------------------------------- */

void ksock_ws_subscribe_opts_init(ksock_ws_subscribe_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->size = sizeof(*o);
    o->start = KSOCK_START_LATEST;
    o->start_timestamp = -1;
}

/* A new subscription from the caller's arguments, checked as an envelope. */
static int sub_new(ksock_ws_t *ws, const char *topic, const ksock_ws_subscribe_opts_t *o,
                   ksock__ws_sub_t **out, char *errstr, size_t errstr_size)
{
    ksock__ws_sub_t *s = calloc(1, sizeof(*s));
    if (s == NULL) return KSOCK_E_NOMEM;
    s->topic = ksock__strdup(topic);
    if (o->id) {
        s->id = ksock__strdup(o->id);
    } else {
        char id[48];
        snprintf(id, sizeof(id), "ksock.sub.%llu", (unsigned long long)++ws->next_req);
        s->id = ksock__strdup(id);
    }
    s->start = o->start;
    s->start_timestamp = o->start_timestamp;
    s->nreq = o->offsets ? o->noffsets : 0;
    if (s->nreq) s->req = malloc(s->nreq * sizeof(*s->req));
    if (s->topic == NULL || s->id == NULL || (s->nreq && s->req == NULL)) {
        sub_free(s);
        ksock_errstr_set(errstr, errstr_size, "out of memory");
        return KSOCK_E_NOMEM;
    }
    if (s->nreq) memcpy(s->req, o->offsets, s->nreq * sizeof(*s->req));
    ksock_envelope_t env;
    sub_envelope(s, &env);
    if (ksock_envelope_check(&env, errstr, errstr_size) != 0) {
        sub_free(s);
        return KSOCK_E_INVAL;
    }
    *out = s;
    return 0;
}

int ksock_ws_subscribe(ksock_ws_t *ws, const char *topic, const ksock_ws_subscribe_opts_t *opts,
                       char *errstr, size_t errstr_size)
{
    ksock_ws_subscribe_opts_t o;
    ksock_ws_subscribe_opts_init(&o);
    if (opts && opts->size < sizeof(o)) {
        ksock_errstr_set(errstr, errstr_size, "opts: size %zu, expected %zu", opts->size,
                         sizeof(o));
        return KSOCK_E_INVAL;
    }
    if (opts) o = *opts;
    if (topic == NULL || *topic == '\0') {
        ksock_errstr_set(errstr, errstr_size, "empty topic");
        return KSOCK_E_INVAL;
    }
    if (ws->user_closed || ws->state == KSOCK_WS_CLOSING) {
        ksock_errstr_set(errstr, errstr_size, "the connection is closing");
        return KSOCK_E_STATE;
    }
    if (ws->sv == NULL) {
        ksock_errstr_set(errstr, errstr_size, "the connection's serializer is not a plugin");
        return KSOCK_E_INVAL;
    }
    ksock__ws_sub_t *s = NULL;
    int rc = sub_new(ws, topic, &o, &s, errstr, errstr_size);
    if (rc != 0) return rc;
    /* CLOSED: the attempt failed and its close event is on its way; the next open sends it. */
    rc = can_send_now(ws) ? sub_send(ws, s, errstr, errstr_size) : KSOCK_E_CLOSED;
    if (rc == KSOCK_E_CLOSED) {
        s->pending = true;
        rc = 0;
    }
    if (rc != 0) {
        sub_free(s);
        return rc;
    }
    /* Replace an earlier subscription to the topic (the server does the same). */
    ksock__ws_sub_t *old = sub_find(ws, topic, strlen(topic));
    if (old) {
        sub_unlink(ws, old);
        sub_free(old);
    }
    s->next = ws->subs;
    ws->subs = s;
    return 0;
}

int ksock_ws_unsubscribe(ksock_ws_t *ws, const char *topic)
{
    ksock__ws_sub_t *s = topic ? sub_find(ws, topic, strlen(topic)) : NULL;
    if (s == NULL || s->unsubscribing) return KSOCK_E_NOENT;
    if (can_send_now(ws) && s->sent_on == ws->conn_id) {
        char id[48], err[256];
        snprintf(id, sizeof(id), "ksock.unsub.%llu", (unsigned long long)++ws->next_req);
        ksock_envelope_t env;
        ksock_envelope_init(&env);
        env.op = KSOCK_OP_UNSUBSCRIBE;
        env.id = id;
        env.id_len = strlen(id);
        env.topic = s->topic;
        env.topic_len = strlen(s->topic);
        int rc = send_now(ws, &env, err, sizeof(err));
        if (rc != 0 && rc != KSOCK_E_CLOSED) return rc;
        if (rc == 0) {
            s->unsubscribing = true;
            s->retry = false;
            return 0;
        }
    }
    /* The server does not have it (not sent on this connection): forget it. */
    sub_unlink(ws, s);
    sub_free(s);
    return 0;
}

int ksock_ws_position(const ksock_ws_t *ws, const char *topic, ksock_partition_offset_t *out,
                      size_t cap, size_t *n)
{
    const ksock__ws_sub_t *s = topic ? sub_find(ws, topic, strlen(topic)) : NULL;
    if (s == NULL || s->unsubscribing) return KSOCK_E_NOENT;
    size_t k = s->npos < cap ? s->npos : cap;
    if (k) memcpy(out, s->pos, k * sizeof(*out));
    if (n) *n = s->npos;
    return 0;
}
