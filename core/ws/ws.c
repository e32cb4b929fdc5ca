/*
 * The WebSocket client API (include/ksock/ws.h): connections over the
 * `ws` transport plugin, messages through the serialization API,
 * reconnection through reconnect-policy plugins.
 *
 * Everything here runs on the loop thread. The transport delivers its
 * events there too (it posts them from its own thread), so a connection's
 * state needs no lock.
 *
 * Life of a connection:
 *
 *   CONNECTING --open--> OPEN --lost--> WAITING --timer--> RECONNECTING --open--> OPEN
 *        |                 |               |                    |
 *        +--lost-----------+---------------+-----lost-----------+--> WAITING or final
 *
 * "final" fires on_close once and frees the handle. A loss asks the
 * policy for a delay; KSOCK_RECONNECT_GIVE_UP (or reconnection disabled,
 * or a user close) makes it final.
 *
 * One unit (~900 lines): one connection state machine (connecting, open,
 * reconnecting, closing) whose transitions share the disconnected queue,
 * the policy and the transport events; the default policy is backoff.c.
 */
#include "ws_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Options ------------------------------------------------------------- */

void ksock_reconnect_opts_init(ksock_reconnect_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->size = sizeof(*o);
    o->enabled = true;
    o->policy = "backoff";
    o->max_retries = 10;
    o->retry_delay_ms = 1000;
    o->exponential_backoff = true;
    o->max_delay_ms = 30000;
    o->jitter = true;
    o->stable_after_ms = 10000;
}

void ksock_ws_opts_init(ksock_ws_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->size = sizeof(*o);
}

/* Copy the caller's struct, tolerating an older, shorter one. */
static void reconnect_copy(ksock_reconnect_opts_t *dst, const ksock_reconnect_opts_t *src)
{
    ksock_reconnect_opts_init(dst);
    size_t n = src->size < sizeof(*dst) ? src->size : sizeof(*dst);
    memcpy(dst, src, n);
    dst->size = sizeof(*dst);
    if (dst->policy == NULL) dst->policy = "backoff";
}

/* ---- Policy instances ------------------------------------------------------ */

static void policy_free(ksock_ws_t *ws)
{
    ksock_plugin_instance_free(ws->policy);
    ws->policy = NULL;
    ksock_config_free(ws->pdoc);
    ws->pdoc = NULL;
}

/*
 * The default policy from the typed spec III fields: they are the options
 * of the built-in "backoff" (core/ws/backoff.c), so no JSON is involved.
 */
static int policy_make_backoff(ksock_runtime_t *rt, ksock_plugin_t *p,
                               const ksock_reconnect_opts_t *o, ksock_plugin_instance_t **out,
                               char *errstr, size_t errstr_size)
{
    ksock__backoff_opts_t bo = {
        .max_retries = o->max_retries,
        .retry_delay = (int64_t)o->retry_delay_ms,
        .exponential_backoff = o->exponential_backoff,
        .max_delay = (int64_t)o->max_delay_ms,
        .jitter = o->jitter,
        .stable_after = (int64_t)o->stable_after_ms,
    };
    return ksock__plugin_instance_new_typed(rt, p, &bo, sizeof(bo), out, errstr, errstr_size);
}

/*
 * Make ws's policy instance from `o` (strings borrowed for the call). Any
 * policy but the built-in default gets only policy_options_json: the core
 * knows no plugin's options.
 */
static int policy_make(ksock_ws_t *ws, const ksock_reconnect_opts_t *o, char *errstr,
                       size_t errstr_size)
{
    ksock_runtime_t *rt = ws->mgr->rt;
    ksock_plugin_t *p = NULL;
    const char *name = o->policy ? o->policy : "backoff";
    int rc = ksock_plugin_find(rt, KSOCK_PLUGIN_RECONNECT, name, &p, errstr, errstr_size);
    if (rc != 0) return rc;
    ksock_config_t *doc = NULL;
    ksock_plugin_instance_t *pi = NULL;
    if (o->policy_options_json == NULL && ksock__plugin_is(p, ksock__backoff_entry)) {
        rc = policy_make_backoff(rt, p, o, &pi, errstr, errstr_size);
    } else {
        const char *json = o->policy_options_json ? o->policy_options_json : "{}";
        rc = ksock_config_load_string("reconnection options", json, strlen(json), &doc, errstr,
                                      errstr_size);
        if (rc == 0)
            rc = ksock_plugin_instance_new(rt, p, NULL, doc, ksock_config_root(doc), NULL, &pi,
                                           errstr, errstr_size);
    }
    if (rc != 0) {
        ksock_config_free(doc);
        return rc;
    }
    policy_free(ws);
    ws->policy = pi;
    ws->pdoc = doc;
    return 0;
}

