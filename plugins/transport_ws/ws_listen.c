/*
 * transport_ws: listener addresses, listening sockets, and the Host and
 * Origin rules.
 *
 * Why the transport binds and accepts itself: libwebsockets 4.1.6 takes a
 * vhost's `iface` as an interface name first and an address second, and
 * by default opens an AF_INET6 socket; an IPv4 literal is then written
 * into the sockaddr_in6 at the IPv4 offset (sin6_flowinfo), so
 * "127.0.0.1" binds [::] with v6only off: every address of the machine.
 * A name that is neither an interface nor a literal ("localhost") makes it
 * log an error, put the vhost on a retry list and return success with no
 * socket at all; a bind that fails (EADDRNOTAVAIL) does the same. And it
 * cannot close one vhost's listening socket without closing the vhost's
 * connections, which a reload that removes a listener must not do. So the
 * transport resolves names itself, binds exactly the addresses it
 * resolved (v6only for IPv6) with errors that say why, and watches each
 * listening socket as a raw descriptor in lws's loop; what it accepts goes
 * to the one server vhost with lws_adopt_descriptor_vhost(), as lws's own
 * listener would hand it on.
 */
#include "ws_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ECDHE key exchange, AEAD ciphers; the order is the server's preference. */
#define WS_TLS12_CIPHERS                                                                           \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#include <sys/socket.h>
#include <unistd.h>

/* ---- Addresses ---------------------------------------------------------- */

int ws__addr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
}

static void addr_set_port(struct sockaddr *sa, int port)
{
    if (sa->sa_family == AF_INET)
        ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
}

void ws__addr_str(const struct sockaddr *sa, bool with_port, char *out, size_t n)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof(ip));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof(ip));
    if (!with_port)
        snprintf(out, n, "%s", ip);
    else if (sa->sa_family == AF_INET6)
        snprintf(out, n, "[%s]:%d", ip, ws__addr_port(sa));
    else
        snprintf(out, n, "%s:%d", ip, ws__addr_port(sa));
}

bool ws__addr_is_any(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ((const struct sockaddr_in *)sa)->sin_addr.s_addr == htonl(INADDR_ANY);
    return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)sa)->sin6_addr);
}

bool ws__addr_eq(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a->sa_family != b->sa_family) return false;
    if (a->sa_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

int ws__resolve(const char *address, ws_addr_t **out, size_t *nout, char *errstr,
                size_t errstr_size)
{
    *out = NULL;
    *nout = 0;
    if (strchr(address, '%')) {
        ksock_errstr_set(errstr, errstr_size, "address \"%s\": zone indexes (%%) are not supported",
                         address);
        return KSOCK_E_CONFIG;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST;
    int rc = getaddrinfo(address, NULL, &hints, &res);
    if (rc == EAI_NONAME) {
        hints.ai_flags = 0; /* a host name: every address it has */
        rc = getaddrinfo(address, NULL, &hints, &res);
    }
    if (rc != 0) {
        ksock_errstr_set(errstr, errstr_size, "address \"%s\" does not resolve: %s", address,
                         gai_strerror(rc));
        return KSOCK_E_RESOLVE;
    }
    size_t n = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        n++;
    ws_addr_t *v = calloc(n ? n : 1, sizeof(*v));
    if (v == NULL) {
        freeaddrinfo(res);
        ksock_errstr_set(errstr, errstr_size, "out of memory");
        return KSOCK_E_NOMEM;
    }
    size_t k = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
        bool dup = false;
        for (size_t j = 0; j < k && !dup; j++)
            dup = ws__addr_eq((struct sockaddr *)&v[j].ss, ai->ai_addr);
        if (dup) continue;
        memcpy(&v[k].ss, ai->ai_addr, ai->ai_addrlen);
        v[k].len = (socklen_t)ai->ai_addrlen;
        k++;
    }
    freeaddrinfo(res);
    if (k == 0) {
        free(v);
        ksock_errstr_set(errstr, errstr_size, "address \"%s\" has no IPv4 or IPv6 address",
                         address);
        return KSOCK_E_RESOLVE;
    }
    *out = v;
    *nout = k;
    return 0;
}

/* ---- Host and Origin ---------------------------------------------------- */

/*
 * Split "host[:port]" or "[v6]:port" into the host part (brackets and one
 * trailing dot removed) in out; false if malformed.
 */
static bool host_part(const char *s, size_t len, char *out, size_t n)
{
    const char *h = s, *end = s + len;
    if (len && *s == '[') {
        const char *rb = memchr(s, ']', len);
        if (rb == NULL || (rb + 1 < end && rb[1] != ':')) return false;
        h = s + 1;
        end = rb;
    } else {
        const char *colon = memchr(s, ':', len);
        if (colon && memchr(colon + 1, ':', (size_t)(end - colon - 1)) == NULL) end = colon;
    }
    size_t hl = (size_t)(end - h);
    if (hl && h[hl - 1] == '.') hl--;
    if (hl == 0 || hl >= n) return false;
    memcpy(out, h, hl);
    out[hl] = '\0';
    return true;
}

static bool ip_allowed(const ws_hostset_t *set, const char *host)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1)
        ss.ss_family = AF_INET;
    else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1)
        ss.ss_family = AF_INET6;
    else
        return false;
    const struct sockaddr *sa = (const struct sockaddr *)&ss;
    if (ws__addr_is_any(sa)) return false;
    if (set->local && ws__addr_eq(sa, set->local)) return true;
    for (size_t i = 0; i < set->naddrs; i++)
        if (ws__addr_eq(sa, (const struct sockaddr *)&set->addrs[i].ss)) return true;
    return false;
}

