/*
 * Kafka API against the real broker (KSOCK_KAFKA_BOOTSTRAP): round trips
 * with keys and headers, many partitions, group rebalances (eager and
 * cooperative), manual assignment at an offset and at a timestamp,
 * commits, and a slow consumer that must not build an unbounded queue.
 */
#include "kt.h"

#include <sys/resource.h>

#define MAXREC 20000

/* ---- Records we send, and what comes back ----------------------------------------------- */

typedef struct {
    int32_t partition; /* from the delivery report */
    int64_t offset;
    int err;
    int times_consumed;
    int32_t seen_partition; /* from the consumer (may come before the report) */
    int64_t seen_offset;
} slot_t;

static slot_t slots[MAXREC];
static size_t delivered, failed, consumed, duplicates;

static void reset_book(void)
{
    memset(slots, 0, sizeof(slots));
    delivered = failed = consumed = duplicates = 0;
}

static void on_delivery(ksock_kafka_producer_t *p, const ksock_kafka_delivery_t *d, void *data)
{
    size_t i = (size_t)(uintptr_t)data;
    ASSERT(i < MAXREC);
    slots[i].err = d->err;
    if (d->err) {
        failed++;
        return;
    }
    ASSERT_GE(d->offset, 0);
    slots[i].partition = d->partition;
    slots[i].offset = d->offset;
    delivered++;
}

/* Value layout: "rec:<index>:" then filler bytes 0..255 repeating, so NULs are in the middle. */
static size_t make_value(char *buf, size_t size, size_t i, size_t len)
{
    int n = snprintf(buf, size, "rec:%zu:", i);
    for (size_t k = (size_t)n; k < len && k < size; k++)
        buf[k] = (char)((k + i) & 0xff);
    return len > (size_t)n ? len : (size_t)n;
}

static size_t value_index(const ksock_kafka_message_t *m)
{
    ASSERT(m->value_len > 4 && memcmp(m->value, "rec:", 4) == 0);
    return (size_t)strtoul((const char *)m->value + 4, NULL, 10);
}

static void check_value(const ksock_kafka_message_t *m, size_t i, size_t len)
{
    char buf[2048];
    size_t n = make_value(buf, sizeof(buf), i, len);
    ASSERT_EQ(m->value_len, n);
    ASSERT_MEM_EQ(m->value, buf, n);
}

static ksock_kafka_producer_t *producer(ksock_runtime_t *rt, const char *k1, const char *v1)
{
    ksock_kafka_conf_t *c = kt_conf("bootstrap.servers", kt_bootstrap(), "linger.ms", "5", NULL);
    char err[512];
    if (k1) ASSERT_OK(ksock_kafka_conf_set(c, k1, v1, err, sizeof(err)));
    ksock_kafka_producer_t *p;
    if (ksock_kafka_producer_new(rt, &p, c, err, sizeof(err)) != 0) TEST_FAIL_("%s", err);
    ksock_kafka_conf_free(c);
    return p;
}

static ksock_kafka_consumer_t *consumer(ksock_runtime_t *rt, const char *const *topics,
                                        const char *group, ksock_kafka_message_cb cb, void *data,
                                        const char *const *kv)
{
    ksock_kafka_conf_t *c =
        kt_conf("bootstrap.servers", kt_bootstrap(), "auto.offset.reset", "earliest", NULL);
    char err[512];
    if (group) ASSERT_OK(ksock_kafka_conf_set(c, "group.id", group, err, sizeof(err)));
    if (kv) ASSERT_OK(ksock_kafka_conf_set_list(c, kv, err, sizeof(err)));
    ksock_kafka_consumer_t *cons;
    if (ksock_kafka_consumer_new(rt, &cons, c, topics, cb, data, err, sizeof(err)) != 0)
        TEST_FAIL_("%s", err);
    ksock_kafka_conf_free(c);
    return cons;
}

static void assign_all(ksock_kafka_consumer_t *c, const char *topic, int parts, int64_t offset)
{
    ksock_kafka_partition_t v[64];
    ASSERT_LE(parts, 64);
    for (int i = 0; i < parts; i++)
        v[i] = (ksock_kafka_partition_t){topic, i, offset, 0};
    ASSERT_OK(ksock_kafka_consumer_assign(c, v, (size_t)parts));
}

/* ---- Round trip: keys, binary values and headers intact ------------------------------------ */

#define RT_N 200

