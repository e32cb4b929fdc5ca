/*
 * The serialization API (serde.h, spec II).
 *
 * Per-runtime state hangs off the runtime's serde slot (core/internal.h):
 * the two global strategies, the decode limits, and the plugin strategies
 * loaded by name. A plugin strategy owns its plugin instance; the state is
 * freed by the runtime before it unloads plugins, so every instance is
 * destroyed while its code is still mapped.
 */
#include "../internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct serde_state_s serde_state_t;

/* A serializer plugin instance wrapped as a strategy. */
typedef struct plugin_strategy_s {
    struct plugin_strategy_s *next;
    char *name;
    char *options;       /* the options text it was made with, or NULL */
    ksock_config_t *doc; /* parsed options; instances borrow from it */
    ksock_plugin_instance_t *pi;
    const ksock_serializer_vtable_t *vt;
    serde_state_t *state; /* for the decode limits */
    ksock_serde_strategy_t strategy;
} plugin_strategy_t;

struct serde_state_s {
    ksock_serde_strategy_t ser, de;
    bool has_ser, has_de;
    ksock_value_limits_t limits;
    plugin_strategy_t *plugins;
};

/* The fields a strategy must have: everything up to and including `data`. */
#define STRATEGY_MIN_SIZE (offsetof(ksock_serde_strategy_t, data) + sizeof(void *))

static void plugin_strategy_free(plugin_strategy_t *ps)
{
    ksock_plugin_instance_free(ps->pi);
    ksock_config_free(ps->doc);
    free(ps->name);
    free(ps->options);
    free(ps);
}

static void state_free(void *p)
{
    serde_state_t *st = p;
    while (st->plugins) {
        plugin_strategy_t *next = st->plugins->next;
        plugin_strategy_free(st->plugins);
        st->plugins = next;
    }
    free(st);
}

/* The runtime's state, created on first use. NULL only on ENOMEM. */
static serde_state_t *state_get(ksock_runtime_t *rt)
{
    serde_state_t *st = ksock__runtime_serde_state(rt);
    if (st) return st;
    st = calloc(1, sizeof(*st));
    if (st == NULL) return NULL;
    ksock_value_limits_default(&st->limits);
    ksock__runtime_set_serde_state(rt, st, state_free);
    return st;
}

/* ---- Plugin strategies ---------------------------------------------------------- */

static int plugin_encode(void *data, const ksock_value_t *msg, ksock_buf_t *out, char *errstr,
                         size_t errstr_size)
{
    plugin_strategy_t *ps = data;
    return ps->vt->encode_value(ps->pi->inst, msg, out, errstr, errstr_size);
}

static int plugin_decode(void *data, const void *buf, size_t len, ksock_value_t **out, char *errstr,
                         size_t errstr_size)
{
    plugin_strategy_t *ps = data;
    return ps->vt->decode_value(ps->pi->inst, buf, len, &ps->state->limits, out, errstr,
                                errstr_size);
}

