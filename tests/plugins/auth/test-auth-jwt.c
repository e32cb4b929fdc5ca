/*
 * The "jwt" authenticator as a host sees it: auth_jwt loaded from
 * build/plugins through the real loader (KSOCK_PLUGIN_PATH from test_env),
 * configured from JSON text, asked to authenticate handshakes and to
 * generate and validate tokens (spec V).
 *
 * Bad tokens are made here from raw header and claims text, signed with
 * GnuTLS (HMAC) directly, so that each refusal is tested on a token that is
 * wrong in exactly one way. Keys for RS/ES are made at test time with
 * certtool into a temporary directory. The key-confusion test also shows
 * the attack working against plain libjwt 1.10, so it tests something real.
 */
#include "test.h"

#include <ksock/ksock.h>

#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <jwt.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <time.h>

#if defined(__SANITIZE_ADDRESS__)
#define AT_HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AT_HAVE_LSAN 1
#endif
#endif

#ifdef AT_HAVE_LSAN
#include <sanitizer/lsan_interface.h>
/* Every test ends with this: a leak fails the test that caused it. */
#define RT_LEAK_CHECK() ASSERT(__lsan_do_recoverable_leak_check() == 0)
#else
#define RT_LEAK_CHECK() ((void)0)
#endif

#define SECRET32   "0123456789abcdef0123456789abcdef"
#define SECRET48   SECRET32 "ghijklmnopqrstuv"
#define SECRET64   SECRET32 SECRET32
#define HS256_OPTS "{\"secret\": \"" SECRET32 "\"}"

/* ---- An authenticator instance ------------------------------------------------ */

typedef struct at_s {
    ksock_runtime_t *rt;
    ksock_config_t *doc;
    ksock_plugin_instance_t *pi;
    const ksock_auth_vtable_t *vt;
    void *inst;
} at_t;

static ksock_runtime_t *at_runtime(void)
{
    ksock_runtime_t *rt = NULL;
    char err[512] = "";
    if (ksock_runtime_new(&rt, err, sizeof(err)) != 0) TEST_FAIL_("ksock_runtime_new: %s", err);
    ksock_log_options_t lo = {sizeof(lo), KSOCK_LOG_WARN, "console", KSOCK_LOG_FORMAT_TEXT, NULL};
    ksock_log_configure(rt, &lo, err, sizeof(err));
    return rt;
}

static int at_try_open(const char *options_json, at_t *out, char *errstr, size_t errstr_size)
{
    at_t a = {.rt = at_runtime()};
    ksock_plugin_t *plugin;
    int rc = ksock_plugin_find(a.rt, KSOCK_PLUGIN_AUTH, "jwt", &plugin, errstr, errstr_size);
    if (rc != 0) TEST_FAIL_("plugin_find(auth jwt): %s", errstr);
    rc = ksock_config_load_string("opts.json", options_json, strlen(options_json), &a.doc, errstr,
                                  errstr_size);
    if (rc != 0) TEST_FAIL_("options do not parse: %s: %s", errstr, options_json);
    rc = ksock_plugin_instance_new(a.rt, plugin, "t", a.doc, ksock_config_root(a.doc), NULL, &a.pi,
                                   errstr, errstr_size);
    if (rc != 0) {
        ASSERT_NULL(a.pi);
        ksock_config_free(a.doc);
        ksock_runtime_destroy(a.rt);
        return rc;
    }
    a.vt = ksock_plugin_instance_vtable(a.pi);
    a.inst = ksock_plugin_instance_inst(a.pi);
    ASSERT_GE(a.vt->size, sizeof(ksock_auth_vtable_t));
    *out = a;
    return 0;
}

static at_t at_open(const char *options_json)
{
    at_t a;
    char err[512] = "";
    if (at_try_open(options_json, &a, err, sizeof(err)) != 0)
        TEST_FAIL_("instance_new(auth jwt, %s): %s", options_json, err);
    return a;
}

static void at_close(at_t *a)
{
    ksock_plugin_instance_free(a->pi);
    ksock_config_free(a->doc);
    ksock_runtime_destroy(a->rt);
    memset(a, 0, sizeof(*a));
}

/* A create that must fail with KSOCK_E_CONFIG and a message containing `want`. */
static void at_refused(const char *options_json, const char *want)
{
    at_t a;
    char err[512] = "";
    int rc = at_try_open(options_json, &a, err, sizeof(err));
    if (rc == 0) TEST_FAIL_("instance_new accepted %s", options_json);
    ASSERT_EQ(rc, KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, want);
}

/* ---- Text helpers ---------------------------------------------------------------- */

static char *xprintf(const char *fmt, ...) KSOCK_PRINTF(1, 2);
static char *xprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) TEST_FAIL_("vasprintf");
    va_end(ap);
    return s;
}

static char *b64url(const void *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *b = p;
    char *o = malloc(n * 4 / 3 + 4);
    size_t k = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)b[i] << 16 | (uint32_t)b[i + 1] << 8 | b[i + 2];
        o[k++] = tab[v >> 18], o[k++] = tab[(v >> 12) & 63], o[k++] = tab[(v >> 6) & 63];
        o[k++] = tab[v & 63];
    }
    if (n - i >= 1) {
        uint32_t v = (uint32_t)b[i] << 16 | (n - i == 2 ? (uint32_t)b[i + 1] << 8 : 0);
        o[k++] = tab[v >> 18], o[k++] = tab[(v >> 12) & 63];
        if (n - i == 2) o[k++] = tab[(v >> 6) & 63];
    }
    o[k] = '\0';
    return o;
}

static long long now_s(void)
{
    return (long long)time(NULL);
}

/*
 * A token from raw header and claims text, HMAC-signed with `key` by
 * GnuTLS (the MAC named by the header's alg is up to the caller: `mac`).
 */
static char *sign_hmac(gnutls_mac_algorithm_t mac, const void *key, size_t key_len,
                       const char *header, const char *claims)
{
    char *h = b64url(header, strlen(header)), *c = b64url(claims, strlen(claims));
    char *input = xprintf("%s.%s", h, c);
    unsigned char digest[64];
    ASSERT_OK(gnutls_hmac_fast(mac, key, key_len, input, strlen(input), digest));
    char *sig = b64url(digest, gnutls_hmac_get_len(mac));
    char *tok = xprintf("%s.%s", input, sig);
    free(h), free(c), free(input), free(sig);
    return tok;
}

#define HDR_HS256 "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

/* An HS256 token over SECRET32 with these claims. */
static char *hs256(const char *claims)
{
    return sign_hmac(GNUTLS_MAC_SHA256, SECRET32, 32, HDR_HS256, claims);
}

/* Claims valid for the next hour, with `extra` members appended (",\"k\":v" or ""). */
static char *good_claims(const char *extra)
{
    long long now = now_s();
    return xprintf("{\"sub\":\"alice\",\"iat\":%lld,\"exp\":%lld%s}", now, now + 3600, extra);
}

/* validate_token's code; errstr in err (512 bytes); claims dropped. */
static int validate(at_t *a, const char *tok, char *err)
{
    ksock_value_t *user = NULL;
    err[0] = '\0';
    int rc = a->vt->validate_token(a->inst, tok, &user, err, 512);
    if (rc == 0) {
        ASSERT_NOT_NULL(user);
        ksock_value_unref(user);
    } else {
        ASSERT_NULL(user);
    }
    return rc;
}

/* A token that `opts` must refuse with a reason containing `want`. */
static void refused_with(const char *opts, const char *tok, const char *want)
{
    at_t a = at_open(opts);
    char err[512];
    int rc = validate(&a, tok, err);
    if (rc == 0) TEST_FAIL_("token accepted, expected \"%s\": %s", want, tok);
    ASSERT_EQ(rc, KSOCK_E_AUTH);
    ASSERT_CONTAINS(err, want);
    at_close(&a);
}

static void accepted(const char *opts, const char *tok)
{
    at_t a = at_open(opts);
    char err[512];
    int rc = validate(&a, tok, err);
    if (rc != 0) TEST_FAIL_("token refused: %s: %s", err, tok);
    at_close(&a);
}

/* Claims text through the default HS256 instance: must be refused with `want`. */
static void hs256_claims_refused(const char *opts, const char *claims, const char *want)
{
    char *tok = hs256(claims);
    refused_with(opts, tok, want);
    free(tok);
}

/* ---- Keys (certtool at test time) ---------------------------------------------------- */

typedef struct keys_s {
    char dir[64];
} keys_t;

