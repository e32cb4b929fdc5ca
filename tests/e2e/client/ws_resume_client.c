/*
 * A client of the subscription API (ws.h) for test_client_resume.py.
 *
 *   ws_resume_client URL TOPIC COUNT [SERIALIZER]
 *       subscribes to TOPIC from the earliest record with reconnection on
 *       (100 ms fixed delay, forever) and prints each record delivered to
 *       on_envelope as "PARTITION OFFSET VALUE" on stdout; closes with 1000
 *       and exits 0 after COUNT records. Events (subscribed, reconnected,
 *       errors) go to stderr. Exit 3 when ksock_ws_position() disagrees
 *       with the record just delivered, 2 on a refusal, 1 on a final close.
 *   ws_resume_client --bad-input
 *       the calls' refusals of bad arguments, as TAP.
 */
#include <ksock/ksock.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ksock_runtime_t *rt;
static ksock_ws_t *conn;
static const char *topic;
static long count, seen;
static int exit_code = 1;
static bool closing;

static void finish(int code)
{
    exit_code = code;
    if (!closing && ksock_ws_close(conn, 1000, NULL) == 0) closing = true;
}

/* The position must already count the record on_envelope is given. */
static bool position_agrees(const ksock_envelope_t *env)
{
    ksock_partition_offset_t pos[64];
    size_t n = 0;
    if (ksock_ws_position(conn, topic, pos, 64, &n) != 0) return false;
    for (size_t i = 0; i < n && i < 64; i++)
        if (pos[i].partition == env->partition) return pos[i].offset == env->offset + 1;
    return false;
}

static void on_envelope(ksock_ws_t *ws, const ksock_envelope_t *env)
{
    (void)ws;
    if (closing) return;
    switch (env->op) {
    case KSOCK_OP_RECORD:
        printf("%d %lld %.*s\n", (int)env->partition, (long long)env->offset, (int)env->value.len,
               env->value.present ? (const char *)env->value.data : "");
        fflush(stdout);
        if (!position_agrees(env)) {
            fprintf(stderr, "position disagrees with record %d/%lld\n", (int)env->partition,
                    (long long)env->offset);
            finish(3);
        } else if (++seen >= count) {
            finish(0);
        }
        break;
    case KSOCK_OP_SUBSCRIBED:
        fprintf(stderr, "subscribed id=%.*s", env->id ? (int)env->id_len : 4,
                env->id ? env->id : "none");
        for (size_t i = 0; i < env->noffsets; i++)
            fprintf(stderr, " %d:%lld", (int)env->offsets[i].partition,
                    (long long)env->offsets[i].offset);
        fprintf(stderr, "\n");
        break;
    case KSOCK_OP_ERROR:
        fprintf(stderr, "error %d %.*s\n", (int)env->error_code, (int)env->error_message_len,
                env->error_message ? env->error_message : "");
        if (env->error_code != KSOCK_E_SKIPPED &&
            ksock_ws_position(conn, topic, NULL, 0, NULL) == KSOCK_E_NOENT)
            finish(2);
        break;
    default:
        break;
    }
}

static void on_reconnected(ksock_ws_t *ws)
{
    (void)ws;
    fprintf(stderr, "reconnected\n");
}

static void on_close(ksock_ws_t *ws, int code, const char *reason, int err)
{
    (void)ws;
    fprintf(stderr, "closed %d %s %s\n", code, reason ? reason : "", ksock_err_name(err));
    if (!closing) exit_code = 1;
    ksock_runtime_stop(rt);
}

static int run(const char *url, const char *serializer)
{
    char err[512] = "";
    ksock_ws_manager_t *mgr = NULL;
    ksock_reconnect_opts_t ro;
    ksock_reconnect_opts_init(&ro);
    ro.max_retries = -1;
    ro.retry_delay_ms = 100;
    ro.exponential_backoff = false;
    ro.jitter = false;
    ksock_ws_opts_t o;
    ksock_ws_opts_init(&o);
    o.serializer = serializer;
    o.reconnect = &ro;
    ksock_ws_subscribe_opts_t so;
    ksock_ws_subscribe_opts_init(&so);
    so.start = KSOCK_START_EARLIEST;
    so.id = "resume-test";
    int rc = ksock_runtime_new(&rt, err, sizeof(err));
    if (rc == 0) rc = ksock_ws_manager_new(rt, NULL, &mgr, err, sizeof(err));
    if (rc == 0) rc = ksock_ws_connect(mgr, url, &o, &conn, err, sizeof(err));
    if (rc == 0) rc = ksock_ws_subscribe(conn, topic, &so, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "setup: %s: %s\n", ksock_err_name(rc), err);
        return 2;
    }
    ksock_ws_on_envelope(conn, on_envelope);
    ksock_ws_on_reconnected(conn, on_reconnected);
    ksock_ws_on_close(conn, on_close);
    ksock_runtime_run(rt);
    ksock_ws_manager_destroy(mgr);
    ksock_runtime_destroy(rt);
    return exit_code;
}

