/*
 * transport "ws": the lws service thread: wake-ups from the loop thread,
 * the one lws protocol callback, and the thread's start (with the libev
 * tick).
 */
#include "ws_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- lws thread: wake-ups ---------------------------------------------- */

/* Under lock: run the function ws__call() handed over, and tell it it ran. */
static void run_call(ws_inst_t *inst)
{
    ws_call_fn fn = inst->call_fn;
    void *arg = inst->call_arg;
    inst->call_fn = NULL;
    if (fn == NULL) return;
    /* Run without the lock: vhost creation calls back into ws__callback. */
    pthread_mutex_unlock(&inst->lock);
    fn(inst, arg);
    pthread_mutex_lock(&inst->lock);
    inst->call_done = true;
    pthread_cond_broadcast(&inst->cond);
}

/*
 * Under lock, once ws_stop() set closing_all: ask every connection to
 * close with 1001 after its queue drains, reading it meanwhile: lws closes
 * a connection that has unread input without waiting for the peer's close,
 * and the reset that follows can destroy the replies and the close frame
 * on their way.
 */
static void close_all(ws_inst_t *inst)
{
    for (size_t s = 0; s < inst->tcap; s++)
        for (ws_conn_t *c = inst->table[s]; c; c = c->hnext) {
            if (c->wsi) ws__rx_unthrottle(inst, c, c->wsi);
            if (!c->close_req) {
                c->close_req = true;
                c->close_code = LWS_CLOSE_STATUS_GOINGAWAY;
                snprintf(WS_CLOSE_REASON(c), WS_REASON_ROOM, "server shutting down");
            }
            ws__pending_add(inst, c);
        }
}

/* Under lock (dropped around each entry): start connects, write (or ask for WRITEABLE). */
static void serve_pending(ws_inst_t *inst, bool closing)
{
    /* Take the whole list; entries may be re-added while we work. */
    ws_conn_t *list = inst->pending;
    if (list) list->pprev = &list;
    inst->pending = NULL;
    while (list) {
        ws_conn_t *c = list;
        ws__pending_del(c);
        bool connect = c->connect_req;
        c->connect_req = false;
        pthread_mutex_unlock(&inst->lock);
        if (connect && closing)
            ws__conn_finish(c, NULL, 1001, "transport stopped", KSOCK_E_CANCELED);
        else if (connect)
            ws__client_start(inst, c);
        else if (c->wsi)
            ws__conn_write_now(inst, c, c->wsi);
        pthread_mutex_lock(&inst->lock);
    }
}

/*
 * LWS_CALLBACK_EVENT_WAIT_CANCELLED: the loop thread woke us. lws 4.1 runs
 * its own libev loop inside lws_service() until the loop is broken; a
 * first lws_context_destroy() on this thread breaks it (ws_stop finishes
 * it), and since that cancels the service again, it is done once (quit
 * 1 -> 2).
 */
static void on_wait_cancelled(ws_inst_t *inst, struct lws *wsi)
{
    if (inst->o->event_lib == 1 && atomic_load(&inst->quit)) {
        if (atomic_exchange(&inst->quit, 2) == 1) lws_context_destroy(lws_get_context(wsi));
        return;
    }
    /* Before reading what the loop thread asked for: a request after this point wakes us again. */
    atomic_store(&inst->wake_pending, false);
    ws__rx_resume(inst);
    pthread_mutex_lock(&inst->lock);
    run_call(inst);
    bool closing = inst->closing_all;
    if (closing) close_all(inst);
    serve_pending(inst, closing);
    pthread_mutex_unlock(&inst->lock);
}

/* ---- The protocol callback --------------------------------------------- */

/*
 * ESTABLISHED: tell the host, and write what was queued before the open.
 * With no memory for the open event the connection closes (1011) before
 * the host heard of it: on_close without on_open, as for an upgrade that
 * fails after on_handshake accepted it.
 */
static int conn_established(ws_inst_t *inst, ws_conn_t *c, struct lws *wsi)
{
    const char *sp = c->client ? c->cl->sub_req : c->subprotocol;
    size_t sl = sp && *sp ? strlen(sp) : 0;
    ws_event_t *e = ws__event_new(EV_OPEN, c, sp, sl);
    if (e == NULL) return ws__conn_fail_nomem(c, wsi);
    e->str = sl ? (const char *)e->data : NULL;
    c->opened = true;
    c->last_rx_ns = ksock_now_ns();
    ws__event_push(inst, e);
    lws_callback_on_writable(wsi);
    return 0;
}

/*
 * WSI_DESTROY, the last word on any wsi: it also covers upgrades that
 * failed after acceptance. ws_stop() waits for every counted server wsi.
 */
