/*
 * transport "ws": connections. The connection table and pending list, send
 * queues, events posted to the loop thread (and their delivery there), the
 * inbound bound, and on the lws thread the end of a connection and reading
 * (writing is ws_write.c).
 */
#include "ws_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char ws__gone_mark;

/* ---- Connection table (under lock) ------------------------------------ */

static size_t slot_of(const ws_inst_t *inst, ksock_conn_id_t id)
{
    return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 20) & (inst->tcap - 1);
}

/*
 * The table is made with WS_TABLE_MIN slots by create and grows here with
 * the number of connections. Growing is only for speed: when there is no
 * memory for a larger table the chains just get longer, so an insert
 * never fails.
 */
void ws__table_insert(ws_inst_t *inst, ws_conn_t *c)
{
    if (inst->tcount + 1 > inst->tcap) {
        size_t ncap = inst->tcap * 2;
        ws_conn_t **nt = calloc(ncap, sizeof(*nt));
        if (nt == NULL) goto insert;
        ws_conn_t **old = inst->table;
        size_t ocap = inst->tcap;
        inst->table = nt;
        inst->tcap = ncap;
        for (size_t i = 0; i < ocap; i++) {
            ws_conn_t *e = old[i];
            while (e) {
                ws_conn_t *next = e->hnext;
                size_t s = slot_of(inst, e->id);
                e->hnext = nt[s];
                nt[s] = e;
                e = next;
            }
        }
        free(old);
    }
insert:;
    size_t s = slot_of(inst, c->id);
    c->hnext = inst->table[s];
    inst->table[s] = c;
    inst->tcount++;
    if (!c->client) inst->nserver++;
}

ws_conn_t *ws__table_find(ws_inst_t *inst, ksock_conn_id_t id)
{
    if (inst->tcap == 0) return NULL;
    for (ws_conn_t *e = inst->table[slot_of(inst, id)]; e; e = e->hnext)
        if (e->id == id) return e;
    return NULL;
}

void ws__table_remove(ws_inst_t *inst, ws_conn_t *c)
{
    if (inst->tcap == 0) return;
    ws_conn_t **pp = &inst->table[slot_of(inst, c->id)];
    while (*pp && *pp != c)
        pp = &(*pp)->hnext;
    if (*pp) {
        *pp = c->hnext;
        inst->tcount--;
        if (!c->client) inst->nserver--;
    }
}

/* Put a connection on the pending list; true when the list was empty (wake needed). */
bool ws__pending_add(ws_inst_t *inst, ws_conn_t *c)
{
    if (c->pprev) return false;
    bool was_empty = inst->pending == NULL;
    c->pnext = inst->pending;
    if (c->pnext) c->pnext->pprev = &c->pnext;
    inst->pending = c;
    c->pprev = &inst->pending;
    return was_empty;
}

void ws__pending_del(ws_conn_t *c)
{
    if (!c->pprev) return;
    *c->pprev = c->pnext;
    if (c->pnext) c->pnext->pprev = c->pprev;
    c->pnext = NULL;
    c->pprev = NULL;
}

ksock_frame_t *ws__queue_pop(ws_conn_t *c)
{
    if (c->qlen == 0) return NULL;
    ksock_frame_t *f = c->q[c->qhead];
    c->q[c->qhead] = NULL;
    c->qhead = (c->qhead + 1) & (c->qcap - 1);
    c->qlen--;
    size_t len = 0;
    ksock_frame_data(f, &len);
    c->qbytes -= len;
    if (c->qlen == 0 && c->qcap <= 8) {
        /* An idle connection keeps no ring (memory per idle connection); a busy one keeps its. */
        free(c->q);
        c->q = NULL;
        c->qcap = c->qhead = 0;
    }
    return f;
}