static bool name_allowed(const ws_hostset_t *set, const char *host)
{
    if (strcasecmp(host, "localhost") == 0) return true;
    if (set->address && strcasecmp(host, set->address) == 0) return true;
    for (size_t i = 0; set->hosts && i < set->hosts->n; i++)
        if (strcasecmp(set->hosts->v[i], host) == 0) return true;
    return ip_allowed(set, host);
}

bool ws__host_allowed(const ws_hostset_t *set, const char *hostport)
{
    for (size_t i = 0; set->hosts && i < set->hosts->n; i++)
        if (strcmp(set->hosts->v[i], "*") == 0) return true;
    char host[256];
    if (hostport == NULL || !host_part(hostport, strlen(hostport), host, sizeof(host)))
        return false;
    return name_allowed(set, host);
}

bool ws__origin_allowed(const ws_hostset_t *set, const ksock_strlist_t *origins, const char *origin)
{
    if (origin == NULL) return true; /* not a browser */
    if (origins->n > 0) {
        for (size_t i = 0; i < origins->n; i++)
            if (strcmp(origins->v[i], "*") == 0 || strcasecmp(origins->v[i], origin) == 0)
                return true;
        return false;
    }
    /* The default: a page served from this listener's own host, http or https. */
    const char *rest;
    if (strncasecmp(origin, "http://", 7) == 0)
        rest = origin + 7;
    else if (strncasecmp(origin, "https://", 8) == 0)
        rest = origin + 8;
    else
        return false; /* "null" (file:, sandboxed frames) and other schemes */
    size_t len = strcspn(rest, "/?#");
    char host[256];
    if (!host_part(rest, len, host, sizeof(host))) return false;
    return name_allowed(set, host);
}

void ws__printable(const char *s, char *out, size_t n)
{
    size_t k = 0;
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    for (; *p && k + 4 < n; p++)
        out[k++] = (*p >= 0x20 && *p < 0x7f) ? (char)*p : '?';
    if (*p) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
}

/* ---- Listeners ---------------------------------------------------------- */

/*
 * A listener's address, resolved once, here: a literal is itself, a host
 * name every address it has. Each gets a socket of its own, so the same
 * address and port twice (in one listener or two) is refused.
 */
