/*
 * authenticator "jwt": JSON Web Tokens (RFC 7519) on libjwt 1.10 (GnuTLS
 * flavour), spec V generateWebSocketToken / validateWebSocketToken.
 *
 * libjwt 1.10 checks no claim at all, takes the algorithm from the token's
 * own header, and without a key decodes without verifying. So libjwt is
 * only ever asked one question, "is this signature right for this key",
 * and everything around it is done here, in this order:
 *
 *   1. size bound, three dot-separated strict base64url parts
 *   2. our own parse of the header; alg must equal the configured one
 *      (this is what refuses alg "none" and the RS256 -> HS256 key
 *      confusion, where the public key is used as an HMAC secret)
 *   3. our own parse of the claims (duplicate keys refused)
 *   4. libjwt verifies, always with a key; afterwards it must report the
 *      pinned algorithm too
 *   5. exp / nbf / iat with leeway, max_ttl, sub, iss, aud, permissions
 *
 * The files: jwt.c (this one) the options, the instance and the vtable;
 * jwt_token.c finding a token in a handshake, steps 1 and 2 and the order
 * of all five; jwt_signature.c algorithms, keys, step 4 and signing;
 * jwt_claims.c step 5 and the claims of issued tokens; jwt_perms.c the
 * permissions claim; jwt_json.c JSON and base64url; jwt_jwks.c keys from a
 * JWKS URL.
 *
 * The instance is immutable after create(), except for the key set of a
 * jwks_url (jwt_jwks.c), which a thread of its own refreshes:
 * authenticate() and validate_token() are thread-safe and do no I/O.
 */
#include "jwt_internal.h"

#include <ksock/auth.h>
#include <ksock/runtime.h>

#include <stdlib.h>
#include <string.h>

#define DAY_MS (24 * 3600 * 1000LL)

static const ksock_option_t jwt_options[] = {
    KSOCK_OPTION_ENUM("algorithm", 0, "HS256", jwt_opts_t, algorithm, jwt_alg_names,
                      "The only algorithm accepted and used for signing; a token whose header "
                      "names another (\"none\" included) is refused before any verification."),
    KSOCK_OPTION("secret", KSOCK_OPT_STRING, KSOCK_OPT_SECRET, NULL, jwt_opts_t, secret,
                 "HS*: the shared secret, used as raw bytes; at least as long as the hash "
                 "(32/48/64 bytes). Prefer secret.file or secret.env."),
    KSOCK_OPTION("secret.file", KSOCK_OPT_STRING, 0, NULL, jwt_opts_t, secret_file,
                 "HS*: a file holding the secret (trailing newlines removed)."),
    KSOCK_OPTION("secret.env", KSOCK_OPT_STRING, 0, NULL, jwt_opts_t, secret_env,
                 "HS*: an environment variable holding the secret."),
    KSOCK_OPTION("public_key", KSOCK_OPT_STRING, 0, NULL, jwt_opts_t, public_key,
                 "RS*/ES*: PEM file of the public key that verifies tokens (required)."),
    KSOCK_OPTION("private_key", KSOCK_OPT_STRING, 0, NULL, jwt_opts_t, private_key,
                 "RS*/ES*: PEM file of the matching private key; without it this instance "
                 "validates but cannot issue tokens."),
    KSOCK_OPTION("issuer", KSOCK_OPT_STRING, 0, NULL, jwt_opts_t, issuer,
                 "When set, tokens must carry this exact iss, and issued tokens get it."),
    KSOCK_OPTION("audience", KSOCK_OPT_STRING, 0, NULL, jwt_opts_t, audience,
                 "When set, tokens must carry this aud (a string, or an array containing it), "
                 "and issued tokens get it. When unset, tokens with an aud are refused."),
    KSOCK_OPTION_RANGE("leeway", KSOCK_OPT_DURATION, 0, "30s", jwt_opts_t, leeway, 0, 3600 * 1000,
                       "Clock skew allowed when checking exp, nbf and iat."),
    KSOCK_OPTION("require_exp", KSOCK_OPT_BOOL, 0, "true", jwt_opts_t, require_exp,
                 "Refuse tokens without an exp claim."),
    KSOCK_OPTION_RANGE("max_ttl", KSOCK_OPT_DURATION, 0, "0s", jwt_opts_t, max_ttl, 0,
                       3650 * DAY_MS,
                       "Refuse tokens whose exp - iat exceeds this (they must then carry both); "
                       "0: no limit."),
    KSOCK_OPTION_RANGE("default_ttl", KSOCK_OPT_DURATION, 0, "1h", jwt_opts_t, default_ttl, 1000,
                       3650 * DAY_MS,
                       "Lifetime of issued tokens when the user details give no ttl (whole "
                       "seconds)."),
    KSOCK_OPTION("token_sources", KSOCK_OPT_LIST, 0, "header,query", jwt_opts_t, token_sources,
                 "Where authenticate() looks, in order, taking the first present: \"header\" "
                 "(Authorization: Bearer), \"query\" (the token query parameter), "
                 "\"x-ksock-token\" (that header)."),
    KSOCK_OPTION("permissions_claim", KSOCK_OPT_STRING, 0, "ksock", jwt_opts_t, permissions_claim,
                 "The claim holding topic permissions: {\"subscribe\": [patterns], "
                 "\"publish\": [patterns]}."),
    KSOCK_OPTION_RANGE("max_token_size", KSOCK_OPT_SIZE, 0, "8KiB", jwt_opts_t, max_token_size, 256,
                       64 * 1024, "Longer tokens are refused before they are parsed."),
    KSOCK_OPTION("jwks_url", KSOCK_OPT_STRING, 0, NULL, jwt_opts_t, jwks_url,
                 "RS*/ES*: an https:// URL publishing the verification keys as a JWKS (RFC "
                 "7517), instead of public_key; a token's key is chosen by its kid header."),
    KSOCK_OPTION("jwks_ca_file", KSOCK_OPT_STRING, 0, NULL, jwt_opts_t, jwks_ca_file,
                 "PEM file of the CA certificates that verify the jwks_url server (a private "
                 "CA); unset: the system's trust store."),
    KSOCK_OPTION_RANGE("jwks_refresh", KSOCK_OPT_DURATION, 0, "10m", jwt_opts_t, jwks_refresh, 1000,
                       7 * DAY_MS,
                       "How often the key set is fetched again (removed keys stop working "
                       "then)."),
    KSOCK_OPTION_RANGE("jwks_min_refresh", KSOCK_OPT_DURATION, 0, "30s", jwt_opts_t,
                       jwks_min_refresh, 100, 3600 * 1000,
                       "An unknown kid starts a refresh at most this often; also the retry "
                       "interval after a failed fetch."),
    KSOCK_OPTION_RANGE("jwks_timeout", KSOCK_OPT_DURATION, 0, "5s", jwt_opts_t, jwks_timeout, 100,
                       60 * 1000, "Bound on one fetch of the key set (connect, TLS and transfer)."),
    KSOCK_OPTION_END,
};

