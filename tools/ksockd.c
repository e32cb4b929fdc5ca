/*
 * ksockd: the KafkaSocks daemon.
 *
 *   ksockd --config FILE            run
 *   ksockd --check-config FILE      validate config and plugins; exit 0 or 2
 *   ksockd --list-plugins           one line per plugin found in the search path
 *   ksockd --describe-plugin NAME   a plugin's options (NAME or KIND:NAME)
 *   ksockd --config-reference       the configuration reference (Markdown)
 *   ksockd --version
 *
 * With a "websocket" section, ksockd serves WebSocket clients through the
 * bridge (docs/bridge.md): ksock_bridge_new_from_config() reads the
 * "websocket", "auth", "serializers" and "bridge" sections and their rules;
 * ksockd gives it the producer of "kafka" and its signals.
 * With an "admin" section it also serves /healthz, /readyz and /metrics on
 * an address of their own (tools/ksockd_admin.c; docs/operations.md).
 *
 * Signals: SIGTERM and SIGINT stop cleanly: the bridge drains (new
 * publishes are refused with KSOCK_E_SHUTDOWN, those in flight are
 * answered as Kafka acknowledges them), then connections close with 1001
 * and the loop stops; a second signal stops at once. SIGHUP re-reads the config
 * file and rebuilds the log sinks from it (which also reopens log files,
 * for logrotate); a config that no longer validates is reported and the
 * running sinks are kept.
 */
#include "ksockd_admin.h"
#include "sd_notify.h"

#include <ksock/ksock.h>

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXIT_CONFIG 2

typedef struct {
    ksock_runtime_t *rt;
    const char *config_path;
    ksock_signal_t *sigterm, *sigint, *sighup;
    ksock_kafka_producer_t *producer; /* from the "kafka" section, if any */
    ksock_bridge_t *bridge;           /* from "websocket" and the sections it needs */
    ksockd_admin_t *admin;            /* from "admin", if any */
    bool draining;
} daemon_t;

static void usage(FILE *f)
{
    fprintf(f, "usage: ksockd --config FILE\n"
               "       ksockd --check-config FILE\n"
               "       ksockd --list-plugins [--config FILE]\n"
               "       ksockd --describe-plugin [KIND:]NAME [--config FILE]\n"
               "       ksockd --config-reference [--config FILE]\n"
               "       ksockd --version\n");
}

/* Load and apply the config's plugin_path only, for the listing commands. */
static int load_plugin_path(ksock_runtime_t *rt, const char *path)
{
    if (path == NULL) return 0;
    ksock_config_t *cfg;
    char err[1024];
    if (ksock_config_load_file(path, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "ksockd: %s\n", err);
        return -1;
    }
    const ksock_cfg_t *pp = ksock_cfg_get(ksock_config_root(cfg), "plugin_path");
    for (size_t i = ksock_cfg_count(pp); i-- > 0;) {
        const char *dir = ksock_cfg_string(ksock_cfg_at(pp, i, NULL));
        if (dir) ksock_plugin_path_add(rt, dir);
    }
    ksock_config_free(cfg);
    return 0;
}

/* ---- --list-plugins ----------------------------------------------------------- */

typedef struct {
    char **seen;
    size_t n;
    int refused;
} list_ctx_t;

static void list_one(const char *file, const ksock_plugin_desc_t *d, int err, const char *errstr,
                     void *data)
{
    list_ctx_t *l = data;
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->seen[i], file) == 0) return; /* a directory listed twice */
    char **v = realloc(l->seen, (l->n + 1) * sizeof(char *));
    if (v == NULL) return;
    l->seen = v;
    l->seen[l->n++] = strdup(file);
    if (err != 0) {
        fprintf(stderr, "refused   %s\n", errstr);
        l->refused++;
        return;
    }
    printf("%-10s %-12s %-8s ABI %u.%u  %s\n", ksock_plugin_kind_name((ksock_plugin_kind_t)d->kind),
           d->name, d->version ? d->version : "-", d->abi_major, d->abi_minor, file);
}

