/*
 * Typed option schemas: validate a config object and fill a struct.
 *
 * Messages follow one shape so operators can grep them:
 *   FILE:LINE:COL: OWNER: key "k": reason
 * Unknown keys are errors, not warnings (a typo must not silently fall
 * back to a default).
 */
#include "internal.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *ksock_opt_type_name(ksock_opt_type_t t)
{
    switch (t) {
    case KSOCK_OPT_STRING:
        return "string";
    case KSOCK_OPT_INT:
        return "int";
    case KSOCK_OPT_BOOL:
        return "bool";
    case KSOCK_OPT_DURATION:
        return "duration";
    case KSOCK_OPT_SIZE:
        return "size";
    case KSOCK_OPT_ENUM:
        return "enum";
    case KSOCK_OPT_LIST:
        return "list";
    case KSOCK_OPT_OBJECT:
        return "object";
    case KSOCK_OPT_DOUBLE:
        return "double";
    case KSOCK_OPT_ARRAY:
        return "array";
    }
    return "unknown";
}

/* ---- Unit parsing ----------------------------------------------------------- */

/* Parse "<number><unit>" where unit is looked up in `units`; no unit => `bare_mult` (0 refuses). */
typedef struct {
    const char *name;
    double mult;
} unit_t;

static int parse_with_units(const char *s, const unit_t *units, double bare_mult, int64_t *out)
{
    if (s == NULL) return KSOCK_E_INVAL;
    while (isspace((unsigned char)*s))
        s++;
    if (*s == '\0' || *s == '-' || *s == '+') return KSOCK_E_INVAL;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (end == s || errno != 0 || !isfinite(v) || v < 0) return KSOCK_E_INVAL;
    while (isspace((unsigned char)*end))
        end++;
    double mult = bare_mult;
    if (*end != '\0') {
        mult = 0;
        for (const unit_t *u = units; u->name; u++) {
            if (strcasecmp(end, u->name) == 0) {
                mult = u->mult;
                break;
            }
        }
        if (mult == 0) return KSOCK_E_INVAL;
    } else if (mult == 0 && v != 0) {
        return KSOCK_E_INVAL;
    }
    double r = v * (mult == 0 ? 1 : mult);
    if (r > 9.2e18) return KSOCK_E_INVAL;
    *out = (int64_t)(r + 0.5);
    return 0;
}

int ksock_parse_duration_ms(const char *s, int64_t *out)
{
    static const unit_t units[] = {{"us", 0.001},  {"ms", 1},       {"s", 1000}, {"m", 60000},
                                   {"h", 3600000}, {"d", 86400000}, {NULL, 0}};
    /* A unit is required (is "30" seconds or milliseconds?), except for zero. */
    return parse_with_units(s, units, 0, out);
}

int ksock_parse_size(const char *s, int64_t *out)
{
    static const unit_t units[] = {{"B", 1},
                                   {"KB", 1e3},
                                   {"MB", 1e6},
                                   {"GB", 1e9},
                                   {"KiB", 1024.0},
                                   {"MiB", 1048576.0},
                                   {"GiB", 1073741824.0},
                                   {"K", 1024.0},
                                   {"M", 1048576.0},
                                   {"G", 1073741824.0},
                                   {NULL, 0}};
    return parse_with_units(s, units, 1, out);
}

/* ---- Schema walking ------------------------------------------------------------ */

/* Copy entry i into *o, tolerating tables built with a smaller (older) entry size. */
static bool option_at(const ksock_option_t *schema, size_t stride, size_t i, ksock_option_t *o)
{
    memset(o, 0, sizeof(*o));
    size_t n = stride < sizeof(*o) ? stride : sizeof(*o);
    memcpy(o, (const char *)schema + i * stride, n);
    return o->name != NULL;
}

typedef struct {
    char *errstr;
    size_t errstr_size;
    const ksock_config_t *doc;
    const char *owner;
} ctx_t;

static int fail(ctx_t *c, const ksock_cfg_t *at, const char *key, const char *fmt, ...)
    KSOCK_PRINTF(4, 5);

static int fail(ctx_t *c, const ksock_cfg_t *at, const char *key, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    char where[300];
    if (at && ksock_cfg_line(at) > 0)
        snprintf(where, sizeof(where), "%s:%d:%d", ksock__cfg_doc_name(c->doc), ksock_cfg_line(at),
                 ksock_cfg_column(at));
    else
        snprintf(where, sizeof(where), "%s", ksock__cfg_doc_name(c->doc));
    if (key)
        ksock_errstr_set(c->errstr, c->errstr_size, "%s: %s: key \"%s\": %s", where, c->owner, key,
                         reason);
    else
        ksock_errstr_set(c->errstr, c->errstr_size, "%s: %s: %s", where, c->owner, reason);
    return KSOCK_E_CONFIG;
}

