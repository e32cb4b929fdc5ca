/*
 * Bad input against the real broker: unknown topic with auto-creation off,
 * a broker that is not there, records larger than the broker accepts.
 * Each must end in a clear error (callback and/or error handler) and no hang.
 * (Unknown properties and bad values are refused at create: test_kafka_embedded.c.)
 */
#include "kt.h"

#include <netinet/in.h>
#include <sys/socket.h>

static size_t done, ok_count;
static int last_err;
static char last_errstr[256];

static void on_delivery(ksock_kafka_producer_t *p, const ksock_kafka_delivery_t *d, void *data)
{
    if (d->err == 0) {
        ok_count++;
    } else {
        last_err = d->err;
        snprintf(last_errstr, sizeof(last_errstr), "%s", d->errstr ? d->errstr : "");
        ASSERT_EQ(d->offset, -1);
    }
    done++;
}

static void reset(void)
{
    done = ok_count = 0;
    last_err = 0;
    last_errstr[0] = '\0';
}

static ksock_kafka_producer_t *producer(ksock_runtime_t *rt, const char *bootstrap,
                                        const char *const *kv)
{
    ksock_kafka_conf_t *c = kt_conf("bootstrap.servers", bootstrap, NULL);
    char err[512];
    if (kv) ASSERT_OK(ksock_kafka_conf_set_list(c, kv, err, sizeof(err)));
    ksock_kafka_producer_t *p;
    if (ksock_kafka_producer_new(rt, &p, c, err, sizeof(err)) != 0) TEST_FAIL_("%s", err);
    ksock_kafka_conf_free(c);
    return p;
}

static int never_called(ksock_kafka_consumer_t *c, const ksock_kafka_message_t *m, void *data)
{
    TEST_FAIL_("no message expected, got %s [%d] @%" PRId64, m->topic, m->partition, m->offset);
    return 0;
}

static bool error_heard(void *arg)
{
    const int *code = arg;
    return kt_find_error(*code, NULL) != NULL;
}

/*
 * The shared broker has auto.create.topics.enable=true, so "auto-create off"
 * is the client's allow.auto.create.topics=false: its metadata requests ask
 * the broker not to create. The test checks afterwards that the topic really
 * does not exist.
 */
TEST(unknown_topic_with_auto_create_off_producer)
{
    reset();
    ksock_runtime_t *rt = kt_runtime();
    char topic[128];
    kt_topic(topic, sizeof(topic), "missing");
    const char *kv[] = {"allow.auto.create.topics",
                        "false",
                        "topic.metadata.propagation.max.ms",
                        "2000",
                        "message.timeout.ms",
                        "15000",
                        NULL};
    ksock_kafka_producer_t *p = producer(rt, kt_bootstrap(), kv);
    ksock_kafka_record_t r = {.topic = topic, .value = "x", .value_len = 1};
    ASSERT_OK(ksock_kafka_send(p, &r, on_delivery));
    uint64_t t0 = kt_ms();
    ASSERT(kt_wait_count(rt, &done, 1, 20000));
    printf("# failed after %.1f s: %s (%s)\n", (double)(kt_ms() - t0) / 1000.0, last_errstr,
           ksock_err_name(last_err));
    ASSERT_EQ(last_err, KSOCK_E_UNKNOWN_TOPIC);
    ASSERT(!ksock_err_is_retriable(last_err));
    ksock_kafka_producer_destroy(p, 1000);
    ASSERT(!kt_topic_exists(kt_bootstrap(), topic));
    ksock_runtime_destroy(rt);
}

TEST(unknown_topic_with_auto_create_off_consumer)
{
    ksock_runtime_t *rt = kt_runtime();
    char topic[128], group[160];
    kt_topic(topic, sizeof(topic), "missing-sub");
    snprintf(group, sizeof(group), "%s-g", topic);
    /* allow.auto.create.topics=false is also librdkafka's consumer default; say it anyway. */
    ksock_kafka_conf_t *c = kt_conf("bootstrap.servers", kt_bootstrap(), "group.id", group,
                                    "allow.auto.create.topics", "false", NULL);
    const char *topics[] = {topic, NULL};
    ksock_kafka_consumer_t *cons;
    char err[512];
    ASSERT_OK(ksock_kafka_consumer_new(rt, &cons, c, topics, never_called, NULL, err, sizeof(err)));
    ksock_kafka_conf_free(c);
    ASSERT_OK(ksock_kafka_consumer_start(cons));
    int code = KSOCK_E_UNKNOWN_TOPIC;
    ASSERT(kt_run_until(rt, error_heard, &code, 30000));
    const kt_error_t *e = kt_find_error(KSOCK_E_UNKNOWN_TOPIC, NULL);
    printf("# error handler: %s\n", e->message);
    ASSERT_CONTAINS(e->message, topic);
    uint64_t t0 = kt_ms();
    ksock_kafka_consumer_destroy(cons);
    ASSERT_LT(kt_ms() - t0, 10000);
    ASSERT(!kt_topic_exists(kt_bootstrap(), topic));
    ksock_runtime_destroy(rt);
}

/* A loopback port nobody listens on: bind, read the port, close. */
static int closed_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    ASSERT_OK(bind(s, (struct sockaddr *)&a, sizeof(a)));
    ASSERT_OK(getsockname(s, (struct sockaddr *)&a, &len));
    close(s);
    return ntohs(a.sin_port);
}

