/*
 * ksock: the KafkaSocks command-line client, on the client API (ws.h).
 *
 *   ksock connect URL [options]
 *   ksock tail|publish [URL] --topic T ...           (tools/ksock_topic.c)
 *   ksock token generate|validate|authenticate ...   (tools/ksock_token.c)
 *
 * This file also holds the connection options every connecting verb shares
 * (ksock_cli.h).
 *
 * Each line read from stdin is sent as one message: a line that parses as
 * JSON is sent as that value, any other line as a string (both through the
 * connection's serializer). "/close [CODE [REASON]]" closes, "/raw TEXT"
 * sends TEXT as a text frame untouched. At end of input the connection stays
 * open for --linger (default 1s; counted from the open if it comes later) so
 * that replies to the last messages are printed, then closes with 1000.
 * Each message received is printed on stdout as one JSON line (the value
 * deserialized by the connection's serializer, re-encoded as JSON; with
 * --raw, or when it does not deserialize, the frame as a JSON string).
 * Connection events (open, reconnecting, reconnected, close) go to stderr
 * as JSON lines {"event": ...}, with a monotonic time in ms.
 *
 * Exit status: 0 after a 1000 close, 1 after any other end, 2 on a usage
 * or connection-setup error.
 */
#include "ksock_cli.h"

#include <ksock/ksock.h>

#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct cli_s {
    ksock_runtime_t *rt;
    ksock_ws_manager_t *mgr;
    ksock_ws_t *ws;
    const ksock_serde_strategy_t *json;
    struct event *stdin_ev;
    ksock_buf_t line;
    bool raw;
    bool closing;
    bool opened;           /* the connection has been open at least once */
    bool eof;              /* stdin has ended */
    int64_t linger_ms;     /* how long to stay open after end of input */
    ksock_timer_t *linger; /* runs from end of input (or the open after it) to the close */
    int exit_code;
    uint64_t t0;
} cli_t;

static cli_t cli;

static void usage(FILE *f)
{
    fprintf(f, "usage: ksock connect URL [options]\n"
               "       ksock tail [URL] --topic T [options]   (ksock tail --help)\n"
               "       ksock publish [URL] --topic T [options] VALUE|-   (ksock publish --help)\n"
               "       ksock token generate|validate|authenticate ... (ksock token for help)\n"
               "connect options:\n"
               "  --raw                print frames as received (as JSON strings)\n"
               "  --linger DURATION    stay open this long after end of input, so that replies\n"
               "                       are printed (default 1s; 0 closes at once)\n");
    ksock_cli_connect_usage(f);
}

static double now_ms(void)
{
    return (double)(ksock_now_ns() - cli.t0) / 1e6;
}

static void event_line(const char *name, const char *extra)
{
    fprintf(stderr, "{\"event\": \"%s\", \"t\": %.1f%s%s}\n", name, now_ms(), extra ? ", " : "",
            extra ? extra : "");
    fflush(stderr);
}

/* ---- End of input ------------------------------------------------------ */

static void close_now(void)
{
    if (cli.ws && !cli.closing && ksock_ws_close(cli.ws, 1000, NULL) == 0) cli.closing = true;
}

static void on_linger_done(ksock_timer_t *t, void *data)
{
    (void)t;
    (void)data;
    close_now();
}

/* After end of input: close once the linger time has passed on an open connection.
 * Messages sent before the open are queued, so the time counts from the open. */
static void linger_then_close(void)
{
    if (!cli.eof || cli.closing) return;
    if (cli.linger_ms <= 0 || cli.linger == NULL) {
        close_now();
        return;
    }
    if (cli.opened && !ksock_timer_is_active(cli.linger))
        ksock_timer_start(cli.linger, (uint64_t)cli.linger_ms, 0);
}

/* ---- Connection events -------------------------------------------------- */

static void on_open(ksock_ws_t *ws)
{
    ksock_buf_t b = KSOCK_BUF_INIT;
    const char *sp = ksock_ws_subprotocol(ws);
    ksock_buf_appendf(&b, "\"subprotocol\": ");
    if (sp)
        ksock_cli_json_string(&b, sp, strlen(sp));
    else
        ksock_buf_appendf(&b, "null");
    event_line("open", b.data);
    ksock_buf_free(&b);
    cli.opened = true;
    linger_then_close();
}

