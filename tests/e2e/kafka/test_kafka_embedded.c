/*
 * Kafka API against the embedded default (librdkafka's mock cluster): the
 * property set, secrets, create-time errors, produce/consume on the loop,
 * fault injection (rd_kafka_mock_push_request_errors), destroy semantics,
 * bounded drains and pause/resume. No broker needed.
 */
#include "kt.h"

#include <fcntl.h>
#include <librdkafka/rdkafka_mock.h>
#include <sys/stat.h>

#define APIKEY_PRODUCE 0

static int ignore_message(ksock_kafka_consumer_t *c, const ksock_kafka_message_t *m, void *data)
{
    return 0;
}

/* ---- Property sets ----------------------------------------------------------------- */

TEST(conf_set_get_dump_masks_secrets)
{
    ksock_kafka_conf_t *c = kt_conf("bootstrap.servers", "b:9092", "sasl.password", "hunter2",
                                    "ssl.key.pem", "-----BEGIN PRIVATE KEY", "linger.ms", "5",
                                    "sasl.password.file", "/run/secret", NULL);
    ASSERT_STR_EQ(ksock_kafka_conf_get(c, "linger.ms"), "5");
    char err[256];
    ASSERT_OK(ksock_kafka_conf_set(c, "linger.ms", "7", err, sizeof(err)));
    ASSERT_STR_EQ(ksock_kafka_conf_get(c, "linger.ms"), "7");
    ASSERT_NULL(ksock_kafka_conf_get(c, "acks"));
    ksock_buf_t out = KSOCK_BUF_INIT;
    ASSERT_OK(ksock_kafka_conf_dump(c, &out));
    ASSERT_CONTAINS(out.data, "bootstrap.servers=b:9092\n");
    ASSERT_CONTAINS(out.data, "sasl.password=***\n");
    ASSERT_CONTAINS(out.data, "ssl.key.pem=***\n");
    ASSERT_CONTAINS(out.data, "sasl.password.file=/run/secret\n"); /* a path is no secret */
    ASSERT_NULL(strstr(out.data, "hunter2"));
    ASSERT_NULL(strstr(out.data, "PRIVATE"));
    ksock_buf_free(&out);
    ASSERT(ksock_kafka_conf_is_secret("ssl.keystore.password"));
    ASSERT(!ksock_kafka_conf_is_secret("ssl.key.password.env"));
    ksock_kafka_conf_t *d;
    ASSERT_OK(ksock_kafka_conf_dup(c, &d));
    ASSERT_STR_EQ(ksock_kafka_conf_get(d, "sasl.password"), "hunter2");
    ksock_kafka_conf_free(d);
    ksock_kafka_conf_free(c);
}

TEST(conf_indirections_only_for_secrets)
{
    ksock_kafka_conf_t *c = kt_conf(NULL);
    char err[256];
    ASSERT_EQ(ksock_kafka_conf_set(c, "linger.ms.file", "/x", err, sizeof(err)), KSOCK_E_INVAL);
    ASSERT_CONTAINS(err, "linger.ms.file");
    ASSERT_EQ(ksock_kafka_conf_set(c, "", "x", err, sizeof(err)), KSOCK_E_INVAL);
    ASSERT_OK(ksock_kafka_conf_set(c, "ssl.key.password.env", "X", err, sizeof(err)));
    const char *kv[] = {"a.b", "1", "c.d", NULL, NULL};
    ASSERT_EQ(ksock_kafka_conf_set_list(c, kv, err, sizeof(err)), KSOCK_E_INVAL);
    ASSERT_STR_EQ(ksock_kafka_conf_get(c, "a.b"), "1");
    ksock_kafka_conf_free(c);
}

static ksock_config_t *load_json(const char *text)
{
    ksock_config_t *doc;
    char err[256];
    ASSERT_OK(ksock_config_load_string("test.json", text, strlen(text), &doc, err, sizeof(err)));
    return doc;
}

TEST(conf_from_config_section)
{
    ksock_config_t *doc = load_json("{\"kafka\": {\n"
                                    "  \"bootstrap.servers\": \"embedded\",\n"
                                    "  \"linger.ms\": 5,\n"
                                    "  \"enable.idempotence\": true,\n"
                                    "  \"debug\": [\"broker\", \"topic\"]\n"
                                    "}}");
    const ksock_cfg_t *k = ksock_cfg_get(ksock_config_root(doc), "kafka");
    ksock_kafka_conf_t *c = kt_conf(NULL);
    char err[512];
    ASSERT_OK(ksock_kafka_conf_set_cfg(c, doc, k, err, sizeof(err)));
    ASSERT_STR_EQ(ksock_kafka_conf_get(c, "linger.ms"), "5");
    ASSERT_STR_EQ(ksock_kafka_conf_get(c, "enable.idempotence"), "true");
    ASSERT_STR_EQ(ksock_kafka_conf_get(c, "debug"), "broker,topic");
    ksock_kafka_conf_free(c);
    ksock_config_free(doc);

    /* Nested objects are not properties. */
    doc = load_json("{\"kafka\": {\"producer\": {\"x\": 1}}}");
    c = kt_conf(NULL);
    ASSERT_EQ(ksock_kafka_conf_set_cfg(c, doc, ksock_cfg_get(ksock_config_root(doc), "kafka"), err,
                                       sizeof(err)),
              KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "test.json:1:");
    ASSERT_CONTAINS(err, "\"producer\"");
    ksock_kafka_conf_free(c);
    ksock_config_free(doc);
}