static void send_rich(ksock_kafka_producer_t *p, const char *topic, size_t i)
{
    char key[32], val[1200];
    snprintf(key, sizeof(key), "user-%zu", i % 10);
    size_t vlen = make_value(val, sizeof(val), i, 100 + (i * 37) % 1000);
    char trace[32];
    snprintf(trace, sizeof(trace), "t-%zu", i);
    ksock_kafka_header_t h[5] = {{"trace", trace, strlen(trace)},
                                 {"empty", "", 0},
                                 {"nullh", NULL, 0},
                                 {"dup", "a", 1},
                                 {"dup", "b", 1}};
    ksock_kafka_record_t r = {.topic = topic,
                              .key = key,
                              .key_len = strlen(key),
                              .value = val,
                              .value_len = vlen,
                              .headers = h,
                              .header_count = 5,
                              .data = (void *)(uintptr_t)i};
    ASSERT_OK(ksock_kafka_send(p, &r, on_delivery));
}

static int check_rich(ksock_kafka_consumer_t *c, const ksock_kafka_message_t *m, void *data)
{
    if (m->value == NULL) { /* the tombstone */
        ASSERT_NULL(m->key);
        ASSERT_EQ(m->header_count, 0);
        slots[RT_N].times_consumed++;
        consumed++;
        return 0;
    }
    size_t i = value_index(m);
    ASSERT(i < RT_N);
    check_value(m, i, 100 + (i * 37) % 1000);
    char key[32];
    snprintf(key, sizeof(key), "user-%zu", i % 10);
    ASSERT_EQ(m->key_len, strlen(key));
    ASSERT_MEM_EQ(m->key, key, m->key_len);
    ASSERT_EQ(m->header_count, 5);
    ksock_kafka_header_t h;
    char trace[32];
    snprintf(trace, sizeof(trace), "t-%zu", i);
    ASSERT_OK(ksock_kafka_message_header(m, 0, &h));
    ASSERT_STR_EQ(h.name, "trace");
    ASSERT_EQ(h.value_len, strlen(trace));
    ASSERT_MEM_EQ(h.value, trace, h.value_len);
    ASSERT_OK(ksock_kafka_message_header(m, 1, &h));
    ASSERT_STR_EQ(h.name, "empty");
    ASSERT_NOT_NULL(h.value); /* empty is not null */
    ASSERT_EQ(h.value_len, 0);
    ASSERT_OK(ksock_kafka_message_header(m, 2, &h));
    ASSERT_STR_EQ(h.name, "nullh");
    ASSERT_NULL(h.value);
    ASSERT_OK(ksock_kafka_message_header_get(m, "dup", &h));
    ASSERT_MEM_EQ(h.value, "b", 1); /* the last one */
    ASSERT_EQ(m->partition, slots[i].partition);
    ASSERT_EQ(m->offset, slots[i].offset);
    ASSERT_EQ(m->timestamp_type, 1); /* create time */
    ASSERT_LT(llabs(m->timestamp_ms - ksock_wallclock_ns() / 1000000), 600000);
    slots[i].times_consumed++;
    consumed++;
    return 0;
}

TEST(roundtrip_keys_values_headers_intact)
{
    reset_book();
    ksock_runtime_t *rt = kt_runtime();
    char topic[128];
    kt_create_topic(kt_bootstrap(), kt_topic(topic, sizeof(topic), "roundtrip"), 3, 1, NULL);
    ksock_kafka_producer_t *p = producer(rt, NULL, NULL);
    for (size_t i = 0; i < RT_N; i++)
        send_rich(p, topic, i);
    ksock_kafka_record_t tomb = {.topic = topic, .data = (void *)(uintptr_t)RT_N};
    ASSERT_OK(ksock_kafka_send(p, &tomb, on_delivery));
    ASSERT(kt_wait_count(rt, &delivered, RT_N + 1, 60000));
    ASSERT_EQ(failed, 0);

    ksock_kafka_consumer_t *c = consumer(rt, NULL, NULL, check_rich, NULL, NULL);
    assign_all(c, topic, 3, KSOCK_KAFKA_OFFSET_BEGINNING);
    ASSERT_OK(ksock_kafka_consumer_start(c));
    ASSERT(kt_wait_count(rt, &consumed, RT_N + 1, 60000));
    kt_run_for(rt, 300); /* nothing more, nothing twice */
    ASSERT_EQ(consumed, RT_N + 1);
    for (size_t i = 0; i <= RT_N; i++)
        ASSERT_EQ(slots[i].times_consumed, 1);
    ksock_kafka_consumer_destroy(c);
    ksock_kafka_producer_destroy(p, 5000);
    ASSERT_EQ(kt_nerrors, 0);
    ksock_runtime_destroy(rt);
}