static void wsi_destroyed(ws_inst_t *inst, ws_conn_t *c, bool gone, struct lws *wsi)
{
    bool counted = gone || (c && c->counted); /* read before c may be freed */
    if (c) ws__conn_closed(c, wsi);
    if (counted) {
        pthread_mutex_lock(&inst->lock);
        if (--inst->nwsi == 0 && inst->closing_all) pthread_cond_broadcast(&inst->cond);
        pthread_mutex_unlock(&inst->lock);
    }
}

/* A refusal the host hears of (on_refused, for its counters), then the answer. */
static int refuse_counted(ws_inst_t *inst, struct lws *wsi, unsigned code, const char *why)
{
    if (inst->listen_ev.on_refused) inst->listen_ev.on_refused(inst->listen_ev.data, code, why);
    return ws__refuse(wsi, code, why);
}

/*
 * The one callback of every protocol, server and client. A wsi's opaque
 * user data is its connection, WS_GONE once the connection finished while
 * lws still holds the socket, or NULL before a server upgrade is accepted.
 */
int ws__callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                 size_t len)
{
    ws_inst_t *inst = lws_context_user(lws_get_context(wsi));
    ws_conn_t *c = lws_get_opaque_user_data(wsi);
    bool gone = (void *)c == WS_GONE;
    (void)user;
    if (gone) c = NULL;

    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        on_wait_cancelled(inst, wsi);
        return 0;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        if (in == NULL || strcasecmp((const char *)in, "websocket") != 0)
            return refuse_counted(inst, wsi, HTTP_STATUS_BAD_REQUEST, "only WebSocket upgrades");
        return ws__server_confirm_upgrade(inst, wsi);
    case LWS_CALLBACK_HTTP: /* plain HTTP on a WebSocket endpoint */
        return refuse_counted(inst, wsi, 426, "WebSocket upgrade required");
    case LWS_CALLBACK_ESTABLISHED:
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        return c ? conn_established(inst, c, wsi) : -1;
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        return c ? ws__client_append_headers(c, wsi, in, len) : 0;
    case LWS_CALLBACK_RECEIVE:
    case LWS_CALLBACK_CLIENT_RECEIVE:
        return c ? ws__conn_receive(inst, c, wsi, in, len) : -1;
    case LWS_CALLBACK_RECEIVE_PONG:
    case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
        if (c) c->last_rx_ns = ksock_now_ns();
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        return c ? ws__conn_write(inst, c, wsi) : 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (c && !c->local_closed) return ws__conn_peer_close(c, wsi, in, len);
        return 0;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (c) ws__client_error(c, wsi, in);
        return 0;
    case LWS_CALLBACK_CLOSED:
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (c) ws__conn_closed(c, wsi);
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        wsi_destroyed(inst, c, gone, wsi);
        return 0;
    default:
        return 0;
    }
}

/* ---- The service thread ------------------------------------------------ */

static void *service_main(void *arg)
{
    ws_inst_t *inst = arg;
    while (!atomic_load(&inst->quit))
        if (lws_service(inst->ctx, 0) < 0) break;
    return NULL;
}

/*
 * Loop thread, libev only. lws 4.1.6's libev glue re-arms its timer with
 * ev_timer_set() on a watcher that may be active already, which libev
 * ignores: a timeout set while a later one is pending (the handshake
 * timeout of a newly accepted socket, say) does not fire until something
 * else wakes the loop. Every wake-up runs lws's idle callback, which
 * services every ripe timeout; so we wake it on a short period. The cost
 * is one pipe write per tick.
 */
static void tick_cb(ksock_timer_t *t, void *data)
{
    (void)t;
    ws_inst_t *inst = data;
    lws_cancel_service(inst->ctx);
}

int ws__thread_start(ws_inst_t *inst, char *errstr, size_t errstr_size)
{
    if (inst->thread_running) return 0;
    if (inst->o->event_lib == 1 && inst->tick == NULL) {
        int trc = ksock_timer_init(inst->rt, &inst->tick, tick_cb, inst);
        if (trc == 0) trc = ksock_timer_start(inst->tick, WS_TICK_MS, WS_TICK_MS);
        if (trc != 0) {
            ksock_errstr_set(errstr, errstr_size, "cannot start the libev wake-up timer");
            return trc;
        }
    }
    int rc = pthread_create(&inst->thread, NULL, service_main, inst);
    if (rc != 0) {
        ksock_errstr_set(errstr, errstr_size, "cannot start the WebSocket thread: %s",
                         strerror(rc));
        return KSOCK_E_INTERNAL;
    }
    inst->thread_running = true;
    return 0;
}
