/*
 * The runtime's Kafka context: embedded (mock) clusters, runtime-wide
 * security properties, and the list of open handles. It lives in the
 * runtime's kafka slot and is freed by ksock_runtime_destroy().
 */
#include "kafka_internal.h"

#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct embedded_s {
    ksock__khead_t head; /* first: the opaque of the dedicated handle */
    int brokers;
    rd_kafka_t *rk; /* dedicated handle that owns the mock cluster's threads */
    rd_kafka_mock_cluster_t *mc;
    char *bootstraps;
} embedded_t;

struct ksock__kctx_s {
    ksock_runtime_t *rt;
    embedded_t **emb;
    size_t n_emb;
    ksock_kafka_conf_t *security;
    ksock__klink_t handles; /* sentinel of a circular list */
};

static void embedded_free(embedded_t *e)
{
    if (e == NULL) return;
    /* The cluster runs on the handle's threads: destroy it before the handle. */
    if (e->mc) rd_kafka_mock_cluster_destroy(e->mc);
    if (e->rk) rd_kafka_destroy(e->rk);
    free(e->bootstraps);
    ksock__khead_destroy(&e->head);
    free(e);
}

static void kctx_free(void *arg)
{
    ksock__kctx_t *ctx = arg;
    size_t open = 0;
    /* Handles left open: close them so their callbacks fire rather than leak. */
    while (ctx->handles.next != &ctx->handles) {
        ksock__klink_t *l = ctx->handles.next;
        open++;
        l->force_close(l); /* unlinks l */
    }
    if (open)
        KSOCK_WARN(ctx->rt, KSOCK__KAFKA_COMPONENT,
                   "%zu Kafka producer/consumer(s) were still open when the runtime was "
                   "destroyed; closed them",
                   open);
    for (size_t i = 0; i < ctx->n_emb; i++)
        embedded_free(ctx->emb[i]);
    free(ctx->emb);
    ksock_kafka_conf_free(ctx->security);
    free(ctx);
}

ksock__kctx_t *ksock__kctx_get(ksock_runtime_t *rt)
{
    ksock__kctx_t *ctx = ksock__runtime_kafka_state(rt);
    if (ctx) return ctx;
    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) return NULL;
    ctx->rt = rt;
    ctx->handles.next = ctx->handles.prev = &ctx->handles;
    ksock__runtime_set_kafka_state(rt, ctx, kctx_free);
    return ctx;
}

void ksock__kctx_link(ksock_runtime_t *rt, ksock__klink_t *l)
{
    ksock__kctx_t *ctx = ksock__kctx_get(rt);
    l->next = ctx->handles.next;
    l->prev = &ctx->handles;
    ctx->handles.next->prev = l;
    ctx->handles.next = l;
}

void ksock__kctx_unlink(ksock_runtime_t *rt, ksock__klink_t *l)
{
    if (l->next == NULL) return;
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->next = l->prev = NULL;
}

/* ---- Embedded clusters ----------------------------------------------------- */

static embedded_t *embedded_start(ksock_runtime_t *rt, int brokers, char *errstr,
                                  size_t errstr_size)
{
    embedded_t *e = calloc(1, sizeof(*e));
    if (e == NULL) return NULL;
    ksock__khead_init(&e->head, rt, "embedded cluster");
    e->brokers = brokers;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char why[256];
    /* Errors only: this handle has no brokers of its own and would warn about it. */
    rd_kafka_conf_set(conf, "log_level", "3", why, sizeof(why));
    rd_kafka_conf_set(conf, "client.id", "ksock-embedded", why, sizeof(why));
    rd_kafka_conf_set_opaque(conf, e);
    rd_kafka_conf_set_log_cb(conf, ksock__klog_cb);
    e->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
    if (e->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        ksock_errstr_set(errstr, errstr_size, "kafka: embedded cluster: %s", why);
        embedded_free(e);
        return NULL;
    }
    e->mc = rd_kafka_mock_cluster_new(e->rk, brokers);
    if (e->mc == NULL ||
        (e->bootstraps = strdup(rd_kafka_mock_cluster_bootstraps(e->mc))) == NULL) {
        ksock_errstr_set(errstr, errstr_size, "kafka: cannot start the embedded cluster");
        embedded_free(e);
        return NULL;
    }
    KSOCK_WARN(rt, KSOCK__KAFKA_COMPONENT,
               "bootstrap.servers=embedded: started librdkafka's in-process mock cluster "
               "(%d broker%s at %s); data lives in memory only and is lost when the process "
               "exits",
               brokers, brokers == 1 ? "" : "s", e->bootstraps);
    return e;
}

static embedded_t *embedded_find(ksock__kctx_t *ctx, int brokers)
{
    for (size_t i = 0; ctx && i < ctx->n_emb; i++)
        if (ctx->emb[i]->brokers == brokers) return ctx->emb[i];
    return NULL;
}

const char *ksock__kctx_embedded(ksock_runtime_t *rt, int brokers, char *errstr, size_t errstr_size)
{
    ksock__kctx_t *ctx = ksock__kctx_get(rt);
    if (ctx == NULL) return NULL;
    embedded_t *e = embedded_find(ctx, brokers);
    if (e) return e->bootstraps;
    embedded_t **v = realloc(ctx->emb, (ctx->n_emb + 1) * sizeof(*v));
    if (v == NULL) return NULL;
    ctx->emb = v;
    e = embedded_start(rt, brokers, errstr, errstr_size);
    if (e == NULL) return NULL;
    ctx->emb[ctx->n_emb++] = e;
    return e->bootstraps;
}

struct rd_kafka_mock_cluster_s *ksock_kafka_embedded_cluster(ksock_runtime_t *rt, int brokers)
{
    embedded_t *e = embedded_find(ksock__runtime_kafka_state(rt), brokers);
    return e ? e->mc : NULL;
}

/* ---- Runtime-wide security --------------------------------------------------- */

const ksock_kafka_conf_t *ksock__kctx_security(ksock_runtime_t *rt)
{
    ksock__kctx_t *ctx = ksock__runtime_kafka_state(rt);
    return ctx ? ctx->security : NULL;
}

int ksock_kafka_configure_security(ksock_runtime_t *rt, const ksock_kafka_security_options_t *opts,
                                   char *errstr, size_t errstr_size)
{
    ksock__kctx_t *ctx = ksock__kctx_get(rt);
    ksock_kafka_conf_t *sec = NULL;
    if (ctx == NULL || ksock_kafka_conf_new(&sec) != 0) return KSOCK_E_NOMEM;
    int rc = ksock__kconf_apply_security(sec, opts, errstr, errstr_size);
    if (rc != 0) {
        ksock_kafka_conf_free(sec);
        return rc;
    }
    ksock_kafka_conf_free(ctx->security);
    ctx->security = sec;
    return 0;
}