/* ---- Many partitions -------------------------------------------------------------------- */

#define MP_PARTS 48
#define MP_PER   40
static int64_t mp_last[MP_PARTS];
static size_t mp_assigned;

static int check_partition_order(ksock_kafka_consumer_t *c, const ksock_kafka_message_t *m,
                                 void *data)
{
    size_t i = value_index(m);
    ASSERT(i < MAXREC);
    slots[i].seen_partition = m->partition;
    slots[i].seen_offset = m->offset;
    ASSERT_GT(m->offset, mp_last[m->partition]); /* in order within the partition */
    mp_last[m->partition] = m->offset;
    slots[i].times_consumed++;
    consumed++;
    return 0;
}

static void count_assigned(ksock_kafka_consumer_t *c, ksock_kafka_rebalance_t what,
                           const ksock_kafka_partition_t *parts, size_t n, void *data)
{
    if (what == KSOCK_KAFKA_ASSIGNED) mp_assigned += n;
}

TEST(many_partitions)
{
    reset_book();
    mp_assigned = 0;
    for (int i = 0; i < MP_PARTS; i++)
        mp_last[i] = -1;
    ksock_runtime_t *rt = kt_runtime();
    char topic[128], group[160];
    kt_create_topic(kt_bootstrap(), kt_topic(topic, sizeof(topic), "many"), MP_PARTS, 1, NULL);
    snprintf(group, sizeof(group), "%s-g", topic);
    const char *topics[] = {topic, NULL};
    ksock_kafka_consumer_t *c = consumer(rt, topics, group, check_partition_order, NULL, NULL);
    ksock_kafka_consumer_on_rebalance(c, count_assigned, NULL);
    ASSERT_OK(ksock_kafka_consumer_start(c));
    ASSERT(kt_wait_count(rt, &mp_assigned, MP_PARTS, 60000));

    ksock_kafka_producer_t *p = producer(rt, NULL, NULL);
    ksock_kafka_record_t recs[MP_PARTS * MP_PER];
    char vals[MP_PARTS * MP_PER][32];
    for (size_t i = 0; i < MP_PARTS * MP_PER; i++) {
        size_t n = make_value(vals[i], sizeof(vals[i]), i, 24);
        recs[i] = (ksock_kafka_record_t){
            .topic = topic, .value = vals[i], .value_len = n, .data = (void *)(uintptr_t)i};
        if (i % 2 == 0) { /* half to an explicit partition, half by key */
            recs[i].flags = KSOCK_KAFKA_RECORD_F_PARTITION;
            recs[i].partition = (int32_t)(i % MP_PARTS);
        } else {
            recs[i].key = vals[i];
            recs[i].key_len = 8;
        }
    }
    size_t queued = 0;
    ASSERT_OK(ksock_kafka_send_batch(p, recs, MP_PARTS * MP_PER, on_delivery, &queued));
    ASSERT_EQ(queued, MP_PARTS * MP_PER);
    ASSERT(kt_wait_count(rt, &delivered, MP_PARTS * MP_PER, 60000));
    for (size_t i = 0; i < MP_PARTS * MP_PER; i += 2)
        ASSERT_EQ(slots[i].partition, i % MP_PARTS);
    ASSERT(kt_wait_count(rt, &consumed, MP_PARTS * MP_PER, 60000));
    /* Each record where its delivery report said (checked once both are in). */
    for (size_t i = 0; i < MP_PARTS * MP_PER; i++) {
        ASSERT_EQ(slots[i].times_consumed, 1);
        ASSERT_EQ(slots[i].seen_partition, slots[i].partition);
        ASSERT_EQ(slots[i].seen_offset, slots[i].offset);
    }
    int used = 0;
    for (int i = 0; i < MP_PARTS; i++)
        used += mp_last[i] >= 0;
    ASSERT_EQ(used, MP_PARTS);
    ksock_kafka_consumer_destroy(c);
    ksock_kafka_producer_destroy(p, 5000);
    ksock_runtime_destroy(rt);
}

/* ---- Group rebalance between two consumers --------------------------------------------------- */