/* ---- The disconnected queue ------------------------------------------------ */

static void q_clear(ksock_ws_t *ws)
{
    while (ws->q_head) {
        ws_qmsg_t *m = ws->q_head;
        ws->q_head = m->next;
        ksock_frame_unref(m->frame);
        free(m);
    }
    ws->q_tail = NULL;
    ws->q_msgs = ws->q_bytes = 0;
}

static int q_push(ksock_ws_t *ws, ksock_frame_t *f)
{
    size_t len = 0, max_bytes = ws->ropts.queue_max_bytes ? ws->ropts.queue_max_bytes : 1 << 20;
    ksock_frame_data(f, &len);
    if (ws->q_msgs >= ws->ropts.queue_max_messages || ws->q_bytes + len > max_bytes)
        return KSOCK_E_QUEUE_FULL;
    ws_qmsg_t *m = calloc(1, sizeof(*m));
    if (m == NULL) return KSOCK_E_NOMEM;
    m->frame = ksock_frame_ref(f);
    if (ws->q_tail)
        ws->q_tail->next = m;
    else
        ws->q_head = m;
    ws->q_tail = m;
    ws->q_msgs++;
    ws->q_bytes += len;
    return 0;
}

/* Hand the queue to the transport in order; stops at the transport's bound. */
static void q_flush(ksock_ws_t *ws)
{
    ksock_ws_manager_t *mgr = ws->mgr;
    while (ws->q_head && ws->state == KSOCK_WS_OPEN) {
        ws_qmsg_t *m = ws->q_head;
        int rc = mgr->tv->send(mgr->transport->inst, ws->conn_id, m->frame);
        if (rc == KSOCK_E_QUEUE_FULL) return; /* on_writable resumes */
        if (rc != 0) return;                  /* on_close follows */
        size_t len = 0;
        ksock_frame_data(m->frame, &len);
        ws->q_head = m->next;
        if (ws->q_head == NULL) ws->q_tail = NULL;
        ws->q_msgs--;
        ws->q_bytes -= len;
        ksock_frame_unref(m->frame);
        free(m);
    }
}

/* ---- Handle lifetime --------------------------------------------------------- */

static void ws_free(ksock_ws_t *ws)
{
    if (ws->pprev) {
        *ws->pprev = ws->next;
        if (ws->next) ws->next->pprev = ws->pprev;
    }
    ksock_timer_close(ws->timer);
    ksock__ws_subs_free(ws);
    ksock__ws_token_free(ws);
    q_clear(ws);
    policy_free(ws);
    free(ws->close_reason);
    free(ws->url);
    free(ws->subprotocol_req);
    free(ws->ca_file);
    free(ws->cert_file);
    free(ws->key_file);
    free(ws->subprotocol);
    for (size_t i = 0; i < ws->nheaders; i++) {
        free((char *)ws->headers[i].name);
        free((char *)ws->headers[i].value);
    }
    free(ws->headers);
    free(ws);
}

/* Fire on_close and free the handle. */
static void ws_final(ksock_ws_t *ws, int code, const char *reason, int err)
{
    ksock_kv_t kv[] = {KSOCK_KV_STR("url", ws->url), KSOCK_KV_I64("code", code),
                       KSOCK_KV_STR("error", err ? ksock_err_name(err) : "none")};
    ksock_log(ws->mgr->rt, KSOCK_LOG_DEBUG, WS_COMPONENT, kv, 3, "connection closed: %s",
              reason ? reason : "(no reason)");
    if (ws->on_close) ws->on_close(ws, code, reason, err);
    ws_free(ws);
}

/* ---- Connecting -------------------------------------------------------------- */

