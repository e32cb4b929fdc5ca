/*
 * Kafka property sets: what the user gives (C calls or the "kafka" config
 * section), our own keys, secrets from files or the environment, and the
 * translation into an rd_kafka_conf_t.
 */
#include "kafka_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Properties that may come from <key>.file / <key>.env and never from a config file. */
static const char *const secret_keys[] = {"sasl.password", "ssl.key.password",
                                          "ssl.keystore.password", "sasl.oauthbearer.client.secret",
                                          NULL};

#define SECRET_FILE_MAX 65536

/* ---- Basic set operations ------------------------------------------------- */

int ksock_kafka_conf_new(ksock_kafka_conf_t **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : KSOCK_E_NOMEM;
}

static void prop_free(ksock__kprop_t *p)
{
    free(p->key);
    if (p->value) {
        /* Secrets should not linger in freed heap memory. */
        memset(p->value, 0, strlen(p->value));
        free(p->value);
    }
    free(p->origin);
}

void ksock_kafka_conf_free(ksock_kafka_conf_t *conf)
{
    if (conf == NULL) return;
    for (size_t i = 0; i < conf->n; i++)
        prop_free(&conf->v[i]);
    free(conf->v);
    free(conf);
}

static ksock__kprop_t *find(const ksock_kafka_conf_t *conf, const char *key)
{
    for (size_t i = 0; conf && i < conf->n; i++)
        if (strcmp(conf->v[i].key, key) == 0) return &conf->v[i];
    return NULL;
}

static void remove_key(ksock_kafka_conf_t *conf, const char *key)
{
    ksock__kprop_t *p = find(conf, key);
    if (p == NULL) return;
    size_t i = (size_t)(p - conf->v);
    prop_free(p);
    memmove(&conf->v[i], &conf->v[i + 1], (conf->n - i - 1) * sizeof(*p));
    conf->n--;
}

/* Set without checks; `origin` may be NULL. Keeps first-set order for dumps. */
static int put(ksock_kafka_conf_t *conf, const char *key, const char *value, const char *origin)
{
    char *v = strdup(value), *o = origin ? strdup(origin) : NULL;
    if (v == NULL || (origin && o == NULL)) {
        free(v);
        free(o);
        return KSOCK_E_NOMEM;
    }
    ksock__kprop_t *p = find(conf, key);
    if (p) {
        memset(p->value, 0, strlen(p->value));
        free(p->value);
        free(p->origin);
        p->value = v;
        p->origin = o;
        return 0;
    }
    if (conf->n == conf->cap) {
        size_t cap = conf->cap ? conf->cap * 2 : 16;
        ksock__kprop_t *nv = realloc(conf->v, cap * sizeof(*nv));
        if (nv == NULL) goto nomem;
        conf->v = nv;
        conf->cap = cap;
    }
    char *k = strdup(key);
    if (k == NULL) goto nomem;
    conf->v[conf->n++] = (ksock__kprop_t){k, v, o};
    return 0;
nomem:
    free(v);
    free(o);
    return KSOCK_E_NOMEM;
}

int ksock_kafka_conf_dup(const ksock_kafka_conf_t *conf, ksock_kafka_conf_t **out)
{
    int rc = ksock_kafka_conf_new(out);
    for (size_t i = 0; rc == 0 && conf && i < conf->n; i++)
        rc = put(*out, conf->v[i].key, conf->v[i].value, conf->v[i].origin);
    if (rc != 0) {
        ksock_kafka_conf_free(*out);
        *out = NULL;
    }
    return rc;
}

const char *ksock_kafka_conf_get(const ksock_kafka_conf_t *conf, const char *key)
{
    const ksock__kprop_t *p = find(conf, key);
    return p ? p->value : NULL;
}

/* ---- Secrets --------------------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static bool is_secret_key(const char *key)
{
    for (size_t i = 0; secret_keys[i]; i++)
        if (strcmp(key, secret_keys[i]) == 0) return true;
    return false;
}

bool ksock_kafka_conf_is_secret(const char *key)
{
    if (key == NULL) return false;
    /* The indirections name a file or a variable, which is not itself secret. */
    if (ends_with(key, ".file") || ends_with(key, ".env")) return false;
    return strstr(key, "password") || strstr(key, "secret") || strcmp(key, "ssl.key.pem") == 0 ||
           strcmp(key, "sasl.oauthbearer.config") == 0;
}