static int64_t *slot_i64(void *t, const ksock_option_t *o)
{
    return (int64_t *)((char *)t + o->offset);
}

static int check_range(ctx_t *c, const ksock_cfg_t *at, const ksock_option_t *o, int64_t v)
{
    if (o->min < o->max && (v < o->min || v > o->max))
        return fail(c, at, o->name, "value %lld is outside [%lld, %lld]", (long long)v,
                    (long long)o->min, (long long)o->max);
    return 0;
}

/* An enum option from its name; a miss lists the allowed names. */
static int set_enum(ctx_t *c, const ksock_cfg_t *at, const ksock_option_t *o, const char *text,
                    void *t)
{
    for (int i = 0; o->enum_values && o->enum_values[i]; i++) {
        if (strcmp(o->enum_values[i], text) == 0) {
            *(int *)((char *)t + o->offset) = i;
            return 0;
        }
    }
    char allowed[256] = "";
    size_t len = 0;
    for (int i = 0; o->enum_values && o->enum_values[i]; i++)
        len += (size_t)snprintf(allowed + len, len < sizeof(allowed) ? sizeof(allowed) - len : 0,
                                "%s%s", i ? ", " : "", o->enum_values[i]);
    return fail(c, at, o->name, "\"%s\" is not one of: %s", text, allowed);
}

/* A textual default for a list is comma-separated. On failure l->n counts what is to free. */
static int set_list_from_text(ksock_strlist_t *l, const char *text)
{
    for (const char *p = text; *p;) {
        size_t n = strcspn(p, ",");
        char **v = realloc(l->v, (l->n + 1) * sizeof(char *));
        if (v == NULL) return KSOCK_E_NOMEM;
        l->v = v;
        l->v[l->n] = malloc(n + 1);
        if (l->v[l->n] == NULL) return KSOCK_E_NOMEM;
        memcpy(l->v[l->n], p, n);
        l->v[l->n++][n] = '\0';
        p += n + (p[n] == ',');
    }
    return 0;
}

/* Set a value from text (defaults, and string forms of durations/sizes). */
static int set_from_text(ctx_t *c, const ksock_cfg_t *at, const ksock_option_t *o, const char *text,
                         void *t)
{
    int64_t num;
    switch (o->type) {
    case KSOCK_OPT_STRING: {
        char **slot = (char **)((char *)t + o->offset);
        free(*slot);
        *slot = ksock__strdup(text);
        return *slot || text == NULL ? 0 : KSOCK_E_NOMEM;
    }
    case KSOCK_OPT_INT: {
        char *end;
        errno = 0;
        long long x = strtoll(text, &end, 0);
        if (errno || end == text || *end)
            return fail(c, at, o->name, "\"%s\" is not an integer", text);
        *slot_i64(t, o) = x;
        return check_range(c, at, o, x);
    }
    case KSOCK_OPT_DOUBLE: {
        char *end;
        double d = strtod(text, &end);
        if (end == text || *end || !isfinite(d))
            return fail(c, at, o->name, "\"%s\" is not a number", text);
        *(double *)((char *)t + o->offset) = d;
        return 0;
    }
    case KSOCK_OPT_BOOL:
        if (strcmp(text, "true") == 0)
            *(bool *)((char *)t + o->offset) = true;
        else if (strcmp(text, "false") == 0)
            *(bool *)((char *)t + o->offset) = false;
        else
            return fail(c, at, o->name, "\"%s\" is not true or false", text);
        return 0;
    case KSOCK_OPT_DURATION:
        if (ksock_parse_duration_ms(text, &num) != 0)
            return fail(
                c, at, o->name,
                "\"%s\" is not a duration (use a number with ms, s, m, h or d, e.g. \"30s\")",
                text);
        *slot_i64(t, o) = num;
        return check_range(c, at, o, num);
    case KSOCK_OPT_SIZE:
        if (ksock_parse_size(text, &num) != 0)
            return fail(
                c, at, o->name,
                "\"%s\" is not a size (use bytes or B, KB, MB, GB, KiB, MiB, GiB, e.g. \"64KiB\")",
                text);
        *slot_i64(t, o) = num;
        return check_range(c, at, o, num);
    case KSOCK_OPT_ENUM:
        return set_enum(c, at, o, text, t);
    case KSOCK_OPT_LIST:
        return set_list_from_text((ksock_strlist_t *)((char *)t + o->offset), text);
    case KSOCK_OPT_OBJECT:
    case KSOCK_OPT_ARRAY:
        return fail(c, at, o->name, "an object or array option cannot have a textual default");
    }
    return fail(c, at, o->name, "unknown option type %d", (int)o->type);
}

