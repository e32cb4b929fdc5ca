/*
 * `ksock tail` and `ksock publish`: records of a topic through ksockd, on
 * the client API's envelopes and subscriptions (ws.h; docs/websocket.md).
 *
 *   ksock tail [URL] --topic T [--from earliest|latest|P:O,...|@MS] [--count N]
 *       subscribes (ksock_ws_subscribe, so --reconnect resumes where it
 *       was) and prints each record as one JSON line; exit 0 after --count
 *       records or on SIGINT/SIGTERM, 2 when the subscribe is refused, 1
 *       when the connection is over otherwise.
 *   Both take --token-command CMD: CMD's stdout (run with /bin/sh) is the
 *   token, asked for at start when --token is not given and again before
 *   each token expires (ksock_ws_on_token_refresh).
 *   ksock publish [URL] --topic T [--key K] [--header k=v]... [--partition N] VALUE|-
 *       publishes VALUE, or each line of stdin (pipelined), and prints each
 *       ack as one JSON line; exit 0 when every record was acked, 2 when any
 *       was refused (each refusal printed), 1 when the connection ended first.
 *
 * URL defaults to ws://127.0.0.1:8080/ws, where ./tools/run's ksockd listens.
 * Errors and connection events go to stderr.
 */
#include "ksock_cli.h"

#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_URL  "ws://127.0.0.1:8080/ws"
#define MAX_RHEADERS 64
#define PUB_WINDOW   1000 /* publishes in flight before stdin waits for acks */

typedef struct topic_cli_s {
    bool publish; /* the verb */
    ksock_runtime_t *rt;
    ksock_ws_manager_t *mgr;
    ksock_ws_t *ws;
    const char *topic;
    const char *token_cmd; /* --token-command */
    char *first_token;     /* its output at start, when --token is not given */
    bool closing;
    int exit_code;
    /* tail */
    ksock_ws_subscribe_opts_t so;
    ksock_partition_offset_t from[256];
    int64_t count; /* 0: no limit */
    int64_t seen;
    /* publish */
    const char *value; /* NULL: lines of stdin */
    const char *key;
    int32_t partition;
    ksock_header_t rheaders[MAX_RHEADERS];
    size_t nrheaders;
    struct event *stdin_ev;
    bool stdin_file; /* a regular file: read it directly, epoll cannot watch it */
    bool eof, blocked, sent_single;
    ksock_buf_t in;
    uint64_t next_id, inflight, failed;
} topic_cli_t;

static topic_cli_t tc;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ksock tail [URL] --topic T [--from earliest|latest|P:O,P:O...|@TIMESTAMP_MS]\n"
            "                  [--count N] [--token-command CMD] [connection options]\n"
            "       ksock publish [URL] --topic T [--key K] [--header k=v]... [--partition N]\n"
            "                  [--token-command CMD] [connection options] VALUE|-\n"
            "URL defaults to " DEFAULT_URL " (./tools/run). `tail` prints each record as\n"
            "a JSON line {topic, partition, offset, timestamp, key, value, headers} (key_b64/\n"
            "value_b64 for bytes that are not UTF-8); with --reconnect it resumes after a lost\n"
            "connection without a gap or a duplicate. `publish -` sends each line of stdin\n"
            "as one record; each ack is printed as {topic, partition, offset}.\n"
            "--token-command CMD: CMD's standard output (run by /bin/sh) is the bearer token,\n"
            "at start unless --token is given, and again before each token expires.\n"
            "Exit: 0 done, 1 the connection ended, 2 usage, setup, or a refusal.\n");
    ksock_cli_connect_usage(f);
}

/* ---- Output ------------------------------------------------------------------------- */

static void out_line(ksock_buf_t *b)
{
    ksock_buf_append(b, "\n", 1);
    fwrite(b->data, 1, b->len, stdout);
    fflush(stdout);
    ksock_buf_free(b);
}

