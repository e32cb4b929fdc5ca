/*
 * transport "ws": writing, on the lws thread. A WRITEABLE callback takes
 * frames off the connection's send queue (ws_conn.c) and writes them: many
 * frames per raw write on a server connection without permessage-deflate,
 * one lws_write() per frame otherwise (see "Writing" in ws_internal.h).
 * Here too: the low-water on_writable, and the close the host asked for
 * once the queue drained.
 */
#include "ws_internal.h"

#include <stdlib.h>
#include <string.h>

/* Under lock, after frames left c's queue: is the on_writable owed now due (low-water mark)? */
static bool writable_due(const ws_inst_t *inst, ws_conn_t *c)
{
    /* Half of either bound. */
    if (!c->writable_owed || c->qlen > (size_t)inst->o->send_queue_max_frames / 2 ||
        c->qbytes > (size_t)inst->o->send_queue_max_bytes / 2)
        return false;
    c->writable_owed = false;
    return true;
}

/* Queue the on_writable event; KSOCK_E_NOMEM (the caller closes the connection). */
static int writable_notify(ws_inst_t *inst, ws_conn_t *c)
{
    ws_event_t *e = ws__event_new(EV_WRITABLE, c, NULL, 0);
    if (e == NULL) return KSOCK_E_NOMEM;
    ws__event_push(inst, e);
    return 0;
}

/* The queue drained and the host asked for a close: start the closing handshake. */
static int close_drained(ws_inst_t *inst, ws_conn_t *c, struct lws *wsi)
{
    c->local_closed = true;
    ws__rx_unthrottle(inst, c, wsi); /* the peer's close frame must still be read */
    size_t rl = strlen(WS_CLOSE_REASON(c));
    lws_close_reason(wsi, (enum lws_close_status)c->close_code, (unsigned char *)WS_CLOSE_REASON(c),
                     rl);
    return -1;
}

/* inst->wbuf holds at least LWS_PRE + need bytes; KSOCK_E_NOMEM. */
static int wbuf_reserve(ws_inst_t *inst, size_t need)
{
    if (inst->wbuf_cap >= LWS_PRE + need) return 0;
    unsigned char *nb = realloc(inst->wbuf, LWS_PRE + need);
    if (nb == NULL) return KSOCK_E_NOMEM;
    inst->wbuf = nb;
    inst->wbuf_cap = LWS_PRE + need;
    return 0;
}

static int conn_refused_rx(ws_conn_t *c, struct lws *wsi)
{
    return ws__conn_close_now(
        c, wsi, c->rx_close,
        c->rx_close == LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE ? "message too large"
        : c->rx_close == LWS_CLOSE_STATUS_INVALID_PAYLOAD ? "invalid UTF-8 in a text message"
                                                          : "out of memory");
}

/*
 * An empty message, framed here and written raw. lws 4.1's permessage-
 * deflate asserts (aborting the process) when asked to compress an empty
 * message after an earlier one: zlib has nothing to flush. RFC 7692 lets
 * any message go uncompressed (RSV1 clear), and at the start of a write
 * lws holds no partly sent message (conn_write_frames writes a frame only
 * while the pipe is not choked, which covers a compressed message still
 * draining). A client frame carries the mask bit and a key (RFC 6455
 * 5.3), with nothing to mask.
 */
static int write_empty(struct lws *wsi, unsigned char *buf, ksock_frame_type_t type, bool client)
{
    buf[0] = 0x80 | (type == KSOCK_FRAME_BINARY ? 0x2 : 0x1);
    buf[1] = client ? 0x80 : 0x00;
    size_t n = 2;
    if (client) {
        if (lws_get_random(lws_get_context(wsi), buf + 2, 4) != 4) return -1;
        n += 4;
    }
    return lws_write(wsi, buf, n, LWS_WRITE_RAW) < (int)n ? -1 : 0;
}

