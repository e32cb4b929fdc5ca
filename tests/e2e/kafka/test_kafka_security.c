/*
 * Kafka security against the real broker's listeners: SASL PLAIN,
 * SCRAM-SHA-256/512, SSL with CA and host-name verification, SASL_SSL, and
 * the failures (wrong password, untrusted CA, host-name mismatch), each of
 * which must reach the error handler as a clear error without a hang.
 *
 * SCRAM: librdkafka < 2.6.1 (Debian 12 ships 2.0.2) cannot do SCRAM with
 * Kafka 4.x brokers (librdkafka#4895). run_security.py then points
 * KT_SCRAM_BOOTSTRAP at a Kafka 3.9 broker it starts for the SCRAM round
 * trips, and scram_rejected_by_kafka4_is_explained checks that the 4.x
 * failure is reported with the reason.
 */
#include "kt.h"

#include <sys/stat.h>

static size_t delivered, failed, consumed;
static int last_err;

static void on_delivery(ksock_kafka_producer_t *p, const ksock_kafka_delivery_t *d, void *data)
{
    if (d->err) {
        failed++;
        last_err = d->err;
    } else {
        delivered++;
    }
}

static int on_message(ksock_kafka_consumer_t *c, const ksock_kafka_message_t *m, void *data)
{
    char want[64];
    snprintf(want, sizeof(want), "secure-%zu", consumed);
    ASSERT_EQ(m->value_len, strlen(want));
    ASSERT_MEM_EQ(m->value, want, m->value_len);
    ASSERT_EQ(m->key_len, 3);
    ASSERT_MEM_EQ(m->key, "key", 3);
    ksock_kafka_header_t h;
    ASSERT_OK(ksock_kafka_message_header_get(m, "via", &h));
    ASSERT_MEM_EQ(h.value, "ksock", 5);
    consumed++;
    return 0;
}

static const char *need(const char *name)
{
    const char *v = kt_env(name);
    if (v == NULL) TEST_FAIL_("%s is not set (tools/kafka single mode exports it)", name);
    return v;
}

/* A file holding `secret`, mode 0600; the caller unlinks it. */
static const char *secret_file(char *path, size_t size, const char *secret)
{
    snprintf(path, size, "/tmp/ksock-kt-pw-XXXXXX");
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    ASSERT(write(fd, secret, strlen(secret)) == (ssize_t)strlen(secret));
    ASSERT(write(fd, "\n", 1) == 1);
    close(fd);
    chmod(path, 0600);
    return path;
}

static ksock_kafka_conf_t *secure_conf(const char *bootstrap,
                                       const ksock_kafka_security_options_t *o)
{
    ksock_kafka_conf_t *c =
        kt_conf("bootstrap.servers", bootstrap, "message.timeout.ms", "8000", NULL);
    char err[512];
    if (o && ksock_kafka_conf_set_security(c, o, err, sizeof(err)) != 0) TEST_FAIL_("%s", err);
    return c;
}

/* Produce 5 records and read them back with the same settings. */
static void roundtrip(ksock_runtime_t *rt, const ksock_kafka_conf_t *conf, const char *what)
{
    delivered = failed = consumed = 0;
    char topic[128], err[512];
    kt_topic(topic, sizeof(topic), what);
    ksock_kafka_producer_t *p;
    if (ksock_kafka_producer_new(rt, &p, conf, err, sizeof(err)) != 0) TEST_FAIL_("%s", err);
    for (int i = 0; i < 5; i++) {
        char val[64];
        snprintf(val, sizeof(val), "secure-%d", i);
        ksock_kafka_header_t h = {"via", "ksock", 5};
        /* One partition (auto-created), so order across records is kept. */
        ksock_kafka_record_t r = {.topic = topic,
                                  .key = "key",
                                  .key_len = 3,
                                  .value = val,
                                  .value_len = strlen(val),
                                  .headers = &h,
                                  .header_count = 1,
                                  .flags = KSOCK_KAFKA_RECORD_F_PARTITION,
                                  .partition = 0};
        ASSERT_OK(ksock_kafka_send(p, &r, on_delivery));
    }
    ASSERT(kt_wait_count(rt, &delivered, 5, 30000));
    ksock_kafka_consumer_t *c;
    if (ksock_kafka_consumer_new(rt, &c, conf, NULL, on_message, NULL, err, sizeof(err)) != 0)
        TEST_FAIL_("%s", err);
    ksock_kafka_partition_t part = {topic, 0, KSOCK_KAFKA_OFFSET_BEGINNING, 0};
    ASSERT_OK(ksock_kafka_consumer_assign(c, &part, 1));
    ASSERT_OK(ksock_kafka_consumer_start(c));
    ASSERT(kt_wait_count(rt, &consumed, 5, 30000));
    ksock_kafka_consumer_destroy(c);
    ksock_kafka_producer_destroy(p, 2000);
    ASSERT_EQ(failed, 0);
    printf("# %s: 5 records with key and header produced and consumed back\n", what);
}