TEST(config_file_may_not_hold_secrets)
{
    ksock_config_t *doc = load_json("{\"kafka\": {\n  \"sasl.password\": \"hunter2\"\n}}");
    ksock_kafka_conf_t *c = kt_conf(NULL);
    char err[512];
    ASSERT_EQ(ksock_kafka_conf_set_cfg(c, doc, ksock_cfg_get(ksock_config_root(doc), "kafka"), err,
                                       sizeof(err)),
              KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "test.json:2:");
    ASSERT_CONTAINS(err, "sasl.password.file");
    ASSERT_CONTAINS(err, "sasl.password.env");
    ASSERT_NULL(strstr(err, "hunter2"));
    ksock_kafka_conf_free(c);
    ksock_config_free(doc);
}

/* ---- Create-time errors ------------------------------------------------------------ */

TEST(unknown_property_named_at_create)
{
    ksock_runtime_t *rt = kt_runtime();
    ksock_kafka_conf_t *c = kt_conf("bootstrap.servers", "embedded", "no.such.property", "1", NULL);
    ksock_kafka_producer_t *p;
    char err[512];
    ASSERT_EQ(ksock_kafka_producer_new(rt, &p, c, err, sizeof(err)), KSOCK_E_CONFIG);
    ASSERT_NULL(p);
    ASSERT_CONTAINS(err, "no.such.property");
    ksock_kafka_conf_free(c);

    /* From a config file: the message says where the key is. */
    ksock_config_t *doc = load_json("{\"kafka\": {\n  \"bootstrap.servers\": \"embedded\",\n"
                                    "  \"fetch.wait.max.msx\": 100\n}}");
    c = kt_conf(NULL);
    ASSERT_OK(ksock_kafka_conf_set_cfg(c, doc, ksock_cfg_get(ksock_config_root(doc), "kafka"), err,
                                       sizeof(err)));
    ksock_kafka_consumer_t *cons;
    ASSERT_EQ(ksock_kafka_consumer_new(rt, &cons, c, NULL, ignore_message, NULL, err, sizeof(err)),
              KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "test.json:3:");
    ASSERT_CONTAINS(err, "fetch.wait.max.msx");
    ksock_kafka_conf_free(c);
    ksock_config_free(doc);

    /* A bad value is named too. */
    c = kt_conf("bootstrap.servers", "embedded", "acks", "banana", NULL);
    ASSERT_EQ(ksock_kafka_producer_new(rt, &p, c, err, sizeof(err)), KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "acks");
    ksock_kafka_conf_free(c);
    ksock_runtime_destroy(rt);
}

TEST(bootstrap_required_and_embedded_spec_checked)
{
    ksock_runtime_t *rt = kt_runtime();
    ksock_kafka_producer_t *p;
    char err[512];
    ksock_kafka_conf_t *c = kt_conf("linger.ms", "1", NULL);
    ASSERT_EQ(ksock_kafka_producer_new(rt, &p, c, err, sizeof(err)), KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "bootstrap.servers");
    ksock_kafka_conf_free(c);
    const char *bad[] = {"embedded:0", "embedded:", "embeddedx", "embedded:99", NULL};
    for (int i = 0; bad[i]; i++) {
        c = kt_conf("bootstrap.servers", bad[i], NULL);
        ASSERT_EQ(ksock_kafka_producer_new(rt, &p, c, err, sizeof(err)), KSOCK_E_CONFIG);
        ASSERT_CONTAINS(err, bad[i]);
        ksock_kafka_conf_free(c);
    }
    c = kt_conf("bootstrap.servers", "embedded", "security.protocol", "ssl", NULL);
    ASSERT_EQ(ksock_kafka_producer_new(rt, &p, c, err, sizeof(err)), KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "plaintext");
    ksock_kafka_conf_free(c);
    /* Idempotence needs acks=all: librdkafka's own message reaches the caller. */
    c = kt_conf("bootstrap.servers", "embedded", "enable.idempotence", "true", "acks", "1", NULL);
    ASSERT_EQ(ksock_kafka_producer_new(rt, &p, c, err, sizeof(err)), KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "acks");
    ksock_kafka_conf_free(c);
    ksock_runtime_destroy(rt);
}

/* Capture what the console sink writes (stderr) while `fn` runs. */
static char *capture_stderr(void (*fn)(void *), void *arg)
{
    char path[] = "/tmp/ksock-kt-stderr-XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    off_t n = lseek(fd, 0, SEEK_END);
    char *buf = calloc(1, (size_t)n + 1);
    ASSERT(pread(fd, buf, (size_t)n, 0) == n);
    close(fd);
    unlink(path);
    return buf;
}

typedef struct {
    ksock_runtime_t *rt;
    ksock_kafka_conf_t *conf;
    int rc;
    char err[512];
} create_arg_t;

static void create_and_destroy(void *arg)
{
    create_arg_t *a = arg;
    ksock_kafka_producer_t *p = NULL;
    a->rc = ksock_kafka_producer_new(a->rt, &p, a->conf, a->err, sizeof(a->err));
    ksock_kafka_producer_destroy(p, 0);
}

static void create_embedded(void *arg)
{
    create_arg_t *a = arg;
    ksock_kafka_producer_t *p = NULL;
    a->rc = ksock_kafka_producer_new(a->rt, &p, a->conf, a->err, sizeof(a->err));
    ksock_kafka_producer_destroy(p, 0);
}