/* "name": "text", or "name_b64": "..." for bytes that are not UTF-8, or "name": null. */
static void json_bytes(ksock_buf_t *b, const char *name, const ksock_bytes_t *v)
{
    if (!v->present) {
        ksock_buf_appendf(b, "\"%s\": null", name);
    } else if (ksock_utf8_check(v->data, v->len, NULL)) {
        ksock_buf_appendf(b, "\"%s\": ", name);
        ksock_cli_json_string(b, v->data, v->len);
    } else {
        ksock_buf_appendf(b, "\"%s_b64\": \"", name);
        ksock_base64_encode(v->data, v->len, false, b);
        ksock_buf_append(b, "\"", 1);
    }
}

static void print_record(const ksock_envelope_t *env)
{
    ksock_buf_t b = KSOCK_BUF_INIT;
    ksock_buf_appendf(&b, "{\"topic\": ");
    ksock_cli_json_string(&b, env->topic, env->topic_len);
    ksock_buf_appendf(&b,
                      ", \"partition\": %d, \"offset\": %lld, \"timestamp\": ", (int)env->partition,
                      (long long)env->offset);
    if (env->timestamp >= 0)
        ksock_buf_appendf(&b, "%lld, ", (long long)env->timestamp);
    else
        ksock_buf_appendf(&b, "null, ");
    json_bytes(&b, "key", &env->key);
    ksock_buf_appendf(&b, ", ");
    json_bytes(&b, "value", &env->value);
    ksock_buf_appendf(&b, ", \"headers\": [");
    for (size_t i = 0; i < env->nheaders; i++) {
        ksock_buf_appendf(&b, "%s{\"key\": ", i ? ", " : "");
        ksock_cli_json_string(&b, env->headers[i].key, env->headers[i].key_len);
        ksock_buf_appendf(&b, ", ");
        json_bytes(&b, "value", &env->headers[i].value);
        ksock_buf_appendf(&b, "}");
    }
    ksock_buf_appendf(&b, "]}");
    out_line(&b);
}

/* An `error` envelope on stderr: "ksock: WHAT: KSOCK_E_X (-N): message". */
static void print_error(const char *what, const ksock_envelope_t *env)
{
    fprintf(stderr, "ksock: %s: %s (%d): %.*s\n", what, ksock_err_name(env->error_code),
            (int)env->error_code, env->error_message ? (int)env->error_message_len : 0,
            env->error_message ? env->error_message : "");
    fflush(stderr);
}

static void close_with(int exit_code)
{
    tc.exit_code = exit_code;
    if (tc.ws && !tc.closing && ksock_ws_close(tc.ws, 1000, NULL) == 0) tc.closing = true;
    if (!tc.closing) ksock_runtime_stop(tc.rt);
}

/* ---- tail ----------------------------------------------------------------------------- */

static bool is_our_topic(const ksock_envelope_t *env)
{
    return env->topic && env->topic_len == strlen(tc.topic) &&
           memcmp(env->topic, tc.topic, env->topic_len) == 0;
}

static void tail_subscribed(const ksock_envelope_t *env)
{
    ksock_buf_t b = KSOCK_BUF_INIT;
    ksock_buf_appendf(&b, "{\"event\": \"%s\", \"topic\": ", env->id ? "subscribed" : "added");
    ksock_cli_json_string(&b, env->topic, env->topic_len);
    ksock_buf_appendf(&b, ", \"offsets\": [");
    for (size_t i = 0; i < env->noffsets; i++)
        ksock_buf_appendf(&b, "%s{\"partition\": %d, \"offset\": %lld}", i ? ", " : "",
                          (int)env->offsets[i].partition, (long long)env->offsets[i].offset);
    ksock_buf_appendf(&b, "]}\n");
    fwrite(b.data, 1, b.len, stderr);
    fflush(stderr);
    ksock_buf_free(&b);
}

static void tail_envelope(ksock_ws_t *ws, const ksock_envelope_t *env)
{
    if (tc.closing || !is_our_topic(env)) return;
    size_t n;
    switch (env->op) {
    case KSOCK_OP_RECORD:
        print_record(env);
        if (tc.count > 0 && ++tc.seen >= tc.count) close_with(0);
        break;
    case KSOCK_OP_SUBSCRIBED:
        tail_subscribed(env);
        break;
    case KSOCK_OP_ERROR:
        if (env->error_code == KSOCK_E_SKIPPED) {
            print_error("records skipped", env);
        } else if (ksock_ws_position(ws, tc.topic, NULL, 0, &n) == KSOCK_E_NOENT) {
            print_error("subscribe refused", env); /* the library ended the subscription */
            close_with(2);
        } else {
            print_error("resume refused, trying again", env);
        }
        break;
    default:
        break;
    }
}