static bool error_heard(void *arg)
{
    const int *code = arg;
    return kt_find_error(*code, NULL) != NULL;
}

/*
 * A connection that must fail: the error handler hears `code` with
 * `needle` in the message within 20 s, a record sent meanwhile fails through
 * its callback, and destroying the producer does not hang.
 */
static void must_fail(ksock_runtime_t *rt, ksock_kafka_conf_t *conf, int code, const char *needle)
{
    delivered = failed = 0;
    char err[512];
    ASSERT_OK(ksock_kafka_conf_set(conf, "message.timeout.ms", "4000", err, sizeof(err)));
    ksock_kafka_producer_t *p;
    if (ksock_kafka_producer_new(rt, &p, conf, err, sizeof(err)) != 0) TEST_FAIL_("%s", err);
    ksock_kafka_record_t r = {.topic = "ksock-test-secure-fail", .value = "x", .value_len = 1};
    ASSERT_OK(ksock_kafka_send(p, &r, on_delivery));
    uint64_t t0 = kt_ms();
    ASSERT(kt_run_until(rt, error_heard, &code, 20000));
    const kt_error_t *e = kt_find_error(code, NULL);
    printf("# after %.1f s: %s: %s\n", (double)(kt_ms() - t0) / 1000.0, ksock_err_name(e->code),
           e->message);
    ASSERT_NOT_NULL(kt_find_error(code, needle));
    ASSERT(kt_wait_count(rt, &failed, 1, 15000));
    ASSERT_EQ(delivered, 0);
    t0 = kt_ms();
    ksock_kafka_producer_destroy(p, 1000);
    ASSERT_LT(kt_ms() - t0, 5000);
}

/* ---- SASL ------------------------------------------------------------------------------ */

TEST(sasl_plain_password_from_env)
{
    ksock_runtime_t *rt = kt_runtime();
    setenv("KT_KAFKA_PW", need("KSOCK_KAFKA_SASL_PASSWORD"), 1);
    ksock_kafka_security_options_t o = {.size = sizeof(o),
                                        .sasl_mechanism = "PLAIN",
                                        .sasl_username = need("KSOCK_KAFKA_SASL_USER"),
                                        .sasl_password_env = "KT_KAFKA_PW"};
    ksock_kafka_conf_t *c = secure_conf(need("KSOCK_KAFKA_SASL_BOOTSTRAP"), &o);
    roundtrip(rt, c, "sasl-plain");
    ksock_kafka_conf_free(c);
    ksock_runtime_destroy(rt);
}

TEST(sasl_plain_wrong_password)
{
    ksock_runtime_t *rt = kt_runtime();
    ksock_kafka_security_options_t o = {.size = sizeof(o),
                                        .sasl_mechanism = "PLAIN",
                                        .sasl_username = need("KSOCK_KAFKA_SASL_USER"),
                                        .sasl_password = "not-the-password"};
    ksock_kafka_conf_t *c = secure_conf(need("KSOCK_KAFKA_SASL_BOOTSTRAP"), &o);
    must_fail(rt, c, KSOCK_E_AUTH, "Authentication failed");
    ASSERT_NULL(kt_find_error(0, "not-the-password")); /* never in a message */
    ksock_kafka_conf_free(c);
    ksock_runtime_destroy(rt);
}

static const char *scram_bootstrap(void)
{
    const char *b = kt_env("KT_SCRAM_BOOTSTRAP");
    return b ? b : need("KSOCK_KAFKA_SASL_BOOTSTRAP");
}

