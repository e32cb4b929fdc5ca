/*
 * The bridge tests' harness (test-bridge.c, test-fanout.c): a bridge on the
 * fake transport (fake_transport.c) and the embedded cluster, clients
 * injected through the fake, replies decoded with the real json
 * serializer. Static inline so that each test program takes what it uses.
 */
#ifndef KSOCK_TEST_BT_H
#define KSOCK_TEST_BT_H

#include "fake_transport.h"
#include "kt.h"

#include <librdkafka/rdkafka_mock.h>

#if defined(__SANITIZE_ADDRESS__)
#define BT_HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BT_HAVE_LSAN 1
#endif
#endif

#ifdef BT_HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#define BT_LEAK_CHECK() ASSERT(__lsan_do_recoverable_leak_check() == 0)
#else
#define BT_LEAK_CHECK() ((void)0)
#endif

#define APIKEY_PRODUCE 0
#define TOPIC          "orders"
#define SECRET         "bridge-test-secret-of-at-least-32-bytes!"
#define WAIT_MS        10000

/* ---- A bridge on a fake transport and the embedded cluster --------------------------- */

typedef struct bt_opts_s {
    const char *auth_json; /* jwt options; NULL: anonymous */
    uint32_t max_inflight;
    const char *kafka[8]; /* extra producer properties: key, value, ..., NULL */
    bool v10;             /* the transport as built for ABI 1.0: no pause_read */
    bool readers;         /* give the bridge the embedded cluster for its readers (subscribe) */
    ksock_bridge_slow_policy_t slow_policy;
    uint32_t max_per_principal, publish_rate, publish_burst; /* limits (docs/bridge.md) */
} bt_opts_t;

typedef struct bt_s {
    ksock_runtime_t *rt;
    ksock_plugin_instance_t *tp;
    fake_transport_t *f;
    ksock_config_t *auth_doc;
    ksock_plugin_instance_t *auth;
    ksock_plugin_instance_t *json; /* the test's own, for decoding replies */
    ksock_kafka_producer_t *prod;
    rd_kafka_mock_cluster_t *mc;
    ksock_bridge_t *b;
} bt_t;

static inline ksock_plugin_instance_t *bt_instance(bt_t *t, ksock_plugin_kind_t kind,
                                                   const char *name, const ksock_config_t *doc)
{
    char err[512] = "";
    ksock_plugin_t *p;
    ksock_plugin_instance_t *pi;
    if (ksock_plugin_find(t->rt, kind, name, &p, err, sizeof(err)) != 0)
        TEST_FAIL_("plugin %s: %s", name, err);
    if (ksock_plugin_instance_new(t->rt, p, "test", doc, doc ? ksock_config_root(doc) : NULL, NULL,
                                  &pi, err, sizeof(err)) != 0)
        TEST_FAIL_("instance %s: %s", name, err);
    return pi;
}

static inline void bt_producer(bt_t *t, const bt_opts_t *o)
{
    char err[512] = "";
    ksock_kafka_conf_t *c = kt_conf("bootstrap.servers", "embedded", "linger.ms", "1", NULL);
    for (size_t i = 0; o && o->kafka[i]; i += 2)
        if (ksock_kafka_conf_set(c, o->kafka[i], o->kafka[i + 1], err, sizeof(err)) != 0)
            TEST_FAIL_("conf: %s", err);
    if (ksock_kafka_producer_new(t->rt, &t->prod, c, err, sizeof(err)) != 0)
        TEST_FAIL_("producer: %s", err);
    ksock_kafka_conf_free(c);
    t->mc = ksock_kafka_embedded_cluster(t->rt, 1);
    ASSERT_NOT_NULL(t->mc);
    ASSERT_OK(rd_kafka_mock_topic_create(t->mc, TOPIC, 2, 1));
}