/* For "sasl.password.file" copy "sasl.password" into base; false if key is no indirection. */
static bool indirection_base(const char *key, char *base, size_t size)
{
    size_t n = strlen(key), cut;
    if (ends_with(key, ".file"))
        cut = 5;
    else if (ends_with(key, ".env"))
        cut = 4;
    else
        return false;
    if (n - cut >= size) return false;
    memcpy(base, key, n - cut);
    base[n - cut] = '\0';
    return true;
}

static int check_key(const char *key, char *errstr, size_t errstr_size)
{
    char base[128];
    if (key == NULL || key[0] == '\0') {
        ksock_errstr_set(errstr, errstr_size, "kafka: empty property name");
        return KSOCK_E_INVAL;
    }
    if (indirection_base(key, base, sizeof(base)) && !is_secret_key(base)) {
        ksock_errstr_set(errstr, errstr_size,
                         "kafka: property \"%s\": only sasl.password, ssl.key.password, "
                         "ssl.keystore.password and sasl.oauthbearer.client.secret can be read "
                         "from a file or the environment",
                         key);
        return KSOCK_E_INVAL;
    }
    return 0;
}

int ksock_kafka_conf_set(ksock_kafka_conf_t *conf, const char *key, const char *value, char *errstr,
                         size_t errstr_size)
{
    int rc = check_key(key, errstr, errstr_size);
    if (rc != 0) return rc;
    if (value == NULL) {
        ksock_errstr_set(errstr, errstr_size, "kafka: property \"%s\": no value", key);
        return KSOCK_E_INVAL;
    }
    rc = put(conf, key, value, NULL);
    if (rc != 0) ksock_errstr_set(errstr, errstr_size, "kafka: out of memory");
    return rc;
}

int ksock_kafka_conf_set_list(ksock_kafka_conf_t *conf, const char *const *kv, char *errstr,
                              size_t errstr_size)
{
    for (size_t i = 0; kv && kv[i]; i += 2) {
        int rc = ksock_kafka_conf_set(conf, kv[i], kv[i + 1], errstr, errstr_size);
        if (rc != 0) return rc;
    }
    return 0;
}

/* ---- From a config document ---------------------------------------------- */

/* Render a scalar (or an array of scalars, comma-joined) the way librdkafka reads it. */
static int cfg_value_text(const ksock_cfg_t *n, ksock_buf_t *out)
{
    switch (ksock_cfg_type(n)) {
    case KSOCK_CFG_STRING:
        return ksock_buf_appendf(out, "%s", ksock_cfg_string(n));
    case KSOCK_CFG_INT:
        return ksock_buf_appendf(out, "%lld", (long long)ksock_cfg_int(n));
    case KSOCK_CFG_DOUBLE:
        return ksock_buf_appendf(out, "%.17g", ksock_cfg_double(n));
    case KSOCK_CFG_BOOL:
        return ksock_buf_appendf(out, "%s", ksock_cfg_bool(n) ? "true" : "false");
    case KSOCK_CFG_ARRAY:
        for (size_t i = 0; i < ksock_cfg_count(n); i++) {
            const ksock_cfg_t *e = ksock_cfg_at(n, i, NULL);
            ksock_cfg_type_t t = ksock_cfg_type(e);
            if (t == KSOCK_CFG_ARRAY || t == KSOCK_CFG_OBJECT || t == KSOCK_CFG_NULL)
                return KSOCK_E_CONFIG;
            if (i > 0 && ksock_buf_append(out, ",", 1) != 0) return KSOCK_E_NOMEM;
            int rc = cfg_value_text(e, out);
            if (rc != 0) return rc;
        }
        return 0;
    default:
        return KSOCK_E_CONFIG;
    }
}