static int cmd_list_plugins(ksock_runtime_t *rt)
{
    list_ctx_t l = {NULL, 0, 0};
    printf("%-10s %-12s %-8s %-8s %s\n", "KIND", "NAME", "VERSION", "ABI", "FILE");
    printf("%-10s %-12s %-8s ABI %d.%d  %s\n", "logsink", "console", KSOCK_VERSION_STRING,
           KSOCK_PLUGIN_ABI_MAJOR, KSOCK_PLUGIN_ABI_MINOR, "(builtin)");
    ksock_plugin_scan(rt, list_one, &l);
    for (size_t i = 0; i < l.n; i++)
        free(l.seen[i]);
    free(l.seen);
    return 0;
}

/* ---- --describe-plugin / --config-reference ------------------------------------ */

static void print_default(const ksock_option_t *o, char *out, size_t n)
{
    if (o->flags & KSOCK_OPT_REQUIRED)
        snprintf(out, n, "(required)");
    else if (o->def && (o->flags & KSOCK_OPT_SECRET))
        snprintf(out, n, "(hidden)");
    else if (o->def)
        snprintf(out, n, "%s", o->def);
    else
        snprintf(out, n, "-");
}

/* `sep` between enum values: "|", or "\\|" inside a markdown table. */
static void print_type(const ksock_option_t *o, const char *sep, char *out, size_t n)
{
    if (o->type != KSOCK_OPT_ENUM) {
        snprintf(out, n, "%s", ksock_opt_type_name(o->type));
        return;
    }
    size_t len = (size_t)snprintf(out, n, "enum:");
    for (int i = 0; o->enum_values[i] && len < n; i++)
        len += (size_t)snprintf(out + len, n - len, "%s%s", i ? sep : "", o->enum_values[i]);
}

/* Walk a table with the entry size it was built with. */
static const ksock_option_t *opt_at(const ksock_option_t *t, size_t stride, size_t i)
{
    const ksock_option_t *o = (const ksock_option_t *)((const char *)t + i * stride);
    return o->name ? o : NULL;
}

static void print_options_text(const ksock_option_t *t, size_t stride)
{
    const ksock_option_t *o;
    char def[128], type[160];
    if (t == NULL || t->name == NULL) {
        printf("  (no options)\n");
        return;
    }
    printf("  %-18s %-28s %-12s %s\n", "NAME", "TYPE", "DEFAULT", "DESCRIPTION");
    for (size_t i = 0; (o = opt_at(t, stride, i)) != NULL; i++) {
        print_default(o, def, sizeof(def));
        print_type(o, "|", type, sizeof(type));
        printf("  %-18s %-28s %-12s %s\n", o->name, type, def,
               o->description ? o->description : "");
    }
}

static void print_options_md(const ksock_option_t *t, size_t stride)
{
    const ksock_option_t *o;
    char def[128], type[160];
    if (t == NULL || t->name == NULL) {
        printf("No options.\n\n");
        return;
    }
    printf("| key | type | default | description |\n| --- | --- | --- | --- |\n");
    for (size_t i = 0; (o = opt_at(t, stride, i)) != NULL; i++) {
        print_default(o, def, sizeof(def));
        print_type(o, "\\|", type, sizeof(type));
        printf("| `%s` | %s | %s%s%s | %s |\n", o->name, type,
               def[0] == '(' || def[0] == '-' ? "" : "`", def,
               def[0] == '(' || def[0] == '-' ? "" : "`", o->description ? o->description : "");
    }
    printf("\n");
}

static int find_any_kind(ksock_runtime_t *rt, const char *spec, ksock_plugin_t **out, char *err,
                         size_t errlen)
{
    const char *colon = strchr(spec, ':');
    if (colon) {
        char kind[32];
        ksock_plugin_kind_t k;
        snprintf(kind, sizeof(kind), "%.*s", (int)(colon - spec), spec);
        if (ksock_plugin_kind_parse(kind, &k) != 0) {
            snprintf(err, errlen, "unknown plugin kind \"%s\"", kind);
            return KSOCK_E_INVAL;
        }
        return ksock_plugin_find(rt, k, colon + 1, out, err, errlen);
    }
    int rc = KSOCK_E_NOENT;
    for (int k = KSOCK_PLUGIN_TRANSPORT; k <= KSOCK_PLUGIN_LOGSINK; k++) {
        char e[1024];
        rc = ksock_plugin_find(rt, (ksock_plugin_kind_t)k, spec, out, e, sizeof(e));
        if (rc == 0) return 0;
        if (rc != KSOCK_E_NOENT) { /* found but refused: that is the interesting message */
            snprintf(err, errlen, "%s", e);
            return rc;
        }
    }
    snprintf(err, errlen, "no plugin named \"%s\" of any kind in the search path", spec);
    return rc;
}