static inline void bt_open(bt_t *t, const bt_opts_t *o)
{
    char err[512] = "";
    memset(t, 0, sizeof(*t));
    t->rt = kt_runtime();
    ksock_log_options_t lo = {sizeof(lo), KSOCK_LOG_WARN, "console", KSOCK_LOG_FORMAT_TEXT, NULL};
    if (getenv("KT_DEBUG") == NULL) ksock_log_configure(t->rt, &lo, err, sizeof(err));
    if (ksock_plugins_register_builtin(t->rt, ksock_builtin_fake_transport, err, sizeof(err)) ||
        ksock_plugins_register_builtin(t->rt, fake_transport_v10_entry, err, sizeof(err)))
        TEST_FAIL_("register the fake transport: %s", err);
    t->tp = bt_instance(t, KSOCK_PLUGIN_TRANSPORT,
                        o && o->v10 ? FAKE_TRANSPORT_V10_NAME : FAKE_TRANSPORT_NAME, NULL);
    t->f = ksock_plugin_instance_inst(t->tp);
    if (o && o->auth_json) {
        if (ksock_config_load_string("auth.json", o->auth_json, strlen(o->auth_json), &t->auth_doc,
                                     err, sizeof(err)) != 0)
            TEST_FAIL_("auth options: %s", err);
        t->auth = bt_instance(t, KSOCK_PLUGIN_AUTH, "jwt", t->auth_doc);
    }
    t->json = bt_instance(t, KSOCK_PLUGIN_SERIALIZER, "json", NULL);
    bt_producer(t, o);
    ksock_kafka_conf_t *rc =
        o && o->readers ? kt_conf("bootstrap.servers", "embedded", NULL) : NULL;
    ksock_bridge_opts_t bo = {.size = sizeof(bo),
                              .max_inflight = o ? o->max_inflight : 0,
                              .anonymous = t->auth == NULL,
                              .kafka = rc,
                              .slow_policy = o ? o->slow_policy : KSOCK_BRIDGE_SLOW_CLOSE,
                              .max_connections_per_principal = o ? o->max_per_principal : 0,
                              .publish_rate = o ? o->publish_rate : 0,
                              .publish_burst = o ? o->publish_burst : 0};
    if (ksock_bridge_new(t->rt, t->tp, t->auth, t->prod, &bo, &t->b, err, sizeof(err)) != 0)
        TEST_FAIL_("bridge_new: %s", err);
    ksock_kafka_conf_free(rc);
    if (ksock_bridge_start(t->b, err, sizeof(err)) != 0) TEST_FAIL_("bridge_start: %s", err);
}

/* The order of bridge.h: transport stopped, producer destroyed, bridge freed, instances. */
static inline void bt_close(bt_t *t)
{
    ksock_bridge_stop(t->b);
    ksock_kafka_producer_destroy(t->prod, 1000);
    ksock_bridge_destroy(t->b);
    ksock_plugin_instance_free(t->json);
    ksock_plugin_instance_free(t->auth);
    ksock_config_free(t->auth_doc);
    ksock_plugin_instance_free(t->tp);
    ksock_runtime_destroy(t->rt);
    memset(t, 0, sizeof(*t));
    BT_LEAK_CHECK();
}

static inline ksock_bridge_stats_t bt_stats(bt_t *t)
{
    ksock_bridge_stats_t st = {.size = sizeof(st)};
    ksock_bridge_stats(t->b, &st);
    return st;
}

/* A client that selects ksock.v1.json, with an Authorization header when `token` is set. */
static inline ksock_conn_id_t bt_connect(bt_t *t, const char *token)
{
    char err[512] = "", auth[2048];
    ksock_kvpair_t h = {"authorization", auth};
    ksock_handshake_t hs = {.size = sizeof(hs), .subprotocol = "ksock.v1.json"};
    if (token) {
        snprintf(auth, sizeof(auth), "Bearer %s", token);
        hs.headers = &h;
        hs.nheaders = 1;
    }
    int64_t id = fake_accept(t->f, &hs, err, sizeof(err));
    if (id <= 0) TEST_FAIL_("handshake refused: %s: %s", ksock_err_name((int)id), err);
    ASSERT_EQ(fake_conn(t->f, (ksock_conn_id_t)id)->state, FAKE_CONN_OPEN);
    return (ksock_conn_id_t)id;
}

typedef struct {
    bt_t *t;
    ksock_conn_id_t id;
    size_t n;
} frames_pred_t;

static inline bool has_frames(void *arg)
{
    frames_pred_t *p = arg;
    return fake_nframes(p->t->f, p->id) >= p->n;
}

/* Run the loop until `id` got `n` frames in all. */
static inline void bt_wait_frames(bt_t *t, ksock_conn_id_t id, size_t n)
{
    frames_pred_t p = {t, id, n};
    if (!kt_run_until(t->rt, has_frames, &p, WAIT_MS))
        TEST_FAIL_("connection %llu: %zu frames after %d ms, want %zu", (unsigned long long)id,
                   fake_nframes(t->f, id), WAIT_MS, n);
}

static inline bool nothing_pending(void *arg)
{
    return ksock_kafka_producer_pending(((bt_t *)arg)->prod) == 0;
}

static inline void bt_wait_deliveries(bt_t *t)
{
    if (!kt_run_until(t->rt, nothing_pending, t, WAIT_MS))
        TEST_FAIL_("%zu records still pending after %d ms", ksock_kafka_producer_pending(t->prod),
                   WAIT_MS);
}

/* ---- Replies, decoded with the json serializer -------------------------------------- */

typedef struct msg_s {
    char op[16];
    bool has_id, has_topic;
    char id[64], topic[256];
    int code;
    char message[512];
    int32_t partition;
    int64_t offset;
    ksock_frame_type_t type;
} msg_t;

