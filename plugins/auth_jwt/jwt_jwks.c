/*
 * auth_jwt: verification keys from a JWKS URL (RFC 7517), as identity
 * providers publish them (Keycloak, Auth0, Okta, Azure AD).
 *
 * Only the configured URL is ever fetched, over HTTPS with certificate
 * checks (libcurl, GnuTLS flavour); a token's jku, x5u, x5c and jwk headers
 * are never read. The key set is immutable once parsed and shared by
 * reference count, so authenticate() holds the mutex only to take a
 * reference and never waits for the network: an unknown kid asks the
 * background thread for a refresh (at most once per jwks_min_refresh) and
 * is refused at once (docs/auth.md, JWKS, says why). A fetch that fails in
 * any way keeps the previous set; a set that is replaced keeps living
 * until the last token being verified with it lets go.
 */
#include "jwt_internal.h"

#include <ksock/log.h>
#include <ksock/runtime.h>

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/abstract.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Real key sets are a few KiB; anything near this is not a JWKS. */
#define JWKS_MAX_BYTES (1024 * 1024)
#define JWKS_ERR       256

typedef struct jwt_jwk_s {
    char *kid;
    unsigned char *pem; /* the public key as PEM, what libjwt verifies with */
    size_t pem_len;
    size_t sig_len;
} jwt_jwk_t;

struct jwt_keyset_s {
    atomic_int refs;
    size_t n;
    jwt_jwk_t *keys;
};

struct jwt_jwks_s {
    ksock_runtime_t *rt;   /* borrowed from the plugin ctx: valid until destroy */
    const char *component; /* the same */
    const jwt_opts_t *o;
    const jwt_alg_info_t *alg;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* on CLOCK_MONOTONIC */
    /* Under mu: */
    jwt_keyset_t *set;        /* NULL until a fetch succeeds */
    uint64_t last_attempt_ns; /* when the last fetch started (any cause) */
    uint64_t last_ok_ns;
    bool last_failed;
    bool want; /* an unknown kid asked for a refresh */
    bool fetching;
    char last_error[JWKS_ERR];
    /* Read by the transfer's progress callback without the mutex. */
    atomic_bool stop;
    bool thread_started;
    pthread_t thread;
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t ms_ns(int64_t ms)
{
    return (uint64_t)ms * 1000000u;
}

/* ---- Key sets --------------------------------------------------------------- */

static void keyset_free(jwt_keyset_t *s)
{
    if (s == NULL) return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->keys[i].kid);
        gnutls_free(s->keys[i].pem);
    }
    free(s->keys);
    free(s);
}

void jwt_keyset_release(jwt_keyset_t *s)
{
    if (s != NULL && atomic_fetch_sub(&s->refs, 1) == 1) keyset_free(s);
}

/* ---- One key ---------------------------------------------------------------- */

/* The JWK name of a curve (RFC 7518 6.2.1.1). */
static const char *jwk_crv(gnutls_ecc_curve_t c)
{
    return c == GNUTLS_ECC_CURVE_SECP256R1   ? "P-256"
           : c == GNUTLS_ECC_CURVE_SECP384R1 ? "P-384"
                                             : "P-521";
}

/* A string member of a JWK: NULL when absent; *bad when present but not a clean string. */
static const char *jwk_str(const ksock_value_t *k, const char *name, bool *bad)
{
    const ksock_value_t *v = ksock_value_map_get(k, name);
    size_t n = 0;
    if (v == NULL) return NULL;
    const char *s = jwt_is_string(v) ? ksock_value_get_string(v, &n) : NULL;
    if (s == NULL || strlen(s) != n) {
        *bad = true;
        return NULL;
    }
    return s;
}