static void on_frame(ksock_ws_t *ws, ksock_frame_type_t type, const void *data, size_t len)
{
    (void)ws;
    ksock_buf_t out = KSOCK_BUF_INIT;
    ksock_value_t *v = NULL;
    char err[256];
    if (!cli.raw && ksock_serde_deserialize(cli.rt, data, len, NULL, &v, err, sizeof(err)) == 0) {
        /* NULL strategy: the global one, which main() sets to the connection's serializer. */
        ksock_frame_type_t t;
        if (ksock_serde_serialize(cli.rt, v, cli.json, &out, &t, err, sizeof(err)) != 0)
            out.len = 0;
        ksock_value_unref(v);
    }
    if (out.len == 0) {
        if (type == KSOCK_FRAME_TEXT) {
            ksock_cli_json_string(&out, data, len);
        } else {
            static const char hex[] = "0123456789abcdef";
            ksock_buf_appendf(&out, "{\"binary\": \"");
            for (size_t i = 0; i < len; i++) {
                unsigned char c = ((const unsigned char *)data)[i];
                char h[2] = {hex[c >> 4], hex[c & 15]};
                ksock_buf_append(&out, h, 2);
            }
            ksock_buf_appendf(&out, "\"}");
        }
    }
    fwrite(out.data, 1, out.len, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    ksock_buf_free(&out);
}

static void on_reconnecting(ksock_ws_t *ws, uint32_t attempt, uint64_t delay_ms)
{
    (void)ws;
    char extra[96];
    snprintf(extra, sizeof(extra), "\"attempt\": %u, \"delay\": %llu", attempt,
             (unsigned long long)delay_ms);
    event_line("reconnecting", extra);
}

static void on_reconnected(ksock_ws_t *ws)
{
    char extra[64];
    snprintf(extra, sizeof(extra), "\"attempt\": %u", ksock_ws_attempt(ws));
    event_line("reconnected", extra);
}

static void on_close(ksock_ws_t *ws, int code, const char *reason, int err)
{
    (void)ws;
    ksock_buf_t b = KSOCK_BUF_INIT;
    ksock_buf_appendf(&b, "\"code\": %d, \"reason\": ", code);
    if (reason)
        ksock_cli_json_string(&b, reason, strlen(reason));
    else
        ksock_buf_appendf(&b, "null");
    ksock_buf_appendf(&b, ", \"error\": \"%s\"", err ? ksock_err_name(err) : "none");
    event_line("close", b.data);
    ksock_buf_free(&b);
    cli.ws = NULL;
    cli.exit_code = code == 1000 ? 0 : 1;
    ksock_runtime_stop(cli.rt);
}

/* ---- Input --------------------------------------------------------------- */

static void send_line(const char *line, size_t n)
{
    if (cli.ws == NULL || cli.closing) return;
    char *s = strndup(line, n); /* NUL-terminated for the command parsing below */
    if (s == NULL) return;
    int rc;
    if (n >= 6 && strncmp(s, "/close", 6) == 0 && (n == 6 || s[6] == ' ')) {
        int code = n > 7 ? atoi(s + 7) : 1000;
        const char *reason = n > 7 ? strchr(s + 7, ' ') : NULL;
        rc = ksock_ws_close(cli.ws, code ? code : 1000, reason ? reason + 1 : NULL);
        if (rc == 0) cli.closing = true;
    } else if (n >= 5 && strncmp(s, "/raw ", 5) == 0) {
        rc = ksock_ws_send_frame(cli.ws, KSOCK_FRAME_TEXT, s + 5, n - 5);
    } else {
        ksock_value_t *v = NULL;
        char err[256];
        if (ksock_serde_deserialize(cli.rt, s, n, cli.json, &v, err, sizeof(err)) != 0)
            v = ksock_value_string(s, n);
        rc = v ? ksock_ws_send(cli.ws, v, NULL) : KSOCK_E_NOMEM;
        ksock_value_unref(v);
    }
    if (rc != 0) {
        char extra[128];
        snprintf(extra, sizeof(extra), "\"error\": \"%s\"", ksock_err_name(rc));
        event_line("send_failed", extra);
    }
    free(s);
}

static void on_stdin(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    (void)arg;
    char buf[65536];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
        ksock_buf_append(&cli.line, buf, (size_t)n);
        size_t start = 0;
        for (size_t i = 0; i < cli.line.len; i++) {
            if (cli.line.data[i] != '\n') continue;
            size_t len = i - start;
            if (len && cli.line.data[start + len - 1] == '\r') len--;
            if (len) send_line(cli.line.data + start, len);
            start = i + 1;
        }
        memmove(cli.line.data, cli.line.data + start, cli.line.len - start);
        cli.line.len -= start;
        return;
    }
    /* End of input: let the replies arrive, close politely and wait for on_close. */
    event_del(cli.stdin_ev);
    if (cli.line.len) send_line(cli.line.data, cli.line.len);
    cli.line.len = 0;
    cli.eof = true;
    linger_then_close();
}