int ws__queue_push(ws_conn_t *c, ksock_frame_t *f, size_t len)
{
    if (c->qlen == c->qcap) {
        size_t ncap = c->qcap ? c->qcap * 2 : 4;
        ksock_frame_t **nq = malloc(ncap * sizeof(*nq));
        if (nq == NULL) return KSOCK_E_NOMEM;
        for (size_t i = 0; i < c->qlen; i++)
            nq[i] = c->q[(c->qhead + i) & (c->qcap - 1)];
        free(c->q);
        c->q = nq;
        c->qcap = ncap;
        c->qhead = 0;
    }
    c->q[(c->qhead + c->qlen) & (c->qcap - 1)] = ksock_frame_ref(f);
    c->qlen++;
    c->qbytes += len;
    return 0;
}

/*
 * A connection with its id and its close event. The close event is
 * allocated now, with room for any reason, so that ending a connection
 * never needs memory: on the lws thread, where an allocation failure
 * cannot be returned to anyone, it is answered by closing the connection,
 * and that close must always reach the host.
 */
ws_conn_t *ws__conn_new(ws_inst_t *inst)
{
    ws_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL) return NULL;
    c->close_ev = calloc(1, sizeof(*c->close_ev) + WS_REASON_ROOM);
    if (c->close_ev == NULL) {
        free(c);
        return NULL;
    }
    c->close_ev->kind = EV_CLOSE;
    c->close_ev->c = c;
    c->inst = inst;
    c->id = atomic_fetch_add(&inst->next_id, 1);
    return c;
}

void ws__conn_free(ws_conn_t *c)
{
    while (c->held_head) {
        struct ws_event_s *e = c->held_head;
        c->held_head = e->next;
        ws__event_free(e);
    }
    free(c->close_ev); /* still here when the connection never finished */
    ksock_frame_t *f;
    while ((f = ws__queue_pop(c)) != NULL)
        ksock_frame_unref(f);
    free(c->q);
    ksock_buf_free(&c->rx);
    free(c->peer_reason);
    free(c->subprotocol);
    if (c->cl) {
        free(c->cl->url);
        free(c->cl->sub_req);
        free(c->cl->ca_file);
        free(c->cl->cert_file);
        free(c->cl->key_file);
        for (size_t i = 0; i < c->cl->nheaders; i++) {
            free((char *)c->cl->headers[i].name);
            free((char *)c->cl->headers[i].value);
        }
        free(c->cl->headers);
        free(c->cl);
    }
    free(c);
}

/* ---- Events to the loop thread ----------------------------------------- */

static void drain_events(ksock_runtime_t *rt, void *arg);

/*
 * NULL when out of memory: the lws thread then closes the connection
 * (see ws__conn_fail_nomem); a close event never needs memory, it was
 * allocated with its connection (ws__conn_new).
 */
ws_event_t *ws__event_new(int kind, ws_conn_t *c, const void *data, size_t len)
{
    ws_event_t *e = malloc(sizeof(*e) + len + 1);
    if (e == NULL) return NULL;
    memset(e, 0, sizeof(*e));
    e->kind = kind;
    e->c = c;
    e->len = len;
    if (len) memcpy(e->data, data, len);
    e->data[len] = '\0';
    return e;
}

/* Queue an event; one runtime post per empty->non-empty transition. Any thread. */
void ws__event_push(ws_inst_t *inst, ws_event_t *e)
{
    pthread_mutex_lock(&inst->evlock);
    bool was_empty = inst->ev_head == NULL;
    if (inst->ev_tail)
        inst->ev_tail->next = e;
    else
        inst->ev_head = e;
    inst->ev_tail = e;
    pthread_mutex_unlock(&inst->evlock);
    if (was_empty) {
        atomic_fetch_add(&inst->refs, 1);
        if (ksock_runtime_post(inst->rt, drain_events, inst) != 0) {
            /* The runtime is going away: the events are freed by destroy. */
            atomic_fetch_sub(&inst->refs, 1);
        }
    }
}