/* A base64url member decoded into *d (d->data malloc'ed, the caller's); errors name it. */
static int jwk_b64(const ksock_value_t *k, size_t i, const char *name, gnutls_datum_t *d, char *err,
                   size_t n)
{
    bool bad = false;
    const char *s = jwk_str(k, name, &bad);
    unsigned char *raw = NULL;
    size_t len = 0;
    if (s == NULL) {
        snprintf(err, n, "keys[%zu]: \"%s\" is missing or not a string", i, name);
        return KSOCK_E_DECODE;
    }
    int rc = jwt_b64url_decode(s, strlen(s), &raw, &len);
    if (rc == KSOCK_E_NOMEM) return rc;
    if (rc != 0 || len == 0) {
        snprintf(err, n, "keys[%zu]: \"%s\" is not base64url", i, name);
        free(raw);
        return KSOCK_E_DECODE;
    }
    d->data = raw;
    d->size = (unsigned)len;
    return 0;
}

/*
 * Import the RSA (n, e) or EC (crv, x, y) members into `pub`. 1 when the key
 * is usable, 0 when it is well formed but not for this instance (*why says
 * why), or a negative code with the reason in err.
 */
static int jwk_import(const jwt_jwks_t *j, const ksock_value_t *k, size_t i, gnutls_pubkey_t pub,
                      const char **why, char *err, size_t n)
{
    gnutls_datum_t a = {NULL, 0}, b = {NULL, 0};
    int rc, grc;
    if (j->alg->family == 'R') {
        rc = jwk_b64(k, i, "n", &a, err, n);
        if (rc == 0) rc = jwk_b64(k, i, "e", &b, err, n);
        grc = rc == 0 ? gnutls_pubkey_import_rsa_raw(pub, &a, &b) : 0;
    } else {
        rc = jwk_b64(k, i, "x", &a, err, n);
        if (rc == 0) rc = jwk_b64(k, i, "y", &b, err, n);
        /* RFC 7518 6.2.1.2: each coordinate is the full size of the curve. */
        if (rc == 0 && (a.size != j->alg->size || b.size != j->alg->size)) {
            snprintf(err, n, "keys[%zu]: x and y must be %zu bytes each for %s", i, j->alg->size,
                     jwk_crv(j->alg->curve));
            rc = KSOCK_E_DECODE;
        }
        grc = rc == 0 ? gnutls_pubkey_import_ecc_raw(pub, j->alg->curve, &a, &b) : 0;
    }
    free(a.data);
    free(b.data);
    if (rc != 0) return rc;
    if (grc == 0) grc = gnutls_pubkey_verify_params(pub);
    if (grc != 0) {
        snprintf(err, n, "keys[%zu]: not a valid %s key: %s", i,
                 j->alg->family == 'R' ? "RSA" : "EC", gnutls_strerror(grc));
        return KSOCK_E_DECODE;
    }
    unsigned bits = 0;
    gnutls_pubkey_get_pk_algorithm(pub, &bits);
    if (j->alg->family == 'R' && bits < 2048) {
        *why = "an RSA key under 2048 bits (RFC 7518 3.3)";
        return 0;
    }
    return 1;
}

/*
 * Whether key i is meant for this instance: 1 yes, 0 no (*why says why), or
 * a negative code when a member has the wrong type.
 */
static int jwk_fits(const jwt_jwks_t *j, const ksock_value_t *k, size_t i, const char **why,
                    char *err, size_t n)
{
    bool bad = false;
    const char *kty = jwk_str(k, "kty", &bad), *use = jwk_str(k, "use", &bad);
    const char *alg = jwk_str(k, "alg", &bad), *crv = jwk_str(k, "crv", &bad);
    if (bad || kty == NULL) {
        snprintf(err, n, "keys[%zu]: kty missing, or kty, use, alg or crv not a string", i);
        return KSOCK_E_DECODE;
    }
    if (use != NULL && strcmp(use, "sig") != 0)
        *why = "its use is not \"sig\"";
    else if (alg != NULL && strcmp(alg, j->alg->name) != 0)
        *why = "its alg is not the configured algorithm";
    else if (strcmp(kty, j->alg->family == 'R' ? "RSA" : "EC") != 0)
        *why = "its kty does not fit the configured algorithm";
    else if (j->alg->family == 'E' && (crv == NULL || strcmp(crv, jwk_crv(j->alg->curve)) != 0))
        *why = "its crv is not the configured algorithm's curve";
    else if (jwk_str(k, "kid", &bad) == NULL)
        *why = bad ? "its kid is not a string" : "it has no kid (tokens choose keys by kid)";
    return *why == NULL ? 1 : 0;
}