static void scram_roundtrip(const char *mech)
{
    ksock_runtime_t *rt = kt_runtime();
    char path[64];
    secret_file(path, sizeof(path), need("KSOCK_KAFKA_SASL_PASSWORD"));
    ksock_kafka_security_options_t o = {.size = sizeof(o),
                                        .sasl_mechanism = mech,
                                        .sasl_username = need("KSOCK_KAFKA_SASL_USER"),
                                        .sasl_password_file = path};
    ksock_kafka_conf_t *c = secure_conf(scram_bootstrap(), &o);
    printf("# %s against %s (Kafka %s)\n", mech, scram_bootstrap(),
           kt_env("KT_SCRAM_BOOTSTRAP") ? kt_env("KT_SCRAM_KAFKA_VERSION")
                                        : kt_env("KSOCK_KAFKA_VERSION"));
    roundtrip(rt, c, mech);
    ksock_kafka_conf_free(c);
    unlink(path);
    ksock_runtime_destroy(rt);
}

TEST(sasl_scram_sha256_password_from_file)
{
    scram_roundtrip("SCRAM-SHA-256");
}

TEST(sasl_scram_sha512_password_from_file)
{
    scram_roundtrip("SCRAM-SHA-512");
}

TEST(sasl_scram_wrong_password)
{
    ksock_runtime_t *rt = kt_runtime();
    ksock_kafka_security_options_t o = {.size = sizeof(o),
                                        .sasl_mechanism = "SCRAM-SHA-512",
                                        .sasl_username = need("KSOCK_KAFKA_SASL_USER"),
                                        .sasl_password = "not-the-password"};
    ksock_kafka_conf_t *c = secure_conf(scram_bootstrap(), &o);
    must_fail(rt, c, KSOCK_E_AUTH, "Authentication failed");
    ksock_kafka_conf_free(c);
    ksock_runtime_destroy(rt);
}

TEST(scram_rejected_by_kafka4_is_explained)
{
    const char *ver = kt_env("KSOCK_KAFKA_VERSION");
    if (rd_kafka_version() >= 0x020601ff || ver == NULL || atoi(ver) < 4) {
        printf("# not applicable: librdkafka %s, Kafka %s\n", rd_kafka_version_str(),
               ver ? ver : "?");
        return;
    }
    ksock_runtime_t *rt = kt_runtime();
    ksock_kafka_security_options_t o = {.size = sizeof(o),
                                        .sasl_mechanism = "SCRAM-SHA-256",
                                        .sasl_username = need("KSOCK_KAFKA_SASL_USER"),
                                        .sasl_password = need("KSOCK_KAFKA_SASL_PASSWORD")};
    ksock_kafka_conf_t *c = secure_conf(need("KSOCK_KAFKA_SASL_BOOTSTRAP"), &o);
    must_fail(rt, c, KSOCK_E_AUTH, "librdkafka#4895");
    ksock_kafka_conf_free(c);
    ksock_runtime_destroy(rt);
}

/* ---- TLS ------------------------------------------------------------------------------- */

TEST(ssl_with_ca_and_hostname_verification)
{
    ksock_runtime_t *rt = kt_runtime();
    ksock_kafka_security_options_t o = {.size = sizeof(o), .ca_location = need("KSOCK_KAFKA_CA")};
    ksock_kafka_conf_t *c = secure_conf(need("KSOCK_KAFKA_SSL_BOOTSTRAP"), &o);
    ASSERT_STR_EQ(ksock_kafka_conf_get(c, "ssl.endpoint.identification.algorithm"), "https");
    roundtrip(rt, c, "ssl");
    ksock_kafka_conf_free(c);
    ksock_runtime_destroy(rt);
}

TEST(ssl_untrusted_ca)
{
    ksock_runtime_t *rt = kt_runtime();
    ksock_kafka_security_options_t o = {.size = sizeof(o),
                                        .ca_location = need("KSOCK_KAFKA_UNTRUSTED_CA")};
    ksock_kafka_conf_t *c = secure_conf(need("KSOCK_KAFKA_SSL_BOOTSTRAP"), &o);
    must_fail(rt, c, KSOCK_E_TLS, "does not lead to a trusted CA");
    ksock_kafka_conf_free(c);
    ksock_runtime_destroy(rt);
}

TEST(ssl_hostname_mismatch)
{
    ksock_runtime_t *rt = kt_runtime();
    /* Same trusted CA; the certificate names wrong-name.invalid, not 127.0.0.1. */
    ksock_kafka_security_options_t o = {.size = sizeof(o), .ca_location = need("KSOCK_KAFKA_CA")};
    ksock_kafka_conf_t *c = secure_conf(need("KSOCK_KAFKA_SSL_BADNAME_BOOTSTRAP"), &o);
    must_fail(rt, c, KSOCK_E_TLS, "address mismatch");
    ksock_kafka_conf_free(c);
    /* Control: with verification of the name off, the same listener works. */
    o.no_hostname_verification = true;
    c = secure_conf(need("KSOCK_KAFKA_SSL_BADNAME_BOOTSTRAP"), &o);
    roundtrip(rt, c, "ssl-noverify");
    ksock_kafka_conf_free(c);
    ksock_runtime_destroy(rt);
}