#define RB_PARTS 6
typedef struct {
    int owner[RB_PARTS]; /* which consumer holds each partition: 0 none, 1 A, 2 B */
    size_t events;
    size_t got[3];
} rb_state_t;
static rb_state_t rb;

static void rb_rebalance(ksock_kafka_consumer_t *c, ksock_kafka_rebalance_t what,
                         const ksock_kafka_partition_t *parts, size_t n, void *data)
{
    int who = (int)(intptr_t)ksock_kafka_consumer_get_data(c);
    for (size_t i = 0; i < n; i++) {
        ASSERT(parts[i].partition < RB_PARTS);
        if (what == KSOCK_KAFKA_ASSIGNED) {
            ASSERT_EQ(rb.owner[parts[i].partition], 0); /* never two owners */
            rb.owner[parts[i].partition] = who;
        } else {
            ASSERT_EQ(rb.owner[parts[i].partition], who);
            rb.owner[parts[i].partition] = 0;
        }
    }
    rb.events++;
}

static int rb_message(ksock_kafka_consumer_t *c, const ksock_kafka_message_t *m, void *data)
{
    int who = (int)(intptr_t)data;
    ASSERT_EQ(rb.owner[m->partition], who); /* only from partitions it holds */
    size_t i = value_index(m);
    if (slots[i].times_consumed++ == 0)
        consumed++;
    else
        duplicates++;
    rb.got[who]++;
    return 0;
}

static int owned_by(int who)
{
    int n = 0;
    for (int i = 0; i < RB_PARTS; i++)
        n += rb.owner[i] == who;
    return n;
}

static bool split_evenly(void *arg)
{
    return owned_by(1) == 3 && owned_by(2) == 3;
}
static bool all_with_a(void *arg)
{
    return owned_by(1) == RB_PARTS;
}

static void produce_range(ksock_runtime_t *rt, ksock_kafka_producer_t *p, const char *topic,
                          size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) {
        char val[32];
        size_t n = make_value(val, sizeof(val), i, 24);
        ksock_kafka_record_t r = {.topic = topic,
                                  .key = val,
                                  .key_len = n,
                                  .value = val,
                                  .value_len = n,
                                  .data = (void *)(uintptr_t)i};
        ASSERT_OK(ksock_kafka_send(p, &r, on_delivery));
    }
    ASSERT(kt_wait_count(rt, &delivered, to, 60000));
}

static void rebalance_between_two(const char *strategy)
{
    reset_book();
    memset(&rb, 0, sizeof(rb));
    ksock_runtime_t *rt = kt_runtime();
    char topic[128], group[160];
    kt_create_topic(kt_bootstrap(), kt_topic(topic, sizeof(topic), "rebalance"), RB_PARTS, 1, NULL);
    snprintf(group, sizeof(group), "%s-g", topic);
    const char *topics[] = {topic, NULL};
    const char *kv[] = {"partition.assignment.strategy",
                        strategy,
                        "session.timeout.ms",
                        "10000",
                        "heartbeat.interval.ms",
                        "500",
                        NULL};
    ksock_kafka_producer_t *p = producer(rt, NULL, NULL);

    ksock_kafka_consumer_t *a = consumer(rt, topics, group, rb_message, (void *)1, kv);
    ksock_kafka_consumer_set_data(a, (void *)1);
    ksock_kafka_consumer_on_rebalance(a, rb_rebalance, NULL);
    ASSERT_OK(ksock_kafka_consumer_start(a));
    ASSERT(kt_run_until(rt, all_with_a, NULL, 60000));
    produce_range(rt, p, topic, 0, 300);
    ASSERT(kt_wait_count(rt, &consumed, 300, 60000));

    ksock_kafka_consumer_t *b = consumer(rt, topics, group, rb_message, (void *)2, kv);
    ksock_kafka_consumer_set_data(b, (void *)2);
    ksock_kafka_consumer_on_rebalance(b, rb_rebalance, NULL);
    ASSERT_OK(ksock_kafka_consumer_start(b));
    ASSERT(kt_run_until(rt, split_evenly, NULL, 60000));
    produce_range(rt, p, topic, 300, 900);
    ASSERT(kt_wait_count(rt, &consumed, 900, 60000));
    ASSERT_GT(rb.got[2], 0); /* the newcomer really took over partitions */

    /* B leaves: A gets everything back and nothing is missed. */
    ksock_kafka_consumer_destroy(b);
    ASSERT(kt_run_until(rt, all_with_a, NULL, 60000));
    produce_range(rt, p, topic, 900, 1000);
    ASSERT(kt_wait_count(rt, &consumed, 1000, 60000));
    for (size_t i = 0; i < 1000; i++)
        ASSERT_GE(slots[i].times_consumed, 1);
    /* Auto-commit at revocation keeps redelivery small (at-least-once allows some). */
    ASSERT_LT(duplicates, 300);
    ksock_kafka_consumer_destroy(a);
    ksock_kafka_producer_destroy(p, 5000);
    ksock_runtime_destroy(rt);
}