/* Key i of the set: 1 and *out filled, 0 skipped (logged), or a negative code. */
static int jwk_parse(const jwt_jwks_t *j, const ksock_value_t *k, size_t i, jwt_jwk_t *out,
                     char *err, size_t n)
{
    const char *why = NULL;
    if (ksock_value_type(k) != KSOCK_VALUE_MAP) {
        snprintf(err, n, "keys[%zu] is not an object", i);
        return KSOCK_E_DECODE;
    }
    int rc = jwk_fits(j, k, i, &why, err, n);
    gnutls_pubkey_t pub = NULL;
    if (rc == 1) {
        if (gnutls_pubkey_init(&pub) != 0) return KSOCK_E_NOMEM;
        rc = jwk_import(j, k, i, pub, &why, err, n);
    }
    if (rc == 1) {
        gnutls_datum_t pem = {NULL, 0};
        bool bad = false;
        unsigned bits = 0;
        gnutls_pubkey_get_pk_algorithm(pub, &bits);
        out->kid = strdup(jwk_str(k, "kid", &bad));
        if (out->kid == NULL || gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_PEM, &pem) != 0) {
            free(out->kid);
            out->kid = NULL;
            rc = KSOCK_E_NOMEM;
        } else {
            out->pem = pem.data;
            out->pem_len = pem.size;
            out->sig_len = j->alg->family == 'R' ? (bits + 7) / 8 : 2 * j->alg->size;
        }
    }
    if (pub) gnutls_pubkey_deinit(pub);
    if (rc == 0 && j->rt) {
        bool bad = false;
        const char *kid = jwk_str(k, "kid", &bad);
        KSOCK_DEBUG(j->rt, j->component, "jwks: keys[%zu] (kid \"%.64s\") not used: %s", i,
                    kid ? kid : "", why);
    }
    return rc;
}

/* ---- The whole set ----------------------------------------------------------- */

static int keyset_parse(const jwt_jwks_t *j, const void *body, size_t len, jwt_keyset_t **out,
                        char *err, size_t n)
{
    ksock_value_t *doc = NULL;
    char why[160];
    if (jwt_json_parse(body, len, &doc, why, sizeof(why)) != 0) {
        snprintf(err, n, "the body is not JSON (%s)", why);
        return KSOCK_E_DECODE;
    }
    const ksock_value_t *keys = ksock_value_map_get(doc, "keys");
    if (ksock_value_type(doc) != KSOCK_VALUE_MAP || keys == NULL ||
        ksock_value_type(keys) != KSOCK_VALUE_ARRAY) {
        ksock_value_unref(doc);
        snprintf(err, n, "the body is not a JWKS (an object with a \"keys\" array)");
        return KSOCK_E_DECODE;
    }
    size_t count = ksock_value_count(keys);
    jwt_keyset_t *s = calloc(1, sizeof(*s));
    int rc = s ? 0 : KSOCK_E_NOMEM;
    if (rc == 0 && count > 0 && (s->keys = calloc(count, sizeof(*s->keys))) == NULL)
        rc = KSOCK_E_NOMEM;
    for (size_t i = 0; rc == 0 && i < count; i++) {
        rc = jwk_parse(j, ksock_value_array_get(keys, i), i, &s->keys[s->n], err, n);
        if (rc == 1) {
            for (size_t k = 0; k < s->n; k++) {
                if (strcmp(s->keys[k].kid, s->keys[s->n].kid) == 0) {
                    snprintf(err, n, "keys[%zu]: kid \"%.64s\" is used twice", i, s->keys[k].kid);
                    rc = KSOCK_E_DECODE;
                }
            }
            s->n++; /* counted even when refused, so keyset_free() releases it */
            if (rc == 1) rc = 0;
        }
    }
    if (rc == 0 && s->n == 0) {
        snprintf(err, n, "no key in the set is usable with %s (%zu keys; see the debug log)",
                 j->alg->name, count);
        rc = KSOCK_E_DECODE;
    }
    ksock_value_unref(doc);
    if (rc != 0) {
        keyset_free(s);
        return rc;
    }
    atomic_init(&s->refs, 1);
    *out = s;
    return 0;
}

