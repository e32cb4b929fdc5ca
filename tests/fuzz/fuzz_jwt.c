/*
 * libFuzzer targets for the jwt authenticator (plugins/auth_jwt, linked in
 * with KSOCK_PLUGIN_BUILTIN and registered through the real loader), built
 * twice (tests/fuzz/meson.build):
 *
 *   FUZZ_JWT_MODE 0 (fuzz-jwt-token): the input is a token. It goes to
 *     validate_token(), and to authenticate() as the query string and as
 *     the Authorization header. Everything before the signature check is
 *     reachable: size limit, base64url, the header parse, the alg pin, the
 *     claims parse, the query decoder.
 *   FUZZ_JWT_MODE 1 (fuzz-jwt-claims): the input is the claims JSON. The
 *     target signs it (HS256, the instance's secret) so that the checks
 *     after the signature run on it: exp/nbf/iat, iss, aud, sub, the
 *     permissions claim.
 *
 * Beyond "no crash, no leak, no UB": an accepted token must give a map of
 * claims and a principal with a subject, and authenticate() must never
 * accept what validate_token() refuses; otherwise the target aborts.
 */
#include <ksock/auth.h>
#include <ksock/config.h>
#include <ksock/runtime.h>

#include <gnutls/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const ksock_plugin_desc_t *ksock_builtin_auth_jwt(void);
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

#define SECRET "fuzz-secret-fuzz-secret-fuzz-secret-0123456789"

static ksock_runtime_t *rt;
static ksock_config_t *doc;
static ksock_plugin_instance_t *pi;
static const ksock_auth_vtable_t *vt;

static void die(const char *what, const char *err)
{
    fprintf(stderr, "fuzz-jwt: %s: %s\n", what, err);
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    static const char opts[] =
        "{\"algorithm\": \"HS256\", \"secret\": \"" SECRET "\", \"issuer\": \"fuzz\","
        " \"audience\": \"ksock\","
        " \"token_sources\": [\"header\", \"query\", \"x-ksock-token\"]}";
    char err[512] = "";
    ksock_plugin_t *p = NULL;
    if (ksock_runtime_new(&rt, err, sizeof(err)) != 0) die("runtime", err);
    if (ksock_plugins_register_builtin(rt, ksock_builtin_auth_jwt, err, sizeof(err)) != 0)
        die("register", err);
    if (ksock_config_load_string("fuzz", opts, sizeof(opts) - 1, &doc, err, sizeof(err)) != 0)
        die("options", err);
    if (ksock_plugin_find(rt, KSOCK_PLUGIN_AUTH, "jwt", &p, err, sizeof(err)) != 0)
        die("find", err);
    if (ksock_plugin_instance_new(rt, p, "fuzz", doc, ksock_config_root(doc), NULL, &pi, err,
                                  sizeof(err)) != 0)
        die("create", err);
    vt = ksock_plugin_instance_vtable(pi);
    return 0;
}

static void b64url(char *out, const unsigned char *in, size_t n)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = a[(v >> 6) & 63];
        out[o++] = a[v & 63];
    }
    if (n - i == 1) {
        unsigned v = (unsigned)in[i] << 16;
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
    } else if (n - i == 2) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = a[(v >> 6) & 63];
    }
    out[o] = '\0';
}

/* header.claims.signature, HS256 with the instance's secret. Caller frees. */
static char *sign(const unsigned char *claims, size_t n)
{
    static const char hdr[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    char *tok = malloc((sizeof(hdr) + n + 32) * 4 / 3 + 64);
    if (tok == NULL) abort();
    b64url(tok, (const unsigned char *)hdr, sizeof(hdr) - 1);
    size_t l = strlen(tok);
    tok[l++] = '.';
    b64url(tok + l, claims, n);
    l += strlen(tok + l);
    unsigned char mac[32];
    if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, SECRET, sizeof(SECRET) - 1, tok, l, mac) != 0) abort();
    tok[l++] = '.';
    b64url(tok + l, mac, sizeof(mac));
    return tok;
}

static int authenticate(const char *query, const char *bearer, ksock_principal_t **out)
{
    ksock_kvpair_t h[1] = {{"authorization", bearer}};
    ksock_handshake_t hs = {
        .size = sizeof(hs),
        .path = "/ws",
        .query = query,
        .headers = h,
        .nheaders = bearer ? 1 : 0,
        .peer_addr = "127.0.0.1:1",
    };
    char err[256];
    return vt->authenticate(ksock_plugin_instance_inst(pi), &hs, out, err, sizeof(err));
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    char *tok;
    if (FUZZ_JWT_MODE == 1) {
        tok = sign(data, size);
    } else {
        tok = malloc(size + 1);
        if (tok == NULL) abort();
        memcpy(tok, data, size);
        tok[size] = '\0';
    }
    char err[256];
    ksock_value_t *claims = NULL;
    int rc = vt->validate_token(ksock_plugin_instance_inst(pi), tok, &claims, err, sizeof(err));
    if (rc == 0 && (claims == NULL || ksock_value_type(claims) != KSOCK_VALUE_MAP))
        die("accepted", "validate_token gave no map of claims");
    if (rc != 0 && claims != NULL) die("refused", "validate_token refused but gave claims");

    /* The same token through the handshake: as a Bearer header, and in the query. */
    size_t tl = strlen(tok), ql = tl + size + 8;
    char *bearer = malloc(tl + 8);
    char *query = malloc(ql);
    if (bearer == NULL || query == NULL) abort();
    snprintf(bearer, tl + 8, "Bearer %s", tok);
    snprintf(query, ql, "token=%s", tok);
    ksock_principal_t *p = NULL;
    int arc = authenticate(NULL, bearer, &p);
    if (arc == 0 && (p == NULL || p->subject == NULL || *p->subject == '\0'))
        die("authenticate", "accepted without a subject");
    /*
     * authenticate() checks more (the permissions claim), never less. Only
     * for signed tokens: the header path trims whitespace around a token,
     * as HTTP allows, and validate_token() does not.
     */
    if (FUZZ_JWT_MODE == 1 && arc == 0 && rc != 0)
        die("disagree", "authenticate accepted what validate_token refused");
    ksock_principal_free(p);
    p = NULL;
    /* Mode 0: the raw input is the query string, percent-escapes and all. */
    if (FUZZ_JWT_MODE == 0) {
        memcpy(query, data, size);
        query[size] = '\0';
    }
    if (authenticate(query, NULL, &p) == 0 && FUZZ_JWT_MODE == 1 && rc != 0)
        die("disagree", "the query path accepted what validate_token refused");
    ksock_principal_free(p);
    if (claims) ksock_value_unref(claims);
    free(bearer);
    free(query);
    free(tok);
    return 0;
}
