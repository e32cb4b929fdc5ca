/*
 * auth_jwt internals shared by the plugin's files (jwt.c lists them). Not
 * installed; everything not declared here is file-static. The prefix is
 * the plugin's own, jwt_; libjwt uses it too, so a new name is checked
 * against <jwt.h> and libjwt's exports (nm -D) before it is added.
 */
#ifndef KSOCK_AUTH_JWT_INTERNAL_H
#define KSOCK_AUTH_JWT_INTERNAL_H

#include <ksock/auth.h>
#include <ksock/config.h>
#include <ksock/value.h>

#include <gnutls/gnutls.h>
#include <jwt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Nesting allowed in a token's header or claims: a token is at most 64 KiB. */
#define JWT_JSON_MAX_DEPTH 32

/* ---- Algorithms (jwt_signature.c) ------------------------------------------ */

typedef struct jwt_alg_info_s {
    const char *name;
    jwt_alg_t jalg;
    char family; /* 'H' HMAC, 'R' RSA PKCS#1 v1.5, 'E' ECDSA */
    gnutls_digest_algorithm_t dig;
    gnutls_ecc_curve_t curve;
    size_t size; /* H: hash bytes (minimum key, signature size); E: bytes of R and of S */
} jwt_alg_info_t;

/* The supported algorithms, and their names (NULL-terminated) in the same order. */
extern const jwt_alg_info_t jwt_algs[];
extern const char *const jwt_alg_names[];

/* ---- Options and the instance (jwt.c) --------------------------------------- */

typedef struct jwt_opts_s {
    int algorithm;
    char *secret;
    char *secret_file;
    char *secret_env;
    char *public_key;
    char *private_key;
    char *issuer;
    char *audience;
    int64_t leeway;
    bool require_exp;
    int64_t max_ttl;
    int64_t default_ttl;
    ksock_strlist_t token_sources;
    char *permissions_claim;
    int64_t max_token_size;
    char *jwks_url;
    char *jwks_ca_file;
    int64_t jwks_refresh;
    int64_t jwks_min_refresh;
    int64_t jwks_timeout;
} jwt_opts_t;

typedef struct jwt_jwks_s jwt_jwks_t;

typedef enum { JWT_SRC_HEADER, JWT_SRC_QUERY, JWT_SRC_XTOKEN } jwt_src_t;

typedef struct jwt_auth_s {
    const jwt_opts_t *o; /* borrowed: valid until destroy returns */
    const jwt_alg_info_t *alg;
    jwt_jwks_t *jwks;    /* the keys of jwks_url; NULL: the fixed key below */
    unsigned char *vkey; /* verifies: the secret, or the public key PEM */
    size_t vkey_len;
    unsigned char *skey; /* signs: the secret again, or the private key PEM; NULL: cannot */
    size_t skey_len;
    size_t sig_len; /* the exact signature size for this key */
    jwt_src_t sources[3];
    size_t nsources;
} jwt_auth_t;

static inline bool jwt_is_string(const ksock_value_t *v)
{
    return v != NULL && ksock_value_type(v) == KSOCK_VALUE_STRING;
}

/* ---- Keys and signatures (jwt_signature.c) ---------------------------------- */

/*
 * Read and check the secret (HS*) or the key files (RS* and ES*) the options of
 * `a` name for a->alg, and set a->vkey, skey and sig_len. 0, or
 * KSOCK_E_CONFIG with the reason, or KSOCK_E_NOMEM. What was loaded is a's
 * own also on failure: jwt_keys_free() releases it. Runs in create() only.
 */
int jwt_keys_load(jwt_auth_t *a, char *errstr, size_t errstr_size);

/* Zero and free the key material of `a` (not `a` itself). */
void jwt_keys_free(jwt_auth_t *a);

/* A key that verifies: what libjwt is given, and the exact signature size it makes. */
typedef struct jwt_vkey_s {
    const unsigned char *key;
    size_t key_len;
    size_t sig_len;
} jwt_vkey_t;

/* 0 when libjwt accepts the signature of tok[0..len) for `key` and a's algorithm; else a refusal.
 */
int jwt_verify_signature(const jwt_auth_t *a, const jwt_vkey_t *key, const char *tok, size_t len,
                         char *errstr, size_t errstr_size);

/* Sign `claims_json` with the pinned algorithm. *token malloc'ed, the caller's. */
int jwt_sign_claims(const jwt_auth_t *a, const char *claims_json, char **token, char *errstr,
                    size_t errstr_size);

/* ---- Keys from a JWKS URL (jwt_jwks.c) --------------------------------------- */

/* A parsed key set: immutable, shared by reference count. */
typedef struct jwt_keyset_s jwt_keyset_t;

/*
 * Check the jwks_* options of `o` (borrowed until destroy), fetch the key set
 * once (blocking, at most jwks_timeout; a failure is logged and only delays
 * the keys) and start the refresh thread. 0 and *out, KSOCK_E_CONFIG with
 * the reason, or KSOCK_E_NOMEM / KSOCK_E_INTERNAL. Runs in create() only.
 */
