/*
 * auth_jwt: a token from a handshake, its three parts, and the order in
 * which they are checked (jwt.c's opening comment).
 */
#include "jwt_internal.h"

#include <ksock/auth.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- Checking a token ------------------------------------------------------ */

/* Every refusal of a token is KSOCK_E_AUTH with its reason. */
int jwt_refuse(char *errstr, size_t errstr_size, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ksock_errstr_set(errstr, errstr_size, "jwt: %s", msg);
    return KSOCK_E_AUTH;
}

/* A string from a token, fit for a log line: short and printable, or a placeholder. */
const char *jwt_printable(const ksock_value_t *v, char *buf, size_t size)
{
    size_t n;
    const char *s = ksock_value_get_string(v, &n);
    if (s == NULL) return "(not a string)";
    if (n >= size) n = size - 1;
    for (size_t i = 0; i < n; i++)
        buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    buf[n] = '\0';
    return buf;
}

/* Decode and parse one part; it must be a JSON object. */
static int parse_part(const char *what, const char *s, size_t n, ksock_value_t **out, char *errstr,
                      size_t errstr_size)
{
    unsigned char *raw;
    size_t raw_len;
    if (n == 0) return jwt_refuse(errstr, errstr_size, "malformed: the %s is empty", what);
    int rc = jwt_b64url_decode(s, n, &raw, &raw_len);
    if (rc == KSOCK_E_NOMEM) return rc;
    if (rc != 0) return jwt_refuse(errstr, errstr_size, "malformed: the %s is not base64url", what);
    char why[160];
    rc = jwt_json_parse(raw, raw_len, out, why, sizeof(why));
    free(raw);
    if (rc != 0)
        return jwt_refuse(errstr, errstr_size, "malformed: the %s is not JSON (%s)", what, why);
    if (ksock_value_type(*out) != KSOCK_VALUE_MAP) {
        ksock_value_unref(*out);
        *out = NULL;
        return jwt_refuse(errstr, errstr_size, "malformed: the %s is not a JSON object", what);
    }
    return 0;
}

static int check_header(const jwt_auth_t *a, const ksock_value_t *h, char *errstr,
                        size_t errstr_size)
{
    char buf[24];
    const ksock_value_t *alg = ksock_value_map_get(h, "alg");
    if (!jwt_is_string(alg)) return jwt_refuse(errstr, errstr_size, "the header has no alg");
    const char *name = ksock_value_get_string(alg, NULL);
    if (strcasecmp(name, "none") == 0)
        return jwt_refuse(errstr, errstr_size,
                          "alg none refused: unsigned tokens are never accepted");
    if (strcmp(name, a->alg->name) != 0)
        return jwt_refuse(errstr, errstr_size, "alg %s refused: this authenticator is pinned to %s",
                          jwt_printable(alg, buf, sizeof(buf)), a->alg->name);
    const ksock_value_t *typ = ksock_value_map_get(h, "typ");
    if (typ && (!jwt_is_string(typ) || strcasecmp(ksock_value_get_string(typ, NULL), "JWT") != 0))
        return jwt_refuse(errstr, errstr_size, "typ %s refused: JWT expected",
                          jwt_printable(typ, buf, sizeof(buf)));
    if (ksock_value_map_get(h, "crit"))
        return jwt_refuse(errstr, errstr_size,
                          "crit header refused: no JWS extension is understood");
    return 0;
}

/* Everything after the header: the signature's size and libjwt's verdict, then the claims. */
static int check_signed(const jwt_auth_t *a, const jwt_vkey_t *key, const char *tok, size_t len,
                        ksock_value_t **claims, char *errstr, size_t errstr_size)
{
    const char *d1 = memchr(tok, '.', len), *d2 = memrchr(tok, '.', len), *end = tok + len;
    size_t sig_n = (size_t)(end - (d2 + 1));
    if (sig_n == 0) return jwt_refuse(errstr, errstr_size, "the token has no signature");
    unsigned char *sig;
    size_t sig_len;
    int rc = jwt_b64url_decode(d2 + 1, sig_n, &sig, &sig_len);
    if (rc == KSOCK_E_NOMEM) return rc;
    if (rc != 0)
        return jwt_refuse(errstr, errstr_size, "malformed: the signature is not base64url");
    free(sig);
    if (sig_len != key->sig_len)
        return jwt_refuse(errstr, errstr_size,
                          "bad signature (%zu bytes, %s with this key makes %zu)", sig_len,
                          a->alg->name, key->sig_len);

    ksock_value_t *c = NULL;
    rc = parse_part("claims part", d1 + 1, (size_t)(d2 - d1 - 1), &c, errstr, errstr_size);
    if (rc == 0) rc = jwt_verify_signature(a, key, tok, len, errstr, errstr_size);
    if (rc == 0) rc = jwt_check_claims(a, c, errstr, errstr_size);
    if (rc != 0) {
        if (c) ksock_value_unref(c);
        return rc;
    }
    *claims = c;
    return 0;
}

