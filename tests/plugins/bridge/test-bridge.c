/*
 * The bridge (core/bridge, include/ksock/bridge.h) through its public API,
 * every row of the "Error mapping" table of docs/bridge.md, and the life
 * of a delivery whose connection, or whose bridge, is gone.
 *
 * Real: the bridge, the json serializer and the jwt authenticator (loaded
 * from build/plugins through the loader), the producer on the embedded
 * cluster (librdkafka's mock cluster, reached with
 * ksock_kafka_embedded_cluster() for error injection). Fake: the transport
 * (fake_transport.c, a built-in plugin), because the transport is not under
 * test here and a fake one lets each case inject exactly one client frame
 * and see exactly the frames the bridge sends back. Replies are decoded
 * with the json serializer and checked field by field, the echoed id and
 * topic included.
 *
 * No broker needed. Each test runs in a forked child (test.h) and ends
 * with a leak check in the sanitizer build.
 */
#include "bt.h"

#include <dlfcn.h>

/* ---- The success paths the refusals are measured against ----------------------------- */

TEST(ping_is_answered_with_pong_and_its_id)
{
    bt_t t;
    bt_open(&t, NULL);
    ksock_conn_id_t c = bt_connect(&t, NULL);
    fake_message(t.f, c, "{\"op\": \"ping\", \"id\": \"x\"}");
    fake_message(t.f, c, "{\"op\": \"ping\"}");
    fake_message(t.f, c, "{\"op\": \"pong\", \"id\": \"ignored\"}"); /* a client's pong: nothing */
    ASSERT_EQ(fake_nframes(t.f, c), 2);
    ASSERT_STR_EQ(fake_frame(t.f, c, 0)->data, "{\"op\":\"pong\",\"id\":\"x\"}");
    ASSERT_STR_EQ(fake_frame(t.f, c, 1)->data, "{\"op\":\"pong\"}");
    ASSERT_EQ(bt_stats(&t).connections, 1);
    bt_close(&t);
}

TEST(publish_is_acked_with_id_topic_partition_offset)
{
    bt_t t;
    bt_open(&t, NULL);
    ksock_conn_id_t c = bt_connect(&t, NULL);
    fake_message(t.f, c,
                 "{\"op\": \"publish\", \"id\": \"p1\", \"topic\": \"" TOPIC
                 "\", \"partition\": 1, "
                 "\"key\": \"k\", \"value\": \"v\", \"headers\": [{\"key\": \"h\", \"value\": "
                 "\"x\"}]}");
    /* No partition: the partitioner's choice, so the two acks may come in either order. */
    fake_message(t.f, c, "{\"op\": \"publish\", \"id\": \"p2\", \"topic\": \"" TOPIC "\"}");
    ASSERT_EQ(fake_nframes(t.f, c), 0); /* answered when Kafka has them, not before */
    bt_wait_frames(&t, c, 2);
    size_t k1 = strstr(fake_frame(t.f, c, 0)->data, "\"p1\"") ? 0 : 1;
    msg_t a1 = bt_expect_ack(&t, c, k1, "p1", TOPIC),
          a2 = bt_expect_ack(&t, c, 1 - k1, "p2", TOPIC);
    ASSERT_EQ(a1.partition, 1);
    ASSERT_EQ(a1.offset, 0);
    ASSERT(a2.partition != a1.partition || a2.offset == 1);
    ksock_bridge_stats_t st = bt_stats(&t);
    ASSERT_EQ(st.published, 2);
    ASSERT_EQ(st.publish_errors, 0);
    bt_close(&t);
}

/* ---- docs/bridge.md "Error mapping", one row at a time ------------------------------- */

/* Row: frame does not decode -> -19, no id, decoder's message; the connection stays. */
TEST(decode_error_is_19_with_the_id_that_decoded_and_connection_stays)
{
    bt_t t;
    bt_open(&t, NULL);
    ksock_conn_id_t c = bt_connect(&t, NULL);
    /* The id came before the fault: echoed, so a pipelining client can match the error. */
    fake_message(t.f, c, "{\"op\": \"publish\", \"id\": \"d1\", \"topic\": ");
    fake_message(t.f, c, "not json at all");
    msg_t m = bt_expect_error(&t, c, 0, KSOCK_E_DECODE, "d1", NULL);
    ASSERT(strncmp(m.message, "json: offset ", 13) == 0);
    bt_expect_error(&t, c, 1, KSOCK_E_DECODE, NULL, NULL);
    bt_expect_alive(&t, c);
    ASSERT_EQ(ksock_kafka_producer_pending(t.prod), 0);
    bt_close(&t);
}

