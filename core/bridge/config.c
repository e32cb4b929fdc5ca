/*
 * A bridge from a configuration (docs/bridge.md, Configuration): the
 * "websocket", "auth", "serializers" and "bridge" sections, their rules,
 * and the instances they name. ksockd only wires the result to its
 * producer and its signals; --check-config runs the same checks without
 * creating anything.
 *
 * The rules: a "websocket" section needs "kafka" and "auth" (no default,
 * so nobody gets an open server by omission); {"plugin": "none"} takes
 * only "allow_anonymous_on_network" and, without it, only loopback
 * listeners; every subprotocol a "websocket.subprotocols" list names must
 * be a serializer that is served.
 */
#include "bridge_internal.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <sys/socket.h>

/* ---- The "bridge" section --------------------------------------------------- */

typedef struct bridge_section_s {
    int64_t max_inflight;
    int64_t drain_timeout; /* ms */
    int slow_client;       /* KSOCK_BRIDGE_SLOW_* */
    int64_t max_subscriptions;
    int64_t max_catchup_readers;
    int64_t partition_refresh; /* ms */
    int64_t reader_linger;     /* ms */
    int64_t slow_client_grace; /* ms */
    int64_t max_connections_per_principal;
    int64_t publish_rate;
    int64_t publish_burst;
} bridge_section_t;

static const char *const slow_values[] = {"close", "drop", NULL};

static const ksock_option_t bridge_section[] = {
    KSOCK_OPTION_RANGE("max_inflight", KSOCK_OPT_INT, 0, "1000", bridge_section_t, max_inflight, 1,
                       1000000,
                       "Publishes per connection sent to Kafka and not yet answered. At the "
                       "bound ksockd stops reading that connection until acks bring it to 3/4 "
                       "of the bound (TCP pushes back on the client); nothing is refused."),
    KSOCK_OPTION_RANGE("drain_timeout", KSOCK_OPT_DURATION, 0, "5s", bridge_section_t,
                       drain_timeout, 0, 600000,
                       "On SIGTERM/SIGINT, how long to wait for Kafka to acknowledge the "
                       "publishes in flight (new ones are refused with -26) and for clients to "
                       "go quiet for 250 ms before closing the connections; what is still "
                       "pending then is answered -27 (outcome unknown)."),
    KSOCK_OPTION_ENUM("slow_client", 0, "close", bridge_section_t, slow_client, slow_values,
                      "A subscriber whose send queue is full (websocket send_queue_max_frames or "
                      "send_queue_max_bytes): \"close\" closes it with 1013 and it resumes from "
                      "its offsets after reconnecting; \"drop\" drops the records that do not "
                      "fit and then sends it an error -32 (KSOCK_E_SKIPPED) with the offsets "
                      "where the gap starts. The shared Kafka reader never waits for a client."),
    KSOCK_OPTION_RANGE("max_subscriptions", KSOCK_OPT_INT, 0, "100", bridge_section_t,
                       max_subscriptions, 1, 1000000,
                       "Subscriptions (topics) per connection; one more is refused with -22."),
    KSOCK_OPTION_RANGE("max_catchup_readers", KSOCK_OPT_INT, 0, "32", bridge_section_t,
                       max_catchup_readers, 0, 100000,
                       "Subscriptions starting behind the shared reader (earliest, offsets, "
                       "timestamp) each read with a Kafka consumer of their own until they "
                       "catch up; at most this many at once, one more is refused with -22."),
    KSOCK_OPTION_RANGE("partition_refresh", KSOCK_OPT_DURATION, 0, "10s", bridge_section_t,
                       partition_refresh, 0, 86400000,
                       "How often a subscribed topic is checked for added partitions (read from "
                       "their first record); 0 never."),
    KSOCK_OPTION_RANGE("slow_client_grace", KSOCK_OPT_DURATION, 0, "500ms", bridge_section_t,
                       slow_client_grace, 0, 600000,
                       "A subscriber whose send queue is full is first taken for a burst (the "
                       "server wrote faster than it could send): the topic's shared reader "
                       "pauses until the full queues drain, for at most this long. One still "
                       "full then is a slow client: slow_client applies to it, now and at once "
                       "every later time. 0: slow_client applies at the first full queue."),
    KSOCK_OPTION_RANGE("reader_linger", KSOCK_OPT_DURATION, 0, "30s", bridge_section_t,
                       reader_linger, 0, 86400000,
                       "How long a topic's shared Kafka reader keeps running after its last "
                       "subscription ended, so that clients coming back (a reconnect, a "
                       "resubscribe at latest) are answered without a Kafka round trip; 0 "
                       "stops it at once."),
    KSOCK_OPTION_RANGE("max_connections_per_principal", KSOCK_OPT_INT, 0, "0", bridge_section_t,
                       max_connections_per_principal, 0, 100000000,
                       "Open connections per principal (the token's subject; \"anonymous\" for "
                       "auth none); one more is refused at the handshake with HTTP 429. 0: no "
                       "limit (websocket.max_connections still bounds the total, HTTP 503)."),
    KSOCK_OPTION_RANGE("publish_rate", KSOCK_OPT_INT, 0, "0", bridge_section_t, publish_rate, 0,
                       100000000,
                       "Publishes per second per connection (a token bucket of publish_burst). "
                       "Over it ksockd stops reading that connection until the bucket refills "
                       "(TCP pushes back on the client); nothing is refused. 0: no limit."),
    KSOCK_OPTION_RANGE("publish_burst", KSOCK_OPT_INT, 0, "0", bridge_section_t, publish_burst, 0,
                       100000000,
                       "Publishes a connection may send at once before publish_rate applies (the "
                       "bucket's size). 0: the same as publish_rate."),
    KSOCK_OPTION_END,
};

