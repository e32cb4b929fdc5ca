/*
 * Reload (docs/bridge.md, Reload): a new configuration applied to a
 * running bridge without closing a connection.
 *
 * New handshakes see the new authenticator and serializer set at once;
 * a connection keeps the principal it authenticated with and the
 * serializer instance it negotiated until it closes. The shared fan-out
 * groups are per serializer instance (fanout.c), so a retired instance
 * keeps feeding its own groups: nothing in fanout.c or subs.c knows about
 * reloads. A retired instance is freed with the last connection that uses
 * it (ksock__br_serializer_release, from on_close).
 *
 * The authenticator and the serializer list are read on the transport's
 * thread (on_handshake) under b->rlock; the swap takes the same lock, so
 * the old authenticator is freed only when no handshake uses it. The
 * limits are plain values read on the loop, where a reload runs too.
 *
 * The listeners are the transport's to change (set_listeners, ABI 1.3),
 * first, since binding is what can still fail. What cannot change without
 * a restart (the rest of the "websocket" section: the transport's options
 * and subprotocol list; the "kafka" section) is compared and logged as
 * such; the rest is still applied.
 */
#include "bridge_internal.h"

void ksock__br_serializers_free(serializer_t *s)
{
    for (serializer_t *next; s; s = next) {
        next = s->next;
        ksock_plugin_instance_free(s->pi);
        free(s->name);
        free(s);
    }
}

static serializer_t *ser_find(serializer_t *list, const char *name)
{
    for (; list; list = list->next)
        if (strcmp(list->name, name) == 0) return list;
    return NULL;
}

void ksock__br_serializer_release(ksock_bridge_t *b, serializer_t *s)
{
    if (s == NULL || s->refs == 0 || --s->refs > 0 || !s->retired) return;
    serializer_t **pp = &b->ser_retired;
    while (*pp && *pp != s)
        pp = &(*pp)->next;
    if (*pp == NULL) return;
    *pp = s->next;
    /* What it delivered since it was retired counts for its successor: counters never go back. */
    serializer_t *heir = ser_find(b->serializers, s->name);
    if (heir) {
        heir->delivered += s->delivered - s->delivered0;
        heir->bytes += s->bytes - s->bytes0;
    }
    s->next = NULL;
    ksock__br_serializers_free(s);
}

/* Structural equality of two config nodes (positions ignored). */
static bool cfg_same(const ksock_cfg_t *a, const ksock_cfg_t *b)
{
    if (a == NULL || b == NULL) return a == b;
    ksock_cfg_type_t t = ksock_cfg_type(a);
    if (t != ksock_cfg_type(b)) return false;
    switch (t) {
    case KSOCK_CFG_NULL:
        return true;
    case KSOCK_CFG_BOOL:
        return ksock_cfg_bool(a) == ksock_cfg_bool(b);
    case KSOCK_CFG_INT:
        return ksock_cfg_int(a) == ksock_cfg_int(b);
    case KSOCK_CFG_DOUBLE:
        return ksock_cfg_double(a) == ksock_cfg_double(b);
    case KSOCK_CFG_STRING:
        return strcmp(ksock_cfg_string(a), ksock_cfg_string(b)) == 0;
    case KSOCK_CFG_ARRAY:
    case KSOCK_CFG_OBJECT:
        break;
    }
    size_t n = ksock_cfg_count(a);
    if (n != ksock_cfg_count(b)) return false;
    for (size_t i = 0; i < n; i++) {
        const char *key = NULL;
        const ksock_cfg_t *x = ksock_cfg_at(a, i, &key);
        const ksock_cfg_t *y =
            t == KSOCK_CFG_OBJECT ? ksock_cfg_get(b, key) : ksock_cfg_at(b, i, NULL);
        if (!cfg_same(x, y)) return false;
    }
    return true;
}

/*
 * Listeners added or removed: the transport rebinds them (ABI 1.3
 * set_listeners), all or nothing, before anything else of the reload is
 * applied, so a bind that fails fails the whole reload. A transport
 * without it keeps its listeners and says so.
 */