/*
 * Row: decodes but breaks protocol.md section 2 -> -17. A publish without
 * its required topic, a subscribe to an empty one: the id is echoed.
 */
TEST(protocol_rule_broken_is_17)
{
    bt_t t;
    bt_open(&t, NULL);
    ksock_conn_id_t c = bt_connect(&t, NULL);
    fake_message(t.f, c, "{\"op\": \"publish\", \"id\": \"x\", \"value\": \"v\"}");
    fake_message(t.f, c, "{\"op\": \"subscribe\", \"id\": \"y\", \"topic\": \"\"}");
    for (size_t k = 0; k < 2; k++) {
        msg_t m = bt_reply(&t, c, k);
        ASSERT_STR_EQ(m.op, "error");
        ASSERT_EQ(m.code, KSOCK_E_PROTO);
        ASSERT(m.has_id);
        ASSERT_STR_EQ(m.id, k == 0 ? "x" : "y");
        ASSERT(!m.has_topic);
    }
    bt_expect_alive(&t, c);
    ASSERT_EQ(ksock_kafka_producer_pending(t.prod), 0);
    bt_close(&t);
}

/* Row: a decoder limit (the runtime's serde limits) -> -22, and nothing produced. */
TEST(decoder_limit_is_22)
{
    bt_t t;
    bt_open(&t, NULL);
    ksock_value_limits_t lim;
    ksock_serde_get_limits(t.rt, &lim);
    lim.max_string = 16;
    ASSERT_OK(ksock_serde_set_limits(t.rt, &lim));
    ksock_conn_id_t c = bt_connect(&t, NULL);
    bt_publish(&t, c, "l1", TOPIC, "a value of more than sixteen bytes");
    msg_t m = bt_reply(&t, c, 0);
    ASSERT_STR_EQ(m.op, "error");
    ASSERT_EQ(m.code, KSOCK_E_LIMIT);
    ASSERT_CONTAINS(m.message, "16");
    ASSERT_EQ(ksock_kafka_producer_pending(t.prod), 0);
    bt_publish(&t, c, "l2", TOPIC, "short");
    bt_wait_frames(&t, c, 2);
    bt_expect_ack(&t, c, 1, "l2", TOPIC);
    bt_close(&t);
}

/* Row: an op only the server sends -> -17 with the request's id; the connection stays. */
TEST(server_only_ops_are_17_with_id)
{
    static const char *const frames[] = {
        "{\"op\": \"ack\", \"id\": \"s0\", \"topic\": \"t\", \"partition\": 0, \"offset\": 1}",
        "{\"op\": \"record\", \"id\": \"s1\", \"topic\": \"t\", \"partition\": 0, \"offset\": 1}",
        "{\"op\": \"error\", \"id\": \"s2\", \"error_code\": -1}",
        "{\"op\": \"subscribed\", \"id\": \"s3\", \"topic\": \"t\"}",
        "{\"op\": \"unsubscribed\", \"id\": \"s4\", \"topic\": \"t\"}",
    };
    static const char *const names[] = {"ack", "record", "error", "subscribed", "unsubscribed"};
    bt_t t;
    bt_open(&t, NULL);
    ksock_conn_id_t c = bt_connect(&t, NULL);
    for (size_t i = 0; i < 5; i++) {
        fake_message(t.f, c, frames[i]);
        char id[8];
        snprintf(id, sizeof(id), "s%zu", i);
        msg_t m = bt_expect_error(&t, c, i, KSOCK_E_PROTO, id, NULL);
        ASSERT_CONTAINS(m.message, names[i]);
    }
    bt_expect_alive(&t, c);
    bt_close(&t);
}

/*
 * Row: subscribe on a bridge made without a Kafka configuration for its
 * readers -> -21 with id and topic; unsubscribe is answered `unsubscribed`
 * (nothing to end). ksockd always gives one (e2e-bridge tests subscribe).
 */