const ksock_option_t *ksock_bridge_config_schema(void)
{
    return bridge_section;
}

/* "FILE:LINE:COL: message" at node `n`; returns KSOCK_E_CONFIG. */
static int cfg_error(char *errstr, size_t errstr_size, const ksock_config_t *cfg,
                     const ksock_cfg_t *n, const char *fmt, ...) KSOCK_PRINTF(5, 6);

static int cfg_error(char *errstr, size_t errstr_size, const ksock_config_t *cfg,
                     const ksock_cfg_t *n, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ksock_errstr_set(errstr, errstr_size, "%s:%d:%d: %s", ksock_config_name(cfg),
                     n ? ksock_cfg_line(n) : 0, n ? ksock_cfg_column(n) : 0, msg);
    return KSOCK_E_CONFIG;
}

/* ---- Anonymous clients: loopback only unless the config says otherwise ------- */

/*
 * Is this listener address loopback only? A literal in 127.0.0.0/8 or ::1,
 * or a name all of whose addresses are. *why says what it is otherwise.
 */
static bool address_is_loopback(const char *address, char *why, size_t why_size)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(address, NULL, &hints, &res);
    if (rc != 0) {
        snprintf(why, why_size, "does not resolve (%s)", gai_strerror(rc));
        return false;
    }
    bool loop = true;
    for (struct addrinfo *ai = res; ai && loop; ai = ai->ai_next) {
        char ip[INET6_ADDRSTRLEN] = "?";
        if (ai->ai_family == AF_INET) {
            const struct in_addr *a = &((const struct sockaddr_in *)ai->ai_addr)->sin_addr;
            loop = (ntohl(a->s_addr) >> 24) == 127;
            inet_ntop(AF_INET, a, ip, sizeof(ip));
        } else if (ai->ai_family == AF_INET6) {
            const struct in6_addr *a = &((const struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
            loop = IN6_IS_ADDR_LOOPBACK(a);
            inet_ntop(AF_INET6, a, ip, sizeof(ip));
        }
        if (!loop)
            snprintf(why, why_size, "%s %s", ip,
                     strcmp(ip, "0.0.0.0") == 0 || strcmp(ip, "::") == 0
                         ? "is every address of the machine"
                     : strcmp(ip, address) != 0 ? "is one of its addresses"
                                                : "is not a loopback address");
    }
    freeaddrinfo(res);
    return loop;
}

/* {"plugin": "none"}: its one key, and the loopback rule. Resolves names as the transport does. */
static int check_anonymous(const ksock_config_t *cfg, const ksock_cfg_t *ws,
                           const ksock_cfg_t *auth, char *errstr, size_t errstr_size)
{
    for (size_t i = 0; i < ksock_cfg_count(auth); i++) {
        const char *key = NULL;
        const ksock_cfg_t *v = ksock_cfg_at(auth, i, &key);
        if (strcmp(key, "plugin") != 0 && strcmp(key, "allow_anonymous_on_network") != 0)
            return cfg_error(errstr, errstr_size, cfg, v,
                             "auth: \"plugin\": \"none\" takes no key \"%s\" (only "
                             "\"allow_anonymous_on_network\")",
                             key);
    }
    const ksock_cfg_t *allow = ksock_cfg_get(auth, "allow_anonymous_on_network");
    if (allow && ksock_cfg_type(allow) != KSOCK_CFG_BOOL)
        return cfg_error(errstr, errstr_size, cfg, allow,
                         "auth: \"allow_anonymous_on_network\" must be true or false");
    if (allow && ksock_cfg_bool(allow)) return 0;
    const ksock_cfg_t *ls = ksock_cfg_get(ws, "listeners");
    for (size_t i = 0; i < ksock_cfg_count(ls); i++) {
        const ksock_cfg_t *l = ksock_cfg_at(ls, i, NULL);
        const char *addr = ksock_cfg_string(ksock_cfg_get(l, "address"));
        char why[128] = "";
        if (address_is_loopback(addr ? addr : "0.0.0.0", why, sizeof(why))) continue;
        return cfg_error(
            errstr, errstr_size, cfg, l,
            "websocket: listeners[%zu] (\"%s\" port %lld) is not loopback-only (%s), and auth is "
            "{\"plugin\": \"none\"}: anyone who can reach it could publish to every topic. Bind "
            "it to 127.0.0.1, ::1 or localhost, use an auth plugin, or add "
            "\"allow_anonymous_on_network\": true to \"auth\" (docs/bridge.md)",
            i, addr ? addr : "0.0.0.0", (long long)ksock_cfg_int(ksock_cfg_get(l, "port")),
            why[0] ? why : "all addresses");
    }
    return 0;
}

/*
 * The `ws` transport's listeners, checked as its create() and
 * set_listeners() check them, so that --check-config (and a reload, before
 * anything changes) refuses what start-up would: every entry an object of
 * "address" (a string that resolves), "port" (0 to 65535, required) and
 * "path" (a string). Binding is not tried: a running ksockd holds its own
 * ports, and a port in use is only known when the bind is made.
 */
static int check_listeners(const ksock_config_t *cfg, const ksock_cfg_t *ws, char *errstr,
                           size_t errstr_size)
{
    const ksock_cfg_t *ls = ksock_cfg_get(ws, "listeners");
    const char *tname = ksock_cfg_string(ksock_cfg_get(ws, "transport"));
    if (ksock_cfg_type(ls) != KSOCK_CFG_ARRAY || (tname && strcmp(tname, "ws") != 0))
        return 0; /* the option's type is the plugin's check; another transport, its format */
    for (size_t i = 0; i < ksock_cfg_count(ls); i++) {
        const ksock_cfg_t *l = ksock_cfg_at(ls, i, NULL);
        if (ksock_cfg_type(l) != KSOCK_CFG_OBJECT)
            return cfg_error(errstr, errstr_size, cfg, l,
                             "websocket: listeners[%zu]: expected an object {address, port, path}",
                             i);
        for (size_t k = 0; k < ksock_cfg_count(l); k++) {
            const char *key = NULL;
            const ksock_cfg_t *v = ksock_cfg_at(l, k, &key);
            ksock_cfg_type_t t = ksock_cfg_type(v);
            bool ok = strcmp(key, "port") == 0
                          ? t == KSOCK_CFG_INT && ksock_cfg_int(v) >= 0 && ksock_cfg_int(v) <= 65535
                          : (strcmp(key, "address") == 0 || strcmp(key, "path") == 0) &&
                                t == KSOCK_CFG_STRING;
            if (!ok)
                return cfg_error(errstr, errstr_size, cfg, v,
                                 "websocket: listeners[%zu]: key \"%s\": %s", i, key,
                                 strcmp(key, "address") && strcmp(key, "path") &&
                                         strcmp(key, "port")
                                     ? "unknown key (expected address, port, path)"
                                     : "wrong type or out of range");
        }
        if (ksock_cfg_get(l, "port") == NULL)
            return cfg_error(errstr, errstr_size, cfg, l,
                             "websocket: listeners[%zu]: \"port\" is required", i);
        const char *addr = ksock_cfg_string(ksock_cfg_get(l, "address"));
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
        int rc = getaddrinfo(addr ? addr : "0.0.0.0", NULL, &hints, &res);
        if (res) freeaddrinfo(res);
        if (rc != 0)
            return cfg_error(errstr, errstr_size, cfg, l,
                             "websocket: listeners[%zu]: address \"%s\" does not resolve: %s", i,
                             addr, gai_strerror(rc));
    }
    return 0;
}

/* ---- The sections ---------------------------------------------------------------- */

/* What the sections make; freed by parts_free() unless a bridge took them. */
typedef struct parts_s {
    ksock_plugin_instance_t *transport, *auth;
    bool anonymous;
    bridge_section_t bs;
} parts_t;

static void parts_free(parts_t *p)
{
    ksock_plugin_instance_free(p->transport);
    ksock_plugin_instance_free(p->auth);
    memset(p, 0, sizeof(*p));
}

/* "websocket" needs "kafka" and "auth", and "auth" a plugin. */
static int check_required(const ksock_config_t *cfg, const ksock_cfg_t *root, char *errstr,
                          size_t errstr_size)
{
    const ksock_cfg_t *ws = ksock_cfg_get(root, "websocket");
    const ksock_cfg_t *auth = ksock_cfg_get(root, "auth");
    if (ksock_cfg_get(root, "kafka") == NULL)
        return cfg_error(errstr, errstr_size, cfg, ws,
                         "websocket: needs a \"kafka\" section to publish to");
    if (auth == NULL)
        return cfg_error(errstr, errstr_size, cfg, ws,
                         "websocket: needs an \"auth\" section: {\"plugin\": \"jwt\", ...} or "
                         "{\"plugin\": \"none\"} for anonymous clients (docs/bridge.md)");
    const ksock_cfg_t *pn = ksock_cfg_get(auth, "plugin");
    const char *aname = ksock_cfg_string(pn);
    if (aname == NULL || aname[0] == '\0')
        return cfg_error(errstr, errstr_size, cfg, pn ? pn : auth,
                         "auth: \"plugin\" is required: a string naming an auth plugin, or "
                         "\"none\"");
    return 0;
}

/* One plugin instance of `kind` for a section, or with `create` false its options checked. */
static int section_instance(ksock_runtime_t *rt, const ksock_config_t *cfg, const char *section,
                            ksock_plugin_kind_t kind, const char *name, const ksock_cfg_t *obj,
                            const char *const *ignore, bool create, ksock_plugin_instance_t **out,
                            char *errstr, size_t errstr_size)
{
    char err[1024];
    ksock_plugin_t *p;
    int rc = ksock_plugin_find(rt, kind, name, &p, err, sizeof(err));
    if (rc == 0)
        rc = create ? ksock_plugin_instance_new(rt, p, section, cfg, obj, ignore, out, err,
                                                sizeof(err))
                    : ksock_plugin_check_options(p, section, cfg, obj, ignore, err, sizeof(err));
    if (rc != 0) cfg_error(errstr, errstr_size, cfg, obj, "%s: %s", section, err);
    return rc;
}

static int make_parts(ksock_runtime_t *rt, const ksock_config_t *cfg, bool create, parts_t *p,
                      char *errstr, size_t errstr_size)
{
    static const char *const auth_ignore[] = {"plugin", NULL};
    char err[1024];
    const ksock_cfg_t *root = ksock_config_root(cfg);
    const ksock_cfg_t *ws = ksock_cfg_get(root, "websocket");
    const ksock_cfg_t *auth = ksock_cfg_get(root, "auth");
    int rc = check_required(cfg, root, errstr, errstr_size);
    if (rc == 0) rc = check_listeners(cfg, ws, errstr, errstr_size);
    if (rc != 0) return rc;
    const ksock_cfg_t *bs = ksock_cfg_get(root, "bridge");
    if (ksock_options_apply(bridge_section, sizeof(ksock_option_t), cfg, bs, "bridge", NULL, &p->bs,
                            err, sizeof(err)) != 0)
        return cfg_error(errstr, errstr_size, cfg, bs, "%s", err);
    const char *aname = ksock_cfg_string(ksock_cfg_get(auth, "plugin"));
    if (strcmp(aname, "none") == 0) {
        if ((rc = check_anonymous(cfg, ws, auth, errstr, errstr_size)) != 0) return rc;
        p->anonymous = true;
    } else if ((rc = section_instance(rt, cfg, "auth", KSOCK_PLUGIN_AUTH, aname, auth, auth_ignore,
                                      create, &p->auth, errstr, errstr_size)) != 0) {
        return rc;
    }
    /* "transport" names the plugin (the `ws` transport unless it says otherwise). */
    static const char *const ws_ignore[] = {"transport", NULL};
    const char *tname = ksock_cfg_string(ksock_cfg_get(ws, "transport"));
    return section_instance(rt, cfg, "websocket", KSOCK_PLUGIN_TRANSPORT, tname ? tname : "ws", ws,
                            ws_ignore, create, &p->transport, errstr, errstr_size);
}

/* ---- Serializers ------------------------------------------------------------------ */

typedef struct scan_s {
    char **names;
    size_t n;
} scan_t;

static void scan_one(const char *file, const ksock_plugin_desc_t *d, int err, const char *errstr,
                     void *data)
{
    (void)file, (void)errstr;
    scan_t *s = data;
    if (err != 0 || d->kind != KSOCK_PLUGIN_SERIALIZER) return;
    char **v = realloc(s->names, (s->n + 1) * sizeof(*v));
    if (v == NULL) return;
    s->names = v;
    if ((v[s->n] = strdup(d->name)) != NULL) s->n++;
}

/* Names in the order a client's tie is broken: json, msgpack, protobuf, then the rest by name. */
static int rank(const char *name)
{
    static const char *const first[] = {"json", "msgpack", "protobuf"};
    for (int i = 0; i < 3; i++)
        if (strcmp(name, first[i]) == 0) return i;
    return 3;
}

static int cmp_names(const void *a, const void *b)
{
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    int d = rank(x) - rank(y);
    return d ? d : strcmp(x, y);
}

/*
 * No "serializers" section: serve every serializer plugin of the search
 * path that loads, with its default options; one that does not load is
 * logged and left out (a client that asks for it gets another or 400).
 */
static void serializers_found(ksock_bridge_t *b)
{
    scan_t s = {0};
    ksock_plugin_scan(b->rt, scan_one, &s);
    qsort(s.names, s.n, sizeof(*s.names), cmp_names);
    /* A directory in the search path twice ($KSOCK_PLUGIN_PATH and the
     * build tree's) reports its plugins twice: serve each name once. */
    size_t n = 0;
    for (size_t i = 0; i < s.n; i++) {
        if (n > 0 && strcmp(s.names[i], s.names[n - 1]) == 0)
            free(s.names[i]);
        else
            s.names[n++] = s.names[i];
    }
    s.n = n;
    for (size_t i = 0; i < s.n; i++) {
        char err[1024];
        if (ksock__br_serializer_add(b, s.names[i], NULL, NULL, err, sizeof(err)) != 0)
            ksock_log(b->rt, KSOCK_LOG_WARN, COMPONENT,
                      (ksock_kv_t[]){KSOCK_KV_STR("serializer", s.names[i])}, 1, "not served: %s",
                      err);
        free(s.names[i]);
    }
    free(s.names);
}

/*
 * The "serializers" section, {"NAME": {options}, ...}: exactly these, in
 * this order; each must load. With `b` NULL only check the options.
 */
static int serializers_section(ksock_runtime_t *rt, const ksock_config_t *cfg,
                               const ksock_cfg_t *sec, ksock_bridge_t *b, char *errstr,
                               size_t errstr_size)
{
    if (ksock_cfg_type(sec) != KSOCK_CFG_OBJECT)
        return cfg_error(errstr, errstr_size, cfg, sec,
                         "serializers: an object {\"NAME\": {options}, ...} is expected");
    for (size_t i = 0; i < ksock_cfg_count(sec); i++) {
        const char *name = NULL;
        const ksock_cfg_t *opts = ksock_cfg_at(sec, i, &name);
        char err[1024];
        int rc;
        if (b) {
            rc = ksock__br_serializer_add(b, name, cfg, opts, err, sizeof(err));
        } else {
            ksock_plugin_t *p;
            rc = ksock_plugin_find(rt, KSOCK_PLUGIN_SERIALIZER, name, &p, err, sizeof(err));
            if (rc == 0)
                rc = ksock_plugin_check_options(p, name, cfg, opts, NULL, err, sizeof(err));
        }
        if (rc != 0)
            return cfg_error(errstr, errstr_size, cfg, opts, "serializers: %s: %s", name, err);
    }
    return 0;
}

/*
 * A "websocket.subprotocols" list, when the config gives one, may name
 * only served serializers: a listed one that will not load is an error
 * now rather than a 1002 close for the client that picks it.
 */
static int check_listed(ksock_runtime_t *rt, const ksock_config_t *cfg, const ksock_cfg_t *root,
                        char *errstr, size_t errstr_size)
{
    const ksock_cfg_t *sec = ksock_cfg_get(root, "serializers");
    const ksock_cfg_t *list = ksock_cfg_get(ksock_cfg_get(root, "websocket"), "subprotocols");
    for (size_t i = 0; i < ksock_cfg_count(list); i++) {
        const ksock_cfg_t *n = ksock_cfg_at(list, i, NULL);
        const char *sp = ksock_cfg_string(n);
        const char *name = sp && strncmp(sp, SUBPROTO_PREFIX, strlen(SUBPROTO_PREFIX)) == 0
                               ? sp + strlen(SUBPROTO_PREFIX)
                               : NULL;
        char err[1024] = "";
        ksock_plugin_t *p;
        if (name == NULL || *name == '\0')
            return cfg_error(errstr, errstr_size, cfg, n,
                             "websocket: subprotocols: \"%s\" is not ksock.v1.<serializer>",
                             sp ? sp : "?");
        if (sec ? ksock_cfg_get(sec, name) == NULL
                : ksock_plugin_find(rt, KSOCK_PLUGIN_SERIALIZER, name, &p, err, sizeof(err)) != 0)
            return cfg_error(errstr, errstr_size, cfg, n,
                             "websocket: subprotocols: \"%s\" is not served: %s", sp,
                             sec ? "it is not in the \"serializers\" section" : err);
    }
    return 0;
}

/* ksock.v1.<name> for every served serializer, NULL-terminated, for the transport. */
static int make_subprotocols(ksock_bridge_t *b)
{
    size_t n = 0;
    for (serializer_t *s = b->serializers; s; s = s->next)
        n++;
    b->subprotocols = calloc(n + 1, sizeof(*b->subprotocols));
    if (b->subprotocols == NULL) return KSOCK_E_NOMEM;
    size_t i = 0;
    for (serializer_t *s = b->serializers; s; s = s->next) {
        char *sp = malloc(strlen(SUBPROTO_PREFIX) + strlen(s->name) + 1);
        if (sp == NULL) return KSOCK_E_NOMEM;
        sprintf(sp, "%s%s", SUBPROTO_PREFIX, s->name);
        b->subprotocols[i++] = sp;
    }
    return 0;
}

/* One record per configured listener, and the anonymous warnings; after listen() succeeded. */
void ksock__br_log_config(const ksock_bridge_t *b)
{
    const ksock_cfg_t *root = ksock_config_root(b->cfg);
    const ksock_cfg_t *ls = ksock_cfg_get(ksock_cfg_get(root, "websocket"), "listeners");
    const char *auth = b->auth ? ksock_plugin_desc(b->auth->plugin)->name : "none";
    for (size_t i = 0; i < ksock_cfg_count(ls); i++) {
        const ksock_cfg_t *l = ksock_cfg_at(ls, i, NULL);
        const char *addr = ksock_cfg_string(ksock_cfg_get(l, "address"));
        const char *path = ksock_cfg_string(ksock_cfg_get(l, "path"));
        ksock_log(b->rt, KSOCK_LOG_INFO, "ksockd",
                  (ksock_kv_t[]){KSOCK_KV_STR("address", addr ? addr : "0.0.0.0"),
                                 KSOCK_KV_I64("port", ksock_cfg_int(ksock_cfg_get(l, "port"))),
                                 KSOCK_KV_STR("path", path ? path : "/"),
                                 KSOCK_KV_STR("auth", auth)},
                  4, "listening for WebSocket clients");
    }
    ksock_buf_t sp = KSOCK_BUF_INIT;
    for (size_t i = 0; b->subprotocols && b->subprotocols[i]; i++)
        ksock_buf_appendf(&sp, "%s%s", i ? "," : "", b->subprotocols[i]);
    ksock_log(b->rt, KSOCK_LOG_INFO, COMPONENT,
              (ksock_kv_t[]){KSOCK_KV_STR("subprotocols", sp.data ? sp.data : "")}, 1,
              "serializers served");
    ksock_buf_free(&sp);
    if (b->auth != NULL) return;
    ksock_log(b->rt, KSOCK_LOG_WARN, "ksockd", NULL, 0,
              "auth is \"none\": every client may publish to every topic");
    const ksock_cfg_t *allow =
        ksock_cfg_get(ksock_cfg_get(root, "auth"), "allow_anonymous_on_network");
    if (allow && ksock_cfg_bool(allow))
        ksock_log(b->rt, KSOCK_LOG_WARN, "ksockd", NULL, 0,
                  "allow_anonymous_on_network: anonymous clients are accepted on network "
                  "listeners too");
}

/* The readers' Kafka configuration: the "kafka" section, as the producer's is made. */
static int reader_conf(const ksock_config_t *cfg, const ksock_cfg_t *root, ksock_kafka_conf_t **out,
                       char *errstr, size_t errstr_size)
{
    int rc = ksock_kafka_conf_new(out);
    if (rc != 0) return rc;
    rc = ksock_kafka_conf_set_cfg(*out, cfg, ksock_cfg_get(root, "kafka"), errstr, errstr_size);
    if (rc != 0) {
        ksock_kafka_conf_free(*out);
        *out = NULL;
    }
    return rc;
}

/* ---- Public API ------------------------------------------------------------------ */

/* Sections that mean something only next to "websocket". */
static void warn_unused(ksock_runtime_t *rt, const ksock_cfg_t *root)
{
    static const char *const keys[] = {"auth", "bridge", "serializers"};
    for (size_t i = 0; i < 3; i++)
        if (ksock_cfg_get(root, keys[i]))
            ksock_log(rt, KSOCK_LOG_WARN, COMPONENT, NULL, 0,
                      "a \"%s\" section without \"websocket\" has no effect", keys[i]);
}

int ksock_bridge_check_config(ksock_runtime_t *rt, const ksock_config_t *cfg, char *errstr,
                              size_t errstr_size)
{
    const ksock_cfg_t *root = ksock_config_root(cfg);
    if (ksock_cfg_get(root, "websocket") == NULL) {
        warn_unused(rt, root);
        return 0;
    }
    parts_t p = {0};
    int rc = make_parts(rt, cfg, false, &p, errstr, errstr_size);
    const ksock_cfg_t *sec = ksock_cfg_get(root, "serializers");
    if (rc == 0 && sec) rc = serializers_section(rt, cfg, sec, NULL, errstr, errstr_size);
    if (rc == 0) rc = check_listed(rt, cfg, root, errstr, errstr_size);
    return rc;
}

int ksock_bridge_new_from_config(ksock_runtime_t *rt, const ksock_config_t *cfg,
                                 ksock_kafka_producer_t *producer, ksock_bridge_t **out,
                                 char *errstr, size_t errstr_size)
{
    *out = NULL;
    const ksock_cfg_t *root = ksock_config_root(cfg);
    if (ksock_cfg_get(root, "websocket") == NULL) {
        warn_unused(rt, root);
        return 0;
    }
    parts_t p = {0};
    int rc = make_parts(rt, cfg, true, &p, errstr, errstr_size);
    if (rc == 0) rc = check_listed(rt, cfg, root, errstr, errstr_size);
    ksock_bridge_t *b = NULL;
    if (rc == 0) {
        ksock_kafka_conf_t *kconf = NULL;
        rc = reader_conf(cfg, root, &kconf, errstr, errstr_size);
        ksock_bridge_opts_t bo = {.size = sizeof(bo),
                                  .max_inflight = (uint32_t)p.bs.max_inflight,
                                  .anonymous = p.anonymous,
                                  .kafka = kconf,
                                  .slow_policy = (ksock_bridge_slow_policy_t)p.bs.slow_client,
                                  .max_connections_per_principal =
                                      (uint32_t)p.bs.max_connections_per_principal,
                                  .publish_rate = (uint32_t)p.bs.publish_rate,
                                  .publish_burst = (uint32_t)p.bs.publish_burst};
        if (rc == 0)
            rc = ksock_bridge_new(rt, p.transport, p.auth, producer, &bo, &b, errstr, errstr_size);
        ksock_kafka_conf_free(kconf);
    }
    if (rc != 0) {
        parts_free(&p);
        return rc;
    }
    b->owns_instances = true; /* ksock_bridge_destroy() frees them from here on */
    b->serializers_fixed = true;
    b->cfg = cfg;
    b->drain_timeout_ms = (uint64_t)p.bs.drain_timeout;
    b->max_subscriptions = (uint64_t)p.bs.max_subscriptions;
    b->max_catchup = (uint64_t)p.bs.max_catchup_readers;
    b->partition_refresh_ms = (uint64_t)p.bs.partition_refresh;
    b->reader_linger_ms = (uint64_t)p.bs.reader_linger;
    b->slow_grace_ms = (uint64_t)p.bs.slow_client_grace;
    const ksock_cfg_t *sec = ksock_cfg_get(root, "serializers");
    if (sec)
        rc = serializers_section(rt, cfg, sec, b, errstr, errstr_size);
    else
        serializers_found(b);
    if (rc == 0 && b->serializers == NULL)
        rc = cfg_error(errstr, errstr_size, cfg, ksock_cfg_get(root, "websocket"),
                       "websocket: no serializer plugin loads: clients could not talk to it");
    if (rc == 0) rc = make_subprotocols(b);
    if (rc != 0) {
        ksock_bridge_destroy(b);
        return rc;
    }
    *out = b;
    return 0;
}

/* ---- Reload (reload.c applies what this makes) ------------------------------------ */

int ksock__br_config_reload(ksock_bridge_t *b, const ksock_config_t *cfg, br_reload_t *out,
                            char *errstr, size_t errstr_size)
{
    static const char *const auth_ignore[] = {"plugin", NULL};
    char err[1024];
    memset(out, 0, sizeof(*out));
    const ksock_cfg_t *root = ksock_config_root(cfg);
    const ksock_cfg_t *auth = ksock_cfg_get(root, "auth");
    bridge_section_t bs;
    const ksock_cfg_t *bsec = ksock_cfg_get(root, "bridge");
    if (ksock_options_apply(bridge_section, sizeof(ksock_option_t), cfg, bsec, "bridge", NULL, &bs,
                            err, sizeof(err)) != 0)
        return cfg_error(errstr, errstr_size, cfg, bsec, "%s", err);
    const char *aname = ksock_cfg_string(ksock_cfg_get(auth, "plugin"));
    out->anonymous = aname != NULL && strcmp(aname, "none") == 0;
    int rc = 0;
    if (!out->anonymous)
        rc = section_instance(b->rt, cfg, "auth", KSOCK_PLUGIN_AUTH, aname ? aname : "", auth,
                              auth_ignore, true, &out->auth, errstr, errstr_size);
    /* The serializers are made in a scratch bridge: ksock__br_serializer_add() fills its list. */
    ksock_bridge_t *tmp = rc == 0 ? calloc(1, sizeof(*tmp)) : NULL;
    if (rc == 0 && tmp == NULL) rc = KSOCK_E_NOMEM;
    if (rc == 0) {
        tmp->rt = b->rt;
        const ksock_cfg_t *sec = ksock_cfg_get(root, "serializers");
        if (sec)
            rc = serializers_section(b->rt, cfg, sec, tmp, errstr, errstr_size);
        else
            serializers_found(tmp);
        if (rc == 0 && tmp->serializers == NULL)
            rc = cfg_error(errstr, errstr_size, cfg, ksock_cfg_get(root, "websocket"),
                           "websocket: no serializer plugin loads: clients could not talk to it");
        out->serializers = tmp->serializers;
        free(tmp);
    }
    if (rc != 0) {
        ksock_plugin_instance_free(out->auth);
        ksock__br_serializers_free(out->serializers);
        memset(out, 0, sizeof(*out));
        return rc;
    }
    out->max_inflight = (uint32_t)bs.max_inflight;
    out->slow_policy = bs.slow_client;
    out->drain_timeout_ms = (uint64_t)bs.drain_timeout;
    out->max_subscriptions = (uint64_t)bs.max_subscriptions;
    out->max_catchup = (uint64_t)bs.max_catchup_readers;
    out->partition_refresh_ms = (uint64_t)bs.partition_refresh;
    out->reader_linger_ms = (uint64_t)bs.reader_linger;
    out->slow_grace_ms = (uint64_t)bs.slow_client_grace;
    out->max_per_principal = (uint64_t)bs.max_connections_per_principal;
    out->publish_rate = (double)bs.publish_rate;
    out->publish_burst = (double)(bs.publish_burst ? bs.publish_burst : bs.publish_rate);
    return 0;
}