static void keys_init(keys_t *k)
{
    snprintf(k->dir, sizeof(k->dir), "/tmp/ksock-jwt-XXXXXX");
    if (mkdtemp(k->dir) == NULL) TEST_FAIL_("mkdtemp: %s", strerror(errno));
}

/* Make NAME.key and NAME.pub: type "rsa" (2048 bits) or a curve ("secp256r1"...). */
static void keys_make(keys_t *k, const char *name, const char *type)
{
    char *args = strcmp(type, "rsa") == 0 ? xprintf("--key-type=rsa --bits=2048")
                                          : xprintf("--key-type=ecdsa --curve=%s", type);
    char *cmd = xprintf("certtool --generate-privkey %s --no-text --outfile %s/%s.key "
                        ">/dev/null 2>&1 && certtool --load-privkey %s/%s.key --pubkey-info "
                        "--no-text --outfile %s/%s.pub >/dev/null 2>&1",
                        args, k->dir, name, k->dir, name, k->dir, name);
    if (system(cmd) != 0) TEST_FAIL_("certtool failed: %s", cmd);
    free(args);
    free(cmd);
}

static char *keys_path(const keys_t *k, const char *file)
{
    return xprintf("%s/%s", k->dir, file);
}

static void keys_done(keys_t *k)
{
    char *cmd = xprintf("rm -rf %s", k->dir);
    ASSERT_OK(system(cmd));
    free(cmd);
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) TEST_FAIL_("open %s: %s", path, strerror(errno));
    char *buf = malloc(65536);
    *len = fread(buf, 1, 65535, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

/* Options for an RS/ES instance with NAME.pub (and NAME.key when `with_private`). */
static char *pk_opts(const keys_t *k, const char *alg, const char *name, bool with_private)
{
    if (with_private)
        return xprintf("{\"algorithm\": \"%s\", \"public_key\": \"%s/%s.pub\", "
                       "\"private_key\": \"%s/%s.key\"}",
                       alg, k->dir, name, k->dir, name);
    return xprintf("{\"algorithm\": \"%s\", \"public_key\": \"%s/%s.pub\"}", alg, k->dir, name);
}

/* ---- Values (JSON text -> value through the real json serializer) ---------------- */

static ksock_value_t *json_value(at_t *a, const char *json)
{
    char err[512] = "";
    if (ksock_serde_set_default_by_name(a->rt, "json", err, sizeof(err)) != 0)
        TEST_FAIL_("json serializer: %s", err);
    ksock_value_t *v = NULL;
    if (ksock_serde_deserialize(a->rt, json, strlen(json), NULL, &v, err, sizeof(err)) != 0)
        TEST_FAIL_("json: %s: %s", err, json);
    return v;
}

static char *generate(at_t *a, const char *user_json)
{
    ksock_value_t *user = json_value(a, user_json);
    char *tok = NULL, err[512] = "";
    int rc = a->vt->generate_token(a->inst, user, &tok, err, sizeof(err));
    ksock_value_unref(user);
    if (rc != 0) TEST_FAIL_("generate_token(%s): %s", user_json, err);
    ASSERT_NOT_NULL(tok);
    return tok;
}

static int generate_fails(at_t *a, const char *user_json, char *err)
{
    ksock_value_t *user = json_value(a, user_json);
    char *tok = NULL;
    int rc = a->vt->generate_token(a->inst, user, &tok, err, 512);
    ksock_value_unref(user);
    ASSERT_NE(rc, 0);
    ASSERT_NULL(tok);
    return rc;
}

static ksock_value_t *validated(at_t *a, const char *tok)
{
    ksock_value_t *user = NULL;
    char err[512] = "";
    if (a->vt->validate_token(a->inst, tok, &user, err, sizeof(err)) != 0)
        TEST_FAIL_("validate_token: %s: %s", err, tok);
    return user;
}

static const char *claim_str(const ksock_value_t *claims, const char *key)
{
    const ksock_value_t *v = ksock_value_map_get(claims, key);
    return v && ksock_value_type(v) == KSOCK_VALUE_STRING ? ksock_value_get_string(v, NULL) : NULL;
}

static int64_t claim_int(const ksock_value_t *claims, const char *key)
{
    const ksock_value_t *v = ksock_value_map_get(claims, key);
    ASSERT_NOT_NULL(v);
    ASSERT_EQ(ksock_value_type(v), KSOCK_VALUE_INT);
    return ksock_value_get_int(v);
}

/* ---- Handshakes --------------------------------------------------------------------- */

static int authenticate(at_t *a, const char *hdr_name, const char *hdr_value, const char *query,
                        ksock_principal_t **p, char *err)
{
    ksock_kvpair_t headers[2] = {{"host", "localhost"}, {hdr_name, hdr_value}};
    ksock_handshake_t hs = {
        .size = sizeof(hs),
        .path = "/ws",
        .query = query,
        .headers = headers,
        .nheaders = hdr_name ? 2 : 1,
        .peer_addr = "127.0.0.1:5555",
        .subprotocol = "ksock.v1.json",
    };
    *p = NULL;
    err[0] = '\0';
    int rc = a->vt->authenticate(a->inst, &hs, p, err, 512);
    if (rc != 0) ASSERT_NULL(*p);
    return rc;
}

static void auth_ok(at_t *a, const char *hdr_name, const char *hdr_value, const char *query)
{
    ksock_principal_t *p;
    char err[512];
    if (authenticate(a, hdr_name, hdr_value, query, &p, err) != 0)
        TEST_FAIL_("authenticate refused: %s", err);
    ASSERT_STR_EQ(p->subject, "alice");
    ksock_principal_free(p);
}

static void auth_refused(at_t *a, const char *hdr_name, const char *hdr_value, const char *query,
                         const char *want)
{
    ksock_principal_t *p;
    char err[512];
    int rc = authenticate(a, hdr_name, hdr_value, query, &p, err);
    if (rc == 0) TEST_FAIL_("authenticate accepted, expected \"%s\"", want);
    ASSERT_EQ(rc, KSOCK_E_AUTH);
    ASSERT_CONTAINS(err, want);
}

/* ==== generate -> validate round trips =============================================== */

static void hs_round_trip(const char *alg, const char *secret, size_t sig_bytes)
{
    char *opts = xprintf("{\"algorithm\": \"%s\", \"secret\": \"%s\"}", alg, secret);
    at_t a = at_open(opts);
    char *tok = generate(&a, "{\"sub\": \"alice\", \"roles\": [\"admin\"], \"team\": \"blue\"}");
    /* The signature has the size of the pinned algorithm's. */
    ASSERT_EQ(strlen(strrchr(tok, '.') + 1), (sig_bytes * 4 + 2) / 3);
    ksock_value_t *c = validated(&a, tok);
    ASSERT_STR_EQ(claim_str(c, "sub"), "alice");
    ASSERT_STR_EQ(claim_str(c, "team"), "blue");
    const ksock_value_t *roles = ksock_value_map_get(c, "roles");
    ASSERT_EQ(ksock_value_count(roles), 1);
    ASSERT_STR_EQ(ksock_value_get_string(ksock_value_array_get(roles, 0), NULL), "admin");
    ASSERT_EQ(claim_int(c, "exp") - claim_int(c, "iat"), 3600);
    ASSERT_LE(llabs((long long)claim_int(c, "iat") - now_s()), 2);
    ksock_value_unref(c);
    free(tok), free(opts);
    at_close(&a);
}

TEST(hs256_round_trip)
{
    hs_round_trip("HS256", SECRET32, 32);
    RT_LEAK_CHECK();
}

TEST(hs384_round_trip)
{
    hs_round_trip("HS384", SECRET48, 48);
    RT_LEAK_CHECK();
}

TEST(hs512_round_trip)
{
    hs_round_trip("HS512", SECRET64, 64);
    RT_LEAK_CHECK();
}

static void pk_round_trip(const char *alg, const char *type, size_t sig_bytes)
{
    keys_t k;
    keys_init(&k);
    keys_make(&k, "k", type);
    char *opts = pk_opts(&k, alg, "k", true);
    at_t a = at_open(opts);
    char *tok = generate(&a, "{\"userId\": \"alice\", \"roles\": [\"admin\"]}");
    /* JWS signature sizes (RFC 7518): the modulus for RS, R || S for ES. */
    ASSERT_EQ(strlen(strrchr(tok, '.') + 1), (sig_bytes * 4 + 2) / 3);
    ksock_value_t *c = validated(&a, tok);
    ASSERT_STR_EQ(claim_str(c, "sub"), "alice");
    ASSERT_NULL(ksock_value_map_get(c, "userId"));
    ksock_value_unref(c);
    /* A second instance with the public key only accepts it too (and cannot issue). */
    char *vopts = pk_opts(&k, alg, "k", false);
    at_t v = at_open(vopts);
    c = validated(&v, tok);
    ksock_value_unref(c);
    char err[512];
    ASSERT_EQ(generate_fails(&v, "{\"sub\": \"alice\"}", err), KSOCK_E_STATE);
    ASSERT_CONTAINS(err, "private_key");
    at_close(&v);
    free(tok), free(opts), free(vopts);
    at_close(&a);
    keys_done(&k);
}

TEST(rs256_round_trip)
{
    pk_round_trip("RS256", "rsa", 256);
    RT_LEAK_CHECK();
}

TEST(rs512_round_trip)
{
    pk_round_trip("RS512", "rsa", 256);
    RT_LEAK_CHECK();
}

TEST(es256_round_trip)
{
    pk_round_trip("ES256", "secp256r1", 64);
    RT_LEAK_CHECK();
}

TEST(es384_round_trip)
{
    pk_round_trip("ES384", "secp384r1", 96);
    RT_LEAK_CHECK();
}

TEST(es512_round_trip)
{
    pk_round_trip("ES512", "secp521r1", 132);
    RT_LEAK_CHECK();
}

/* ==== generate: user details ========================================================== */

TEST(generate_sets_iss_aud_ttl_and_permissions)
{
    at_t a = at_open("{\"secret\": \"" SECRET32 "\", \"issuer\": \"https://id.example\", "
                     "\"audience\": \"ksock\"}");
    char *tok = generate(&a, "{\"sub\": \"alice\", \"ttl\": 120, \"subscribe\": [\"orders.*\"], "
                             "\"publish\": [\"orders.in\"]}");
    ksock_value_t *c = validated(&a, tok);
    ASSERT_STR_EQ(claim_str(c, "iss"), "https://id.example");
    ASSERT_STR_EQ(claim_str(c, "aud"), "ksock");
    ASSERT_EQ(claim_int(c, "exp") - claim_int(c, "iat"), 120);
    ASSERT_NULL(ksock_value_map_get(c, "ttl"));
    ASSERT_NULL(ksock_value_map_get(c, "subscribe"));
    const ksock_value_t *perms = ksock_value_map_get(c, "ksock");
    ASSERT_EQ(ksock_value_count(ksock_value_map_get(perms, "subscribe")), 1);
    ksock_value_unref(c);
    /* And the principal it makes. */
    char *bearer = xprintf("Bearer %s", tok);
    ksock_principal_t *p;
    char err[512];
    ASSERT_OK(authenticate(&a, "authorization", bearer, NULL, &p, err));
    ASSERT(ksock_principal_can(p, "orders.eu", KSOCK_PERM_SUBSCRIBE));
    ASSERT(ksock_principal_can(p, "orders.in", KSOCK_PERM_PUBLISH));
    ASSERT(!ksock_principal_can(p, "orders.eu", KSOCK_PERM_PUBLISH));
    ksock_principal_free(p);
    free(bearer), free(tok);
    at_close(&a);
    RT_LEAK_CHECK();
}

TEST(generate_refuses_bad_user_details)
{
    at_t a = at_open("{\"secret\": \"" SECRET32 "\", \"max_ttl\": \"1h\"}");
    char err[512];
    ASSERT_EQ(generate_fails(&a, "{\"roles\": [\"x\"]}", err), KSOCK_E_INVAL);
    ASSERT_CONTAINS(err, "\"sub\" (or \"userId\") is missing");
    ASSERT_EQ(generate_fails(&a, "{\"sub\": \"a\", \"userId\": \"b\"}", err), KSOCK_E_INVAL);
    ASSERT_CONTAINS(err, "disagree");
    ASSERT_EQ(generate_fails(&a, "{\"sub\": 42}", err), KSOCK_E_INVAL);
    ASSERT_EQ(generate_fails(&a, "{\"sub\": \"a\", \"exp\": 1}", err), KSOCK_E_INVAL);
    ASSERT_CONTAINS(err, "\"exp\" is set by the authenticator");
    ASSERT_EQ(generate_fails(&a, "{\"sub\": \"a\", \"ksock\": {}}", err), KSOCK_E_INVAL);
    ASSERT_EQ(generate_fails(&a, "{\"sub\": \"a\", \"ttl\": 7201}", err), KSOCK_E_INVAL);
    ASSERT_CONTAINS(err, "exceeds max_ttl");
    ASSERT_EQ(generate_fails(&a, "{\"sub\": \"a\", \"ttl\": \"1h\"}", err), KSOCK_E_INVAL);
    ASSERT_EQ(generate_fails(&a, "{\"sub\": \"a\", \"subscribe\": \"orders\"}", err),
              KSOCK_E_INVAL);
    ASSERT_EQ(generate_fails(&a, "{\"sub\": \"a\", \"publish\": [\"ord*\"]}", err), KSOCK_E_INVAL);
    ASSERT_EQ(generate_fails(&a, "[1, 2]", err), KSOCK_E_INVAL);
    /* What we could not read back ourselves is not issued. */
    char *big = xprintf("{\"sub\": \"a\", \"pad\": \"%08000d\"}", 0);
    ASSERT_EQ(generate_fails(&a, big, err), KSOCK_E_LIMIT);
    ASSERT_CONTAINS(err, "more than max_token_size (8192)");
    free(big);
    char deep[200] = "{\"sub\": \"a\", \"d\": ";
    for (int i = 0; i < 40; i++)
        strcat(deep, "[");
    for (int i = 0; i < 40; i++)
        strcat(deep, "]");
    strcat(deep, "}");
    ASSERT_EQ(generate_fails(&a, deep, err), KSOCK_E_INVAL);
    ASSERT_CONTAINS(err, "nested deeper");
    /* Bytes have no JSON form. */
    ksock_value_t *u = ksock_value_map();
    ASSERT_OK(ksock_value_map_set(u, "sub", 3, ksock_value_cstring("a")));
    ASSERT_OK(ksock_value_map_set(u, "blob", 4, ksock_value_bytes("\x01\x02", 2)));
    char *tok = NULL;
    ASSERT_EQ(a.vt->generate_token(a.inst, u, &tok, err, sizeof(err)), KSOCK_E_INVAL);
    ASSERT_CONTAINS(err, "bytes");
    ASSERT_NULL(tok);
    ksock_value_unref(u);
    at_close(&a);
    RT_LEAK_CHECK();
}

/* ==== authenticate: where the token comes from ======================================== */

TEST(authenticate_bearer_header)
{
    at_t a = at_open(HS256_OPTS);
    char *claims = good_claims(""), *tok = hs256(claims);
    char *h1 = xprintf("Bearer %s", tok), *h2 = xprintf("bearer   %s  ", tok);
    auth_ok(&a, "authorization", h1, NULL);
    auth_ok(&a, "Authorization", h2, NULL);
    free(claims), free(tok), free(h1), free(h2);
    at_close(&a);
    RT_LEAK_CHECK();
}

/* Every byte percent-encoded, between other parameters. */
TEST(authenticate_query_percent_encoded)
{
    at_t a = at_open(HS256_OPTS);
    char *claims = good_claims(""), *tok = hs256(claims);
    size_t n = strlen(tok);
    char *enc = malloc(3 * n + 1);
    for (size_t i = 0; i < n; i++)
        snprintf(enc + 3 * i, 4, "%%%02X", (unsigned char)tok[i]);
    char *q1 = xprintf("a=1&token=%s&b", enc), *q2 = xprintf("token=%s", tok);
    auth_ok(&a, NULL, NULL, q1);
    auth_ok(&a, NULL, NULL, q2);
    free(claims), free(tok), free(enc), free(q1), free(q2);
    at_close(&a);
    RT_LEAK_CHECK();
}

TEST(authenticate_x_ksock_token_header)
{
    at_t a = at_open("{\"secret\": \"" SECRET32 "\", \"token_sources\": [\"x-ksock-token\"]}");
    char *claims = good_claims(""), *tok = hs256(claims);
    auth_ok(&a, "x-ksock-token", tok, NULL);
    /* Only the configured sources are looked at. */
    char *q = xprintf("token=%s", tok);
    auth_refused(&a, NULL, NULL, q, "no token (looked in: x-ksock-token header)");
    at_close(&a);
    a = at_open(HS256_OPTS);
    free(claims), free(tok), free(q);
    at_close(&a);
    RT_LEAK_CHECK();
}

TEST(authenticate_no_token)
{
    at_t a = at_open(HS256_OPTS);
    auth_refused(&a, NULL, NULL, NULL,
                 "no token (looked in: Authorization: Bearer, query parameter token)");
    auth_refused(&a, NULL, NULL, "a=1&tokens=2&xtoken=3", "no token");
    at_close(&a);
    RT_LEAK_CHECK();
}

/* Another scheme is not a bearer token: the next source is tried. */
TEST(authenticate_basic_header_is_not_a_token)
{
    at_t a = at_open(HS256_OPTS);
    auth_refused(&a, "authorization", "Basic YWxpY2U6cHc=", NULL, "no token");
    auth_refused(&a, "authorization", "Bearertoken", NULL, "no token");
    char *claims = good_claims(""), *tok = hs256(claims), *q = xprintf("token=%s", tok);
    auth_ok(&a, "authorization", "Basic YWxpY2U6cHc=", q);
    free(claims), free(tok), free(q);
    at_close(&a);
    RT_LEAK_CHECK();
}

/* The first source present decides: a bad bearer token is not rescued by a good query one. */
TEST(authenticate_first_present_source_decides)
{
    at_t a = at_open(HS256_OPTS);
    char *claims = good_claims(""), *tok = hs256(claims), *q = xprintf("token=%s", tok);
    auth_refused(&a, "authorization", "Bearer x.y.z", q, "malformed");
    auth_refused(&a, "authorization", "Bearer   ", q, "empty bearer token");
    free(claims), free(tok), free(q);
    at_close(&a);
    RT_LEAK_CHECK();
}

TEST(authenticate_query_bad_percent_encoding)
{
    at_t a = at_open(HS256_OPTS);
    auth_refused(&a, NULL, NULL, "token=abc%zz", "malformed percent-encoding");
    auth_refused(&a, NULL, NULL, "token=abc%2", "malformed percent-encoding");
    auth_refused(&a, NULL, NULL, "token=abc%00def", "malformed percent-encoding");
    at_close(&a);
    RT_LEAK_CHECK();
}

TEST(authenticate_query_token_twice)
{
    at_t a = at_open(HS256_OPTS);
    char *claims = good_claims(""), *tok = hs256(claims);
    char *q = xprintf("token=%s&token=%s", tok, tok);
    auth_refused(&a, NULL, NULL, q, "given twice");
    free(claims), free(tok), free(q);
    at_close(&a);
    RT_LEAK_CHECK();
}

/* ==== the principal =================================================================== */

TEST(permissions_claim_maps_to_principal)
{
    at_t a = at_open(HS256_OPTS);
    char *claims = good_claims(",\"ksock\":{\"subscribe\":[\"orders.*\",\"prices\"],"
                               "\"publish\":[\"orders.in\"],\"future\":true},\"roles\":[\"r\"]");
    char *tok = hs256(claims), *h = xprintf("Bearer %s", tok);
    ksock_principal_t *p;
    char err[512];
    ASSERT_OK(authenticate(&a, "authorization", h, NULL, &p, err));
    ASSERT_STR_EQ(p->subject, "alice");
    ASSERT(ksock_principal_can(p, "orders.eu", KSOCK_PERM_SUBSCRIBE));
    ASSERT(ksock_principal_can(p, "orders.in", KSOCK_PERM_SUBSCRIBE));
    ASSERT(ksock_principal_can(p, "prices", KSOCK_PERM_SUBSCRIBE));
    ASSERT(!ksock_principal_can(p, "prices2", KSOCK_PERM_SUBSCRIBE));
    ASSERT(!ksock_principal_can(p, "ordersx", KSOCK_PERM_SUBSCRIBE));
    ASSERT(ksock_principal_can(p, "orders.in", KSOCK_PERM_PUBLISH));
    ASSERT(!ksock_principal_can(p, "orders.out", KSOCK_PERM_PUBLISH));
    ASSERT(!ksock_principal_can(p, "prices", KSOCK_PERM_PUBLISH));
    /* exp as milliseconds; every claim kept. */
    ASSERT_NOT_NULL(p->claims);
    ASSERT_EQ(p->expires_at_ms, claim_int(p->claims, "exp") * 1000);
    ASSERT_STR_EQ(claim_str(p->claims, "sub"), "alice");
    ASSERT_NOT_NULL(ksock_value_map_get(p->claims, "roles"));
    ksock_principal_free(p);
    free(claims), free(tok), free(h);
    at_close(&a);
    RT_LEAK_CHECK();
}

/* Found by fuzz-jwt-claims: an exp too far ahead for int64 milliseconds. */
TEST(exp_far_in_the_future_never_expires)
{
    at_t a = at_open(HS256_OPTS);
    static const char *const exps[] = {"4.17e16", "1e300", "9223372036854775807"};
    for (size_t i = 0; i < sizeof(exps) / sizeof(exps[0]); i++) {
        char *claims = xprintf("{\"sub\":\"alice\",\"exp\":%s}", exps[i]);
        char *tok = hs256(claims), *h = xprintf("Bearer %s", tok);
        ksock_principal_t *p;
        char err[512];
        ASSERT_OK(authenticate(&a, "authorization", h, NULL, &p, err));
        ASSERT_EQ(p->expires_at_ms, INT64_MAX);
        ksock_principal_free(p);
        free(claims), free(tok), free(h);
    }
    at_close(&a);
    RT_LEAK_CHECK();
}

/* Accepted with no permissions: the bridge refuses topic by topic. */
TEST(no_permissions_claim_means_no_permissions)
{
    at_t a = at_open(HS256_OPTS);
    char *claims = good_claims(""), *tok = hs256(claims), *h = xprintf("Bearer %s", tok);
    ksock_principal_t *p;
    char err[512];
    ASSERT_OK(authenticate(&a, "authorization", h, NULL, &p, err));
    ASSERT_EQ(p->nperms, 0);
    ASSERT(!ksock_principal_can(p, "orders", KSOCK_PERM_SUBSCRIBE));
    ksock_principal_free(p);
    free(claims), free(tok), free(h);
    at_close(&a);
    RT_LEAK_CHECK();
}

TEST(permissions_claim_name_is_configurable)
{
    at_t a = at_open("{\"secret\": \"" SECRET32 "\", \"permissions_claim\": \"perms\"}");
    char *claims = good_claims(",\"perms\":{\"subscribe\":[\"*\"]},\"ksock\":7");
    char *tok = hs256(claims), *h = xprintf("Bearer %s", tok);
    ksock_principal_t *p;
    char err[512];
    ASSERT_OK(authenticate(&a, "authorization", h, NULL, &p, err));
    ASSERT(ksock_principal_can(p, "anything", KSOCK_PERM_SUBSCRIBE));
    ASSERT(!ksock_principal_can(p, "anything", KSOCK_PERM_PUBLISH));
    ksock_principal_free(p);
    free(claims), free(tok), free(h);
    at_close(&a);
    RT_LEAK_CHECK();
}

TEST(refuse_permissions_claim_not_an_object)
{
    char *c = good_claims(",\"ksock\":[\"orders\"]");
    hs256_claims_refused(HS256_OPTS, c, "the ksock claim is not an object");
    free(c);
    RT_LEAK_CHECK();
}

TEST(refuse_permissions_list_not_an_array)
{
    char *c = good_claims(",\"ksock\":{\"subscribe\":\"orders\"}");
    hs256_claims_refused(HS256_OPTS, c, "ksock.subscribe is not an array");
    free(c);
    RT_LEAK_CHECK();
}

TEST(refuse_permission_bad_pattern)
{
    char *c = good_claims(",\"ksock\":{\"publish\":[\"orders.in\",\"ord*\"]}");
    hs256_claims_refused(HS256_OPTS, c, "ksock.publish[1] is not a topic pattern");
    free(c);
    c = good_claims(",\"ksock\":{\"publish\":[\"\"]}");
    hs256_claims_refused(HS256_OPTS, c, "ksock.publish[0] is not a topic pattern");
    free(c);
    RT_LEAK_CHECK();
}

/* ==== refusals: algorithm ============================================================= */

TEST(refuse_alg_none)
{
    char *claims = good_claims("");
    char *h = b64url("{\"alg\":\"none\",\"typ\":\"JWT\"}", 26), *c = b64url(claims, strlen(claims));
    char *tok = xprintf("%s.%s.", h, c);
    refused_with(HS256_OPTS, tok, "alg none refused");
    free(tok);
    /* With something in the signature slot too, and spelt in capitals. */
    free(h);
    h = b64url("{\"alg\":\"NONE\"}", 14);
    tok = xprintf("%s.%s.AAAA", h, c);
    refused_with(HS256_OPTS, tok, "alg none refused");
    free(tok), free(h), free(c), free(claims);
    RT_LEAK_CHECK();
}

/*
 * Every spelling of "none", on an HS and an RS instance, with an empty
 * signature after the dot, with junk in it, and without the second dot
 * (two parts: refused as malformed before the header is even read).
 */
TEST(refuse_alg_none_any_spelling_any_form)
{
    static const char *const spellings[] = {"none", "None", "NONE", "nOnE"};
    keys_t k;
    keys_init(&k);
    keys_make(&k, "rsa", "rsa");
    char *rs_opts = pk_opts(&k, "RS256", "rsa", false);
    const char *opts[] = {HS256_OPTS, rs_opts};
    char *claims = good_claims(""), *c = b64url(claims, strlen(claims));
    for (size_t i = 0; i < 4; i++) {
        char *hdr = xprintf("{\"alg\":\"%s\",\"typ\":\"JWT\"}", spellings[i]);
        char *h = b64url(hdr, strlen(hdr));
        char *dot = xprintf("%s.%s.", h, c), *junk = xprintf("%s.%s.AAAA", h, c);
        char *two = xprintf("%s.%s", h, c);
        for (size_t o = 0; o < 2; o++) {
            refused_with(opts[o], dot, "alg none refused: unsigned tokens are never accepted");
            refused_with(opts[o], junk, "alg none refused");
            refused_with(opts[o], two, "three base64url parts separated by two dots");
        }
        free(hdr), free(h), free(dot), free(junk), free(two);
    }
    free(claims), free(c), free(rs_opts);
    keys_done(&k);
    RT_LEAK_CHECK();
}

/*
 * RS256 pinned; the attacker signs HS256 with the public key (which is
 * public) as the HMAC secret. Plain libjwt 1.10 takes the algorithm from
 * the header and accepts it; the plugin must not.
 */
TEST(refuse_key_confusion_hs256_signed_with_public_key)
{
    keys_t k;
    keys_init(&k);
    keys_make(&k, "rsa", "rsa");
    char *pub_path = keys_path(&k, "rsa.pub");
    size_t pub_len;
    char *pub = read_all(pub_path, &pub_len);
    char *claims = good_claims("");
    char *tok = sign_hmac(GNUTLS_MAC_SHA256, pub, pub_len, HDR_HS256, claims);
    jwt_t *j = NULL;
    ASSERT_OK(jwt_decode(&j, tok, (const unsigned char *)pub, (int)pub_len));
    jwt_free(j);
    char *opts = pk_opts(&k, "RS256", "rsa", false);
    refused_with(opts, tok, "alg HS256 refused: this authenticator is pinned to RS256");
    free(opts), free(tok), free(claims), free(pub), free(pub_path);
    keys_done(&k);
    RT_LEAK_CHECK();
}

TEST(refuse_other_hmac_alg)
{
    char *claims = good_claims("");
    char *tok =
        sign_hmac(GNUTLS_MAC_SHA512, SECRET32, 32, "{\"alg\":\"HS512\",\"typ\":\"JWT\"}", claims);
    refused_with(HS256_OPTS, tok, "alg HS512 refused: this authenticator is pinned to HS256");
    free(tok);
    tok = sign_hmac(GNUTLS_MAC_SHA256, SECRET32, 32, "{\"alg\":\"hs256\"}", claims);
    refused_with(HS256_OPTS, tok, "alg hs256 refused");
    free(tok), free(claims);
    RT_LEAK_CHECK();
}

TEST(refuse_header_without_alg)
{
    char *claims = good_claims("");
    char *tok = sign_hmac(GNUTLS_MAC_SHA256, SECRET32, 32, "{\"typ\":\"JWT\"}", claims);
    refused_with(HS256_OPTS, tok, "the header has no alg");
    free(tok), free(claims);
    RT_LEAK_CHECK();
}

/* One "alg" for us and another for a parser that keeps the last: refused outright. */
TEST(refuse_duplicate_alg_in_header)
{
    char *claims = good_claims("");
    char *tok =
        sign_hmac(GNUTLS_MAC_SHA256, SECRET32, 32, "{\"alg\":\"HS256\",\"alg\":\"none\"}", claims);
    refused_with(HS256_OPTS, tok, "duplicate key");
    free(tok), free(claims);
    RT_LEAK_CHECK();
}

TEST(refuse_crit_header)
{
    char *claims = good_claims("");
    char *tok = sign_hmac(GNUTLS_MAC_SHA256, SECRET32, 32,
                          "{\"alg\":\"HS256\",\"crit\":[\"exp\"],\"exp\":1}", claims);
    refused_with(HS256_OPTS, tok, "crit header refused");
    free(tok), free(claims);
    RT_LEAK_CHECK();
}

TEST(refuse_typ_not_jwt)
{
    char *claims = good_claims("");
    char *tok =
        sign_hmac(GNUTLS_MAC_SHA256, SECRET32, 32, "{\"alg\":\"HS256\",\"typ\":\"JWE\"}", claims);
    refused_with(HS256_OPTS, tok, "typ JWE refused");
    free(tok), free(claims);
    RT_LEAK_CHECK();
}

/* ==== refusals: signature ============================================================= */

TEST(refuse_wrong_secret)
{
    char *claims = good_claims("");
    char *tok =
        sign_hmac(GNUTLS_MAC_SHA256, "another secret of 32 bytes, yes!", 32, HDR_HS256, claims);
    refused_with(HS256_OPTS, tok, "bad signature");
    free(tok), free(claims);
    RT_LEAK_CHECK();
}

/* A valid token with its claims part replaced: the signature no longer covers them. */
TEST(refuse_tampered_payload)
{
    char *claims = good_claims(""), *tok = hs256(claims);
    accepted(HS256_OPTS, tok);
    char *evil = good_claims(",\"ksock\":{\"publish\":[\"*\"]}");
    char *evil_b64 = b64url(evil, strlen(evil));
    char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
    *d1 = '\0';
    char *forged = xprintf("%s.%s%s", tok, evil_b64, d2);
    refused_with(HS256_OPTS, forged, "bad signature");
    free(claims), free(tok), free(evil), free(evil_b64), free(forged);
    RT_LEAK_CHECK();
}

TEST(refuse_truncated_signature)
{
    char *claims = good_claims(""), *tok = hs256(claims);
    tok[strlen(tok) - 3] = '\0'; /* 40 characters: 30 bytes */
    refused_with(HS256_OPTS, tok, "bad signature (30 bytes");
    free(claims), free(tok);
    RT_LEAK_CHECK();
}

TEST(refuse_missing_signature)
{
    char *claims = good_claims(""), *tok = hs256(claims);
    strrchr(tok, '.')[1] = '\0';
    refused_with(HS256_OPTS, tok, "no signature");
    free(claims), free(tok);
    RT_LEAK_CHECK();
}

/* ==== refusals: times ================================================================= */

TEST(refuse_expired_beyond_leeway)
{
    long long now = now_s();
    char *c = xprintf("{\"sub\":\"alice\",\"iat\":%lld,\"exp\":%lld}", now - 600, now - 120);
    hs256_claims_refused(HS256_OPTS, c, "token expired");
    free(c);
    /* With no leeway, just expired is expired. */
    c = xprintf("{\"sub\":\"alice\",\"exp\":%lld}", now - 1);
    hs256_claims_refused("{\"secret\": \"" SECRET32 "\", \"leeway\": \"0s\"}", c, "expired");
    free(c);
    RT_LEAK_CHECK();
}

TEST(accept_expired_within_leeway)
{
    long long now = now_s();
    char *c = xprintf("{\"sub\":\"alice\",\"iat\":%lld,\"exp\":%lld}", now - 600, now - 10);
    char *tok = hs256(c);
    accepted(HS256_OPTS, tok);
    free(tok), free(c);
    /* nbf and iat just ahead are within leeway too. */
    c = xprintf("{\"sub\":\"alice\",\"nbf\":%lld,\"iat\":%lld,\"exp\":%lld}", now + 10, now + 10,
                now + 600);
    tok = hs256(c);
    accepted(HS256_OPTS, tok);
    free(tok), free(c);
    RT_LEAK_CHECK();
}

TEST(refuse_nbf_in_the_future)
{
    long long now = now_s();
    char *c = xprintf("{\"sub\":\"alice\",\"nbf\":%lld,\"exp\":%lld}", now + 120, now + 600);
    hs256_claims_refused(HS256_OPTS, c, "not valid yet");
    free(c);
    RT_LEAK_CHECK();
}

TEST(refuse_iat_in_the_future)
{
    long long now = now_s();
    char *c = xprintf("{\"sub\":\"alice\",\"iat\":%lld,\"exp\":%lld}", now + 120, now + 600);
    hs256_claims_refused(HS256_OPTS, c, "issued in the future");
    free(c);
    RT_LEAK_CHECK();
}

TEST(refuse_missing_exp_when_required)
{
    char *c = xprintf("{\"sub\":\"alice\",\"iat\":%lld}", now_s());
    hs256_claims_refused(HS256_OPTS, c, "no exp claim (require_exp is on)");
    char *tok = hs256(c);
    accepted("{\"secret\": \"" SECRET32 "\", \"require_exp\": false}", tok);
    free(tok), free(c);
    RT_LEAK_CHECK();
}

TEST(refuse_exp_not_a_number)
{
    char *c = xprintf("{\"sub\":\"alice\",\"exp\":\"%lld\"}", now_s() + 600);
    hs256_claims_refused(HS256_OPTS, c, "exp is not a number");
    free(c);
    RT_LEAK_CHECK();
}

TEST(refuse_lifetime_over_max_ttl)
{
    long long now = now_s();
    const char *opts = "{\"secret\": \"" SECRET32 "\", \"max_ttl\": \"1h\"}";
    char *c = xprintf("{\"sub\":\"alice\",\"iat\":%lld,\"exp\":%lld}", now, now + 7200);
    hs256_claims_refused(opts, c, "lifetime exp - iat of 7200 s exceeds max_ttl (3600 s)");
    free(c);
    c = xprintf("{\"sub\":\"alice\",\"exp\":%lld}", now + 60);
    hs256_claims_refused(opts, c, "no iat claim (max_ttl is set)");
    free(c);
    c = xprintf("{\"sub\":\"alice\",\"iat\":%lld,\"exp\":%lld}", now, now + 3600);
    char *tok = hs256(c);
    accepted(opts, tok);
    free(tok), free(c);
    RT_LEAK_CHECK();
}

/* ==== refusals: who ================================================================== */

#define ISS_OPTS "{\"secret\": \"" SECRET32 "\", \"issuer\": \"https://id.example\"}"
#define AUD_OPTS "{\"secret\": \"" SECRET32 "\", \"audience\": \"ksock\"}"

TEST(refuse_wrong_iss)
{
    char *c = good_claims(",\"iss\":\"https://evil.example\"");
    hs256_claims_refused(ISS_OPTS, c, "iss \"https://evil.example\" is not the configured issuer");
    free(c);
    c = good_claims(",\"iss\":\"https://id.example\"");
    char *tok = hs256(c);
    accepted(ISS_OPTS, tok);
    free(tok), free(c);
    RT_LEAK_CHECK();
}

TEST(refuse_missing_iss)
{
    char *c = good_claims("");
    hs256_claims_refused(ISS_OPTS, c, "no iss claim");
    free(c);
    RT_LEAK_CHECK();
}

TEST(refuse_wrong_aud_string)
{
    char *c = good_claims(",\"aud\":\"billing\"");
    hs256_claims_refused(AUD_OPTS, c, "aud does not name the configured audience");
    free(c);
    RT_LEAK_CHECK();
}

TEST(refuse_wrong_aud_array)
{
    char *c = good_claims(",\"aud\":[\"billing\",\"ksock2\",7]");
    hs256_claims_refused(AUD_OPTS, c, "aud does not name the configured audience");
    free(c);
    RT_LEAK_CHECK();
}

TEST(accept_aud_string_or_array_containing_it)
{
    char *c = good_claims(",\"aud\":[\"billing\",\"ksock\"]"), *tok = hs256(c);
    accepted(AUD_OPTS, tok);
    free(c), free(tok);
    c = good_claims(",\"aud\":\"ksock\"");
    tok = hs256(c);
    accepted(AUD_OPTS, tok);
    free(c), free(tok);
    RT_LEAK_CHECK();
}

TEST(refuse_missing_aud)
{
    char *c = good_claims("");
    hs256_claims_refused(AUD_OPTS, c, "no aud claim");
    free(c);
    RT_LEAK_CHECK();
}

/* RFC 7519 4.1.3: a token for some audience is not for a recipient that has none. */
TEST(refuse_aud_when_no_audience_configured)
{
    char *c = good_claims(",\"aud\":\"ksock\"");
    hs256_claims_refused(HS256_OPTS, c, "no audience is configured");
    free(c);
    RT_LEAK_CHECK();
}

TEST(refuse_missing_sub)
{
    long long now = now_s();
    char *c = xprintf("{\"name\":\"alice\",\"exp\":%lld}", now + 600);
    hs256_claims_refused(HS256_OPTS, c, "no sub claim");
    free(c);
    RT_LEAK_CHECK();
}

TEST(refuse_sub_not_a_string)
{
    long long now = now_s();
    char *c = xprintf("{\"sub\":42,\"exp\":%lld}", now + 600);
    hs256_claims_refused(HS256_OPTS, c, "sub is not a non-empty string");
    free(c);
    c = xprintf("{\"sub\":\"\",\"exp\":%lld}", now + 600);
    hs256_claims_refused(HS256_OPTS, c, "sub is not a non-empty string");
    free(c);
    RT_LEAK_CHECK();
}

/* ==== refusals: malformed ============================================================= */

TEST(refuse_two_parts)
{
    refused_with(HS256_OPTS, "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0", "malformed: a JWT is three");
    RT_LEAK_CHECK();
}

TEST(refuse_four_parts)
{
    char *claims = good_claims(""), *tok = hs256(claims), *t4 = xprintf("%s.AAAA", tok);
    refused_with(HS256_OPTS, t4, "malformed: a JWT is three");
    free(claims), free(tok), free(t4);
    RT_LEAK_CHECK();
}

TEST(refuse_bad_base64)
{
    char *claims = good_claims(""), *tok = hs256(claims);
    char *t = xprintf("%s", tok);
    t[3] = '+'; /* base64, not base64url */
    refused_with(HS256_OPTS, t, "the header is not base64url");
    free(t);
    t = xprintf("%s=", tok); /* padding */
    refused_with(HS256_OPTS, t, "the signature is not base64url");
    free(t);
    t = xprintf("%s", tok);
    strchr(t, '.')[1] = '!';
    refused_with(HS256_OPTS, t, "the claims part is not base64url");
    free(t), free(claims), free(tok);
    RT_LEAK_CHECK();
}

TEST(refuse_header_not_json)
{
    char *claims = good_claims("");
    char *tok = sign_hmac(GNUTLS_MAC_SHA256, SECRET32, 32, "{\"alg\":\"HS256\"", claims);
    refused_with(HS256_OPTS, tok, "the header is not JSON");
    free(tok), free(claims);
    RT_LEAK_CHECK();
}

TEST(refuse_header_not_an_object)
{
    char *claims = good_claims("");
    char *tok = sign_hmac(GNUTLS_MAC_SHA256, SECRET32, 32, "[\"HS256\"]", claims);
    refused_with(HS256_OPTS, tok, "the header is not a JSON object");
    free(tok);
    tok = sign_hmac(GNUTLS_MAC_SHA256, SECRET32, 32, "\"HS256\"", claims);
    refused_with(HS256_OPTS, tok, "the header is not a JSON object");
    free(tok), free(claims);
    RT_LEAK_CHECK();
}

TEST(refuse_claims_not_json)
{
    hs256_claims_refused(HS256_OPTS, "{\"sub\":\"alice\",", "the claims part is not JSON");
    hs256_claims_refused(HS256_OPTS, "{\"sub\":\"alice\"} trailing", "the claims part is not JSON");
    RT_LEAK_CHECK();
}

TEST(refuse_claims_not_an_object)
{
    hs256_claims_refused(HS256_OPTS, "[\"alice\"]", "the claims part is not a JSON object");
    RT_LEAK_CHECK();
}

TEST(refuse_duplicate_claim)
{
    long long now = now_s();
    char *c = xprintf("{\"sub\":\"alice\",\"exp\":%lld,\"sub\":\"root\"}", now + 600);
    hs256_claims_refused(HS256_OPTS, c, "duplicate key");
    free(c);
    RT_LEAK_CHECK();
}

TEST(refuse_invalid_utf8_claim)
{
    long long now = now_s();
    char *c = xprintf("{\"sub\":\"al\xff\xfeice\",\"exp\":%lld}", now + 600);
    hs256_claims_refused(HS256_OPTS, c, "the claims part is not JSON");
    free(c);
    RT_LEAK_CHECK();
}

TEST(refuse_empty_token)
{
    refused_with(HS256_OPTS, "", "empty token");
    refused_with(HS256_OPTS, "..", "malformed: the header is empty");
    RT_LEAK_CHECK();
}

/* Refused on its length alone, before any parsing: the same size of junk gives the same answer. */
TEST(refuse_oversized_token)
{
    char *pad = xprintf(",\"pad\":\"%09000d\"", 0);
    char *c = good_claims(pad), *tok = hs256(c);
    refused_with(HS256_OPTS, tok, "longer than max_token_size (8192)");
    char *junk = malloc(9001);
    memset(junk, '.', 9000);
    junk[9000] = '\0';
    refused_with(HS256_OPTS, junk, "longer than max_token_size (8192)");
    /* And through the query, percent-encoded or not. */
    at_t a = at_open(HS256_OPTS);
    char *q = xprintf("token=%s", tok);
    auth_refused(&a, NULL, NULL, q, "longer than max_token_size");
    at_close(&a);
    /* A larger bound accepts it. */
    accepted("{\"secret\": \"" SECRET32 "\", \"max_token_size\": \"16KiB\"}", tok);
    free(pad), free(c), free(tok), free(junk), free(q);
    RT_LEAK_CHECK();
}

/* 100 KB, a correctly signed token: refused on length even at the largest max_token_size. */
TEST(refuse_100kb_token)
{
    char *pad = xprintf(",\"pad\":\"%0100000d\"", 0);
    char *c = good_claims(pad), *tok = hs256(c);
    ASSERT_GT(strlen(tok), 100 * 1024);
    const char *big = "{\"secret\": \"" SECRET32 "\", \"max_token_size\": \"64KiB\"}";
    refused_with(HS256_OPTS, tok, "longer than max_token_size (8192)");
    refused_with(big, tok, "longer than max_token_size (65536)");
    at_t a = at_open(big);
    char *bearer = xprintf("Bearer %s", tok), *q = xprintf("token=%s", tok);
    auth_refused(&a, "authorization", bearer, NULL, "longer than max_token_size (65536)");
    auth_refused(&a, NULL, NULL, q, "longer than max_token_size");
    at_close(&a);
    free(pad), free(c), free(tok), free(bearer), free(q);
    RT_LEAK_CHECK();
}

/* No crash, no leak, and nothing but 0 or KSOCK_E_AUTH on mangled tokens. */
TEST(mangled_tokens_never_crash)
{
    at_t a = at_open(HS256_OPTS);
    char *claims = good_claims(",\"ksock\":{\"subscribe\":[\"a.*\"]}"), *tok = hs256(claims);
    size_t n = strlen(tok);
    char *t = malloc(n + 2), err[512];
    uint64_t x = 0x9E3779B97F4A7C15ull;
    int accepted_n = 0;
    for (int i = 0; i < 4000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        memcpy(t, tok, n + 1);
        size_t at = (size_t)(x % n);
        switch ((x >> 32) % 4) {
        case 0:
            t[at] = (char)(x >> 40);
            if (t[at] == '\0') t[at] = 'A';
            break;
        case 1:
            t[at] = '\0';
            break;
        case 2:
            memmove(t + at, t + at + 1, n - at);
            break;
        default:
            t[at] = "._-A0{}\"="[(x >> 48) % 9];
        }
        int rc = validate(&a, t, err);
        if (rc == 0)
            accepted_n++;
        else
            ASSERT_EQ(rc, KSOCK_E_AUTH);
    }
    /* A mutation can be a no-op (a character replaced by itself); almost none are accepted. */
    ASSERT_LT(accepted_n, 100);
    free(t), free(claims), free(tok);
    at_close(&a);
    RT_LEAK_CHECK();
}

/* ==== thread safety =================================================================== */

typedef struct th_arg_s {
    at_t *a;
    const char *header;
    int failures;
} th_arg_t;

static void *auth_thread(void *arg)
{
    th_arg_t *t = arg;
    for (int i = 0; i < 300; i++) {
        ksock_principal_t *p;
        char err[512];
        if (authenticate(t->a, "authorization", t->header, NULL, &p, err) != 0) {
            t->failures++;
            continue;
        }
        if (!ksock_principal_can(p, "a.b", KSOCK_PERM_SUBSCRIBE)) t->failures++;
        ksock_principal_free(p);
    }
    return NULL;
}

TEST(authenticate_from_many_threads)
{
    at_t a = at_open(HS256_OPTS);
    char *claims = good_claims(",\"ksock\":{\"subscribe\":[\"a.*\"]}"), *tok = hs256(claims);
    char *h = xprintf("Bearer %s", tok);
    pthread_t th[8];
    th_arg_t args[8];
    for (int i = 0; i < 8; i++) {
        args[i] = (th_arg_t){&a, h, 0};
        ASSERT_OK(pthread_create(&th[i], NULL, auth_thread, &args[i]));
    }
    for (int i = 0; i < 8; i++) {
        ASSERT_OK(pthread_join(th[i], NULL));
        ASSERT_EQ(args[i].failures, 0);
    }
    free(claims), free(tok), free(h);
    at_close(&a);
    RT_LEAK_CHECK();
}

/* ==== create-time refusals ============================================================ */

TEST(create_refuses_no_secret)
{
    at_refused("{}", "HS256 needs a secret");
    RT_LEAK_CHECK();
}

TEST(create_refuses_short_secret)
{
    at_refused("{\"secret\": \"0123456789abcdef0123456789abcde\"}",
               "the secret is 31 bytes; HS256 needs at least 32");
    at_refused("{\"algorithm\": \"HS512\", \"secret\": \"" SECRET48 "\"}",
               "the secret is 48 bytes; HS512 needs at least 64");
    RT_LEAK_CHECK();
}

TEST(create_secret_from_file_and_env)
{
    keys_t k;
    keys_init(&k);
    char *path = keys_path(&k, "secret");
    FILE *f = fopen(path, "w");
    fprintf(f, "%s\n", SECRET32);
    fclose(f);
    char *opts = xprintf("{\"secret.file\": \"%s\"}", path);
    char *claims = good_claims(""), *tok = hs256(claims);
    accepted(opts, tok);
    setenv("KSOCK_TEST_JWT_SECRET", SECRET32, 1);
    accepted("{\"secret.env\": \"KSOCK_TEST_JWT_SECRET\"}", tok);
    at_refused("{\"secret.env\": \"KSOCK_TEST_JWT_NOT_SET\"}",
               "environment variable \"KSOCK_TEST_JWT_NOT_SET\" is not set");
    char *both = xprintf("{\"secret.file\": \"%s\", \"secret\": \"%s\"}", path, SECRET32);
    at_refused(both, "given more than one way");
    char *missing = xprintf("{\"secret.file\": \"%s/nope\"}", k.dir),
         *want = xprintf("cannot read \"%s/nope\"", k.dir);
    at_refused(missing, want);
    free(path), free(opts), free(claims), free(tok), free(both), free(missing), free(want);
    keys_done(&k);
    RT_LEAK_CHECK();
}

TEST(create_refuses_missing_public_key)
{
    at_refused("{\"algorithm\": \"RS256\"}", "RS256 needs public_key");
    at_refused("{\"algorithm\": \"ES256\", \"secret\": \"" SECRET32 "\"}", "secret is for HS*");
    RT_LEAK_CHECK();
}

TEST(create_refuses_unreadable_key_file)
{
    at_refused("{\"algorithm\": \"RS256\", \"public_key\": \"/nonexistent/jwt.pub\"}",
               "public_key: cannot read \"/nonexistent/jwt.pub\": No such file or directory");
    keys_t k;
    keys_init(&k);
    keys_make(&k, "rsa", "rsa");
    char *opts = xprintf("{\"algorithm\": \"RS256\", \"public_key\": \"%s/rsa.pub\", "
                         "\"private_key\": \"/nonexistent/jwt.key\"}",
                         k.dir);
    at_refused(opts, "private_key: cannot read \"/nonexistent/jwt.key\"");
    free(opts);
    opts = xprintf("{\"algorithm\": \"RS256\", \"public_key\": \"%s\"}", k.dir);
    at_refused(opts, "is not a regular file");
    free(opts);
    keys_done(&k);
    RT_LEAK_CHECK();
}

TEST(create_refuses_non_pem_key)
{
    keys_t k;
    keys_init(&k);
    char *path = keys_path(&k, "junk.pub");
    FILE *f = fopen(path, "w");
    fprintf(f, "this is not a key\n");
    fclose(f);
    char *opts = xprintf("{\"algorithm\": \"ES256\", \"public_key\": \"%s\"}", path);
    at_refused(opts, "not a PEM public key");
    free(path), free(opts);
    keys_done(&k);
    RT_LEAK_CHECK();
}

TEST(create_refuses_wrong_key_type)
{
    keys_t k;
    keys_init(&k);
    keys_make(&k, "ec", "secp256r1");
    keys_make(&k, "p384", "secp384r1");
    keys_make(&k, "rsa", "rsa");
    char *o1 = pk_opts(&k, "RS256", "ec", false), *o2 = pk_opts(&k, "ES256", "rsa", false),
         *o3 = pk_opts(&k, "ES256", "p384", false), *o4 = pk_opts(&k, "ES384", "p384", false);
    at_refused(o1, "RS256 needs an RSA key");
    at_refused(o2, "ES256 needs an EC key");
    at_refused(o3, "an EC key on SECP384R1, ES256 needs SECP256R1");
    at_t a = at_open(o4);
    at_close(&a);
    /* A private key of the wrong type, and one that is not the public key's. */
    char *o5 = xprintf("{\"algorithm\": \"ES256\", \"public_key\": \"%s/ec.pub\", "
                       "\"private_key\": \"%s/rsa.key\"}",
                       k.dir, k.dir);
    at_refused(o5, "private_key");
    keys_make(&k, "ec2", "secp256r1");
    char *o6 = xprintf("{\"algorithm\": \"ES256\", \"public_key\": \"%s/ec.pub\", "
                       "\"private_key\": \"%s/ec2.key\"}",
                       k.dir, k.dir);
    at_refused(o6, "does not belong to public_key");
    free(o1), free(o2), free(o3), free(o4), free(o5), free(o6);
    keys_done(&k);
    RT_LEAK_CHECK();
}

TEST(create_refuses_key_options_with_hs)
{
    at_refused("{\"secret\": \"" SECRET32 "\", \"public_key\": \"/x.pub\"}",
               "public_key and private_key are for RS*/ES*");
    RT_LEAK_CHECK();
}

TEST(create_refuses_bad_options)
{
    at_refused("{\"secret\": \"" SECRET32 "\", \"token_sources\": [\"cookie\"]}",
               "token_sources: \"cookie\" is not one of");
    at_refused("{\"secret\": \"" SECRET32 "\", \"token_sources\": [\"query\", \"query\"]}",
               "listed twice");
    at_refused("{\"secret\": \"" SECRET32 "\", \"token_sources\": []}", "token_sources");
    at_refused("{\"secret\": \"" SECRET32 "\", \"algorithm\": \"none\"}", "algorithm");
    at_refused("{\"secret\": \"" SECRET32 "\", \"algorithm\": \"PS256\"}", "algorithm");
    at_refused("{\"secret\": \"" SECRET32 "\", \"leway\": \"30s\"}", "unknown key");
    at_refused("{\"secret\": \"" SECRET32 "\", \"max_ttl\": \"1h\", \"default_ttl\": \"2h\"}",
               "default_ttl (7200000 ms) exceeds max_ttl");
    at_refused("{\"secret\": \"" SECRET32 "\", \"permissions_claim\": \"\"}",
               "permissions_claim must not be empty");
    RT_LEAK_CHECK();
}

TEST_LIST(
    TEST_ENTRY(hs256_round_trip), TEST_ENTRY(hs384_round_trip), TEST_ENTRY(hs512_round_trip),
    TEST_ENTRY(rs256_round_trip), TEST_ENTRY(rs512_round_trip), TEST_ENTRY(es256_round_trip),
    TEST_ENTRY(es384_round_trip), TEST_ENTRY(es512_round_trip),
    TEST_ENTRY(generate_sets_iss_aud_ttl_and_permissions),
    TEST_ENTRY(generate_refuses_bad_user_details), TEST_ENTRY(authenticate_bearer_header),
    TEST_ENTRY(authenticate_query_percent_encoded), TEST_ENTRY(authenticate_x_ksock_token_header),
    TEST_ENTRY(authenticate_no_token), TEST_ENTRY(authenticate_basic_header_is_not_a_token),
    TEST_ENTRY(authenticate_first_present_source_decides),
    TEST_ENTRY(authenticate_query_bad_percent_encoding), TEST_ENTRY(authenticate_query_token_twice),
    TEST_ENTRY(permissions_claim_maps_to_principal),
    TEST_ENTRY(exp_far_in_the_future_never_expires),
    TEST_ENTRY(no_permissions_claim_means_no_permissions),
    TEST_ENTRY(permissions_claim_name_is_configurable),
    TEST_ENTRY(refuse_permissions_claim_not_an_object),
    TEST_ENTRY(refuse_permissions_list_not_an_array), TEST_ENTRY(refuse_permission_bad_pattern),
    TEST_ENTRY(refuse_alg_none), TEST_ENTRY(refuse_alg_none_any_spelling_any_form),
    TEST_ENTRY(refuse_key_confusion_hs256_signed_with_public_key),
    TEST_ENTRY(refuse_other_hmac_alg), TEST_ENTRY(refuse_header_without_alg),
    TEST_ENTRY(refuse_duplicate_alg_in_header), TEST_ENTRY(refuse_crit_header),
    TEST_ENTRY(refuse_typ_not_jwt), TEST_ENTRY(refuse_wrong_secret),
    TEST_ENTRY(refuse_tampered_payload), TEST_ENTRY(refuse_truncated_signature),
    TEST_ENTRY(refuse_missing_signature), TEST_ENTRY(refuse_expired_beyond_leeway),
    TEST_ENTRY(accept_expired_within_leeway), TEST_ENTRY(refuse_nbf_in_the_future),
    TEST_ENTRY(refuse_iat_in_the_future), TEST_ENTRY(refuse_missing_exp_when_required),
    TEST_ENTRY(refuse_exp_not_a_number), TEST_ENTRY(refuse_lifetime_over_max_ttl),
    TEST_ENTRY(refuse_wrong_iss), TEST_ENTRY(refuse_missing_iss),
    TEST_ENTRY(refuse_wrong_aud_string), TEST_ENTRY(refuse_wrong_aud_array),
    TEST_ENTRY(accept_aud_string_or_array_containing_it), TEST_ENTRY(refuse_missing_aud),
    TEST_ENTRY(refuse_aud_when_no_audience_configured), TEST_ENTRY(refuse_missing_sub),
    TEST_ENTRY(refuse_sub_not_a_string), TEST_ENTRY(refuse_two_parts),
    TEST_ENTRY(refuse_four_parts), TEST_ENTRY(refuse_bad_base64),
    TEST_ENTRY(refuse_header_not_json), TEST_ENTRY(refuse_header_not_an_object),
    TEST_ENTRY(refuse_claims_not_json), TEST_ENTRY(refuse_claims_not_an_object),
    TEST_ENTRY(refuse_duplicate_claim), TEST_ENTRY(refuse_invalid_utf8_claim),
    TEST_ENTRY(refuse_empty_token), TEST_ENTRY(refuse_oversized_token),
    TEST_ENTRY(refuse_100kb_token), TEST_ENTRY(mangled_tokens_never_crash),
    TEST_ENTRY(authenticate_from_many_threads), TEST_ENTRY(create_refuses_no_secret),
    TEST_ENTRY(create_refuses_short_secret), TEST_ENTRY(create_secret_from_file_and_env),
    TEST_ENTRY(create_refuses_missing_public_key), TEST_ENTRY(create_refuses_unreadable_key_file),
    TEST_ENTRY(create_refuses_non_pem_key), TEST_ENTRY(create_refuses_wrong_key_type),
    TEST_ENTRY(create_refuses_key_options_with_hs), TEST_ENTRY(create_refuses_bad_options))