TEST(subscribe_without_readers_is_21_unsubscribe_is_answered)
{
    bt_t t;
    bt_open(&t, NULL);
    ksock_conn_id_t c = bt_connect(&t, NULL);
    fake_message(t.f, c, "{\"op\": \"subscribe\", \"id\": \"s1\", \"topic\": \"" TOPIC "\"}");
    fake_message(t.f, c, "{\"op\": \"unsubscribe\", \"id\": \"u1\", \"topic\": \"" TOPIC "\"}");
    msg_t s = bt_expect_error(&t, c, 0, KSOCK_E_UNSUPPORTED, "s1", TOPIC);
    ASSERT_CONTAINS(s.message, "no Kafka reader");
    msg_t u = bt_reply(&t, c, 1);
    ASSERT_STR_EQ(u.op, "unsubscribed");
    ASSERT(u.has_id);
    ASSERT_STR_EQ(u.id, "u1");
    bt_expect_alive(&t, c);
    bt_close(&t);
}

/*
 * Row: publish without the right on the topic -> -16 with id and topic,
 * nothing produced. A real jwt instance; the token allows publishing to
 * "orders" only (and subscribing to the denied topic, which is not
 * publishing).
 */
TEST(publish_without_right_is_16_and_not_produced)
{
    bt_t t;
    bt_open(&t, &(bt_opts_t){.auth_json = "{\"secret\": \"" SECRET "\"}"});
    char *tok = bt_token(&t, "{\"sub\": \"alice\", \"publish\": [\"" TOPIC "\"], "
                             "\"subscribe\": [\"secret.*\"]}");
    ksock_conn_id_t c = bt_connect(&t, tok);
    free(tok);
    bt_publish(&t, c, "p8", "secret.plans", "v");
    ASSERT_EQ(ksock_kafka_producer_pending(t.prod), 0); /* refused before Kafka */
    msg_t m = bt_expect_error(&t, c, 0, KSOCK_E_FORBIDDEN, "p8", "secret.plans");
    ASSERT_CONTAINS(m.message, "not allowed");
    bt_publish(&t, c, "p9", TOPIC, "v"); /* the connection still publishes where it may */
    bt_wait_frames(&t, c, 2);
    bt_expect_ack(&t, c, 1, "p9", TOPIC);
    ksock_bridge_stats_t st = bt_stats(&t);
    ASSERT_EQ(st.published, 1);
    ASSERT_EQ(st.publish_errors, 1);
    bt_close(&t);
}

/* Row: U+0000 in a topic or header name -> -17 (Kafka names are C strings); nothing produced. */
TEST(nul_in_topic_or_header_name_is_17)
{
    bt_t t;
    bt_open(&t, NULL);
    ksock_conn_id_t c = bt_connect(&t, NULL);
    fake_message(t.f, c,
                 "{\"op\": \"publish\", \"id\": \"n1\", \"topic\": \"" TOPIC "\\u0000x\", "
                 "\"value\": \"v\"}");
    fake_message(t.f, c,
                 "{\"op\": \"publish\", \"id\": \"n2\", \"topic\": \"" TOPIC
                 "\", \"value\": \"v\", "
                 "\"headers\": [{\"key\": \"a\\u0000b\", \"value\": \"v\"}]}");
    ASSERT_EQ(ksock_kafka_producer_pending(t.prod), 0);
    /* The topic with a NUL is not echoed (it is not a name Kafka could have). */
    msg_t m1 = bt_expect_error(&t, c, 0, KSOCK_E_PROTO, "n1", NULL);
    msg_t m2 = bt_expect_error(&t, c, 1, KSOCK_E_PROTO, "n2", TOPIC);
    ASSERT_CONTAINS(m1.message, "invalid topic name"); /* the topic rule sees it first */
    ASSERT_CONTAINS(m2.message, "NUL");
    bt_expect_alive(&t, c);
    bt_close(&t);
}

/*
 * The in-flight bound (docs/bridge.md, Bounds): at max_inflight the bridge
 * pauses reading the connection instead of refusing; what the transport
 * had already read waits there and is produced as acks free slots. Every
 * publish is acked, none refused, and the bound holds.
 */
TEST(in_flight_bound_pauses_reading_and_every_publish_is_acked)
{
    bt_t t;
    bt_open(&t, &(bt_opts_t){.max_inflight = 2});
    ksock_conn_id_t c = bt_connect(&t, NULL);
    /* The loop does not run between these: no delivery can free a slot. */
    for (int i = 0; i < 6; i++) {
        char id[8];
        snprintf(id, sizeof(id), "f%d", i);
        bt_publish(&t, c, id, TOPIC, "v");
    }
    ASSERT_EQ(ksock_kafka_producer_pending(t.prod), 2);
    ASSERT(fake_conn(t.f, c)->paused);
    ASSERT_EQ(fake_conn(t.f, c)->held, 4);
    bt_wait_frames(&t, c, 6);
    for (int i = 0; i < 6; i++) { /* acks in delivery order, which is send order here */
        char id[8];
        snprintf(id, sizeof(id), "f%d", i);
        bt_expect_ack(&t, c, (size_t)i, id, TOPIC);
    }
    ASSERT(!fake_conn(t.f, c)->paused);
    ASSERT_GE(fake_conn(t.f, c)->pauses, 1);
    ksock_bridge_stats_t st = bt_stats(&t);
    ASSERT_LE(st.inflight_max, 2);
    ASSERT_EQ(st.publish_errors, 0);
    bt_close(&t);
}

