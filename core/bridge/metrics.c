/*
 * The bridge's counters in the Prometheus text exposition format 0.0.4
 * (docs/operations.md, Admin endpoint): the one place that knows metric
 * names, types, labels and their escaping. The counters themselves are
 * plain increments where things happen (bridge.c, publish.c, fanout.c,
 * subs.c); this file only reads them when /metrics is asked for, on the
 * loop thread, so nothing is formatted or locked on the record path.
 *
 * Label sets are bounded: serializers served, KSOCK_E_* codes, the
 * handshake refusal reasons below, and the topics and partitions with a
 * shared reader.
 */
#include "bridge_internal.h"

#include <librdkafka/rdkafka.h>

/* ---- Handshake refusal reasons ---------------------------------------------------- */

/*
 * Index 0 is "other". The authenticator reports a reason as text
 * (docs/auth.md, Refusals of a token: "jwt: " and the reason); a bounded
 * label is made from how the reason starts, by the first rule that
 * matches, and only when a handshake is refused (never on an accepted
 * one). Matching the start, not anywhere, keeps strings quoted from the
 * token (an iss, a kid) from choosing the label.
 */
static const char *const auth_reasons[BR_AUTH_REASONS] = {
    "other",       "no_subprotocol", "no_token",  "malformed",     "token_too_large", "alg_none",
    "alg_refused", "bad_signature",  "expired",   "not_yet_valid", "issuer",          "audience",
    "claims",      "unknown_key",    "forbidden", "internal",
};

static const struct {
    const char *prefix;
    unsigned reason;
} auth_rules[] = {
    {"token of ", 4},
    {"alg none", 5},
    {"alg ", 6},
    {"bad signature", 7},
    {"the token has no signature", 7},
    {"malformed: the signature", 7},
    {"malformed", 3},
    {"the header has no alg", 3},
    {"typ ", 3},
    {"crit ", 3},
    {"no token", 2},
    {"empty", 2},
    {"the token query parameter", 2},
    {"token expired", 8},
    {"token not valid yet", 9},
    {"token issued in the future", 9},
    {"kid ", 13},
    {"no kid", 13},
    {"no JWKS", 13},
    {"iss ", 10},
    {"no iss ", 10},
    {"aud ", 11},
    {"no aud ", 11},
    {"the token has an aud ", 11},
};

size_t ksock__br_auth_reason(int rc, const char *errstr)
{
    if (rc == KSOCK_E_PROTO && errstr == NULL) return 1;
    if (rc == KSOCK_E_FORBIDDEN) return 14;
    if (rc == KSOCK_E_NOMEM || rc == KSOCK_E_INTERNAL) return 15;
    if (errstr == NULL) return 0;
    const char *r = strncmp(errstr, "jwt: ", 5) == 0 ? errstr + 5 : errstr;
    for (size_t i = 0; i < sizeof(auth_rules) / sizeof(auth_rules[0]); i++)
        if (strncmp(r, auth_rules[i].prefix, strlen(auth_rules[i].prefix)) == 0)
            return auth_rules[i].reason;
    /* The rest of the claim checks: exp/nbf/iat/sub forms, max_ttl, the permissions claim. */
    if (rc == KSOCK_E_AUTH && (strstr(r, "claim") || strstr(r, " is not ") || strstr(r, "max_ttl")))
        return 12;
    return 0;
}

/* ---- Exposition --------------------------------------------------------------------- */

