/*
 * auth_jwt: algorithms and keys, signing and verifying.
 *
 * Verifying: libjwt is only asked whether a signature is right for the
 * configured key (see jwt.c for the order of the checks around it).
 *
 * Issuing: libjwt signs HS* and RS*. Its GnuTLS ES* signer in 1.10.2 emits
 * R and S zero-padded to twice their size (128 bytes for ES256), which no
 * other implementation accepts, so ES* signatures are made with GnuTLS
 * directly in the JWS form (R || S, RFC 7518 §3.4).
 */
#include "jwt_internal.h"

#include <ksock/runtime.h>

#include <errno.h>
#include <fcntl.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <jwt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_FILE_MAX (64 * 1024)

const jwt_alg_info_t jwt_algs[] = {
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

const char *const jwt_alg_names[] = {"HS256", "HS384", "HS512", "RS256", "RS384",
                                     "RS512", "ES256", "ES384", "ES512", NULL};

static void scrub_free(unsigned char *p, size_t n)
{
    if (p == NULL) return;
    volatile unsigned char *v = p;
    for (size_t i = 0; i < n; i++)
        v[i] = 0;
    free(p);
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

int jwt_keys_load(jwt_auth_t *a, char *errstr, size_t errstr_size)
{
    const jwt_opts_t *o = a->o;
    if (o->jwks_ca_file && !o->jwks_url) {
        ksock_errstr_set(errstr, errstr_size, "jwks_ca_file is set but jwks_url is not");
        return KSOCK_E_CONFIG;
    }
    if (a->alg->family == 'H') {
        if (o->jwks_url) {
            ksock_errstr_set(errstr, errstr_size,
                             "jwks_url needs an RS* or ES* algorithm, not %s: a JWKS publishes "
                             "public keys, and an HMAC secret is never fetched",
                             a->alg->name);
            return KSOCK_E_CONFIG;
        }
        if (o->public_key || o->private_key) {
            ksock_errstr_set(errstr, errstr_size,
                             "public_key and private_key are for RS*/ES*; %s uses a secret",
                             a->alg->name);
            return KSOCK_E_CONFIG;
        }
        return load_secret(a, errstr, errstr_size);
    }
    if (o->secret || o->secret_file || o->secret_env) {
        ksock_errstr_set(errstr, errstr_size,
                         "secret is for HS*; %s verifies with public_key (a PEM file)",
                         a->alg->name);
        return KSOCK_E_CONFIG;
    }
    if (o->jwks_url) {
        if (o->public_key || o->private_key) {
            ksock_errstr_set(errstr, errstr_size,
                             "jwks_url and %s: keep one source of keys (tokens checked against "
                             "a JWKS are issued by the identity provider, not by this instance)",
                             o->public_key ? "public_key" : "private_key");
            return KSOCK_E_CONFIG;
        }
        return 0; /* jwt_jwks_new() takes it from here */
    }
    if (o->public_key == NULL) {
        ksock_errstr_set(errstr, errstr_size,
                         "%s needs public_key (a PEM file) or jwks_url to verify tokens",
                         a->alg->name);
        return KSOCK_E_CONFIG;
    }
    int rc = load_public_key(a, errstr, errstr_size);
    if (rc == 0 && o->private_key) rc = load_private_key(a, errstr, errstr_size);
    return rc;
}

void jwt_keys_free(jwt_auth_t *a)
{
    if (a->skey != a->vkey) scrub_free(a->skey, a->skey_len);
    scrub_free(a->vkey, a->vkey_len);
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
    *sig_b64 = jwt_b64url_encode(raw, 2 * size);
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
int jwt_sign_claims(const jwt_auth_t *a, const char *claims_json, char **token, char *errstr,
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

/* libjwt's answer to the one question it is asked. */
int jwt_verify_signature(const jwt_auth_t *a, const jwt_vkey_t *key, const char *tok, size_t len,
                         char *errstr, size_t errstr_size)
{
    char *copy = malloc(len + 1);
    if (copy == NULL) return KSOCK_E_NOMEM;
    memcpy(copy, tok, len);
    copy[len] = '\0';
    jwt_t *j = NULL;
    /* Always with a key: without one, libjwt 1.10 decodes without verifying. */
    int rc = jwt_decode(&j, copy, key->key, (int)key->key_len);
    free(copy);
    bool ok = rc == 0 && j != NULL && jwt_get_alg(j) == a->alg->jalg;
    if (j) jwt_free(j);
    if (rc == ENOMEM) return KSOCK_E_NOMEM;
    return ok ? 0 : jwt_refuse(errstr, errstr_size, "bad signature");
}