/*
 * A transport built for ABI 1.0 has no pause_read: the bridge keeps the
 * 1.0 behaviour and refuses a publish over the bound with -23.
 */
TEST(in_flight_bound_with_a_1_0_transport_is_23)
{
    bt_t t;
    bt_open(&t, &(bt_opts_t){.max_inflight = 2, .v10 = true});
    ksock_conn_id_t c = bt_connect(&t, NULL);
    bt_publish(&t, c, "f1", TOPIC, "v");
    bt_publish(&t, c, "f2", TOPIC, "v");
    bt_publish(&t, c, "f3", TOPIC, "v");
    ASSERT_EQ(ksock_kafka_producer_pending(t.prod), 2);
    msg_t m = bt_expect_error(&t, c, 0, KSOCK_E_QUEUE_FULL, "f3", TOPIC);
    ASSERT_CONTAINS(m.message, "in flight");
    bt_wait_frames(&t, c, 3);
    bt_expect_ack(&t, c, 1, "f1", TOPIC);
    bt_expect_ack(&t, c, 2, "f2", TOPIC);
    bt_close(&t);
}

/*
 * Row: Kafka refuses at send with -23: the producer's own queue
 * (queue.buffering.max.messages) is full. A record counts until its
 * delivery report is served, and the loop does not run between the two
 * publishes. This bound is librdkafka's, not the connection's: the bridge
 * answers it with -23 (docs/bridge.md, Bounds).
 */
TEST(producer_queue_full_is_23)
{
    bt_t t;
    bt_open(&t, &(bt_opts_t){.kafka = {"queue.buffering.max.messages", "1", NULL}});
    ksock_conn_id_t c = bt_connect(&t, NULL);
    bt_publish(&t, c, "q1", TOPIC, "v");
    bt_publish(&t, c, "q2", TOPIC, "v");
    ASSERT_EQ(ksock_kafka_producer_pending(t.prod), 1);
    bt_expect_error(&t, c, 0, KSOCK_E_QUEUE_FULL, "q2", TOPIC);
    bt_wait_frames(&t, c, 2);
    bt_expect_ack(&t, c, 1, "q1", TOPIC);
    bt_close(&t);
}

/*
 * Row: Kafka refuses -> -18 KSOCK_E_TOOBIG. At delivery: the broker answers
 * MESSAGE_TOO_LARGE. At send: the record is larger than the producer's
 * message.max.bytes.
 */