TEST(group_rebalance_eager)
{
    rebalance_between_two("range");
}

TEST(group_rebalance_cooperative)
{
    rebalance_between_two("cooperative-sticky");
}

/* ---- Manual assignment at an offset and at a timestamp -------------------------------------- */

static int64_t first_offset[4], last_offset[4];
static size_t seen_count[4];
static int record_offsets(ksock_kafka_consumer_t *c, const ksock_kafka_message_t *m, void *data)
{
    int32_t p = m->partition;
    ASSERT(p < 4);
    if (seen_count[p] == 0)
        first_offset[p] = m->offset;
    else
        ASSERT_EQ(m->offset, last_offset[p] + 1);
    last_offset[p] = m->offset;
    seen_count[p]++;
    consumed++;
    return 0;
}

static void reset_offsets(void)
{
    memset(seen_count, 0, sizeof(seen_count));
    memset(first_offset, 0xff, sizeof(first_offset));
    consumed = 0;
}

TEST(manual_assignment_at_offset)
{
    reset_book();
    reset_offsets();
    ksock_runtime_t *rt = kt_runtime();
    char topic[128];
    kt_create_topic(kt_bootstrap(), kt_topic(topic, sizeof(topic), "at-offset"), 1, 1, NULL);
    ksock_kafka_producer_t *p = producer(rt, NULL, NULL);
    produce_range(rt, p, topic, 0, 30);
    ksock_kafka_consumer_t *c = consumer(rt, NULL, NULL, record_offsets, NULL, NULL);
    ASSERT_OK(ksock_kafka_consumer_start(c));
    ksock_kafka_partition_t at = {topic, 0, 10, 0};
    ASSERT_OK(ksock_kafka_consumer_assign(c, &at, 1));
    ASSERT(kt_wait_count(rt, &consumed, 20, 30000));
    kt_run_for(rt, 300);
    ASSERT_EQ(consumed, 20);
    ASSERT_EQ(first_offset[0], 10);
    ASSERT_EQ(last_offset[0], 29);

    /* At the end: only what is produced afterwards. */
    reset_offsets();
    at.offset = KSOCK_KAFKA_OFFSET_END;
    ASSERT_OK(ksock_kafka_consumer_assign(c, &at, 1));
    kt_run_for(rt, 1000);
    ASSERT_EQ(consumed, 0);
    produce_range(rt, p, topic, 30, 35);
    ASSERT(kt_wait_count(rt, &consumed, 5, 30000));
    ASSERT_EQ(first_offset[0], 30);
    ksock_kafka_consumer_destroy(c);
    ksock_kafka_producer_destroy(p, 5000);
    ksock_runtime_destroy(rt);
}

static int assign_status = 99;
static int64_t assign_offsets[4];
static size_t assign_done;
static void on_assigned(ksock_kafka_consumer_t *c, int status, const ksock_kafka_partition_t *parts,
                        size_t n, void *data)
{
    ASSERT(ksock_runtime_on_loop_thread((ksock_runtime_t *)data));
    assign_status = status;
    for (size_t i = 0; i < n && i < 4; i++)
        assign_offsets[parts[i].partition] = parts[i].offset;
    assign_done++;
}

