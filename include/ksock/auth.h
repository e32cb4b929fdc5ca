/*
 * Authenticator interface (spec V tokens). A handshake goes in; a principal
 * with per-topic permissions, or a refusal, comes out. The same plugin
 * generates and validates tokens (auth_jwt: JWT, algorithm pinned, every
 * claim checked by us because libjwt 1.10 checks none).
 *
 * authenticate() may be called from a transport's I/O thread while the
 * upgrade is pending, so it must be thread-safe and must not block on I/O.
 */
#ifndef KSOCK_AUTH_H
#define KSOCK_AUTH_H

#include <ksock/plugin.h>
#include <ksock/value.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ksock_kvpair_s {
    const char *name;
    const char *value;
} ksock_kvpair_t;

/* What a client presented when it connected. Borrowed for the call. */
typedef struct ksock_handshake_s {
    size_t size;                   /* sizeof(ksock_handshake_t) */
    const char *path;              /* "/ws" */
    const char *query;             /* raw query string without '?', may be NULL */
    const ksock_kvpair_t *headers; /* request headers, names lower-case */
    size_t nheaders;
    const char *peer_addr;       /* "127.0.0.1:53412" */
    const char *subprotocol;     /* the one selected, e.g. "ksock.v1.json" */
    const char *origin;          /* Origin header, may be NULL */
    const void *client_cert_der; /* TLS client certificate, may be NULL */
    size_t client_cert_len;
} ksock_handshake_t;

/* Look up a request header by name (case-insensitive); NULL if absent. The query is hs->query. */
KSOCK_EXTERN const char *ksock_handshake_header(const ksock_handshake_t *hs, const char *name);

#define KSOCK_PERM_SUBSCRIBE 0x1u
#define KSOCK_PERM_PUBLISH   0x2u

typedef struct ksock_topic_perm_s {
    char *pattern;   /* exact topic, "prefix.*" or "*" */
    unsigned rights; /* KSOCK_PERM_* */
} ksock_topic_perm_t;

/*
 * Who the client is. Allocated by the authenticator with
 * ksock_principal_new() and owned by the core once returned; freed with
 * ksock_principal_free().
 */
typedef struct ksock_principal_s {
    size_t size;
    char *subject; /* "sub" claim or equivalent */
    ksock_topic_perm_t *perms;
    size_t nperms;
    int64_t expires_at_ms; /* 0: no expiry */
    ksock_value_t *claims; /* all claims, may be NULL; one reference owned */
} ksock_principal_t;

/* A principal with no permissions (copies `subject`; NULL means ""). NULL when out of memory. */
KSOCK_EXTERN ksock_principal_t *ksock_principal_new(const char *subject);
/* Add a permission (copies the pattern). 0 or KSOCK_E_NOMEM. */
KSOCK_EXTERN int ksock_principal_allow(ksock_principal_t *p, const char *pattern, unsigned rights);
/* True when the principal holds `right` on `topic`. */
KSOCK_EXTERN bool ksock_principal_can(const ksock_principal_t *p, const char *topic,
                                      unsigned right);
KSOCK_EXTERN void ksock_principal_free(ksock_principal_t *p);

typedef struct ksock_auth_vtable_s {
    KSOCK_VTABLE_HEAD;
    /*
     * Decide on a handshake. 0 and *out (owned by the caller) to accept;
     * KSOCK_E_AUTH (HTTP 401: no or bad credentials) or KSOCK_E_FORBIDDEN
     * (HTTP 403) with `errstr` to refuse. Thread-safe.
     */
    int (*authenticate)(void *inst, const ksock_handshake_t *hs, ksock_principal_t **out,
                        char *errstr, size_t errstr_size);
    /*
     * Make a token for `user` (a map value: subject, roles, topic
     * permissions, ttl...). *token is malloc'ed and owned by the caller.
     * May be NULL for authenticators that cannot issue tokens.
     */
    int (*generate_token)(void *inst, const ksock_value_t *user, char **token, char *errstr,
                          size_t errstr_size);
    /*
     * Check a token; on success *user receives the decoded user details
     * (one reference owned by the caller). KSOCK_E_AUTH when invalid,
     * with the reason ("expired", "bad signature", "alg none refused").
     */
    int (*validate_token)(void *inst, const char *token, ksock_value_t **user, char *errstr,
                          size_t errstr_size);
} ksock_auth_vtable_t;

#ifdef __cplusplus
}
#endif
#endif