static int apply_listeners(ksock_bridge_t *b, const ksock_config_t *cfg, char *errstr, size_t n)
{
    if (b->cfg == NULL) return 0;
    const ksock_cfg_t *ol =
        ksock_cfg_get(ksock_cfg_get(ksock_config_root(b->cfg), "websocket"), "listeners");
    const ksock_cfg_t *nl =
        ksock_cfg_get(ksock_cfg_get(ksock_config_root(cfg), "websocket"), "listeners");
    if (cfg_same(ol, nl)) return 0;
    if (!KSOCK_HAS_FIELD(b->tv, ksock_transport_vtable_t, set_listeners) ||
        b->tv->set_listeners == NULL) {
        ksock_log(b->rt, KSOCK_LOG_WARN, COMPONENT, NULL, 0,
                  "reload: listeners changed, but transport \"%s\" cannot change them while "
                  "running (ABI < 1.3): restart ksockd to apply (the running listeners are kept)",
                  ksock_plugin_desc(b->transport->plugin)->name);
        return 0;
    }
    char why[512] = "";
    int rc = b->tv->set_listeners(b->transport->inst, nl, why, sizeof(why));
    if (rc != 0) {
        ksock_errstr_set(errstr, n, "%s: websocket: %s", ksock_config_name(cfg),
                         why[0] ? why : ksock_strerror(rc));
        return rc;
    }
    ksock_log(b->rt, KSOCK_LOG_INFO, COMPONENT,
              (ksock_kv_t[]){KSOCK_KV_I64("listeners", (int64_t)ksock_cfg_count(nl))}, 1,
              "reload: listeners applied (connections of removed listeners stay open)");
    return 0;
}

/* Sections that only a restart applies: say so (the rest of the reload still applies). */
static void warn_fixed(ksock_bridge_t *b, const ksock_config_t *cfg)
{
    if (b->cfg == NULL) return;
    const ksock_cfg_t *o = ksock_config_root(b->cfg), *n = ksock_config_root(cfg);
    const ksock_cfg_t *ow = ksock_cfg_get(o, "websocket"), *nw = ksock_cfg_get(n, "websocket");
    /* Every key of either side, once: the new section's, then those only the old one had. */
    for (int side = 0; side < 2; side++) {
        const ksock_cfg_t *sec = side == 0 ? nw : ow, *other = side == 0 ? ow : nw;
        for (size_t i = 0; i < ksock_cfg_count(sec); i++) {
            const char *key = NULL;
            const ksock_cfg_t *x = ksock_cfg_at(sec, i, &key);
            const ksock_cfg_t *y = ksock_cfg_get(other, key);
            if (strcmp(key, "listeners") == 0 || (side == 1 && y != NULL) || cfg_same(x, y))
                continue;
            ksock_log(b->rt, KSOCK_LOG_WARN, COMPONENT, (ksock_kv_t[]){KSOCK_KV_STR("key", key)}, 1,
                      "reload: websocket.%s changed: restart ksockd to apply", key);
        }
    }
    if (!cfg_same(ksock_cfg_get(o, "kafka"), ksock_cfg_get(n, "kafka")))
        ksock_log(b->rt, KSOCK_LOG_WARN, COMPONENT, NULL, 0,
                  "reload: the kafka section changed: restart ksockd to apply");
}

/* The transport's subprotocol list is fixed at listen(): a serializer outside it cannot be added.
 */
static int check_servable(const ksock_bridge_t *b, const br_reload_t *r, char *errstr, size_t n)
{
    for (const serializer_t *s = r->serializers; s; s = s->next) {
        bool found = false;
        for (size_t i = 0; !found && b->subprotocols && b->subprotocols[i]; i++)
            found = strcmp(b->subprotocols[i] + strlen(SUBPROTO_PREFIX), s->name) == 0;
        if (!found) {
            ksock_errstr_set(errstr, n,
                             "serializers: \"%s\" was not served at start (the listeners' "
                             "subprotocol list is fixed): restart ksockd to apply",
                             s->name);
            return KSOCK_E_CONFIG;
        }
    }
    return 0;
}

/* The old list: unused instances freed now, the others retired until their last connection. */
static void retire(ksock_bridge_t *b, serializer_t *old)
{
    for (serializer_t *s = old, *next; s; s = next) {
        next = s->next;
        s->next = NULL;
        serializer_t *heir = ser_find(b->serializers, s->name);
        if (heir) { /* the metrics go on under the same name */
            heir->delivered = s->delivered;
            heir->bytes = s->bytes;
        }
        if (s->refs == 0) {
            ksock__br_serializers_free(s);
            continue;
        }
        s->retired = true;
        s->delivered0 = s->delivered;
        s->bytes0 = s->bytes;
        s->next = b->ser_retired;
        b->ser_retired = s;
    }
}