static int set_cfg_member(ksock_kafka_conf_t *conf, const ksock_config_t *doc, const char *key,
                          const ksock_cfg_t *n, char *errstr, size_t errstr_size)
{
    char origin[512];
    snprintf(origin, sizeof(origin), "%s:%d:%d", doc ? ksock_config_name(doc) : "config",
             ksock_cfg_line(n), ksock_cfg_column(n));
    if (is_secret_key(key)) {
        ksock_errstr_set(errstr, errstr_size,
                         "%s: kafka: key \"%s\": secrets do not belong in the config file; "
                         "use \"%s.file\" (a file holding it) or \"%s.env\" (an environment "
                         "variable)",
                         origin, key, key, key);
        return KSOCK_E_CONFIG;
    }
    char why[256];
    if (check_key(key, why, sizeof(why)) != 0) {
        ksock_errstr_set(errstr, errstr_size, "%s: %s", origin, why);
        return KSOCK_E_CONFIG;
    }
    ksock_buf_t text = KSOCK_BUF_INIT;
    int rc = cfg_value_text(n, &text);
    if (rc == KSOCK_E_CONFIG)
        ksock_errstr_set(errstr, errstr_size,
                         "%s: kafka: key \"%s\": expected a string, number, boolean or list "
                         "of them, got %s",
                         origin, key, ksock_cfg_type_name(ksock_cfg_type(n)));
    if (rc == 0) rc = put(conf, key, text.data ? text.data : "", origin);
    if (rc == KSOCK_E_NOMEM) ksock_errstr_set(errstr, errstr_size, "kafka: out of memory");
    ksock_buf_free(&text);
    return rc == KSOCK_E_NOMEM ? rc : (rc ? KSOCK_E_CONFIG : 0);
}

int ksock_kafka_conf_set_cfg(ksock_kafka_conf_t *conf, const ksock_config_t *doc,
                             const ksock_cfg_t *obj, char *errstr, size_t errstr_size)
{
    if (obj == NULL) return 0;
    if (ksock_cfg_type(obj) != KSOCK_CFG_OBJECT) {
        ksock_errstr_set(errstr, errstr_size, "%s:%d:%d: kafka: expected an object, got %s",
                         doc ? ksock_config_name(doc) : "config", ksock_cfg_line(obj),
                         ksock_cfg_column(obj), ksock_cfg_type_name(ksock_cfg_type(obj)));
        return KSOCK_E_CONFIG;
    }
    for (size_t i = 0; i < ksock_cfg_count(obj); i++) {
        const char *key = NULL;
        const ksock_cfg_t *n = ksock_cfg_at(obj, i, &key);
        int rc = set_cfg_member(conf, doc, key, n, errstr, errstr_size);
        if (rc != 0) return rc;
    }
    return 0;
}

int ksock_kafka_conf_dump(const ksock_kafka_conf_t *conf, ksock_buf_t *out)
{
    for (size_t i = 0; conf && i < conf->n; i++) {
        const ksock__kprop_t *p = &conf->v[i];
        bool mask = ksock_kafka_conf_is_secret(p->key);
        if (ksock_buf_appendf(out, "%s=%s\n", p->key, mask ? "***" : p->value) != 0)
            return KSOCK_E_NOMEM;
    }
    return 0;
}

/* ---- Security options ------------------------------------------------------ */

static bool one_of(const char *s, const char *const *set)
{
    for (size_t i = 0; set[i]; i++)
        if (strcasecmp(s, set[i]) == 0) return true;
    return false;
}

static int sec_check(const ksock_kafka_security_options_t *o, char *errstr, size_t errstr_size)
{
    static const char *const mechs[] = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", NULL};
    static const char *const protos[] = {"plaintext", "ssl", "sasl_plaintext", "sasl_ssl", NULL};
    if (o == NULL || o->size < offsetof(ksock_kafka_security_options_t, sasl_password)) {
        ksock_errstr_set(errstr, errstr_size, "kafka security: options missing or too old");
        return KSOCK_E_INVAL;
    }
    if (o->sasl_mechanism && !one_of(o->sasl_mechanism, mechs)) {
        ksock_errstr_set(errstr, errstr_size,
                         "kafka security: unknown SASL mechanism \"%s\" (PLAIN, SCRAM-SHA-256, "
                         "SCRAM-SHA-512)",
                         o->sasl_mechanism);
        return KSOCK_E_INVAL;
    }
    if (o->protocol && !one_of(o->protocol, protos)) {
        ksock_errstr_set(errstr, errstr_size, "kafka security: unknown protocol \"%s\"",
                         o->protocol);
        return KSOCK_E_INVAL;
    }
    int ways = !!o->sasl_password_file + !!o->sasl_password_env + !!o->sasl_password;
    if (ways > 1 || (o->key_password_file && o->key_password_env)) {
        ksock_errstr_set(errstr, errstr_size,
                         "kafka security: a password is given more than one way");
        return KSOCK_E_INVAL;
    }
    if (o->sasl_mechanism && (o->sasl_username == NULL || ways == 0)) {
        ksock_errstr_set(errstr, errstr_size,
                         "kafka security: SASL %s needs a user name and a password",
                         o->sasl_mechanism);
        return KSOCK_E_INVAL;
    }
    return 0;
}

