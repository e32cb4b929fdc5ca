/*
 * transport_ws: set_listeners (ABI 1.3), the listeners of a running
 * instance replaced by a reload without closing a connection.
 *
 * The new list is parsed and resolved, then matched socket by socket
 * against the running one: a new socket on an address and port that a
 * running socket has takes that socket over (it never stops accepting);
 * with port 0 ("the kernel picks") a listener with the same configured
 * address and port 0 is taken over whole, so it keeps the port it got.
 * Everything else new is bound here, on the loop thread, before anything
 * changes, so a bind that fails leaves the listeners as they were.
 *
 * One case needs an order: a new socket that conflicts with a running
 * socket about to be removed (0.0.0.0:8080 replaced by 127.0.0.1:8080).
 * Its bind fails with EADDRINUSE; it is deferred, the removed sockets are
 * closed, and it is bound again. Should that still fail, the removed
 * sockets are bound again and the listeners stay as they were.
 *
 * The switch itself (adopting the new sockets into lws, closing the
 * removed ones, swapping the array that listener_of() reads) runs on the
 * lws thread in one ws__call(). A removed listener's connections are
 * lws's and the server vhost's, not the listener's: they stay open.
 * An upgrade still in progress on a removed listener gets 503.
 */
#include "ws_internal.h"

#include <errno.h>
#include <string.h>

static bool same_address(const char *a, const char *b)
{
    return strcmp(a ? a : "0.0.0.0", b ? b : "0.0.0.0") == 0;
}

/* A running socket serving exactly the address of s and the port configured for it. */
static bool serves(const ws_sock_t *running, const ws_sock_t *s, int port)
{
    const struct sockaddr *x = (const struct sockaddr *)&running->addr.ss;
    return ws__addr_eq(x, (const struct sockaddr *)&s->addr.ss) && ws__addr_port(x) == port;
}

/* A port-0 listener: the running one with the same configured address and port 0, taken whole. */
static void claim_port0(ws_inst_t *inst, ws_listener_t *l)
{
    for (size_t i = 0; i < inst->nlisteners; i++) {
        ws_listener_t *o = &inst->listeners[i];
        if (o->cfg_port != 0 || o->nsocks != l->nsocks || !same_address(o->address, l->address))
            continue;
        bool ok = true;
        for (size_t k = 0; k < l->nsocks && ok; k++)
            ok = !o->socks[k].kept && o->socks[k].fd >= 0 &&
                 ws__addr_eq((struct sockaddr *)&o->socks[k].addr.ss,
                             (struct sockaddr *)&l->socks[k].addr.ss);
        if (!ok) continue;
        for (size_t k = 0; k < l->nsocks; k++) {
            o->socks[k].kept = true;
            l->socks[k].from = &o->socks[k];
            l->socks[k].addr = o->socks[k].addr;
        }
        l->port = o->port;
        return;
    }
}

/* Each new socket that a running socket already serves takes it over. */
static void claim(ws_inst_t *inst, ws_listener_t *nl, size_t nn)
{
    for (size_t i = 0; i < nn; i++) {
        ws_listener_t *l = &nl[i];
        if (l->cfg_port == 0) {
            claim_port0(inst, l);
            continue;
        }
        for (size_t k = 0; k < l->nsocks; k++) {
            ws_sock_t *s = &l->socks[k];
            for (size_t j = 0; j < inst->nlisteners && !s->from; j++)
                for (size_t m = 0; m < inst->listeners[j].nsocks && !s->from; m++) {
                    ws_sock_t *o = &inst->listeners[j].socks[m];
                    if (!o->kept && o->fd >= 0 && serves(o, s, l->cfg_port)) {
                        o->kept = true;
                        s->from = o;
                    }
                }
        }
    }
}

/* A running socket on this port that the new list drops (its close may free the port). */
static bool removed_on_port(const ws_inst_t *inst, int port)
{
    for (size_t j = 0; j < inst->nlisteners; j++)
        for (size_t m = 0; m < inst->listeners[j].nsocks; m++) {
            const ws_sock_t *o = &inst->listeners[j].socks[m];
            if (!o->kept && o->fd >= 0 && ws__addr_port((struct sockaddr *)&o->addr.ss) == port)
                return true;
        }
    return false;
}

/*
 * Bind the new sockets not taken over. pass 0: a bind that fails with
 * EADDRINUSE against a socket being removed is deferred; pass 1 binds the
 * deferred ones. Returns 0 or the first failure (with its message).
 */
static int bind_new(ws_inst_t *inst, ws_listener_t *nl, size_t nn, int pass, bool *deferred,
                    char *errstr, size_t errstr_size)
{
    for (size_t i = 0; i < nn; i++)
        for (size_t k = 0; k < nl[i].nsocks; k++) {
            ws_sock_t *s = &nl[i].socks[k];
            if (s->from || s->fd >= 0 || (pass == 1 && !s->deferred)) continue;
            int err = 0;
            int rc = ws__sock_open(&nl[i], s, &err, errstr, errstr_size);
            if (rc == 0) continue;
            if (pass == 0 && err == EADDRINUSE && nl[i].port != 0 &&
                removed_on_port(inst, nl[i].port)) {
                s->deferred = *deferred = true;
                continue;
            }
            return rc;
        }
    return 0;
}