static void jwt_destroy(void *inst)
{
    jwt_auth_t *a = inst;
    if (a == NULL) return;
    jwt_jwks_destroy(a->jwks);
    jwt_keys_free(a);
    free(a);
}

static int parse_sources(jwt_auth_t *a, char *errstr, size_t errstr_size)
{
    static const char *const names[] = {"header", "query", "x-ksock-token"};
    const ksock_strlist_t *l = &a->o->token_sources;
    if (l->n == 0 || l->n > 3) {
        ksock_errstr_set(errstr, errstr_size,
                         "token_sources: give one to three of \"header\", \"query\", "
                         "\"x-ksock-token\"");
        return KSOCK_E_CONFIG;
    }
    for (size_t i = 0; i < l->n; i++) {
        size_t k = 0;
        while (k < 3 && strcmp(l->v[i], names[k]) != 0)
            k++;
        if (k == 3) {
            ksock_errstr_set(errstr, errstr_size,
                             "token_sources: \"%s\" is not one of \"header\", \"query\", "
                             "\"x-ksock-token\"",
                             l->v[i]);
            return KSOCK_E_CONFIG;
        }
        for (size_t j = 0; j < a->nsources; j++) {
            if (a->sources[j] == (jwt_src_t)k) {
                ksock_errstr_set(errstr, errstr_size, "token_sources: \"%s\" is listed twice",
                                 l->v[i]);
                return KSOCK_E_CONFIG;
            }
        }
        a->sources[a->nsources++] = (jwt_src_t)k;
    }
    return 0;
}

static int jwt_create(const ksock_plugin_ctx_t *ctx, const void *options, void **inst, char *errstr,
                      size_t errstr_size)
{
    const jwt_opts_t *o = options;
    jwt_auth_t *a = calloc(1, sizeof(*a));
    if (a == NULL) return KSOCK_E_NOMEM;
    a->o = o;
    a->alg = &jwt_algs[o->algorithm];
    int rc = parse_sources(a, errstr, errstr_size);
    if (rc == 0 && (o->permissions_claim == NULL || o->permissions_claim[0] == '\0')) {
        ksock_errstr_set(errstr, errstr_size, "permissions_claim must not be empty");
        rc = KSOCK_E_CONFIG;
    }
    if (rc == 0 && o->max_ttl > 0 && o->default_ttl > o->max_ttl) {
        ksock_errstr_set(errstr, errstr_size,
                         "default_ttl (%lld ms) exceeds max_ttl (%lld ms): every token issued "
                         "would be refused",
                         (long long)o->default_ttl, (long long)o->max_ttl);
        rc = KSOCK_E_CONFIG;
    }
    if (rc == 0) rc = jwt_keys_load(a, errstr, errstr_size);
    if (rc == 0 && o->jwks_url) rc = jwt_jwks_new(ctx, o, a->alg, &a->jwks, errstr, errstr_size);
    if (rc != 0) {
        jwt_destroy(a);
        return rc;
    }
    *inst = a;
    return 0;
}