/* One lws_write() per frame, framed (and masked, or compressed) by lws. */
static int conn_write_frames(ws_inst_t *inst, ws_conn_t *c, struct lws *wsi)
{
    for (int i = 0; i < WS_MAX_WRITES_PER_CALLBACK; i++) {
        bool owed, want_close, more;
        pthread_mutex_lock(&inst->lock);
        ksock_frame_t *f = ws__queue_pop(c);
        owed = writable_due(inst, c);
        want_close = f == NULL && c->close_req;
        more = c->qlen > 0;
        pthread_mutex_unlock(&inst->lock);
        if (owed && writable_notify(inst, c) != 0) {
            if (f) ksock_frame_unref(f);
            return ws__conn_fail_nomem(c, wsi);
        }
        if (want_close) return close_drained(inst, c, wsi);
        if (f == NULL) return 0;
        size_t len = 0;
        const void *data = ksock_frame_data(f, &len);
        ksock_frame_type_t type = ksock_frame_type(f);
        if (wbuf_reserve(inst, len < 6 ? 6 : len) != 0) {
            ksock_frame_unref(f);
            return ws__conn_fail_nomem(c, wsi);
        }
        if (len) memcpy(inst->wbuf + LWS_PRE, data, len);
        ksock_frame_unref(f);
        if (len == 0 && lws_get_network_wsi(wsi) == wsi) {
            if (write_empty(wsi, inst->wbuf + LWS_PRE, type, c->client) != 0) return -1;
        } else {
            enum lws_write_protocol wp =
                type == KSOCK_FRAME_BINARY ? LWS_WRITE_BINARY : LWS_WRITE_TEXT;
            int n = lws_write(wsi, inst->wbuf + LWS_PRE, len, wp);
            if (n < (int)len) return -1;
        }
        if (!more) {
            /* A close may have been asked for meanwhile. */
            pthread_mutex_lock(&inst->lock);
            more = c->qlen > 0 || c->close_req;
            pthread_mutex_unlock(&inst->lock);
            if (!more) return 0;
        }
        if (lws_send_pipe_choked(wsi)) break;
    }
    lws_callback_on_writable(wsi);
    return 0;
}

/* RFC 6455 5.2 header of an unmasked, final frame of `len` payload bytes: 2, 4 or 10 bytes. */
static size_t frame_header_len(size_t len)
{
    return len < 126 ? 2 : len <= 0xFFFF ? 4 : 10;
}

static size_t frame_header(unsigned char *h, ksock_frame_type_t type, size_t len)
{
    h[0] = 0x80 | (type == KSOCK_FRAME_BINARY ? 0x2 : 0x1); /* FIN, opcode */
    if (len < 126) {
        h[1] = (unsigned char)len;
        return 2;
    }
    if (len <= 0xFFFF) {
        h[1] = 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        return 4;
    }
    h[1] = 127;
    for (int i = 0; i < 8; i++)
        h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    return 10;
}

/*
 * Under lock: take the frames of c's next raw write into inst->batch: as
 * many as fit in WS_WRITE_BATCH with their headers, at least one. Returns
 * how many; *bytes is what they take framed.
 */
static size_t batch_take(ws_inst_t *inst, ws_conn_t *c, size_t *bytes)
{
    size_t k = 0, total = 0;
    while (k < WS_BATCH_MAX_FRAMES && c->qlen > 0) {
        size_t len = 0;
        ksock_frame_data(c->q[c->qhead], &len);
        size_t need = total + frame_header_len(len) + len;
        if (k > 0 && need > WS_WRITE_BATCH) break;
        inst->batch[k++] = ws__queue_pop(c);
        total = need;
    }
    *bytes = total;
    return k;
}

static void batch_drop(ws_inst_t *inst, size_t k)
{
    for (size_t i = 0; i < k; i++) {
        ksock_frame_unref(inst->batch[i]);
        inst->batch[i] = NULL;
    }
}

