/*
 * Configuration-time checks of the WSS certificate and key with GnuTLS.
 *
 * libwebsockets only finds out at vhost creation, with an OpenSSL error
 * queue dump on stderr, that a key does not match its certificate; an
 * expired certificate it loads without a word and every client then fails.
 * Checking here lets start-up stop with one line that says which file is
 * wrong and why.
 */
#include "ws_internal.h"

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int load_file(const char *path, gnutls_datum_t *out, const char *what, char *errstr,
                     size_t errstr_size)
{
    int rc = gnutls_load_file(path, out);
    if (rc < 0) {
        ksock_errstr_set(errstr, errstr_size, "cannot read %s \"%s\": %s", what, path,
                         gnutls_strerror(rc));
        return KSOCK_E_TLS;
    }
    return 0;
}

static void fmt_time(time_t t, char *buf, size_t n)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The leaf (first) certificate must carry the key's public half. */
static int check_key_matches(gnutls_x509_crt_t leaf, gnutls_x509_privkey_t key,
                             const char *cert_path, const char *key_path,
                             const ws_tls_names_t *names, char *errstr, size_t errstr_size)
{
    unsigned char kid1[64], kid2[64];
    size_t k1 = sizeof(kid1), k2 = sizeof(kid2);
    if (gnutls_x509_crt_get_key_id(leaf, 0, kid1, &k1) < 0 ||
        gnutls_x509_privkey_get_key_id(key, 0, kid2, &k2) < 0 || k1 != k2 ||
        memcmp(kid1, kid2, k1) != 0) {
        ksock_errstr_set(errstr, errstr_size,
                         "%s \"%s\" does not match the certificate in %s \"%s\"", names->key,
                         key_path, names->cert, cert_path);
        return KSOCK_E_TLS;
    }
    return 0;
}

/* Every certificate of the chain valid now. */
static int check_validity(gnutls_x509_crt_t *crts, unsigned ncrts, const char *cert_path,
                          const ws_tls_names_t *names, char *errstr, size_t errstr_size)
{
    time_t now = time(NULL);
    for (unsigned i = 0; i < ncrts; i++) {
        time_t nb = gnutls_x509_crt_get_activation_time(crts[i]);
        time_t na = gnutls_x509_crt_get_expiration_time(crts[i]);
        char when[40];
        if (na != (time_t)-1 && na < now) {
            fmt_time(na, when, sizeof(when));
            ksock_errstr_set(errstr, errstr_size,
                             "%s \"%s\": certificate %u of the chain expired on %s", names->cert,
                             cert_path, i + 1, when);
            return KSOCK_E_TLS;
        }
        if (nb != (time_t)-1 && nb > now) {
            fmt_time(nb, when, sizeof(when));
            ksock_errstr_set(errstr, errstr_size,
                             "%s \"%s\": certificate %u of the chain is not valid before %s",
                             names->cert, cert_path, i + 1, when);
            return KSOCK_E_TLS;
        }
    }
    return 0;
}

/* The CA file holds at least one PEM certificate. */
static int check_ca(const char *ca_path, const ws_tls_names_t *names, char *errstr,
                    size_t errstr_size)
{
    gnutls_datum_t adat = {NULL, 0};
    gnutls_x509_crt_t *cas = NULL;
    unsigned ncas = 0;
    if (load_file(ca_path, &adat, names->ca, errstr, errstr_size) != 0) return KSOCK_E_TLS;
    int g = gnutls_x509_crt_list_import2(&cas, &ncas, &adat, GNUTLS_X509_FMT_PEM, 0);
    gnutls_free(adat.data);
    if (g < 0 || ncas == 0) {
        ksock_errstr_set(errstr, errstr_size, "%s \"%s\" holds no PEM certificate: %s", names->ca,
                         ca_path, g < 0 ? gnutls_strerror(g) : "none found");
        return KSOCK_E_TLS;
    }
    for (unsigned i = 0; i < ncas; i++)
        gnutls_x509_crt_deinit(cas[i]);
    gnutls_free(cas);
    return 0;
}

int ws__tls_check(const char *cert_path, const char *key_path, const char *ca_path,
                  const ws_tls_names_t *names, char *errstr, size_t errstr_size)
{
    static const ws_tls_names_t server_names = {"tls_cert", "tls_key", "tls_ca"};
    if (names == NULL) names = &server_names;
    gnutls_datum_t cdat = {NULL, 0}, kdat = {NULL, 0};
    gnutls_x509_crt_t *crts = NULL;
    unsigned ncrts = 0;
    gnutls_x509_privkey_t key = NULL;
    int rc = KSOCK_E_TLS, g;

    if (load_file(cert_path, &cdat, names->cert, errstr, errstr_size) != 0) goto out;
    if (load_file(key_path, &kdat, names->key, errstr, errstr_size) != 0) goto out;

    g = gnutls_x509_crt_list_import2(&crts, &ncrts, &cdat, GNUTLS_X509_FMT_PEM, 0);
    if (g < 0 || ncrts == 0) {
        ksock_errstr_set(errstr, errstr_size, "%s \"%s\" is not a PEM certificate: %s", names->cert,
                         cert_path, g < 0 ? gnutls_strerror(g) : "no certificate found");
        goto out;
    }
    if (gnutls_x509_privkey_init(&key) < 0) goto out;
    g = gnutls_x509_privkey_import2(key, &kdat, GNUTLS_X509_FMT_PEM, NULL, 0);
    if (g < 0) {
        ksock_errstr_set(errstr, errstr_size, "%s \"%s\" is not an unencrypted PEM private key: %s",
                         names->key, key_path, gnutls_strerror(g));
        goto out;
    }
    rc = check_key_matches(crts[0], key, cert_path, key_path, names, errstr, errstr_size);
    if (rc == 0) rc = check_validity(crts, ncrts, cert_path, names, errstr, errstr_size);
    if (rc == 0 && ca_path && *ca_path) rc = check_ca(ca_path, names, errstr, errstr_size);
out:
    if (key) gnutls_x509_privkey_deinit(key);
    for (unsigned i = 0; i < ncrts; i++)
        gnutls_x509_crt_deinit(crts[i]);
    gnutls_free(crts);
    gnutls_free(cdat.data);
    gnutls_free(kdat.data);
    return rc;
}