static int ws_start_attempt(ksock_ws_t *ws, char *errstr, size_t errstr_size)
{
    ksock_ws_manager_t *mgr = ws->mgr;
    ksock_connect_opts_t co = {
        .size = sizeof(co),
        .url = ws->url,
        .subprotocol = ws->subprotocol_req,
        .headers = ws->headers,
        .nheaders = ws->nheaders,
        .ca_file = ws->ca_file,
        .insecure = ws->insecure,
        .max_message_size = ws->max_message_size,
        .cert_file = ws->cert_file,
        .key_file = ws->key_file,
    };
    ksock_conn_id_t id = 0;
    int rc = mgr->tv->connect(mgr->transport->inst, &co, &mgr->ev, ws, &id, errstr, errstr_size);
    if (rc == 0) ws->conn_id = id;
    return rc;
}

static void ws_lost(ksock_ws_t *ws, int code, const char *reason, int err);

static void ws_timer_cb(ksock_timer_t *t, void *data)
{
    ksock_ws_t *ws = data;
    (void)t;
    if (ws->final_pending) {
        ws->final_pending = false;
        ws_final(ws, ws->final_code, ws->final_reason, ws->final_err);
        return;
    }
    if (ws->state != KSOCK_WS_WAITING) return;
    ws->state = KSOCK_WS_RECONNECTING;
    char why[256] = "";
    int rc = ws_start_attempt(ws, why, sizeof(why));
    if (rc != 0) ws_lost(ws, 1006, why, rc);
}

/*
 * Deliver the final on_close from the loop, not from inside the caller.
 * `reason` must live as long as ws: ws->close_reason or a literal.
 */
static void ws_final_later(ksock_ws_t *ws, int code, const char *reason, int err)
{
    ws->state = KSOCK_WS_CLOSING;
    ws->final_pending = true;
    ws->final_code = code;
    ws->final_err = err;
    ws->final_reason = reason;
    ksock_timer_start(ws->timer, 0, 0);
}

/*
 * The transport connection ended (or an attempt failed). Decide between
 * another attempt and the end.
 */
static void ws_lost(ksock_ws_t *ws, int code, const char *reason, int err)
{
    uint64_t now = ksock_now_ns();
    uint64_t up_ms = ws->state == KSOCK_WS_OPEN ? (now - ws->opened_at_ns) / 1000000u : 0;
    ws->conn_id = 0;
    free(ws->subprotocol);
    ws->subprotocol = NULL;
    if (ws->user_closed || !ws->reconnect_enabled || ws->policy == NULL) {
        if (!ws->user_closed) q_clear(ws);
        ws_final(ws, code, reason, err);
        return;
    }
    const ksock_reconnect_vtable_t *pv = ws->policy->vtable;
    if (up_ms > 0 && pv->stable_after_ms && up_ms >= pv->stable_after_ms(ws->policy->inst))
        ws->attempt = 0;
    ws->attempt++;
    ksock_disconnect_info_t info = {
        .size = sizeof(info),
        .err = err ? err : KSOCK_E_CLOSED,
        .close_code = code == 1006 ? 0 : code,
        .reason = reason,
        .attempt = ws->attempt,
        .connected_ms = up_ms,
    };
    char why[300] = "";
    int64_t delay = pv->next_delay(ws->policy->inst, &info, why, sizeof(why));
    if (delay == KSOCK_RECONNECT_GIVE_UP) {
        ksock_kv_t kv[] = {KSOCK_KV_STR("url", ws->url), KSOCK_KV_I64("attempt", ws->attempt)};
        ksock_log(ws->mgr->rt, KSOCK_LOG_WARN, WS_COMPONENT, kv, 2, "giving up reconnecting: %s",
                  why[0] ? why : "the policy does not retry");
        q_clear(ws);
        ws_final(ws, code, why[0] ? why : reason, err);
        return;
    }
    ws->state = KSOCK_WS_WAITING;
    ksock_timer_start(ws->timer, (uint64_t)delay, 0);
    if (ws->on_reconnecting) ws->on_reconnecting(ws, ws->attempt, (uint64_t)delay);
}

/* ---- Transport events ---------------------------------------------------------- */