TEST(manual_assignment_at_timestamp)
{
    reset_book();
    reset_offsets();
    ksock_runtime_t *rt = kt_runtime();
    char topic[128];
    kt_create_topic(kt_bootstrap(), kt_topic(topic, sizeof(topic), "at-time"), 2, 1, NULL);
    ksock_kafka_producer_t *p = producer(rt, NULL, NULL);
    int64_t base = ksock_wallclock_ns() / 1000000 - 3600 * 1000;
    for (size_t i = 0; i < 40; i++) {
        char val[32];
        size_t n = make_value(val, sizeof(val), i, 24);
        /* 20 per partition, one second apart. */
        ksock_kafka_record_t r = {.topic = topic,
                                  .value = val,
                                  .value_len = n,
                                  .flags = KSOCK_KAFKA_RECORD_F_PARTITION,
                                  .partition = (int32_t)(i % 2),
                                  .timestamp_ms = base + (int64_t)(i / 2) * 1000,
                                  .data = (void *)(uintptr_t)i};
        ASSERT_OK(ksock_kafka_send(p, &r, on_delivery));
    }
    ASSERT(kt_wait_count(rt, &delivered, 40, 30000));

    ksock_kafka_consumer_t *c = consumer(rt, NULL, NULL, record_offsets, NULL, NULL);
    ASSERT_OK(ksock_kafka_consumer_start(c));
    ksock_kafka_partition_t parts[2] = {{topic, 0, 0, 0}, {topic, 1, 0, 0}};
    /* Between the 11th and 12th record of each partition: starts at offset 11. */
    ASSERT_OK(
        ksock_kafka_consumer_assign_at_time(c, parts, 2, base + 10500, 10000, on_assigned, rt));
    ASSERT_EQ(assign_done, 0);
    ASSERT(kt_wait_count(rt, &assign_done, 1, 15000));
    ASSERT_OK(assign_status);
    ASSERT_EQ(assign_offsets[0], 11);
    ASSERT_EQ(assign_offsets[1], 11);
    ASSERT(kt_wait_count(rt, &consumed, 18, 30000));
    ASSERT_EQ(first_offset[0], 11);
    ASSERT_EQ(first_offset[1], 11);
    ASSERT_EQ(last_offset[0], 19);

    /* After the last record: offsets at the end, nothing old delivered. */
    reset_offsets();
    ASSERT_OK(ksock_kafka_consumer_assign_at_time(c, parts, 2, base + 3600 * 1000 * 2, 10000,
                                                  on_assigned, rt));
    ASSERT(kt_wait_count(rt, &assign_done, 2, 15000));
    ASSERT_OK(assign_status);
    ASSERT_EQ(assign_offsets[0], KSOCK_KAFKA_OFFSET_END);
    kt_run_for(rt, 500);
    ASSERT_EQ(consumed, 0);
    ksock_kafka_consumer_destroy(c);
    ksock_kafka_producer_destroy(p, 5000);
    ksock_runtime_destroy(rt);
}

/* ---- Explicit store and commit ---------------------------------------------------------- */

static int commit_status = 99;
static size_t commits_done;
static void on_commit(ksock_kafka_consumer_t *c, int status, const ksock_kafka_partition_t *parts,
                      size_t n, void *data)
{
    commit_status = status;
    commits_done++;
}

static int store_some(ksock_kafka_consumer_t *c, const ksock_kafka_message_t *m, void *data)
{
    consumed++;
    if (m->offset == 14) ASSERT_OK(ksock_kafka_consumer_store(c, m->topic, m->partition, 15));
    return 0;
}

TEST(commit_and_store_explicitly)
{
    reset_book();
    reset_offsets();
    ksock_runtime_t *rt = kt_runtime();
    char topic[128], group[160];
    kt_create_topic(kt_bootstrap(), kt_topic(topic, sizeof(topic), "commit"), 1, 1, NULL);
    snprintf(group, sizeof(group), "%s-g", topic);
    ksock_kafka_producer_t *p = producer(rt, NULL, NULL);
    produce_range(rt, p, topic, 0, 20);
    const char *topics[] = {topic, NULL};
    const char *manual[] = {"enable.auto.commit", "false", "enable.auto.offset.store", "false",
                            NULL};

    /* Commit offset 10 explicitly: the next member of the group starts there. */
    ksock_kafka_consumer_t *c = consumer(rt, topics, group, record_offsets, NULL, manual);
    ASSERT_OK(ksock_kafka_consumer_start(c));
    ASSERT(kt_wait_count(rt, &consumed, 20, 60000));
    ksock_kafka_partition_t off = {topic, 0, 10, 0};
    ASSERT_OK(ksock_kafka_consumer_commit(c, &off, 1, on_commit, NULL));
    ASSERT(kt_wait_count(rt, &commits_done, 1, 30000));
    ASSERT_OK(commit_status);
    ksock_kafka_consumer_destroy(c);

    reset_offsets();
    c = consumer(rt, topics, group, store_some, NULL, manual);
    ASSERT_OK(ksock_kafka_consumer_start(c));
    ASSERT(kt_wait_count(rt, &consumed, 10, 60000));
    /* Store 15 (done by the handler at offset 14), commit what is stored. */
    ASSERT_OK(ksock_kafka_consumer_commit(c, NULL, 0, on_commit, NULL));
    ASSERT(kt_wait_count(rt, &commits_done, 2, 30000));
    ASSERT_OK(commit_status);
    ksock_kafka_consumer_destroy(c);

    reset_offsets();
    c = consumer(rt, topics, group, record_offsets, NULL, manual);
    ASSERT_OK(ksock_kafka_consumer_start(c));
    ASSERT(kt_wait_count(rt, &consumed, 5, 60000));
    ASSERT_EQ(first_offset[0], 15);
    ksock_kafka_consumer_destroy(c);
    ksock_kafka_producer_destroy(p, 5000);
    ksock_runtime_destroy(rt);
}

