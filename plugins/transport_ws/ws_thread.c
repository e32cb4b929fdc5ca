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

static void on_wait_cancelled(ws_inst_t *inst)
{
    ws__rx_resume(inst);
    pthread_mutex_lock(&inst->lock);
    ws_call_fn fn = inst->call_fn;
    void *arg = inst->call_arg;
    inst->call_fn = NULL;
    if (fn) {
        /* Run without the lock: vhost creation calls back into ws__callback. */
        pthread_mutex_unlock(&inst->lock);
        fn(inst, arg);
        pthread_mutex_lock(&inst->lock);
        inst->call_done = true;
        pthread_cond_broadcast(&inst->cond);
    }
    bool closing = inst->closing_all;
    if (closing) {
        /*
         * Ask every connection to close with 1001 after its queue drains,
         * reading it meanwhile: lws closes a connection that has unread
         * input without waiting for the peer's close, and the reset that
         * follows can destroy the replies and the close frame on their way.
         */
        for (size_t s = 0; s < inst->tcap; s++)
            for (ws_conn_t *c = inst->table[s]; c; c = c->hnext) {
                if (c->wsi) ws__rx_unthrottle(inst, c, c->wsi);
                if (!c->close_req) {
                    c->close_req = true;
                    c->close_code = LWS_CLOSE_STATUS_GOINGAWAY;
                    snprintf(c->close_reason, sizeof(c->close_reason), "server shutting down");
                }
                ws__pending_add(inst, c);
            }
    }
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
            lws_callback_on_writable(c->wsi);
        pthread_mutex_lock(&inst->lock);
    }
    pthread_mutex_unlock(&inst->lock);
}

/* ---- The protocol callback --------------------------------------------- */

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
        /* lws 4.1 runs its own libev loop inside lws_service() until the loop is
         * broken; a first lws_context_destroy() on this thread breaks it (ws_stop
         * finishes it). */
        if (inst->o->event_lib == 1 && atomic_load(&inst->quit)) {
            /* It cancels the service again: destroy once (quit 1 -> 2). */
            if (atomic_exchange(&inst->quit, 2) == 1) lws_context_destroy(lws_get_context(wsi));
            return 0;
        }
        on_wait_cancelled(inst);
        return 0;

    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        if (in == NULL || strcasecmp((const char *)in, "websocket") != 0)
            return ws__refuse(wsi, HTTP_STATUS_BAD_REQUEST, "only WebSocket upgrades");
        return ws__server_confirm_upgrade(inst, wsi);

    case LWS_CALLBACK_HTTP:
        /* Plain HTTP on a WebSocket endpoint. */
        return ws__refuse(wsi, 426, "WebSocket upgrade required");

    case LWS_CALLBACK_ESTABLISHED:
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (c == NULL) return -1;
        c->opened = true;
        c->last_rx_ns = ksock_now_ns();
        {
            const char *sp = c->client ? c->sub_req : c->subprotocol;
            ws_event_t *e = ws__event_new(EV_OPEN, c, NULL, 0);
            e->str = sp && *sp ? ws__strdup(sp) : NULL;
            ws__event_push(inst, e);
        }
        /* Frames queued before the connection opened. */
        lws_callback_on_writable(wsi);
        return 0;

    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
        if (c == NULL) return 0;
        unsigned char **p = (unsigned char **)in, *end = (*p) + len;
        for (size_t i = 0; i < c->nheaders; i++) {
            char name[128];
            snprintf(name, sizeof(name), "%s:", c->headers[i].name);
            if (lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                            (const unsigned char *)c->headers[i].value,
                                            (int)strlen(c->headers[i].value), p, end))
                return -1;
        }
        return 0;
    }

    case LWS_CALLBACK_RECEIVE:
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (c == NULL) return -1;
        return ws__conn_receive(inst, c, wsi, in, len);

    case LWS_CALLBACK_RECEIVE_PONG:
    case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
        if (c) c->last_rx_ns = ksock_now_ns();
        return 0;

    case LWS_CALLBACK_SERVER_WRITEABLE:
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (c == NULL) return 0;
        return ws__conn_write(inst, c, wsi);

    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (c && !c->local_closed) return ws__conn_peer_close(c, wsi, in, len);
        return 0;

    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (c) {
            int err = ws__map_client_error(wsi, in);
            char why[200];
            snprintf(why, sizeof(why), "%s", in ? (const char *)in : "connection failed");
            ws__conn_finish(c, wsi, 1006, why, err);
        }
        return 0;

    case LWS_CALLBACK_CLOSED:
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (c) ws__conn_closed(c, wsi);
        return 0;

    case LWS_CALLBACK_WSI_DESTROY: {
        /* The last word on any wsi: covers upgrades that failed after acceptance.
         */
        bool counted = gone || (c && c->counted); /* read before c may be freed */
        if (c) ws__conn_closed(c, wsi);
        if (counted) {
            pthread_mutex_lock(&inst->lock);
            if (--inst->nwsi == 0 && inst->closing_all) pthread_cond_broadcast(&inst->cond);
            pthread_mutex_unlock(&inst->lock);
        }
        return 0;
    }

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