static const char *sec_protocol(const ksock_kafka_security_options_t *o)
{
    if (o->protocol) return o->protocol;
    bool tls = o->ca_location || o->certificate_location || o->key_location;
    if (o->sasl_mechanism) return tls ? "sasl_ssl" : "sasl_plaintext";
    return tls ? "ssl" : NULL;
}

int ksock__kconf_apply_security(ksock_kafka_conf_t *conf, const ksock_kafka_security_options_t *o,
                                char *errstr, size_t errstr_size)
{
    int rc = sec_check(o, errstr, errstr_size);
    if (rc != 0) return rc;
    const char *proto = sec_protocol(o);
    bool tls = proto && strstr(proto, "ssl") != NULL;
    /* clang-format off: key, value pairs */
    const char *kv[] = {
        "security.protocol",
        proto,
        "ssl.ca.location",
        o->ca_location,
        "ssl.certificate.location",
        o->certificate_location,
        "ssl.key.location",
        o->key_location,
        "ssl.key.password.file",
        o->key_password_file,
        "ssl.key.password.env",
        o->key_password_env,
        "ssl.endpoint.identification.algorithm",
        tls ? (o->no_hostname_verification ? "none" : "https") : NULL,
        "sasl.mechanisms",
        o->sasl_mechanism,
        "sasl.username",
        o->sasl_username,
        "sasl.password.file",
        o->sasl_password_file,
        "sasl.password.env",
        o->sasl_password_env,
        "sasl.password",
        o->sasl_password,
    };
    /* clang-format on */
    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i += 2) {
        if (kv[i + 1] == NULL) continue;
        rc = put(conf, kv[i], kv[i + 1], NULL);
        if (rc != 0) return rc;
    }
    return 0;
}

int ksock_kafka_conf_set_security(ksock_kafka_conf_t *conf,
                                  const ksock_kafka_security_options_t *opts, char *errstr,
                                  size_t errstr_size)
{
    return ksock__kconf_apply_security(conf, opts, errstr, errstr_size);
}

/* ---- Building an rd_kafka_conf_t ----------------------------------------- */