void ws__event_free(ws_event_t *e)
{
    if (e->kind == EV_CLOSE) {
        ws_conn_t *c = e->c;
        if (c->rprev) { /* loop thread: off the resumed list before it goes */
            *c->rprev = c->rnext;
            if (c->rnext) c->rnext->rprev = c->rprev;
        }
        ws__conn_free(c);
    }
    free(e);
}

static void deliver(ws_inst_t *inst, ws_event_t *e)
{
    ws_conn_t *c = e->c;
    const ksock_transport_events_t *ev = c->ev;
    switch (e->kind) {
    case EV_OPEN:
        if (ev->on_open) ev->on_open(ev->data, c->id, c->conn_data, e->str);
        break;
    case EV_MESSAGE:
        if (ev->on_message) ev->on_message(ev->data, c->id, c->conn_data, e->type, e->data, e->len);
        break;
    case EV_WRITABLE:
        if (ev->on_writable) ev->on_writable(ev->data, c->id, c->conn_data);
        break;
    case EV_CLOSE:
        if (ev->on_close) ev->on_close(ev->data, c->id, c->conn_data, e->code, e->str, e->err);
        break;
    }
}

/* ---- Inbound bound ------------------------------------------------------ */

static void throttled_del(ws_conn_t *c)
{
    if (!c->tprev) return;
    *c->tprev = c->tnext;
    if (c->tnext) c->tnext->tprev = c->tprev;
    c->tnext = NULL;
    c->tprev = NULL;
}

/* Under evlock: may a throttled connection be read again? */
static bool rx_may_resume(const ws_inst_t *inst, const ws_conn_t *c)
{
    return c->rxq_bytes <= (size_t)inst->o->receive_queue_max_bytes / 2 &&
           inst->rxq_total <= (size_t)inst->o->receive_queue_max_total / 2;
}

/*
 * lws thread, before the message is queued: count it, and tell the caller
 * to stop reading when it crosses a bound. The message itself is kept: at
 * most one message per connection goes over the bound.
 */
static bool rx_account(ws_inst_t *inst, ws_conn_t *c, size_t len)
{
    pthread_mutex_lock(&inst->evlock);
    c->rxq_bytes += len;
    inst->rxq_total += len;
    bool stop = !c->rx_throttled && !atomic_load(&inst->stopping) &&
                (c->rxq_bytes >= (size_t)inst->o->receive_queue_max_bytes ||
                 inst->rxq_total >= (size_t)inst->o->receive_queue_max_total);
    if (stop) {
        c->rx_throttled = true;
        c->tnext = inst->throttled;
        if (c->tnext) c->tnext->tprev = &c->tnext;
        inst->throttled = c;
        c->tprev = &inst->throttled;
    }
    pthread_mutex_unlock(&inst->evlock);
    return stop;
}

/*
 * Loop thread, once a message was delivered (or dropped): uncount it. When
 * that makes this connection readable again, or brings the total back
 * under half its bound while some connection waits, wake the lws thread.
 */
static void rx_release(ws_inst_t *inst, ws_conn_t *c, size_t len)
{
    pthread_mutex_lock(&inst->evlock);
    size_t half_total = (size_t)inst->o->receive_queue_max_total / 2;
    bool crossed = inst->rxq_total > half_total && inst->rxq_total - len <= half_total;
    c->rxq_bytes -= len;
    inst->rxq_total -= len;
    bool wake = (c->rx_throttled && rx_may_resume(inst, c)) || (crossed && inst->throttled != NULL);
    pthread_mutex_unlock(&inst->evlock);
    if (wake && !atomic_exchange(&inst->resume_req, true)) ws__wake(inst);
}

/* lws thread (wait-cancelled): read again every connection now under its bounds. */
void ws__rx_resume(ws_inst_t *inst)
{
    if (!atomic_exchange(&inst->resume_req, false)) return;
    pthread_mutex_lock(&inst->evlock);
    for (ws_conn_t *c = inst->throttled, *next; c; c = next) {
        next = c->tnext;
        if (!rx_may_resume(inst, c)) continue;
        throttled_del(c);
        c->rx_throttled = false;
        if (c->wsi) lws_rx_flow_control(c->wsi, 1);
    }
    pthread_mutex_unlock(&inst->evlock);
}

