/*
 * transport "ws": the server side of the upgrade, on the lws thread. The
 * request headers for the authenticator, the peer's address, the
 * subprotocol, the Host and Origin rules, HTTP refusals.
 */
#include "ws_internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* ---- lws thread: server handshake -------------------------------------- */

/* *out: a malloc'd copy of header t, or NULL when absent. -1 when out of memory. */
static int hdr_dup(struct lws *wsi, enum lws_token_indexes t, char **out)
{
    int n = lws_hdr_total_length(wsi, t);
    *out = NULL;
    if (n <= 0) return 0;
    char *s = malloc((size_t)n + 1);
    if (s == NULL) return -1;
    if (lws_hdr_copy(wsi, s, n + 1, t) < 0) {
        free(s);
        return 0;
    }
    *out = s;
    return 0;
}

typedef struct hs_build_s {
    ksock_kvpair_t *h;
    size_t n, cap;
    char *query;
    ksock_buf_t q;
} hs_build_t;

/* Takes name and value (malloc'd; NULL means out of memory). -1 when out of memory. */
static int hs_add(hs_build_t *b, char *name, char *value)
{
    if (name && value && b->n == b->cap) {
        size_t ncap = b->cap ? b->cap * 2 : 16;
        ksock_kvpair_t *nh = realloc(b->h, ncap * sizeof(*b->h));
        if (nh) {
            b->h = nh;
            b->cap = ncap;
        }
    }
    if (name == NULL || value == NULL || b->n == b->cap) {
        free(name);
        free(value);
        return -1;
    }
    b->h[b->n].name = name;
    b->h[b->n].value = value;
    b->n++;
    return 0;
}

static void hs_free(hs_build_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free((char *)b->h[i].name);
        free((char *)b->h[i].value);
    }
    free(b->h);
    ksock_buf_free(&b->q);
}

/* Every standard header lws parsed, plus the configured custom ones. -1: out of memory. */
static int hs_collect_headers(ws_inst_t *inst, struct lws *wsi, hs_build_t *b)
{
    for (int t = 0; t < (int)WSI_TOKEN_COUNT; t++) {
        const char *nm = (const char *)lws_token_to_string((enum lws_token_indexes)t);
        if (nm == NULL || nm[0] == ':' || t == WSI_TOKEN_HTTP_URI_ARGS) continue;
        size_t nl = strlen(nm);
        if (nl < 2 || nm[nl - 1] != ':') continue; /* "get " etc. are not headers */
        char *v = NULL;
        if (hdr_dup(wsi, (enum lws_token_indexes)t, &v) != 0) return -1;
        if (v == NULL) continue;
        char *name = malloc(nl);
        for (size_t i = 0; name && i + 1 < nl; i++)
            name[i] = (char)tolower((unsigned char)nm[i]);
        if (name) name[nl - 1] = '\0';
        if (hs_add(b, name, v) != 0) return -1;
    }
    for (size_t i = 0; i < inst->o->handshake_headers.n; i++) {
        const char *want = inst->o->handshake_headers.v[i];
        char key[128];
        int kl = snprintf(key, sizeof(key), "%s:", want);
        if (kl <= 1 || (size_t)kl >= sizeof(key)) continue;
        for (int j = 0; j < kl; j++)
            key[j] = (char)tolower((unsigned char)key[j]);
        int n = lws_hdr_custom_length(wsi, key, kl);
        if (n < 0) continue;
        char *v = malloc((size_t)n + 1);
        if (v == NULL) return -1;
        if (lws_hdr_custom_copy(wsi, v, n + 1, key, kl) < 0) {
            free(v);
            continue;
        }
        key[kl - 1] = '\0';
        if (hs_add(b, ws__strdup(key), v) != 0) return -1;
    }
    return 0;
}

static void peer_address(struct lws *wsi, char *out, size_t n)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    out[0] = '\0';
    if (getpeername(lws_get_socket_fd(wsi), (struct sockaddr *)&ss, &sl) != 0) return;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
        port = ntohs(a->sin_port);
        snprintf(out, n, "%s:%d", ip, port);
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
        port = ntohs(a->sin6_port);
        /* An IPv4 client of a dual-stack socket: show it as IPv4. */
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
            snprintf(out, n, "%s:%d", ip + 7, port);
        else
            snprintf(out, n, "[%s]:%d", ip, port);
    }
}

