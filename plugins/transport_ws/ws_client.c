/*
 * transport "ws": client connections on the lws thread: one client vhost
 * per distinct TLS setup, starting a connect(), mapping its errors.
 */
#include "ws_internal.h"

#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- lws thread: client connect --------------------------------------- */

static bool str_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

/*
 * lws keeps TLS client settings per vhost: one client vhost per distinct
 * (CA, certificate, key), made on first use and kept until the context goes.
 */
static void client_vhost_free(ws_client_vhost_t *v)
{
    free(v->ca_file);
    free(v->cert_file);
    free(v->key_file);
    free(v);
}

int ws__client_vhost(ws_inst_t *inst, const char *ca_file, const char *cert_file,
                     const char *key_file, struct lws_vhost **out)
{
    size_t n = 0;
    for (ws_client_vhost_t *v = inst->client_vhosts; v; v = v->next, n++)
        if (str_eq(v->ca_file, ca_file) && str_eq(v->cert_file, cert_file) &&
            str_eq(v->key_file, key_file)) {
            *out = v->vh;
            return 0;
        }
    ws_client_vhost_t *v = calloc(1, sizeof(*v));
    if (v == NULL) return KSOCK_E_NOMEM;
    v->ca_file = ws__strdup(ca_file);
    v->cert_file = ws__strdup(cert_file);
    v->key_file = ws__strdup(key_file);
    if ((ca_file && !v->ca_file) || (cert_file && !v->cert_file) || (key_file && !v->key_file)) {
        client_vhost_free(v);
        return KSOCK_E_NOMEM;
    }
    snprintf(v->name, sizeof(v->name), "ksock-client-%zu", n);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = inst->client_protocols;
    info.vhost_name = v->name;
    info.client_ssl_ca_filepath = v->ca_file;
    info.client_ssl_cert_filepath = v->cert_file;
    info.client_ssl_private_key_filepath = v->key_file;
    /* lws 4.1 sets up a vhost's TLS only when the vhost's own options ask for it. */
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.connect_timeout_secs = (unsigned)((inst->o->connect_timeout + 999) / 1000);
    info.timeout_secs = info.connect_timeout_secs;
    info.ssl_client_options_set =
        SSL_OP_NO_SSLv2 | SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1;
    if (inst->o->permessage_deflate) info.extensions = ws__extensions;
    info.user = inst;
    struct lws_vhost *vh = lws_create_vhost(inst->ctx, &info);
    if (vh == NULL) {
        client_vhost_free(v);
        return KSOCK_E_TLS;
    }
    v->vh = vh;
    v->next = inst->client_vhosts;
    inst->client_vhosts = v;
    *out = vh;
    return 0;
}