TEST(sasl_ssl_through_runtime_wide_security)
{
    ksock_runtime_t *rt = kt_runtime();
    char path[64], err[512];
    secret_file(path, sizeof(path), need("KSOCK_KAFKA_SASL_PASSWORD"));
    ksock_kafka_security_options_t o = {.size = sizeof(o),
                                        .ca_location = need("KSOCK_KAFKA_CA"),
                                        .sasl_mechanism = "PLAIN",
                                        .sasl_username = need("KSOCK_KAFKA_SASL_USER"),
                                        .sasl_password_file = path};
    /* Spec V configureKafkaSecurity: once, for every handle created afterwards. */
    ASSERT_OK(ksock_kafka_configure_security(rt, &o, err, sizeof(err)));
    ksock_kafka_conf_t *c = secure_conf(need("KSOCK_KAFKA_SASL_SSL_BOOTSTRAP"), NULL);
    roundtrip(rt, c, "sasl-ssl");
    ksock_kafka_conf_free(c);
    unlink(path);
    ksock_runtime_destroy(rt);
}

/* A client key encrypted with a password, and its certificate (the broker does not ask for it). */
static bool make_client_key(const char *dir, const char *password)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey rsa:2048 -days 1 -subj /CN=ksock-test-client "
             "-keyout %s/client.key -out %s/client.pem -passout pass:%s >/dev/null 2>&1",
             dir, dir, password);
    return system(cmd) == 0;
}

TEST(ssl_client_key_password_from_file)
{
    char dir[] = "/tmp/ksock-kt-tls-XXXXXX", key[128], crt[128], pw[64], err[512];
    ASSERT_NOT_NULL(mkdtemp(dir));
    ASSERT(make_client_key(dir, "key-secret"));
    snprintf(key, sizeof(key), "%s/client.key", dir);
    snprintf(crt, sizeof(crt), "%s/client.pem", dir);
    ksock_runtime_t *rt = kt_runtime();
    secret_file(pw, sizeof(pw), "key-secret");
    ksock_kafka_security_options_t o = {.size = sizeof(o),
                                        .ca_location = need("KSOCK_KAFKA_CA"),
                                        .certificate_location = crt,
                                        .key_location = key,
                                        .key_password_file = pw};
    ksock_kafka_conf_t *c = secure_conf(need("KSOCK_KAFKA_SSL_BOOTSTRAP"), &o);
    roundtrip(rt, c, "ssl-client-key");
    ksock_kafka_conf_free(c);
    /* The wrong key password is an error at create, naming the key, not the password. */
    unlink(pw);
    secret_file(pw, sizeof(pw), "wrong-secret");
    c = secure_conf(need("KSOCK_KAFKA_SSL_BOOTSTRAP"), &o);
    ksock_kafka_producer_t *p;
    ASSERT_EQ(ksock_kafka_producer_new(rt, &p, c, err, sizeof(err)), KSOCK_E_CONFIG);
    printf("# wrong key password: %s\n", err);
    ASSERT_CONTAINS(err, "client.key");
    ASSERT_NULL(strstr(err, "wrong-secret"));
    ksock_kafka_conf_free(c);
    unlink(pw);
    unlink(key);
    unlink(crt);
    rmdir(dir);
    ksock_runtime_destroy(rt);
}

KT_TEST_LIST(true, TEST_ENTRY(sasl_plain_password_from_env), TEST_ENTRY(sasl_plain_wrong_password),
             TEST_ENTRY(sasl_scram_sha256_password_from_file),
             TEST_ENTRY(sasl_scram_sha512_password_from_file),
             TEST_ENTRY(sasl_scram_wrong_password),
             TEST_ENTRY(scram_rejected_by_kafka4_is_explained),
             TEST_ENTRY(ssl_with_ca_and_hostname_verification), TEST_ENTRY(ssl_untrusted_ca),
             TEST_ENTRY(ssl_hostname_mismatch), TEST_ENTRY(sasl_ssl_through_runtime_wide_security),
             TEST_ENTRY(ssl_client_key_password_from_file))
