/*
 * Kafka subsystem internals (core/kafka). Not installed.
 *
 * Layout: conf.c (property sets, secrets, building an rd_kafka_conf_t),
 * context.c (the per-runtime state: embedded clusters, runtime-wide security,
 * open handles), wake.c (attaching a librdkafka queue to the loop),
 * errors.c (error mapping and reporting), producer.c, consumer.c.
 */
#ifndef KSOCK_KAFKA_INTERNAL_H
#define KSOCK_KAFKA_INTERNAL_H

#include "../internal.h"

#include <ksock/kafka.h>
#include <librdkafka/rdkafka.h>

#define KSOCK__KAFKA_COMPONENT     "kafka"
#define KSOCK__KAFKA_DEFAULT_BATCH 256

/* ---- Property sets (conf.c) ------------------------------------------------ */

typedef struct ksock__kprop_s {
    char *key;
    char *value;
    char *origin; /* "FILE:LINE:COL" when set from a config document, else NULL */
} ksock__kprop_t;

struct ksock_kafka_conf_s {
    ksock__kprop_t *v;
    size_t n, cap;
};

typedef enum { KSOCK__KPRODUCER = 0, KSOCK__KCONSUMER = 1 } ksock__kind_t;

/* What building a librdkafka conf found out about our own keys. */
typedef struct ksock__kbuild_s {
    int dispatch_batch;   /* ksock.dispatch.batch */
    bool auto_store;      /* consumer: store offsets after the handler returns */
    bool has_group;       /* consumer: group.id set */
    int embedded_brokers; /* 0: a real cluster */
} ksock__kbuild_t;

/*
 * Build an rd_kafka_conf_t for a handle of `kind` on `rt`: our defaults,
 * then the runtime-wide security properties, then `user` (may be NULL),
 * secrets resolved, "embedded" replaced by the mock cluster's address.
 * On success *out is owned by the caller (rd_kafka_new takes it, or
 * rd_kafka_conf_destroy). Errors: KSOCK_E_CONFIG/NOMEM with errstr.
 */
int ksock__kconf_build(ksock_runtime_t *rt, ksock__kind_t kind, const ksock_kafka_conf_t *user,
                       rd_kafka_conf_t **out, ksock__kbuild_t *info, char *errstr,
                       size_t errstr_size);

/* Translate security options into properties on `conf`. */
int ksock__kconf_apply_security(ksock_kafka_conf_t *conf,
                                const ksock_kafka_security_options_t *opts, char *errstr,
                                size_t errstr_size);

/* ---- Common head of every opaque we hand to librdkafka --------------------- */

/*
 * librdkafka's log callback runs on its own threads and gets only the
 * handle's opaque; every opaque starts with this so the callback can find
 * the runtime whatever kind of handle logged.
 */
typedef struct ksock__khead_s {
    ksock_runtime_t *rt;
    const char *kind;     /* "producer", "consumer", "embedded cluster" */
    pthread_mutex_t lock; /* guards tls_detail, written on librdkafka's threads */
    char tls_detail[256]; /* why the last certificate check failed, for the next report */
} ksock__khead_t;

void ksock__khead_init(ksock__khead_t *h, ksock_runtime_t *rt, const char *kind);
void ksock__khead_destroy(ksock__khead_t *h);

/* rd_kafka_conf_set_log_cb target: forwards to ksock_log (thread-safe). */
void ksock__klog_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

/* ---- Errors (errors.c) ----------------------------------------------------- */

/*
 * Report a librdkafka error of handle `rk` through the runtime's error
 * handler (loop thread). TLS failures get the certificate check's reason.
 */
void ksock__kreport(ksock__khead_t *h, rd_kafka_t *rk, rd_kafka_resp_err_t err, bool fatal,
                    const char *reason);
/*
 * ssl.certificate.verify_cb: OpenSSL's verdict unchanged, but its reason
 * (host name mismatch, untrusted issuer, expired ...) is kept for the report,
 * which otherwise only says "certificate verify failed".
 */
int ksock__kverify_cb(rd_kafka_t *rk, const char *broker_name, int32_t broker_id, int *x509_error,
                      int depth, const char *buf, size_t size, char *errstr, size_t errstr_size,
                      void *opaque);
/* errstr for a failed rd_kafka_new(), with a hint where librdkafka's message is terse. */
void ksock__knew_failed(rd_kafka_conf_t *rdc, const char *what, const char *why, char *errstr,
                        size_t errstr_size);
/* The KSOCK_E_* code for a rd_kafka_error_t, honouring its fatal flag. */
int ksock__kerror_code(const rd_kafka_error_t *error);

/* ---- Loop attachment (wake.c) ---------------------------------------------- */

/*
 * One librdkafka queue watched by the loop. librdkafka writes to `fd` (an
 * eventfd) when the queue goes from empty to non-empty; `drain` then runs on
 * the loop. A drain that stops at its batch limit calls ksock__kwake_again(),
 * which runs it again after the loop has served other ready events (a
 * zero-delay timer, not event_active: an event activated from its own
 * callback would run again in the same pass and starve everything else).
 */
typedef struct ksock__kwake_s {
    rd_kafka_queue_t *q; /* borrowed from the owner */
    int fd;
    struct event *ev;   /* EV_READ on fd */
    struct event *cont; /* zero-delay timer for "drain more" */
    void (*drain)(void *owner);
    void *owner;
    uint64_t wakeups, continued;
} ksock__kwake_t;

int ksock__kwake_init(ksock__kwake_t *w, ksock_runtime_t *rt, rd_kafka_queue_t *q,
                      void (*drain)(void *), void *owner);
void ksock__kwake_again(ksock__kwake_t *w);
/* Kick the drain from any thread (an eventfd write). */
void ksock__kwake_signal(ksock__kwake_t *w);
/* Detach from the queue and free the events; the fd is closed. Idempotent. */
void ksock__kwake_close(ksock__kwake_t *w);

/* ---- Per-runtime context (context.c) --------------------------------------- */

typedef struct ksock__kctx_s ksock__kctx_t;

/* The runtime's Kafka context, created on first use. NULL only when out of memory. */
ksock__kctx_t *ksock__kctx_get(ksock_runtime_t *rt);
/* Bootstrap address of the embedded cluster with `brokers` brokers, started on demand. */
const char *ksock__kctx_embedded(ksock_runtime_t *rt, int brokers, char *errstr,
                                 size_t errstr_size);
/* Runtime-wide security properties (may be NULL). */
const ksock_kafka_conf_t *ksock__kctx_security(ksock_runtime_t *rt);

/*
 * Open handles are listed so that a runtime destroyed with handles still
 * open closes them (firing their callbacks) instead of leaking them.
 */
typedef struct ksock__klink_s {
    struct ksock__klink_s *prev, *next;
    void (*force_close)(struct ksock__klink_s *l);
} ksock__klink_t;

void ksock__kctx_link(ksock_runtime_t *rt, ksock__klink_t *l);
void ksock__kctx_unlink(ksock_runtime_t *rt, ksock__klink_t *l);

#endif