int jwt_jwks_new(const ksock_plugin_ctx_t *ctx, const jwt_opts_t *o, const jwt_alg_info_t *alg,
                 jwt_jwks_t **out, char *errstr, size_t errstr_size);

/* Stop and join the refresh thread (a fetch under way is cut short), free everything. */
void jwt_jwks_destroy(jwt_jwks_t *j);

/*
 * The key whose kid is the token header's `kid` (borrowed): 0, *key and *set
 * (a reference that keeps *key alive; jwt_keyset_release() it), or a refusal.
 * An unknown kid asks for a refresh (at most once per jwks_min_refresh) and
 * is refused without waiting. Thread-safe; never does I/O.
 */
int jwt_jwks_find(jwt_jwks_t *j, const ksock_value_t *kid, jwt_keyset_t **set, jwt_vkey_t *key,
                  char *errstr, size_t errstr_size);

/* Drop one reference; NULL is fine. Thread-safe. */
void jwt_keyset_release(jwt_keyset_t *s);

/* ---- The token (jwt_token.c) ------------------------------------------------ */

/* Every refusal of a token is KSOCK_E_AUTH with its reason ("jwt: " prefixed). */
int jwt_refuse(char *errstr, size_t errstr_size, const char *fmt, ...) KSOCK_PRINTF(3, 4);

/* A string from a token, fit for a log line: short and printable, or a placeholder. */
const char *jwt_printable(const ksock_value_t *v, char *buf, size_t size);

/* The whole check; *claims (one reference, the caller's) on success. Thread-safe. */
int jwt_check_token(const jwt_auth_t *a, const char *tok, size_t len, ksock_value_t **claims,
                    char *errstr, size_t errstr_size);

/*
 * The first configured source present in the handshake gives the token.
 * 0 and *out (malloc'ed, the caller's), or a refusal.
 */
int jwt_find_token(const jwt_auth_t *a, const ksock_handshake_t *hs, char **out, char *errstr,
                   size_t errstr_size);

/* ---- Claims (jwt_claims.c) -------------------------------------------------- */

/* A NumericDate claim: absent (0, *present false), a finite number, or a refusal. */
int jwt_date_claim(const ksock_value_t *claims, const char *name, bool *present, double *out,
                   char *errstr, size_t errstr_size);

/* exp, nbf, iat, max_ttl, iss, aud, sub and the permissions claim. 0 or a refusal. */
int jwt_check_claims(const jwt_auth_t *a, const ksock_value_t *claims, char *errstr,
                     size_t errstr_size);

/*
 * The claims of a token to issue for the user details `user` (borrowed;
 * NULL is refused), as compact JSON: 0 and *json (malloc'ed, the caller's
 * also on failure), KSOCK_E_INVAL with the reason when the details are
 * refused, or KSOCK_E_NOMEM.
 */
int jwt_claims_json(const jwt_auth_t *a, const ksock_value_t *user, char **json, char *errstr,
                    size_t errstr_size);

/* ---- Permissions (jwt_perms.c) ---------------------------------------------- */

/* The permissions claim: absent (no permissions), or {"subscribe": [...], "publish": [...]}. */
int jwt_check_perms(const jwt_auth_t *a, const ksock_value_t *claims, ksock_principal_t *p,
                    char *errstr, size_t errstr_size);

/*
 * The permissions claim of a token to issue, from the user details'
 * "subscribe" and "publish" lists (borrowed). 0 and *out (a new map, the
 * caller's; NULL when the details give neither list), or KSOCK_E_INVAL
 * with the reason, or KSOCK_E_NOMEM.
 */
int jwt_perms_from_user(const ksock_value_t *user, ksock_value_t **out, char *errstr,
                        size_t errstr_size);

/* ---- JSON and base64url (jwt_json.c) ---------------------------------------- */

/*
 * Parse one JSON text (no comments, no trailing garbage, strict UTF-8,
 * duplicate keys refused) into a value. 0 and *out (one reference owned by
 * the caller), or KSOCK_E_DECODE with the reason in errstr. Thread-safe.
 */
int jwt_json_parse(const void *text, size_t len, ksock_value_t **out, char *errstr,
                   size_t errstr_size);

/*
 * Write `v` as compact JSON. 0 and *out (malloc'ed, NUL-terminated, owned by
 * the caller), or KSOCK_E_ENCODE (bytes, NaN/infinity) / KSOCK_E_NOMEM.
 */
int jwt_json_write(const ksock_value_t *v, char **out, char *errstr, size_t errstr_size);

/*
 * Strict base64url without padding (RFC 7515 §2): only [A-Za-z0-9_-], no
 * length of 1 mod 4, unused trailing bits zero. 0 and *out, *out_len
 * (malloc'ed, NUL-terminated for convenience), or KSOCK_E_DECODE.
 */
int jwt_b64url_decode(const char *s, size_t n, unsigned char **out, size_t *out_len);

/* Encode without padding; malloc'ed NUL-terminated string or NULL. */
char *jwt_b64url_encode(const unsigned char *p, size_t n);

#endif