static void ev_open(void *data, ksock_conn_id_t id, void *conn_data, const char *subprotocol)
{
    ksock_ws_t *ws = conn_data;
    (void)data;
    if (id != ws->conn_id) return;
    bool again = ws->ever_opened;
    bool closing = ws->state == KSOCK_WS_CLOSING;
    free(ws->subprotocol);
    ws->subprotocol = subprotocol ? ksock__strdup(subprotocol) : NULL;
    if (subprotocol && ws->subprotocol == NULL && !closing) {
        /*
         * Out of memory on an event that cannot return it: end this
         * connection (1011) rather than report no subprotocol; its on_close
         * event then runs the reconnection policy as for any loss.
         */
        ksock_report_error(ws->mgr->rt, KSOCK_E_NOMEM, WS_COMPONENT, "%s: out of memory on open",
                           ws->url);
        ws->mgr->tv->close(ws->mgr->transport->inst, id, 1011, "out of memory");
        return;
    }
    ws->ever_opened = true;
    ws->opened_at_ns = ksock_now_ns();
    if (closing) return; /* the transport sends our close right away */
    ws->state = KSOCK_WS_OPEN;
    ksock__ws_subs_opened(ws);
    ksock__ws_token_opened(ws);
    q_flush(ws);
    if (ws->on_open) ws->on_open(ws);
    if (again && ws->state == KSOCK_WS_OPEN && ws->on_reconnected) ws->on_reconnected(ws);
}

static void ev_message(void *data, ksock_conn_id_t id, void *conn_data, ksock_frame_type_t type,
                       const void *payload, size_t len)
{
    ksock_ws_t *ws = conn_data;
    (void)data;
    if (id != ws->conn_id) return;
    if (ws->on_frame) ws->on_frame(ws, type, payload, len);
    ksock__ws_subs_message(ws, payload, len);
    if (ws->on_message == NULL || id != ws->conn_id) return;
    ksock_value_t *v = NULL;
    char err[256] = "";
    int rc = ksock_serde_deserialize(ws->mgr->rt, payload, len, ws->strategy, &v, err, sizeof(err));
    if (rc != 0) {
        ksock_report_error(ws->mgr->rt, rc, WS_COMPONENT,
                           "%s: cannot deserialize a %zu-byte message: %s", ws->url, len, err);
        return;
    }
    ws->on_message(ws, v);
    ksock_value_unref(v);
}

static void ev_writable(void *data, ksock_conn_id_t id, void *conn_data)
{
    ksock_ws_t *ws = conn_data;
    (void)data;
    if (id != ws->conn_id) return;
    q_flush(ws);
    if (ws->q_head == NULL && ws->on_writable) ws->on_writable(ws);
}

static void ev_close(void *data, ksock_conn_id_t id, void *conn_data, int code, const char *reason,
                     int err)
{
    ksock_ws_t *ws = conn_data;
    (void)data;
    if (id != ws->conn_id) return;
    if (ws->user_closed) {
        /* Report the close as asked for when the peer just echoed it. */
        if (code == 1006 && err == 0) code = ws->close_code;
        ws_lost(ws, code, reason ? reason : ws->close_reason, err);
        return;
    }
    ws_lost(ws, code, reason, err);
}

/* ---- Manager --------------------------------------------------------------------- */

int ksock_ws_manager_new(ksock_runtime_t *rt, const char *transport_options_json,
                         ksock_ws_manager_t **out, char *errstr, size_t errstr_size)
{
    *out = NULL;
    ksock_ws_manager_t *mgr = calloc(1, sizeof(*mgr));
    if (mgr == NULL) return KSOCK_E_NOMEM;
    mgr->rt = rt;
    ksock_reconnect_opts_init(&mgr->reconnect);
    /* "transport" names the plugin ("ws" unless it says otherwise); the rest are its options. */
    static const char *const ignore[] = {"transport", NULL};
    ksock_plugin_t *p = NULL;
    const char *json = transport_options_json ? transport_options_json : "{}";
    int rc = ksock_config_load_string("transport options", json, strlen(json), &mgr->tdoc, errstr,
                                      errstr_size);
    if (rc == 0) {
        const char *name =
            ksock_cfg_string(ksock_cfg_get(ksock_config_root(mgr->tdoc), "transport"));
        rc = ksock_plugin_find(rt, KSOCK_PLUGIN_TRANSPORT, name ? name : "ws", &p, errstr,
                               errstr_size);
    }
    if (rc == 0)
        rc = ksock_plugin_instance_new(rt, p, "client", mgr->tdoc, ksock_config_root(mgr->tdoc),
                                       ignore, &mgr->transport, errstr, errstr_size);
    if (rc != 0) {
        ksock_config_free(mgr->tdoc);
        free(mgr);
        return rc;
    }
    mgr->tv = mgr->transport->vtable;
    mgr->ev = (ksock_transport_events_t){
        .size = sizeof(ksock_transport_events_t),
        .data = mgr,
        .on_handshake = NULL,
        .on_open = ev_open,
        .on_message = ev_message,
        .on_writable = ev_writable,
        .on_close = ev_close,
    };
    *out = mgr;
    return 0;
}