TEST(embedded_warns_that_data_is_in_memory_only)
{
    create_arg_t a = {kt_runtime(), kt_conf("bootstrap.servers", "embedded", NULL), 0, ""};
    char *log = capture_stderr(create_embedded, &a);
    ASSERT_OK(a.rc);
    ASSERT_CONTAINS(log, "WARN");
    ASSERT_CONTAINS(log, "in memory only");
    free(log);
    /* Once per cluster: a second handle on the same cluster says nothing new. */
    log = capture_stderr(create_embedded, &a);
    ASSERT_NULL(strstr(log, "in memory only"));
    free(log);
    ksock_kafka_conf_free(a.conf);
    ksock_runtime_destroy(a.rt);
}

TEST(secrets_from_file_and_env_never_logged)
{
    ksock_runtime_t *rt = kt_runtime();
    char err[512];
    ksock_log_options_t lo = {sizeof(lo), KSOCK_LOG_DEBUG, "console", KSOCK_LOG_FORMAT_TEXT, NULL};
    ASSERT_OK(ksock_log_configure(rt, &lo, err, sizeof(err)));
    char path[] = "/tmp/ksock-kt-secret-XXXXXX";
    int fd = mkstemp(path);
    ASSERT(write(fd, "s3cret-from-file\n", 17) == 17);
    close(fd);
    chmod(path, 0600);

    /* From a file: created (nothing connects to 127.0.0.1:1 yet), and the password is masked. */
    create_arg_t a = {rt,
                      kt_conf("bootstrap.servers", "127.0.0.1:1", "security.protocol",
                              "sasl_plaintext", "sasl.mechanisms", "PLAIN", "sasl.username",
                              "alice", "sasl.password.file", path, NULL),
                      0, ""};
    char *log = capture_stderr(create_and_destroy, &a);
    ASSERT_OK(a.rc);
    ASSERT_CONTAINS(log, "sasl.password=***");
    ASSERT_NULL(strstr(log, "s3cret-from-file"));
    free(log);
    ksock_kafka_conf_free(a.conf);

    /* From the environment. */
    setenv("KT_SASL_SECRET", "s3cret-from-env", 1);
    a.conf = kt_conf("bootstrap.servers", "127.0.0.1:1", "security.protocol", "sasl_plaintext",
                     "sasl.mechanisms", "PLAIN", "sasl.username", "alice", "sasl.password.env",
                     "KT_SASL_SECRET", NULL);
    log = capture_stderr(create_and_destroy, &a);
    ASSERT_OK(a.rc);
    ASSERT_NULL(strstr(log, "s3cret-from-env"));
    free(log);
    ksock_kafka_conf_free(a.conf);

    /* Missing variable, unreadable file, two ways at once: errors that name the key. */
    a.conf =
        kt_conf("bootstrap.servers", "embedded", "sasl.password.env", "KT_NOT_SET_ANYWHERE", NULL);
    create_and_destroy(&a);
    ASSERT_EQ(a.rc, KSOCK_E_CONFIG);
    ASSERT_CONTAINS(a.err, "KT_NOT_SET_ANYWHERE");
    ksock_kafka_conf_free(a.conf);
    a.conf =
        kt_conf("bootstrap.servers", "embedded", "ssl.key.password.file", "/nonexistent/x", NULL);
    create_and_destroy(&a);
    ASSERT_EQ(a.rc, KSOCK_E_CONFIG);
    ASSERT_CONTAINS(a.err, "/nonexistent/x");
    ksock_kafka_conf_free(a.conf);
    a.conf = kt_conf("bootstrap.servers", "embedded", "sasl.password", "x", "sasl.password.file",
                     path, NULL);
    create_and_destroy(&a);
    ASSERT_EQ(a.rc, KSOCK_E_CONFIG);
    ASSERT_CONTAINS(a.err, "more than one way");
    ksock_kafka_conf_free(a.conf);
    unlink(path);
    ksock_runtime_destroy(rt);
}

TEST(security_options_translate_and_validate)
{
    ksock_kafka_conf_t *c = kt_conf(NULL);
    char err[512];
    ksock_kafka_security_options_t o = {.size = sizeof(o),
                                        .ca_location = "/ca.pem",
                                        .sasl_mechanism = "SCRAM-SHA-512",
                                        .sasl_username = "alice",
                                        .sasl_password_env = "PW"};
    ASSERT_OK(ksock_kafka_conf_set_security(c, &o, err, sizeof(err)));
    ASSERT_STR_EQ(ksock_kafka_conf_get(c, "security.protocol"), "sasl_ssl");
    ASSERT_STR_EQ(ksock_kafka_conf_get(c, "ssl.endpoint.identification.algorithm"), "https");
    ASSERT_STR_EQ(ksock_kafka_conf_get(c, "sasl.mechanisms"), "SCRAM-SHA-512");
    ASSERT_STR_EQ(ksock_kafka_conf_get(c, "sasl.password.env"), "PW");
    ksock_kafka_conf_free(c);

    c = kt_conf(NULL);
    ksock_kafka_security_options_t bad1 = {.size = sizeof(bad1), .sasl_mechanism = "GSSAPI-X"};
    ASSERT_EQ(ksock_kafka_conf_set_security(c, &bad1, err, sizeof(err)), KSOCK_E_INVAL);
    ASSERT_CONTAINS(err, "GSSAPI-X");
    ksock_kafka_security_options_t bad2 = {.size = sizeof(bad2),
                                           .sasl_mechanism = "PLAIN",
                                           .sasl_username = "a",
                                           .sasl_password = "x",
                                           .sasl_password_env = "Y"};
    ASSERT_EQ(ksock_kafka_conf_set_security(c, &bad2, err, sizeof(err)), KSOCK_E_INVAL);
    ksock_kafka_security_options_t bad3 = {.size = sizeof(bad3), .sasl_mechanism = "PLAIN"};
    ASSERT_EQ(ksock_kafka_conf_set_security(c, &bad3, err, sizeof(err)), KSOCK_E_INVAL);
    ksock_kafka_security_options_t tls = {
        .size = sizeof(tls), .ca_location = "/ca.pem", .no_hostname_verification = true};
    ASSERT_OK(ksock_kafka_conf_set_security(c, &tls, err, sizeof(err)));
    ASSERT_STR_EQ(ksock_kafka_conf_get(c, "security.protocol"), "ssl");
    ASSERT_STR_EQ(ksock_kafka_conf_get(c, "ssl.endpoint.identification.algorithm"), "none");
    ksock_kafka_conf_free(c);
}