static int cmd_describe(ksock_runtime_t *rt, const char *name)
{
    char err[1024];
    if (strcmp(name, "console") == 0 || strcmp(name, "logsink:console") == 0) {
        printf("logsink \"console\" %s (built in)\n  Writes records to stderr or stdout.\n\n"
               "Options (besides type, name, level, format):\n",
               KSOCK_VERSION_STRING);
        print_options_text(ksock_config_schema("log.sink.console"), sizeof(ksock_option_t));
        return 0;
    }
    ksock_plugin_t *p;
    if (find_any_kind(rt, name, &p, err, sizeof(err)) != 0) {
        fprintf(stderr, "ksockd: %s\n", err);
        return 1;
    }
    const ksock_plugin_desc_t *d = ksock_plugin_desc(p);
    printf("%s \"%s\" %s (ABI %u.%u) %s\n", ksock_plugin_kind_name((ksock_plugin_kind_t)d->kind),
           d->name, d->version ? d->version : "", d->abi_major, d->abi_minor, ksock_plugin_file(p));
    if (d->description) printf("  %s\n", d->description);
    printf("\nOptions%s:\n",
           d->kind == KSOCK_PLUGIN_LOGSINK ? " (besides type, name, level, format)" : "");
    print_options_text(d->options, d->option_size);
    return 0;
}

typedef struct {
    ksock_runtime_t *rt;
    ksock_plugin_t **found;
    size_t n;
} ref_ctx_t;

static void collect(const char *file, const ksock_plugin_desc_t *d, int err, const char *errstr,
                    void *data)
{
    ref_ctx_t *r = data;
    if (err != 0) return;
    ksock_plugin_t *p;
    char e[256];
    if (ksock_plugin_find(r->rt, (ksock_plugin_kind_t)d->kind, d->name, &p, e, sizeof(e)) != 0)
        return;
    for (size_t i = 0; i < r->n; i++)
        if (r->found[i] == p) return;
    ksock_plugin_t **v = realloc(r->found, (r->n + 1) * sizeof(*v));
    if (v == NULL) return;
    r->found = v;
    r->found[r->n++] = p;
}

static int cmp_plugin(const void *a, const void *b)
{
    const ksock_plugin_desc_t *x = ksock_plugin_desc(*(ksock_plugin_t *const *)a);
    const ksock_plugin_desc_t *y = ksock_plugin_desc(*(ksock_plugin_t *const *)b);
    if (x->kind != y->kind) return x->kind < y->kind ? -1 : 1;
    return strcmp(x->name, y->name);
}

/*
 * The configuration reference, generated from the very tables that
 * validate the config; docs/configuration.md is this output, and a test
 * checks that the two agree.
 */
