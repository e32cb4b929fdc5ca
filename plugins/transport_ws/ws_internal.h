/* transport_ws internals shared between its files. Not installed. */
#ifndef KSOCK_TRANSPORT_WS_INTERNAL_H
#define KSOCK_TRANSPORT_WS_INTERNAL_H

#include <ksock/transport.h>

/*
 * Check that the certificate chain and the key load, that the key belongs
 * to the leaf certificate and that no certificate is expired or not yet
 * valid; `ca_path` (may be NULL) must hold at least one certificate.
 * Returns 0 or KSOCK_E_TLS with a message naming the file and the reason.
 * `names` says what to call the three files in messages (NULL: the server
 * options tls_cert, tls_key, tls_ca).
 */
typedef struct {
    const char *cert, *key, *ca;
} ws_tls_names_t;

int ws__tls_check(const char *cert_path, const char *key_path, const char *ca_path,
                  const ws_tls_names_t *names, char *errstr, size_t errstr_size);

#endif
