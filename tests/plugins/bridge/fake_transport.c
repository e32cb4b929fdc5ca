/*
 * The fake transport of the bridge tests (see fake_transport.h). Built
 * with -DKSOCK_PLUGIN_BUILTIN into test-bridge.
 */
#include "fake_transport.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Events posted to the loop ----------------------------------------------- */

/* A close to deliver, or the delivery of held messages after a resume. */
typedef struct posted_s {
    struct posted_s *next; /* f->posted_list */
    fake_transport_t *f;   /* NULL once the fake is destroyed: only free */
    ksock_conn_id_t id;
    int code; /* a close's */
    char reason[128];
} posted_t;

/* Queue `cb(p)` on the loop, never run inside the caller (as ws does). */
static int post(fake_transport_t *f, posted_t *p, void (*cb)(ksock_runtime_t *, void *))
{
    p->f = f;
    int rc = ksock_runtime_post(f->rt, cb, p);
    if (rc != 0) {
        free(p);
        return rc;
    }
    p->next = f->posted_list;
    f->posted_list = p;
    return 0;
}

/*
 * The fake a posted event still belongs to, unlinked from its list; NULL
 * when the fake was destroyed, or the runtime is being destroyed (it runs
 * what is left only so that it can be freed).
 */
static fake_transport_t *posted_take(ksock_runtime_t *rt, posted_t *p)
{
    if (p->f == NULL || ksock_runtime_is_stopping(rt)) return NULL;
    for (posted_t **pp = (posted_t **)&p->f->posted_list; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    return p->f;
}

static void held_clear(fake_conn_t *c);

static void deliver_close(fake_transport_t *f, fake_conn_t *c, int code, const char *reason,
                          int err)
{
    c->state = FAKE_CONN_CLOSED;
    held_clear(c); /* what a closed connection had read is dropped, as ws does */
    if (f->ev.on_close) f->ev.on_close(f->ev.data, c->id, c->conn_data, code, reason, err);
}

static void on_posted_close(ksock_runtime_t *rt, void *arg)
{
    posted_t *pc = arg;
    fake_transport_t *f = posted_take(rt, pc);
    if (f) {
        f->posted--;
        fake_conn_t *c = fake_conn(f, pc->id);
        if (c && c->state != FAKE_CONN_CLOSED)
            deliver_close(f, c, pc->code, pc->reason[0] ? pc->reason : NULL, 0);
    }
    free(pc);
}

static int post_close(fake_transport_t *f, ksock_conn_id_t id, int code, const char *reason)
{
    posted_t *pc = calloc(1, sizeof(*pc));
    if (pc == NULL) return KSOCK_E_NOMEM;
    pc->id = id;
    pc->code = code;
    snprintf(pc->reason, sizeof(pc->reason), "%s", reason ? reason : "");
    int rc = post(f, pc, on_posted_close);
    if (rc == 0) f->posted++;
    return rc;
}

/* ---- Held messages (pause_read) ---------------------------------------------- */

typedef struct fake_held_s {
    struct fake_held_s *next;
    ksock_frame_type_t type;
    size_t len;
    unsigned char data[];
} fake_held_t;

static void held_clear(fake_conn_t *c)
{
    for (fake_held_t *h = c->held_head, *next; h; h = next) {
        next = h->next;
        free(h);
    }
    c->held_head = c->held_tail = NULL;
    c->held = 0;
}

/* Deliver what was held, in order, until the bridge pauses again. Loop thread. */
static void on_posted_resume(ksock_runtime_t *rt, void *arg)
{
    posted_t *pr = arg;
    fake_transport_t *f = posted_take(rt, pr);
    fake_conn_t *c = f ? fake_conn(f, pr->id) : NULL;
    if (c) c->resume_due = false;
    while (c && c->state == FAKE_CONN_OPEN && !c->paused && c->held_head) {
        fake_held_t *h = c->held_head;
        c->held_head = h->next;
        if (c->held_head == NULL) c->held_tail = NULL;
        c->held--;
        f->ev.on_message(f->ev.data, c->id, c->conn_data, h->type, h->data, h->len);
        free(h);
    }
    free(pr);
}

/* ---- The vtable --------------------------------------------------------------- */

static int fake_create(const ksock_plugin_ctx_t *ctx, const void *options, void **inst,
                       char *errstr, size_t errstr_size)
{
    (void)options;
    (void)errstr;
    (void)errstr_size;
    fake_transport_t *f = calloc(1, sizeof(*f));
    if (f == NULL) return KSOCK_E_NOMEM;
    f->rt = ctx->rt;
    f->next_id = 1;
    *inst = f;
    return 0;
}

static void fake_destroy(void *inst)
{
    fake_transport_t *f = inst;
    /* Like ws: a destroyed transport delivers none of the events it had posted. */
    for (posted_t *p = f->posted_list; p; p = p->next)
        p->f = NULL;
    for (size_t i = 0; i < FAKE_MAX_CONNS; i++)
        held_clear(&f->conns[i]);
    for (size_t i = 0; i < f->nframes; i++)
        free(f->frames[i].data);
    free(f->frames);
    free(f);
}

static int fake_listen(void *inst, const ksock_transport_events_t *ev, char *errstr,
                       size_t errstr_size)
{
    fake_transport_t *f = inst;
    if (f->listening) {
        ksock_errstr_set(errstr, errstr_size, "fake: already listening");
        return KSOCK_E_STATE;
    }
    f->ev = *ev;
    f->listening = true;
    return 0;
}

static int fake_connect(void *inst, const ksock_connect_opts_t *opts,
                        const ksock_transport_events_t *ev, void *conn_data, ksock_conn_id_t *id,
                        char *errstr, size_t errstr_size)
{
    (void)inst, (void)opts, (void)ev, (void)conn_data, (void)id;
    ksock_errstr_set(errstr, errstr_size, "fake: no client side");
    return KSOCK_E_UNSUPPORTED;
}

static int fake_send(void *inst, ksock_conn_id_t id, ksock_frame_t *frame)
{
    fake_transport_t *f = inst;
    fake_conn_t *c = fake_conn(f, id);
    if (c == NULL || c->state != FAKE_CONN_OPEN) return KSOCK_E_CLOSED;
    if (f->send_limit && c->queued >= f->send_limit) return KSOCK_E_QUEUE_FULL;
    if (f->nframes == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 64;
        fake_frame_t *v = realloc(f->frames, cap * sizeof(*v));
        if (v == NULL) return KSOCK_E_NOMEM;
        f->frames = v;
        f->cap = cap;
    }
    size_t len;
    const void *data = ksock_frame_data(frame, &len);
    char *copy = malloc(len + 1);
    if (copy == NULL) return KSOCK_E_NOMEM;
    if (len) memcpy(copy, data, len);
    copy[len] = '\0';
    f->frames[f->nframes++] = (fake_frame_t){id, ksock_frame_type(frame), copy, len};
    c->queued++;
    return 0;
}

/* ABI 1.2: n send() calls; the fake has no thread to wake. */
static size_t fake_send_many(void *inst, ksock_frame_t *frame, const ksock_conn_id_t *ids, size_t n,
                             int *rc)
{
    size_t failed = 0;
    for (size_t i = 0; i < n; i++)
        if ((rc[i] = fake_send(inst, ids[i], frame)) != 0) failed++;
    return failed;
}

/* As if the peer answered the close frame at once: on_close follows on the loop. */
static int fake_close(void *inst, ksock_conn_id_t id, int code, const char *reason)
{
    fake_transport_t *f = inst;
    fake_conn_t *c = fake_conn(f, id);
    if (c == NULL || c->state != FAKE_CONN_OPEN) return KSOCK_E_CLOSED;
    if (f->ncloses < sizeof(f->closes) / sizeof(f->closes[0])) {
        fake_close_t *fc = &f->closes[f->ncloses++];
        fc->conn = id;
        fc->code = code;
        snprintf(fc->reason, sizeof(fc->reason), "%s", reason ? reason : "");
    }
    c->state = FAKE_CONN_CLOSING;
    return post_close(f, id, code, reason);
}

static void fake_stop(void *inst)
{
    fake_transport_t *f = inst;
    if (f->stopped) return;
    f->stopped = true;
    f->listening = false;
    for (size_t i = 0; i < FAKE_MAX_CONNS; i++) {
        fake_conn_t *c = &f->conns[i];
        if (c->state == FAKE_CONN_OPEN) {
            c->state = FAKE_CONN_CLOSING;
            post_close(f, c->id, 1001, "going away");
        }
    }
}

/* Like ws: never delivers from inside the call; a resume posts the delivery of what was held. */
static int fake_pause_read(void *inst, ksock_conn_id_t id, bool paused)
{
    fake_transport_t *f = inst;
    fake_conn_t *c = fake_conn(f, id);
    if (c == NULL || c->state == FAKE_CONN_CLOSED) return KSOCK_E_CLOSED;
    if (paused && !c->paused) c->pauses++;
    c->paused = paused;
    if (!paused && c->held_head && !c->resume_due) {
        posted_t *pr = calloc(1, sizeof(*pr));
        if (pr == NULL) return KSOCK_E_NOMEM;
        pr->id = id;
        if (post(f, pr, on_posted_resume) != 0) return KSOCK_E_STATE;
        c->resume_due = true;
    }
    return 0;
}

static const ksock_transport_vtable_t fake_vtable = {
    .size = sizeof(ksock_transport_vtable_t),
    .create = fake_create,
    .destroy = fake_destroy,
    .listen = fake_listen,
    .connect = fake_connect,
    .send = fake_send,
    .close = fake_close,
    .stop = fake_stop,
    .pause_read = fake_pause_read,
    .send_many = fake_send_many,
};

/* ABI 1.0's transport vtable ended at stop: the size such a plugin reports. */
static const ksock_transport_vtable_t fake_v10_vtable = {
    .size = offsetof(ksock_transport_vtable_t, stop) + sizeof(void (*)(void *)),
    .create = fake_create,
    .destroy = fake_destroy,
    .listen = fake_listen,
    .connect = fake_connect,
    .send = fake_send,
    .close = fake_close,
    .stop = fake_stop,
};

static const ksock_plugin_desc_t fake_desc = {
    KSOCK_PLUGIN_HEADER(KSOCK_PLUGIN_TRANSPORT),
    .name = FAKE_TRANSPORT_NAME,
    .version = "0",
    .description = "In-process transport for the bridge tests: injected events, recorded frames",
    .vtable = &fake_vtable,
};

KSOCK_PLUGIN_DEFINE(fake_transport, fake_desc)

static const ksock_plugin_desc_t fake_v10_desc = {
    KSOCK_PLUGIN_HEADER(KSOCK_PLUGIN_TRANSPORT),
    .name = FAKE_TRANSPORT_V10_NAME,
    .version = "0",
    .description = "The fake transport as built for plugin ABI 1.0 (no pause_read)",
    .vtable = &fake_v10_vtable,
};

const ksock_plugin_desc_t *fake_transport_v10_entry(void)
{
    return &fake_v10_desc;
}

/* ---- What the test drives ------------------------------------------------------ */

fake_conn_t *fake_conn(fake_transport_t *f, ksock_conn_id_t id)
{
    for (size_t i = 0; i < FAKE_MAX_CONNS; i++)
        if (f->conns[i].state != FAKE_CONN_FREE && f->conns[i].id == id) return &f->conns[i];
    return NULL;
}

int64_t fake_accept(fake_transport_t *f, const ksock_handshake_t *hs, char *errstr,
                    size_t errstr_size)
{
    fake_conn_t *c = NULL;
    for (size_t i = 0; i < FAKE_MAX_CONNS && c == NULL; i++)
        if (f->conns[i].state == FAKE_CONN_FREE) c = &f->conns[i];
    if (c == NULL || !f->listening) {
        ksock_errstr_set(errstr, errstr_size, "fake: %s", c ? "not listening" : "too many conns");
        return KSOCK_E_STATE;
    }
    ksock_handshake_t h = *hs;
    h.size = sizeof(h);
    if (h.path == NULL) h.path = "/";
    if (h.peer_addr == NULL) h.peer_addr = "127.0.0.1:40000";
    ksock_conn_id_t id = f->next_id++;
    void *conn_data = NULL;
    errstr[0] = '\0';
    int rc = f->ev.on_handshake(f->ev.data, id, &h, &conn_data, errstr, errstr_size);
    if (rc != 0) return rc;
    c->id = id;
    c->conn_data = conn_data;
    c->state = FAKE_CONN_OPEN;
    c->queued = 0;
    c->paused = c->resume_due = false;
    c->pauses = 0;
    f->ev.on_open(f->ev.data, id, conn_data, h.subprotocol);
    return (int64_t)id;
}

void fake_message_bytes(fake_transport_t *f, ksock_conn_id_t id, ksock_frame_type_t type,
                        const void *data, size_t len)
{
    fake_conn_t *c = fake_conn(f, id);
    if (c == NULL || c->state == FAKE_CONN_CLOSED) return; /* a transport says nothing more */
    if (c->paused || c->held_head) { /* order: nothing overtakes what is held */
        fake_held_t *h = malloc(sizeof(*h) + len);
        if (h == NULL) return;
        h->next = NULL;
        h->type = type;
        h->len = len;
        if (len) memcpy(h->data, data, len);
        if (c->held_tail)
            c->held_tail->next = h;
        else
            c->held_head = h;
        c->held_tail = h;
        c->held++;
        return;
    }
    f->ev.on_message(f->ev.data, id, c->conn_data, type, data, len);
}

void fake_message(fake_transport_t *f, ksock_conn_id_t id, const char *text)
{
    fake_message_bytes(f, id, KSOCK_FRAME_TEXT, text, strlen(text));
}

void fake_peer_close(fake_transport_t *f, ksock_conn_id_t id, int code)
{
    fake_conn_t *c = fake_conn(f, id);
    if (c && c->state != FAKE_CONN_CLOSED) deliver_close(f, c, code, NULL, 0);
}

size_t fake_nframes(const fake_transport_t *f, ksock_conn_id_t id)
{
    size_t n = 0;
    for (size_t i = 0; i < f->nframes; i++)
        if (f->frames[i].conn == id) n++;
    return n;
}

const fake_frame_t *fake_frame(const fake_transport_t *f, ksock_conn_id_t id, size_t k)
{
    for (size_t i = 0; i < f->nframes; i++)
        if (f->frames[i].conn == id && k-- == 0) return &f->frames[i];
    return NULL;
}

const fake_close_t *fake_close_of(const fake_transport_t *f, ksock_conn_id_t id)
{
    for (size_t i = 0; i < f->ncloses; i++)
        if (f->closes[i].conn == id) return &f->closes[i];
    return NULL;
}

void fake_drain(fake_transport_t *f, ksock_conn_id_t id)
{
    fake_conn_t *c = fake_conn(f, id);
    if (c == NULL || c->state != FAKE_CONN_OPEN) return;
    c->queued = 0;
    if (f->ev.on_writable) f->ev.on_writable(f->ev.data, id, c->conn_data);
}