static int cmd_reference(ksock_runtime_t *rt)
{
    printf("<!-- Generated by `ksockd --config-reference`; do not edit by hand. -->\n"
           "# Configuration reference\n\n"
           "Generated from the option schemas of the core and of every plugin in the build.\n"
           "Durations are strings with a unit (`250ms`, `30s`, `5m`, `1h`, `2d`) or integer\n"
           "milliseconds; sizes are integer bytes or strings with a unit (`512B`, `64KiB`,\n"
           "`10MB`, `1GiB`). Unknown keys are errors.\n\n");
    printf("## Top level\n\n");
    print_options_md(ksock_config_schema("root"), sizeof(ksock_option_t));
    printf("## `kafka`\n\n"
           "Every member is a Kafka client property: librdkafka's own names pass through and are\n"
           "checked by librdkafka at start-up (an unknown one stops start-up, named with its\n"
           "position). Producers default to `enable.idempotence=true` and `acks=all`. Secrets\n"
           "(`sasl.password`, `ssl.key.password`, ...) are refused inline: give `<key>.file` or\n"
           "`<key>.env`. Keys that are ours (docs/kafka.md):\n\n");
    print_options_md(ksock_config_schema("kafka"), sizeof(ksock_option_t));
    printf("## `log`\n\n");
    print_options_md(ksock_config_schema("log"), sizeof(ksock_option_t));
    printf("### Keys of every sink in `log.sinks`\n\n");
    print_options_md(ksock_config_schema("log.sink"), sizeof(ksock_option_t));
    printf("### Sink type `console` (built in)\n\n");
    print_options_md(ksock_config_schema("log.sink.console"), sizeof(ksock_option_t));
    printf("## `bridge`\n\n"
           "How ksockd serves the clients of the `websocket` section (docs/bridge.md).\n\n");
    print_options_md(ksock_bridge_config_schema(), sizeof(ksock_option_t));
    printf("## `admin`\n\n"
           "The admin HTTP endpoint: /healthz, /readyz, /metrics (docs/operations.md). Absent: "
           "none.\n\n");
    print_options_md(ksockd_admin_schema(), sizeof(ksock_option_t));

    ref_ctx_t r = {rt, NULL, 0};
    ksock_plugin_scan(rt, collect, &r);
    qsort(r.found, r.n, sizeof(*r.found), cmp_plugin);
    for (size_t i = 0; i < r.n; i++) {
        const ksock_plugin_desc_t *d = ksock_plugin_desc(r.found[i]);
        printf("## Plugin %s `%s`\n\n", ksock_plugin_kind_name((ksock_plugin_kind_t)d->kind),
               d->name);
        if (d->description) printf("%s\n\n", d->description);
        print_options_md(d->options, d->option_size);
    }
    free(r.found);
    return 0;
}

/* ---- Running ------------------------------------------------------------------ */

/*
 * The bridge has answered what it sent to Kafka (or timed out): close the
 * connections (1001) and stop the loop. Nothing here runs the loop.
 */
static void on_drained(ksock_bridge_t *b, int status, void *data)
{
    daemon_t *d = data;
    ksock_log(d->rt, status ? KSOCK_LOG_WARN : KSOCK_LOG_INFO, "ksockd", NULL, 0, "%s",
              status ? "drain timed out: closing connections"
                     : "every publish in flight answered: closing connections");
    ksock_bridge_stop(b);
    ksock_runtime_stop(d->rt);
}

static void on_stop_signal(ksock_signal_t *s, int signum, void *data)
{
    daemon_t *d = data;
    ksock_log(d->rt, KSOCK_LOG_INFO, "ksockd", (ksock_kv_t[]){KSOCK_KV_I64("signal", signum)}, 1,
              "stopping on %s", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    ksockd_notify("STOPPING=1\nSTATUS=stopping on %s", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    if (d->bridge && !d->draining) {
        d->draining = true;
        ksockd_admin_set_state(d->admin, KSOCKD_ADMIN_DRAINING);
        if (ksock_bridge_drain(d->bridge, KSOCK_BRIDGE_DRAIN_CONFIGURED, on_drained, d) == 0)
            return;
    }
    ksock_runtime_stop(d->rt); /* no bridge, drain refused, or a second signal */
}

static void on_hup(ksock_signal_t *s, int signum, void *data)
{
    daemon_t *d = data;
    char err[1024];
    ksock_config_t *cfg;
    ksock_log(d->rt, KSOCK_LOG_INFO, "ksockd", NULL, 0, "SIGHUP: reloading log sinks from %s",
              d->config_path);
    ksockd_notify_reloading("reloading the log sinks");
    /*
     * ksock_runtime_configure() builds every new sink before it swaps them
     * in, and on failure frees what it built and keeps the running sinks, so
     * no separate check is needed first.
     */
    int rc = ksock_config_load_file(d->config_path, &cfg, err, sizeof(err));
    if (rc == 0) {
        rc = ksock_runtime_configure(d->rt, cfg, err, sizeof(err));
        if (rc == 0)
            ksock_runtime_adopt_config(d->rt, cfg); /* the new sinks borrow from it */
        else
            ksock_config_free(cfg);
    }
    if (rc != 0)
        ksock_report_error(d->rt, rc, "ksockd", "reload failed, keeping the running log sinks: %s",
                           err);
    else
        ksock_log(d->rt, KSOCK_LOG_INFO, "ksockd", NULL, 0, "log sinks reloaded");
    ksockd_notify("READY=1\nSTATUS=%s", rc ? "reload failed: running with the previous log sinks"
                                           : "running; log sinks reloaded");
}

/* Parse, adopt and apply (or only check) the config; *out is the runtime's. */
static int load_config(ksock_runtime_t *rt, const char *path, bool check_only,
                       const ksock_config_t **out)
{
    char err[2048];
    ksock_config_t *cfg;
    int rc = ksock_config_load_file(path, &cfg, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "ksockd: %s\n", err);
        return EXIT_CONFIG;
    }
    ksock_runtime_adopt_config(rt, cfg);
    *out = cfg;
    rc = check_only ? ksock_config_check(rt, cfg, err, sizeof(err))
                    : ksock_runtime_configure(rt, cfg, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "ksockd: %s\n", err);
        return EXIT_CONFIG;
    }
    return 0;
}