void ksock_ws_manager_destroy(ksock_ws_manager_t *mgr)
{
    if (mgr == NULL) return;
    /* Stop I/O first; its late events die with the instance (destroy drops them). */
    mgr->tv->stop(mgr->transport->inst);
    ksock_plugin_instance_free(mgr->transport);
    ksock_config_free(mgr->tdoc);
    while (mgr->conns)
        ws_free(mgr->conns);
    free(mgr->reconnect_policy);
    free(mgr->reconnect_policy_json);
    free(mgr->ca_file);
    free(mgr->token);
    free(mgr->cert_file);
    free(mgr->key_file);
    free(mgr);
}

int ksock_ws_configure_reconnection(ksock_ws_manager_t *mgr, const ksock_reconnect_opts_t *opts)
{
    if (opts == NULL || opts->size < offsetof(ksock_reconnect_opts_t, queue_max_messages))
        return KSOCK_E_INVAL;
    ksock_reconnect_opts_t o;
    reconnect_copy(&o, opts);
    char *policy = ksock__strdup(o.policy);
    char *json = ksock__strdup(o.policy_options_json);
    if (policy == NULL || (o.policy_options_json && json == NULL)) {
        /* The previous options stay in force. */
        free(policy);
        free(json);
        return KSOCK_E_NOMEM;
    }
    free(mgr->reconnect_policy);
    free(mgr->reconnect_policy_json);
    mgr->reconnect_policy = policy;
    mgr->reconnect_policy_json = json;
    o.policy = mgr->reconnect_policy;
    o.policy_options_json = mgr->reconnect_policy_json;
    mgr->reconnect = o;
    return 0;
}

int ksock_ws_configure_security(ksock_ws_manager_t *mgr, const ksock_ws_security_opts_t *opts)
{
    if (opts == NULL || !KSOCK_HAS_FIELD(opts, ksock_ws_security_opts_t, token))
        return KSOCK_E_INVAL;
    const char *cert = NULL, *key = NULL;
    if (KSOCK_HAS_FIELD(opts, ksock_ws_security_opts_t, key_file)) {
        cert = opts->cert_file;
        key = opts->key_file;
    }
    if ((cert == NULL) != (key == NULL)) return KSOCK_E_INVAL;
    const char *src[4] = {opts->ca_file, opts->token, cert, key};
    char *copy[4];
    bool nomem = false;
    for (int i = 0; i < 4; i++) {
        copy[i] = ksock__strdup(src[i]);
        nomem |= src[i] && copy[i] == NULL;
    }
    if (nomem) {
        /* The previous options stay in force. */
        for (int i = 0; i < 4; i++)
            free(copy[i]);
        return KSOCK_E_NOMEM;
    }
    free(mgr->ca_file);
    free(mgr->token);
    free(mgr->cert_file);
    free(mgr->key_file);
    mgr->ca_file = copy[0];
    mgr->token = copy[1];
    mgr->cert_file = copy[2];
    mgr->key_file = copy[3];
    mgr->insecure = opts->insecure;
    return 0;
}

/* ---- Connections ------------------------------------------------------------------- */

/* Percent-encode `s` onto b. 0 or KSOCK_E_NOMEM. */
static int append_pct(ksock_buf_t *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && rc == 0; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            rc = ksock_buf_append(b, p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            rc = ksock_buf_append(b, e, 3);
        }
    }
    return rc;
}

/* Copy one request header onto ws. 0 or KSOCK_E_NOMEM (ws unchanged). */
static int add_header(ksock_ws_t *ws, const char *name, const char *value)
{
    ksock_kvpair_t *h = realloc(ws->headers, (ws->nheaders + 1) * sizeof(*h));
    if (h == NULL) return KSOCK_E_NOMEM;
    ws->headers = h;
    char *n = ksock__strdup(name), *v = ksock__strdup(value);
    if (n == NULL || v == NULL) {
        free(n);
        free(v);
        return KSOCK_E_NOMEM;
    }
    h[ws->nheaders].name = n;
    h[ws->nheaders].value = v;
    ws->nheaders++;
    return 0;
}