static int resolve_listener(const ws_listener_t *ls, ws_listener_t *l, char *errstr,
                            size_t errstr_size)
{
    ws_addr_t *v = NULL;
    size_t n = 0;
    char why[300];
    int rc = ws__resolve(l->address ? l->address : "0.0.0.0", &v, &n, why, sizeof(why));
    if (rc != 0) {
        ksock_errstr_set(errstr, errstr_size, "listeners[%zu]: %s", l->index, why);
        return rc == KSOCK_E_NOMEM ? rc : KSOCK_E_CONFIG;
    }
    l->socks = calloc(n, sizeof(*l->socks));
    if (l->socks == NULL) {
        free(v);
        ksock_errstr_set(errstr, errstr_size, "out of memory");
        return KSOCK_E_NOMEM;
    }
    for (size_t k = 0; k < n; k++) {
        l->socks[k].addr = v[k];
        l->socks[k].fd = -1;
    }
    l->nsocks = n;
    free(v);
    for (size_t j = 0; l->cfg_port != 0 && j < l->index; j++) {
        const ws_listener_t *o = &ls[j];
        for (size_t a = 0; o->cfg_port == l->cfg_port && a < o->nsocks; a++)
            for (size_t b = 0; b < l->nsocks; b++)
                if (ws__addr_eq((struct sockaddr *)&o->socks[a].addr.ss,
                                (struct sockaddr *)&l->socks[b].addr.ss)) {
                    char as[INET6_ADDRSTRLEN];
                    ws__addr_str((struct sockaddr *)&l->socks[b].addr.ss, false, as, sizeof(as));
                    ksock_errstr_set(errstr, errstr_size,
                                     "listeners[%zu]: %s port %d is already listeners[%zu]",
                                     l->index, as, l->cfg_port, j);
                    return KSOCK_E_CONFIG;
                }
    }
    return 0;
}

/* One {address, port, path} entry into l. */
static int parse_listener(const ksock_cfg_t *e, ws_listener_t *l, char *errstr, size_t errstr_size)
{
    size_t i = l->index;
    if (ksock_cfg_type(e) != KSOCK_CFG_OBJECT) {
        ksock_errstr_set(errstr, errstr_size,
                         "line %d: listeners[%zu]: expected an object {address, port, path}",
                         ksock_cfg_line(e), i);
        return KSOCK_E_CONFIG;
    }
    bool have_port = false;
    for (size_t k = 0; k < ksock_cfg_count(e); k++) {
        const char *key = NULL;
        const ksock_cfg_t *v = ksock_cfg_at(e, k, &key);
        char **str = NULL;
        if (strcmp(key, "address") == 0 && ksock_cfg_type(v) == KSOCK_CFG_STRING)
            str = &l->address;
        else if (strcmp(key, "path") == 0 && ksock_cfg_type(v) == KSOCK_CFG_STRING)
            str = &l->path;
        if (str) {
            free(*str);
            if ((*str = ws__strdup(ksock_cfg_string(v))) == NULL) {
                ksock_errstr_set(errstr, errstr_size, "out of memory");
                return KSOCK_E_NOMEM;
            }
        } else if (strcmp(key, "port") == 0 && ksock_cfg_type(v) == KSOCK_CFG_INT &&
                   ksock_cfg_int(v) >= 0 && ksock_cfg_int(v) <= 65535) {
            l->cfg_port = l->port = (int)ksock_cfg_int(v); /* 0 asks the kernel for a port */
            have_port = true;
        } else {
            ksock_errstr_set(errstr, errstr_size, "line %d: listeners[%zu]: key \"%s\": %s",
                             ksock_cfg_line(v), i, key,
                             strcmp(key, "address") && strcmp(key, "path") && strcmp(key, "port")
                                 ? "unknown key (expected address, port, path)"
                                 : "wrong type or out of range");
            return KSOCK_E_CONFIG;
        }
    }
    if (!have_port) {
        ksock_errstr_set(errstr, errstr_size, "line %d: listeners[%zu]: \"port\" is required",
                         ksock_cfg_line(e), i);
        return KSOCK_E_CONFIG;
    }
    if (l->path && (strcmp(l->path, "/") == 0 || *l->path == '\0')) {
        free(l->path);
        l->path = NULL;
    }
    return 0;
}

