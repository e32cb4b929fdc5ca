/*
 * librdkafka errors and logs onto ours: the mapping of rd_kafka_resp_err_t
 * to KSOCK_E_* codes, reporting through the runtime's error handler, and
 * librdkafka's log lines into the runtime's logger.
 */
#include "kafka_internal.h"

#include <stdio.h>
#include <string.h>

int ksock_kafka_err_map(int e)
{
    switch ((rd_kafka_resp_err_t)e) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return 0;
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
        return KSOCK_E_TIMEDOUT;
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
        return KSOCK_E_CONNREFUSED;
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
        return KSOCK_E_CLOSED;
    case RD_KAFKA_RESP_ERR__RESOLVE:
        return KSOCK_E_RESOLVE;
    case RD_KAFKA_RESP_ERR__SSL:
        return KSOCK_E_TLS;
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
    case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
    case RD_KAFKA_RESP_ERR_ILLEGAL_SASL_STATE:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_SASL_MECHANISM:
        return KSOCK_E_AUTH;
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
        return KSOCK_E_FORBIDDEN;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
        return KSOCK_E_TOOBIG;
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
        return KSOCK_E_UNKNOWN_TOPIC;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        return KSOCK_E_QUEUE_FULL;
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
    case RD_KAFKA_RESP_ERR__DESTROY:
        return KSOCK_E_CANCELED;
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
        return KSOCK_E_INVAL;
    case RD_KAFKA_RESP_ERR__NOENT:
        return KSOCK_E_NOENT;
    case RD_KAFKA_RESP_ERR__STATE:
        return KSOCK_E_STATE;
    case RD_KAFKA_RESP_ERR__NOT_IMPLEMENTED:
    case RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION:
        return KSOCK_E_UNSUPPORTED;
    case RD_KAFKA_RESP_ERR_INVALID_CONFIG:
    case RD_KAFKA_RESP_ERR__INVALID_TYPE:
        return KSOCK_E_CONFIG;
    case RD_KAFKA_RESP_ERR__FATAL:
        return KSOCK_E_KAFKA_FATAL;
    default:
        return KSOCK_E_KAFKA;
    }
}

int ksock__kerror_code(const rd_kafka_error_t *error)
{
    if (error == NULL) return 0;
    if (rd_kafka_error_is_fatal(error)) return KSOCK_E_KAFKA_FATAL;
    return ksock_kafka_err_map(rd_kafka_error_code(error));
}

/*
 * librdkafka before 2.6.1 repeats the client nonce in the SCRAM
 * client-final message, which Kafka 4.x brokers reject (librdkafka #4895).
 * Auth failures are then puzzling ("invalid credentials" with the right
 * password), so the report says so.
 */
static const char *scram_hint(rd_kafka_resp_err_t err, const char *reason)
{
    if (ksock_kafka_err_map(err) != KSOCK_E_AUTH || rd_kafka_version() >= 0x020601ff) return "";
    if (reason == NULL || strstr(reason, "SCRAM") == NULL) return "";
    return " (note: this librdkafka is older than 2.6.1, whose SCRAM is rejected by Kafka 4.x "
           "brokers even with the right password; see librdkafka#4895)";
}

void ksock__khead_init(ksock__khead_t *h, ksock_runtime_t *rt, const char *kind)
{
    h->rt = rt;
    h->kind = kind;
    pthread_mutex_init(&h->lock, NULL);
    h->tls_detail[0] = '\0';
}

void ksock__khead_destroy(ksock__khead_t *h)
{
    pthread_mutex_destroy(&h->lock);
}