static int wrong_type(ctx_t *c, const ksock_cfg_t *n, const ksock_option_t *o, const char *want)
{
    return fail(c, n, o->name, "expected %s, got %s", want, ksock_cfg_type_name(ksock_cfg_type(n)));
}

static int set_from_node(ctx_t *c, const ksock_cfg_t *n, const ksock_option_t *o, void *t)
{
    ksock_cfg_type_t ty = ksock_cfg_type(n);
    switch (o->type) {
    case KSOCK_OPT_STRING:
    case KSOCK_OPT_ENUM:
        if (ty != KSOCK_CFG_STRING) return wrong_type(c, n, o, "a string");
        return set_from_text(c, n, o, ksock_cfg_string(n), t);
    case KSOCK_OPT_INT:
        if (ty != KSOCK_CFG_INT) return wrong_type(c, n, o, "an integer");
        *slot_i64(t, o) = ksock_cfg_int(n);
        return check_range(c, n, o, ksock_cfg_int(n));
    case KSOCK_OPT_DOUBLE:
        if (ty != KSOCK_CFG_INT && ty != KSOCK_CFG_DOUBLE) return wrong_type(c, n, o, "a number");
        *(double *)((char *)t + o->offset) = ksock_cfg_double(n);
        return 0;
    case KSOCK_OPT_BOOL:
        if (ty != KSOCK_CFG_BOOL) return wrong_type(c, n, o, "true or false");
        *(bool *)((char *)t + o->offset) = ksock_cfg_bool(n);
        return 0;
    case KSOCK_OPT_DURATION:
    case KSOCK_OPT_SIZE:
        if (ty == KSOCK_CFG_INT) {
            if (ksock_cfg_int(n) < 0) return fail(c, n, o->name, "must not be negative");
            *slot_i64(t, o) = ksock_cfg_int(n);
            return check_range(c, n, o, ksock_cfg_int(n));
        }
        if (ty != KSOCK_CFG_STRING)
            return wrong_type(c, n, o,
                              o->type == KSOCK_OPT_DURATION ? "a duration like \"30s\""
                                                            : "a size like \"64KiB\"");
        return set_from_text(c, n, o, ksock_cfg_string(n), t);
    case KSOCK_OPT_LIST: {
        if (ty != KSOCK_CFG_ARRAY) return wrong_type(c, n, o, "an array of strings");
        ksock_strlist_t *l = (ksock_strlist_t *)((char *)t + o->offset);
        size_t cnt = ksock_cfg_count(n);
        for (size_t i = 0; i < cnt; i++) {
            const ksock_cfg_t *e = ksock_cfg_at(n, i, NULL);
            if (ksock_cfg_type(e) != KSOCK_CFG_STRING)
                return fail(c, e, o->name, "element %zu: expected a string, got %s", i,
                            ksock_cfg_type_name(ksock_cfg_type(e)));
        }
        l->v = cnt ? calloc(cnt, sizeof(char *)) : NULL;
        if (cnt && l->v == NULL) return KSOCK_E_NOMEM;
        /* On failure l->n counts what ksock_options_free() releases. */
        for (size_t i = 0; i < cnt; i++) {
            if ((l->v[l->n] = ksock__strdup(ksock_cfg_string(ksock_cfg_at(n, i, NULL)))) == NULL)
                return KSOCK_E_NOMEM;
            l->n++;
        }
        return 0;
    }
    case KSOCK_OPT_OBJECT:
        if (ty != KSOCK_CFG_OBJECT) return wrong_type(c, n, o, "an object");
        *(const ksock_cfg_t **)((char *)t + o->offset) = n;
        return 0;
    case KSOCK_OPT_ARRAY:
        if (ty != KSOCK_CFG_ARRAY) return wrong_type(c, n, o, "an array");
        *(const ksock_cfg_t **)((char *)t + o->offset) = n;
        return 0;
    }
    return fail(c, n, o->name, "unknown option type %d", (int)o->type);
}

static bool in_list(const char *const *list, const char *key)
{
    for (size_t i = 0; list && list[i]; i++)
        if (strcmp(list[i], key) == 0) return true;
    return false;
}