static inline void copy_field(char *dst, size_t n, const char *src, size_t len)
{
    ASSERT(len < n);
    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* The k-th frame sent to `id`, decoded (the json decoder checks protocol.md's rules too). */
static inline msg_t bt_reply(bt_t *t, ksock_conn_id_t id, size_t k)
{
    const fake_frame_t *fr = fake_frame(t->f, id, k);
    if (fr == NULL) TEST_FAIL_("no frame %zu on connection %llu", k, (unsigned long long)id);
    const ksock_serializer_vtable_t *sv = ksock_plugin_instance_vtable(t->json);
    ksock_envelope_t env;
    ksock_envelope_init(&env);
    char err[512] = "";
    if (sv->decode_envelope(ksock_plugin_instance_inst(t->json), fr->data, fr->len, NULL, &env, err,
                            sizeof(err)) != 0)
        TEST_FAIL_("reply does not decode: %s: %s", err, fr->data);
    msg_t m = {.code = env.error_code, .partition = env.partition, .offset = env.offset};
    m.type = fr->type;
    snprintf(m.op, sizeof(m.op), "%s", ksock_op_name(env.op));
    if ((m.has_id = env.id != NULL)) copy_field(m.id, sizeof(m.id), env.id, env.id_len);
    if ((m.has_topic = env.topic != NULL))
        copy_field(m.topic, sizeof(m.topic), env.topic, env.topic_len);
    if (env.error_message)
        copy_field(m.message, sizeof(m.message), env.error_message, env.error_message_len);
    ksock_envelope_clear(&env);
    if (getenv("KT_VERBOSE")) fprintf(stderr, "# reply %zu: %s\n", k, fr->data);
    return m;
}

/* The k-th reply is an error `code` with id `id` and topic `topic` (NULL: absent). */
static inline msg_t bt_expect_error(bt_t *t, ksock_conn_id_t conn, size_t k, int code,
                                    const char *id, const char *topic)
{
    msg_t m = bt_reply(t, conn, k);
    ASSERT_STR_EQ(m.op, "error");
    ASSERT_EQ(m.type, KSOCK_FRAME_TEXT);
    if (m.code != code)
        TEST_FAIL_("error_code %d (%s), want %d (%s): %s", m.code, ksock_err_name(m.code), code,
                   ksock_err_name(code), m.message);
    if (id) {
        ASSERT(m.has_id);
        ASSERT_STR_EQ(m.id, id);
    } else {
        ASSERT(!m.has_id);
    }
    if (topic) {
        ASSERT(m.has_topic);
        ASSERT_STR_EQ(m.topic, topic);
    } else {
        ASSERT(!m.has_topic);
    }
    ASSERT(m.message[0] != '\0');
    return m;
}

static inline msg_t bt_expect_ack(bt_t *t, ksock_conn_id_t conn, size_t k, const char *id,
                                  const char *topic)
{
    msg_t m = bt_reply(t, conn, k);
    if (strcmp(m.op, "ack") != 0) TEST_FAIL_("%s %d %s, want an ack", m.op, m.code, m.message);
    ASSERT(m.has_id);
    ASSERT_STR_EQ(m.id, id);
    ASSERT_STR_EQ(m.topic, topic);
    ASSERT_GE(m.partition, 0);
    ASSERT_GE(m.offset, 0);
    return m;
}

/* The connection is still served: a ping gets its pong as the next frame. */
static inline void bt_expect_alive(bt_t *t, ksock_conn_id_t conn)
{
    size_t n = fake_nframes(t->f, conn);
    fake_message(t->f, conn, "{\"op\": \"ping\", \"id\": \"alive\"}");
    ASSERT_EQ(fake_nframes(t->f, conn), n + 1);
    msg_t m = bt_reply(t, conn, n);
    ASSERT_STR_EQ(m.op, "pong");
    ASSERT_STR_EQ(m.id, "alive");
    ASSERT_NULL(fake_close_of(t->f, conn));
}

/*
 * "{"op": "publish", "id": ID, "topic": TOPIC, "partition": 0, "value": VALUE}": one
 * partition, so that acks come in the order of the publishes.
 */
static inline void bt_publish(bt_t *t, ksock_conn_id_t conn, const char *id, const char *topic,
                              const char *value)
{
    char buf[4096];
    int n = snprintf(buf, sizeof(buf),
                     "{\"op\": \"publish\", \"id\": \"%s\", \"topic\": \"%s\", \"partition\": 0, "
                     "\"value\": \"%s\"}",
                     id, topic, value);
    ASSERT(n > 0 && (size_t)n < sizeof(buf));
    fake_message(t->f, conn, buf);
}

/* A token signed by the test's jwt instance itself (generate_token), claims from JSON. */
static inline char *bt_token(bt_t *t, const char *user_json)
{
    char err[512] = "";
    ksock_value_t *user = NULL;
    ASSERT_OK(ksock_serde_set_default_by_name(t->rt, "json", err, sizeof(err)));
    if (ksock_serde_deserialize(t->rt, user_json, strlen(user_json), NULL, &user, err,
                                sizeof(err)) != 0)
        TEST_FAIL_("user %s: %s", user_json, err);
    const ksock_auth_vtable_t *av = ksock_plugin_instance_vtable(t->auth);
    char *tok = NULL;
    int rc = av->generate_token(ksock_plugin_instance_inst(t->auth), user, &tok, err, sizeof(err));
    ksock_value_unref(user);
    if (rc != 0) TEST_FAIL_("generate_token: %s", err);
    return tok;
}

#endif