TEST(broker_unreachable_at_start)
{
    reset();
    ksock_runtime_t *rt = kt_runtime();
    char bs[64];
    snprintf(bs, sizeof(bs), "127.0.0.1:%d", closed_port());
    const char *kv[] = {"message.timeout.ms", "3000", NULL};
    ksock_kafka_producer_t *p = producer(rt, bs, kv);
    uint64_t t0 = kt_ms();
    for (int i = 0; i < 5; i++) {
        ksock_kafka_record_t r = {.topic = "ksock-test-unreachable", .value = "x", .value_len = 1};
        ASSERT_OK(ksock_kafka_send(p, &r, on_delivery));
    }
    ASSERT(kt_wait_count(rt, &done, 5, 15000));
    uint64_t took = kt_ms() - t0;
    printf("# 5 records failed after %.1f s: %s\n", (double)took / 1000.0, last_errstr);
    ASSERT_EQ(ok_count, 0);
    ASSERT_EQ(last_err, KSOCK_E_TIMEDOUT); /* message.timeout.ms, through the callbacks */
    ASSERT_GE(took, 2500);
    /* The error handler heard why. */
    const kt_error_t *e = kt_find_error(0, "Connection refused");
    ASSERT_NOT_NULL(e);
    printf("# error handler: %s: %s\n", ksock_err_name(e->code), e->message);
    ASSERT(e->code == KSOCK_E_CLOSED || e->code == KSOCK_E_CONNREFUSED);
    ASSERT_NOT_NULL(kt_find_error(KSOCK_E_CONNREFUSED, "brokers are down"));
    t0 = kt_ms();
    ksock_kafka_producer_destroy(p, 1000);
    ASSERT_LT(kt_ms() - t0, 3000);

    /* A consumer too: it hears the same, and closes without hanging. */
    kt_nerrors = 0;
    ksock_kafka_conf_t *c = kt_conf("bootstrap.servers", bs, "group.id", "g-unreachable", NULL);
    const char *topics[] = {"ksock-test-unreachable", NULL};
    ksock_kafka_consumer_t *cons;
    char err[512];
    ASSERT_OK(ksock_kafka_consumer_new(rt, &cons, c, topics, never_called, NULL, err, sizeof(err)));
    ksock_kafka_conf_free(c);
    ASSERT_OK(ksock_kafka_consumer_start(cons));
    int code = KSOCK_E_CONNREFUSED;
    ASSERT(kt_run_until(rt, error_heard, &code, 15000));
    t0 = kt_ms();
    ksock_kafka_consumer_destroy(cons);
    ASSERT_LT(kt_ms() - t0, 5000);
    ksock_runtime_destroy(rt);
}

TEST(record_larger_than_the_client_limit)
{
    reset();
    ksock_runtime_t *rt = kt_runtime();
    ksock_kafka_producer_t *p = producer(rt, kt_bootstrap(), NULL);
    size_t big = 2 * 1024 * 1024;
    char *v = calloc(1, big);
    ksock_kafka_record_t r = {.topic = "ksock-test-toobig-local", .value = v, .value_len = big};
    ASSERT_EQ(ksock_kafka_send(p, &r, on_delivery), KSOCK_E_TOOBIG);
    ASSERT_EQ(ksock_kafka_producer_pending(p), 0);
    kt_run_for(rt, 200);
    ASSERT_EQ(done, 0); /* a failed call fires nothing */
    free(v);
    ksock_kafka_producer_destroy(p, 1000);
    ksock_runtime_destroy(rt);
}

TEST(record_larger_than_the_broker_accepts)
{
    reset();
    ksock_runtime_t *rt = kt_runtime();
    char topic[128];
    /* The broker's limit for this topic: 100 KB (the client would allow 10 MB). */
    const char *tcfg[] = {"max.message.bytes", "100000", NULL};
    kt_create_topic(kt_bootstrap(), kt_topic(topic, sizeof(topic), "toobig"), 1, 1, tcfg);
    const char *kv[] = {"message.max.bytes", "10000000", "batch.size", "10000000", NULL};
    ksock_kafka_producer_t *p = producer(rt, kt_bootstrap(), kv);
    size_t big = 300 * 1000;
    char *v = malloc(big);
    for (size_t i = 0; i < big; i++)
        v[i] = (char)(i * 7); /* incompressible enough */
    ksock_kafka_record_t r = {.topic = topic, .value = v, .value_len = big};
    ASSERT_OK(ksock_kafka_send(p, &r, on_delivery));
    ASSERT(kt_wait_count(rt, &done, 1, 30000));
    printf("# broker refused: %s (%s)\n", last_errstr, ksock_err_name(last_err));
    ASSERT_EQ(last_err, KSOCK_E_TOOBIG);
    /* The producer stays usable: a normal record after it goes through. */
    ksock_kafka_record_t small = {.topic = topic, .value = "ok", .value_len = 2};
    ASSERT_OK(ksock_kafka_send(p, &small, on_delivery));
    ASSERT(kt_wait_count(rt, &done, 2, 30000));
    ASSERT_EQ(ok_count, 1);
    free(v);
    ksock_kafka_producer_destroy(p, 1000);
    ksock_runtime_destroy(rt);
}

KT_TEST_LIST(true, TEST_ENTRY(unknown_topic_with_auto_create_off_producer),
             TEST_ENTRY(unknown_topic_with_auto_create_off_consumer),
             TEST_ENTRY(broker_unreachable_at_start),
             TEST_ENTRY(record_larger_than_the_client_limit),
             TEST_ENTRY(record_larger_than_the_broker_accepts))