static void on_signal(ksock_signal_t *s, int signum, void *data)
{
    (void)s;
    (void)signum;
    (void)data;
    if (cli.ws && !cli.closing && ksock_ws_close(cli.ws, 1000, "interrupted") == 0)
        cli.closing = true;
    else
        ksock_runtime_stop(cli.rt);
}

/* ---- Connection options (shared by the verbs, ksock_cli.h) ---------------------- */

void ksock_cli_connect_usage(FILE *f)
{
    fprintf(
        f, "connection options (connect, tail, publish):\n"
           "  --subprotocol NAME   offer NAME (default ksock.v1.<serializer>; \"\" for none)\n"
           "  --serializer NAME    serializer plugin: json (default), msgpack, protobuf...\n"
           "  --http-header 'K: V' extra request header (repeatable; `connect` also takes\n"
           "                       --header)\n"
           "  --query K=V          query parameter (repeatable)\n"
           "  --token TOKEN        send Authorization: Bearer TOKEN\n"
           "  --cacert FILE        CA bundle for wss://\n"
           "  --insecure           do not verify the server certificate\n"
           "  --cert FILE          client certificate (PEM) for servers that ask for one\n"
           "  --key-file FILE      its private key (PEM, unencrypted; `connect` also takes --key)\n"
           "  --reconnect          reconnect when the connection is lost\n"
           "  --max-retries N      (-1: forever; default 10)\n"
           "  --retry-delay MS     first/fixed delay (default 1000)\n"
           "  --max-delay MS       (default 30000)\n"
           "  --no-exponential     fixed delay\n"
           "  --no-jitter          exact delays\n"
           "  --stable-after MS    up this long resets the attempt count (default 10000)\n"
           "  --queue N            keep up to N messages while disconnected\n"
           "  --plugin-dir DIR     add DIR to the plugin search path\n"
           "  --transport JSON     transport_ws options (e.g. '{\"connect_timeout\":\"3s\"}')\n");
}

void ksock_cli_json_string(ksock_buf_t *b, const char *s, size_t n)
{
    ksock_buf_append(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            ksock_buf_appendf(b, "\\%c", c);
        else if (c == '\n')
            ksock_buf_appendf(b, "\\n");
        else if (c < 0x20 || c == 0x7f)
            ksock_buf_appendf(b, "\\u%04x", c);
        else
            ksock_buf_append(b, &s[i], 1);
    }
    ksock_buf_append(b, "\"", 1);
}

void ksock_cli_conn_init(ksock_cli_conn_t *a)
{
    memset(a, 0, sizeof(*a));
    ksock_ws_opts_init(&a->o);
    ksock_reconnect_opts_init(&a->ro);
    a->ro.enabled = false;
    a->serializer = "json";
}

void ksock_cli_conn_free(ksock_cli_conn_t *a)
{
    for (size_t i = 0; i < a->nowned; i++)
        free(a->owned[i]);
    a->nowned = 0;
}

/* --http-header 'Name: value' or --query name=value. 0, or 2 (the exit status) after a message. */
static int add_kv(ksock_cli_conn_t *a, int c, const char *arg)
{
    const char sep = c == KSOCK_CLI_O_HDR ? ':' : '=';
    char *d = strdup(arg), *p = d ? strchr(d, sep) : NULL;
    if (p == NULL || a->nh >= KSOCK_CLI_MAX_HEADERS || a->nq >= KSOCK_CLI_MAX_HEADERS) {
        fprintf(stderr, "ksock: expected %s, got \"%s\"\n",
                c == KSOCK_CLI_O_HDR ? "'Name: value'" : "name=value", arg);
        free(d);
        return 2;
    }
    *p++ = '\0';
    while (*p == ' ')
        p++;
    a->owned[a->nowned++] = d;
    if (c == KSOCK_CLI_O_HDR)
        a->headers[a->nh++] = (ksock_kvpair_t){d, p};
    else
        a->query[a->nq++] = (ksock_kvpair_t){d, p};
    return 0;
}

