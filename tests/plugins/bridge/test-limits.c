/*
 * The bridge's limits and token lifetime (docs/bridge.md, Limits and Token
 * lifetime) on the bt.h harness: the fake transport, the real json
 * serializer and jwt authenticator, the producer on the embedded cluster.
 * What the end-to-end test (tests/e2e/bridge/test_limits.py) cannot reach:
 * the -22 of a transport built for ABI 1.0, the exact pause and resume of
 * reading at the publish rate, the refusal code the transport is handed.
 */
#include "bt.h"

#define JWT_OPTS "{\"secret\": \"" SECRET "\", \"leeway\": \"0s\"}"

static void send_token(bt_t *t, ksock_conn_id_t c, const char *id, const char *tok)
{
    char buf[4096];
    int n = snprintf(buf, sizeof(buf), "{\"op\": \"token\", \"id\": \"%s\", \"value\": \"%s\"}", id,
                     tok);
    ASSERT(n > 0 && (size_t)n < sizeof(buf));
    fake_message(t->f, c, buf);
}

/* The transport is handed KSOCK_E_LIMIT (the ws transport answers it 429) for a principal's
 * connection over the bound, and the count is given back at the close. */
TEST(connections_per_principal_refused_with_limit_until_one_closes)
{
    bt_t t;
    bt_open(&t, &(bt_opts_t){.max_per_principal = 1});
    ksock_conn_id_t c = bt_connect(&t, NULL); /* "anonymous" */
    char err[512] = "";
    ksock_handshake_t hs = {.size = sizeof(hs), .subprotocol = "ksock.v1.json"};
    ASSERT_EQ(fake_accept(t.f, &hs, err, sizeof(err)), KSOCK_E_LIMIT);
    ASSERT_CONTAINS(err, "too many connections for this principal");
    fake_peer_close(t.f, c, 1000);
    kt_run_for(t.rt, 50);
    ksock_conn_id_t again = bt_connect(&t, NULL);
    bt_expect_alive(&t, again);
    ksock_bridge_stats_t st = bt_stats(&t);
    ASSERT_EQ(st.limit_principal, 1);
    ASSERT_EQ(st.refused, 1);
    bt_close(&t);
}

/* At the rate, reading pauses after the publish that took the last token and resumes when the
 * bucket refills: every publish is acked, none refused. */
TEST(publish_rate_pauses_reading_until_the_bucket_refills)
{
    bt_t t;
    bt_open(&t, &(bt_opts_t){.publish_rate = 5, .publish_burst = 2});
    ksock_conn_id_t c = bt_connect(&t, NULL);
    bt_publish(&t, c, "r0", TOPIC, "v");
    ASSERT(!fake_conn(t.f, c)->paused);
    bt_publish(&t, c, "r1", TOPIC, "v");
    ASSERT(fake_conn(t.f, c)->paused); /* the bucket is empty */
    bt_publish(&t, c, "r2", TOPIC, "v");
    ASSERT_EQ(fake_conn(t.f, c)->held, 1);
    ASSERT_EQ(ksock_kafka_producer_pending(t.prod), 2);
    uint64_t t0 = ksock_now_ns();
    bt_wait_frames(&t, c, 3);
    ASSERT_GE(ksock_now_ns() - t0, 150 * 1000000ull); /* one token at 5/s: 200 ms */
    for (int i = 0; i < 3; i++) {
        char id[8];
        snprintf(id, sizeof(id), "r%d", i);
        bt_expect_ack(&t, c, (size_t)i, id, TOPIC);
    }
    ksock_bridge_stats_t st = bt_stats(&t);
    ASSERT_GE(st.limit_rate_paused, 1);
    ASSERT_EQ(st.limit_rate_refused, 0);
    ASSERT_EQ(st.publish_errors, 0);
    bt_close(&t);
}