/* ---- Slow consumers: bounded memory -------------------------------------------------------- */

#define SLOW_N   12000
#define SLOW_LEN 1024
static size_t max_queued, max_parked, paused_seen;
static int64_t slow_next;

static void fill_topic(ksock_runtime_t *rt, const char *topic, size_t n, size_t len)
{
    ksock_kafka_producer_t *p = producer(rt, "linger.ms", "20");
    char val[SLOW_LEN + 64];
    for (size_t i = 0; i < n; i++) {
        size_t vl = make_value(val, sizeof(val), i, len);
        ksock_kafka_record_t r = {
            .topic = topic, .value = val, .value_len = vl, .data = (void *)(uintptr_t)(i % MAXREC)};
        int rc;
        while ((rc = ksock_kafka_send(p, &r, NULL)) == KSOCK_E_QUEUE_FULL)
            ksock_runtime_run_once(rt, true);
        ASSERT_OK(rc);
    }
    ASSERT_OK(ksock_kafka_producer_flush_sync(p, 60000));
    ksock_kafka_producer_destroy(p, 1000);
}

static void sample(ksock_kafka_consumer_t *c)
{
    ksock_kafka_consumer_stats_t st = {.size = sizeof(st)};
    ksock_kafka_consumer_stats(c, &st);
    if (st.queued > max_queued) max_queued = st.queued;
    if (st.parked > max_parked) max_parked = st.parked;
    if (st.paused) paused_seen++;
}

static int slow_handler(ksock_kafka_consumer_t *c, const ksock_kafka_message_t *m, void *data)
{
    ASSERT_EQ(m->offset, slow_next++);
    check_value(m, (size_t)m->offset, SLOW_LEN);
    if (consumed++ % 64 == 0) sample(c);
    usleep(150); /* slower than the broker can deliver */
    return 0;
}

static const char *const bounded[] = {"queued.max.messages.kbytes",
                                      "1024",
                                      "fetch.max.bytes",
                                      "1048576",
                                      "max.partition.fetch.bytes",
                                      "262144",
                                      NULL};

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1) break;
    if (f) fclose(f);
    return kb;
}

TEST(slow_handler_does_not_grow_the_queue)
{
    reset_book();
    max_queued = max_parked = 0;
    slow_next = 0;
    ksock_runtime_t *rt = kt_runtime();
    char topic[128];
    kt_create_topic(kt_bootstrap(), kt_topic(topic, sizeof(topic), "slow"), 1, 1, NULL);
    fill_topic(rt, topic, SLOW_N, SLOW_LEN); /* 12 MB waiting */
    long rss0 = rss_kb();
    ksock_kafka_consumer_t *c = consumer(rt, NULL, NULL, slow_handler, NULL, bounded);
    assign_all(c, topic, 1, KSOCK_KAFKA_OFFSET_BEGINNING);
    ASSERT_OK(ksock_kafka_consumer_start(c));
    ASSERT(kt_wait_count(rt, &consumed, SLOW_N, 120000));
    long grown = rss_kb() - rss0;
    printf("# slow handler: max %zu ops queued in librdkafka, RSS grew %ld KiB for %d KiB "
           "consumed\n",
           max_queued, grown, SLOW_N * SLOW_LEN / 1024);
    /* 1 MiB queued plus at most one 1 MiB fetch response in flight: far below the 12 MB. */
    ASSERT_LT(max_queued, 2500);
#ifndef __SANITIZE_ADDRESS__ /* ASan's quarantine keeps freed memory resident */
    ASSERT_LT(grown, 8 * 1024);
#endif
    ksock_kafka_consumer_destroy(c);
    ksock_runtime_destroy(rt);
}

