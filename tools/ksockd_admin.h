/*
 * ksockd's admin HTTP endpoint (docs/operations.md, Admin endpoint):
 * /healthz, /readyz and /metrics on an address of its own, served by
 * libevent's evhttp on ksockd's loop. Configured by the top-level "admin"
 * section; no section, no endpoint.
 *
 * It lives in tools/ rather than the library because what it reports is
 * the daemon's: its start, its drain, its producer. The bridge's own
 * counters come from ksock_bridge_metrics() (core/bridge/metrics.c), the
 * one place that formats them.
 *
 * Threads: everything on the loop thread, except the Kafka probe of
 * /healthz, which runs on a thread of its own (a metadata request blocks).
 */
#ifndef KSOCKD_ADMIN_H
#define KSOCKD_ADMIN_H

#include <ksock/ksock.h>

typedef struct ksockd_admin_s ksockd_admin_t;

/* What /readyz reports. */
typedef enum {
    KSOCKD_ADMIN_STARTING = 0, /* listeners not bound yet: 503 */
    KSOCKD_ADMIN_READY,        /* bridge started (or no websocket section): 200 */
    KSOCKD_ADMIN_DRAINING,     /* SIGTERM/SIGINT: the drain runs: 503 */
} ksockd_admin_state_t;

/* The "admin" section's options, for --config-reference. Static. */
const ksock_option_t *ksockd_admin_schema(void);

/* Validate the "admin" section of `cfg` (absent is valid). 0 or KSOCK_E_CONFIG with errstr. */
int ksockd_admin_check(const ksock_config_t *cfg, char *errstr, size_t errstr_size);

/*
 * Bind the endpoint the "admin" section describes, serving on `rt`'s loop.
 * `producer` (may be NULL: /healthz is then 503) is borrowed for the Kafka
 * probe until ksockd_admin_destroy(). *out is NULL when there is no
 * "admin" section. Errors: KSOCK_E_CONFIG, KSOCK_E_IO (cannot bind),
 * KSOCK_E_NOMEM, with errstr.
 */
int ksockd_admin_new(ksock_runtime_t *rt, const ksock_config_t *cfg,
                     ksock_kafka_producer_t *producer, ksockd_admin_t **out, char *errstr,
                     size_t errstr_size);

/* The bridge whose metrics /metrics shows (NULL: none); borrowed until destroy or reset. */
void ksockd_admin_set_bridge(ksockd_admin_t *a, const ksock_bridge_t *b);

void ksockd_admin_set_state(ksockd_admin_t *a, ksockd_admin_state_t state);

/*
 * Close the endpoint, waiting for a Kafka probe still running (at most the
 * configured health_timeout); call it before destroying the producer.
 * Requests still waiting for the probe get no answer (their connections
 * close). NULL is a no-op.
 */
void ksockd_admin_destroy(ksockd_admin_t *a);

#endif
