/*
 * Helpers shared by the Kafka tests: a runtime with an error recorder, a
 * loop runner with a deadline, unique topic names, topic creation through
 * librdkafka's admin API, and a TAP list that skips when there is no broker.
 *
 * Header-only (static functions) so that each test program is one file.
 */
#ifndef KSOCK_KT_H
#define KSOCK_KT_H

#include "test.h"

#include <ksock/ksock.h>
#include <librdkafka/rdkafka.h>
#include <stdarg.h>
#include <time.h>

/* ---- Broker environment ---------------------------------------------------------- */

static inline const char *kt_env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static inline const char *kt_bootstrap(void)
{
    const char *b = kt_env("KSOCK_KAFKA_BOOTSTRAP");
    if (b == NULL) TEST_FAIL_("KSOCK_KAFKA_BOOTSTRAP is not set");
    return b;
}

/*
 * Like TEST_LIST, but a program whose tests need the broker prints
 * "ok N - name # SKIP no broker" for each when KSOCK_KAFKA_BOOTSTRAP is unset
 * (tools/test always sets it, so CI runs them), and the time each test took.
 */
#define KT_TEST_TIMEOUT_S 150
#define KT_TEST_LIST(needs_broker, ...)                                                            \
    static const test_entry_t test_list_[] = {__VA_ARGS__};                                        \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        size_t n_ = sizeof(test_list_) / sizeof(test_list_[0]), run_ = 0, k_ = 0;                  \
        int failed_ = 0;                                                                           \
        bool skip_ = (needs_broker) && kt_env("KSOCK_KAFKA_BOOTSTRAP") == NULL;                    \
        signal(SIGPIPE, SIG_IGN);                                                                  \
        for (size_t i = 0; i < n_; i++)                                                            \
            if (argc < 2 || strcmp(argv[1], test_list_[i].name) == 0) run_++;                      \
        printf("1..%zu\n", run_);                                                                  \
        for (size_t i = 0; i < n_; i++) {                                                          \
            if (argc >= 2 && strcmp(argv[1], test_list_[i].name) != 0) continue;                   \
            if (skip_) {                                                                           \
                printf("ok %zu - %s # SKIP no broker\n", ++k_, test_list_[i].name);                \
                continue;                                                                          \
            }                                                                                      \
            uint64_t t0 = kt_ms();                                                                 \
            int rc = test_run_one_(&test_list_[i]);                                                \
            printf("%sok %zu - %s (%.1f s)\n", rc == 0 ? "" : "not ", ++k_, test_list_[i].name,    \
                   (double)(kt_ms() - t0) / 1000.0);                                               \
            fflush(stdout);                                                                        \
            if (rc != 0) failed_++;                                                                \
        }                                                                                          \
        return failed_ ? 1 : 0;                                                                    \
    }

static inline uint64_t kt_ms(void)
{
    return ksock_now_ns() / 1000000u;
}

/* ---- Runtime with recorded errors ---------------------------------------------------- */

#define KT_MAX_ERRORS 256
typedef struct {
    int code;
    char message[1024];
} kt_error_t;

static kt_error_t kt_errors[KT_MAX_ERRORS];
static int kt_nerrors;

static void kt_on_error(ksock_runtime_t *rt, const ksock_error_t *e, void *data)
{
    (void)rt;
    (void)data;
    if (kt_nerrors < KT_MAX_ERRORS) {
        kt_errors[kt_nerrors].code = e->code;
        snprintf(kt_errors[kt_nerrors].message, sizeof(kt_errors[0].message), "%s", e->message);
        kt_nerrors++;
    }
    if (getenv("KT_VERBOSE"))
        fprintf(stderr, "# error handler: %s: %s\n", ksock_err_name(e->code), e->message);
}

/* First recorded error with `code` (0: any) whose message contains `needle` (NULL: any). */
static inline const kt_error_t *kt_find_error(int code, const char *needle)
{
    for (int i = 0; i < kt_nerrors; i++)
        if ((code == 0 || kt_errors[i].code == code) &&
            (needle == NULL || strstr(kt_errors[i].message, needle)))
            return &kt_errors[i];
    return NULL;
}

/*
 * A runtime whose errors are recorded. Also arms an alarm in the calling
 * (forked test) process: a hang then fails that test, not the whole program.
 */
static inline ksock_runtime_t *kt_runtime(void)
{
    ksock_runtime_t *rt;
    char err[256];
    alarm(KT_TEST_TIMEOUT_S);
    ASSERT_OK(ksock_runtime_new(&rt, err, sizeof(err)));
    ksock_on_error(rt, kt_on_error, NULL);
    kt_nerrors = 0;
    if (getenv("KT_DEBUG")) {
        ksock_log_options_t o = {sizeof(o), KSOCK_LOG_DEBUG, "console", KSOCK_LOG_FORMAT_TEXT,
                                 NULL};
        ksock_log_configure(rt, &o, err, sizeof(err));
    }
    return rt;
}

/* ---- Running the loop until something happened ------------------------------------------ */

typedef bool (*kt_pred)(void *arg);

static void kt_tick(ksock_timer_t *t, void *data)
{
    (void)t;
    (void)data;
}