/* Frame the k taken frames into inst->wbuf and hand them to lws as one raw write. */
static int batch_write(ws_inst_t *inst, ws_conn_t *c, struct lws *wsi, size_t k, size_t bytes)
{
    if (wbuf_reserve(inst, bytes) != 0) {
        batch_drop(inst, k);
        return ws__conn_fail_nomem(c, wsi);
    }
    unsigned char *p = inst->wbuf + LWS_PRE;
    for (size_t i = 0; i < k; i++) {
        size_t len = 0;
        const void *data = ksock_frame_data(inst->batch[i], &len);
        p += frame_header(p, ksock_frame_type(inst->batch[i]), len);
        if (len) memcpy(p, data, len);
        p += len;
    }
    batch_drop(inst, k);
    /*
     * LWS_WRITE_RAW skips lws's framing: the bytes go to lws_issue_raw(),
     * which sends up to tx_packet_size and buffers the rest; it reports
     * the whole length either way (less only on a failed socket).
     */
    int n = lws_write(wsi, inst->wbuf + LWS_PRE, bytes, LWS_WRITE_RAW);
    return n < (int)bytes ? -1 : 0;
}

/*
 * Server connections without permessage-deflate: many frames per write
 * (see "Writing" in ws_internal.h). A close the host asked for starts
 * only at a WRITEABLE with nothing buffered: lws kills, without a close
 * frame, a connection closed while it still holds unsent bytes.
 */
static int conn_write_batched(ws_inst_t *inst, ws_conn_t *c, struct lws *wsi)
{
    for (int w = 0; w < WS_MAX_RAW_WRITES_PER_CALLBACK; w++) {
        size_t bytes = 0;
        pthread_mutex_lock(&inst->lock);
        size_t k = batch_take(inst, c, &bytes);
        bool owed = writable_due(inst, c);
        bool want_close = k == 0 && c->close_req;
        bool more = c->qlen > 0 || c->close_req;
        pthread_mutex_unlock(&inst->lock);
        if (owed && writable_notify(inst, c) != 0) {
            batch_drop(inst, k);
            return ws__conn_fail_nomem(c, wsi);
        }
        if (want_close) return close_drained(inst, c, wsi);
        if (k == 0) return 0;
        int rc = batch_write(inst, c, wsi, k, bytes);
        if (rc != 0) return rc;
        /* A frame queued meanwhile puts c on the pending list again: WRITEABLE follows. */
        if (!more) return 0;
        if (lws_partial_buffered(wsi)) break;
    }
    lws_callback_on_writable(wsi);
    return 0;
}

/* lws thread, WRITEABLE (or a refusal from RECEIVE): write what c's queue holds. */
int ws__conn_write(ws_inst_t *inst, ws_conn_t *c, struct lws *wsi)
{
    if (c->rx_close) return conn_refused_rx(c, wsi);
    /* Not over HTTP/2 either: a raw write there would skip the h2 framing. */
    if (!c->client && !c->deflate && lws_get_network_wsi(wsi) == wsi)
        return conn_write_batched(inst, c, wsi);
    return conn_write_frames(inst, c, wsi);
}

/*
 * lws thread, answering a wake-up (serve_pending): write c's queue now
 * instead of asking for WRITEABLE, where the batched path applies and lws
 * holds nothing unsent for c. A socket with room (the usual case below
 * full load) then costs one send(2), where WRITEABLE costs turning POLLOUT
 * on, an event, the write and POLLOUT off again. What the socket does not
 * take lws buffers and flushes on POLLOUT, and WRITEABLE follows for the
 * rest. Closes, refusals and every other kind of connection go the
 * WRITEABLE way.
 */
void ws__conn_write_now(ws_inst_t *inst, ws_conn_t *c, struct lws *wsi)
{
    bool direct = c->opened && !c->client && !c->deflate && !c->rx_close && !c->local_closed &&
                  !c->peer_closed && lws_get_network_wsi(wsi) == wsi && !lws_partial_buffered(wsi);
    if (direct) {
        pthread_mutex_lock(&inst->lock);
        direct = !c->close_req;
        pthread_mutex_unlock(&inst->lock);
    }
    if (!direct) {
        lws_callback_on_writable(wsi);
        return;
    }
    /* A callback would return this -1 for lws to close c (its close reason is set). */
    if (conn_write_batched(inst, c, wsi) != 0)
        lws_set_timeout(wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
}