/* The first offered subprotocol we support; "" when none was offered, NULL when none fits. */
static const char *pick_subprotocol(ws_inst_t *inst, const char *offered)
{
    if (offered == NULL || *offered == '\0') return "";
    const char *p = offered;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        const char *s = p;
        while (*p && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        size_t l = (size_t)(p - s);
        for (size_t i = 0; l && i < inst->nserved; i++) {
            const char *name = inst->served[i];
            if (strlen(name) == l && memcmp(name, s, l) == 0) return name;
        }
    }
    return NULL;
}

/*
 * The listener a connection came in on, from the socket's local address:
 * not lws_get_vhost(), which lws 4.1 may switch to another vhost on the
 * same port by the Host header. NULL when no bound socket matches.
 */
static ws_listener_t *listener_of(ws_inst_t *inst, struct lws *wsi, struct sockaddr_storage *local)
{
    socklen_t sl = sizeof(*local);
    if (getsockname(lws_get_socket_fd(wsi), (struct sockaddr *)local, &sl) != 0) return NULL;
    const struct sockaddr *la = (const struct sockaddr *)local;
    for (size_t i = 0; i < inst->nlisteners; i++) {
        ws_listener_t *l = &inst->listeners[i];
        for (size_t k = 0; k < l->nsocks; k++) {
            const struct sockaddr *ba = (const struct sockaddr *)&l->socks[k].addr.ss;
            if (l->socks[k].fd >= 0 && ba->sa_family == la->sa_family &&
                ws__addr_port(la) == l->port && (ws__addr_is_any(ba) || ws__addr_eq(ba, la)))
                return l;
        }
    }
    return NULL;
}

/*
 * The Host and Origin rules (docs/websocket.md): NULL when the request
 * passes, else why not. A page on another site must not reach a local
 * server through the browser (cross-site WebSocket hijacking), nor a name
 * that an attacker re-pointed at this address (DNS rebinding).
 */
static const char *host_origin_refusal(ws_inst_t *inst, ws_listener_t *l,
                                       const struct sockaddr_storage *local, const char *host,
                                       const char *origin)
{
    ws_addr_t addrs[8];
    size_t n = 0;
    for (size_t k = 0; k < l->nsocks && n < 8; k++)
        addrs[n++] = l->socks[k].addr;
    ws_hostset_t set = {l->address, addrs, n, (const struct sockaddr *)local, &inst->o->hosts};
    if (!ws__host_allowed(&set, host))
        return host ? "Host not allowed (see the \"hosts\" option)" : "no Host header";
    if (!ws__origin_allowed(&set, &inst->o->origins, origin))
        return "Origin not allowed (see the \"origins\" option)";
    return NULL;
}

static void log_refusal(ws_inst_t *inst, struct lws *wsi, unsigned code, const char *why,
                        const char *host, const char *origin)
{
    char peer[80], h[120], o[120];
    peer_address(wsi, peer, sizeof(peer));
    ws__printable(host, h, sizeof(h));
    ws__printable(origin, o, sizeof(o));
    ksock_kv_t kv[] = {KSOCK_KV_STR("peer", peer), KSOCK_KV_I64("status", code),
                       KSOCK_KV_STR("host", h), KSOCK_KV_STR("origin", o)};
    ksock_log(inst->rt, KSOCK_LOG_WARN, inst->component, kv, 4, "upgrade refused: %s", why);
}

/*
 * The query string: lws keeps the arguments as fragments, each of any
 * length. -1 when out of memory.
 */
static int collect_query(struct lws *wsi, hs_build_t *b)
{
    for (int i = 0;; i++) {
        int n = lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, i);
        char *frag = malloc((size_t)(n > 0 ? n : 0) + 1);
        if (frag == NULL) return -1;
        int m = lws_hdr_copy_fragment(wsi, frag, (n > 0 ? n : 0) + 1, WSI_TOKEN_HTTP_URI_ARGS, i);
        int rc = 0;
        if (m > 0 && b->q.len) rc = ksock_buf_append(&b->q, "&", 1);
        if (m > 0 && rc == 0) rc = ksock_buf_append(&b->q, frag, (size_t)m);
        free(frag);
        if (rc != 0) return -1;
        if (m < 0) return 0; /* no more fragments; an empty one ("a&&b") is skipped */
    }
}