/*
 * The "kafka" section: build the properties (positions kept for messages)
 * and, when running, create the producer the bridge will use. Creating it
 * now makes librdkafka check every property at start-up, and starts the
 * embedded cluster when bootstrap.servers is "embedded".
 */
/*
 * One size limit for a publish (docs/protocol.md, Sizes): unless the kafka
 * section sets message.max.bytes, the producer's follows the largest frame
 * the websocket section accepts (max_message_size, 1 MiB by default), not
 * librdkafka's 1,000,000, so whatever fits in a frame is not refused by a
 * smaller producer limit. The broker's own limit (1 MiB + 12 by default)
 * still applies at delivery.
 */
static int message_size_default(const ksock_config_t *cfg, const ksock_cfg_t *kafka,
                                ksock_kafka_conf_t *conf, char *err, size_t err_size)
{
    if (ksock_cfg_get(kafka, "message.max.bytes")) return 0;
    const ksock_cfg_t *ws = ksock_cfg_get(ksock_config_root(cfg), "websocket");
    const ksock_cfg_t *mm = ksock_cfg_get(ws, "max_message_size");
    int64_t n = 1048576;
    if (mm && ksock_cfg_type(mm) == KSOCK_CFG_INT)
        n = ksock_cfg_int(mm);
    else if (mm && ksock_cfg_type(mm) == KSOCK_CFG_STRING &&
             ksock_parse_size(ksock_cfg_string(mm), &n) != 0)
        return 0;                             /* the transport's option check reports it */
    if (n < 1000 || n > 1000000000) return 0; /* librdkafka's range: keep its default */
    char v[32];
    snprintf(v, sizeof(v), "%lld", (long long)n);
    return ksock_kafka_conf_set(conf, "message.max.bytes", v, err, err_size);
}

static int setup_kafka(ksock_runtime_t *rt, const ksock_config_t *cfg, bool create,
                       ksock_kafka_producer_t **out)
{
    char err[1024];
    *out = NULL;
    const ksock_cfg_t *k = ksock_cfg_get(ksock_config_root(cfg), "kafka");
    if (k == NULL) return 0;
    ksock_kafka_conf_t *conf;
    int rc = ksock_kafka_conf_new(&conf);
    if (rc == 0) rc = message_size_default(cfg, k, conf, err, sizeof(err));
    if (rc == 0) rc = ksock_kafka_conf_set_cfg(conf, cfg, k, err, sizeof(err));
    if (rc == 0 && create) rc = ksock_kafka_producer_new(rt, out, conf, err, sizeof(err));
    ksock_kafka_conf_free(conf);
    if (rc != 0) {
        fprintf(stderr, "ksockd: %s\n", err);
        return EXIT_CONFIG;
    }
    return 0;
}

