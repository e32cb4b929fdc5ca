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
 * Issuing: libjwt signs HS* and RS*. Its GnuTLS ES* signer in 1.10.2 emits
 * R and S zero-padded to twice their size (128 bytes for ES256), which no
 * other implementation accepts, so ES* signatures are made with GnuTLS
 * directly in the JWS form (R || S, RFC 7518 §3.4).
 *
 * The instance is immutable after create(): authenticate() and
 * validate_token() are thread-safe and do no I/O.
 */
#include "jwt_internal.h"

#include <ksock/auth.h>
#include <ksock/runtime.h>

#include <errno.h>
#include <fcntl.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <jwt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_FILE_MAX (64 * 1024)

/* ---- Algorithms ---------------------------------------------------------- */

typedef struct alg_info_s {
    const char *name;
    jwt_alg_t jalg;
    char family; /* 'H' HMAC, 'R' RSA PKCS#1 v1.5, 'E' ECDSA */
    gnutls_digest_algorithm_t dig;
    gnutls_ecc_curve_t curve;
    size_t size; /* H: hash bytes (minimum key, signature size); E: bytes of R and of S */
} alg_info_t;

static const alg_info_t algs[] = {
    {"HS256", JWT_ALG_HS256, 'H', GNUTLS_DIG_SHA256, GNUTLS_ECC_CURVE_INVALID, 32},
    {"HS384", JWT_ALG_HS384, 'H', GNUTLS_DIG_SHA384, GNUTLS_ECC_CURVE_INVALID, 48},
    {"HS512", JWT_ALG_HS512, 'H', GNUTLS_DIG_SHA512, GNUTLS_ECC_CURVE_INVALID, 64},
    {"RS256", JWT_ALG_RS256, 'R', GNUTLS_DIG_SHA256, GNUTLS_ECC_CURVE_INVALID, 0},
    {"RS384", JWT_ALG_RS384, 'R', GNUTLS_DIG_SHA384, GNUTLS_ECC_CURVE_INVALID, 0},
    {"RS512", JWT_ALG_RS512, 'R', GNUTLS_DIG_SHA512, GNUTLS_ECC_CURVE_INVALID, 0},
    {"ES256", JWT_ALG_ES256, 'E', GNUTLS_DIG_SHA256, GNUTLS_ECC_CURVE_SECP256R1, 32},
    {"ES384", JWT_ALG_ES384, 'E', GNUTLS_DIG_SHA384, GNUTLS_ECC_CURVE_SECP384R1, 48},
    {"ES512", JWT_ALG_ES512, 'E', GNUTLS_DIG_SHA512, GNUTLS_ECC_CURVE_SECP521R1, 66},
};

static const char *const alg_names[] = {"HS256", "HS384", "HS512", "RS256", "RS384",
                                        "RS512", "ES256", "ES384", "ES512", NULL};

/* ---- Options ------------------------------------------------------------- */

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
} jwt_opts_t;

#define DAY_MS (24 * 3600 * 1000LL)