/* --from earliest|latest|P:O,P:O...|@MS into tc.so. 0, or 2 after a message. */
static int parse_from(const char *arg)
{
    if (strcmp(arg, "earliest") == 0) {
        tc.so.start = KSOCK_START_EARLIEST;
        return 0;
    }
    if (strcmp(arg, "latest") == 0) {
        tc.so.start = KSOCK_START_LATEST;
        return 0;
    }
    char *end;
    if (arg[0] == '@') {
        long long ms = strtoll(arg + 1, &end, 10);
        if (end == arg + 1 || *end || ms < 0) goto bad;
        tc.so.start = KSOCK_START_TIMESTAMP;
        tc.so.start_timestamp = ms;
        return 0;
    }
    size_t n = 0;
    for (const char *p = arg; *p; n++) {
        long part = strtol(p, &end, 10);
        if (end == p || *end != ':' || part < 0 || part > INT32_MAX) goto bad;
        p = end + 1;
        long long off = strtoll(p, &end, 10);
        if (end == p || (*end && *end != ',') || off < 0 || n == 256) goto bad;
        tc.from[n] = (ksock_partition_offset_t){(int32_t)part, off};
        p = *end ? end + 1 : end;
    }
    if (n == 0) goto bad;
    tc.so.start = KSOCK_START_OFFSETS;
    tc.so.offsets = tc.from;
    tc.so.noffsets = n;
    return 0;
bad:
    fprintf(stderr,
            "ksock: --from: expected earliest, latest, P:O[,P:O...] or @TIMESTAMP_MS, "
            "got \"%s\"\n",
            arg);
    return 2;
}

/* ---- publish ---------------------------------------------------------------------------- */

static int send_publish(const char *value, size_t len)
{
    char id[32], err[256] = "";
    snprintf(id, sizeof(id), "%llu", (unsigned long long)(tc.next_id + 1));
    ksock_envelope_t env;
    ksock_envelope_init(&env);
    env.op = KSOCK_OP_PUBLISH;
    env.id = id;
    env.id_len = strlen(id);
    env.topic = tc.topic;
    env.topic_len = strlen(tc.topic);
    env.partition = tc.partition;
    if (tc.key) env.key = (ksock_bytes_t){tc.key, strlen(tc.key), true};
    env.value = (ksock_bytes_t){value, len, true};
    env.headers = tc.rheaders;
    env.nheaders = tc.nrheaders;
    int rc = ksock_ws_send_envelope(tc.ws, &env, err, sizeof(err));
    if (rc == 0) {
        tc.next_id++;
        tc.inflight++;
    } else if (rc != KSOCK_E_QUEUE_FULL) {
        fprintf(stderr, "ksock: cannot publish: %s: %s\n", ksock_err_name(rc), err);
    }
    return rc;
}

/* The next line of tc.in: its length, and in *used what to consume. false when none. */
static bool next_line(size_t *len, size_t *used)
{
    char *nl = tc.in.len ? memchr(tc.in.data, '\n', tc.in.len) : NULL;
    if (nl == NULL) {
        if (!tc.eof || tc.in.len == 0) return false;
        *len = *used = tc.in.len; /* the last line, without its newline */
        return true;
    }
    *used = (size_t)(nl - tc.in.data) + 1;
    *len = *used - 1;
    if (*len && tc.in.data[*len - 1] == '\r') (*len)--;
    return true;
}

static void read_stdin(void)
{
    char buf[65536];
    ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
    if (n > 0)
        ksock_buf_append(&tc.in, buf, (size_t)n);
    else
        tc.eof = true;
}