/* Loop thread: deliver one message event (or hold it for a paused connection). */
static void deliver_message(ws_inst_t *inst, ws_event_t *e)
{
    ws_conn_t *c = e->c;
    if (c->read_paused || c->held_head) {
        e->next = NULL;
        if (c->held_tail)
            c->held_tail->next = e;
        else
            c->held_head = e;
        c->held_tail = e;
        return;
    }
    deliver(inst, e);
    rx_release(inst, c, e->len);
    ws__event_free(e);
}

/* Loop thread: a closing connection's held messages are dropped, never delivered. */
static void drop_held(ws_inst_t *inst, ws_conn_t *c)
{
    while (c->held_head) {
        ws_event_t *e = c->held_head;
        c->held_head = e->next;
        rx_release(inst, c, e->len);
        ws__event_free(e);
    }
    c->held_tail = NULL;
}

static void drain_events(ksock_runtime_t *rt, void *arg)
{
    ws_inst_t *inst = arg;
    (void)rt;
    for (;;) {
        pthread_mutex_lock(&inst->evlock);
        ws_event_t *e = inst->ev_head;
        inst->ev_head = inst->ev_tail = NULL;
        pthread_mutex_unlock(&inst->evlock);
        if (e == NULL) break;
        while (e) {
            ws_event_t *next = e->next;
            /* After destroy (or while the runtime shuts down) only free. */
            if (inst->destroyed || ksock_runtime_is_stopping(inst->rt)) {
                ws__event_free(e);
            } else if (e->kind == EV_MESSAGE) {
                deliver_message(inst, e);
            } else {
                if (e->kind == EV_CLOSE) drop_held(inst, e->c);
                deliver(inst, e);
                ws__event_free(e);
            }
            e = next;
        }
    }
    ws__inst_unref(inst);
}

/*
 * Loop thread, posted by pause_read(false): deliver what resumed
 * connections held, in order, until one is paused again.
 */
void ws__deliver_held(ksock_runtime_t *rt, void *arg)
{
    ws_inst_t *inst = arg;
    (void)rt;
    inst->resume_posted = false;
    while (inst->resumed && !inst->destroyed && !ksock_runtime_is_stopping(inst->rt)) {
        ws_conn_t *c = inst->resumed;
        inst->resumed = c->rnext;
        if (c->rnext) c->rnext->rprev = &inst->resumed;
        c->rnext = NULL;
        c->rprev = NULL;
        while (c->held_head && !c->read_paused) {
            ws_event_t *e = c->held_head;
            c->held_head = e->next;
            if (c->held_head == NULL) c->held_tail = NULL;
            deliver(inst, e);
            rx_release(inst, c, e->len);
            ws__event_free(e);
        }
    }
    ws__inst_unref(inst);
}

/* ---- lws thread: connection end --------------------------------------- */

/*
 * The connection is over: take it out of the table and queue its close
 * event (which frees it once delivered). Idempotent. lws thread.
 */