static void apply_limits(ksock_bridge_t *b, const br_reload_t *r)
{
    b->opts.max_inflight = r->max_inflight;
    b->resume_at = r->max_inflight - (r->max_inflight + 3) / 4;
    b->slow_policy = r->slow_policy;
    b->drain_timeout_ms = r->drain_timeout_ms;
    b->max_subscriptions = r->max_subscriptions;
    b->max_catchup = r->max_catchup;
    b->partition_refresh_ms = r->partition_refresh_ms;
    b->reader_linger_ms = r->reader_linger_ms;
    b->slow_grace_ms = r->slow_grace_ms;
    b->publish_rate = r->publish_rate;
    b->publish_burst = r->publish_burst;
    pthread_mutex_lock(&b->plock); /* read by on_handshake on the transport's thread */
    b->max_per_principal = r->max_per_principal;
    pthread_mutex_unlock(&b->plock);
}

int ksock_bridge_reload(ksock_bridge_t *b, const ksock_config_t *cfg, char *errstr,
                        size_t errstr_size)
{
    if (b == NULL || cfg == NULL) {
        ksock_errstr_set(errstr, errstr_size, "bridge reload: NULL argument");
        return KSOCK_E_INVAL;
    }
    if (!b->owns_instances || b->stopped || b->draining) {
        ksock_errstr_set(errstr, errstr_size, "bridge reload: %s",
                         b->owns_instances ? "the bridge is stopping"
                                           : "the bridge was not made from a configuration");
        return KSOCK_E_STATE;
    }
    if (ksock_cfg_get(ksock_config_root(cfg), "websocket") == NULL) {
        ksock_errstr_set(errstr, errstr_size,
                         "%s: the websocket section was removed: restart ksockd to apply",
                         ksock_config_name(cfg));
        return KSOCK_E_CONFIG;
    }
    /* The checks of --check-config first, then the instances; nothing changes until both pass. */
    int rc = ksock_bridge_check_config(b->rt, cfg, errstr, errstr_size);
    br_reload_t r;
    if (rc == 0) rc = ksock__br_config_reload(b, cfg, &r, errstr, errstr_size);
    if (rc != 0) return rc;
    if ((rc = check_servable(b, &r, errstr, errstr_size)) != 0 ||
        (rc = apply_listeners(b, cfg, errstr, errstr_size)) != 0) {
        ksock_plugin_instance_free(r.auth);
        ksock__br_serializers_free(r.serializers);
        return rc;
    }
    warn_fixed(b, cfg);
    pthread_mutex_lock(&b->rlock);
    ksock_plugin_instance_t *old_auth = b->auth;
    serializer_t *old_ser = b->serializers;
    b->auth = r.auth;
    b->av = r.auth ? r.auth->vtable : NULL;
    b->opts.anonymous = r.anonymous;
    b->serializers = r.serializers;
    pthread_mutex_unlock(&b->rlock);
    ksock_plugin_instance_free(old_auth); /* no handshake holds it: they run under rlock */
    retire(b, old_ser);
    apply_limits(b, &r);
    b->cfg = cfg;
    b->reloads++;
    ksock_buf_t sp = KSOCK_BUF_INIT;
    for (serializer_t *s = b->serializers; s; s = s->next)
        ksock_buf_appendf(&sp, "%s%s%s", s == b->serializers ? "" : ",", SUBPROTO_PREFIX, s->name);
    ksock_log(b->rt, KSOCK_LOG_INFO, COMPONENT,
              (ksock_kv_t[]){
                  KSOCK_KV_STR("subprotocols", sp.data ? sp.data : ""),
                  KSOCK_KV_STR("auth", r.auth ? ksock_plugin_desc(r.auth->plugin)->name : "none"),
                  KSOCK_KV_I64("connections", (int64_t)b->nconns)},
              3, "bridge reloaded");
    ksock_buf_free(&sp);
    return 0;
}

void ksock__br_reload_free(ksock_bridge_t *b)
{
    ksock__br_serializers_free(b->ser_retired);
    b->ser_retired = NULL;
    pthread_mutex_destroy(&b->rlock);
}