/* ---- --bad-input ------------------------------------------------------------------ */

static int ntest, nfail;

static void check(bool ok, const char *what)
{
    printf("%sok %d - %s\n", ok ? "" : "not ", ++ntest, what);
    nfail += !ok;
}

/* No server is needed: every call here is refused before anything is sent. */
static int bad_input(void)
{
    char err[512] = "";
    ksock_ws_manager_t *mgr = NULL;
    int rc = ksock_runtime_new(&rt, err, sizeof(err));
    if (rc == 0) rc = ksock_ws_manager_new(rt, NULL, &mgr, err, sizeof(err));
    if (rc == 0) rc = ksock_ws_connect(mgr, "ws://127.0.0.1:9/", NULL, &conn, err, sizeof(err));
    if (rc != 0) {
        printf("Bail out! setup: %s\n", err);
        return 1;
    }
    ksock_ws_subscribe_opts_t so;
    ksock_ws_subscribe_opts_init(&so);
    check(ksock_ws_subscribe(conn, "", &so, err, sizeof(err)) == KSOCK_E_INVAL,
          "empty topic refused");
    check(ksock_ws_subscribe(conn, NULL, &so, err, sizeof(err)) == KSOCK_E_INVAL,
          "NULL topic refused");
    ksock_partition_offset_t po = {0, 5};
    so.offsets = &po;
    so.noffsets = 1; /* offsets without start "offsets": rule 5 */
    err[0] = '\0';
    check(ksock_ws_subscribe(conn, "t", &so, err, sizeof(err)) == KSOCK_E_INVAL && err[0],
          "offsets with start latest refused, with a reason");
    so.start = KSOCK_START_OFFSETS;
    so.noffsets = 0;
    so.offsets = NULL;
    check(ksock_ws_subscribe(conn, "t", &so, err, sizeof(err)) == KSOCK_E_INVAL,
          "start offsets without offsets refused");
    ksock_ws_subscribe_opts_init(&so);
    so.start = KSOCK_START_TIMESTAMP; /* start_timestamp left at -1 */
    check(ksock_ws_subscribe(conn, "t", &so, err, sizeof(err)) == KSOCK_E_INVAL,
          "start timestamp without start_timestamp refused");
    ksock_ws_subscribe_opts_init(&so);
    so.size = sizeof(size_t);
    check(ksock_ws_subscribe(conn, "t", &so, err, sizeof(err)) == KSOCK_E_INVAL,
          "opts with a size too small refused");
    size_t n = 99;
    check(ksock_ws_position(conn, "t", NULL, 0, &n) == KSOCK_E_NOENT && n == 99,
          "position of a topic never subscribed: NOENT");
    check(ksock_ws_unsubscribe(conn, "t") == KSOCK_E_NOENT, "unsubscribe unknown: NOENT");
    ksock_ws_subscribe_opts_init(&so);
    check(ksock_ws_subscribe(conn, "t", &so, err, sizeof(err)) == 0, "a good subscribe");
    check(ksock_ws_position(conn, "t", NULL, 0, &n) == 0 && n == 0,
          "position before any subscribed: empty");
    check(ksock_ws_unsubscribe(conn, "t") == 0 && ksock_ws_unsubscribe(conn, "t") == KSOCK_E_NOENT,
          "unsubscribe, then again: NOENT");
    ksock_envelope_t env;
    ksock_envelope_init(&env);
    env.op = KSOCK_OP_PUBLISH; /* no topic: rule 2 */
    err[0] = '\0';
    check(ksock_ws_send_envelope(conn, &env, err, sizeof(err)) == KSOCK_E_ENCODE && err[0],
          "send_envelope of a publish without topic: ENCODE with a reason");
    ksock_ws_close(conn, 1000, NULL);
    check(ksock_ws_subscribe(conn, "t", NULL, err, sizeof(err)) == KSOCK_E_STATE,
          "subscribe while closing: STATE");
    ksock_ws_manager_destroy(mgr);
    ksock_runtime_destroy(rt);
    printf("1..%d\n", ntest);
    return nfail ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--bad-input") == 0) return bad_input();
    if (argc < 4) {
        fprintf(stderr, "usage: ws_resume_client URL TOPIC COUNT [SERIALIZER] | --bad-input\n");
        return 2;
    }
    topic = argv[2];
    count = atol(argv[3]);
    return run(argv[1], argc > 4 ? argv[4] : "json");
}