/* ---- The vtable ------------------------------------------------------------ */

static int jwt_authenticate(void *inst, const ksock_handshake_t *hs, ksock_principal_t **out,
                            char *errstr, size_t errstr_size)
{
    const jwt_auth_t *a = inst;
    *out = NULL;
    char *tok = NULL;
    int rc = jwt_find_token(a, hs, &tok, errstr, errstr_size);
    if (rc != 0) return rc;
    ksock_value_t *claims = NULL;
    rc = jwt_check_token(a, tok, strlen(tok), &claims, errstr, errstr_size);
    free(tok);
    if (rc != 0) return rc;
    ksock_principal_t *p =
        ksock_principal_new(ksock_value_get_string(ksock_value_map_get(claims, "sub"), NULL));
    if (p == NULL || p->subject == NULL) {
        ksock_principal_free(p);
        ksock_value_unref(claims);
        return KSOCK_E_NOMEM;
    }
    rc = jwt_check_perms(a, claims, p, errstr, errstr_size);
    if (rc != 0) {
        ksock_principal_free(p);
        ksock_value_unref(claims);
        return rc;
    }
    bool has_exp;
    double exp;
    jwt_date_claim(claims, "exp", &has_exp, &exp, NULL, 0);
    /* exp was checked to lie ahead; one too far for int64 milliseconds means "never". */
    if (!has_exp)
        p->expires_at_ms = 0;
    else if (exp * 1000.0 >= 9.2e18)
        p->expires_at_ms = INT64_MAX;
    else
        p->expires_at_ms = (int64_t)(exp * 1000.0);
    p->claims = claims;
    *out = p;
    return 0;
}

static int jwt_validate(void *inst, const char *token, ksock_value_t **user, char *errstr,
                        size_t errstr_size)
{
    *user = NULL;
    if (token == NULL) return jwt_refuse(errstr, errstr_size, "no token");
    /* Bound the length scan itself: a token is refused long before this. */
    size_t len = strnlen(token, (size_t)((const jwt_auth_t *)inst)->o->max_token_size + 1);
    return jwt_check_token(inst, token, len, user, errstr, errstr_size);
}

static int jwt_generate(void *inst, const ksock_value_t *user, char **token, char *errstr,
                        size_t errstr_size)
{
    const jwt_auth_t *a = inst;
    *token = NULL;
    if (a->skey == NULL) {
        ksock_errstr_set(errstr, errstr_size,
                         "jwt: cannot issue %s tokens: private_key is not configured (public_key "
                         "only verifies)",
                         a->alg->name);
        return KSOCK_E_STATE;
    }
    char *json = NULL;
    int rc = jwt_claims_json(a, user, &json, errstr, errstr_size);
    if (rc == 0) rc = jwt_sign_claims(a, json, token, errstr, errstr_size);
    free(json);
    if (rc == 0 && strlen(*token) > (size_t)a->o->max_token_size) {
        ksock_errstr_set(errstr, errstr_size,
                         "jwt: the token would be %zu bytes, more than max_token_size (%lld): it "
                         "would be refused",
                         strlen(*token), (long long)a->o->max_token_size);
        free(*token);
        *token = NULL;
        rc = KSOCK_E_LIMIT;
    }
    return rc;
}

static const ksock_auth_vtable_t jwt_vtable = {
    .size = sizeof(ksock_auth_vtable_t),
    .create = jwt_create,
    .destroy = jwt_destroy,
    .authenticate = jwt_authenticate,
    .generate_token = jwt_generate,
    .validate_token = jwt_validate,
};

static const ksock_plugin_desc_t jwt_desc = {
    KSOCK_PLUGIN_HEADER(KSOCK_PLUGIN_AUTH),
    .name = "jwt",
    .version = "0.1.0",
    .description = "JSON Web Tokens (HS/RS/ES, algorithm pinned, every claim checked)",
    .options = jwt_options,
    .options_struct_size = sizeof(jwt_opts_t),
    .vtable = &jwt_vtable,
};

KSOCK_PLUGIN_DEFINE(auth_jwt, jwt_desc)