int ws__listeners_parse(const ksock_cfg_t *arr, ws_listener_t **out, size_t *nout, char *errstr,
                        size_t errstr_size)
{
    size_t n = arr ? ksock_cfg_count(arr) : 0;
    ws_listener_t *ls = calloc(n ? n : 1, sizeof(*ls));
    *out = NULL;
    *nout = 0;
    if (ls == NULL) {
        ksock_errstr_set(errstr, errstr_size, "out of memory");
        return KSOCK_E_NOMEM;
    }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        ls[i].index = i;
        rc = parse_listener(ksock_cfg_at(arr, i, NULL), &ls[i], errstr, errstr_size);
        if (rc == 0) rc = resolve_listener(ls, &ls[i], errstr, errstr_size);
    }
    if (rc != 0) {
        ws__listeners_free(ls, n);
        return rc;
    }
    *out = ls;
    *nout = n;
    return 0;
}

void ws__listeners_free(ws_listener_t *ls, size_t n)
{
    for (size_t i = 0; ls && i < n; i++) {
        for (size_t k = 0; k < ls[i].nsocks; k++)
            if (ls[i].socks[k].wsi == NULL && ls[i].socks[k].fd >= 0) close(ls[i].socks[k].fd);
        free(ls[i].address);
        free(ls[i].path);
        free(ls[i].socks);
    }
    free(ls);
}

/* "listeners[0] (\"localhost\" port 8080)": how messages name a listener. */
static void listener_name(const ws_listener_t *l, char *out, size_t n)
{
    snprintf(out, n, "listeners[%zu] (\"%s\" port %d)", l->index,
             l->address ? l->address : "0.0.0.0", l->cfg_port);
}

int ws__sock_open(ws_listener_t *l, ws_sock_t *sk, int *sys_errno, char *errstr, size_t errstr_size)
{
    char lname[320], as[INET6_ADDRSTRLEN + 8];
    struct sockaddr *sa = (struct sockaddr *)&sk->addr.ss;
    addr_set_port(sa, l->port);
    ws__addr_str(sa, true, as, sizeof(as));
    listener_name(l, lname, sizeof(lname));
    const char *step = "make a socket for";
    int one = 1;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        /* SO_REUSEADDR: a restart binds despite TIME_WAIT; v6only: "::1" is not also IPv4. */
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (sa->sa_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        step = "bind";
        if (bind(fd, sa, sk->addr.len) == 0) {
            step = "listen on";
            if (listen(fd, SOMAXCONN) == 0) step = NULL;
        }
    }
    if (step != NULL) {
        *sys_errno = errno;
        if (fd >= 0) close(fd);
        ksock_errstr_set(errstr, errstr_size, "%s: cannot %s %s: %s", lname, step, as,
                         strerror(*sys_errno));
        return KSOCK_E_IO;
    }
    struct sockaddr_storage got;
    socklen_t gl = sizeof(got);
    if (getsockname(fd, (struct sockaddr *)&got, &gl) == 0) memcpy(&sk->addr.ss, &got, gl);
    /* Port 0: every address of the listener gets the port the kernel gave the first one. */
    l->port = ws__addr_port(sa);
    sk->fd = fd;
    return 0;
}

int ws__sock_adopt(ws_inst_t *inst, ws_sock_t *sk)
{
    struct lws_vhost *vh = NULL;
    int rc = ws__client_vhost(inst, NULL, NULL, NULL, &vh); /* made at create: found */
    if (rc != 0) return rc;
    lws_sock_file_fd_type d;
    d.filefd = sk->fd;
    sk->wsi = lws_adopt_descriptor_vhost(vh, LWS_ADOPT_RAW_FILE_DESC, d, WS_ACCEPT_PROTOCOL, NULL);
    return sk->wsi ? 0 : KSOCK_E_NOMEM;
}

void ws__sock_close(ws_sock_t *sk)
{
    struct lws *wsi = sk->wsi;
    int fd = sk->fd;
    sk->wsi = NULL;
    sk->fd = -1;
    if (wsi)
        lws_set_timeout(wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_SYNC); /* closes fd */
    else if (fd >= 0)
        close(fd);
}