TEST(kafka_message_too_large_is_18)
{
    bt_t t;
    bt_open(&t, &(bt_opts_t){.kafka = {"message.max.bytes", "1000", NULL}});
    ksock_conn_id_t c = bt_connect(&t, NULL);
    rd_kafka_mock_push_request_errors(t.mc, APIKEY_PRODUCE, 1,
                                      RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
    bt_publish(&t, c, "big1", TOPIC, "v");
    bt_wait_frames(&t, c, 1);
    msg_t m = bt_expect_error(&t, c, 0, KSOCK_E_TOOBIG, "big1", TOPIC);
    char big[1501];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    bt_publish(&t, c, "big2", TOPIC, big);
    ASSERT_EQ(fake_nframes(t.f, c), 2); /* refused by the producer at once */
    bt_expect_error(&t, c, 1, KSOCK_E_TOOBIG, "big2", TOPIC);
    if (getenv("KT_VERBOSE")) fprintf(stderr, "# %s\n", m.message);
    ksock_bridge_stats_t st = bt_stats(&t);
    ASSERT_EQ(st.publish_errors, 2);
    ASSERT_EQ(st.published, 0);
    bt_expect_alive(&t, c);
    bt_close(&t);
}

/*
 * Row: Kafka refuses -> -29 KSOCK_E_UNKNOWN_TOPIC, for a partition that
 * does not exist: at delivery while the producer has no metadata for the
 * topic yet, at send once it has.
 */
TEST(kafka_unknown_partition_is_29)
{
    bt_t t;
    bt_open(&t, NULL);
    ksock_conn_id_t c = bt_connect(&t, NULL);
    fake_message(t.f, c,
                 "{\"op\": \"publish\", \"id\": \"u1\", \"topic\": \"" TOPIC
                 "\", \"partition\": 7, "
                 "\"value\": \"v\"}");
    bt_wait_frames(&t, c, 1);
    bt_expect_error(&t, c, 0, KSOCK_E_UNKNOWN_TOPIC, "u1", TOPIC);
    bt_publish(&t, c, "u2", TOPIC, "v");
    bt_wait_frames(&t, c, 2);
    bt_expect_ack(&t, c, 1, "u2", TOPIC);
    fake_message(t.f, c,
                 "{\"op\": \"publish\", \"id\": \"u3\", \"topic\": \"" TOPIC
                 "\", \"partition\": 2, "
                 "\"value\": \"v\"}");
    bt_wait_frames(&t, c, 3);
    bt_expect_error(&t, c, 2, KSOCK_E_UNKNOWN_TOPIC, "u3", TOPIC);
    bt_close(&t);
}

/*
 * Row: a retriable Kafka error that outlasts the producer's retries
 * (message.timeout.ms) -> -27 KSOCK_E_KAFKA, with librdkafka's text.
 */
TEST(kafka_retriable_error_exhausting_retries_is_27)
{
    bt_t t;
    /* Long enough for the first ack on a loaded machine under ASan, short enough for a test. */
    bt_open(&t,
            &(bt_opts_t){.kafka = {"message.timeout.ms", "2000", "retry.backoff.ms", "20", NULL}});
    ksock_conn_id_t c = bt_connect(&t, NULL);
    bt_publish(&t, c, "r0", TOPIC, "v"); /* connected and the topic known */
    bt_wait_frames(&t, c, 1);
    bt_expect_ack(&t, c, 0, "r0", TOPIC);
    rd_kafka_resp_err_t errs[200]; /* more than 2 s of retries every 20 ms */
    for (size_t i = 0; i < 200; i++)
        errs[i] = RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS;
    rd_kafka_mock_push_request_errors_array(t.mc, APIKEY_PRODUCE, 200, errs);
    bt_publish(&t, c, "r1", TOPIC, "v");
    bt_wait_frames(&t, c, 2);
    msg_t m = bt_expect_error(&t, c, 1, KSOCK_E_KAFKA, "r1", TOPIC);
    if (getenv("KT_VERBOSE")) fprintf(stderr, "# %s\n", m.message);
    bt_close(&t);
}

/*
 * Row: a Kafka error that is not retriable -> -28 KSOCK_E_KAFKA_FATAL. At
 * delivery: Kafka's own authorization refuses the topic (mapped to
 * KSOCK_E_FORBIDDEN, not one of the passed-through codes, not retriable).
 * At send: the producer hit a fatal error (idempotence broken) and refuses
 * every record since.
 */
TEST(kafka_fatal_error_is_28)
{
    bt_t t;
    bt_open(&t, NULL);
    ksock_conn_id_t c = bt_connect(&t, NULL);
    rd_kafka_mock_push_request_errors(t.mc, APIKEY_PRODUCE, 1,
                                      RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    bt_publish(&t, c, "x1", TOPIC, "v");
    bt_wait_frames(&t, c, 1);
    bt_expect_error(&t, c, 0, KSOCK_E_KAFKA_FATAL, "x1", TOPIC);
    rd_kafka_t *rk = ksock_kafka_producer_handle(t.prod);
    ASSERT_EQ(rd_kafka_test_fatal_error(rk, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                                        "test: fatal"),
              RD_KAFKA_RESP_ERR_NO_ERROR);
    bt_publish(&t, c, "x2", TOPIC, "v");
    bt_wait_frames(&t, c, 2);
    bt_expect_error(&t, c, 1, KSOCK_E_KAFKA_FATAL, "x2", TOPIC);
    bt_expect_alive(&t, c);
    bt_close(&t);
}

/* ---- Deliveries whose connection or bridge is gone --------------------------------- */

/*
 * A delivery for a connection that closed is dropped and counted
 * (docs/bridge.md "Bounds"), never sent to another connection.
 */
TEST(delivery_after_close_is_dropped_and_counted)
{
    bt_t t;
    bt_open(&t, NULL);
    ksock_conn_id_t c1 = bt_connect(&t, NULL), c2 = bt_connect(&t, NULL);
    for (int i = 0; i < 3; i++)
        bt_publish(&t, c1, "gone", TOPIC, "v");
    bt_publish(&t, c2, "stays", TOPIC, "v");
    fake_peer_close(t.f, c1, 1000);
    bt_wait_deliveries(&t);
    ASSERT_EQ(fake_nframes(t.f, c1), 0);
    ASSERT_EQ(fake_nframes(t.f, c2), 1);
    bt_expect_ack(&t, c2, 0, "stays", TOPIC);
    ksock_bridge_stats_t st = bt_stats(&t);
    ASSERT_EQ(st.dropped, 3);
    ASSERT_EQ(st.published, 4);
    ASSERT_EQ(st.connections, 2);
    bt_close(&t);
}

/*
 * A delivery that arrives after the bridge was freed: the bridge detaches
 * its pending publishes, and the late callback only frees its own memory.
 * Here the loop serves it (a successful delivery). Run in the ASan build,
 * this fails on a use after free or a leak.
 */
TEST(delivery_after_bridge_freed_is_safe)
{
    bt_t t;
    bt_open(&t, NULL);
    ksock_conn_id_t c = bt_connect(&t, NULL);
    for (int i = 0; i < 5; i++)
        bt_publish(&t, c, "late", TOPIC, "v");
    ASSERT_EQ(ksock_kafka_producer_pending(t.prod), 5);
    ksock_bridge_destroy(t.b); /* stops the transport too */
    t.b = NULL;
    ASSERT_EQ(fake_conn(t.f, c)->state, FAKE_CONN_CLOSING);
    size_t sent = fake_nframes(t.f, c);
    ASSERT_EQ(sent, 0);
    /* bridge.h's order: the transport next, so its pending close events die with it. */
    ksock_plugin_instance_free(t.tp);
    t.tp = NULL;
    t.f = NULL;
    bt_wait_deliveries(&t); /* five acks reach no bridge: each frees its own memory */
    ASSERT_EQ(ksock_kafka_producer_pending(t.prod), 0);
    bt_close(&t);
}

/* The same, the late callbacks fired by the producer's destroy (canceled: the broker is down). */
TEST(delivery_canceled_after_bridge_freed_is_safe)
{
    bt_t t;
    bt_open(&t, NULL);
    ksock_conn_id_t c = bt_connect(&t, NULL);
    rd_kafka_mock_broker_set_down(t.mc, 1);
    for (int i = 0; i < 5; i++)
        bt_publish(&t, c, "canceled", TOPIC, "v");
    kt_run_for(t.rt, 100);
    ASSERT_EQ(ksock_kafka_producer_pending(t.prod), 5);
    ksock_bridge_destroy(t.b);
    t.b = NULL;
    ksock_kafka_producer_destroy(t.prod, 0); /* five callbacks, canceled, no bridge */
    t.prod = NULL;
    ASSERT_EQ(fake_nframes(t.f, c), 0);
    bt_close(&t);
}

/* ---- Around the table: handshakes, the reply queue, stop ----------------------------- */

/*
 * Handshake refusals as the transport sees them: KSOCK_E_PROTO (HTTP 400)
 * without a ksock.v1 subprotocol, KSOCK_E_AUTH (401) without a token or
 * with a bad one; a subprotocol whose serializer does not exist is
 * accepted, then closed with 1002.
 */
TEST(handshake_refusals)
{
    bt_t t;
    bt_open(&t, &(bt_opts_t){.auth_json = "{\"secret\": \"" SECRET "\"}"});
    char err[512];
    ksock_handshake_t none = {.size = sizeof(none)};
    ASSERT_EQ(fake_accept(t.f, &none, err, sizeof(err)), KSOCK_E_PROTO);
    ASSERT_CONTAINS(err, "subprotocol");
    ksock_handshake_t other = {.size = sizeof(other), .subprotocol = "chat"};
    ASSERT_EQ(fake_accept(t.f, &other, err, sizeof(err)), KSOCK_E_PROTO);
    ksock_handshake_t notoken = {.size = sizeof(notoken), .subprotocol = "ksock.v1.json"};
    ASSERT_EQ(fake_accept(t.f, &notoken, err, sizeof(err)), KSOCK_E_AUTH);
    ksock_kvpair_t h = {"authorization", "Bearer e30.e30.c2lnbmF0dXJl"};
    ksock_handshake_t bad = {
        .size = sizeof(bad), .subprotocol = "ksock.v1.json", .headers = &h, .nheaders = 1};
    ASSERT_EQ(fake_accept(t.f, &bad, err, sizeof(err)), KSOCK_E_AUTH);
    char *tok = bt_token(&t, "{\"sub\": \"bob\"}");
    char auth[2048];
    snprintf(auth, sizeof(auth), "Bearer %s", tok);
    free(tok);
    h.value = auth;
    bad.subprotocol = "ksock.v1.nosuchformat";
    int64_t id = fake_accept(t.f, &bad, err, sizeof(err));
    ASSERT_GT(id, 0);
    const fake_close_t *cl = fake_close_of(t.f, (ksock_conn_id_t)id);
    ASSERT_NOT_NULL(cl);
    ASSERT_EQ(cl->code, 1002);
    kt_run_for(t.rt, 50);
    ASSERT_EQ(fake_conn(t.f, (ksock_conn_id_t)id)->state, FAKE_CONN_CLOSED);
    ASSERT_EQ(bt_stats(&t).connections, 1);
    ASSERT_EQ(bt_stats(&t).refused, 4); /* bridge.h: "handshakes refused" */
    bt_close(&t);
}

/*
 * A full send queue (the client reads slowly): the reply waits in the
 * bridge, reading pauses, and on_writable flushes it; nothing is closed,
 * nothing dropped (docs/bridge.md, Bounds).
 */
TEST(full_send_queue_waits_for_on_writable)
{
    bt_t t;
    bt_open(&t, NULL);
    t.f->send_limit = 2;
    ksock_conn_id_t c = bt_connect(&t, NULL);
    for (int i = 0; i < 4; i++) {
        char ping[48];
        snprintf(ping, sizeof(ping), "{\"op\": \"ping\", \"id\": \"p%d\"}", i);
        fake_message(t.f, c, ping);
    }
    ASSERT_EQ(fake_nframes(t.f, c), 2);
    ASSERT_NULL(fake_close_of(t.f, c));
    ASSERT(fake_conn(t.f, c)->paused);
    fake_drain(t.f, c); /* the client read: on_writable */
    kt_run_for(t.rt, 50);
    ASSERT_EQ(fake_nframes(t.f, c), 4);
    for (size_t k = 0; k < 4; k++) {
        msg_t m = bt_reply(&t, c, k);
        char id[8];
        snprintf(id, sizeof(id), "p%zu", k);
        ASSERT_STR_EQ(m.op, "pong");
        ASSERT_STR_EQ(m.id, id);
    }
    ASSERT(!fake_conn(t.f, c)->paused);
    ASSERT_EQ(fake_conn(t.f, c)->state, FAKE_CONN_OPEN);
    bt_close(&t);
}

/*
 * A program built against ABI 1.0 had a six-counter ksock_bridge_stats_t
 * without a size: it is bound to ksock_bridge_stats@KSOCK_1.0, which must
 * fill those six and not a byte more.
 */
TEST(stats_for_an_abi_1_0_program)
{
    bt_t t;
    bt_open(&t, NULL);
    ksock_conn_id_t c = bt_connect(&t, NULL);
    bt_publish(&t, c, "s1", TOPIC, "v");
    bt_wait_frames(&t, c, 1);
    void (*stats_1_0)(const ksock_bridge_t *, uint64_t *);
    *(void **)&stats_1_0 = dlvsym(RTLD_DEFAULT, "ksock_bridge_stats", "KSOCK_1.0");
    ASSERT_NOT_NULL(stats_1_0);
    uint64_t v[7];
    memset(v, 0xA5, sizeof(v)); /* v[6] stands for what follows the 1.0 struct */
    stats_1_0(t.b, v);
    ksock_bridge_stats_t st = bt_stats(&t);
    ASSERT_EQ(v[0], st.connections);
    ASSERT_EQ(v[0], 1);
    ASSERT_EQ(v[1], st.refused);
    ASSERT_EQ(v[2], st.published);
    ASSERT_EQ(v[2], 1);
    ASSERT_EQ(v[3], st.publish_errors);
    ASSERT_EQ(v[4], st.dropped);
    ASSERT_EQ(v[5], st.send_full);
    ASSERT(v[6] == 0xA5A5A5A5A5A5A5A5ull);
    /* A caller whose size covers two counters gets those two only. */
    ksock_bridge_stats_t part;
    memset(&part, 0xA5, sizeof(part));
    part.size = offsetof(ksock_bridge_stats_t, published);
    ksock_bridge_stats(t.b, &part);
    ASSERT_EQ(part.connections, 1);
    ASSERT_EQ(part.refused, 0);
    ASSERT(part.published == 0xA5A5A5A5A5A5A5A5ull);
    bt_close(&t);
}

/*
 * bridge.h: stop() stops the transport without running the loop (libuv's
 * rule: no public stop function re-enters it); the close events the
 * transport posts are delivered when the loop next runs.
 */
TEST(stop_does_not_run_the_loop)
{
    bt_t t;
    bt_open(&t, NULL);
    ksock_conn_id_t c1 = bt_connect(&t, NULL), c2 = bt_connect(&t, NULL);
    ksock_bridge_stop(t.b);
    ASSERT_EQ(fake_conn(t.f, c1)->state, FAKE_CONN_CLOSING);
    ASSERT_EQ(fake_conn(t.f, c2)->state, FAKE_CONN_CLOSING);
    ASSERT_EQ(t.f->posted, 2);
    ksock_bridge_stop(t.b); /* idempotent */
    kt_run_for(t.rt, 20);
    ASSERT_EQ(fake_conn(t.f, c1)->state, FAKE_CONN_CLOSED);
    ASSERT_EQ(fake_conn(t.f, c2)->state, FAKE_CONN_CLOSED);
    ASSERT_EQ(t.f->posted, 0);
    bt_close(&t);
}

/* ksock_bridge_reload() needs a bridge made from a config (it owns what it swaps): refused. */
TEST(reload_of_a_bridge_not_made_from_a_config_is_refused)
{
    bt_t t;
    bt_open(&t, NULL);
    ksock_conn_id_t c = bt_connect(&t, NULL);
    char err[256] = "";
    ksock_config_t *cfg;
    ASSERT_OK(ksock_config_load_string("t.json", "{}", 2, &cfg, err, sizeof(err)));
    ASSERT_EQ(ksock_bridge_reload(t.b, cfg, err, sizeof(err)), KSOCK_E_STATE);
    ASSERT(strstr(err, "not made from a configuration") != NULL);
    ASSERT_EQ(ksock_bridge_reload(NULL, cfg, err, sizeof(err)), KSOCK_E_INVAL);
    ASSERT_EQ(ksock_bridge_reload(t.b, NULL, err, sizeof(err)), KSOCK_E_INVAL);
    ksock_config_free(cfg);
    bt_expect_alive(&t, c); /* nothing changed for the open connection */
    bt_close(&t);
}

KT_TEST_LIST(false, TEST_ENTRY(ping_is_answered_with_pong_and_its_id),
             TEST_ENTRY(publish_is_acked_with_id_topic_partition_offset),
             TEST_ENTRY(decode_error_is_19_with_the_id_that_decoded_and_connection_stays),
             TEST_ENTRY(protocol_rule_broken_is_17), TEST_ENTRY(decoder_limit_is_22),
             TEST_ENTRY(server_only_ops_are_17_with_id),
             TEST_ENTRY(subscribe_without_readers_is_21_unsubscribe_is_answered),
             TEST_ENTRY(publish_without_right_is_16_and_not_produced),
             TEST_ENTRY(nul_in_topic_or_header_name_is_17),
             TEST_ENTRY(in_flight_bound_pauses_reading_and_every_publish_is_acked),
             TEST_ENTRY(in_flight_bound_with_a_1_0_transport_is_23),
             TEST_ENTRY(producer_queue_full_is_23), TEST_ENTRY(kafka_message_too_large_is_18),
             TEST_ENTRY(kafka_unknown_partition_is_29),
             TEST_ENTRY(kafka_retriable_error_exhausting_retries_is_27),
             TEST_ENTRY(kafka_fatal_error_is_28),
             TEST_ENTRY(delivery_after_close_is_dropped_and_counted),
             TEST_ENTRY(delivery_after_bridge_freed_is_safe),
             TEST_ENTRY(delivery_canceled_after_bridge_freed_is_safe),
             TEST_ENTRY(handshake_refusals), TEST_ENTRY(full_send_queue_waits_for_on_writable),
             TEST_ENTRY(stop_does_not_run_the_loop), TEST_ENTRY(stats_for_an_abi_1_0_program),
             TEST_ENTRY(reload_of_a_bridge_not_made_from_a_config_is_refused))
