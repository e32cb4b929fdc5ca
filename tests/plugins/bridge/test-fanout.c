/*
 * Subscriptions and fan-out (core/bridge/subs.c, fanout.c, lookup.c)
 * through the bridge's public API, with the fake transport (so a test
 * decides exactly when a client's send queue is full) and the embedded
 * cluster for both the producer and the bridge's readers. What a client
 * sees over a real socket and a real broker is in tests/e2e/; this file
 * pins down the engine's own rules: one encode per record and serializer,
 * exact hand-over from catch-up to the shared reader, the slow-client
 * policies, and that nothing leaks when a subscriber goes mid-stream.
 */
#include "bt.h"

#define FTOPIC "fan"

typedef struct {
    int64_t p[4]; /* per partition: the next offset expected */
    size_t records, dup_or_gap;
    size_t k; /* frames read so far */
    int64_t gap_at[4];
    size_t gaps, cancelled;
    bool subscribed;
} seen_t;

static void produce(bt_t *t, int32_t partition, int n)
{
    char v[32];
    for (int i = 0; i < n; i++) {
        snprintf(v, sizeof(v), "v%d", i);
        ksock_kafka_record_t r = {.topic = FTOPIC,
                                  .value = v,
                                  .value_len = strlen(v),
                                  .partition = partition,
                                  .flags = KSOCK_KAFKA_RECORD_F_PARTITION};
        ASSERT_OK(ksock_kafka_send(t->prod, &r, NULL));
    }
}

static void subscribe(bt_t *t, ksock_conn_id_t c, const char *id, const char *start_json)
{
    char m[256];
    snprintf(m, sizeof(m), "{\"op\":\"subscribe\",\"id\":\"%s\",\"topic\":\"" FTOPIC "\"%s%s}", id,
             start_json ? "," : "", start_json ? start_json : "");
    fake_message(t->f, c, m);
}

/* Read the frames of `c` not read yet into `s`: records checked for order, gaps noted. */
static void consume(bt_t *t, ksock_conn_id_t c, seen_t *s)
{
    for (; s->k < fake_nframes(t->f, c); s->k++) {
        msg_t m = bt_reply(t, c, s->k);
        if (strcmp(m.op, "subscribed") == 0) {
            s->subscribed = true;
        } else if (strcmp(m.op, "record") == 0) {
            ASSERT(m.partition >= 0 && m.partition < 4);
            if (m.offset != s->p[m.partition]) s->dup_or_gap++;
            s->p[m.partition] = m.offset + 1;
            s->records++;
        } else if (strcmp(m.op, "error") == 0 && m.code == KSOCK_E_SKIPPED) {
            s->gaps++;
        } else if (strcmp(m.op, "error") == 0 && m.code == KSOCK_E_CANCELED) {
            s->cancelled++;
        } else {
            TEST_FAIL_("unexpected %s (%d %s)", m.op, m.code, m.message);
        }
    }
}

typedef struct {
    bt_t *t;
    ksock_conn_id_t c;
    seen_t *s;
    size_t want;
    bool drain; /* the client reads: its queue is emptied on every check */
} until_t;

static bool got_records(void *arg)
{
    until_t *u = arg;
    consume(u->t, u->c, u->s);
    if (u->drain) fake_drain(u->t->f, u->c);
    return u->s->records >= u->want;
}

static void wait_records(bt_t *t, ksock_conn_id_t c, seen_t *s, size_t want, bool drain)
{
    until_t u = {t, c, s, want, drain};
    if (!kt_run_until(t->rt, got_records, &u, WAIT_MS))
        TEST_FAIL_("connection %llu: %zu records, want %zu", (unsigned long long)c, s->records,
                   want);
}

static bt_t *open_fanout(bt_t *t, ksock_bridge_slow_policy_t policy)
{
    bt_opts_t o = {.readers = true, .slow_policy = policy};
    bt_open(t, &o);
    ASSERT_OK(rd_kafka_mock_topic_create(t->mc, FTOPIC, 2, 1));
    return t;
}