static void log_bridge_stats(ksock_runtime_t *rt, const ksock_bridge_t *b)
{
    ksock_bridge_stats_t st = {.size = sizeof(st)};
    ksock_bridge_stats(b, &st);
    ksock_log(
        rt, KSOCK_LOG_INFO, "ksockd",
        (ksock_kv_t[]){
            KSOCK_KV_I64("connections", st.connections), KSOCK_KV_I64("published", st.published),
            KSOCK_KV_I64("publish_errors", st.publish_errors), KSOCK_KV_I64("dropped", st.dropped),
            KSOCK_KV_I64("send_full", st.send_full), KSOCK_KV_I64("inflight_max", st.inflight_max),
            KSOCK_KV_I64("paused", st.paused),
            KSOCK_KV_I64("shutdown_refused", st.shutdown_refused),
            KSOCK_KV_I64("drain_unknown", st.drain_unknown),
            KSOCK_KV_I64("subscribed", st.subscribed),
            KSOCK_KV_I64("subscribe_errors", st.subscribe_errors),
            KSOCK_KV_I64("records", st.records), KSOCK_KV_I64("deliveries", st.deliveries),
            KSOCK_KV_I64("encodes", st.encodes), KSOCK_KV_I64("slow_closed", st.slow_closed),
            KSOCK_KV_I64("slow_dropped", st.slow_dropped),
            KSOCK_KV_I64("subscriptions", st.subscriptions), KSOCK_KV_I64("readers", st.readers)},
        18, "bridge stopped");
    ksock_log(rt, KSOCK_LOG_INFO, "ksockd",
              (ksock_kv_t[]){KSOCK_KV_I64("limit_principal", st.limit_principal),
                             KSOCK_KV_I64("limit_subscriptions", st.limit_subscriptions),
                             KSOCK_KV_I64("limit_rate_paused", st.limit_rate_paused),
                             KSOCK_KV_I64("limit_too_big", st.limit_too_big),
                             KSOCK_KV_I64("token_expired", st.token_expired),
                             KSOCK_KV_I64("token_refreshed", st.token_refreshed),
                             KSOCK_KV_I64("token_refused", st.token_refused),
                             KSOCK_KV_I64("token_revoked", st.token_revoked),
                             KSOCK_KV_I64("limit_connections", st.limit_connections)},
              9, "bridge limits and tokens");
}

static void teardown(daemon_t *d)
{
    /*
     * Order (bridge.h): transport stopped, producer, bridge (which frees
     * the instances it made). The producer's destroy waits for Kafka by polling
     * librdkafka itself, not by running the loop; a delivery it reports
     * now finds the bridge stopped and counts as dropped. The admin endpoint
     * goes first: its Kafka probe uses the producer.
     */
    ksockd_admin_destroy(d->admin);
    d->admin = NULL;
    ksock_bridge_stop(d->bridge);
    if (d->producer) ksock_kafka_producer_destroy(d->producer, 5000);
    d->producer = NULL;
    if (d->bridge) log_bridge_stats(d->rt, d->bridge);
    ksock_bridge_destroy(d->bridge); /* and the transport and auth instances it made */
    d->bridge = NULL;
}

/* The bridge the config describes, serving; no "websocket" section: none. */
static int start_bridge(ksock_runtime_t *rt, const ksock_config_t *cfg, daemon_t *d)
{
    char err[2048];
    int rc = ksock_bridge_new_from_config(rt, cfg, d->producer, &d->bridge, err, sizeof(err));
    if (rc == 0 && d->bridge) rc = ksock_bridge_start(d->bridge, err, sizeof(err));
    if (rc != 0) {
        ksock_report_error(rt, rc, "ksockd", "cannot serve WebSocket clients: %s", err);
        fprintf(stderr, "ksockd: %s\n", err);
        return EXIT_CONFIG;
    }
    return 0;
}

static void close_signals(daemon_t *d)
{
    ksock_signal_close(d->sigterm);
    ksock_signal_close(d->sigint);
    ksock_signal_close(d->sighup);
}