void ksock__kreport(ksock__khead_t *h, rd_kafka_t *rk, rd_kafka_resp_err_t err, bool fatal,
                    const char *reason)
{
    char tls[sizeof(h->tls_detail)] = "";
    if (err == RD_KAFKA_RESP_ERR__SSL) {
        pthread_mutex_lock(&h->lock);
        memcpy(tls, h->tls_detail, sizeof(tls));
        h->tls_detail[0] = '\0';
        pthread_mutex_unlock(&h->lock);
    }
    int code = fatal ? KSOCK_E_KAFKA_FATAL : ksock_kafka_err_map(err);
    ksock_report_error(h->rt, code, KSOCK__KAFKA_COMPONENT, "%s: %s: %s%s%s%s", rd_kafka_name(rk),
                       rd_kafka_err2name(err), reason ? reason : rd_kafka_err2str(err),
                       scram_hint(err, reason), tls[0] ? "; " : "", tls);
}

/* OpenSSL's X509_V_ERR_* values for the failures worth explaining (x509_vfy.h). */
static const char *x509_reason(int e)
{
    switch (e) {
    case 62:
        return "host name mismatch: the certificate does not name the broker's host";
    case 64:
        return "IP address mismatch: the certificate does not name the broker's address";
    case 2:
    case 18:
    case 19:
    case 20:
    case 21:
        return "the certificate chain does not lead to a trusted CA (check ssl.ca.location)";
    case 10:
        return "the certificate has expired";
    case 9:
        return "the certificate is not yet valid";
    default:
        return NULL;
    }
}

int ksock__kverify_cb(rd_kafka_t *rk, const char *broker_name, int32_t broker_id, int *x509_error,
                      int depth, const char *buf, size_t size, char *errstr, size_t errstr_size,
                      void *opaque)
{
    if (*x509_error == 0) return 1;
    ksock__khead_t *h = opaque;
    const char *why = x509_reason(*x509_error);
    char detail[sizeof(h->tls_detail)];
    if (why)
        snprintf(detail, sizeof(detail), "certificate check of %s: %s", broker_name, why);
    else
        snprintf(detail, sizeof(detail), "certificate check of %s: X509 verify error %d",
                 broker_name, *x509_error);
    pthread_mutex_lock(&h->lock);
    memcpy(h->tls_detail, detail, sizeof(detail));
    pthread_mutex_unlock(&h->lock);
    snprintf(errstr, errstr_size, "%s", detail);
    return 0; /* keep OpenSSL's verdict and error code */
}

void ksock__knew_failed(rd_kafka_conf_t *rdc, const char *what, const char *why, char *errstr,
                        size_t errstr_size)
{
    char key[512] = "";
    size_t n = sizeof(key);
    /* "ssl.key.location failed: ... PEM lib" does not say which file or why. */
    if (strstr(why, "ssl.key") &&
        rd_kafka_conf_get(rdc, "ssl.key.location", key, &n) == RD_KAFKA_CONF_OK && key[0]) {
        ksock_errstr_set(errstr, errstr_size,
                         "kafka: cannot create %s: %s (cannot load the private key \"%s\": "
                         "wrong ssl.key.password, or not a PEM key)",
                         what, why, key);
        return;
    }
    ksock_errstr_set(errstr, errstr_size, "kafka: cannot create %s: %s", what, why);
}

/*
 * Runs on librdkafka's threads. The logger is thread-safe. Levels are
 * syslog's; librdkafka logs connection failures at LOG_ERR and also raises
 * them as error events, which the error handler hears: here they are
 * warnings so that one failure is not two errors in the log.
 */
void ksock__klog_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    const ksock__khead_t *h = rd_kafka_opaque(rk);
    if (h == NULL || h->rt == NULL) return;
    ksock_log_level_t lv = level <= 4   ? KSOCK_LOG_WARN
                           : level <= 6 ? KSOCK_LOG_INFO
                                        : KSOCK_LOG_DEBUG;
    if (!ksock_log_enabled(h->rt, lv)) return;
    ksock_kv_t ctx[2] = {KSOCK_KV_STR("client", rd_kafka_name(rk)), KSOCK_KV_STR("facility", fac)};
    ksock_log(h->rt, lv, KSOCK__KAFKA_COMPONENT, ctx, 2, "%s", buf);
}