/* A transport without pause_read (ABI 1.0) cannot slow the client: over the rate is -22. */
TEST(publish_rate_with_a_1_0_transport_is_22)
{
    bt_t t;
    bt_open(&t, &(bt_opts_t){.v10 = true, .publish_rate = 1, .publish_burst = 2});
    ksock_conn_id_t c = bt_connect(&t, NULL);
    bt_publish(&t, c, "a", TOPIC, "v");
    bt_publish(&t, c, "b", TOPIC, "v");
    bt_publish(&t, c, "c", TOPIC, "v");
    ASSERT_EQ(ksock_kafka_producer_pending(t.prod), 2);
    msg_t m = bt_expect_error(&t, c, 0, KSOCK_E_LIMIT, "c", TOPIC);
    ASSERT_CONTAINS(m.message, "publish_rate");
    bt_wait_frames(&t, c, 3);
    ASSERT_EQ(bt_stats(&t).limit_rate_refused, 1);
    bt_close(&t);
}

/* A token that expires closes its connection with 4401 at exp, not before. */
TEST(expiry_closes_with_4401)
{
    bt_t t;
    bt_open(&t, &(bt_opts_t){.auth_json = JWT_OPTS});
    char *tok = bt_token(&t, "{\"sub\": \"alice\", \"ttl\": 2, \"publish\": [\"*\"]}");
    ksock_conn_id_t c = bt_connect(&t, tok);
    free(tok);
    kt_run_for(t.rt, 500);
    ASSERT_NULL(fake_close_of(t.f, c));
    kt_run_for(t.rt, 2000); /* exp is a whole second: 1 to 2 s from now */
    const fake_close_t *cl = fake_close_of(t.f, c);
    ASSERT_NOT_NULL(cl);
    ASSERT_EQ(cl->code, 4401);
    ASSERT_STR_EQ(cl->reason, "token expired");
    ASSERT_EQ(bt_stats(&t).token_expired, 1);
    bt_close(&t);
}

/* A refresh: answered `token`; its permissions apply to the next publish; another subject, a
 * bad token, no value are refused and change nothing. */
TEST(token_refresh_applies_at_once_and_refusals_change_nothing)
{
    bt_t t;
    bt_open(&t, &(bt_opts_t){.auth_json = JWT_OPTS});
    char *tok = bt_token(&t, "{\"sub\": \"alice\", \"publish\": [\"*\"]}");
    ksock_conn_id_t c = bt_connect(&t, tok);
    free(tok);
    tok = bt_token(&t, "{\"sub\": \"mallory\", \"publish\": [\"*\"]}");
    send_token(&t, c, "m", tok);
    free(tok);
    msg_t m = bt_expect_error(&t, c, 0, KSOCK_E_AUTH, "m", NULL);
    ASSERT_CONTAINS(m.message, "another subject");
    send_token(&t, c, "bad", "e30.e30.c2ln");
    bt_expect_error(&t, c, 1, KSOCK_E_AUTH, "bad", NULL);
    fake_message(t.f, c, "{\"op\": \"token\", \"id\": \"none\"}");
    bt_expect_error(&t, c, 2, KSOCK_E_PROTO, "none", NULL);
    tok = bt_token(&t, "{\"sub\": \"alice\", \"publish\": [\"other\"]}");
    send_token(&t, c, "ok", tok);
    free(tok);
    m = bt_reply(&t, c, 3);
    ASSERT_STR_EQ(m.op, "token");
    ASSERT_STR_EQ(m.id, "ok");
    bt_publish(&t, c, "p", TOPIC, "v");
    bt_expect_error(&t, c, 4, KSOCK_E_FORBIDDEN, "p", TOPIC);
    ASSERT_EQ(ksock_kafka_producer_pending(t.prod), 0);
    ksock_bridge_stats_t st = bt_stats(&t);
    ASSERT_EQ(st.token_refused, 3);
    ASSERT_EQ(st.token_refreshed, 1);
    bt_close(&t);
}

KT_TEST_LIST(false, TEST_ENTRY(connections_per_principal_refused_with_limit_until_one_closes),
             TEST_ENTRY(publish_rate_pauses_reading_until_the_bucket_refills),
             TEST_ENTRY(publish_rate_with_a_1_0_transport_is_22),
             TEST_ENTRY(expiry_closes_with_4401),
             TEST_ENTRY(token_refresh_applies_at_once_and_refusals_change_nothing))