TEST(error_mapping)
{
    ASSERT_EQ(ksock_kafka_err_map(RD_KAFKA_RESP_ERR_NO_ERROR), 0);
    ASSERT_EQ(ksock_kafka_err_map(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT), KSOCK_E_TIMEDOUT);
    ASSERT_EQ(ksock_kafka_err_map(RD_KAFKA_RESP_ERR__AUTHENTICATION), KSOCK_E_AUTH);
    ASSERT_EQ(ksock_kafka_err_map(RD_KAFKA_RESP_ERR__SSL), KSOCK_E_TLS);
    ASSERT_EQ(ksock_kafka_err_map(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE), KSOCK_E_TOOBIG);
    ASSERT_EQ(ksock_kafka_err_map(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART), KSOCK_E_UNKNOWN_TOPIC);
    ASSERT_EQ(ksock_kafka_err_map(RD_KAFKA_RESP_ERR__QUEUE_FULL), KSOCK_E_QUEUE_FULL);
    ASSERT_EQ(ksock_kafka_err_map(RD_KAFKA_RESP_ERR__FATAL), KSOCK_E_KAFKA_FATAL);
    ASSERT_EQ(ksock_kafka_err_map(RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION), KSOCK_E_KAFKA);
    ASSERT(ksock_err_is_retriable(ksock_kafka_err_map(RD_KAFKA_RESP_ERR__TRANSPORT)));
    ASSERT(!ksock_err_is_retriable(ksock_kafka_err_map(RD_KAFKA_RESP_ERR__SSL)));
    const ksock_option_t *s = ksock_kafka_options_schema();
    ASSERT_STR_EQ(s[0].name, "bootstrap.servers");
}

/* ---- Produce and consume on the loop --------------------------------------------------- */

#define MAXREC 4096
typedef struct {
    size_t delivered, failed;
    int last_err;
    int32_t partition[MAXREC];
    int64_t offset[MAXREC];
    size_t consumed;
    int64_t seen_offset[MAXREC];
    int32_t seen_partition[MAXREC];
    int seen_index[MAXREC];
    bool cb_on_loop;
} book_t;

static book_t book;

static void on_delivery(ksock_kafka_producer_t *p, const ksock_kafka_delivery_t *d, void *data)
{
    int i = (int)(intptr_t)data;
    if (d->err) {
        book.failed++;
        book.last_err = d->err;
        return;
    }
    ASSERT(i >= 0 && i < MAXREC);
    book.partition[i] = d->partition;
    book.offset[i] = d->offset;
    book.delivered++;
}

static void send_n(ksock_kafka_producer_t *p, const char *topic, int n, int first)
{
    for (int i = first; i < first + n; i++) {
        char key[32], val[64];
        snprintf(key, sizeof(key), "key-%d", i % 7);
        snprintf(val, sizeof(val), "value-%d", i);
        ksock_kafka_header_t h[2] = {{"idx", val + 6, strlen(val + 6)}, {"nullh", NULL, 0}};
        ksock_kafka_record_t r = {.topic = topic,
                                  .key = key,
                                  .key_len = strlen(key),
                                  .value = val,
                                  .value_len = strlen(val),
                                  .headers = h,
                                  .header_count = 2,
                                  .data = (void *)(intptr_t)i};
        ASSERT_OK(ksock_kafka_send(p, &r, on_delivery));
    }
}

static int on_message(ksock_kafka_consumer_t *c, const ksock_kafka_message_t *m, void *data)
{
    char val[64];
    ASSERT(m->value_len < sizeof(val));
    memcpy(val, m->value, m->value_len);
    val[m->value_len] = '\0';
    int i = atoi(val + 6);
    char key[32];
    snprintf(key, sizeof(key), "key-%d", i % 7);
    ASSERT_EQ(m->key_len, strlen(key));
    ASSERT_MEM_EQ(m->key, key, m->key_len);
    ASSERT_EQ(m->header_count, 2);
    ksock_kafka_header_t h;
    ASSERT_OK(ksock_kafka_message_header(m, 0, &h));
    ASSERT_STR_EQ(h.name, "idx");
    ASSERT_EQ(h.value_len, strlen(val + 6));
    ASSERT_MEM_EQ(h.value, val + 6, h.value_len);
    ASSERT_OK(ksock_kafka_message_header_get(m, "nullh", &h));
    ASSERT_NULL(h.value);
    ASSERT_EQ(ksock_kafka_message_header(m, 2, &h), KSOCK_E_NOENT);
    ASSERT(book.consumed < MAXREC);
    book.seen_index[book.consumed] = i;
    book.seen_offset[book.consumed] = m->offset;
    book.seen_partition[book.consumed] = m->partition;
    book.consumed++;
    return 0;
}