/* The whole check; *claims (one reference, the caller's) on success. Thread-safe. */
int jwt_check_token(const jwt_auth_t *a, const char *tok, size_t len, ksock_value_t **claims,
                    char *errstr, size_t errstr_size)
{
    *claims = NULL;
    if (len == 0) return jwt_refuse(errstr, errstr_size, "empty token");
    if (len > (size_t)a->o->max_token_size)
        return jwt_refuse(errstr, errstr_size,
                          "token of %zu bytes is longer than max_token_size (%lld)", len,
                          (long long)a->o->max_token_size);
    const char *d1 = memchr(tok, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) : NULL;
    if (d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)))
        return jwt_refuse(errstr, errstr_size,
                          "malformed: a JWT is three base64url parts separated by two dots");
    ksock_value_t *h = NULL;
    int rc = parse_part("header", tok, (size_t)(d1 - tok), &h, errstr, errstr_size);
    if (rc != 0) return rc;
    rc = check_header(a, h, errstr, errstr_size);
    /*
     * The key: the fixed one, or the JWKS key named by kid. jku, x5u, x5c and
     * jwk in the header are never read: keys come only from the configuration.
     */
    jwt_vkey_t key = {a->vkey, a->vkey_len, a->sig_len};
    jwt_keyset_t *set = NULL;
    if (rc == 0 && a->jwks)
        rc = jwt_jwks_find(a->jwks, ksock_value_map_get(h, "kid"), &set, &key, errstr, errstr_size);
    ksock_value_unref(h);
    if (rc == 0) rc = check_signed(a, &key, tok, len, claims, errstr, errstr_size);
    jwt_keyset_release(set);
    return rc;
}

/* ---- Finding the token in a handshake ------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decode (and '+' as space) into `out` (room for n + 1). -1 on a bad escape or NUL. */
static ssize_t pct_decode(const char *s, size_t n, char *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            if (i + 2 >= n) return -1;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return -1;
            out[k++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[k++] = s[i] == '+' ? ' ' : s[i];
        }
    }
    out[k] = '\0';
    return (ssize_t)k;
}

/*
 * The "token" query parameter: 1 and *out (malloc'ed) when found, 0 when
 * absent, or a refusal (a bad escape, given twice, far too long).
 */
static int query_token(const jwt_auth_t *a, const char *q, char **out, char *errstr,
                       size_t errstr_size)
{
    *out = NULL;
    while (q && *q) {
        size_t seg = strcspn(q, "&");
        const char *eq = memchr(q, '=', seg);
        size_t klen = eq ? (size_t)(eq - q) : seg;
        char key[8];
        ssize_t kn = klen < sizeof(key) - 2 ? pct_decode(q, klen, key) : -1;
        if (kn >= 0 && strcmp(key, "token") == 0) {
            const char *v = eq ? eq + 1 : q + seg;
            size_t vlen = (size_t)(q + seg - v);
            if (*out) {
                free(*out);
                *out = NULL;
                return jwt_refuse(errstr, errstr_size, "the token query parameter is given twice");
            }
            /* Even fully percent-encoded, a token within bounds is at most three times its size. */
            if (vlen > 3 * (size_t)a->o->max_token_size)
                return jwt_refuse(errstr, errstr_size,
                                  "token of more than %lld bytes in the query is longer than "
                                  "max_token_size",
                                  (long long)a->o->max_token_size);
            *out = malloc(vlen + 1);
            if (*out == NULL) return KSOCK_E_NOMEM;
            if (pct_decode(v, vlen, *out) < 0) {
                free(*out);
                *out = NULL;
                return jwt_refuse(errstr, errstr_size,
                                  "malformed percent-encoding in the token query parameter");
            }
        }
        q += seg;
        if (*q == '&') q++;
    }
    return *out ? 1 : 0;
}

static const char *trim(const char *s, size_t *n)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t k = strlen(s);
    while (k > 0 && (s[k - 1] == ' ' || s[k - 1] == '\t'))
        k--;
    *n = k;
    return s;
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/*
 * The first configured source that is present gives the token; an
 * Authorization header with another scheme (Basic...) does not count as
 * present. 0 and *out (malloc'ed), or a refusal.
 */
int jwt_find_token(const jwt_auth_t *a, const ksock_handshake_t *hs, char **out, char *errstr,
                   size_t errstr_size)
{
    static const char *const where[] = {"Authorization: Bearer", "query parameter token",
                                        "x-ksock-token header"};
    char looked[128] = "";
    size_t n;
    *out = NULL;
    for (size_t i = 0; i < a->nsources; i++) {
        const char *v = NULL;
        snprintf(looked + strlen(looked), sizeof(looked) - strlen(looked), "%s%s", i ? ", " : "",
                 where[a->sources[i]]);
        switch (a->sources[i]) {
        case JWT_SRC_HEADER:
            v = ksock_handshake_header(hs, "authorization");
            if (v == NULL) break;
            v = trim(v, &n);
            if (n < 6 || strncasecmp(v, "bearer", 6) != 0 || (n > 6 && v[6] != ' ')) {
                v = NULL;
                break;
            }
            v = trim(v + 6, &n);
            if (n == 0) return jwt_refuse(errstr, errstr_size, "empty bearer token");
            break;
        case JWT_SRC_XTOKEN:
            v = ksock_handshake_header(hs, "x-ksock-token");
            if (v == NULL) break;
            v = trim(v, &n);
            if (n == 0) return jwt_refuse(errstr, errstr_size, "empty x-ksock-token header");
            break;
        case JWT_SRC_QUERY: {
            int rc = KSOCK_HAS_FIELD(hs, ksock_handshake_t, query)
                         ? query_token(a, hs->query, out, errstr, errstr_size)
                         : 0;
            if (rc != 0) return rc < 0 ? rc : 0;
            break;
        }
        }
        if (v) {
            *out = dup_n(v, n);
            return *out ? 0 : KSOCK_E_NOMEM;
        }
    }
    return jwt_refuse(errstr, errstr_size, "no token (looked in: %s)", looked);
}