/* The `subscribed` of `c` (frame k): its offsets per partition. */
static void expect_subscribed(bt_t *t, ksock_conn_id_t c, size_t k, const char *id,
                              const int64_t *want, size_t n)
{
    const fake_frame_t *fr = fake_frame(t->f, c, k);
    ASSERT_NOT_NULL(fr);
    const ksock_serializer_vtable_t *sv = ksock_plugin_instance_vtable(t->json);
    ksock_envelope_t env;
    ksock_envelope_init(&env);
    char err[256];
    ASSERT_OK(sv->decode_envelope(ksock_plugin_instance_inst(t->json), fr->data, fr->len, NULL,
                                  &env, err, sizeof(err)));
    ASSERT_EQ(env.op, KSOCK_OP_SUBSCRIBED);
    ASSERT(env.id != NULL && env.id_len == strlen(id) && memcmp(env.id, id, env.id_len) == 0);
    ASSERT_EQ(env.start, KSOCK_START_OFFSETS);
    ASSERT_EQ(env.noffsets, n);
    for (size_t i = 0; i < n; i++) {
        ASSERT_EQ(env.offsets[i].partition, (int32_t)i);
        ASSERT_EQ(env.offsets[i].offset, want[i]);
    }
    ksock_envelope_clear(&env);
}

/* Three subscribers at latest: every record once each, encoded once (one serializer in use). */
TEST(latest_subscribers_share_one_reader_and_one_encode_per_record)
{
    bt_t t;
    open_fanout(&t, KSOCK_BRIDGE_SLOW_CLOSE);
    produce(&t, 0, 5); /* before the subscriptions: never delivered */
    bt_wait_deliveries(&t);
    ksock_conn_id_t c[3];
    seen_t s[3] = {0};
    for (int i = 0; i < 3; i++) {
        c[i] = bt_connect(&t, NULL);
        subscribe(&t, c[i], "s", NULL);
        bt_wait_frames(&t, c[i], 1);
        expect_subscribed(&t, c[i], 0, "s", (const int64_t[]){5, 0}, 2);
        s[i].p[0] = 5;
    }
    produce(&t, 0, 100);
    produce(&t, 1, 100);
    for (int i = 0; i < 3; i++)
        wait_records(&t, c[i], &s[i], 200, true);
    ksock_bridge_stats_t st = bt_stats(&t);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(s[i].records, 200);
        ASSERT_EQ(s[i].dup_or_gap, 0);
    }
    ASSERT_EQ(st.records, 200);
    ASSERT_EQ(st.encodes, 200);
    ASSERT_EQ(st.deliveries, 600);
    ASSERT_EQ(st.readers, 1);
    ASSERT_EQ(st.subscriptions, 3);
    bt_close(&t);
}

/* From earliest while records keep coming: every offset once, in order, and the catch-up ends. */
TEST(catch_up_hands_over_to_the_shared_reader_without_gap_or_duplicate)
{
    bt_t t;
    open_fanout(&t, KSOCK_BRIDGE_SLOW_CLOSE);
    ksock_conn_id_t live = bt_connect(&t, NULL);
    subscribe(&t, live, "l", NULL);
    bt_wait_frames(&t, live, 1); /* the shared reader runs */
    produce(&t, 0, 300);
    produce(&t, 1, 300);
    bt_wait_deliveries(&t);
    ksock_conn_id_t c = bt_connect(&t, NULL);
    subscribe(&t, c, "e", "\"start\":\"earliest\"");
    seen_t s = {0}, ls = {0};
    for (int round = 0; round < 5; round++) { /* records arrive during the catch-up */
        produce(&t, round % 2, 50);
        wait_records(&t, c, &s, s.records + 1, true);
    }
    wait_records(&t, c, &s, 850, true);
    wait_records(&t, live, &ls, 850, true);
    expect_subscribed(&t, c, 0, "e", (const int64_t[]){0, 0}, 2);
    ASSERT_EQ(s.dup_or_gap, 0);
    ASSERT_EQ(s.p[0] + s.p[1], 850);
    ksock_bridge_stats_t st = bt_stats(&t);
    ASSERT_EQ(st.readers, 1); /* the catch-up reader is gone: both partitions joined */
    produce(&t, 1, 10);
    wait_records(&t, c, &s, 860, true);
    ASSERT_EQ(s.dup_or_gap, 0);
    bt_close(&t);
}

/* From offsets: listed partitions start there, the others at latest. */
TEST(offsets_start_where_listed_and_latest_elsewhere)
{
    bt_t t;
    open_fanout(&t, KSOCK_BRIDGE_SLOW_CLOSE);
    produce(&t, 0, 20);
    produce(&t, 1, 20);
    bt_wait_deliveries(&t);
    ksock_conn_id_t c = bt_connect(&t, NULL);
    subscribe(&t, c, "o", "\"start\":\"offsets\",\"offsets\":[{\"partition\":0,\"offset\":15}]");
    bt_wait_frames(&t, c, 1);
    expect_subscribed(&t, c, 0, "o", (const int64_t[]){15, 20}, 2);
    seen_t s = {.p = {15, 20}};
    wait_records(&t, c, &s, 5, true);
    produce(&t, 1, 3);
    wait_records(&t, c, &s, 8, true);
    ASSERT_EQ(s.dup_or_gap, 0);
    ASSERT_EQ(s.p[0], 20);
    ASSERT_EQ(s.p[1], 23);
    /* a partition the topic does not have: -29 with the id, nothing subscribed */
    subscribe(&t, c, "bad", "\"start\":\"offsets\",\"offsets\":[{\"partition\":7,\"offset\":0}]");
    bt_wait_frames(&t, c, s.k + 1);
    bt_expect_error(&t, c, s.k, KSOCK_E_UNKNOWN_TOPIC, "bad", FTOPIC);
    bt_close(&t);
}