void ws__conn_finish(ws_conn_t *c, struct lws *wsi, int code, const char *reason, int err)
{
    ws_inst_t *inst = c->inst;
    /* Whatever happens next, no callback may find c through this wsi again. */
    void *mark = c->counted ? WS_GONE : NULL;
    if (wsi) lws_set_opaque_user_data(wsi, mark);
    if (c->wsi && c->wsi != wsi) lws_set_opaque_user_data(c->wsi, mark);
    c->wsi = NULL;
    pthread_mutex_lock(&inst->lock);
    if (c->gone) {
        pthread_mutex_unlock(&inst->lock);
        return;
    }
    c->gone = true;
    ws__table_remove(inst, c);
    ws__pending_del(c);
    if (inst->closing_all && inst->tcount == 0) pthread_cond_broadcast(&inst->cond);
    pthread_mutex_unlock(&inst->lock);
    pthread_mutex_lock(&inst->evlock);
    throttled_del(c);
    pthread_mutex_unlock(&inst->evlock);
    ws_event_t *e = c->close_ev; /* set by ws__conn_new; gone makes this the one use */
    c->close_ev = NULL;
    e->code = code;
    e->err = err;
    if (reason && reason != (const char *)e->data) /* not already there (WS_CLOSE_REASON) */
        snprintf((char *)e->data, c->client ? WS_REASON_ROOM_CLIENT : WS_REASON_ROOM, "%s", reason);
    if (reason) {
        e->str = (const char *)e->data;
    }
    /*
     * Inside lws_client_connect_via_info() the caller still uses c after
     * the call returns: it pushes the event itself (see ws__client_start).
     */
    if (c->cl && c->cl->in_start)
        c->deferred_close = e;
    else
        ws__event_push(inst, e);
}

/*
 * lws hangs up, without a close frame, on a connection that has not been
 * "valid" (a pong, at least) for idle_timeout. When nothing at all came
 * for that long, that is why this connection went.
 */
static bool conn_idle_expired(const ws_conn_t *c)
{
    uint64_t idle = (uint64_t)c->inst->o->idle_timeout;
    return idle > 0 && ksock_now_ns() - c->last_rx_ns >= idle * 1000000ull;
}

/* Close event values for a connection whose wsi is going away. */
void ws__conn_closed(ws_conn_t *c, struct lws *wsi)
{
    if (c->peer_closed)
        ws__conn_finish(c, wsi, c->peer_code, c->peer_reason, 0);
    else if (c->local_closed)
        ws__conn_finish(c, wsi, c->close_code, WS_CLOSE_REASON(c)[0] ? WS_CLOSE_REASON(c) : NULL,
                        0);
    else if (c->opened && conn_idle_expired(c))
        ws__conn_finish(c, wsi, 1006, "idle timeout: nothing heard, not even a pong",
                        KSOCK_E_TIMEDOUT);
    else
        ws__conn_finish(c, wsi, 1006, NULL, c->opened ? KSOCK_E_CONNRESET : KSOCK_E_CLOSED);
}

/* ---- lws thread: closing from a callback ------------------------------- */

/* Read a closing connection again: lws must see the peer's close frame. */
void ws__rx_unthrottle(ws_inst_t *inst, ws_conn_t *c, struct lws *wsi)
{
    pthread_mutex_lock(&inst->evlock);
    bool was = c->rx_throttled;
    throttled_del(c);
    c->rx_throttled = false;
    pthread_mutex_unlock(&inst->evlock);
    if (was) lws_rx_flow_control(wsi, 1);
}

int ws__conn_close_now(ws_conn_t *c, struct lws *wsi, int code, const char *why)
{
    c->local_closed = true;
    c->close_code = code;
    snprintf(WS_CLOSE_REASON(c), WS_REASON_ROOM, "%s", why);
    lws_close_reason(wsi, (enum lws_close_status)code, (unsigned char *)why, strlen(why));
    return -1;
}