/* ---- Fetching --------------------------------------------------------------- */

typedef struct body_s {
    unsigned char *p;
    size_t n;
    bool too_big;
    bool nomem;
} body_t;

static size_t on_data(char *d, size_t size, size_t nmemb, void *user)
{
    body_t *b = user;
    size_t k = size * nmemb;
    if (b->n + k > JWKS_MAX_BYTES) {
        b->too_big = true;
        return 0;
    }
    unsigned char *p = realloc(b->p, b->n + k + 1);
    if (p == NULL) {
        b->nomem = true;
        return 0;
    }
    memcpy(p + b->n, d, k);
    b->p = p;
    b->n += k;
    return k;
}

/* Lets destroy() cut a transfer short instead of waiting for jwks_timeout. */
static int on_progress(void *user, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    return atomic_load(&((jwt_jwks_t *)user)->stop) ? 1 : 0;
}

static void http_setup(jwt_jwks_t *j, CURL *c, body_t *b, char *cerr)
{
    curl_easy_setopt(c, CURLOPT_URL, j->o->jwks_url);
    /* https only, also after a redirect (which is not followed anyway). */
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (j->o->jwks_ca_file) curl_easy_setopt(c, CURLOPT_CAINFO, j->o->jwks_ca_file);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)j->o->jwks_timeout);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)j->o->jwks_timeout);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* a thread of ours: no SIGALRM */
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)JWKS_MAX_BYTES);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, j);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "ksock-auth-jwt");
}

/* GET the JWKS URL into *b. 0, or a negative code with the reason in err. */
static int http_get(jwt_jwks_t *j, body_t *b, char *err, size_t n)
{
    char cerr[CURL_ERROR_SIZE] = "";
    CURL *c = curl_easy_init();
    if (c == NULL) return KSOCK_E_NOMEM;
    http_setup(j, c, b, cerr);
    CURLcode cr = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    if (b->nomem || cr == CURLE_OUT_OF_MEMORY) return KSOCK_E_NOMEM;
    if (b->too_big || cr == CURLE_FILESIZE_EXCEEDED) {
        snprintf(err, n, "the body is larger than %d bytes", JWKS_MAX_BYTES);
        return KSOCK_E_LIMIT;
    }
    if (cr != CURLE_OK) {
        snprintf(err, n, "%s%s%s", curl_easy_strerror(cr), cerr[0] ? ": " : "", cerr);
        return KSOCK_E_IO;
    }
    if (status != 200) {
        snprintf(err, n, "HTTP status %ld (200 expected)", status);
        return KSOCK_E_IO;
    }
    return 0;
}

/* One fetch, start to end; *out is a new set on success. No lock held. */
static int jwks_fetch(jwt_jwks_t *j, jwt_keyset_t **out, char *err, size_t n)
{
    body_t b = {NULL, 0, false, false};
    int rc = http_get(j, &b, err, n);
    if (rc == 0) rc = keyset_parse(j, b.p ? (const void *)b.p : "", b.n, out, err, n);
    free(b.p);
    if (rc == KSOCK_E_NOMEM) snprintf(err, n, "out of memory");
    return rc;
}