/* The reconnection options; false when `c` is not one of them. */
static bool reconnect_option(ksock_reconnect_opts_t *ro, int c, const char *arg)
{
    switch (c) {
    case KSOCK_CLI_O_RECONNECT:
        ro->enabled = true;
        return true;
    case KSOCK_CLI_O_RETRIES:
        ro->max_retries = atoll(arg);
        return true;
    case KSOCK_CLI_O_DELAY:
        ro->retry_delay_ms = strtoull(arg, NULL, 10);
        return true;
    case KSOCK_CLI_O_MAXDELAY:
        ro->max_delay_ms = strtoull(arg, NULL, 10);
        return true;
    case KSOCK_CLI_O_NOEXP:
        ro->exponential_backoff = false;
        return true;
    case KSOCK_CLI_O_NOJITTER:
        ro->jitter = false;
        return true;
    case KSOCK_CLI_O_STABLE:
        ro->stable_after_ms = strtoull(arg, NULL, 10);
        return true;
    case KSOCK_CLI_O_QUEUE:
        ro->queue_max_messages = strtoull(arg, NULL, 10);
        return true;
    default:
        return false;
    }
}

int ksock_cli_conn_option(ksock_cli_conn_t *a, int c, const char *arg)
{
    if (reconnect_option(&a->ro, c, arg)) return 0;
    switch (c) {
    case KSOCK_CLI_O_SUB:
        a->o.subprotocol = arg;
        return 0;
    case KSOCK_CLI_O_SER:
        a->serializer = arg;
        return 0;
    case KSOCK_CLI_O_HDR:
    case KSOCK_CLI_O_QUERY:
        return add_kv(a, c, arg);
    case KSOCK_CLI_O_TOKEN:
        a->o.token = arg;
        return 0;
    case KSOCK_CLI_O_CA:
        a->o.ca_file = arg;
        return 0;
    case KSOCK_CLI_O_INSECURE:
        a->o.insecure = true;
        return 0;
    case KSOCK_CLI_O_CERT:
        a->o.cert_file = arg;
        return 0;
    case KSOCK_CLI_O_KEY:
        a->o.key_file = arg;
        return 0;
    case KSOCK_CLI_O_PDIR:
        a->plugin_dir = arg;
        return 0;
    case KSOCK_CLI_O_TRANSPORT:
        a->transport = arg;
        return 0;
    default:
        return 1;
    }
}

void ksock_cli_conn_finish(ksock_cli_conn_t *a)
{
    a->o.serializer = a->serializer;
    a->o.headers = a->headers;
    a->o.nheaders = a->nh;
    a->o.query = a->query;
    a->o.nquery = a->nq;
    a->o.reconnect = &a->ro;
    if (a->ro.max_delay_ms < a->ro.retry_delay_ms) a->ro.max_delay_ms = a->ro.retry_delay_ms;
}

int ksock_cli_connect(const ksock_cli_conn_t *a, ksock_runtime_t **rt, ksock_ws_manager_t **mgr,
                      ksock_ws_t **ws)
{
    signal(SIGPIPE, SIG_IGN);
    char err[1024] = "";
    *mgr = NULL;
    int rc = ksock_runtime_new(rt, err, sizeof(err));
    if (rc == 0 && a->plugin_dir) rc = ksock_plugin_path_add(*rt, a->plugin_dir);
    if (rc == 0) {
        /* Library chatter at warn and above only: stdout is for messages. */
        ksock_log_options_t lo = {sizeof(lo), KSOCK_LOG_WARN, "console", KSOCK_LOG_FORMAT_TEXT,
                                  NULL};
        ksock_log_configure(*rt, &lo, err, sizeof(err));
    }
    if (rc == 0) rc = ksock_serde_set_default_by_name(*rt, a->serializer, err, sizeof(err));
    if (rc == 0) rc = ksock_ws_manager_new(*rt, a->transport, mgr, err, sizeof(err));
    if (rc == 0) rc = ksock_ws_connect(*mgr, a->url, &a->o, ws, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "ksock: %s\n", err[0] ? err : ksock_strerror(rc));
        ksock_ws_manager_destroy(*mgr);
        if (*rt) ksock_runtime_destroy(*rt);
        *mgr = NULL;
        *rt = NULL;
        return 2;
    }
    return 0;
}