/* Default policy: the subscriber that does not read is closed with 1013; the reader is not. */
TEST(slow_subscriber_is_closed_with_1013_and_others_get_everything)
{
    bt_t t;
    open_fanout(&t, KSOCK_BRIDGE_SLOW_CLOSE);
    t.f->send_limit = 150; /* more than one round: only the client that never reads fills up */
    ksock_conn_id_t slow = bt_connect(&t, NULL), fast = bt_connect(&t, NULL);
    subscribe(&t, slow, "s", NULL);
    subscribe(&t, fast, "f", NULL);
    bt_wait_frames(&t, slow, 1);
    bt_wait_frames(&t, fast, 1);
    seen_t fs = {0};
    for (int round = 1; round <= 4; round++) {
        produce(&t, 0, 100);
        wait_records(&t, fast, &fs, 100 * (size_t)round, true);
    }
    ASSERT_EQ(fs.dup_or_gap, 0);
    const fake_close_t *cl = fake_close_of(t.f, slow);
    ASSERT_NOT_NULL(cl);
    ASSERT_EQ(cl->code, 1013);
    ASSERT_CONTAINS(cl->reason, "slow client");
    ASSERT_EQ(bt_stats(&t).slow_closed, 1);
    ASSERT_NULL(fake_close_of(t.f, fast));
    bt_close(&t);
}

/* Drop policy: what did not fit is skipped, the client is told where the gap starts. */
TEST(drop_policy_skips_and_tells_where_the_gap_starts)
{
    bt_t t;
    open_fanout(&t, KSOCK_BRIDGE_SLOW_DROP);
    t.f->send_limit = 20;
    ksock_conn_id_t c = bt_connect(&t, NULL);
    subscribe(&t, c, "d", NULL);
    bt_wait_frames(&t, c, 1);
    produce(&t, 0, 100);
    bt_wait_deliveries(&t);
    seen_t s = {0};
    kt_run_for(t.rt, 900); /* past bridge.slow_client_grace: judged slow, then dropped */
    consume(&t, c, &s);
    ASSERT_EQ(s.records, 19); /* 20 frames fit: `subscribed` and 19 records */
    ASSERT(bt_stats(&t).slow_dropped > 0);
    fake_drain(t.f, c); /* the client reads: room again */
    bt_wait_frames(&t, c, 21);
    msg_t m = bt_reply(&t, c, 20);
    ASSERT_STR_EQ(m.op, "error");
    ASSERT_EQ(m.code, KSOCK_E_SKIPPED);
    ASSERT_STR_EQ(m.topic, FTOPIC);
    ASSERT(!m.has_id);
    produce(&t, 0, 5);
    wait_records(&t, c, &s, 24, true);
    ASSERT_EQ(s.gaps, 1);
    ASSERT_EQ(s.p[0], 105);
    ASSERT_NULL(fake_close_of(t.f, c));
    bt_close(&t);
}

/* Unsubscribe: no record after `unsubscribed`; subscribing twice replaces. */
TEST(unsubscribe_and_resubscribe)
{
    bt_t t;
    open_fanout(&t, KSOCK_BRIDGE_SLOW_CLOSE);
    ksock_conn_id_t c = bt_connect(&t, NULL);
    subscribe(&t, c, "a", NULL);
    subscribe(&t, c, "b", "\"start\":\"earliest\""); /* replaces "a", answered or cancelled */
    produce(&t, 0, 10);
    seen_t s = {0};
    wait_records(&t, c, &s, 10, true);
    ASSERT_EQ(s.dup_or_gap, 0);
    ASSERT(s.cancelled <= 1); /* "a" was answered -25 if it was not answered before "b" came */
    ASSERT_EQ(bt_stats(&t).subscriptions, 1);
    fake_message(t.f, c, "{\"op\":\"unsubscribe\",\"id\":\"u\",\"topic\":\"" FTOPIC "\"}");
    produce(&t, 0, 10);
    bt_wait_deliveries(&t);
    kt_run_for(t.rt, 300);
    size_t n = fake_nframes(t.f, c);
    msg_t last = bt_reply(&t, c, n - 1);
    ASSERT_STR_EQ(last.op, "unsubscribed");
    ASSERT_STR_EQ(last.id, "u");
    ASSERT_EQ(bt_stats(&t).subscriptions, 0);
    ASSERT_EQ(bt_stats(&t).readers, 1); /* the shared reader lingers (bridge.reader_linger) */
    subscribe(&t, c, "again", NULL);    /* answered at once, at the lingering reader's position */
    bt_wait_frames(&t, c, n + 1);
    expect_subscribed(&t, c, n, "again", (const int64_t[]){20, 0}, 2);
    bt_close(&t);
}