static const ksock_option_t jwt_options[] = {
    KSOCK_OPTION_ENUM("algorithm", 0, "HS256", jwt_opts_t, algorithm, alg_names,
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
    KSOCK_OPTION_END,
};

/* ---- The instance -------------------------------------------------------- */

typedef enum { SRC_HEADER, SRC_QUERY, SRC_XTOKEN } src_t;

typedef struct jwt_auth_s {
    const jwt_opts_t *o; /* borrowed: valid until destroy returns */
    const alg_info_t *alg;
    unsigned char *vkey; /* verifies: the secret, or the public key PEM */
    size_t vkey_len;
    unsigned char *skey; /* signs: the secret again, or the private key PEM; NULL: cannot */
    size_t skey_len;
    size_t sig_len; /* the exact signature size for this key */
    src_t sources[3];
    size_t nsources;
} jwt_auth_t;

static void scrub_free(unsigned char *p, size_t n)
{
    if (p == NULL) return;
    volatile unsigned char *v = p;
    for (size_t i = 0; i < n; i++)
        v[i] = 0;
    free(p);
}

static void jwt_destroy(void *inst)
{
    jwt_auth_t *a = inst;
    if (a == NULL) return;
    if (a->skey != a->vkey) scrub_free(a->skey, a->skey_len);
    scrub_free(a->vkey, a->vkey_len);
    free(a);
}

/* Read a whole key or secret file (NUL-terminated); the message names the file. */
static int read_file(const char *what, const char *path, unsigned char **out, size_t *out_len,
                     char *errstr, size_t errstr_size)
{
    /* O_NONBLOCK: open() on a FIFO would wait for a writer forever; S_ISREG refuses it below. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        ksock_errstr_set(errstr, errstr_size, "%s: cannot read \"%s\": %s", what, path,
                         strerror(errno));
        if (fd >= 0) close(fd);
        return KSOCK_E_CONFIG;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > KEY_FILE_MAX) {
        ksock_errstr_set(errstr, errstr_size, "%s: \"%s\" is %s", what, path,
                         S_ISREG(st.st_mode) ? "larger than 64 KiB" : "not a regular file");
        close(fd);
        return KSOCK_E_CONFIG;
    }
    unsigned char *buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        close(fd);
        return KSOCK_E_NOMEM;
    }
    size_t n = 0;
    while (n < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + n, (size_t)st.st_size - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return 0;
}

/* HS*: exactly one of secret, secret.file, secret.env, and long enough. */
static int load_secret(jwt_auth_t *a, char *errstr, size_t errstr_size)
{
    const jwt_opts_t *o = a->o;
    int given = (o->secret != NULL) + (o->secret_file != NULL) + (o->secret_env != NULL);
    if (given == 0) {
        ksock_errstr_set(errstr, errstr_size,
                         "%s needs a secret: set secret.file, secret.env or secret", a->alg->name);
        return KSOCK_E_CONFIG;
    }
    if (given > 1) {
        ksock_errstr_set(errstr, errstr_size,
                         "the secret is given more than one way (secret, secret.file, "
                         "secret.env): keep one");
        return KSOCK_E_CONFIG;
    }
    const char *text = o->secret;
    if (o->secret_env) {
        text = getenv(o->secret_env);
        if (text == NULL) {
            ksock_errstr_set(errstr, errstr_size,
                             "secret.env: environment variable \"%s\" is not set", o->secret_env);
            return KSOCK_E_CONFIG;
        }
    }
    if (o->secret_file) {
        int rc =
            read_file("secret.file", o->secret_file, &a->vkey, &a->vkey_len, errstr, errstr_size);
        if (rc != 0) return rc;
        while (a->vkey_len > 0 &&
               (a->vkey[a->vkey_len - 1] == '\n' || a->vkey[a->vkey_len - 1] == '\r'))
            a->vkey[--a->vkey_len] = '\0';
    } else {
        a->vkey_len = strlen(text);
        a->vkey = malloc(a->vkey_len + 1);
        if (a->vkey == NULL) return KSOCK_E_NOMEM;
        memcpy(a->vkey, text, a->vkey_len + 1);
    }
    if (a->vkey_len < a->alg->size) {
        ksock_errstr_set(errstr, errstr_size,
                         "the secret is %zu bytes; %s needs at least %zu (RFC 7518 3.2: a key as "
                         "long as the hash output, or it can be brute-forced from one token)",
                         a->vkey_len, a->alg->name, a->alg->size);
        return KSOCK_E_CONFIG;
    }
    a->skey = a->vkey;
    a->skey_len = a->vkey_len;
    a->sig_len = a->alg->size;
    return 0;
}

/*
 * The key type must fit the algorithm: RSA of at least 2048 bits for RS*
 * (RFC 7518 3.3), ECDSA on the algorithm's own curve for ES*.
 */
static int check_key_type(const jwt_auth_t *a, const char *what, const char *path, int pk,
                          unsigned bits, gnutls_ecc_curve_t curve, char *errstr, size_t errstr_size)
{
    if (a->alg->family == 'R') {
        if (pk != GNUTLS_PK_RSA) {
            ksock_errstr_set(errstr, errstr_size, "%s \"%s\": a %s key, %s needs an RSA key", what,
                             path, gnutls_pk_algorithm_get_name(pk), a->alg->name);
            return KSOCK_E_CONFIG;
        }
        if (bits < 2048) {
            ksock_errstr_set(errstr, errstr_size,
                             "%s \"%s\": RSA key of %u bits, %s needs at least 2048 (RFC 7518 3.3)",
                             what, path, bits, a->alg->name);
            return KSOCK_E_CONFIG;
        }
        return 0;
    }
    if (pk != GNUTLS_PK_ECDSA) {
        ksock_errstr_set(errstr, errstr_size, "%s \"%s\": a %s key, %s needs an EC key on %s", what,
                         path, gnutls_pk_algorithm_get_name(pk), a->alg->name,
                         gnutls_ecc_curve_get_name(a->alg->curve));
        return KSOCK_E_CONFIG;
    }
    if (curve != a->alg->curve) {
        ksock_errstr_set(errstr, errstr_size, "%s \"%s\": an EC key on %s, %s needs %s", what, path,
                         gnutls_ecc_curve_get_name(curve), a->alg->name,
                         gnutls_ecc_curve_get_name(a->alg->curve));
        return KSOCK_E_CONFIG;
    }
    return 0;
}

static gnutls_ecc_curve_t pubkey_curve(gnutls_pubkey_t pub)
{
    gnutls_ecc_curve_t curve = GNUTLS_ECC_CURVE_INVALID;
    gnutls_datum_t x = {NULL, 0}, y = {NULL, 0};
    if (gnutls_pubkey_export_ecc_raw2(pub, &curve, &x, &y, 0) != 0)
        curve = GNUTLS_ECC_CURVE_INVALID;
    gnutls_free(x.data);
    gnutls_free(y.data);
    return curve;
}

/* Import a PEM public key; *pub is the caller's (gnutls_pubkey_deinit). */
static int import_pubkey(const jwt_auth_t *a, gnutls_pubkey_t *pub, char *errstr,
                         size_t errstr_size)
{
    gnutls_datum_t pem = {a->vkey, (unsigned)a->vkey_len};
    if (gnutls_pubkey_init(pub) != 0) return KSOCK_E_NOMEM;
    int rc = gnutls_pubkey_import(*pub, &pem, GNUTLS_X509_FMT_PEM);
    if (rc != 0) {
        ksock_errstr_set(errstr, errstr_size,
                         "public_key \"%s\": not a PEM public key (-----BEGIN PUBLIC KEY-----): %s",
                         a->o->public_key, gnutls_strerror(rc));
        gnutls_pubkey_deinit(*pub);
        *pub = NULL;
        return KSOCK_E_CONFIG;
    }
    return 0;
}

static int load_public_key(jwt_auth_t *a, char *errstr, size_t errstr_size)
{
    int rc = read_file("public_key", a->o->public_key, &a->vkey, &a->vkey_len, errstr, errstr_size);
    if (rc != 0) return rc;
    gnutls_pubkey_t pub;
    rc = import_pubkey(a, &pub, errstr, errstr_size);
    if (rc != 0) return rc;
    unsigned bits = 0;
    int pk = gnutls_pubkey_get_pk_algorithm(pub, &bits);
    gnutls_ecc_curve_t curve = pk == GNUTLS_PK_ECDSA ? pubkey_curve(pub) : GNUTLS_ECC_CURVE_INVALID;
    gnutls_pubkey_deinit(pub);
    rc = check_key_type(a, "public_key", a->o->public_key, pk, bits, curve, errstr, errstr_size);
    if (rc != 0) return rc;
    a->sig_len = a->alg->family == 'R' ? (bits + 7) / 8 : 2 * a->alg->size;
    return 0;
}

/* The private key must fit the algorithm and belong to the public key. */
static int load_private_key(jwt_auth_t *a, char *errstr, size_t errstr_size)
{
    const char *path = a->o->private_key;
    int rc = read_file("private_key", path, &a->skey, &a->skey_len, errstr, errstr_size);
    if (rc != 0) return rc;
    gnutls_privkey_t priv = NULL;
    gnutls_pubkey_t derived = NULL, pub = NULL;
    gnutls_datum_t pem = {a->skey, (unsigned)a->skey_len}, d1 = {NULL, 0}, d2 = {NULL, 0};
    if (gnutls_privkey_init(&priv) != 0 || gnutls_pubkey_init(&derived) != 0) {
        rc = KSOCK_E_NOMEM;
        goto out;
    }
    int grc = gnutls_privkey_import_x509_raw(priv, &pem, GNUTLS_X509_FMT_PEM, NULL, 0);
    if (grc != 0) {
        ksock_errstr_set(errstr, errstr_size,
                         "private_key \"%s\": not an unencrypted PEM private key: %s", path,
                         gnutls_strerror(grc));
        rc = KSOCK_E_CONFIG;
        goto out;
    }
    unsigned bits = 0;
    int pk = gnutls_privkey_get_pk_algorithm(priv, &bits);
    if (gnutls_pubkey_import_privkey(derived, priv, 0, 0) != 0) {
        ksock_errstr_set(errstr, errstr_size, "private_key \"%s\": cannot derive its public key",
                         path);
        rc = KSOCK_E_CONFIG;
        goto out;
    }
    gnutls_ecc_curve_t curve =
        pk == GNUTLS_PK_ECDSA ? pubkey_curve(derived) : GNUTLS_ECC_CURVE_INVALID;
    rc = check_key_type(a, "private_key", path, pk, bits, curve, errstr, errstr_size);
    if (rc != 0) goto out;
    rc = import_pubkey(a, &pub, errstr, errstr_size);
    if (rc != 0) goto out;
    if (gnutls_pubkey_export2(derived, GNUTLS_X509_FMT_DER, &d1) != 0 ||
        gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &d2) != 0 || d1.size != d2.size ||
        memcmp(d1.data, d2.data, d1.size) != 0) {
        ksock_errstr_set(errstr, errstr_size,
                         "private_key \"%s\" does not belong to public_key \"%s\": tokens it "
                         "signed would be refused",
                         path, a->o->public_key);
        rc = KSOCK_E_CONFIG;
    }
out:
    gnutls_free(d1.data);
    gnutls_free(d2.data);
    if (pub) gnutls_pubkey_deinit(pub);
    if (derived) gnutls_pubkey_deinit(derived);
    if (priv) gnutls_privkey_deinit(priv);
    return rc;
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
            if (a->sources[j] == (src_t)k) {
                ksock_errstr_set(errstr, errstr_size, "token_sources: \"%s\" is listed twice",
                                 l->v[i]);
                return KSOCK_E_CONFIG;
            }
        }
        a->sources[a->nsources++] = (src_t)k;
    }
    return 0;
}