/* Read a one-line secret; the message names the file, never its content. */
static int read_secret_file(ksock_runtime_t *rt, const char *key, const char *path,
                            ksock_buf_t *out, char *errstr, size_t errstr_size)
{
    /* O_NONBLOCK: open() on a FIFO would wait for a writer forever, and a device never ends. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        ksock_errstr_set(errstr, errstr_size, "kafka: %s: cannot read \"%s\": %s", key, path,
                         strerror(errno));
        if (fd >= 0) close(fd);
        return KSOCK_E_CONFIG;
    }
    if (!S_ISREG(st.st_mode)) {
        ksock_errstr_set(errstr, errstr_size, "kafka: %s: \"%s\" is not a regular file", key, path);
        close(fd);
        return KSOCK_E_CONFIG;
    }
    if (st.st_mode & S_IROTH)
        KSOCK_WARN(rt, KSOCK__KAFKA_COMPONENT, "%s: \"%s\" is readable by every user", key, path);
    char buf[SECRET_FILE_MAX];
    ssize_t n = read(fd, buf, sizeof(buf));
    close(fd);
    if (n < 0 || (size_t)n >= sizeof(buf)) {
        ksock_errstr_set(errstr, errstr_size, "kafka: %s: \"%s\": %s", key, path,
                         n < 0 ? strerror(errno) : "larger than 64 KiB");
        return KSOCK_E_CONFIG;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    int rc = ksock_buf_append(out, buf, (size_t)n);
    memset(buf, 0, sizeof(buf));
    return rc ? KSOCK_E_NOMEM : 0;
}

/* Replace <secret>.file / <secret>.env by <secret> itself. */
static int resolve_secrets(ksock_runtime_t *rt, ksock_kafka_conf_t *m, char *errstr,
                           size_t errstr_size)
{
    char fkey[160], ekey[160];
    for (size_t i = 0; secret_keys[i]; i++) {
        const char *k = secret_keys[i];
        snprintf(fkey, sizeof(fkey), "%s.file", k);
        snprintf(ekey, sizeof(ekey), "%s.env", k);
        const char *file = ksock_kafka_conf_get(m, fkey), *env = ksock_kafka_conf_get(m, ekey);
        if (!file && !env) continue;
        if ((file && env) || ksock_kafka_conf_get(m, k)) {
            ksock_errstr_set(errstr, errstr_size,
                             "kafka: %s is given more than one way (%s, %s.file, %s.env): keep "
                             "one",
                             k, k, k, k);
            return KSOCK_E_CONFIG;
        }
        ksock_buf_t secret = KSOCK_BUF_INIT;
        int rc = 0;
        if (file) {
            rc = read_secret_file(rt, fkey, file, &secret, errstr, errstr_size);
        } else {
            const char *v = getenv(env);
            if (v == NULL) {
                ksock_errstr_set(errstr, errstr_size,
                                 "kafka: %s: environment variable \"%s\" is not set", ekey, env);
                rc = KSOCK_E_CONFIG;
            } else {
                rc = ksock_buf_append(&secret, v, strlen(v));
            }
        }
        if (rc == 0) rc = put(m, k, secret.data ? secret.data : "", NULL);
        if (secret.data) memset(secret.data, 0, secret.len);
        ksock_buf_free(&secret);
        if (rc != 0) return rc;
        remove_key(m, fkey);
        remove_key(m, ekey);
    }
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    if (strcmp(s, "true") == 0 || strcmp(s, "1") == 0) {
        *out = true;
    } else if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0) {
        *out = false;
    } else {
        return KSOCK_E_INVAL;
    }
    return 0;
}

/* Take our own keys out of `m` into `info`. */
static int take_own_keys(ksock__kind_t kind, ksock_kafka_conf_t *m, ksock__kbuild_t *info,
                         char *errstr, size_t errstr_size)
{
    info->dispatch_batch = KSOCK__KAFKA_DEFAULT_BATCH;
    info->auto_store = true;
    const char *b = ksock_kafka_conf_get(m, "ksock.dispatch.batch");
    if (b) {
        char *end;
        long v = strtol(b, &end, 10);
        if (*b == '\0' || *end != '\0' || v < 1 || v > 100000) {
            ksock_errstr_set(errstr, errstr_size,
                             "kafka: ksock.dispatch.batch: \"%s\" is not a number in 1..100000", b);
            return KSOCK_E_CONFIG;
        }
        info->dispatch_batch = (int)v;
        remove_key(m, "ksock.dispatch.batch");
    }
    const char *st = ksock_kafka_conf_get(m, "enable.auto.offset.store");
    if (kind == KSOCK__KCONSUMER) {
        if (st && parse_bool(st, &info->auto_store) != 0) {
            ksock_errstr_set(errstr, errstr_size,
                             "kafka: enable.auto.offset.store: \"%s\" is not a boolean", st);
            return KSOCK_E_CONFIG;
        }
        /* We store after the handler; librdkafka must not store on hand-over. */
        if (put(m, "enable.auto.offset.store", "false", NULL) != 0) return KSOCK_E_NOMEM;
        info->has_group = ksock_kafka_conf_get(m, "group.id") != NULL;
        /*
         * librdkafka's assign() needs a group object even for manual assignment;
         * a consumer without group.id gets a placeholder it never joins or commits to.
         */
        if (!info->has_group && (put(m, "group.id", "ksock-manual-assignment", NULL) != 0 ||
                                 put(m, "enable.auto.commit", "false", NULL) != 0))
            return KSOCK_E_NOMEM;
    }
    return 0;
}