/* Send what there is while the window and the send queue have room; close when all is done. */
static void pump(void)
{
    if (tc.value && !tc.sent_single) {
        int rc = send_publish(tc.value, strlen(tc.value));
        if (rc == 0) tc.sent_single = true;
        if (rc != 0 && rc != KSOCK_E_QUEUE_FULL) close_with(2);
        tc.blocked = rc == KSOCK_E_QUEUE_FULL;
    }
    while (!tc.value && !tc.blocked && !tc.closing && tc.inflight < PUB_WINDOW) {
        size_t len, used;
        if (!next_line(&len, &used)) {
            if (tc.eof || !tc.stdin_file) break;
            read_stdin();
            continue;
        }
        int rc = len ? send_publish(tc.in.data, len) : 0; /* empty lines are skipped */
        if (rc == KSOCK_E_QUEUE_FULL) {
            tc.blocked = true; /* on_writable resumes */
            break;
        }
        if (rc != 0) {
            close_with(2);
            return;
        }
        memmove(tc.in.data, tc.in.data + used, tc.in.len - used);
        tc.in.len -= used;
    }
    bool want_input = !tc.value && !tc.eof && !tc.blocked && tc.inflight < PUB_WINDOW;
    if (tc.stdin_ev && want_input) event_add(tc.stdin_ev, NULL);
    if (tc.stdin_ev && !want_input) event_del(tc.stdin_ev);
    bool all_sent = tc.value ? tc.sent_single : tc.eof && tc.in.len == 0;
    if (all_sent && tc.inflight == 0) close_with(tc.failed ? 2 : 0);
}

static void on_stdin(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    read_stdin();
    pump();
}

static void publish_answer(const ksock_envelope_t *env)
{
    if (tc.inflight > 0) tc.inflight--;
    ksock_buf_t b = KSOCK_BUF_INIT;
    ksock_buf_appendf(&b, "{\"topic\": ");
    if (env->topic)
        ksock_cli_json_string(&b, env->topic, env->topic_len);
    else
        ksock_cli_json_string(&b, tc.topic, strlen(tc.topic));
    if (env->op == KSOCK_OP_ACK) {
        ksock_buf_appendf(&b, ", \"partition\": %d, \"offset\": %lld}", (int)env->partition,
                          (long long)env->offset);
    } else {
        tc.failed++;
        print_error("publish refused", env);
        ksock_buf_appendf(&b, ", \"error_code\": %d, \"error\": \"%s\", \"error_message\": ",
                          (int)env->error_code, ksock_err_name(env->error_code));
        ksock_cli_json_string(&b, env->error_message ? env->error_message : "",
                              env->error_message ? env->error_message_len : 0);
        ksock_buf_appendf(&b, "}");
    }
    out_line(&b);
}

static void publish_envelope(ksock_ws_t *ws, const ksock_envelope_t *env)
{
    (void)ws;
    if (env->op == KSOCK_OP_ACK || (env->op == KSOCK_OP_ERROR && env->id)) {
        publish_answer(env);
        pump();
    } else if (env->op == KSOCK_OP_ERROR) {
        print_error("error", env);
    }
}

static void on_writable(ksock_ws_t *ws)
{
    (void)ws;
    tc.blocked = false;
    pump();
}

/* --header k=v: a record header. 0, or 2 after a message. */
static int add_record_header(const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (eq == NULL || eq == arg || tc.nrheaders == MAX_RHEADERS) {
        fprintf(stderr, "ksock: --header: expected key=value, got \"%s\"\n", arg);
        return 2;
    }
    tc.rheaders[tc.nrheaders++] =
        (ksock_header_t){arg, (size_t)(eq - arg), {eq + 1, strlen(eq + 1), true}};
    return 0;
}

/* ---- Connection events --------------------------------------------------------------------- */

static void on_reconnecting(ksock_ws_t *ws, uint32_t attempt, uint64_t delay_ms)
{
    (void)ws;
    fprintf(stderr, "{\"event\": \"reconnecting\", \"attempt\": %u, \"delay\": %llu}\n", attempt,
            (unsigned long long)delay_ms);
    if (tc.publish && tc.inflight) {
        /* Frames on a lost connection are lost or produced: their outcome is unknown. */
        fprintf(stderr, "ksock: connection lost with %llu publishes unanswered\n",
                (unsigned long long)tc.inflight);
        tc.failed += tc.inflight;
        tc.inflight = 0;
    }
    fflush(stderr);
}