/* Log the outcome and install a new set. Under mu. */
static void jwks_install(jwt_jwks_t *j, int rc, jwt_keyset_t *fresh, const char *err)
{
    if (rc != 0) {
        j->last_failed = true;
        snprintf(j->last_error, sizeof(j->last_error), "%s", err);
        if (j->rt)
            KSOCK_ERROR(j->rt, j->component, "jwks: fetching %s failed, %s: %s", j->o->jwks_url,
                        j->set ? "keeping the previous key set"
                               : "tokens are refused until a "
                                 "fetch succeeds",
                        err);
        return;
    }
    bool changed = j->set == NULL || j->set->n != fresh->n;
    for (size_t i = 0; !changed && i < fresh->n; i++)
        changed = strcmp(j->set->keys[i].kid, fresh->keys[i].kid) != 0;
    if (j->rt)
        KSOCK_LOG(j->rt, changed ? KSOCK_LOG_INFO : KSOCK_LOG_DEBUG, j->component,
                  "jwks: %zu key%s for %s from %s (first kid \"%.64s\")", fresh->n,
                  fresh->n == 1 ? "" : "s", j->alg->name, j->o->jwks_url, fresh->keys[0].kid);
    jwt_keyset_release(j->set);
    j->set = fresh;
    j->last_failed = false;
    j->last_ok_ns = mono_ns();
}

/* ---- The refresh thread ------------------------------------------------------ */

/* After a failure, or before the first success, retry at the rate an unknown kid may. */
static uint64_t next_due(const jwt_jwks_t *j)
{
    int64_t wait = (j->set == NULL || j->last_failed) ? j->o->jwks_min_refresh : j->o->jwks_refresh;
    return j->last_attempt_ns + ms_ns(wait);
}

static void *jwks_thread(void *arg)
{
    jwt_jwks_t *j = arg;
    pthread_mutex_lock(&j->mu);
    while (!atomic_load(&j->stop)) {
        uint64_t due = next_due(j), now = mono_ns();
        if (!j->want && now < due) {
            struct timespec ts = {(time_t)(due / 1000000000u), (long)(due % 1000000000u)};
            pthread_cond_timedwait(&j->cv, &j->mu, &ts);
            continue;
        }
        j->want = false;
        j->fetching = true;
        j->last_attempt_ns = now;
        pthread_mutex_unlock(&j->mu);
        jwt_keyset_t *fresh = NULL;
        char err[JWKS_ERR] = "";
        int rc = jwks_fetch(j, &fresh, err, sizeof(err));
        pthread_mutex_lock(&j->mu);
        j->fetching = false;
        if (!atomic_load(&j->stop) || rc == 0) jwks_install(j, rc, fresh, err);
    }
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

/* ---- Create and destroy ------------------------------------------------------ */

/* Readable and a regular file (O_NONBLOCK: a FIFO must not hang start-up, as for key files). */
static int check_ca_file(const char *path, char *errstr, size_t errstr_size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        ksock_errstr_set(errstr, errstr_size, "jwks_ca_file: cannot read \"%s\": %s", path,
                         strerror(errno));
        if (fd >= 0) close(fd);
        return KSOCK_E_CONFIG;
    }
    close(fd);
    if (!S_ISREG(st.st_mode)) {
        ksock_errstr_set(errstr, errstr_size, "jwks_ca_file: \"%s\" is not a regular file", path);
        return KSOCK_E_CONFIG;
    }
    return 0;
}

static int jwks_start(jwt_jwks_t *j)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) return KSOCK_E_NOMEM;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&j->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0) return KSOCK_E_NOMEM;
    if (pthread_mutex_init(&j->mu, NULL) != 0) {
        pthread_cond_destroy(&j->cv);
        return KSOCK_E_NOMEM;
    }
    return 0;
}