/*
 * The one server vhost: every listener's connections, whatever socket
 * they came in on (listener_of() in ws_server.c tells the listener by the
 * connection's local address). It listens on nothing itself: lws 4.1 binds
 * an IPv4 literal as [::] with v6only off and cannot close one vhost's
 * listening socket while keeping its connections, which a reload that
 * removes a listener needs; so the transport owns the sockets.
 */
int ws__server_vhost(ws_inst_t *inst, char *errstr, size_t errstr_size)
{
    if (inst->server_vh) return 0;
    const ws_opts_t *o = inst->o;
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.vhost_name = "ksock-server";
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
    info.protocols = inst->server_protocols;
    info.user = inst;
    /* UTF-8 is checked by ws__conn_receive. */
    if (o->tls_cert) info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.timeout_secs = (unsigned)((o->handshake_timeout + 999) / 1000);
    info.timeout_secs_ah_idle = info.timeout_secs;
    info.keepalive_timeout = (int)info.timeout_secs;
    info.retry_and_idle_policy = &inst->retry;
    if (o->permessage_deflate) info.extensions = ws__extensions;
    if (o->tls_cert) {
        info.ssl_cert_filepath = o->tls_cert;
        info.ssl_private_key_filepath = o->tls_key;
        info.ssl_ca_filepath = o->tls_ca;
        /* TLS 1.2 and 1.3 only. */
        info.ssl_options_set =
            SSL_OP_NO_SSLv2 | SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1;
        /*
         * TLS 1.2 suites: OpenSSL's default list also accepts CBC with
         * SHA-1 MACs and plain RSA key exchange (no forward secrecy), both
         * refused by current guidance (Mozilla "intermediate"); keep ECDHE
         * with AEAD only. TLS 1.3 suites are all AEAD: the default stays.
         */
        info.ssl_cipher_list = WS_TLS12_CIPHERS;
        if (o->tls_client_cert >= 1)
            info.options |= LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT;
        if (o->tls_client_cert == 1) info.options |= LWS_SERVER_OPTION_PEER_CERT_NOT_REQUIRED;
    }
    inst->server_vh = lws_create_vhost(inst->ctx, &info);
    if (inst->server_vh == NULL) {
        ksock_errstr_set(errstr, errstr_size, "cannot create the server vhost%s",
                         o->tls_cert ? " (the TLS setup failed)" : "");
        return o->tls_cert ? KSOCK_E_TLS : KSOCK_E_IO;
    }
    return 0;
}

int ws__listeners_start(ws_inst_t *inst, char *errstr, size_t errstr_size)
{
    int rc = ws__server_vhost(inst, errstr, errstr_size), err = 0;
    for (size_t i = 0; i < inst->nlisteners && rc == 0; i++) {
        ws_listener_t *l = &inst->listeners[i];
        for (size_t k = 0; k < l->nsocks && rc == 0; k++) {
            rc = ws__sock_open(l, &l->socks[k], &err, errstr, errstr_size);
            if (rc == 0 && (rc = ws__sock_adopt(inst, &l->socks[k])) != 0)
                ksock_errstr_set(errstr, errstr_size, "out of memory");
        }
    }
    for (size_t i = 0; i < inst->nlisteners && rc != 0; i++)
        for (size_t k = 0; k < inst->listeners[i].nsocks; k++)
            ws__sock_close(&inst->listeners[i].socks[k]);
    return rc;
}

#define WS_ACCEPT_PAUSE_MS 250

/* lws thread, a timer: accept again on every listening socket. */
static void accept_resume(lws_sorted_usec_list_t *sul)
{
    ws_inst_t *inst = lws_container_of(sul, ws_inst_t, accept_sul);
    for (size_t i = 0; i < inst->nlisteners; i++)
        for (size_t k = 0; k < inst->listeners[i].nsocks; k++)
            if (inst->listeners[i].socks[k].wsi)
                lws_rx_flow_control(inst->listeners[i].socks[k].wsi, 1);
}

