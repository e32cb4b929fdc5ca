/*
 * Interop with kcat (Debian's, built on its own librdkafka), both ways:
 * records produced through our API read by kcat, and records produced by
 * kcat read through our API, with keys and headers compared byte for byte.
 */
#include "kt.h"

#define N 10

static size_t delivered, consumed;

static void on_delivery(ksock_kafka_producer_t *p, const ksock_kafka_delivery_t *d, void *data)
{
    ASSERT_OK(d->err);
    delivered++;
}

/* Run a shell command, return its stdout (malloc'd). */
static char *run(const char *cmd)
{
    FILE *f = popen(cmd, "r");
    ASSERT_NOT_NULL(f);
    ksock_buf_t out = KSOCK_BUF_INIT;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        ksock_buf_append(&out, buf, n);
    int rc = pclose(f);
    if (rc != 0) TEST_FAIL_("`%s` exited with %d", cmd, rc);
    return out.data ? out.data : strdup("");
}

TEST(ours_to_kcat)
{
    ksock_runtime_t *rt = kt_runtime();
    char topic[128], err[512];
    kt_create_topic(kt_bootstrap(), kt_topic(topic, sizeof(topic), "to-kcat"), 1, 1, NULL);
    ksock_kafka_conf_t *c = kt_conf("bootstrap.servers", kt_bootstrap(), NULL);
    ksock_kafka_producer_t *p;
    ASSERT_OK(ksock_kafka_producer_new(rt, &p, c, err, sizeof(err)));
    ksock_kafka_conf_free(c);
    ksock_buf_t want = KSOCK_BUF_INIT;
    for (int i = 0; i < N; i++) {
        char key[16], val[64], num[16];
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(val, sizeof(val), "v%d from ksock", i);
        snprintf(num, sizeof(num), "%d", i);
        ksock_kafka_header_t h[2] = {{"src", "ksock", 5}, {"n", num, strlen(num)}};
        ksock_kafka_record_t r = {.topic = topic,
                                  .key = key,
                                  .key_len = strlen(key),
                                  .value = val,
                                  .value_len = strlen(val),
                                  .headers = h,
                                  .header_count = 2};
        ASSERT_OK(ksock_kafka_send(p, &r, on_delivery));
        ksock_buf_appendf(&want, "%s|%s|src=ksock,n=%d|%d\n", key, val, i, i);
    }
    ASSERT(kt_wait_count(rt, &delivered, N, 30000));
    ksock_kafka_producer_destroy(p, 1000);
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "timeout 30 kcat -C -b %s -t %s -o beginning -c %d -e -q -f '%%k|%%s|%%h|%%o\\n'",
             kt_bootstrap(), topic, N);
    char *got = run(cmd);
    if (strcmp(got, want.data) != 0) TEST_FAIL_("kcat read:\n%s\nwanted:\n%s", got, want.data);
    printf("# kcat read all %d records with keys and headers\n", N);
    free(got);
    ksock_buf_free(&want);
    ksock_runtime_destroy(rt);
}

static int from_kcat(ksock_kafka_consumer_t *c, const ksock_kafka_message_t *m, void *data)
{
    char want[64];
    snprintf(want, sizeof(want), "k%zu", consumed);
    ASSERT_EQ(m->key_len, strlen(want));
    ASSERT_MEM_EQ(m->key, want, m->key_len);
    snprintf(want, sizeof(want), "v%zu from kcat", consumed);
    ASSERT_EQ(m->value_len, strlen(want));
    ASSERT_MEM_EQ(m->value, want, m->value_len);
    ASSERT_EQ(m->header_count, 2);
    ksock_kafka_header_t h;
    ASSERT_OK(ksock_kafka_message_header(m, 0, &h));
    ASSERT_STR_EQ(h.name, "src");
    ASSERT_EQ(h.value_len, 4);
    ASSERT_MEM_EQ(h.value, "kcat", 4);
    ASSERT_OK(ksock_kafka_message_header_get(m, "trace", &h));
    ASSERT_MEM_EQ(h.value, "abc", 3);
    ASSERT_EQ(m->offset, (int64_t)consumed);
    consumed++;
    return 0;
}

TEST(kcat_to_ours)
{
    ksock_runtime_t *rt = kt_runtime();
    char topic[128], err[512], cmd[1024];
    kt_create_topic(kt_bootstrap(), kt_topic(topic, sizeof(topic), "from-kcat"), 1, 1, NULL);
    snprintf(cmd, sizeof(cmd),
             "for i in $(seq 0 %d); do printf 'k%%d|v%%d from kcat\\n' $i $i; done | "
             "timeout 30 kcat -P -b %s -t %s -K '|' -H src=kcat -H trace=abc",
             N - 1, kt_bootstrap(), topic);
    free(run(cmd));
    ksock_kafka_conf_t *c = kt_conf("bootstrap.servers", kt_bootstrap(), NULL);
    ksock_kafka_consumer_t *cons;
    ASSERT_OK(ksock_kafka_consumer_new(rt, &cons, c, NULL, from_kcat, NULL, err, sizeof(err)));
    ksock_kafka_conf_free(c);
    ksock_kafka_partition_t part = {topic, 0, KSOCK_KAFKA_OFFSET_BEGINNING, 0};
    ASSERT_OK(ksock_kafka_consumer_assign(cons, &part, 1));
    ASSERT_OK(ksock_kafka_consumer_start(cons));
    ASSERT(kt_wait_count(rt, &consumed, N, 30000));
    printf("# read all %d records kcat produced, keys and headers intact\n", N);
    ksock_kafka_consumer_destroy(cons);
    ksock_runtime_destroy(rt);
}

KT_TEST_LIST(true, TEST_ENTRY(ours_to_kcat), TEST_ENTRY(kcat_to_ours))