typedef struct {
    ws_listener_t *nl;
    size_t nn;
    int rc;
} relisten_t;

/* lws thread: stop accepting on the running sockets no new one takes over. */
static void close_removed(ws_inst_t *inst, void *arg)
{
    (void)arg;
    for (size_t j = 0; j < inst->nlisteners; j++)
        for (size_t m = 0; m < inst->listeners[j].nsocks; m++) {
            ws_sock_t *o = &inst->listeners[j].socks[m];
            if (!o->kept && o->fd >= 0) {
                ws__sock_log(inst, &inst->listeners[j], o, "stopped listening on");
                ws__sock_close(o);
            }
        }
}

/* lws thread: the removed sockets bound and accepting again (a deferred bind failed). */
static void reopen_removed(ws_inst_t *inst, void *arg)
{
    (void)arg;
    for (size_t j = 0; j < inst->nlisteners; j++)
        for (size_t m = 0; m < inst->listeners[j].nsocks; m++) {
            ws_listener_t *l = &inst->listeners[j];
            ws_sock_t *o = &l->socks[m];
            char why[400];
            int err = 0, port = l->port;
            if (o->kept || o->fd >= 0) continue;
            l->port = ws__addr_port((struct sockaddr *)&o->addr.ss);
            if (ws__sock_open(l, o, &err, why, sizeof(why)) != 0 || ws__sock_adopt(inst, o) != 0) {
                ws__sock_close(o);
                ksock_log(inst->rt, KSOCK_LOG_ERROR, inst->component, NULL, 0, "set_listeners: %s",
                          why);
            } else {
                ws__sock_log(inst, l, o, "listening again on");
            }
            l->port = port;
        }
}

/*
 * lws thread: the switch. The new sockets bound here start accepting
 * (all or none: out of memory leaves the running list) and are logged,
 * the taken-over ones move, the rest close, and listener_of() sees the
 * new array.
 */
static void commit(ws_inst_t *inst, void *arg)
{
    relisten_t *r = arg;
    for (size_t i = 0; i < r->nn && r->rc == 0; i++)
        for (size_t k = 0; k < r->nl[i].nsocks && r->rc == 0; k++) {
            ws_sock_t *s = &r->nl[i].socks[k];
            if (!s->from) r->rc = ws__sock_adopt(inst, s);
        }
    if (r->rc != 0) {
        for (size_t i = 0; i < r->nn; i++)
            for (size_t k = 0; k < r->nl[i].nsocks; k++)
                if (!r->nl[i].socks[k].from) ws__sock_close(&r->nl[i].socks[k]);
        return;
    }
    close_removed(inst, NULL);
    for (size_t i = 0; i < r->nn; i++)
        for (size_t k = 0; k < r->nl[i].nsocks; k++) {
            ws_sock_t *s = &r->nl[i].socks[k];
            if (!s->from) { /* bound by this call */
                ws__sock_log(inst, &r->nl[i], s, "listening on");
                continue;
            }
            s->fd = s->from->fd;
            s->wsi = s->from->wsi;
            s->from->fd = -1;
            s->from->wsi = NULL;
            s->from = NULL;
        }
    ws_listener_t *old = inst->listeners;
    size_t on = inst->nlisteners;
    inst->listeners = r->nl;
    inst->nlisteners = r->nn;
    r->nl = old; /* freed by the caller */
    r->nn = on;
}

int ws__set_listeners(void *p, const ksock_cfg_t *listeners, char *errstr, size_t errstr_size)
{
    ws_inst_t *inst = p;
    if (!inst->listening || atomic_load(&inst->stopping)) {
        ksock_errstr_set(errstr, errstr_size, "set_listeners: not listening");
        return KSOCK_E_STATE;
    }
    if (listeners == NULL || ksock_cfg_count(listeners) == 0) {
        ksock_errstr_set(errstr, errstr_size, "no listeners configured");
        return KSOCK_E_CONFIG;
    }
    relisten_t r = {NULL, 0, 0};
    int rc = ws__listeners_parse(listeners, &r.nl, &r.nn, errstr, errstr_size);
    if (rc != 0) return rc;
    for (size_t j = 0; j < inst->nlisteners; j++)
        for (size_t m = 0; m < inst->listeners[j].nsocks; m++)
            inst->listeners[j].socks[m].kept = false;
    claim(inst, r.nl, r.nn);
    bool deferred = false;
    rc = bind_new(inst, r.nl, r.nn, 0, &deferred, errstr, errstr_size);
    if (rc == 0 && deferred) {
        ws__call(inst, close_removed, NULL);
        if ((rc = bind_new(inst, r.nl, r.nn, 1, &deferred, errstr, errstr_size)) != 0)
            ws__call(inst, reopen_removed, NULL);
    }
    if (rc == 0) {
        ws__call(inst, commit, &r);
        if ((rc = r.rc) != 0) {
            ksock_errstr_set(errstr, errstr_size, "out of memory");
            if (deferred) ws__call(inst, reopen_removed, NULL);
        }
    }
    ws__listeners_free(r.nl, r.nn); /* the old array after a commit, else the new one */
    return rc;
}