/* ws->url: `url` with the query parameters appended, percent-encoded. */
static int ws_build_url(ksock_ws_t *ws, const char *url, const ksock_ws_opts_t *opts)
{
    ksock_buf_t u = KSOCK_BUF_INIT;
    int rc = ksock_buf_appendf(&u, "%s", url);
    for (size_t i = 0; i < opts->nquery && rc == 0; i++) {
        rc = ksock_buf_append(&u, (i == 0 && strchr(url, '?') == NULL) ? "?" : "&", 1);
        if (rc == 0) rc = append_pct(&u, opts->query[i].name);
        if (rc == 0) rc = ksock_buf_append(&u, "=", 1);
        if (rc == 0) rc = append_pct(&u, opts->query[i].value ? opts->query[i].value : "");
    }
    if (rc != 0) {
        ksock_buf_free(&u);
        return KSOCK_E_NOMEM;
    }
    ws->url = u.data;
    return 0;
}

/* Copy `src` into *dst; 0, or KSOCK_E_NOMEM when a non-NULL src could not be copied. */
static int dup_opt(char **dst, const char *src)
{
    *dst = ksock__strdup(src);
    return src && *dst == NULL ? KSOCK_E_NOMEM : 0;
}

/*
 * Copy what every attempt sends: subprotocol, TLS files, headers and the
 * bearer token (the options are the caller's, borrowed for the call only).
 */
static int ws_copy_request(ksock_ws_t *ws, const ksock_ws_opts_t *opts, const char *ser)
{
    ksock_ws_manager_t *mgr = ws->mgr;
    int rc = 0;
    if (opts->subprotocol) {
        if (*opts->subprotocol) rc = dup_opt(&ws->subprotocol_req, opts->subprotocol);
    } else {
        ksock_buf_t sp = KSOCK_BUF_INIT;
        rc = ksock_buf_appendf(&sp, "ksock.v1.%s", ser);
        ws->subprotocol_req = sp.data;
    }
    ws->insecure = opts->insecure || mgr->insecure;
    ws->max_message_size = opts->max_message_size;
    bool own_cert = opts->cert_file || opts->key_file;
    rc |= dup_opt(&ws->ca_file, opts->ca_file ? opts->ca_file : mgr->ca_file);
    rc |= dup_opt(&ws->cert_file, own_cert ? opts->cert_file : mgr->cert_file);
    rc |= dup_opt(&ws->key_file, own_cert ? opts->key_file : mgr->key_file);
    for (size_t i = 0; i < opts->nheaders && rc == 0; i++)
        rc = add_header(ws, opts->headers[i].name,
                        opts->headers[i].value ? opts->headers[i].value : "");
    const char *token = opts->token ? opts->token : mgr->token;
    if (token && rc == 0) {
        ksock_buf_t b = KSOCK_BUF_INIT;
        rc = ksock_buf_appendf(&b, "Bearer %s", token);
        if (rc == 0) rc = add_header(ws, "authorization", b.data);
        ksock_buf_free(&b);
    }
    return rc != 0 ? KSOCK_E_NOMEM : 0;
}