static void on_reconnected(ksock_ws_t *ws)
{
    fprintf(stderr, "{\"event\": \"reconnected\", \"attempt\": %u}\n", ksock_ws_attempt(ws));
    fflush(stderr);
    if (tc.publish) pump();
}

static void on_close(ksock_ws_t *ws, int code, const char *reason, int err)
{
    (void)ws;
    tc.ws = NULL;
    if (!tc.closing) {
        fprintf(stderr, "ksock: connection closed (%d%s%s)%s%s\n", code, reason ? ": " : "",
                reason ? reason : "", err ? ": " : "", err ? ksock_err_name(err) : "");
        if (tc.publish && tc.inflight)
            fprintf(stderr, "ksock: %llu publishes unanswered\n", (unsigned long long)tc.inflight);
        tc.exit_code = 1;
    }
    ksock_runtime_stop(tc.rt);
}

static void on_signal(ksock_signal_t *s, int signum, void *data)
{
    (void)s;
    (void)signum;
    (void)data;
    close_with(tc.publish ? 1 : 0);
}

/* ---- Options and main --------------------------------------------------------------------- */

enum {
    O_TOPIC = KSOCK_CLI_O_FIRST_FREE,
    O_FROM,
    O_COUNT,
    O_RKEY,
    O_RHDR,
    O_PART,
    O_TOKCMD,
    O_HELP
};

static const struct option lopts[] = {
    KSOCK_CLI_CONNECT_LONGOPTS,
    {"topic", required_argument, NULL, O_TOPIC},
    {"from", required_argument, NULL, O_FROM},
    {"count", required_argument, NULL, O_COUNT},
    {"key", required_argument, NULL, O_RKEY},
    {"header", required_argument, NULL, O_RHDR},
    {"partition", required_argument, NULL, O_PART},
    {"token-command", required_argument, NULL, O_TOKCMD},
    {"help", no_argument, NULL, O_HELP},
    {NULL, 0, NULL, 0},
};

/* One option of the verb's own. 0, or 2 (the exit status) after a message. */
static int topic_option(int c, const char *arg)
{
    char *end;
    bool pub = tc.publish;
    switch (c) {
    case O_TOPIC:
        tc.topic = arg;
        return 0;
    case O_FROM:
        if (!pub) return parse_from(arg);
        break;
    case O_COUNT:
        if (pub) break;
        tc.count = strtoll(arg, &end, 10);
        if (end != arg && *end == '\0' && tc.count > 0) return 0;
        fprintf(stderr, "ksock: --count: expected a positive number, got \"%s\"\n", arg);
        return 2;
    case O_RKEY:
        tc.key = arg;
        if (pub) return 0;
        break;
    case O_RHDR:
        if (pub) return add_record_header(arg);
        break;
    case O_PART: {
        long p = strtol(arg, &end, 10);
        if (!pub || end == arg || *end || p < 0 || p > INT32_MAX) break;
        tc.partition = (int32_t)p;
        return 0;
    }
    case O_TOKCMD:
        tc.token_cmd = arg;
        return 0;
    case O_HELP:
        usage(stdout);
        exit(0);
    default:
        break;
    }
    usage(stderr);
    return 2;
}

/* --token-command: CMD's stdout, trimmed, malloc'ed; NULL (said on stderr) when it fails. */
static char *token_from_command(ksock_ws_t *ws, void *data)
{
    (void)ws;
    const char *cmd = data;
    FILE *p = popen(cmd, "r");
    if (p == NULL) {
        fprintf(stderr, "ksock: --token-command: cannot run \"%s\"\n", cmd);
        return NULL;
    }
    ksock_buf_t b = KSOCK_BUF_INIT;
    char chunk[4096];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(chunk, 1, sizeof(chunk), p)) > 0)
        rc = b.len + n > 65536 ? KSOCK_E_TOOBIG : ksock_buf_append(&b, chunk, n);
    int st = pclose(p);
    while (b.len > 0 && strchr(" \t\r\n", ((char *)b.data)[b.len - 1]))
        b.len--;
    if (rc == 0) rc = ksock_buf_append(&b, "", 1);
    if (rc != 0 || st != 0 || b.len <= 1) {
        fprintf(stderr, "ksock: --token-command: \"%s\" %s\n", cmd,
                st != 0 ? "failed"
                : rc    ? ksock_strerror(rc)
                        : "printed no token");
        ksock_buf_free(&b);
        return NULL;
    }
    return (char *)b.data;
}