static int jwt_create(const ksock_plugin_ctx_t *ctx, const void *options, void **inst, char *errstr,
                      size_t errstr_size)
{
    (void)ctx;
    const jwt_opts_t *o = options;
    jwt_auth_t *a = calloc(1, sizeof(*a));
    if (a == NULL) return KSOCK_E_NOMEM;
    a->o = o;
    a->alg = &algs[o->algorithm];
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
    if (rc == 0 && a->alg->family == 'H') {
        if (o->public_key || o->private_key) {
            ksock_errstr_set(errstr, errstr_size,
                             "public_key and private_key are for RS*/ES*; %s uses a secret",
                             a->alg->name);
            rc = KSOCK_E_CONFIG;
        } else {
            rc = load_secret(a, errstr, errstr_size);
        }
    } else if (rc == 0) {
        if (o->secret || o->secret_file || o->secret_env) {
            ksock_errstr_set(errstr, errstr_size,
                             "secret is for HS*; %s verifies with public_key (a PEM file)",
                             a->alg->name);
            rc = KSOCK_E_CONFIG;
        } else if (o->public_key == NULL) {
            ksock_errstr_set(errstr, errstr_size,
                             "%s needs public_key (a PEM file) to verify tokens", a->alg->name);
            rc = KSOCK_E_CONFIG;
        } else {
            rc = load_public_key(a, errstr, errstr_size);
            if (rc == 0 && o->private_key) rc = load_private_key(a, errstr, errstr_size);
        }
    }
    if (rc != 0) {
        jwt_destroy(a);
        return rc;
    }
    *inst = a;
    return 0;
}