static ksock_kafka_producer_t *new_producer(ksock_runtime_t *rt, const char *bootstrap,
                                            const char *k1, const char *v1)
{
    ksock_kafka_conf_t *c = kt_conf("bootstrap.servers", bootstrap, "linger.ms", "1", k1, v1, NULL);
    ksock_kafka_producer_t *p;
    char err[512];
    if (ksock_kafka_producer_new(rt, &p, c, err, sizeof(err)) != 0) TEST_FAIL_("%s", err);
    ksock_kafka_conf_free(c);
    return p;
}

static ksock_kafka_consumer_t *new_consumer(ksock_runtime_t *rt, const char *bootstrap,
                                            const char *const *topics, const char *group,
                                            ksock_kafka_message_cb cb, const char *k1,
                                            const char *v1)
{
    ksock_kafka_conf_t *c =
        kt_conf("bootstrap.servers", bootstrap, "auto.offset.reset", "earliest", NULL);
    char err[512];
    if (group) ASSERT_OK(ksock_kafka_conf_set(c, "group.id", group, err, sizeof(err)));
    if (k1) ASSERT_OK(ksock_kafka_conf_set(c, k1, v1, err, sizeof(err)));
    ksock_kafka_consumer_t *cons;
    if (ksock_kafka_consumer_new(rt, &cons, c, topics, cb, NULL, err, sizeof(err)) != 0)
        TEST_FAIL_("%s", err);
    ksock_kafka_conf_free(c);
    return cons;
}

static void assign_all(ksock_kafka_consumer_t *c, const char *topic, int parts, int64_t offset)
{
    ksock_kafka_partition_t v[64];
    for (int i = 0; i < parts; i++)
        v[i] = (ksock_kafka_partition_t){topic, i, offset, 0};
    ASSERT_OK(ksock_kafka_consumer_assign(c, v, (size_t)parts));
}

TEST(embedded_produce_consume_roundtrip)
{
    memset(&book, 0, sizeof(book));
    ksock_runtime_t *rt = kt_runtime();
    ksock_kafka_producer_t *p = new_producer(rt, "embedded", NULL, NULL);
    rd_kafka_mock_cluster_t *mc = ksock_kafka_embedded_cluster(rt, 1);
    ASSERT_NOT_NULL(mc);
    ASSERT_OK(rd_kafka_mock_topic_create(mc, "t-roundtrip", 3, 1));
    send_n(p, "t-roundtrip", 300, 0);
    ASSERT_EQ(ksock_kafka_producer_pending(p), 300);
    ASSERT_EQ(book.delivered, 0); /* never inside the call */
    ASSERT(kt_wait_count(rt, &book.delivered, 300, 20000));
    ASSERT_EQ(ksock_kafka_producer_pending(p), 0);

    ksock_kafka_consumer_t *c = new_consumer(rt, "embedded", NULL, NULL, on_message, NULL, NULL);
    assign_all(c, "t-roundtrip", 3, KSOCK_KAFKA_OFFSET_BEGINNING);
    ASSERT_OK(ksock_kafka_consumer_start(c));
    ASSERT(kt_wait_count(rt, &book.consumed, 300, 20000));
    /* Every record where its delivery report said, each partition in order. */
    int64_t last[3] = {-1, -1, -1};
    for (size_t k = 0; k < book.consumed; k++) {
        int i = book.seen_index[k];
        ASSERT_EQ(book.seen_partition[k], book.partition[i]);
        ASSERT_EQ(book.seen_offset[k], book.offset[i]);
        ASSERT_GT(book.seen_offset[k], last[book.seen_partition[k]]);
        last[book.seen_partition[k]] = book.seen_offset[k];
    }
    ksock_kafka_consumer_stats_t st = {.size = sizeof(st)};
    ksock_kafka_consumer_stats(c, &st);
    ASSERT_EQ(st.delivered, 300);
    ASSERT_GT(st.wakeups, 0);
    ksock_kafka_consumer_destroy(c);
    ksock_kafka_producer_destroy(p, 1000);
    ASSERT_EQ(kt_nerrors, 0);
    ksock_runtime_destroy(rt);
}

static size_t assigned_count, revoked_count;
static void on_rebalance(ksock_kafka_consumer_t *c, ksock_kafka_rebalance_t what,
                         const ksock_kafka_partition_t *parts, size_t n, void *data)
{
    if (what == KSOCK_KAFKA_ASSIGNED)
        assigned_count += n;
    else
        revoked_count += n;
}

TEST(embedded_three_brokers_group_mode)
{
    memset(&book, 0, sizeof(book));
    assigned_count = revoked_count = 0;
    ksock_runtime_t *rt = kt_runtime();
    ksock_kafka_producer_t *p = new_producer(rt, "embedded:3", NULL, NULL);
    rd_kafka_mock_cluster_t *mc = ksock_kafka_embedded_cluster(rt, 3);
    ASSERT_NOT_NULL(mc);
    ASSERT_NULL(ksock_kafka_embedded_cluster(rt, 1)); /* a different cluster, not started */
    ASSERT_OK(rd_kafka_mock_topic_create(mc, "t-group", 4, 3));
    const char *topics[] = {"t-group", NULL};
    ksock_kafka_consumer_t *c =
        new_consumer(rt, "embedded:3", topics, "g1", on_message, NULL, NULL);
    ksock_kafka_consumer_on_rebalance(c, on_rebalance, NULL);
    ASSERT_OK(ksock_kafka_consumer_start(c));
    ASSERT(kt_wait_count(rt, &assigned_count, 4, 30000));
    send_n(p, "t-group", 100, 0);
    ASSERT(kt_wait_count(rt, &book.consumed, 100, 30000));
    ASSERT_OK(ksock_kafka_consumer_stop(c));
    ASSERT(kt_wait_count(rt, &revoked_count, 4, 30000));
    ksock_kafka_consumer_destroy(c);
    ksock_kafka_producer_destroy(p, 1000);
    ksock_runtime_destroy(rt);
}