/* "# HELP" and "# TYPE" of one metric family. */
static int family(ksock_buf_t *out, const char *name, const char *type, const char *help)
{
    return ksock_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value escaped as the format says: backslash, double quote and newline. */
static int label_value(ksock_buf_t *out, const char *v)
{
    int rc = 0;
    for (const char *p = v; *p && rc == 0; p++) {
        if (*p == '\\')
            rc = ksock_buf_append(out, "\\\\", 2);
        else if (*p == '"')
            rc = ksock_buf_append(out, "\\\"", 2);
        else if (*p == '\n')
            rc = ksock_buf_append(out, "\\n", 2);
        else
            rc = ksock_buf_append(out, p, 1);
    }
    return rc;
}

/* name{label="value"} number */
static int sample1(ksock_buf_t *out, const char *name, const char *label, const char *value,
                   uint64_t v)
{
    int rc = ksock_buf_appendf(out, "%s{%s=\"", name, label);
    if (rc == 0) rc = label_value(out, value);
    if (rc == 0) rc = ksock_buf_appendf(out, "\"} %" PRIu64 "\n", v);
    return rc;
}

static int plain(ksock_buf_t *out, const char *name, const char *type, const char *help, uint64_t v)
{
    int rc = family(out, name, type, help);
    if (rc == 0) rc = ksock_buf_appendf(out, "%s %" PRIu64 "\n", name, v);
    return rc;
}

static int connections(const ksock_bridge_t *b, ksock_buf_t *out)
{
    const ksock_bridge_stats_t *s = &b->stats;
    int rc = plain(out, "ksock_connections", "gauge", "WebSocket connections open now.",
                   (uint64_t)b->nconns);
    if (rc == 0)
        rc = plain(out, "ksock_connections_opened_total", "counter",
                   "WebSocket connections opened since start.", s->connections);
    if (rc == 0)
        rc = plain(out, "ksock_handshakes_total", "counter",
                   "WebSocket upgrade requests that reached the authenticator check, accepted "
                   "or refused.",
                   atomic_load(&b->handshakes));
    if (rc == 0)
        rc = family(out, "ksock_auth_failures_total", "counter",
                    "Handshakes refused, by reason (docs/operations.md).");
    for (size_t i = 0; rc == 0 && i < BR_AUTH_REASONS; i++) {
        uint64_t v = atomic_load(&b->auth_failed[i]);
        if (v > 0 || i == 0)
            rc = sample1(out, "ksock_auth_failures_total", "reason", auth_reasons[i], v);
    }
    if (rc == 0)
        rc = family(out, "ksock_upgrades_refused_total", "counter",
                    "Upgrade requests the transport answered itself with an HTTP error, before "
                    "authentication, by status (docs/operations.md).");
    for (size_t i = 0; rc == 0 && i < BR_HTTP_REFUSALS; i++) {
        char st[16];
        unsigned code = ksock__br_http_statuses[i];
        snprintf(st, sizeof(st), "%u", code);
        rc = sample1(out, "ksock_upgrades_refused_total", "status", code ? st : "other",
                     atomic_load(&b->refused_http[i]));
    }
    return rc;
}

static int publishes(const ksock_bridge_t *b, ksock_buf_t *out)
{
    int rc = plain(out, "ksock_publishes_acked_total", "counter",
                   "Publishes acknowledged by Kafka.", b->stats.published);
    if (rc == 0)
        rc = family(out, "ksock_publishes_refused_total", "counter",
                    "Publishes answered with an error, by its code.");
    for (int i = 0; rc == 0 && i < BR_PUB_CODES; i++) {
        if (b->pub_refused[i] == 0 && i != 0) continue;
        const char *name = i == 0 ? "other" : ksock_err_name(-i);
        rc = sample1(out, "ksock_publishes_refused_total", "code", name, b->pub_refused[i]);
    }
    return rc;
}

static int deliveries(const ksock_bridge_t *b, ksock_buf_t *out)
{
    int rc = family(out, "ksock_records_delivered_total", "counter",
                    "Record frames queued to subscribers, by serializer.");
    for (const serializer_t *s = b->serializers; rc == 0 && s; s = s->next)
        rc = sample1(out, "ksock_records_delivered_total", "serializer", s->name, s->delivered);
    if (rc == 0)
        rc = family(out, "ksock_delivered_bytes_total", "counter",
                    "Bytes of the record frames queued to subscribers, by serializer.");
    for (const serializer_t *s = b->serializers; rc == 0 && s; s = s->next)
        rc = sample1(out, "ksock_delivered_bytes_total", "serializer", s->name, s->bytes);
    if (rc == 0)
        rc = plain(out, "ksock_records_read_total", "counter",
                   "Records read from Kafka by the shared readers.", b->stats.records);
    return rc;
}

static int subscriptions(const ksock_bridge_t *b, ksock_buf_t *out)
{
    const ksock_bridge_stats_t *s = &b->stats;
    int rc =
        plain(out, "ksock_subscriptions", "gauge", "Subscriptions active now.", s->subscriptions);
    if (rc == 0)
        rc = family(out, "ksock_slow_client_events_total", "counter",
                    "Subscribers at their send-queue bound: closed with 1013, or record frames "
                    "dropped for them (bridge.slow_client).");
    if (rc == 0)
        rc = sample1(out, "ksock_slow_client_events_total", "action", "closed", s->slow_closed);
    if (rc == 0)
        rc = sample1(out, "ksock_slow_client_events_total", "action", "dropped", s->slow_dropped);
    if (rc == 0)
        rc = plain(out, "ksock_queue_drops_total", "counter",
                   "Record frames a subscriber's full send queue did not take.", b->queue_drops);
    if (rc == 0)
        rc = plain(out, "ksock_reader_congestions_total", "counter",
                   "Times a topic's shared reader paused because most of its subscribers' send "
                   "queues were full at once (bridge.slow_client_grace).",
                   b->congestions);
    if (rc == 0)
        rc = plain(out, "ksock_send_queue_full_total", "counter",
                   "Replies that found the send queue full and waited (reading paused).",
                   s->send_full);
    if (rc == 0)
        rc = plain(out, "ksock_replies_dropped_total", "counter",
                   "Publish outcomes whose connection had closed.", s->dropped);
    if (rc == 0)
        rc = plain(out, "ksock_kafka_readers", "gauge",
                   "Kafka readers running now (shared and catch-up).", s->readers);
    return rc;
}

/*
 * Lag of each shared reader: the partition's high watermark as librdkafka
 * last saw it in a fetch response (rd_kafka_get_watermark_offsets() asks
 * no broker) minus the next offset the reader hands out. A partition whose
 * high watermark is not known yet has no sample.
 */
static int lag(const ksock_bridge_t *b, ksock_buf_t *out)
{
    int rc = family(out, "ksock_consumer_lag", "gauge",
                    "Records in the partition past the shared reader's position (high watermark "
                    "minus next offset), by topic and partition.");
    for (const topic_t *t = b->topics; rc == 0 && t; t = t->next) {
        if (!t->resolved || t->head == NULL) continue;
        rd_kafka_t *rk = ksock_kafka_consumer_handle(t->head);
        for (int32_t p = 0; rc == 0 && p < t->nparts; p++) {
            int64_t lo, hi;
            if (rd_kafka_get_watermark_offsets(rk, t->name, p, &lo, &hi) != 0 || hi < 0) continue;
            uint64_t v = hi > t->pos[p] ? (uint64_t)(hi - t->pos[p]) : 0;
            rc = ksock_buf_appendf(out, "ksock_consumer_lag{topic=\"");
            if (rc == 0) rc = label_value(out, t->name);
            if (rc == 0)
                rc = ksock_buf_appendf(out, "\",partition=\"%" PRId32 "\"} %" PRIu64 "\n", p, v);
        }
    }
    return rc;
}

/* Limits and token lifetime (docs/bridge.md, Limits; limits.c, token.c). */
static int limits(const ksock_bridge_t *b, ksock_buf_t *out)
{
    const ksock_bridge_stats_t *s = &b->stats;
    const char *const lim[] = {"connections",         "connections_per_principal", "subscriptions",
                               "publish_rate_paused", "publish_rate_refused",      "message_size"};
    uint64_t lv[] = {atomic_load(&b->refused_full), atomic_load(&b->refused_principal),
                     s->limit_subscriptions,        s->limit_rate_paused,
                     s->limit_rate_refused,         s->limit_too_big};
    const char *const tok[] = {"expired", "refreshed", "refused", "revoked"};
    uint64_t tv[] = {s->token_expired, s->token_refreshed, s->token_refused, s->token_revoked};
    int rc = family(out, "ksock_limit_events_total", "counter",
                    "Limits hit, by limit (docs/bridge.md, Limits).");
    for (size_t i = 0; rc == 0 && i < sizeof(lv) / sizeof(lv[0]); i++)
        rc = sample1(out, "ksock_limit_events_total", "limit", lim[i], lv[i]);
    if (rc == 0)
        rc = family(out, "ksock_token_events_total", "counter",
                    "Tokens on open connections: expired (closed 4401), refreshed, refused, and "
                    "subscriptions revoked by a refresh.");
    for (size_t i = 0; rc == 0 && i < sizeof(tv) / sizeof(tv[0]); i++)
        rc = sample1(out, "ksock_token_events_total", "event", tok[i], tv[i]);
    return rc;
}

int ksock_bridge_metrics(const ksock_bridge_t *b, ksock_buf_t *out)
{
    if (b == NULL || out == NULL) return KSOCK_E_INVAL;
    int rc = connections(b, out);
    if (rc == 0) rc = publishes(b, out);
    if (rc == 0) rc = deliveries(b, out);
    if (rc == 0) rc = subscriptions(b, out);
    if (rc == 0) rc = lag(b, out);
    if (rc == 0) rc = limits(b, out);
    return rc;
}