/* ---- Checking a token ------------------------------------------------------ */

/* Every refusal of a token is KSOCK_E_AUTH with its reason. */
static int refuse(char *errstr, size_t errstr_size, const char *fmt, ...) KSOCK_PRINTF(3, 4);
static int refuse(char *errstr, size_t errstr_size, const char *fmt, ...)
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
static const char *printable(const ksock_value_t *v, char *buf, size_t size)
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

static bool is_string(const ksock_value_t *v)
{
    return v != NULL && ksock_value_type(v) == KSOCK_VALUE_STRING;
}

/* Decode and parse one part; it must be a JSON object. */
static int parse_part(const char *what, const char *s, size_t n, ksock_value_t **out, char *errstr,
                      size_t errstr_size)
{
    unsigned char *raw;
    size_t raw_len;
    if (n == 0) return refuse(errstr, errstr_size, "malformed: the %s is empty", what);
    int rc = ksock__jwt_b64url_decode(s, n, &raw, &raw_len);
    if (rc == KSOCK_E_NOMEM) return rc;
    if (rc != 0) return refuse(errstr, errstr_size, "malformed: the %s is not base64url", what);
    char why[160];
    rc = ksock__jwt_json_parse(raw, raw_len, out, why, sizeof(why));
    free(raw);
    if (rc != 0)
        return refuse(errstr, errstr_size, "malformed: the %s is not JSON (%s)", what, why);
    if (ksock_value_type(*out) != KSOCK_VALUE_MAP) {
        ksock_value_unref(*out);
        *out = NULL;
        return refuse(errstr, errstr_size, "malformed: the %s is not a JSON object", what);
    }
    return 0;
}

static int check_header(const jwt_auth_t *a, const ksock_value_t *h, char *errstr,
                        size_t errstr_size)
{
    char buf[24];
    const ksock_value_t *alg = ksock_value_map_get(h, "alg");
    if (!is_string(alg)) return refuse(errstr, errstr_size, "the header has no alg");
    const char *name = ksock_value_get_string(alg, NULL);
    if (strcasecmp(name, "none") == 0)
        return refuse(errstr, errstr_size, "alg none refused: unsigned tokens are never accepted");
    if (strcmp(name, a->alg->name) != 0)
        return refuse(errstr, errstr_size, "alg %s refused: this authenticator is pinned to %s",
                      printable(alg, buf, sizeof(buf)), a->alg->name);
    const ksock_value_t *typ = ksock_value_map_get(h, "typ");
    if (typ && (!is_string(typ) || strcasecmp(ksock_value_get_string(typ, NULL), "JWT") != 0))
        return refuse(errstr, errstr_size, "typ %s refused: JWT expected",
                      printable(typ, buf, sizeof(buf)));
    if (ksock_value_map_get(h, "crit"))
        return refuse(errstr, errstr_size, "crit header refused: no JWS extension is understood");
    return 0;
}

/* A NumericDate claim: absent (0, *present false), a finite number, or a refusal. */
static int date_claim(const ksock_value_t *claims, const char *name, bool *present, double *out,
                      char *errstr, size_t errstr_size)
{
    const ksock_value_t *v = ksock_value_map_get(claims, name);
    *present = v != NULL;
    *out = 0;
    if (v == NULL) return 0;
    if (ksock_value_type(v) == KSOCK_VALUE_INT) {
        *out = (double)ksock_value_get_int(v);
    } else if (ksock_value_type(v) == KSOCK_VALUE_DOUBLE && isfinite(ksock_value_get_double(v))) {
        *out = ksock_value_get_double(v);
    } else {
        return refuse(errstr, errstr_size, "%s is not a number of seconds", name);
    }
    return 0;
}

static int check_times(const jwt_auth_t *a, const ksock_value_t *claims, char *errstr,
                       size_t errstr_size)
{
    const jwt_opts_t *o = a->o;
    double now = (double)ksock_wallclock_ns() / 1e9, leeway = (double)o->leeway / 1000.0;
    bool has_exp, has_nbf, has_iat;
    double exp, nbf, iat;
    int rc = date_claim(claims, "exp", &has_exp, &exp, errstr, errstr_size);
    if (rc == 0) rc = date_claim(claims, "nbf", &has_nbf, &nbf, errstr, errstr_size);
    if (rc == 0) rc = date_claim(claims, "iat", &has_iat, &iat, errstr, errstr_size);
    if (rc != 0) return rc;
    if (!has_exp && o->require_exp)
        return refuse(errstr, errstr_size, "no exp claim (require_exp is on)");
    if (has_exp && now >= exp + leeway)
        return refuse(errstr, errstr_size, "token expired %.0f s ago", now - exp);
    if (has_nbf && now + leeway < nbf)
        return refuse(errstr, errstr_size, "token not valid yet (nbf is %.0f s ahead)", nbf - now);
    if (has_iat && iat > now + leeway)
        return refuse(errstr, errstr_size, "token issued in the future (iat is %.0f s ahead)",
                      iat - now);
    if (o->max_ttl > 0) {
        if (!has_exp || !has_iat)
            return refuse(errstr, errstr_size, "no %s claim (max_ttl is set)",
                          has_exp ? "iat" : "exp");
        if (exp - iat > (double)o->max_ttl / 1000.0)
            return refuse(errstr, errstr_size,
                          "lifetime exp - iat of %.0f s exceeds max_ttl (%lld s)", exp - iat,
                          (long long)(o->max_ttl / 1000));
    }
    return 0;
}