/*
 * accept() failed for want of a descriptor or of memory (EMFILE, ENFILE,
 * ENOBUFS, ENOMEM). The connection waits in the kernel's backlog and its
 * socket stays readable, so another try would come at once and fail the
 * same way: the lws thread would spin. Stop reading every listening
 * socket for WS_ACCEPT_PAUSE_MS instead (what is already connected goes
 * on), and say why, at most every 10 s.
 */
static void accept_pause(ws_inst_t *inst, int err)
{
    /* Every socket, also one set_listeners added during a pause; the timer moves on. */
    for (size_t i = 0; i < inst->nlisteners; i++)
        for (size_t k = 0; k < inst->listeners[i].nsocks; k++)
            if (inst->listeners[i].socks[k].wsi)
                lws_rx_flow_control(inst->listeners[i].socks[k].wsi, 0);
    lws_sul_schedule(inst->ctx, 0, &inst->accept_sul, accept_resume,
                     (lws_usec_t)WS_ACCEPT_PAUSE_MS * LWS_US_PER_MS);
    uint64_t now = ksock_now_ns();
    if (inst->accept_warned_ns && now - inst->accept_warned_ns < 10000000000ull) return;
    inst->accept_warned_ns = now;
    ksock_log(inst->rt, KSOCK_LOG_WARN, inst->component,
              (ksock_kv_t[]){KSOCK_KV_I64("pause_ms", WS_ACCEPT_PAUSE_MS)}, 1,
              "cannot accept connections: %s; not accepting for %d ms at a time until it "
              "clears (raise the descriptor limit: ulimit -n, LimitNOFILE=)",
              strerror(err), WS_ACCEPT_PAUSE_MS);
}

/*
 * The accept wsi's callback (a raw descriptor: LWS_CALLBACK_RAW_RX_FILE
 * when its socket is readable). Each accepted socket is set up as lws's
 * own listener would (no Nagle, non-blocking, close-on-exec) and adopted
 * by the server vhost as an HTTP connection (TLS first on a wss listener);
 * a refused adoption closed it already. At most 64 per call, so a flood
 * on one listener does not hold the thread from the connections.
 */
int ws__accept_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len)
{
    (void)user;
    (void)in;
    (void)len;
    if (reason != LWS_CALLBACK_RAW_RX_FILE) return 0;
    ws_inst_t *inst = lws_context_user(lws_get_context(wsi));
    int lfd = lws_get_socket_fd(wsi), one = 1;
    for (int i = 0; i < 64 && inst->server_vh; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                accept_pause(inst, errno);
            break; /* EAGAIN: none left */
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        lws_sock_file_fd_type d;
        d.sockfd = fd;
        int type =
            LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP | (inst->o->tls_cert ? LWS_ADOPT_ALLOW_SSL : 0);
        lws_adopt_descriptor_vhost(inst->server_vh, (lws_adoption_type)type, d, NULL, NULL);
    }
    return 0;
}

void ws__sock_log(ws_inst_t *inst, const ws_listener_t *l, const ws_sock_t *sk, const char *what)
{
    char hp[INET6_ADDRSTRLEN + 10], ip[INET6_ADDRSTRLEN];
    const struct sockaddr *sa = (const struct sockaddr *)&sk->addr.ss;
    ws__addr_str(sa, true, hp, sizeof(hp));
    ws__addr_str(sa, false, ip, sizeof(ip));
    ksock_kv_t kv[] = {KSOCK_KV_STR("address", ip), KSOCK_KV_I64("port", ws__addr_port(sa)),
                       KSOCK_KV_STR("path", l->path ? l->path : "/"),
                       KSOCK_KV_BOOL("tls", inst->o->tls_cert != NULL),
                       KSOCK_KV_STR("configured", l->address ? l->address : "0.0.0.0")};
    ksock_log(inst->rt, KSOCK_LOG_INFO, inst->component, kv, 5, "%s %s://%s%s", what,
              inst->o->tls_cert ? "wss" : "ws", hp, l->path ? l->path : "/");
}

void ws__listener_log(ws_inst_t *inst, const ws_listener_t *l, const char *what)
{
    for (size_t k = 0; k < l->nsocks; k++)
        ws__sock_log(inst, l, &l->socks[k], what);
}