void ws__client_start(ws_inst_t *inst, ws_conn_t *c)
{
    char *u = ws__strdup(c->cl->url);
    const char *prot = NULL, *addr = NULL, *path = NULL;
    int port = 0;
    char pathbuf[2048];
    if (u == NULL) {
        ws__conn_finish(c, NULL, 1006, "out of memory", KSOCK_E_NOMEM);
        return;
    }
    if (lws_parse_uri(u, &prot, &addr, &port, &path) != 0 || addr == NULL || *addr == '\0') {
        free(u);
        ws__conn_finish(c, NULL, 1006, "malformed URL", KSOCK_E_INVAL);
        return;
    }
    bool tls = strcmp(prot, "wss") == 0 || strcmp(prot, "https") == 0;
    snprintf(pathbuf, sizeof(pathbuf), "/%s", path ? path : "");
    struct lws_vhost *vh = NULL;
    int vrc = ws__client_vhost(inst, c->cl->ca_file, c->cl->cert_file, c->cl->key_file, &vh);
    if (vrc == KSOCK_E_NOMEM) {
        free(u);
        ws__conn_finish(c, NULL, 1006, "out of memory", KSOCK_E_NOMEM);
        return;
    }
    if (vrc != 0) {
        free(u);
        ws__conn_finish(c, NULL, 1006,
                        c->cl->cert_file
                            ? "cannot set up TLS with this CA file, client certificate and key"
                            : "cannot set up TLS for the CA file",
                        KSOCK_E_TLS);
        return;
    }
    struct lws_client_connect_info i;
    memset(&i, 0, sizeof(i));
    i.context = inst->ctx;
    i.vhost = vh;
    i.address = addr;
    i.port = port;
    i.path = pathbuf;
    i.host = addr;
    i.origin = NULL;
    i.protocol = c->cl->sub_req && *c->cl->sub_req ? c->cl->sub_req : NULL;
    i.local_protocol_name = WS_CLIENT_PROTOCOL;
    i.opaque_user_data = c;
    i.retry_and_idle_policy = &inst->retry;
    if (tls) {
        i.ssl_connection = LCCSCF_USE_SSL;
        if (c->cl->insecure)
            i.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                                LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE;
    }
    /*
     * lws may call CLIENT_CONNECTION_ERROR before returning (and then
     * return NULL or not). in_start keeps c alive until we are done with it.
     */
    c->cl->in_start = true;
    struct lws *w = lws_client_connect_via_info(&i);
    c->cl->in_start = false;
    free(u);
    if (c->deferred_close) {
        ws_event_t *e = c->deferred_close;
        c->deferred_close = NULL;
        ws__event_push(inst, e); /* c may be freed from here on */
        return;
    }
    if (w == NULL) {
        ws__conn_finish(c, NULL, 1006, "connect failed", KSOCK_E_CONNREFUSED);
        return;
    }
    c->wsi = w;
}

static int map_client_error(struct lws *wsi, const char *msg)
{
    unsigned status = wsi ? lws_http_client_http_response(wsi) : 0;
    if (status == 401 || (msg && strstr(msg, "unauthorized"))) return KSOCK_E_AUTH;
    if (status == 403) return KSOCK_E_FORBIDDEN;
    if (msg == NULL) return KSOCK_E_CLOSED;
    if (strstr(msg, "refused") || strstr(msg, "connect failed")) return KSOCK_E_CONNREFUSED;
    if (strstr(msg, "timeout") || strstr(msg, "timed out")) return KSOCK_E_TIMEDOUT;
    if (strstr(msg, "DNS") || strstr(msg, "resolve") || strstr(msg, "getaddrinfo"))
        return KSOCK_E_RESOLVE;
    if (strstr(msg, "SSL") || strstr(msg, "tls") || strstr(msg, "TLS") || strstr(msg, "cert") ||
        strstr(msg, "CA "))
        return KSOCK_E_TLS;
    if (strstr(msg, "HS:")) return KSOCK_E_PROTO;
    return KSOCK_E_CONNREFUSED;
}

/* CLIENT_CONNECTION_ERROR: the connect failed; lws's text becomes the reason. */
void ws__client_error(ws_conn_t *c, struct lws *wsi, const char *msg)
{
    int err = map_client_error(wsi, msg);
    char why[200];
    snprintf(why, sizeof(why), "%s", msg ? msg : "connection failed");
    ws__conn_finish(c, wsi, 1006, why, err);
}

/* CLIENT_APPEND_HANDSHAKE_HEADER: the headers connect() was given. */
int ws__client_append_headers(ws_conn_t *c, struct lws *wsi, void *in, size_t len)
{
    unsigned char **p = (unsigned char **)in, *end = (*p) + len;
    for (size_t i = 0; i < c->cl->nheaders; i++) {
        char name[128];
        snprintf(name, sizeof(name), "%s:", c->cl->headers[i].name);
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                        (const unsigned char *)c->cl->headers[i].value,
                                        (int)strlen(c->cl->headers[i].value), p, end))
            return -1;
    }
    return 0;
}