static int check_iss_aud(const jwt_auth_t *a, const ksock_value_t *claims, char *errstr,
                         size_t errstr_size)
{
    char buf[64];
    const jwt_opts_t *o = a->o;
    if (o->issuer) {
        const ksock_value_t *iss = ksock_value_map_get(claims, "iss");
        if (iss == NULL) return refuse(errstr, errstr_size, "no iss claim (issuer is configured)");
        if (!is_string(iss) || strcmp(ksock_value_get_string(iss, NULL), o->issuer) != 0)
            return refuse(errstr, errstr_size, "iss \"%s\" is not the configured issuer",
                          printable(iss, buf, sizeof(buf)));
    }
    const ksock_value_t *aud = ksock_value_map_get(claims, "aud");
    if (o->audience == NULL) {
        /* RFC 7519 4.1.3: a recipient not named in a present aud must refuse the token. */
        if (aud)
            return refuse(errstr, errstr_size,
                          "the token has an aud claim but no audience is configured");
        return 0;
    }
    if (aud == NULL) return refuse(errstr, errstr_size, "no aud claim (audience is configured)");
    if (is_string(aud) && strcmp(ksock_value_get_string(aud, NULL), o->audience) == 0) return 0;
    if (ksock_value_type(aud) == KSOCK_VALUE_ARRAY) {
        for (size_t i = 0; i < ksock_value_count(aud); i++) {
            const ksock_value_t *e = ksock_value_array_get(aud, i);
            if (is_string(e) && strcmp(ksock_value_get_string(e, NULL), o->audience) == 0) return 0;
        }
    }
    return refuse(errstr, errstr_size, "aud does not name the configured audience");
}

/* "*", "prefix.*" or an exact topic: a '*' anywhere else would silently match nothing. */
static bool valid_pattern(const char *s, size_t n)
{
    if (n == 0 || n > 255) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c == 0x7f) return false;
        if (c == '*' && !(i == n - 1 && (n == 1 || s[i - 1] == '.'))) return false;
    }
    return true;
}

static const struct {
    const char *key;
    unsigned right;
} perm_keys[] = {{"subscribe", KSOCK_PERM_SUBSCRIBE}, {"publish", KSOCK_PERM_PUBLISH}};

/*
 * Check one permission list ("subscribe" or "publish"): an array of
 * patterns. `who` names it in messages. Adds to `p` when not NULL.
 */
static int perm_list(const ksock_value_t *list, const char *who, const char *key, unsigned right,
                     ksock_principal_t *p, int fail_code, char *errstr, size_t errstr_size)
{
    if (ksock_value_type(list) != KSOCK_VALUE_ARRAY) {
        ksock_errstr_set(errstr, errstr_size, "jwt: %s.%s is not an array of topic patterns", who,
                         key);
        return fail_code;
    }
    for (size_t i = 0; i < ksock_value_count(list); i++) {
        const ksock_value_t *e = ksock_value_array_get(list, i);
        size_t n = 0;
        const char *s = is_string(e) ? ksock_value_get_string(e, &n) : NULL;
        if (s == NULL || strlen(s) != n || !valid_pattern(s, n)) {
            ksock_errstr_set(errstr, errstr_size,
                             "jwt: %s.%s[%zu] is not a topic pattern (a topic, \"prefix.*\" or "
                             "\"*\")",
                             who, key, i);
            return fail_code;
        }
        if (p && ksock_principal_allow(p, s, right) != 0) return KSOCK_E_NOMEM;
    }
    return 0;
}

/* The permissions claim: absent (no permissions), or {"subscribe": [...], "publish": [...]}. */
static int check_perms(const jwt_auth_t *a, const ksock_value_t *claims, ksock_principal_t *p,
                       char *errstr, size_t errstr_size)
{
    const char *name = a->o->permissions_claim;
    const ksock_value_t *k = ksock_value_map_get(claims, name);
    if (k == NULL) return 0;
    if (ksock_value_type(k) != KSOCK_VALUE_MAP)
        return refuse(errstr, errstr_size, "the %s claim is not an object", name);
    for (size_t i = 0; i < sizeof(perm_keys) / sizeof(perm_keys[0]); i++) {
        const ksock_value_t *list = ksock_value_map_get(k, perm_keys[i].key);
        if (list == NULL) continue;
        int rc = perm_list(list, name, perm_keys[i].key, perm_keys[i].right, p, KSOCK_E_AUTH,
                           errstr, errstr_size);
        if (rc != 0) return rc;
    }
    return 0;
}

static int check_claims(const jwt_auth_t *a, const ksock_value_t *claims, char *errstr,
                        size_t errstr_size)
{
    int rc = check_times(a, claims, errstr, errstr_size);
    if (rc == 0) rc = check_iss_aud(a, claims, errstr, errstr_size);
    if (rc != 0) return rc;
    const ksock_value_t *sub = ksock_value_map_get(claims, "sub");
    if (sub == NULL) return refuse(errstr, errstr_size, "no sub claim");
    size_t n = 0;
    if (!is_string(sub) || ksock_value_get_string(sub, &n)[0] == '\0' ||
        strlen(ksock_value_get_string(sub, NULL)) != n)
        return refuse(errstr, errstr_size, "sub is not a non-empty string");
    return check_perms(a, claims, NULL, errstr, errstr_size);
}