int ksock_options_apply(const ksock_option_t *schema, size_t stride, const ksock_config_t *doc,
                        const ksock_cfg_t *obj, const char *owner, const char *const *ignore,
                        void *target, char *errstr, size_t errstr_size)
{
    ctx_t c = {errstr, errstr_size, doc, owner ? owner : "config"};
    ksock_option_t o;

    if (obj && ksock_cfg_type(obj) != KSOCK_CFG_OBJECT)
        return fail(&c, obj, NULL, "expected an object, got %s",
                    ksock_cfg_type_name(ksock_cfg_type(obj)));

    /* Unknown keys first: they are the most common mistake (typos). */
    for (size_t i = 0; i < ksock_cfg_count(obj); i++) {
        const char *key;
        const ksock_cfg_t *v = ksock_cfg_at(obj, i, &key);
        if (in_list(ignore, key)) continue;
        bool known = false;
        for (size_t j = 0; schema && option_at(schema, stride, j, &o); j++) {
            if (strcmp(o.name, key) == 0) {
                known = true;
                break;
            }
        }
        if (!known) {
            char names[512] = "";
            size_t len = 0;
            for (size_t j = 0; schema && option_at(schema, stride, j, &o) && len < sizeof(names);
                 j++)
                len += (size_t)snprintf(names + len, sizeof(names) - len, "%s%s", j ? ", " : "",
                                        o.name);
            for (size_t j = 0; ignore && ignore[j] && len < sizeof(names); j++)
                len += (size_t)snprintf(names + len, sizeof(names) - len, "%s%s", len ? ", " : "",
                                        ignore[j]);
            return fail(&c, v, key, "unknown key (known keys: %s)", len ? names : "none");
        }
    }

    for (size_t j = 0; schema && option_at(schema, stride, j, &o); j++) {
        const ksock_cfg_t *v = ksock_cfg_get(obj, o.name);
        int rc;
        if (v) {
            rc = set_from_node(&c, v, &o, target);
        } else if (o.flags & KSOCK_OPT_REQUIRED) {
            rc = fail(&c, obj, o.name, "missing (required, type %s)", ksock_opt_type_name(o.type));
        } else if (o.def) {
            rc = set_from_text(&c, obj, &o, o.def, target);
        } else {
            rc = 0; /* stays zero/NULL */
        }
        if (rc != 0) return rc;
    }
    return 0;
}

void ksock_options_free(const ksock_option_t *schema, size_t stride, void *target)
{
    ksock_option_t o;
    if (schema == NULL || target == NULL) return;
    for (size_t j = 0; option_at(schema, stride, j, &o); j++) {
        if (o.type == KSOCK_OPT_STRING) {
            char **slot = (char **)((char *)target + o.offset);
            free(*slot);
            *slot = NULL;
        } else if (o.type == KSOCK_OPT_LIST) {
            ksock_strlist_t *l = (ksock_strlist_t *)((char *)target + o.offset);
            for (size_t i = 0; i < l->n; i++)
                free(l->v[i]);
            free(l->v);
            l->v = NULL;
            l->n = 0;
        }
    }
}

int ksock_options_check_schema(const ksock_option_t *schema, size_t stride, const char *owner,
                               char *errstr, size_t errstr_size)
{
    ksock_option_t o, p;
    if (schema == NULL) return 0;
    if (stride < offsetof(ksock_option_t, description) + sizeof(const char *)) {
        ksock_errstr_set(errstr, errstr_size, "%s: option table entries are too short (%zu bytes)",
                         owner, stride);
        return KSOCK_E_ABI;
    }
    for (size_t j = 0; option_at(schema, stride, j, &o); j++) {
        if (o.type < KSOCK_OPT_STRING || o.type > KSOCK_OPT_ARRAY) {
            ksock_errstr_set(errstr, errstr_size, "%s: option \"%s\" has unknown type %d", owner,
                             o.name, (int)o.type);
            return KSOCK_E_PLUGIN;
        }
        if (o.type == KSOCK_OPT_ENUM && (o.enum_values == NULL || o.enum_values[0] == NULL)) {
            ksock_errstr_set(errstr, errstr_size, "%s: enum option \"%s\" lists no values", owner,
                             o.name);
            return KSOCK_E_PLUGIN;
        }
        for (size_t k = 0; k < j; k++) {
            option_at(schema, stride, k, &p);
            if (strcmp(p.name, o.name) == 0) {
                ksock_errstr_set(errstr, errstr_size, "%s: option \"%s\" is declared twice", owner,
                                 o.name);
                return KSOCK_E_PLUGIN;
            }
        }
        /* A default must parse: validate it into a scratch buffer. */
        if (o.def && o.type != KSOCK_OPT_OBJECT && o.type != KSOCK_OPT_ARRAY) {
            union {
                char *s;
                int64_t i;
                double d;
                bool b;
                int e;
                ksock_strlist_t l;
            } scratch;
            memset(&scratch, 0, sizeof(scratch));
            ksock_option_t tmp = o;
            tmp.offset = 0;
            ctx_t c = {errstr, errstr_size, NULL, owner};
            int rc = set_from_text(&c, NULL, &tmp, o.def, &scratch);
            ksock_option_t one[2] = {tmp, KSOCK_OPTION_END};
            ksock_options_free(one, sizeof(ksock_option_t), &scratch);
            if (rc != 0) return KSOCK_E_PLUGIN;
        }
    }
    return 0;
}
