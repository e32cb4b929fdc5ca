/*
 * transport_ws: listener addresses, and the Host and Origin rules.
 *
 * Why the transport binds through its own checks: libwebsockets 4.1.6
 * takes a vhost's `iface` as an interface name first and an address
 * second, and by default opens an AF_INET6 socket; an IPv4 literal is then
 * written into the sockaddr_in6 at the IPv4 offset (sin6_flowinfo), so
 * "127.0.0.1" binds [::] with v6only off: every address of the machine.
 * A name that is neither an interface nor a literal ("localhost") makes it
 * log an error, put the vhost on a retry list and return success with no
 * socket at all; a bind that fails (EADDRNOTAVAIL) does the same. So the
 * transport resolves names itself, hands lws only numeric addresses with
 * the family pinned (LWS_SERVER_OPTION_DISABLE_IPV6 for IPv4, v6only for
 * IPv6), checks first that the exact bind works, and afterwards finds the
 * listening socket lws made (lws 4.1 has no accessor for it) to read the
 * address the kernel bound.
 */
#include "ws_internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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
    if (v == NULL) abort();
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

int ws__bind_probe(ws_addr_t *a, int port, int *bound_port, char *errstr, size_t errstr_size)
{
    char as[INET6_ADDRSTRLEN + 8];
    struct sockaddr *sa = (struct sockaddr *)&a->ss;
    addr_set_port(sa, port);
    ws__addr_str(sa, true, as, sizeof(as));
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        ksock_errstr_set(errstr, errstr_size, "cannot make a socket for %s: %s", as,
                         strerror(errno));
        return KSOCK_E_IO;
    }
    int one = 1;
    /* As lws sets them: SO_REUSEADDR, and v6only so "::1" is not also IPv4. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (sa->sa_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, sa, a->len) != 0) {
        int e = errno;
        close(fd);
        ksock_errstr_set(errstr, errstr_size, "cannot bind %s: %s", as, strerror(e));
        return KSOCK_E_IO;
    }
    struct sockaddr_storage got;
    socklen_t gl = sizeof(got);
    *bound_port = port;
    if (getsockname(fd, (struct sockaddr *)&got, &gl) == 0)
        *bound_port = ws__addr_port((struct sockaddr *)&got);
    close(fd);
    addr_set_port(sa, *bound_port);
    return 0;
}

/*
 * This process's listening TCP socket bound to exactly a (address and
 * port), or -1. Only one socket can listen on an exact address and port
 * (lws does not ask for SO_REUSEPORT with one service thread), so the one
 * found is the one lws just made.
 */
int ws__find_listen_fd(const ws_addr_t *a)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) return -1;
    const struct sockaddr *want = (const struct sockaddr *)&a->ss;
    int found = -1;
    struct dirent *de;
    while (found < 0 && (de = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)de->d_name[0])) continue;
        int fd = atoi(de->d_name);
        int acc = 0;
        socklen_t al = sizeof(acc);
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) != 0 || !acc) continue;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) continue;
        const struct sockaddr *got = (const struct sockaddr *)&ss;
        if (ws__addr_eq(got, want) && ws__addr_port(got) == ws__addr_port(want)) found = fd;
    }
    closedir(d);
    return found;
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