static int cmd_run(ksock_runtime_t *rt, const char *path)
{
    const ksock_config_t *cfg;
    int rc = load_config(rt, path, false, &cfg);
    if (rc != 0) return rc;
    daemon_t d = {.rt = rt, .config_path = path};
    if ((rc = setup_kafka(rt, cfg, true, &d.producer)) != 0) return rc;
    if (ksock_signal_start(rt, &d.sigterm, SIGTERM, on_stop_signal, &d) != 0 ||
        ksock_signal_start(rt, &d.sigint, SIGINT, on_stop_signal, &d) != 0 ||
        ksock_signal_start(rt, &d.sighup, SIGHUP, on_hup, &d) != 0) {
        fprintf(stderr, "ksockd: cannot install signal handlers\n");
        rc = 1;
    }
    char err[1024];
    if (rc == 0 && ksockd_admin_new(rt, cfg, d.producer, &d.admin, err, sizeof(err)) != 0) {
        fprintf(stderr, "ksockd: %s\n", err);
        rc = EXIT_CONFIG;
    }
    if (rc == 0) rc = start_bridge(rt, cfg, &d);
    if (rc != 0) {
        teardown(&d);
        close_signals(&d);
        return rc;
    }
    ksock_log(rt, KSOCK_LOG_INFO, "ksockd",
              (ksock_kv_t[]){KSOCK_KV_STR("version", ksock_version()), KSOCK_KV_STR("config", path),
                             KSOCK_KV_I64("pid", getpid())},
              3, "ksockd started");
    ksockd_admin_set_bridge(d.admin, d.bridge);
    ksockd_admin_set_state(d.admin, KSOCKD_ADMIN_READY);
    ksockd_notify("READY=1\nSTATUS=%s",
                  d.bridge ? "serving WebSocket clients" : "running (no websocket section)");
    /* The publishes in flight were answered by the drain (on_stop_signal) while the loop ran. */
    rc = ksock_runtime_run(rt);
    teardown(&d);
    ksock_log(rt, KSOCK_LOG_INFO, "ksockd", NULL, 0, "ksockd stopped");
    close_signals(&d);
    return rc == 0 ? 0 : 1;
}

/* --check-config: the same sections, nothing created, no plugin code run. */
static int cmd_check(ksock_runtime_t *rt, const char *path)
{
    char err[2048];
    ksock_kafka_producer_t *none;
    const ksock_config_t *cfg;
    int rc = load_config(rt, path, true, &cfg);
    if (rc == 0) rc = setup_kafka(rt, cfg, false, &none);
    if (rc == 0 && (ksock_bridge_check_config(rt, cfg, err, sizeof(err)) != 0 ||
                    ksockd_admin_check(cfg, err, sizeof(err)) != 0)) {
        fprintf(stderr, "ksockd: %s\n", err);
        rc = EXIT_CONFIG;
    }
    if (rc == 0) printf("%s: configuration is valid\n", path);
    return rc;
}

int main(int argc, char **argv)
{
    enum { OPT_CHECK = 256, OPT_LIST, OPT_DESCRIBE, OPT_VERSION, OPT_REFERENCE };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", required_argument, NULL, OPT_CHECK},
        {"list-plugins", no_argument, NULL, OPT_LIST},
        {"describe-plugin", required_argument, NULL, OPT_DESCRIBE},
        {"config-reference", no_argument, NULL, OPT_REFERENCE},
        {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *config = NULL, *check = NULL, *describe = NULL;
    bool list = false, reference = false;
    int c;
    while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case OPT_CHECK:
            check = optarg;
            break;
        case OPT_LIST:
            list = true;
            break;
        case OPT_DESCRIBE:
            describe = optarg;
            break;
        case OPT_REFERENCE:
            reference = true;
            break;
        case OPT_VERSION:
            printf("ksockd %s (plugin ABI %d.%d)\n", ksock_version(), KSOCK_PLUGIN_ABI_MAJOR,
                   KSOCK_PLUGIN_ABI_MINOR);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_CONFIG;
        }
    }
    if (optind < argc || (!config && !check && !list && !describe && !reference)) {
        usage(stderr);
        return EXIT_CONFIG;
    }

    /*
     * A peer that closes mid-write (an HTTP log collector, a WebSocket
     * client) must produce EPIPE, not kill the daemon: some libraries write
     * without MSG_NOSIGNAL.
     */
    signal(SIGPIPE, SIG_IGN);

    ksock_runtime_t *rt;
    char err[512];
    if (ksock_runtime_new(&rt, err, sizeof(err)) != 0) {
        fprintf(stderr, "ksockd: %s\n", err);
        return 1;
    }
    int rc;
    if (check) {
        rc = cmd_check(rt, check);
    } else if (list || describe || reference) {
        rc = load_plugin_path(rt, config) != 0 ? EXIT_CONFIG
             : list                            ? cmd_list_plugins(rt)
             : describe                        ? cmd_describe(rt, describe)
                                               : cmd_reference(rt);
    } else {
        rc = cmd_run(rt, config);
    }
    ksock_runtime_destroy(rt);
    return rc;
}