/* Idempotence on by default, unless the user asked for weaker acks. */
static int producer_defaults(ksock_kafka_conf_t *m)
{
    if (ksock_kafka_conf_get(m, "enable.idempotence")) return 0;
    const char *acks = ksock_kafka_conf_get(m, "acks");
    if (acks == NULL) acks = ksock_kafka_conf_get(m, "request.required.acks");
    if (acks && strcmp(acks, "all") != 0 && strcmp(acks, "-1") != 0) return 0;
    int rc = put(m, "enable.idempotence", "true", NULL);
    if (rc == 0 && acks == NULL) rc = put(m, "acks", "all", NULL);
    return rc;
}

/* "embedded" / "embedded:N" -> the mock cluster's address. */
static int resolve_bootstrap(ksock_runtime_t *rt, ksock_kafka_conf_t *m, ksock__kbuild_t *info,
                             char *errstr, size_t errstr_size)
{
    const char *bs = ksock_kafka_conf_get(m, "bootstrap.servers");
    if (bs == NULL) bs = ksock_kafka_conf_get(m, "metadata.broker.list");
    if (bs == NULL || bs[0] == '\0') {
        ksock_errstr_set(errstr, errstr_size,
                         "kafka: bootstrap.servers is not set (give the brokers, or "
                         "\"embedded\" for the in-process test cluster)");
        return KSOCK_E_CONFIG;
    }
    if (strncmp(bs, "embedded", 8) != 0) return 0;
    long n = 1;
    if (bs[8] == ':') {
        char *end;
        n = strtol(bs + 9, &end, 10);
        if (bs[9] == '\0' || *end != '\0') n = 0;
    } else if (bs[8] != '\0') {
        n = 0;
    }
    if (n < 1 || n > 32) {
        ksock_errstr_set(errstr, errstr_size,
                         "kafka: bootstrap.servers \"%s\": expected \"embedded\" or "
                         "\"embedded:N\" with N in 1..32",
                         bs);
        return KSOCK_E_CONFIG;
    }
    const char *proto = ksock_kafka_conf_get(m, "security.protocol");
    if (proto && strcasecmp(proto, "plaintext") != 0) {
        ksock_errstr_set(errstr, errstr_size,
                         "kafka: the embedded cluster speaks plaintext only, not "
                         "security.protocol=%s",
                         proto);
        return KSOCK_E_CONFIG;
    }
    const char *addr = ksock__kctx_embedded(rt, (int)n, errstr, errstr_size);
    if (addr == NULL) return KSOCK_E_CONFIG;
    info->embedded_brokers = (int)n;
    remove_key(m, "metadata.broker.list");
    return put(m, "bootstrap.servers", addr, NULL);
}

static int merge(ksock_kafka_conf_t *m, const ksock_kafka_conf_t *src)
{
    for (size_t i = 0; src && i < src->n; i++) {
        int rc = put(m, src->v[i].key, src->v[i].value, src->v[i].origin);
        if (rc != 0) return rc;
    }
    return 0;
}

/* Hand every property to librdkafka; its message names an unknown or bad one. */
static int apply_to_rd(const ksock_kafka_conf_t *m, rd_kafka_conf_t *rc_conf, char *errstr,
                       size_t errstr_size)
{
    for (size_t i = 0; i < m->n; i++) {
        const ksock__kprop_t *p = &m->v[i];
        char why[512];
        if (rd_kafka_conf_set(rc_conf, p->key, p->value, why, sizeof(why)) == RD_KAFKA_CONF_OK)
            continue;
        /* librdkafka may quote the value; a secret's value must not reach a log. */
        if (ksock_kafka_conf_is_secret(p->key))
            snprintf(why, sizeof(why), "invalid value for configuration property \"%s\"", p->key);
        ksock_errstr_set(errstr, errstr_size, "%s%skafka: property \"%s\": %s",
                         p->origin ? p->origin : "", p->origin ? ": " : "", p->key, why);
        return KSOCK_E_CONFIG;
    }
    return 0;
}