/*
 * Run the loop until pred(arg) is true or `timeout_ms` passed. A 20 ms
 * ticker bounds each blocking iteration so the deadline is checked.
 * Returns whether pred became true.
 */
static inline bool kt_run_until(ksock_runtime_t *rt, kt_pred pred, void *arg, int timeout_ms)
{
    ksock_timer_t *tick;
    ASSERT_OK(ksock_timer_init(rt, &tick, kt_tick, NULL));
    ASSERT_OK(ksock_timer_start(tick, 20, 20));
    uint64_t deadline = kt_ms() + (uint64_t)timeout_ms;
    bool ok;
    while (!(ok = pred(arg)) && kt_ms() < deadline)
        ksock_runtime_run_once(rt, true);
    ksock_timer_close(tick);
    return ok;
}

/* Run the loop for `ms` milliseconds. */
static inline bool kt_never(void *arg)
{
    (void)arg;
    return false;
}
static inline void kt_run_for(ksock_runtime_t *rt, int ms)
{
    kt_run_until(rt, kt_never, NULL, ms);
}

/* Wait until *counter >= want. */
static inline bool kt_wait_count(ksock_runtime_t *rt, const size_t *counter, size_t want,
                                 int timeout_ms)
{
    uint64_t deadline = kt_ms() + (uint64_t)timeout_ms;
    ksock_timer_t *tick;
    ASSERT_OK(ksock_timer_init(rt, &tick, kt_tick, NULL));
    ASSERT_OK(ksock_timer_start(tick, 20, 20));
    while (*counter < want && kt_ms() < deadline)
        ksock_runtime_run_once(rt, true);
    ksock_timer_close(tick);
    return *counter >= want;
}

/* ---- Names and configuration ----------------------------------------------------------- */

/* A topic name no other test (or earlier run on the same broker) uses. */
static inline const char *kt_topic(char *buf, size_t size, const char *what)
{
    static unsigned counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(buf, size, "ksock-test-%s-%d-%u-%ld", what, (int)getpid(), ++counter,
             (long)(ts.tv_nsec % 1000000));
    return buf;
}

/* A conf from key, value pairs ending with NULL. */
static inline ksock_kafka_conf_t *kt_conf(const char *first, ...)
{
    ksock_kafka_conf_t *c;
    char err[512];
    ASSERT_OK(ksock_kafka_conf_new(&c));
    va_list ap;
    va_start(ap, first);
    for (const char *k = first; k; k = va_arg(ap, const char *)) {
        const char *v = va_arg(ap, const char *);
        if (ksock_kafka_conf_set(c, k, v, err, sizeof(err)) != 0) TEST_FAIL_("conf: %s", err);
    }
    va_end(ap);
    return c;
}

/* ---- Admin: create a topic with librdkafka directly (test setup, blocking) -------------- */

static inline void kt_create_topic(const char *bootstrap, const char *topic, int partitions, int rf,
                                   const char *const *configs)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (rk == NULL) TEST_FAIL_("admin client: %s", err);
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, rf, err, sizeof(err));
    if (nt == NULL) TEST_FAIL_("NewTopic: %s", err);
    for (size_t i = 0; configs && configs[i]; i += 2)
        rd_kafka_NewTopic_set_config(nt, configs[i], configs[i + 1]);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(opt, 30000, err, sizeof(err));
    rd_kafka_CreateTopics(rk, &nt, 1, opt, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 60000);
    if (ev == NULL) TEST_FAIL_("CreateTopics %s: no answer", topic);
    const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
    size_t n;
    const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &n);
    if (rd_kafka_event_error(ev) || n != 1 || rd_kafka_topic_result_error(tr[0]))
        TEST_FAIL_("CreateTopics %s: %s %s", topic, rd_kafka_event_error_string(ev),
                   n ? rd_kafka_topic_result_error_string(tr[0]) : "");
    rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(opt);
    rd_kafka_NewTopic_destroy(nt);
    /* Wait until every partition has a leader, so the first produce does not race it. */
    for (int tries = 0; tries < 100; tries++) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        const struct rd_kafka_metadata *md = NULL;
        bool ready = false;
        if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            ready = md->topic_cnt == 1 && md->topics[0].err == 0 &&
                    md->topics[0].partition_cnt == partitions;
            for (int i = 0; ready && i < md->topics[0].partition_cnt; i++)
                ready = md->topics[0].partitions[i].leader >= 0;
            rd_kafka_metadata_destroy(md);
        }
        rd_kafka_topic_destroy(rkt);
        if (ready) break;
        usleep(100000);
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}

/* Does the broker know `topic`? (metadata without auto-creation) */
static inline bool kt_topic_exists(const char *bootstrap, const char *topic)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err));
    rd_kafka_conf_set(conf, "allow.auto.create.topics", "false", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    const struct rd_kafka_metadata *md = NULL;
    bool found = false;
    if (rd_kafka_metadata(rk, 1, NULL, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < md->topic_cnt; i++)
            if (strcmp(md->topics[i].topic, topic) == 0 && md->topics[i].err == 0) found = true;
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_destroy(rk);
    return found;
}

#endif