static bool same_options(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

/* Parse the options text into a document whose root must be an object. */
static int parse_options(const char *name, const char *text, ksock_config_t **doc,
                         const ksock_cfg_t **obj, char *errstr, size_t errstr_size)
{
    *doc = NULL;
    *obj = NULL;
    if (text == NULL) return 0;
    char label[96];
    snprintf(label, sizeof(label), "serializer \"%s\" options", name);
    int rc = ksock_config_load_string(label, text, strlen(text), doc, errstr, errstr_size);
    if (rc != 0) return rc;
    *obj = ksock_config_root(*doc);
    if (ksock_cfg_type(*obj) != KSOCK_CFG_OBJECT) {
        ksock_errstr_set(errstr, errstr_size, "%s: not a JSON object", label);
        ksock_config_free(*doc);
        *doc = NULL;
        return KSOCK_E_CONFIG;
    }
    return 0;
}

/* The plugin's vtable, refused if it predates the serializer functions we call. */
static int serializer_vtable(ksock_plugin_t *p, const ksock_serializer_vtable_t **vt, char *errstr,
                             size_t errstr_size)
{
    const ksock_plugin_desc_t *d = ksock_plugin_desc(p);
    const ksock_serializer_vtable_t *v = d->vtable;
    if (v == NULL ||
        v->size <
            offsetof(ksock_serializer_vtable_t, decode_envelope) + sizeof(v->decode_envelope) ||
        v->encode_value == NULL || v->decode_value == NULL || v->frame_type == NULL) {
        ksock_errstr_set(errstr, errstr_size, "%s: serializer \"%s\" lacks value encode/decode",
                         ksock_plugin_file(p), d->name);
        return KSOCK_E_PLUGIN;
    }
    *vt = v;
    return 0;
}

static int plugin_strategy_new(ksock_runtime_t *rt, serde_state_t *st, const char *name,
                               const char *options, plugin_strategy_t **out, char *errstr,
                               size_t errstr_size)
{
    ksock_plugin_t *p;
    int rc = ksock_plugin_find(rt, KSOCK_PLUGIN_SERIALIZER, name, &p, errstr, errstr_size);
    plugin_strategy_t *ps = rc ? NULL : calloc(1, sizeof(*ps));
    if (rc == 0 && ps == NULL) rc = KSOCK_E_NOMEM;
    if (rc == 0) rc = serializer_vtable(p, &ps->vt, errstr, errstr_size);
    const ksock_cfg_t *obj = NULL;
    if (rc == 0) rc = parse_options(name, options, &ps->doc, &obj, errstr, errstr_size);
    if (rc == 0)
        rc = ksock_plugin_instance_new(rt, p, "serde", ps->doc, obj, NULL, &ps->pi, errstr,
                                       errstr_size);
    if (rc == 0) {
        ps->name = ksock__strdup(name);
        ps->options = ksock__strdup(options);
        if (ps->name == NULL || (options && ps->options == NULL)) {
            plugin_strategy_free(ps);
            return KSOCK_E_NOMEM;
        }
        ps->state = st;
        ps->strategy = (ksock_serde_strategy_t){
            .size = sizeof(ksock_serde_strategy_t),
            .name = ps->name,
            .frame_type = ps->vt->frame_type(ps->pi->inst),
            .encode = plugin_encode,
            .decode = plugin_decode,
            .data = ps,
        };
        *out = ps;
        return 0;
    }
    if (ps) {
        ksock_config_free(ps->doc);
        free(ps);
    }
    return rc;
}

int ksock_serde_strategy_from_plugin(ksock_runtime_t *rt, const char *name,
                                     const char *options_json, const ksock_serde_strategy_t **out,
                                     char *errstr, size_t errstr_size)
{
    if (rt == NULL || name == NULL || out == NULL) return KSOCK_E_INVAL;
    serde_state_t *st = state_get(rt);
    if (st == NULL) return KSOCK_E_NOMEM;
    for (plugin_strategy_t *ps = st->plugins; ps; ps = ps->next) {
        if (strcmp(ps->name, name) == 0 && same_options(ps->options, options_json)) {
            *out = &ps->strategy;
            return 0;
        }
    }
    plugin_strategy_t *ps;
    int rc = plugin_strategy_new(rt, st, name, options_json, &ps, errstr, errstr_size);
    if (rc != 0) return rc;
    ps->next = st->plugins;
    st->plugins = ps;
    *out = &ps->strategy;
    return 0;
}

int ksock__serde_plugin_of(const ksock_serde_strategy_t *s, const ksock_serializer_vtable_t **vt,
                           void **inst, const ksock_value_limits_t **lim)
{
    if (s == NULL || s->encode != plugin_encode) return KSOCK_E_INVAL;
    plugin_strategy_t *ps = s->data;
    if (ps->vt->encode_envelope == NULL || ps->vt->decode_envelope == NULL) return KSOCK_E_INVAL;
    *vt = ps->vt;
    *inst = ps->pi->inst;
    *lim = &ps->state->limits;
    return 0;
}

/* ---- Global strategies and limits ---------------------------------------------- */

static int strategy_usable(const ksock_serde_strategy_t *s, bool for_encode)
{
    if (s->size < STRATEGY_MIN_SIZE) return KSOCK_E_INVAL;
    if (for_encode ? s->encode == NULL : s->decode == NULL) return KSOCK_E_INVAL;
    if (for_encode && s->frame_type != KSOCK_FRAME_TEXT && s->frame_type != KSOCK_FRAME_BINARY)
        return KSOCK_E_INVAL;
    return 0;
}

/* Copy what the caller's struct has; fields beyond its size stay zero. */
static void strategy_copy(ksock_serde_strategy_t *dst, const ksock_serde_strategy_t *src)
{
    size_t n = src->size < sizeof(*dst) ? src->size : sizeof(*dst);
    memset(dst, 0, sizeof(*dst));
    memcpy(dst, src, n);
    dst->size = sizeof(*dst);
}

static int set_strategy(ksock_runtime_t *rt, const ksock_serde_strategy_t *s, bool ser)
{
    if (rt == NULL) return KSOCK_E_INVAL;
    if (s && strategy_usable(s, ser) != 0) return KSOCK_E_INVAL;
    serde_state_t *st = state_get(rt);
    if (st == NULL) return KSOCK_E_NOMEM;
    if (s) strategy_copy(ser ? &st->ser : &st->de, s);
    if (ser)
        st->has_ser = s != NULL;
    else
        st->has_de = s != NULL;
    return 0;
}

int ksock_serde_set_serialization_strategy(ksock_runtime_t *rt, const ksock_serde_strategy_t *s)
{
    return set_strategy(rt, s, true);
}

int ksock_serde_set_deserialization_strategy(ksock_runtime_t *rt, const ksock_serde_strategy_t *s)
{
    return set_strategy(rt, s, false);
}

int ksock_serde_set_default_by_name(ksock_runtime_t *rt, const char *name, char *errstr,
                                    size_t errstr_size)
{
    const ksock_serde_strategy_t *s;
    int rc = ksock_serde_strategy_from_plugin(rt, name, NULL, &s, errstr, errstr_size);
    if (rc == 0) rc = set_strategy(rt, s, true);
    if (rc == 0) rc = set_strategy(rt, s, false);
    return rc;
}

int ksock_serde_set_limits(ksock_runtime_t *rt, const ksock_value_limits_t *lim)
{
    if (rt == NULL || lim == NULL || lim->size < sizeof(*lim) || lim->max_depth == 0)
        return KSOCK_E_INVAL;
    serde_state_t *st = state_get(rt);
    if (st == NULL) return KSOCK_E_NOMEM;
    st->limits = *lim;
    st->limits.size = sizeof(st->limits);
    return 0;
}

void ksock_serde_get_limits(ksock_runtime_t *rt, ksock_value_limits_t *out)
{
    serde_state_t *st = rt ? ksock__runtime_serde_state(rt) : NULL;
    if (st)
        *out = st->limits;
    else
        ksock_value_limits_default(out);
}

/* ---- Serialize / deserialize ------------------------------------------------------ */

/* The strategy for this call: the caller's, else the global one. */
static const ksock_serde_strategy_t *pick(ksock_runtime_t *rt, const ksock_serde_strategy_t *custom,
                                          bool ser, char *errstr, size_t errstr_size)
{
    if (custom) return custom;
    serde_state_t *st = rt ? ksock__runtime_serde_state(rt) : NULL;
    if (st && ser && st->has_ser) return &st->ser;
    if (st && !ser && st->has_de) return &st->de;
    ksock_errstr_set(errstr, errstr_size,
                     "no global %sserialization strategy: call ksock_serde_set_default_by_name() "
                     "or ksock_serde_set_%sserialization_strategy()",
                     ser ? "" : "de", ser ? "" : "de");
    return NULL;
}

int ksock_serde_serialize(ksock_runtime_t *rt, const ksock_value_t *msg,
                          const ksock_serde_strategy_t *custom, ksock_buf_t *out,
                          ksock_frame_type_t *type, char *errstr, size_t errstr_size)
{
    if (msg == NULL || out == NULL) return KSOCK_E_INVAL;
    const ksock_serde_strategy_t *s = pick(rt, custom, true, errstr, errstr_size);
    if (s == NULL) return KSOCK_E_STATE;
    if (strategy_usable(s, true) != 0) {
        ksock_errstr_set(errstr, errstr_size, "strategy cannot serialize");
        return KSOCK_E_INVAL;
    }
    size_t before = out->len;
    int rc = s->encode(s->data, msg, out, errstr, errstr_size);
    if (rc != 0) {
        out->len = before; /* drop the partial frame; the buffer itself stays the caller's */
        if (out->data) out->data[before] = '\0';
        return rc < 0 ? rc : KSOCK_E_ENCODE;
    }
    if (type) *type = s->frame_type;
    return 0;
}

int ksock_serde_deserialize(ksock_runtime_t *rt, const void *data, size_t len,
                            const ksock_serde_strategy_t *custom, ksock_value_t **out, char *errstr,
                            size_t errstr_size)
{
    if ((data == NULL && len) || out == NULL) return KSOCK_E_INVAL;
    const ksock_serde_strategy_t *s = pick(rt, custom, false, errstr, errstr_size);
    if (s == NULL) return KSOCK_E_STATE;
    if (strategy_usable(s, false) != 0) {
        ksock_errstr_set(errstr, errstr_size, "strategy cannot deserialize");
        return KSOCK_E_INVAL;
    }
    ksock_value_t *v = NULL;
    int rc = s->decode(s->data, data ? data : "", len, &v, errstr, errstr_size);
    if (rc != 0) return rc < 0 ? rc : KSOCK_E_DECODE; /* contract: *out untouched on error */
    if (v == NULL) {
        ksock_errstr_set(errstr, errstr_size, "strategy returned no value");
        return KSOCK_E_INTERNAL;
    }
    *out = v;
    return 0;
}