static const char *status_text(unsigned code)
{
    switch (code) {
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}

/*
 * Answer an upgrade request with an HTTP error and close. Written by hand:
 * lws_return_http_status() answers "HTTP/1.0" this early in the request,
 * which strict clients (Python websockets) ws__refuse to parse.
 */
int ws__refuse(struct lws *wsi, unsigned code, const char *why)
{
    unsigned char buf[LWS_PRE + 1024];
    char *p = (char *)buf + LWS_PRE;
    size_t cap = sizeof(buf) - LWS_PRE;
    int n = snprintf(p, cap,
                     "HTTP/1.1 %u %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                     "content-length: %zu\r\nconnection: close\r\n\r\n%s\n",
                     code, status_text(code), strlen(why) + 1, why);
    if (n < 0 || (size_t)n >= cap) return -1;
    lws_write(wsi, (unsigned char *)p, (size_t)n, LWS_WRITE_HTTP_HEADERS);
    return -1; /* hang up: the response is out */
}

/* The request line and the headers the upgrade decision reads. */
typedef struct {
    char *uri, *origin, *offered, *host;
} hs_request_t;

/* -1 when out of memory: a header lost would pass for an absent one (Origin!). */
static int request_read(struct lws *wsi, hs_request_t *r)
{
    if (hdr_dup(wsi, WSI_TOKEN_GET_URI, &r->uri) != 0) return -1;
    if (hdr_dup(wsi, WSI_TOKEN_ORIGIN, &r->origin) != 0) return -1;
    if (hdr_dup(wsi, WSI_TOKEN_PROTOCOL, &r->offered) != 0) return -1;
    return hdr_dup(wsi, WSI_TOKEN_HOST, &r->host);
}

static void request_free(hs_request_t *r)
{
    free(r->uri);
    free(r->origin);
    free(r->offered);
    free(r->host);
}

/* Say why an upgrade got 400: what was offered, what is served. */
static void log_subprotocol_refusal(ws_inst_t *inst, struct lws *wsi, const char *offered)
{
    char peer[80], off[200];
    ksock_buf_t served = KSOCK_BUF_INIT;
    for (size_t i = 0; i < inst->nserved; i++)
        ksock_buf_appendf(&served, "%s%s", i ? "," : "", inst->served[i]);
    peer_address(wsi, peer, sizeof(peer));
    ws__printable(offered ? offered : "", off, sizeof(off));
    ksock_kv_t kv[] = {KSOCK_KV_STR("peer", peer), KSOCK_KV_STR("offered", off),
                       KSOCK_KV_STR("served", served.data ? served.data : "")};
    ksock_log(inst->rt, KSOCK_LOG_INFO, inst->component, kv, 3, "upgrade refused (400): %s",
              offered && *offered ? "no offered subprotocol is served" : "no subprotocol offered");
    ksock_buf_free(&served);
}

/*
 * What is checked before the host hears of a request, in this order:
 * shutting down, max_connections and the listener (503), the path (404),
 * Host and Origin (403, logged), the subprotocol (400). NULL when the
 * request passes, with *sub the subprotocol picked ("" for none); else
 * why not, with *code the HTTP status.
 */
static const char *upgrade_precheck(ws_inst_t *inst, struct lws *wsi, const hs_request_t *r,
                                    unsigned *code, const char **sub)
{
    struct sockaddr_storage local;
    ws_listener_t *l = listener_of(inst, wsi, &local);
    const char *why_not;
    *code = HTTP_STATUS_SERVICE_UNAVAILABLE;
    if (inst->closing_all) return "shutting down";
    if (inst->o->max_connections > 0) {
        pthread_mutex_lock(&inst->lock);
        bool full = inst->nserver >= (size_t)inst->o->max_connections;
        pthread_mutex_unlock(&inst->lock);
        if (full) return "too many connections";
    }
    if (l == NULL)
        return "listener closed"; /* removed by set_listeners while this upgrade waited */
    *code = HTTP_STATUS_NOT_FOUND;
    if (r->uri == NULL || (l->path && strcmp(l->path, r->uri) != 0))
        return "no WebSocket endpoint at this path";
    *code = HTTP_STATUS_FORBIDDEN;
    if ((why_not = host_origin_refusal(inst, l, &local, r->host, r->origin)) != NULL) {
        log_refusal(inst, wsi, HTTP_STATUS_FORBIDDEN, why_not, r->host, r->origin);
        return why_not;
    }
    *code = HTTP_STATUS_BAD_REQUEST;
    *sub = pick_subprotocol(inst, r->offered);
    if (*sub == NULL || (**sub == '\0' && inst->o->require_subprotocol)) {
        log_subprotocol_refusal(inst, wsi, r->offered);
        return "no supported subprotocol offered";
    }
    return NULL;
}

/* The server connection an accepted upgrade will get; NULL when out of memory. */
static ws_conn_t *server_conn_new(ws_inst_t *inst, struct lws *wsi, const char *sub)
{
    ws_conn_t *c = ws__conn_new(inst);
    if (c == NULL) return NULL;
    c->ev = &inst->listen_ev;
    c->max_message = (uint64_t)inst->o->max_message_size;
    if (*sub && (c->subprotocol = ws__strdup(sub)) == NULL) {
        ws__conn_free(c);
        return NULL;
    }
    if (inst->o->permessage_deflate) {
        char ext[256];
        c->deflate = lws_hdr_copy(wsi, ext, sizeof(ext), WSI_TOKEN_EXTENSIONS) > 0 &&
                     strstr(ext, "permessage-deflate") != NULL;
    }
    return c;
}

/* The TLS client certificate as DER (OPENSSL_free it), or NULL with 0. */
static int client_cert_der(struct lws *wsi, unsigned char **der)
{
    int der_len = 0;
    *der = NULL;
    SSL *ssl = lws_get_ssl(wsi);
    X509 *x = ssl ? SSL_get_peer_certificate(ssl) : NULL;
    if (x) {
        der_len = i2d_X509(x, der);
        X509_free(x);
        if (der_len < 0) der_len = 0;
    }
    return der_len;
}

/*
 * The host's on_handshake, with everything it may judge the request by.
 * 0 accepts; else the KSOCK_E_* it answered, its reason in why.
 */
static int ask_host(ws_inst_t *inst, struct lws *wsi, ws_conn_t *c, const hs_request_t *r,
                    const hs_build_t *b, char *why, size_t why_size)
{
    char peer[80];
    peer_address(wsi, peer, sizeof(peer));
    unsigned char *der;
    int der_len = client_cert_der(wsi, &der);
    ksock_handshake_t hs = {
        .size = sizeof(hs),
        .path = r->uri,
        .query = b->q.len ? b->q.data : NULL,
        .headers = b->h,
        .nheaders = b->n,
        .peer_addr = peer,
        .subprotocol = c->subprotocol,
        .origin = r->origin,
        .client_cert_der = der,
        .client_cert_len = (size_t)der_len,
    };
    int hrc = 0;
    if (inst->listen_ev.on_handshake)
        hrc = inst->listen_ev.on_handshake(inst->listen_ev.data, c->id, &hs, &c->conn_data, why,
                                           why_size);
    OPENSSL_free(der);
    return hrc;
}

/*
 * LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: path, Host, Origin, subprotocol, then
 * the core's on_handshake. On acceptance a connection is made and bound to
 * the wsi; it gets its id before on_handshake so the core can key its
 * per-connection state on it from there on.
 */
int ws__server_confirm_upgrade(ws_inst_t *inst, struct lws *wsi)
{
    hs_request_t r = {0};
    hs_build_t b = {0};
    const char *sub = NULL, *why_not;
    unsigned code;
    int rc = 0;
    ws_conn_t *c = NULL;
    if (request_read(wsi, &r) != 0) goto nomem;
    if ((why_not = upgrade_precheck(inst, wsi, &r, &code, &sub)) != NULL) {
        if (inst->listen_ev.on_refused)
            inst->listen_ev.on_refused(inst->listen_ev.data, code, why_not);
        rc = ws__refuse(wsi, code, why_not);
        goto out;
    }
    if (collect_query(wsi, &b) != 0 || hs_collect_headers(inst, wsi, &b) != 0) goto nomem;
    if ((c = server_conn_new(inst, wsi, sub)) == NULL) goto nomem;
    char why[256] = "";
    int hrc = ask_host(inst, wsi, c, &r, &b, why, sizeof(why));
    if (hrc != 0) {
        code = hrc == KSOCK_E_AUTH        ? HTTP_STATUS_UNAUTHORIZED
               : hrc == KSOCK_E_FORBIDDEN ? HTTP_STATUS_FORBIDDEN
               : hrc == KSOCK_E_LIMIT     ? 429u /* a quota of the client's: not 503 */
                                          : HTTP_STATUS_BAD_REQUEST;
        ws__conn_free(c);
        rc = ws__refuse(wsi, code, why[0] ? why : ksock_strerror(hrc));
        goto out;
    }
    c->wsi = wsi;
    c->counted = true;
    lws_set_opaque_user_data(wsi, c);
    pthread_mutex_lock(&inst->lock);
    ws__table_insert(inst, c);
    inst->nwsi++;
    pthread_mutex_unlock(&inst->lock);
    goto out;
nomem: /* before the host heard of the connection: refuse it, as when it is full */
    log_refusal(inst, wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "out of memory", r.host, r.origin);
    rc = ws__refuse(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "out of memory");
out:
    hs_free(&b);
    request_free(&r);
    return rc;
}