/* A handler feeding a bounded downstream queue: pauses when full, resumed as it drains. */
#define DOWNSTREAM_MAX 200
static size_t downstream;
static ksock_kafka_consumer_t *bp_consumer;
static const char *bp_topic;

static int bounded_handler(ksock_kafka_consumer_t *c, const ksock_kafka_message_t *m, void *data)
{
    if (downstream >= DOWNSTREAM_MAX) return KSOCK_KAFKA_PAUSE;
    ASSERT_EQ(m->offset, slow_next++); /* nothing lost, nothing twice, in order */
    downstream++;
    consumed++;
    if (consumed % 32 == 0) sample(c);
    return 0;
}

static void drain_downstream(ksock_timer_t *t, void *data)
{
    sample(bp_consumer);
    downstream = downstream > 150 ? downstream - 150 : 0;
    if (downstream < DOWNSTREAM_MAX)
        ASSERT_OK(ksock_kafka_consumer_resume(bp_consumer, bp_topic, 0));
}

TEST(backpressure_pause_resume_loses_nothing)
{
    reset_book();
    max_queued = max_parked = paused_seen = downstream = 0;
    slow_next = 0;
    ksock_runtime_t *rt = kt_runtime();
    char topic[128];
    kt_create_topic(kt_bootstrap(), kt_topic(topic, sizeof(topic), "backpressure"), 1, 1, NULL);
    bp_topic = topic;
    fill_topic(rt, topic, 6000, SLOW_LEN);
    bp_consumer = consumer(rt, NULL, NULL, bounded_handler, NULL, bounded);
    assign_all(bp_consumer, topic, 1, KSOCK_KAFKA_OFFSET_BEGINNING);
    ASSERT_OK(ksock_kafka_consumer_start(bp_consumer));
    ksock_timer_t *t;
    ASSERT_OK(ksock_timer_init(rt, &t, drain_downstream, NULL));
    ASSERT_OK(ksock_timer_start(t, 10, 10)); /* 150 per 10 ms downstream */
    ASSERT(kt_wait_count(rt, &consumed, 6000, 120000));
    printf("# backpressure: paused in %zu samples, max %zu parked, max %zu ops queued\n",
           paused_seen, max_parked, max_queued);
    ASSERT_GT(paused_seen, 0);
    ASSERT_LE(max_parked, 256 + 2500); /* one drain batch plus what librdkafka held */
    ASSERT_LT(max_queued, 2500);
    ksock_timer_close(t);
    ksock_kafka_consumer_destroy(bp_consumer);
    ksock_runtime_destroy(rt);
}

/* ---- Statistics --------------------------------------------------------------------------------
 */

static size_t stats_seen;
static void on_stats(const char *name, const char *json, size_t len, void *data)
{
    ASSERT(len > 10 && json[0] == '{');
    ASSERT_NOT_NULL(strstr(json, name));
    stats_seen++;
}

TEST(statistics_reach_the_loop)
{
    stats_seen = 0;
    ksock_runtime_t *rt = kt_runtime();
    ksock_kafka_producer_t *p = producer(rt, "statistics.interval.ms", "100");
    ksock_kafka_producer_on_stats(p, on_stats, NULL);
    const char *kv[] = {"statistics.interval.ms", "100", NULL};
    ksock_kafka_consumer_t *c = consumer(rt, NULL, NULL, record_offsets, NULL, kv);
    ksock_kafka_consumer_on_stats(c, on_stats, NULL);
    ASSERT_OK(ksock_kafka_consumer_start(c));
    ASSERT(kt_wait_count(rt, &stats_seen, 4, 10000));
    ksock_kafka_consumer_destroy(c);
    ksock_kafka_producer_destroy(p, 1000);
    ksock_runtime_destroy(rt);
}

KT_TEST_LIST(true, TEST_ENTRY(roundtrip_keys_values_headers_intact), TEST_ENTRY(many_partitions),
             TEST_ENTRY(group_rebalance_eager), TEST_ENTRY(group_rebalance_cooperative),
             TEST_ENTRY(manual_assignment_at_offset), TEST_ENTRY(manual_assignment_at_timestamp),
             TEST_ENTRY(commit_and_store_explicitly),
             TEST_ENTRY(slow_handler_does_not_grow_the_queue),
             TEST_ENTRY(backpressure_pause_resume_loses_nothing),
             TEST_ENTRY(statistics_reach_the_loop))
