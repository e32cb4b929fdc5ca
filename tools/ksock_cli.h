/*
 * The verbs of the ksock command-line client, one file each, and what they
 * share: the connection options (tools/ksock.c). Not installed.
 */
#ifndef KSOCK_CLI_H
#define KSOCK_CLI_H

#include <ksock/ksock.h>

#include <getopt.h>
#include <stdio.h>

#define KSOCK_CLI_MAX_HEADERS 32

/* getopt_long codes of the connection options every connecting verb takes. */
enum {
    KSOCK_CLI_O_SUB = 1,
    KSOCK_CLI_O_SER,
    KSOCK_CLI_O_HDR,
    KSOCK_CLI_O_QUERY,
    KSOCK_CLI_O_TOKEN,
    KSOCK_CLI_O_CA,
    KSOCK_CLI_O_INSECURE,
    KSOCK_CLI_O_CERT,
    KSOCK_CLI_O_KEY,
    KSOCK_CLI_O_RECONNECT,
    KSOCK_CLI_O_RETRIES,
    KSOCK_CLI_O_DELAY,
    KSOCK_CLI_O_MAXDELAY,
    KSOCK_CLI_O_NOEXP,
    KSOCK_CLI_O_NOJITTER,
    KSOCK_CLI_O_STABLE,
    KSOCK_CLI_O_QUEUE,
    KSOCK_CLI_O_PDIR,
    KSOCK_CLI_O_TRANSPORT,
    KSOCK_CLI_O_FIRST_FREE /* a verb numbers its own options from here */
};

/* The option table entries of the codes above ("header" is left to each verb). */
// clang-format off
#define KSOCK_CLI_CONNECT_LONGOPTS                                      \
    {"subprotocol", required_argument, NULL, KSOCK_CLI_O_SUB},          \
    {"serializer", required_argument, NULL, KSOCK_CLI_O_SER},           \
    {"http-header", required_argument, NULL, KSOCK_CLI_O_HDR},          \
    {"query", required_argument, NULL, KSOCK_CLI_O_QUERY},              \
    {"token", required_argument, NULL, KSOCK_CLI_O_TOKEN},              \
    {"cacert", required_argument, NULL, KSOCK_CLI_O_CA},                \
    {"insecure", no_argument, NULL, KSOCK_CLI_O_INSECURE},              \
    {"cert", required_argument, NULL, KSOCK_CLI_O_CERT},                \
    {"key-file", required_argument, NULL, KSOCK_CLI_O_KEY},             \
    {"reconnect", no_argument, NULL, KSOCK_CLI_O_RECONNECT},            \
    {"max-retries", required_argument, NULL, KSOCK_CLI_O_RETRIES},      \
    {"retry-delay", required_argument, NULL, KSOCK_CLI_O_DELAY},        \
    {"max-delay", required_argument, NULL, KSOCK_CLI_O_MAXDELAY},       \
    {"no-exponential", no_argument, NULL, KSOCK_CLI_O_NOEXP},           \
    {"no-jitter", no_argument, NULL, KSOCK_CLI_O_NOJITTER},             \
    {"stable-after", required_argument, NULL, KSOCK_CLI_O_STABLE},      \
    {"queue", required_argument, NULL, KSOCK_CLI_O_QUEUE},              \
    {"plugin-dir", required_argument, NULL, KSOCK_CLI_O_PDIR},          \
    {"transport", required_argument, NULL, KSOCK_CLI_O_TRANSPORT}
// clang-format on

/* What the connection options ask for; strings point into argv or into owned[]. */
typedef struct ksock_cli_conn_s {
    const char *url;
    ksock_ws_opts_t o; /* o.headers, o.query and o.reconnect point into this struct */
    ksock_reconnect_opts_t ro;
    ksock_kvpair_t headers[KSOCK_CLI_MAX_HEADERS], query[KSOCK_CLI_MAX_HEADERS];
    char *owned[2 * KSOCK_CLI_MAX_HEADERS]; /* split --http-header/--query copies */
    size_t nowned, nh, nq;
    const char *serializer, *plugin_dir, *transport;
} ksock_cli_conn_t;

/* Defaults: json, no reconnection. */
void ksock_cli_conn_init(ksock_cli_conn_t *a);
/*
 * One connection option: 0 when taken, 1 when `c` is not one of them, 2
 * (the exit status) after a message on stderr.
 */
int ksock_cli_conn_option(ksock_cli_conn_t *a, int c, const char *arg);
/* Point a->o at the arrays once every option is read. */
void ksock_cli_conn_finish(ksock_cli_conn_t *a);
/* Free the copies the options made. */
void ksock_cli_conn_free(ksock_cli_conn_t *a);
/*
 * A runtime (library logs at warn and above on stderr), a manager, and the
 * connection to a->url. 0, or 2 after a message on stderr (everything made
 * is released then).
 */
int ksock_cli_connect(const ksock_cli_conn_t *a, ksock_runtime_t **rt, ksock_ws_manager_t **mgr,
                      ksock_ws_t **ws);
/* Append `s` (n bytes, UTF-8) as a JSON string. */
void ksock_cli_json_string(ksock_buf_t *b, const char *s, size_t n);
/* The connection options' lines of the usage text. */
void ksock_cli_connect_usage(FILE *f);

/* `ksock token ...`: argv[0] is "token" (tools/ksock_token.c). */
int ksock_token_main(int argc, char **argv);
/* `ksock tail ...` and `ksock publish ...`: argv[0] is the verb (tools/ksock_topic.c). */
int ksock_topic_main(int argc, char **argv);

#endif