int jwt_jwks_new(const ksock_plugin_ctx_t *ctx, const jwt_opts_t *o, const jwt_alg_info_t *alg,
                 jwt_jwks_t **out, char *errstr, size_t errstr_size)
{
    *out = NULL;
    if (strncasecmp(o->jwks_url, "https://", 8) != 0 || o->jwks_url[8] == '\0') {
        ksock_errstr_set(errstr, errstr_size,
                         "jwks_url \"%.200s\": an https:// URL is needed (keys are never fetched "
                         "in the clear)",
                         o->jwks_url);
        return KSOCK_E_CONFIG;
    }
    if (o->jwks_min_refresh > o->jwks_refresh) {
        ksock_errstr_set(errstr, errstr_size, "jwks_min_refresh exceeds jwks_refresh");
        return KSOCK_E_CONFIG;
    }
    if (o->jwks_ca_file && check_ca_file(o->jwks_ca_file, errstr, errstr_size) != 0)
        return KSOCK_E_CONFIG;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        ksock_errstr_set(errstr, errstr_size, "jwks: libcurl could not initialise");
        return KSOCK_E_INTERNAL;
    }
    jwt_jwks_t *j = calloc(1, sizeof(*j));
    if (j == NULL || jwks_start(j) != 0) {
        free(j);
        curl_global_cleanup();
        return KSOCK_E_NOMEM;
    }
    j->rt = ctx ? ctx->rt : NULL;
    j->component = ctx && ctx->component ? ctx->component : "auth:jwt";
    j->o = o;
    j->alg = alg;
    atomic_init(&j->stop, false);
    /* The first fetch blocks creation (bounded by jwks_timeout); a failure only delays keys. */
    jwt_keyset_t *fresh = NULL;
    char err[JWKS_ERR] = "";
    j->last_attempt_ns = mono_ns();
    int rc = jwks_fetch(j, &fresh, err, sizeof(err));
    jwks_install(j, rc, fresh, err);
    if (pthread_create(&j->thread, NULL, jwks_thread, j) != 0) {
        jwt_jwks_destroy(j);
        ksock_errstr_set(errstr, errstr_size, "jwks: cannot start the refresh thread");
        return KSOCK_E_INTERNAL;
    }
    j->thread_started = true;
    *out = j;
    return 0;
}

void jwt_jwks_destroy(jwt_jwks_t *j)
{
    if (j == NULL) return;
    pthread_mutex_lock(&j->mu);
    atomic_store(&j->stop, true);
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    if (j->thread_started) pthread_join(j->thread, NULL);
    jwt_keyset_release(j->set);
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
    curl_global_cleanup();
}

/* ---- Looking up a token's key ------------------------------------------------- */

/* Ask the thread for a refresh unless one ran within jwks_min_refresh. Under mu. */
static const char *ask_refresh(jwt_jwks_t *j)
{
    if (j->fetching || j->want) return "a refresh of the key set is under way, retry";
    uint64_t now = mono_ns();
    if (now - j->last_attempt_ns < ms_ns(j->o->jwks_min_refresh))
        return "the key set was fetched less than jwks_min_refresh ago";
    j->want = true;
    pthread_cond_signal(&j->cv);
    return "a refresh of the key set was started, retry";
}

int jwt_jwks_find(jwt_jwks_t *j, const ksock_value_t *kid, jwt_keyset_t **set, jwt_vkey_t *key,
                  char *errstr, size_t errstr_size)
{
    char buf[68];
    size_t n = 0;
    *set = NULL;
    if (kid == NULL)
        return jwt_refuse(errstr, errstr_size, "no kid in the header (keys come from jwks_url)");
    const char *s = jwt_is_string(kid) ? ksock_value_get_string(kid, &n) : NULL;
    if (s == NULL || strlen(s) != n) return jwt_refuse(errstr, errstr_size, "kid is not a string");
    pthread_mutex_lock(&j->mu);
    jwt_keyset_t *cur = j->set;
    for (size_t i = 0; cur && i < cur->n; i++) {
        if (strcmp(cur->keys[i].kid, s) == 0) {
            atomic_fetch_add(&cur->refs, 1);
            pthread_mutex_unlock(&j->mu);
            key->key = cur->keys[i].pem;
            key->key_len = cur->keys[i].pem_len;
            key->sig_len = cur->keys[i].sig_len;
            *set = cur;
            return 0;
        }
    }
    const char *what = ask_refresh(j);
    char last[JWKS_ERR];
    snprintf(last, sizeof(last), "%s", j->last_error);
    pthread_mutex_unlock(&j->mu);
    if (cur == NULL)
        return jwt_refuse(errstr, errstr_size, "no JWKS key set yet (%.150s; %s)", last, what);
    return jwt_refuse(errstr, errstr_size, "kid \"%s\" is not in the JWKS (%s)",
                      jwt_printable(kid, buf, sizeof(buf)), what);
}