int ws__conn_fail_nomem(ws_conn_t *c, struct lws *wsi)
{
    return ws__conn_close_now(c, wsi, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
}

/* ---- lws thread: reading ---------------------------------------------- */

/*
 * Refuse what the peer sent with `code`, from the next WRITEABLE rather
 * than by returning -1 here on a client connection: libwebsockets 4.1
 * goes on parsing the rest of the read buffer of a client connection
 * closed from inside RECEIVE, and crashes. A server connection closes at
 * once (deferring lets the peer write on into a socket we then reset),
 * unless permessage-deflate is on: closing from inside the inflate loop
 * leaves lws sending the close frame only ~20 s later.
 */
static int conn_refuse_rx(ws_inst_t *inst, ws_conn_t *c, struct lws *wsi, int code)
{
    c->rx_close = code;
    ksock_buf_free(&c->rx);
    if (!c->client && !c->deflate) return ws__conn_write(inst, c, wsi);
    lws_callback_on_writable(wsi);
    return 0;
}

/*
 * Text messages are checked for UTF-8 here, whole, rather than by lws
 * (LWS_SERVER_OPTION_VALIDATE_UTF8): lws closes with 1007 on its own and
 * the host would only see the socket go (1006). Checking the joined
 * message also covers a code point split across fragments.
 */
int ws__conn_receive(ws_inst_t *inst, ws_conn_t *c, struct lws *wsi, const void *in, size_t len)
{
    bool first = lws_is_first_fragment(wsi), final = lws_is_final_fragment(wsi);
    if (first) {
        c->rx.len = 0;
        c->rx_binary = lws_frame_is_binary(wsi);
    }
    c->last_rx_ns = ksock_now_ns();
    if (c->rx_close || c->local_closed) return 0; /* closing: drop the rest */
    if (c->rx.len + len > c->max_message)
        return conn_refuse_rx(inst, c, wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE);
    ksock_frame_type_t type = c->rx_binary ? KSOCK_FRAME_BINARY : KSOCK_FRAME_TEXT;
    const void *msg = in;
    size_t mlen = len;
    if (!final || c->rx.len > 0) {
        if (ksock_buf_append(&c->rx, in, len) != 0)
            return conn_refuse_rx(inst, c, wsi, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION);
        if (!final) return 0;
        msg = c->rx.data;
        mlen = c->rx.len;
    }
    if (type == KSOCK_FRAME_TEXT && !ksock_utf8_check(msg, mlen, NULL))
        return conn_refuse_rx(inst, c, wsi, LWS_CLOSE_STATUS_INVALID_PAYLOAD);
    ws_event_t *e = ws__event_new(EV_MESSAGE, c, msg, mlen); /* common case: no copy into rx */
    if (e == NULL) /* out of memory: close this connection rather than the process */
        return conn_refuse_rx(inst, c, wsi, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION);
    if (msg == c->rx.data) {
        c->rx.len = 0;
        /* Do not let one big message pin memory on an idle connection. */
        if (c->rx.cap > 64 * 1024) ksock_buf_free(&c->rx);
    }
    e->type = type;
    bool stop = rx_account(inst, c, mlen);
    ws__event_push(inst, e);
    if (stop) lws_rx_flow_control(wsi, 0);
    return 0;
}

/*
 * The peer's close frame. lws 4.1 has already dealt with a close code that
 * RFC 6455 7.4 does not allow: it rewrote it to 1002 in this very payload,
 * which it then echoes. It echoes everything else as it came, so a server
 * connection refuses here what RFC 6455 5.5.1 forbids: a 1-byte payload
 * (1002) and a reason that is not UTF-8 (1007). Returning -1 makes lws
 * send the lws_close_reason() close frame instead of the echo.
 */
int ws__conn_peer_close(ws_conn_t *c, struct lws *wsi, const unsigned char *b, size_t len)
{
    const char *why = NULL;
    int code = 0;
    if (!c->client && len == 1) {
        code = LWS_CLOSE_STATUS_PROTOCOL_ERR;
        why = "close frame with a 1-byte payload";
    } else if (!c->client && len > 2 && !ksock_utf8_check(b + 2, len - 2, NULL)) {
        code = LWS_CLOSE_STATUS_INVALID_PAYLOAD;
        why = "close reason is not UTF-8";
    }
    if (code) return ws__conn_close_now(c, wsi, code, why);
    c->peer_closed = true;
    c->peer_code = len >= 2 ? (b[0] << 8 | b[1]) : 1005;
    free(c->peer_reason);
    c->peer_reason = NULL;
    if (len > 2) {
        c->peer_reason = malloc(len - 1);
        if (c->peer_reason) {
            memcpy(c->peer_reason, b + 2, len - 2);
            c->peer_reason[len - 2] = '\0';
        }
    }
    return 0;
}