TEST(fault_injection_retriable_errors_are_retried)
{
    memset(&book, 0, sizeof(book));
    ksock_runtime_t *rt = kt_runtime();
    ksock_kafka_producer_t *p = new_producer(rt, "embedded", "retry.backoff.ms", "10");
    rd_kafka_mock_cluster_t *mc = ksock_kafka_embedded_cluster(rt, 1);
    ASSERT_OK(rd_kafka_mock_topic_create(mc, "t-faults", 1, 1));
    rd_kafka_mock_push_request_errors(
        mc, APIKEY_PRODUCE, 3, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS);
    send_n(p, "t-faults", 20, 0);
    ASSERT(kt_wait_count(rt, &book.delivered, 20, 20000));
    ASSERT_EQ(book.failed, 0);
    /* Idempotence keeps order through the retries: offsets follow send order. */
    for (int i = 1; i < 20; i++)
        ASSERT_EQ(book.offset[i], book.offset[i - 1] + 1);
    ksock_kafka_producer_destroy(p, 1000);
    ksock_runtime_destroy(rt);
}

TEST(fault_injection_permanent_error_reaches_the_callback)
{
    memset(&book, 0, sizeof(book));
    ksock_runtime_t *rt = kt_runtime();
    ksock_kafka_producer_t *p = new_producer(rt, "embedded", NULL, NULL);
    rd_kafka_mock_cluster_t *mc = ksock_kafka_embedded_cluster(rt, 1);
    ASSERT_OK(rd_kafka_mock_topic_create(mc, "t-denied", 1, 1));
    rd_kafka_mock_push_request_errors(mc, APIKEY_PRODUCE, 1,
                                      RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    send_n(p, "t-denied", 1, 0);
    size_t done = 0;
    while (book.failed + book.delivered == 0 && done++ < 500)
        ksock_runtime_run_once(rt, true);
    ASSERT_EQ(book.failed, 1);
    ASSERT_EQ(book.last_err, KSOCK_E_FORBIDDEN);
    ksock_kafka_producer_destroy(p, 1000);
    ksock_runtime_destroy(rt);
}

/* ---- Destroy semantics -------------------------------------------------------------------- */

TEST(destroy_fires_every_pending_callback)
{
    memset(&book, 0, sizeof(book));
    ksock_runtime_t *rt = kt_runtime();
    ksock_kafka_producer_t *p = new_producer(rt, "embedded", NULL, NULL);
    rd_kafka_mock_cluster_t *mc = ksock_kafka_embedded_cluster(rt, 1);
    ASSERT_OK(rd_kafka_mock_topic_create(mc, "t-down", 1, 1));
    send_n(p, "t-down", 1, 0);
    ASSERT(kt_wait_count(rt, &book.delivered, 1, 20000)); /* connected once */
    rd_kafka_mock_broker_set_down(mc, 1);
    send_n(p, "t-down", 50, 1);
    kt_run_for(rt, 200);
    ASSERT_EQ(ksock_kafka_producer_pending(p), 50);
    uint64_t t0 = kt_ms();
    ksock_kafka_producer_destroy(p, 300);
    ASSERT_LT(kt_ms() - t0, 5000);
    ASSERT_EQ(book.failed, 50);
    ASSERT_EQ(book.last_err, KSOCK_E_CANCELED);
    ksock_runtime_destroy(rt);
}

static ksock_kafka_producer_t *self_destroying;
static void destroy_in_callback(ksock_kafka_producer_t *p, const ksock_kafka_delivery_t *d,
                                void *data)
{
    book.delivered++;
    if (book.delivered == 1) {
        ASSERT(p == self_destroying);
        ksock_kafka_producer_destroy(p, 1000);
        /* Still valid until we return; sending is refused now. */
        ksock_kafka_record_t r = {.topic = "t-self", .value = "x", .value_len = 1};
        ASSERT_EQ(ksock_kafka_send(p, &r, NULL), KSOCK_E_STATE);
    }
}

TEST(destroy_inside_own_callback)
{
    memset(&book, 0, sizeof(book));
    ksock_runtime_t *rt = kt_runtime();
    ksock_kafka_producer_t *p = new_producer(rt, "embedded", NULL, NULL);
    self_destroying = p;
    for (int i = 0; i < 10; i++) {
        ksock_kafka_record_t r = {.topic = "t-self", .value = "x", .value_len = 1};
        ASSERT_OK(ksock_kafka_send(p, &r, destroy_in_callback));
    }
    ASSERT(kt_wait_count(rt, &book.delivered, 10, 20000));
    kt_run_for(rt, 50); /* the queued destroy ran */
    ksock_runtime_destroy(rt);
}

static size_t cancelled;
static void count_cancel(ksock_kafka_producer_t *p, const ksock_kafka_delivery_t *d, void *data)
{
    if (d->err) cancelled++;
}

TEST(runtime_destroy_closes_handles_left_open)
{
    cancelled = 0;
    ksock_runtime_t *rt = kt_runtime();
    ksock_kafka_producer_t *p = new_producer(rt, "embedded", NULL, NULL);
    rd_kafka_mock_cluster_t *mc = ksock_kafka_embedded_cluster(rt, 1);
    rd_kafka_mock_broker_set_down(mc, 1);
    for (int i = 0; i < 5; i++) {
        ksock_kafka_record_t r = {.topic = "t-left", .value = "x", .value_len = 1};
        ASSERT_OK(ksock_kafka_send(p, &r, count_cancel));
    }
    ksock_kafka_consumer_t *c =
        new_consumer(rt, "embedded", NULL, NULL, ignore_message, NULL, NULL);
    (void)c;
    ksock_runtime_destroy(rt); /* closes both, fires the 5 callbacks; ASan checks the rest */
    ASSERT_EQ(cancelled, 5);
}

static int flush_status = 99;
static size_t flushes;
static void on_flush(ksock_kafka_producer_t *p, int status, void *data)
{
    flush_status = status;
    flushes++;
}

TEST(flush_never_fires_inside_the_call)
{
    memset(&book, 0, sizeof(book));
    ksock_runtime_t *rt = kt_runtime();
    ksock_kafka_producer_t *p = new_producer(rt, "embedded", NULL, NULL);
    flushes = 0;
    ASSERT_OK(ksock_kafka_producer_flush(p, 1000, on_flush, NULL));
    ASSERT_EQ(flushes, 0);
    ASSERT(kt_wait_count(rt, &flushes, 1, 5000));
    ASSERT_EQ(flush_status, 0);
    send_n(p, "t-flush", 100, 0);
    ASSERT_OK(ksock_kafka_producer_flush(p, 10000, on_flush, NULL));
    ASSERT(kt_wait_count(rt, &flushes, 2, 15000));
    ASSERT_EQ(flush_status, 0);
    ASSERT_EQ(book.delivered, 100);
    /* Blocking flush, and a flush that times out. */
    send_n(p, "t-flush", 100, 100);
    ASSERT_OK(ksock_kafka_producer_flush_sync(p, 10000));
    ASSERT_EQ(book.delivered, 200);
    rd_kafka_mock_broker_set_down(ksock_kafka_embedded_cluster(rt, 1), 1);
    send_n(p, "t-flush", 1, 200);
    ASSERT_OK(ksock_kafka_producer_flush(p, 100, on_flush, NULL));
    ASSERT(kt_wait_count(rt, &flushes, 3, 5000));
    ASSERT_EQ(flush_status, KSOCK_E_TIMEDOUT);
    ksock_kafka_producer_destroy(p, 0);
    ksock_runtime_destroy(rt);
}

/* ---- Bounded drains and backpressure -------------------------------------------------------- */

static size_t ticks, ticks_seen_while_consuming;
static void on_tick(ksock_timer_t *t, void *data)
{
    ticks++;
}

static int slowish_handler(ksock_kafka_consumer_t *c, const ksock_kafka_message_t *m, void *data)
{
    if (book.consumed > 0 && ticks > (size_t)book.seen_index[0]) ticks_seen_while_consuming++;
    if (book.consumed == 0) book.seen_index[0] = (int)ticks;
    book.consumed++;
    usleep(50); /* a handler with some work: 2000 messages take > 100 ms */
    return 0;
}

TEST(drain_is_bounded_and_other_events_run_in_between)
{
    memset(&book, 0, sizeof(book));
    ticks = ticks_seen_while_consuming = 0;
    ksock_runtime_t *rt = kt_runtime();
    ksock_kafka_producer_t *p = new_producer(rt, "embedded", NULL, NULL);
    rd_kafka_mock_topic_create(ksock_kafka_embedded_cluster(rt, 1), "t-bounded", 1, 1);
    send_n(p, "t-bounded", 2000, 0);
    ASSERT_OK(ksock_kafka_producer_flush_sync(p, 20000));
    ksock_kafka_consumer_t *c =
        new_consumer(rt, "embedded", NULL, NULL, slowish_handler, "ksock.dispatch.batch", "16");
    assign_all(c, "t-bounded", 1, KSOCK_KAFKA_OFFSET_BEGINNING);
    ASSERT_OK(ksock_kafka_consumer_start(c));
    ksock_timer_t *t;
    ASSERT_OK(ksock_timer_init(rt, &t, on_tick, NULL));
    ASSERT_OK(ksock_timer_start(t, 1, 1));
    ASSERT(kt_wait_count(rt, &book.consumed, 2000, 30000));
    ksock_kafka_consumer_stats_t st = {.size = sizeof(st)};
    ksock_kafka_consumer_stats(c, &st);
    ASSERT_GT(st.continued, 0);               /* drains were cut at 16 and resumed */
    ASSERT_GT(ticks_seen_while_consuming, 0); /* and the timer ran between them */
    ksock_timer_close(t);
    ksock_kafka_consumer_destroy(c);
    ksock_kafka_producer_destroy(p, 0);
    ksock_runtime_destroy(rt);
}

static int64_t expect_next;
static size_t pauses;
static ksock_kafka_consumer_t *pausing;
static int pausing_handler(ksock_kafka_consumer_t *c, const ksock_kafka_message_t *m, void *data)
{
    ASSERT_EQ(m->offset, expect_next); /* in order, nothing skipped, nothing twice */
    /* Refuse every 97th message once: the same message must come back first. */
    if (m->offset % 97 == 0 && book.seen_index[m->offset % MAXREC] == 0) {
        book.seen_index[m->offset % MAXREC] = 1;
        pauses++;
        return KSOCK_KAFKA_PAUSE;
    }
    expect_next++;
    book.consumed++;
    return 0;
}

static void resume_later(ksock_timer_t *t, void *data)
{
    ksock_kafka_consumer_stats_t st = {.size = sizeof(st)};
    ksock_kafka_consumer_stats(pausing, &st);
    if (st.paused) ASSERT_OK(ksock_kafka_consumer_resume(pausing, "t-pause", 0));
}

TEST(pause_from_handler_parks_and_resume_redelivers_in_order)
{
    memset(&book, 0, sizeof(book));
    expect_next = 0;
    pauses = 0;
    ksock_runtime_t *rt = kt_runtime();
    ksock_kafka_producer_t *p = new_producer(rt, "embedded", NULL, NULL);
    rd_kafka_mock_topic_create(ksock_kafka_embedded_cluster(rt, 1), "t-pause", 1, 1);
    send_n(p, "t-pause", 1000, 0);
    ASSERT_OK(ksock_kafka_producer_flush_sync(p, 20000));
    pausing = new_consumer(rt, "embedded", NULL, NULL, pausing_handler, NULL, NULL);
    /* Assigned before start: held until start, nothing lost meanwhile. */
    assign_all(pausing, "t-pause", 1, KSOCK_KAFKA_OFFSET_BEGINNING);
    kt_run_for(rt, 100);
    ASSERT_EQ(book.consumed, 0);
    ASSERT_OK(ksock_kafka_consumer_start(pausing));
    ksock_timer_t *t;
    ASSERT_OK(ksock_timer_init(rt, &t, resume_later, NULL));
    ASSERT_OK(ksock_timer_start(t, 30, 30));
    ASSERT(kt_wait_count(rt, &book.consumed, 1000, 30000));
    ASSERT_EQ(pauses, 11); /* offsets 0, 97, ..., 970 */
    ASSERT_EQ(ksock_kafka_consumer_pause(pausing, "t-other", 0), KSOCK_E_NOENT);
    ksock_timer_close(t);
    ksock_kafka_consumer_destroy(pausing);
    ksock_kafka_producer_destroy(p, 0);
    ksock_runtime_destroy(rt);
}

/* stop() from inside the handler while parked messages are handed over: nothing more, no crash. */
static size_t stop_calls, stop_after;
static int stopping_handler(ksock_kafka_consumer_t *c, const ksock_kafka_message_t *m, void *data)
{
    (void)data;
    stop_calls++;
    if (m->offset == 0 && stop_calls == 1) return KSOCK_KAFKA_PAUSE; /* parks 0 and what follows */
    if (stop_calls == stop_after) ASSERT_OK(ksock_kafka_consumer_stop(c));
    ASSERT(stop_calls <= stop_after); /* no message after stop() */
    return 0;
}

static void resume_once(ksock_timer_t *t, void *data)
{
    (void)t;
    ksock_kafka_consumer_resume(data, "t-stop", 0);
}

TEST(stop_inside_handler_while_parked_messages_are_handed_over)
{
    stop_calls = 0;
    stop_after = 3;
    ksock_runtime_t *rt = kt_runtime();
    ksock_kafka_producer_t *p = new_producer(rt, "embedded", NULL, NULL);
    rd_kafka_mock_topic_create(ksock_kafka_embedded_cluster(rt, 1), "t-stop", 1, 1);
    send_n(p, "t-stop", 50, 0);
    ASSERT_OK(ksock_kafka_producer_flush_sync(p, 20000));
    ksock_kafka_consumer_t *c =
        new_consumer(rt, "embedded", NULL, NULL, stopping_handler, NULL, NULL);
    assign_all(c, "t-stop", 1, KSOCK_KAFKA_OFFSET_BEGINNING);
    ASSERT_OK(ksock_kafka_consumer_start(c));
    kt_run_for(rt, 1000); /* offset 0 parked, and the rest of the batch behind it */
    ksock_kafka_consumer_stats_t st = {.size = sizeof(st)};
    ksock_kafka_consumer_stats(c, &st);
    ASSERT_GT(st.parked, 1);
    ksock_timer_t *t;
    ASSERT_OK(ksock_timer_init(rt, &t, resume_once, c));
    ASSERT_OK(ksock_timer_start(t, 10, 0));
    kt_run_for(rt, 500); /* parked messages handed over; the third call stops the consumer */
    ASSERT_EQ(stop_calls, stop_after);
    ksock_kafka_consumer_stats(c, &st);
    ASSERT_EQ(st.parked, 0);
    ksock_timer_close(t);
    ksock_kafka_consumer_destroy(c);
    ksock_kafka_producer_destroy(p, 0);
    ksock_runtime_destroy(rt);
}

KT_TEST_LIST(false, TEST_ENTRY(conf_set_get_dump_masks_secrets),
             TEST_ENTRY(conf_indirections_only_for_secrets), TEST_ENTRY(conf_from_config_section),
             TEST_ENTRY(config_file_may_not_hold_secrets),
             TEST_ENTRY(unknown_property_named_at_create),
             TEST_ENTRY(bootstrap_required_and_embedded_spec_checked),
             TEST_ENTRY(embedded_warns_that_data_is_in_memory_only),
             TEST_ENTRY(secrets_from_file_and_env_never_logged),
             TEST_ENTRY(security_options_translate_and_validate), TEST_ENTRY(error_mapping),
             TEST_ENTRY(embedded_produce_consume_roundtrip),
             TEST_ENTRY(embedded_three_brokers_group_mode),
             TEST_ENTRY(fault_injection_retriable_errors_are_retried),
             TEST_ENTRY(fault_injection_permanent_error_reaches_the_callback),
             TEST_ENTRY(destroy_fires_every_pending_callback),
             TEST_ENTRY(destroy_inside_own_callback),
             TEST_ENTRY(runtime_destroy_closes_handles_left_open),
             TEST_ENTRY(flush_never_fires_inside_the_call),
             TEST_ENTRY(drain_is_bounded_and_other_events_run_in_between),
             TEST_ENTRY(pause_from_handler_parks_and_resume_redelivers_in_order),
             TEST_ENTRY(stop_inside_handler_while_parked_messages_are_handed_over))