int ksock__kconf_build(ksock_runtime_t *rt, ksock__kind_t kind, const ksock_kafka_conf_t *user,
                       rd_kafka_conf_t **out, ksock__kbuild_t *info, char *errstr,
                       size_t errstr_size)
{
    ksock_kafka_conf_t *m = NULL;
    rd_kafka_conf_t *rdc = NULL;
    memset(info, 0, sizeof(*info));
    int rc = ksock_kafka_conf_new(&m);
    /* Order: our defaults, runtime-wide security, then the handle's own properties. */
    if (rc == 0) rc = put(m, "client.id", "ksock", NULL);
    if (rc == 0) rc = merge(m, ksock__kctx_security(rt));
    if (rc == 0) rc = merge(m, user);
    if (rc == KSOCK_E_NOMEM) ksock_errstr_set(errstr, errstr_size, "kafka: out of memory");
    if (rc == 0 && kind == KSOCK__KPRODUCER) rc = producer_defaults(m);
    if (rc == 0) rc = take_own_keys(kind, m, info, errstr, errstr_size);
    if (rc == 0) rc = resolve_secrets(rt, m, errstr, errstr_size);
    if (rc == 0) rc = resolve_bootstrap(rt, m, info, errstr, errstr_size);
    if (rc == 0 && ksock_log_enabled(rt, KSOCK_LOG_DEBUG)) {
        ksock_buf_t dump = KSOCK_BUF_INIT;
        if (ksock_kafka_conf_dump(m, &dump) == 0 && dump.data)
            KSOCK_DEBUG(rt, KSOCK__KAFKA_COMPONENT, "%s configuration:\n%s",
                        kind == KSOCK__KPRODUCER ? "producer" : "consumer", dump.data);
        ksock_buf_free(&dump);
    }
    if (rc == 0) {
        rdc = rd_kafka_conf_new();
        rc = apply_to_rd(m, rdc, errstr, errstr_size);
    }
    ksock_kafka_conf_free(m);
    if (rc != 0) {
        if (rdc) rd_kafka_conf_destroy(rdc);
        return rc == KSOCK_E_NOMEM ? rc : KSOCK_E_CONFIG;
    }
    *out = rdc;
    return 0;
}

/* ---- Schema of our own keys (documentation) -------------------------------- */

static const ksock_option_t kafka_schema[] = {
    {"bootstrap.servers", KSOCK_OPT_STRING, KSOCK_OPT_REQUIRED, NULL, 0, NULL, 0, 0,
     "Brokers (host:port,...), or \"embedded\" / \"embedded:N\" for librdkafka's in-process "
     "mock cluster with N brokers (data in memory only)"},
    {"sasl.password.file", KSOCK_OPT_STRING, 0, NULL, 0, NULL, 0, 0,
     "File holding sasl.password (first line)"},
    {"sasl.password.env", KSOCK_OPT_STRING, 0, NULL, 0, NULL, 0, 0,
     "Environment variable holding sasl.password"},
    {"ssl.key.password.file", KSOCK_OPT_STRING, 0, NULL, 0, NULL, 0, 0,
     "File holding ssl.key.password"},
    {"ssl.key.password.env", KSOCK_OPT_STRING, 0, NULL, 0, NULL, 0, 0,
     "Environment variable holding ssl.key.password"},
    {"ssl.keystore.password.file", KSOCK_OPT_STRING, 0, NULL, 0, NULL, 0, 0,
     "File holding ssl.keystore.password"},
    {"ssl.keystore.password.env", KSOCK_OPT_STRING, 0, NULL, 0, NULL, 0, 0,
     "Environment variable holding ssl.keystore.password"},
    {"enable.auto.offset.store", KSOCK_OPT_BOOL, 0, "true", 0, NULL, 0, 0,
     "Consumer: store a message's offset after its handler returned 0 (false: store with "
     "ksock_kafka_consumer_store)"},
    {"ksock.dispatch.batch", KSOCK_OPT_INT, 0, "256", 0, NULL, 1, 100000,
     "Most events or messages handled per loop wake-up before other work runs"},
    KSOCK_OPTION_END,
};

const ksock_option_t *ksock_kafka_options_schema(void)
{
    return kafka_schema;
}
