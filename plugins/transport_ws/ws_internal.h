/* transport_ws internals shared between its files. Not installed. */
#ifndef KSOCK_TRANSPORT_WS_INTERNAL_H
#define KSOCK_TRANSPORT_WS_INTERNAL_H

#include <ksock/transport.h>

#include <stdbool.h>
#include <sys/socket.h>

/*
 * Check that the certificate chain and the key load, that the key belongs
 * to the leaf certificate and that no certificate is expired or not yet
 * valid; `ca_path` (may be NULL) must hold at least one certificate.
 * Returns 0 or KSOCK_E_TLS with a message naming the file and the reason.
 * `names` says what to call the three files in messages (NULL: the server
 * options tls_cert, tls_key, tls_ca).
 */
typedef struct {
    const char *cert, *key, *ca;
} ws_tls_names_t;

int ws__tls_check(const char *cert_path, const char *key_path, const char *ca_path,
                  const ws_tls_names_t *names, char *errstr, size_t errstr_size);

/* ---- ws_listen.c: listener addresses, Host and Origin ------------------ */

typedef struct {
    struct sockaddr_storage ss;
    socklen_t len;
} ws_addr_t;

/*
 * Resolve a listener address: an IPv4 or IPv6 literal, or a host name
 * (every IPv4 and IPv6 address it has, duplicates dropped). *out is
 * malloc'd, the caller frees it. KSOCK_E_RESOLVE with a message on failure.
 */
int ws__resolve(const char *address, ws_addr_t **out, size_t *n, char *errstr, size_t errstr_size);

/*
 * Bind a socket of our own to exactly a:port (v6only for IPv6) and close
 * it: tells why a bind fails (lws 4.1 would not), and picks the port when
 * port is 0. Sets the port into a and *bound_port.
 */
int ws__bind_probe(ws_addr_t *a, int port, int *bound_port, char *errstr, size_t errstr_size);

/* This process's listening TCP socket bound to exactly a (address and port); -1 if none. */
int ws__find_listen_fd(const ws_addr_t *a);

void ws__addr_str(const struct sockaddr *sa, bool with_port, char *out, size_t n);
bool ws__addr_is_any(const struct sockaddr *sa);
int ws__addr_port(const struct sockaddr *sa);
bool ws__addr_eq(const struct sockaddr *a, const struct sockaddr *b); /* address only */

/* What a Host header (or the host of an Origin) may name, for one connection. */
typedef struct {
    const char *address;    /* the listener's configured address (a name, say) */
    const ws_addr_t *addrs; /* the listener's addresses */
    size_t naddrs;
    const struct sockaddr *local; /* the address the connection came in on, or NULL */
    const ksock_strlist_t *hosts; /* the "hosts" option */
} ws_hostset_t;

/* Host header: localhost, the listener's address or name, a "hosts" entry; any port. */
bool ws__host_allowed(const ws_hostset_t *set, const char *hostport);

/*
 * Origin: absent; or listed in `origins` (exact, or "*"); or, when
 * `origins` is empty, an http(s) origin whose host passes the Host rule
 * ("hosts": "*" does not count here).
 */
bool ws__origin_allowed(const ws_hostset_t *set, const ksock_strlist_t *origins,
                        const char *origin);

/* A client-supplied string made safe for a log line: printable ASCII, cut at n - 4. */
void ws__printable(const char *s, char *out, size_t n);

#endif