int ksock_ws_connect(ksock_ws_manager_t *mgr, const char *url, const ksock_ws_opts_t *opts_in,
                     ksock_ws_t **out, char *errstr, size_t errstr_size)
{
    *out = NULL;
    ksock_ws_opts_t opts;
    ksock_ws_opts_init(&opts);
    if (opts_in)
        memcpy(&opts, opts_in, opts_in->size < sizeof(opts) ? opts_in->size : sizeof(opts));
    if (url == NULL || (strncmp(url, "ws://", 5) != 0 && strncmp(url, "wss://", 6) != 0)) {
        ksock_errstr_set(errstr, errstr_size, "URL must start with ws:// or wss://");
        return KSOCK_E_INVAL;
    }
    ksock_ws_t *ws = calloc(1, sizeof(*ws));
    if (ws == NULL) return KSOCK_E_NOMEM;
    ws->mgr = mgr;
    ws->state = KSOCK_WS_CONNECTING;
    int rc = ksock_timer_init(mgr->rt, &ws->timer, ws_timer_cb, ws);
    if (rc != 0) {
        free(ws);
        return rc;
    }
    const char *ser = opts.serializer ? opts.serializer : "json";
    rc = ws_build_url(ws, url, &opts);
    if (rc == 0) rc = ws_copy_request(ws, &opts, ser);
    if (rc != 0) ksock_errstr_set(errstr, errstr_size, "out of memory");
    if (rc == 0)
        rc = ksock_serde_strategy_from_plugin(mgr->rt, ser, NULL, &ws->strategy, errstr,
                                              errstr_size);
    if (rc == 0) rc = ksock__ws_subs_init(ws);
    if (rc == 0) {
        reconnect_copy(&ws->ropts, opts.reconnect ? opts.reconnect : &mgr->reconnect);
        ws->reconnect_enabled = ws->ropts.enabled;
        if (ws->reconnect_enabled) rc = policy_make(ws, &ws->ropts, errstr, errstr_size);
        /* The options struct is the caller's: keep no pointers into it. */
        ws->ropts.policy = NULL;
        ws->ropts.policy_options_json = NULL;
    }
    if (rc == 0) rc = ws_start_attempt(ws, errstr, errstr_size);
    if (rc != 0) {
        ws_free(ws);
        return rc;
    }
    ws->next = mgr->conns;
    if (ws->next) ws->next->pprev = &ws->next;
    mgr->conns = ws;
    ws->pprev = &mgr->conns;
    *out = ws;
    return 0;
}

int ksock__ws_send_frame(ksock_ws_t *ws, ksock_frame_t *f)
{
    ksock_ws_manager_t *mgr = ws->mgr;
    int rc;
    if (ws->user_closed || ws->state == KSOCK_WS_CLOSING) return KSOCK_E_STATE;
    switch (ws->state) {
    case KSOCK_WS_CONNECTING:
        /* The transport queues until the first open. */
        return mgr->tv->send(mgr->transport->inst, ws->conn_id, f);
    case KSOCK_WS_OPEN:
        /* Keep the order behind messages still waiting from a disconnection. */
        if (ws->q_head) return q_push(ws, f);
        return mgr->tv->send(mgr->transport->inst, ws->conn_id, f);
    default:
        if (ws->ropts.queue_max_messages == 0) return KSOCK_E_CLOSED;
        rc = q_push(ws, f);
        return rc;
    }
}

int ksock_ws_send(ksock_ws_t *ws, const ksock_value_t *msg, const ksock_serde_strategy_t *custom)
{
    ksock_buf_t b = KSOCK_BUF_INIT;
    ksock_frame_type_t type = KSOCK_FRAME_TEXT;
    char err[256] = "";
    int rc = ksock_serde_serialize(ws->mgr->rt, msg, custom ? custom : ws->strategy, &b, &type, err,
                                   sizeof(err));
    if (rc != 0) {
        ksock_buf_free(&b);
        return rc;
    }
    ksock_frame_t *f = ksock_frame_adopt(type, b.data, b.len);
    if (f == NULL) {
        ksock_buf_free(&b);
        return KSOCK_E_NOMEM;
    }
    rc = ksock__ws_send_frame(ws, f);
    ksock_frame_unref(f);
    return rc;
}

int ksock_ws_send_frame(ksock_ws_t *ws, ksock_frame_type_t type, const void *data, size_t len)
{
    ksock_frame_t *f = ksock_frame_new(type, data, len);
    if (f == NULL) return KSOCK_E_NOMEM;
    int rc = ksock__ws_send_frame(ws, f);
    ksock_frame_unref(f);
    return rc;
}

int ksock_ws_close(ksock_ws_t *ws, int code, const char *reason)
{
    if (code == 0) code = 1000;
    if (code != 1000 && !(code >= 3000 && code <= 4999)) return KSOCK_E_INVAL;
    if (ws->user_closed || ws->state == KSOCK_WS_CLOSING) return KSOCK_E_STATE;
    char *r = NULL;
    if (reason && (r = ksock__strdup(reason)) == NULL) return KSOCK_E_NOMEM;
    ws->user_closed = true;
    ws->close_code = code;
    ws->close_reason = r;
    if (ws->conn_id && (ws->state == KSOCK_WS_OPEN || ws->state == KSOCK_WS_CONNECTING ||
                        ws->state == KSOCK_WS_RECONNECTING)) {
        ksock_ws_manager_t *mgr = ws->mgr;
        ws->state = KSOCK_WS_CLOSING;
        if (mgr->tv->close(mgr->transport->inst, ws->conn_id, code, reason) == 0) return 0;
    }
    /* Not connected: over now (on_close from the loop). */
    ksock_timer_stop(ws->timer);
    q_clear(ws);
    ws_final_later(ws, code, ws->close_reason, 0);
    return 0;
}