static bool is_url(const char *s)
{
    return strncmp(s, "ws://", 5) == 0 || strncmp(s, "wss://", 6) == 0;
}

static int parse_args(int argc, char **argv, ksock_cli_conn_t *a)
{
    ksock_cli_conn_init(a);
    ksock_ws_subscribe_opts_init(&tc.so);
    tc.partition = -1;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
        int rc = ksock_cli_conn_option(a, c, optarg);
        if (rc == 1) rc = topic_option(c, optarg);
        if (rc != 0) return rc;
    }
    a->url = DEFAULT_URL;
    if (optind < argc && is_url(argv[optind])) a->url = argv[optind++];
    if (tc.publish && optind < argc)
        tc.value = strcmp(argv[optind], "-") == 0 ? NULL : argv[optind];
    int want = tc.publish ? 1 : 0;
    if (tc.topic == NULL || argc - optind != want) {
        fprintf(stderr, "ksock %s: %s\n", argv[0],
                tc.topic == NULL       ? "--topic is required"
                : argc - optind < want ? "VALUE (or - for stdin) is required"
                                       : "unexpected arguments");
        usage(stderr);
        return 2;
    }
    ksock_cli_conn_finish(a);
    if (tc.token_cmd && a->o.token == NULL) {
        if ((tc.first_token = token_from_command(NULL, (void *)tc.token_cmd)) == NULL) return 2;
        a->o.token = tc.first_token;
    }
    return 0;
}

static int start(const ksock_cli_conn_t *a)
{
    if (ksock_cli_connect(a, &tc.rt, &tc.mgr, &tc.ws) != 0) return 2;
    ksock_ws_on_envelope(tc.ws, tc.publish ? publish_envelope : tail_envelope);
    ksock_ws_on_close(tc.ws, on_close);
    ksock_ws_on_reconnecting(tc.ws, on_reconnecting);
    ksock_ws_on_reconnected(tc.ws, on_reconnected);
    ksock_ws_on_writable(tc.ws, on_writable);
    if (tc.token_cmd) ksock_ws_on_token_refresh(tc.ws, token_from_command, (void *)tc.token_cmd);
    if (!tc.publish) {
        char err[512] = "";
        int rc = ksock_ws_subscribe(tc.ws, tc.topic, &tc.so, err, sizeof(err));
        if (rc != 0) {
            fprintf(stderr, "ksock: subscribe: %s: %s\n", ksock_err_name(rc), err);
            return 2;
        }
        return 0;
    }
    struct stat st;
    tc.stdin_file = fstat(STDIN_FILENO, &st) == 0 && S_ISREG(st.st_mode);
    if (!tc.value && !tc.stdin_file)
        tc.stdin_ev = event_new(ksock_runtime_event_base(tc.rt), STDIN_FILENO, EV_READ | EV_PERSIST,
                                on_stdin, NULL);
    pump();
    return 0;
}

int ksock_topic_main(int argc, char **argv)
{
    tc.publish = strcmp(argv[0], "publish") == 0;
    ksock_cli_conn_t a;
    int rc = parse_args(argc, argv, &a);
    if (rc == 0) rc = start(&a);
    if (rc == 0 || tc.rt) {
        ksock_signal_t *s1 = NULL, *s2 = NULL;
        if (rc == 0) {
            ksock_signal_start(tc.rt, &s1, SIGINT, on_signal, NULL);
            ksock_signal_start(tc.rt, &s2, SIGTERM, on_signal, NULL);
            ksock_runtime_run(tc.rt);
            rc = tc.exit_code;
        }
        ksock_signal_close(s1);
        ksock_signal_close(s2);
        if (tc.stdin_ev) event_free(tc.stdin_ev);
        ksock_ws_manager_destroy(tc.mgr);
        ksock_runtime_destroy(tc.rt);
    }
    ksock_buf_free(&tc.in);
    ksock_cli_conn_free(&a);
    free(tc.first_token);
    return rc;
}