/* A subscriber that goes in the middle of a catch-up: its reader goes, others carry on. */
TEST(close_during_catch_up_frees_everything)
{
    bt_t t;
    open_fanout(&t, KSOCK_BRIDGE_SLOW_CLOSE);
    produce(&t, 0, 500);
    bt_wait_deliveries(&t);
    t.f->send_limit = 10; /* the catch-up waits for a client that never reads */
    ksock_conn_id_t c = bt_connect(&t, NULL), d = bt_connect(&t, NULL);
    subscribe(&t, c, "e", "\"start\":\"earliest\"");
    subscribe(&t, d, "e", "\"start\":\"earliest\"");
    bt_wait_frames(&t, c, 10);
    ASSERT_EQ(bt_stats(&t).readers, 3); /* shared + two catch-ups */
    ASSERT_NULL(fake_close_of(t.f, c)); /* catch-up waits, it never counts as slow */
    fake_peer_close(t.f, c, 1001);
    seen_t s = {0};
    wait_records(&t, d, &s, 500, true);
    ASSERT_EQ(s.dup_or_gap, 0);
    ASSERT_EQ(bt_stats(&t).subscriptions, 1);
    bt_close(&t); /* the leak check runs here in the sanitizer build */
}

typedef struct {
    bt_t *t;
    ksock_conn_id_t *c;
    seen_t *s;
    size_t n, want;
} all_t;

/* Every client reads what it has (its queue drains); true once each has `want` records. */
static bool all_got(void *arg)
{
    all_t *a = arg;
    bool done = true;
    for (size_t i = 0; i < a->n; i++) {
        consume(a->t, a->c[i], &a->s[i]);
        fake_drain(a->t->f, a->c[i]);
        done &= a->s[i].records >= a->want;
    }
    return done;
}

/* A burst fills every subscriber's queue at once: the shared reader waits, nobody is closed. */
TEST(burst_that_fills_every_queue_waits_and_loses_nothing)
{
    bt_t t;
    open_fanout(&t, KSOCK_BRIDGE_SLOW_CLOSE);
    t.f->send_limit = 8;
    ksock_conn_id_t c[3];
    seen_t s[3] = {0};
    for (int i = 0; i < 3; i++) {
        c[i] = bt_connect(&t, NULL);
        subscribe(&t, c[i], "b", NULL);
        bt_wait_frames(&t, c[i], 1);
    }
    produce(&t, 0, 150);
    produce(&t, 1, 150);
    all_t a = {&t, c, s, 3, 300};
    if (!kt_run_until(t.rt, all_got, &a, WAIT_MS)) /* they all read, each at its pace */
        TEST_FAIL_("records: %zu %zu %zu, want 300 each", s[0].records, s[1].records, s[2].records);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(s[i].dup_or_gap, 0);
        ASSERT_NULL(fake_close_of(t.f, c[i]));
    }
    ksock_bridge_stats_t st = bt_stats(&t);
    ASSERT_EQ(st.slow_closed, 0);
    ASSERT_EQ(st.records, 300);
    bt_close(&t);
}

TEST_LIST(TEST_ENTRY(latest_subscribers_share_one_reader_and_one_encode_per_record),
          TEST_ENTRY(catch_up_hands_over_to_the_shared_reader_without_gap_or_duplicate),
          TEST_ENTRY(offsets_start_where_listed_and_latest_elsewhere),
          TEST_ENTRY(slow_subscriber_is_closed_with_1013_and_others_get_everything),
          TEST_ENTRY(drop_policy_skips_and_tells_where_the_gap_starts),
          TEST_ENTRY(unsubscribe_and_resubscribe),
          TEST_ENTRY(burst_that_fills_every_queue_waits_and_loses_nothing),
          TEST_ENTRY(close_during_catch_up_frees_everything))