/* libjwt's answer to the one question it is asked. */
static int verify_signature(const jwt_auth_t *a, const char *tok, size_t len, char *errstr,
                            size_t errstr_size)
{
    char *copy = malloc(len + 1);
    if (copy == NULL) return KSOCK_E_NOMEM;
    memcpy(copy, tok, len);
    copy[len] = '\0';
    jwt_t *j = NULL;
    /* Always with a key: without one, libjwt 1.10 decodes without verifying. */
    int rc = jwt_decode(&j, copy, a->vkey, (int)a->vkey_len);
    free(copy);
    bool ok = rc == 0 && j != NULL && jwt_get_alg(j) == a->alg->jalg;
    if (j) jwt_free(j);
    if (rc == ENOMEM) return KSOCK_E_NOMEM;
    return ok ? 0 : refuse(errstr, errstr_size, "bad signature");
}

/* The whole check; *claims (one reference, the caller's) on success. Thread-safe. */
static int check_token(const jwt_auth_t *a, const char *tok, size_t len, ksock_value_t **claims,
                       char *errstr, size_t errstr_size)
{
    *claims = NULL;
    if (len == 0) return refuse(errstr, errstr_size, "empty token");
    if (len > (size_t)a->o->max_token_size)
        return refuse(errstr, errstr_size,
                      "token of %zu bytes is longer than max_token_size (%lld)", len,
                      (long long)a->o->max_token_size);
    const char *d1 = memchr(tok, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) : NULL;
    if (d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)))
        return refuse(errstr, errstr_size,
                      "malformed: a JWT is three base64url parts separated by two dots");
    const char *end = tok + len;
    ksock_value_t *h = NULL;
    int rc = parse_part("header", tok, (size_t)(d1 - tok), &h, errstr, errstr_size);
    if (rc != 0) return rc;
    rc = check_header(a, h, errstr, errstr_size);
    ksock_value_unref(h);
    if (rc != 0) return rc;

    size_t sig_n = (size_t)(end - (d2 + 1));
    if (sig_n == 0) return refuse(errstr, errstr_size, "the token has no signature");
    unsigned char *sig;
    size_t sig_len;
    rc = ksock__jwt_b64url_decode(d2 + 1, sig_n, &sig, &sig_len);
    if (rc == KSOCK_E_NOMEM) return rc;
    if (rc != 0) return refuse(errstr, errstr_size, "malformed: the signature is not base64url");
    free(sig);
    if (sig_len != a->sig_len)
        return refuse(errstr, errstr_size, "bad signature (%zu bytes, %s with this key makes %zu)",
                      sig_len, a->alg->name, a->sig_len);

    ksock_value_t *c = NULL;
    rc = parse_part("claims part", d1 + 1, (size_t)(d2 - d1 - 1), &c, errstr, errstr_size);
    if (rc == 0) rc = verify_signature(a, tok, len, errstr, errstr_size);
    if (rc == 0) rc = check_claims(a, c, errstr, errstr_size);
    if (rc != 0) {
        if (c) ksock_value_unref(c);
        return rc;
    }
    *claims = c;
    return 0;
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
                return refuse(errstr, errstr_size, "the token query parameter is given twice");
            }
            /* Even fully percent-encoded, a token within bounds is at most three times its size. */
            if (vlen > 3 * (size_t)a->o->max_token_size)
                return refuse(errstr, errstr_size,
                              "token of more than %lld bytes in the query is longer than "
                              "max_token_size",
                              (long long)a->o->max_token_size);
            *out = malloc(vlen + 1);
            if (*out == NULL) return KSOCK_E_NOMEM;
            if (pct_decode(v, vlen, *out) < 0) {
                free(*out);
                *out = NULL;
                return refuse(errstr, errstr_size,
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
static int find_token(const jwt_auth_t *a, const ksock_handshake_t *hs, char **out, char *errstr,
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
        case SRC_HEADER:
            v = ksock_handshake_header(hs, "authorization");
            if (v == NULL) break;
            v = trim(v, &n);
            if (n < 6 || strncasecmp(v, "bearer", 6) != 0 || (n > 6 && v[6] != ' ')) {
                v = NULL;
                break;
            }
            v = trim(v + 6, &n);
            if (n == 0) return refuse(errstr, errstr_size, "empty bearer token");
            break;
        case SRC_XTOKEN:
            v = ksock_handshake_header(hs, "x-ksock-token");
            if (v == NULL) break;
            v = trim(v, &n);
            if (n == 0) return refuse(errstr, errstr_size, "empty x-ksock-token header");
            break;
        case SRC_QUERY: {
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
    return refuse(errstr, errstr_size, "no token (looked in: %s)", looked);
}

/* ---- The vtable ------------------------------------------------------------ */

static int jwt_authenticate(void *inst, const ksock_handshake_t *hs, ksock_principal_t **out,
                            char *errstr, size_t errstr_size)
{
    const jwt_auth_t *a = inst;
    *out = NULL;
    char *tok = NULL;
    int rc = find_token(a, hs, &tok, errstr, errstr_size);
    if (rc != 0) return rc;
    ksock_value_t *claims = NULL;
    rc = check_token(a, tok, strlen(tok), &claims, errstr, errstr_size);
    free(tok);
    if (rc != 0) return rc;
    ksock_principal_t *p =
        ksock_principal_new(ksock_value_get_string(ksock_value_map_get(claims, "sub"), NULL));
    if (p == NULL || p->subject == NULL) {
        ksock_principal_free(p);
        ksock_value_unref(claims);
        return KSOCK_E_NOMEM;
    }
    rc = check_perms(a, claims, p, errstr, errstr_size);
    if (rc != 0) {
        ksock_principal_free(p);
        ksock_value_unref(claims);
        return rc;
    }
    bool has_exp;
    double exp;
    date_claim(claims, "exp", &has_exp, &exp, NULL, 0);
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
    if (token == NULL) return refuse(errstr, errstr_size, "no token");
    /* Bound the length scan itself: a token is refused long before this. */
    size_t len = strnlen(token, (size_t)((const jwt_auth_t *)inst)->o->max_token_size + 1);
    return check_token(inst, token, len, user, errstr, errstr_size);
}

/* ES*: sign `input` with GnuTLS and write R || S, each left-padded to the curve size. */
static int es_sign(const jwt_auth_t *a, const char *input, size_t n, char **sig_b64, char *errstr,
                   size_t errstr_size)
{
    gnutls_privkey_t k = NULL;
    gnutls_datum_t pem = {a->skey, (unsigned)a->skey_len},
                   data = {(unsigned char *)input, (unsigned)n};
    gnutls_datum_t der = {NULL, 0}, r = {NULL, 0}, s = {NULL, 0};
    unsigned char raw[2 * 66];
    size_t size = a->alg->size;
    int rc = KSOCK_E_INTERNAL;
    if (gnutls_privkey_init(&k) != 0) return KSOCK_E_NOMEM;
    if (gnutls_privkey_import_x509_raw(k, &pem, GNUTLS_X509_FMT_PEM, NULL, 0) != 0 ||
        gnutls_privkey_sign_data(k, a->alg->dig, 0, &data, &der) != 0 ||
        gnutls_decode_rs_value(&der, &r, &s) != 0)
        goto out;
    memset(raw, 0, sizeof(raw));
    const gnutls_datum_t *rs[2] = {&r, &s};
    for (int i = 0; i < 2; i++) {
        const unsigned char *p = rs[i]->data;
        size_t len = rs[i]->size;
        while (len > 0 && *p == 0) {
            p++;
            len--;
        }
        if (len > size) goto out;
        memcpy(raw + (size_t)i * size + (size - len), p, len);
    }
    *sig_b64 = ksock__jwt_b64url_encode(raw, 2 * size);
    rc = *sig_b64 ? 0 : KSOCK_E_NOMEM;
out:
    if (rc == KSOCK_E_INTERNAL)
        ksock_errstr_set(errstr, errstr_size, "jwt: %s signing with GnuTLS failed", a->alg->name);
    gnutls_free(der.data);
    gnutls_free(r.data);
    gnutls_free(s.data);
    gnutls_privkey_deinit(k);
    return rc;
}

/* Sign `claims_json` with the pinned algorithm. *token malloc'ed. */
static int sign_claims(const jwt_auth_t *a, const char *claims_json, char **token, char *errstr,
                       size_t errstr_size)
{
    jwt_t *j = NULL;
    char *t = NULL;
    if (jwt_new(&j) != 0) return KSOCK_E_NOMEM;
    if (jwt_add_grants_json(j, claims_json) != 0 ||
        jwt_set_alg(j, a->alg->jalg, a->skey, (int)a->skey_len) != 0 ||
        (t = jwt_encode_str(j)) == NULL) {
        jwt_free(j);
        ksock_errstr_set(errstr, errstr_size, "jwt: libjwt could not make a %s token",
                         a->alg->name);
        return KSOCK_E_INTERNAL;
    }
    jwt_free(j);
    if (a->alg->family != 'E') {
        *token = t;
        return 0;
    }
    /* Keep libjwt's header and claims; replace its ES signature (see the top of the file). */
    char *dot = strrchr(t, '.'), *sig = NULL;
    int rc = dot ? es_sign(a, t, (size_t)(dot - t), &sig, errstr, errstr_size) : KSOCK_E_INTERNAL;
    if (rc == 0) {
        size_t head = (size_t)(dot - t) + 1, sl = strlen(sig);
        *token = malloc(head + sl + 1);
        if (*token == NULL) {
            rc = KSOCK_E_NOMEM;
        } else {
            memcpy(*token, t, head);
            memcpy(*token + head, sig, sl + 1);
        }
    }
    free(sig);
    free(t);
    return rc;
}

static int bad_user(char *errstr, size_t errstr_size, const char *fmt, ...) KSOCK_PRINTF(3, 4);
static int bad_user(char *errstr, size_t errstr_size, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ksock_errstr_set(errstr, errstr_size, "jwt: user details: %s", msg);
    return KSOCK_E_INVAL;
}

static int set_claim(ksock_value_t *claims, const char *key, ksock_value_t *v)
{
    if (v == NULL) return KSOCK_E_NOMEM;
    return ksock_value_map_set(claims, key, strlen(key), v);
}

/* The user's subject: "sub", or "userId" as in the spec's example. */
static int user_subject(const ksock_value_t *user, const ksock_value_t **out, char *errstr,
                        size_t errstr_size)
{
    const ksock_value_t *sub = ksock_value_map_get(user, "sub"),
                        *uid = ksock_value_map_get(user, "userId");
    if (sub && uid && !ksock_value_equal(sub, uid))
        return bad_user(errstr, errstr_size, "\"sub\" and \"userId\" disagree");
    const ksock_value_t *v = sub ? sub : uid;
    size_t n = 0;
    if (v == NULL) return bad_user(errstr, errstr_size, "\"sub\" (or \"userId\") is missing");
    if (!is_string(v) || ksock_value_get_string(v, &n)[0] == '\0' ||
        strlen(ksock_value_get_string(v, NULL)) != n)
        return bad_user(errstr, errstr_size, "\"sub\" must be a non-empty string");
    *out = v;
    return 0;
}

static int user_ttl(const jwt_auth_t *a, const ksock_value_t *user, int64_t *ttl_s, char *errstr,
                    size_t errstr_size)
{
    const ksock_value_t *t = ksock_value_map_get(user, "ttl");
    *ttl_s = a->o->default_ttl / 1000;
    if (t) {
        if (ksock_value_type(t) != KSOCK_VALUE_INT || ksock_value_get_int(t) <= 0 ||
            ksock_value_get_int(t) > 3650 * 86400)
            return bad_user(errstr, errstr_size,
                            "\"ttl\" must be a whole number of seconds "
                            "between 1 and 10 years");
        *ttl_s = ksock_value_get_int(t);
    }
    if (a->o->max_ttl > 0 && *ttl_s * 1000 > a->o->max_ttl)
        return bad_user(errstr, errstr_size, "\"ttl\" of %lld s exceeds max_ttl (%lld s)",
                        (long long)*ttl_s, (long long)(a->o->max_ttl / 1000));
    return 0;
}

/* Claims set from the options or the clock; the user may not set them. */
static bool reserved(const jwt_auth_t *a, const char *key)
{
    static const char *const names[] = {"iat", "exp", "nbf", "iss", "aud", NULL};
    for (size_t i = 0; names[i]; i++)
        if (strcmp(key, names[i]) == 0) return true;
    return strcmp(key, a->o->permissions_claim) == 0;
}

/* Keys of the user details that are not copied as claims as they are. */
static bool handled(const char *key)
{
    static const char *const names[] = {"sub", "userId", "ttl", "subscribe", "publish", NULL};
    for (size_t i = 0; names[i]; i++)
        if (strcmp(key, names[i]) == 0) return true;
    return false;
}

static int build_claims(const jwt_auth_t *a, const ksock_value_t *user, ksock_value_t *claims,
                        char *errstr, size_t errstr_size)
{
    const ksock_value_t *sub = NULL;
    int64_t ttl_s = 0;
    int rc = user_subject(user, &sub, errstr, errstr_size);
    if (rc == 0) rc = user_ttl(a, user, &ttl_s, errstr, errstr_size);
    if (rc != 0) return rc;
    rc = set_claim(claims, "sub", ksock_value_ref((ksock_value_t *)sub));
    for (size_t i = 0; rc == 0 && i < ksock_value_count(user); i++) {
        const char *key;
        size_t kn;
        const ksock_value_t *v = ksock_value_map_at(user, i, &key, &kn);
        if (strlen(key) != kn) return bad_user(errstr, errstr_size, "a key contains NUL");
        if (reserved(a, key))
            return bad_user(errstr, errstr_size, "\"%s\" is set by the authenticator%s", key,
                            strcmp(key, a->o->permissions_claim) == 0
                                ? " (give \"subscribe\" and \"publish\" lists)"
                                : "");
        if (!handled(key)) rc = set_claim(claims, key, ksock_value_ref((ksock_value_t *)v));
    }
    ksock_value_t *perms = NULL;
    for (size_t i = 0; rc == 0 && i < sizeof(perm_keys) / sizeof(perm_keys[0]); i++) {
        const ksock_value_t *list = ksock_value_map_get(user, perm_keys[i].key);
        if (list == NULL) continue;
        rc = perm_list(list, "user details", perm_keys[i].key, 0, NULL, KSOCK_E_INVAL, errstr,
                       errstr_size);
        if (rc == 0 && perms == NULL && (perms = ksock_value_map()) == NULL) rc = KSOCK_E_NOMEM;
        if (rc == 0)
            rc = set_claim(perms, perm_keys[i].key, ksock_value_ref((ksock_value_t *)list));
    }
    if (perms) {
        if (rc == 0)
            rc = set_claim(claims, a->o->permissions_claim, perms);
        else
            ksock_value_unref(perms);
    }
    int64_t now = ksock_wallclock_ns() / 1000000000;
    if (rc == 0 && a->o->issuer) rc = set_claim(claims, "iss", ksock_value_cstring(a->o->issuer));
    if (rc == 0 && a->o->audience)
        rc = set_claim(claims, "aud", ksock_value_cstring(a->o->audience));
    if (rc == 0) rc = set_claim(claims, "iat", ksock_value_int(now));
    if (rc == 0) rc = set_claim(claims, "exp", ksock_value_int(now + ttl_s));
    return rc;
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
    if (user == NULL || ksock_value_type(user) != KSOCK_VALUE_MAP)
        return bad_user(errstr, errstr_size, "expected a map");
    /* Whatever we issue, we must be able to read back. */
    if (ksock_value_depth(user) >= JWT_JSON_MAX_DEPTH)
        return bad_user(errstr, errstr_size, "nested deeper than %d levels",
                        JWT_JSON_MAX_DEPTH - 1);
    ksock_value_t *claims = ksock_value_map();
    if (claims == NULL) return KSOCK_E_NOMEM;
    int rc = build_claims(a, user, claims, errstr, errstr_size);
    char *json = NULL;
    if (rc == 0) rc = ksock__jwt_json_write(claims, &json, errstr, errstr_size);
    ksock_value_unref(claims);
    if (rc == KSOCK_E_ENCODE) {
        char why[200];
        snprintf(why, sizeof(why), "%s", errstr ? errstr : "");
        rc = bad_user(errstr, errstr_size, "%s", why);
    }
    if (rc == 0) rc = sign_claims(a, json, token, errstr, errstr_size);
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