/* ---- Registration, resilience, accessors ------------------------------------------- */

void ksock_ws_on_open(ksock_ws_t *ws, ksock_ws_open_cb cb)
{
    ws->on_open = cb;
}
void ksock_ws_on_message(ksock_ws_t *ws, ksock_ws_message_cb cb)
{
    ws->on_message = cb;
}
void ksock_ws_on_frame(ksock_ws_t *ws, ksock_ws_frame_cb cb)
{
    ws->on_frame = cb;
}
void ksock_ws_on_close(ksock_ws_t *ws, ksock_ws_close_cb cb)
{
    ws->on_close = cb;
}
void ksock_ws_on_reconnecting(ksock_ws_t *ws, ksock_ws_reconnecting_cb cb)
{
    ws->on_reconnecting = cb;
}
void ksock_ws_on_reconnected(ksock_ws_t *ws, ksock_ws_reconnected_cb cb)
{
    ws->on_reconnected = cb;
}
void ksock_ws_on_writable(ksock_ws_t *ws, ksock_ws_writable_cb cb)
{
    ws->on_writable = cb;
}

int ksock_ws_enable_reconnection(ksock_ws_t *ws, const ksock_reconnect_opts_t *opts)
{
    if (ws->user_closed || ws->state == KSOCK_WS_CLOSING) return KSOCK_E_STATE;
    ksock_reconnect_opts_t o;
    reconnect_copy(&o, opts ? opts : &ws->mgr->reconnect);
    char err[256];
    int rc = policy_make(ws, &o, err, sizeof(err));
    if (rc != 0) {
        ksock_report_error(ws->mgr->rt, rc, WS_COMPONENT, "%s: %s", ws->url, err);
        return rc;
    }
    o.policy = NULL;
    o.policy_options_json = NULL;
    ws->ropts = o;
    ws->reconnect_enabled = true;
    return 0;
}

int ksock_ws_set_reconnection_strategy(ksock_ws_t *ws, const ksock_reconnect_opts_t *opts)
{
    return ksock_ws_enable_reconnection(ws, opts);
}

void ksock_ws_disable_reconnection(ksock_ws_t *ws)
{
    ws->reconnect_enabled = false;
    if (ws->state == KSOCK_WS_WAITING) {
        /* Waiting for a retry that will not come: over now. */
        ksock_timer_stop(ws->timer);
        q_clear(ws);
        ws_final_later(ws, 1006, "reconnection disabled", KSOCK_E_CANCELED);
    }
}

ksock_ws_state_t ksock_ws_state(const ksock_ws_t *ws)
{
    return ws->state;
}

const char *ksock_ws_state_name(ksock_ws_state_t s)
{
    switch (s) {
    case KSOCK_WS_CONNECTING:
        return "connecting";
    case KSOCK_WS_OPEN:
        return "open";
    case KSOCK_WS_WAITING:
        return "waiting";
    case KSOCK_WS_RECONNECTING:
        return "reconnecting";
    case KSOCK_WS_CLOSING:
        return "closing";
    }
    return "unknown";
}

const char *ksock_ws_subprotocol(const ksock_ws_t *ws)
{
    return ws->subprotocol;
}
uint32_t ksock_ws_attempt(const ksock_ws_t *ws)
{
    return ws->attempt;
}
ksock_runtime_t *ksock_ws_runtime(const ksock_ws_t *ws)
{
    return ws->mgr->rt;
}
void ksock_ws_set_data(ksock_ws_t *ws, void *data)
{
    ws->data = data;
}
void *ksock_ws_get_data(const ksock_ws_t *ws)
{
    return ws->data;
}

void ksock_ws_manager_free(ksock_ws_manager_t *mgr)
{
    ksock_ws_manager_destroy(mgr);
}