/* ---- `ksock connect` options ---------------------------------------------------------- */

enum { O_RAW = KSOCK_CLI_O_FIRST_FREE, O_LINGER };

static const struct option lopts[] = {
    KSOCK_CLI_CONNECT_LONGOPTS,
    {"header", required_argument, NULL, KSOCK_CLI_O_HDR},
    {"key", required_argument, NULL, KSOCK_CLI_O_KEY},
    {"raw", no_argument, NULL, O_RAW},
    {"linger", required_argument, NULL, O_LINGER},
    {NULL, 0, NULL, 0},
};

/* `ksock connect URL [options]` into *a. 0, or 2 (the exit status) after a message. */
static int parse_args(int argc, char **argv, ksock_cli_conn_t *a)
{
    ksock_cli_conn_init(a);
    a->url = argv[2];
    optind = 3;
    int c;
    while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
        int rc = ksock_cli_conn_option(a, c, optarg);
        if (rc == 0) continue;
        if (rc == 2) return 2;
        if (c == O_RAW) {
            cli.raw = true;
        } else if (c == O_LINGER) {
            if (ksock_parse_duration_ms(optarg, &cli.linger_ms) != 0 || cli.linger_ms < 0) {
                fprintf(stderr,
                        "ksock: --linger: expected a duration such as 1s or 500ms, got \"%s\"\n",
                        optarg);
                return 2;
            }
        } else {
            usage(stderr);
            return 2;
        }
    }
    ksock_cli_conn_finish(a);
    return 0;
}

/* ---- main ------------------------------------------------------------------ */

/* The runtime, its serializers and the connection. 0, or 2 (the exit status) after a message. */
static int start(const ksock_cli_conn_t *a)
{
    if (ksock_cli_connect(a, &cli.rt, &cli.mgr, &cli.ws) != 0) return 2;
    char err[1024] = "";
    int rc = ksock_serde_strategy_from_plugin(cli.rt, "json", NULL, &cli.json, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "ksock: %s\n", err);
        ksock_ws_manager_destroy(cli.mgr);
        ksock_runtime_destroy(cli.rt);
        return 2;
    }
    return 0;
}

/* Connection events, stdin and signals until the connection closes; then tear down. */
static int run(void)
{
    if (cli.linger_ms > 0) ksock_timer_init(cli.rt, &cli.linger, on_linger_done, NULL);
    ksock_ws_on_open(cli.ws, on_open);
    ksock_ws_on_frame(cli.ws, on_frame);
    ksock_ws_on_close(cli.ws, on_close);
    ksock_ws_on_reconnecting(cli.ws, on_reconnecting);
    ksock_ws_on_reconnected(cli.ws, on_reconnected);

    cli.stdin_ev = event_new(ksock_runtime_event_base(cli.rt), STDIN_FILENO, EV_READ | EV_PERSIST,
                             on_stdin, NULL);
    event_add(cli.stdin_ev, NULL);
    ksock_signal_t *s1 = NULL, *s2 = NULL;
    ksock_signal_start(cli.rt, &s1, SIGINT, on_signal, NULL);
    ksock_signal_start(cli.rt, &s2, SIGTERM, on_signal, NULL);

    ksock_runtime_run(cli.rt);

    event_free(cli.stdin_ev);
    if (cli.linger) ksock_timer_close(cli.linger);
    ksock_signal_close(s1);
    ksock_signal_close(s2);
    ksock_ws_manager_destroy(cli.mgr);
    ksock_buf_free(&cli.line);
    ksock_runtime_destroy(cli.rt);
    return cli.exit_code;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "token") == 0) return ksock_token_main(argc - 1, argv + 1);
    if (argc >= 2 && (strcmp(argv[1], "tail") == 0 || strcmp(argv[1], "publish") == 0))
        return ksock_topic_main(argc - 1, argv + 1);
    if (argc < 3 || strcmp(argv[1], "connect") != 0) {
        usage(argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) ? stdout
                                                                                          : stderr);
        return argc >= 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    cli.t0 = ksock_now_ns();
    cli.exit_code = 1;
    cli.linger_ms = 1000;
    ksock_cli_conn_t a;
    int rc = parse_args(argc, argv, &a);
    if (rc == 0) rc = start(&a);
    if (rc == 0) rc = run();
    ksock_cli_conn_free(&a);
    return rc;
}
