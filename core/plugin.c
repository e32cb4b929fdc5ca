/*
 * The plugin loader and registry.
 *
 * A plugin file is opened with RTLD_NOW | RTLD_LOCAL: every symbol must
 * resolve at load time (an unresolved one is a refusal, not a crash later)
 * and nothing it exports can shadow another plugin's symbols. Its single
 * entry symbol returns a descriptor that is checked field by field before
 * any other plugin code runs; the host then keeps a copy of it at the
 * host's own size, zero-filled past what the plugin provided, so a plugin
 * built against an older minor reads as "field absent".
 *
 * One unit (~840 lines): descriptor checks, vtable copies, instances and
 * the search path share the registry and the frozen ABI 1.0 sizes; the
 * checks are one table (docs/plugins.md) that reads best in one place.
 */
#include "internal.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef KSOCK_PLUGIN_DIR
#define KSOCK_PLUGIN_DIR "/usr/local/lib/ksock/plugins"
#endif

struct ksock_plugin_s {
    struct ksock_plugin_s *next;
    char *file;               /* real path, or "(builtin)" */
    void *handle;             /* dlopen handle; NULL for built-ins */
    ksock_plugin_desc_t desc; /* host-sized copy; desc.vtable points at `vtable` */
    void *vtable;             /* host-sized copy of the plugin's vtable, defaults filled in */
    unsigned instances;
};

/* Descriptor size at ABI 1.0: everything up to and including fini. */
#define DESC_SIZE_1_0 (offsetof(ksock_plugin_desc_t, fini) + sizeof(void (*)(void)))

/*
 * Vtable sizes at ABI 1.0, per kind: the end of the last member that 1.0
 * has. When a later minor appends members these expressions keep their
 * 1.0 value, so older plugins stay loadable (sizeof would not).
 */
#define END_OF(type, member) (offsetof(type, member) + sizeof(((type *)0)->member))

static size_t vtable_size_1_0(uint32_t kind)
{
    switch (kind) {
    case KSOCK_PLUGIN_TRANSPORT:
        return END_OF(ksock_transport_vtable_t, stop);
    case KSOCK_PLUGIN_SERIALIZER:
        return END_OF(ksock_serializer_vtable_t, decode_envelope);
    case KSOCK_PLUGIN_RECONNECT:
        return END_OF(ksock_reconnect_vtable_t, stable_after_ms);
    case KSOCK_PLUGIN_AUTH:
        return END_OF(ksock_auth_vtable_t, validate_token);
    case KSOCK_PLUGIN_LOGSINK:
        return END_OF(ksock_logsink_vtable_t, stats);
    }
    return 0;
}

static const char *const kind_names[] = {NULL,        "transport", "serializer",
                                         "reconnect", "auth",      "logsink"};

const char *ksock_plugin_kind_name(ksock_plugin_kind_t kind)
{
    return (unsigned)kind < sizeof(kind_names) / sizeof(kind_names[0]) ? kind_names[kind] : NULL;
}

int ksock_plugin_kind_parse(const char *name, ksock_plugin_kind_t *out)
{
    for (int i = 1; i <= KSOCK_PLUGIN_LOGSINK; i++) {
        if (strcmp(name, kind_names[i]) == 0) {
            *out = (ksock_plugin_kind_t)i;
            return 0;
        }
    }
    return KSOCK_E_INVAL;
}

const char *ksock_plugin_default_dir(void)
{
    return KSOCK_PLUGIN_DIR;
}

static bool valid_name(const char *s)
{
    if (s == NULL || *s == '\0' || strlen(s) > 64) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
            return false;
    return true;
}

/*
 * The functions a plugin of each kind must provide (docs/plugins.md, "What
 * each kind must provide"). Everything else is optional: the loader's copy
 * of the vtable gets a default for it (vtable_copy) or leaves it NULL.
 */
static const char *missing_function(uint32_t kind, const void *vt)
{
    switch (kind) {
    case KSOCK_PLUGIN_LOGSINK:
        return ((const ksock_logsink_vtable_t *)vt)->write ? NULL : "write";
    case KSOCK_PLUGIN_SERIALIZER: {
        const ksock_serializer_vtable_t *s = vt;
        if (!s->encode_envelope) return "encode_envelope";
        return s->decode_envelope ? NULL : "decode_envelope";
    }
    case KSOCK_PLUGIN_RECONNECT:
        return ((const ksock_reconnect_vtable_t *)vt)->next_delay ? NULL : "next_delay";
    case KSOCK_PLUGIN_AUTH:
        return ((const ksock_auth_vtable_t *)vt)->authenticate ? NULL : "authenticate";
    case KSOCK_PLUGIN_TRANSPORT: {
        const ksock_transport_vtable_t *t = vt;
        if (!t->send) return "send";
        if (!t->close) return "close";
        if (!t->stop) return "stop";
        return (t->listen || t->connect) ? NULL : "listen or connect";
    }
    }
    return NULL;
}

/* ---- Defaults for optional functions ---------------------------------------- */

static int default_create(const ksock_plugin_ctx_t *ctx, const void *options, void **inst,
                          char *errstr, size_t errstr_size)
{
    (void)ctx, (void)options, (void)errstr, (void)errstr_size;
    *inst = NULL; /* a stateless plugin */
    return 0;
}

static void default_destroy(void *inst)
{
    (void)inst;
}

static ksock_frame_type_t default_frame_type(void *inst)
{
    (void)inst;
    return KSOCK_FRAME_BINARY;
}

static int default_encode_value(void *inst, const ksock_value_t *v, ksock_buf_t *out, char *errstr,
                                size_t errstr_size)
{
    (void)inst, (void)v, (void)out;
    ksock_errstr_set(errstr, errstr_size, "this serializer encodes envelopes only");
    return KSOCK_E_UNSUPPORTED;
}

static int default_decode_value(void *inst, const void *data, size_t len,
                                const ksock_value_limits_t *lim, ksock_value_t **out, char *errstr,
                                size_t errstr_size)
{
    (void)inst, (void)data, (void)len, (void)lim;
    *out = NULL;
    ksock_errstr_set(errstr, errstr_size, "this serializer decodes envelopes only");
    return KSOCK_E_UNSUPPORTED;
}

static int default_generate_token(void *inst, const ksock_value_t *user, char **token, char *errstr,
                                  size_t errstr_size)
{
    (void)inst, (void)user;
    *token = NULL;
    ksock_errstr_set(errstr, errstr_size, "this authenticator does not issue tokens");
    return KSOCK_E_UNSUPPORTED;
}

static int default_validate_token(void *inst, const char *token, ksock_value_t **user, char *errstr,
                                  size_t errstr_size)
{
    (void)inst, (void)token;
    *user = NULL;
    ksock_errstr_set(errstr, errstr_size, "this authenticator does not validate tokens");
    return KSOCK_E_UNSUPPORTED;
}

static size_t vtable_host_size(uint32_t kind)
{
    switch (kind) {
    case KSOCK_PLUGIN_TRANSPORT:
        return sizeof(ksock_transport_vtable_t);
    case KSOCK_PLUGIN_SERIALIZER:
        return sizeof(ksock_serializer_vtable_t);
    case KSOCK_PLUGIN_RECONNECT:
        return sizeof(ksock_reconnect_vtable_t);
    case KSOCK_PLUGIN_AUTH:
        return sizeof(ksock_auth_vtable_t);
    case KSOCK_PLUGIN_LOGSINK:
        return sizeof(ksock_logsink_vtable_t);
    }
    return 0;
}

/*
 * The host's copy of a checked vtable: this host's size, members the plugin
 * did not have (an older minor's shorter vtable) NULL, and the optional
 * functions a plugin left NULL given their defaults, so the core calls
 * create, destroy, a serializer's four functions and an authenticator's
 * token functions without checking.
 * `size` keeps the plugin's own value. NULL on ENOMEM.
 */
static void *vtable_copy(uint32_t kind, const void *vt)
{
    size_t host = vtable_host_size(kind), vsize = *(const size_t *)vt;
    void *c = calloc(1, host);
    if (c == NULL) return NULL;
    memcpy(c, vt, vsize < host ? vsize : host);
    ksock_vtable_head_t *h = c;
    if (h->create == NULL) h->create = default_create;
    if (h->destroy == NULL) h->destroy = default_destroy;
    if (kind == KSOCK_PLUGIN_SERIALIZER) {
        ksock_serializer_vtable_t *s = c;
        if (s->frame_type == NULL) s->frame_type = default_frame_type;
        if (s->encode_value == NULL) s->encode_value = default_encode_value;
        if (s->decode_value == NULL) s->decode_value = default_decode_value;
    } else if (kind == KSOCK_PLUGIN_AUTH) {
        ksock_auth_vtable_t *a = c;
        if (a->generate_token == NULL) a->generate_token = default_generate_token;
        if (a->validate_token == NULL) a->validate_token = default_validate_token;
    }
    return c;
}

/*
 * dlopen() refuses a plugin that imports libksock symbols of a newer ABI
 * minor before its descriptor can be read: the symbol versions in
 * core/libksock.map make the dynamic loader say "version `KSOCK_1.N' not
 * found". Turn that into the same refusal the descriptor check gives.
 */
static int refuse_dlopen(const char *file, const char *e, char *errstr, size_t errstr_size)
{
    const char *v = strstr(e, "version `KSOCK_");
    unsigned major, minor;
    if (v && sscanf(v, "version `KSOCK_%u.%u'", &major, &minor) == 2) {
        ksock_errstr_set(errstr, errstr_size,
                         "plugin %s refused: built for plugin ABI %u.%u, newer than this host's "
                         "%d.%d (upgrade ksock): it needs libksock symbol version KSOCK_%u.%u",
                         file, major, minor, KSOCK_PLUGIN_ABI_MAJOR, KSOCK_PLUGIN_ABI_MINOR, major,
                         minor);
        return KSOCK_E_ABI;
    }
    ksock_errstr_set(errstr, errstr_size, "plugin %s refused: cannot load it: %s", file, e);
    return KSOCK_E_PLUGIN;
}

int ksock_plugin_desc_check(const ksock_plugin_desc_t *d, const char *file, char *errstr,
                            size_t errstr_size)
{
#define REFUSE(code, ...)                                                                          \
    do {                                                                                           \
        char why_[400];                                                                            \
        snprintf(why_, sizeof(why_), __VA_ARGS__);                                                 \
        ksock_errstr_set(errstr, errstr_size, "plugin %s refused: %s", file, why_);                \
        return (code);                                                                             \
    } while (0)

    if (d == NULL) REFUSE(KSOCK_E_PLUGIN, "its entry function returned NULL");
    if (d->magic != KSOCK_PLUGIN_MAGIC)
        REFUSE(KSOCK_E_ABI,
               "bad magic 0x%08x (expected 0x%08x): not a KafkaSocks plugin descriptor", d->magic,
               KSOCK_PLUGIN_MAGIC);
    if (d->abi_major != KSOCK_PLUGIN_ABI_MAJOR)
        REFUSE(KSOCK_E_ABI,
               "built for plugin ABI %u.%u, this host speaks %d.%d (the major version must match)",
               d->abi_major, d->abi_minor, KSOCK_PLUGIN_ABI_MAJOR, KSOCK_PLUGIN_ABI_MINOR);
    if (d->abi_minor > KSOCK_PLUGIN_ABI_MINOR)
        REFUSE(KSOCK_E_ABI,
               "built for plugin ABI %u.%u, newer than this host's %d.%d (upgrade ksock)",
               d->abi_major, d->abi_minor, KSOCK_PLUGIN_ABI_MAJOR, KSOCK_PLUGIN_ABI_MINOR);
    if (d->struct_size < DESC_SIZE_1_0)
        REFUSE(KSOCK_E_ABI, "descriptor is %u bytes, shorter than the %zu bytes of ABI %d.0",
               d->struct_size, (size_t)DESC_SIZE_1_0, KSOCK_PLUGIN_ABI_MAJOR);
    const char *kind = ksock_plugin_kind_name((ksock_plugin_kind_t)d->kind);
    if (kind == NULL) REFUSE(KSOCK_E_PLUGIN, "unknown plugin kind %u", d->kind);
    if (!valid_name(d->name))
        REFUSE(KSOCK_E_PLUGIN, "name \"%s\" is not 1-64 characters of [a-z0-9_-]",
               d->name ? d->name : "(null)");
    if (d->vtable == NULL) REFUSE(KSOCK_E_PLUGIN, "%s \"%s\" has no vtable", kind, d->name);
    size_t vsize = *(const size_t *)d->vtable;
    if (vsize < vtable_size_1_0(d->kind))
        REFUSE(KSOCK_E_ABI, "%s vtable is %zu bytes, shorter than the %zu bytes of ABI %d.0", kind,
               vsize, vtable_size_1_0(d->kind), KSOCK_PLUGIN_ABI_MAJOR);
    const char *missing = missing_function(d->kind, d->vtable);
    if (missing)
        REFUSE(KSOCK_E_PLUGIN, "%s \"%s\" lacks the required function %s", kind, d->name, missing);
    if (d->options) {
        if (d->options_struct_size == 0)
            REFUSE(KSOCK_E_PLUGIN, "declares options but options_struct_size is 0");
        char why[300];
        int bad = ksock_options_check_schema(d->options, d->option_size, d->name, why, sizeof(why));
        /* KSOCK_E_ABI: entries shorter than ABI 1.0's ksock_option_t; else a bad table. */
        if (bad != 0)
            REFUSE(bad == KSOCK_E_ABI ? KSOCK_E_ABI : KSOCK_E_PLUGIN, "bad option table: %s", why);
    }
    return 0;
#undef REFUSE
}

static ksock_plugin_t *find_loaded(ksock_runtime_t *rt, uint32_t kind, const char *name,
                                   const char *file)
{
    for (ksock_plugin_t *p = rt->plugins; p; p = p->next) {
        if (file && strcmp(p->file, file) == 0) return p;
        if (name && p->desc.kind == kind && strcmp(p->desc.name, name) == 0) return p;
    }
    return NULL;
}

/* Check, de-duplicate, init and register a descriptor. Takes the dl handle. */
static int add_plugin(ksock_runtime_t *rt, const ksock_plugin_desc_t *d, const char *file,
                      void *handle, ksock_plugin_t **out, char *errstr, size_t errstr_size)
{
    int rc = ksock_plugin_desc_check(d, file, errstr, errstr_size);
    if (rc != 0) goto fail;
    ksock_plugin_t *dup = find_loaded(rt, d->kind, d->name, NULL);
    if (dup) {
        ksock_errstr_set(errstr, errstr_size,
                         "plugin %s refused: %s \"%s\" is already provided by %s", file,
                         ksock_plugin_kind_name((ksock_plugin_kind_t)d->kind), d->name, dup->file);
        rc = KSOCK_E_EXIST;
        goto fail;
    }
    /* Allocate before init(): a plugin that was initialised is never dropped unfinished. */
    ksock_plugin_t *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        rc = KSOCK_E_NOMEM;
        goto fail;
    }
    size_t n = d->struct_size < sizeof(p->desc) ? d->struct_size : sizeof(p->desc);
    memcpy(&p->desc, d, n);
    p->vtable = vtable_copy(d->kind, d->vtable);
    p->file = ksock__strdup(file);
    if (p->vtable == NULL || p->file == NULL) {
        ksock_errstr_set(errstr, errstr_size, "plugin %s: out of memory", file);
        rc = KSOCK_E_NOMEM;
        goto fail_free;
    }
    p->desc.vtable = p->vtable;
    if (d->init) {
        char why[300] = "";
        if ((rc = d->init(why, sizeof(why))) != 0) {
            ksock_errstr_set(errstr, errstr_size, "plugin %s: init failed: %s", file,
                             why[0] ? why : ksock_strerror(rc));
            goto fail_free;
        }
    }
    p->handle = handle;
    p->next = rt->plugins;
    rt->plugins = p;
    *out = p;
    return 0;
fail_free:
    free(p->vtable);
    free(p->file);
    free(p);
fail:
    if (handle) dlclose(handle);
    return rc;
}

int ksock_plugin_load_file(ksock_runtime_t *rt, const char *path, ksock_plugin_t **out,
                           char *errstr, size_t errstr_size)
{
    char real[PATH_MAX];
    struct stat st;
    *out = NULL;
    if (stat(path, &st) != 0) {
        int e = errno;
        ksock_errstr_set(errstr, errstr_size, "plugin %s: %s", path, strerror(e));
        return e == ENOENT ? KSOCK_E_NOENT : KSOCK_E_IO;
    }
    if (!S_ISREG(st.st_mode)) {
        ksock_errstr_set(errstr, errstr_size, "plugin %s refused: not a regular file", path);
        return KSOCK_E_PLUGIN;
    }
    if (realpath(path, real) == NULL) snprintf(real, sizeof(real), "%s", path);
    ksock_plugin_t *p = find_loaded(rt, 0, NULL, real);
    if (p) {
        *out = p;
        return 0;
    }
    dlerror();
    void *h = dlopen(real, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        const char *e = dlerror();
        return refuse_dlopen(real, e ? e : "unknown dlopen error", errstr, errstr_size);
    }
    dlerror();
    void *sym = dlsym(h, KSOCK_PLUGIN_ENTRY_SYMBOL);
    if (sym == NULL) {
        ksock_errstr_set(errstr, errstr_size,
                         "plugin %s refused: it does not export %s (not a KafkaSocks plugin, or "
                         "built without KSOCK_PLUGIN_DEFINE)",
                         real, KSOCK_PLUGIN_ENTRY_SYMBOL);
        dlclose(h);
        return KSOCK_E_PLUGIN;
    }
    ksock_plugin_entry_fn entry;
    *(void **)&entry = sym; /* POSIX blesses this object-to-function conversion */
    return add_plugin(rt, entry(), real, h, out, errstr, errstr_size);
}

int ksock_plugins_register_builtin(ksock_runtime_t *rt, ksock_plugin_entry_fn entry, char *errstr,
                                   size_t errstr_size)
{
    ksock_plugin_t *p;
    return add_plugin(rt, entry(), "(builtin)", NULL, &p, errstr, errstr_size);
}

int ksock_plugin_path_add(ksock_runtime_t *rt, const char *dir)
{
    /* A reload applies the same plugin_path again: keep one entry per directory. */
    for (size_t i = 0; i < rt->plugin_path_n; i++)
        if (strcmp(rt->plugin_path[i], dir) == 0) return 0;
    char *copy = ksock__strdup(dir);
    if (copy == NULL) return KSOCK_E_NOMEM;
    char **v = realloc(rt->plugin_path, (rt->plugin_path_n + 1) * sizeof(char *));
    if (v == NULL) {
        free(copy);
        return KSOCK_E_NOMEM;
    }
    rt->plugin_path = v;
    memmove(v + 1, v, rt->plugin_path_n * sizeof(char *));
    v[0] = copy;
    rt->plugin_path_n++;
    return 0;
}

/* The search path in order: config/API, $KSOCK_PLUGIN_PATH, the build tree's plugins when
 * running uninstalled, the installed default. */
typedef void (*dir_cb)(const char *dir, void *data);

/*
 * True when the running program is one of this build's own tools (build/tools/ksockd,
 * build/tools/ksock), so that a first `build/tools/ksock connect` finds the plugins built
 * next to it. The test is an exact match of the executable's directory against the build
 * directory compiled in, never a path relative to the executable: an installed or copied
 * binary searches nothing new.
 */
static bool running_from_build_tree(void)
{
#ifdef KSOCK_BUILD_TOOLS_DIR
    char exe[PATH_MAX], tools[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0) return false;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash == NULL) return false;
    *slash = '\0';
    if (realpath(KSOCK_BUILD_TOOLS_DIR, tools) == NULL) return false;
    return strcmp(exe, tools) == 0;
#else
    return false;
#endif
}

static void each_dir(ksock_runtime_t *rt, dir_cb cb, void *data)
{
    for (size_t i = 0; i < rt->plugin_path_n; i++)
        cb(rt->plugin_path[i], data);
    /* Split $KSOCK_PLUGIN_PATH without allocating: a search must not fail for memory. */
    const char *env = getenv("KSOCK_PLUGIN_PATH");
    for (const char *s = env; s && *s;) {
        size_t len = strcspn(s, ":");
        char dir[PATH_MAX];
        if (len > 0 && len < sizeof(dir)) {
            memcpy(dir, s, len);
            dir[len] = '\0';
            cb(dir, data);
        }
        s += len;
        if (*s == ':') s++;
    }
#ifdef KSOCK_BUILD_PLUGIN_DIR
    if (running_from_build_tree()) cb(KSOCK_BUILD_PLUGIN_DIR, data);
#endif
    cb(KSOCK_PLUGIN_DIR, data);
}

typedef struct {
    ksock_runtime_t *rt;
    const char *kind, *name;
    ksock_plugin_t *found;
    int rc;
    char *errstr;
    size_t errstr_size;
    ksock_buf_t looked;
} find_ctx_t;

static void find_in_dir(const char *dir, void *data)
{
    find_ctx_t *f = data;
    if (f->found || f->rc != 0) return;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s_%s.so", dir, f->kind, f->name);
    ksock_buf_appendf(&f->looked, "%s%s", f->looked.len ? ", " : "", dir);
    if (access(path, F_OK) != 0) return;
    f->rc = ksock_plugin_load_file(f->rt, path, &f->found, f->errstr, f->errstr_size);
}

int ksock_plugin_find(ksock_runtime_t *rt, ksock_plugin_kind_t kind, const char *name,
                      ksock_plugin_t **out, char *errstr, size_t errstr_size)
{
    const char *kn = ksock_plugin_kind_name(kind);
    *out = NULL;
    if (kn == NULL || !valid_name(name)) {
        ksock_errstr_set(errstr, errstr_size, "invalid plugin %s name \"%s\"", kn ? kn : "kind",
                         name ? name : "(null)");
        return KSOCK_E_INVAL;
    }
    ksock_plugin_t *p = find_loaded(rt, kind, name, NULL);
    if (p) {
        *out = p;
        return 0;
    }
    find_ctx_t f = {rt, kn, name, NULL, 0, errstr, errstr_size, KSOCK_BUF_INIT};
    each_dir(rt, find_in_dir, &f);
    if (f.rc == 0 && f.found == NULL) {
        ksock_errstr_set(errstr, errstr_size,
                         "no %s plugin named \"%s\" (looked for %s_%s.so in: %s)", kn, name, kn,
                         name, f.looked.data ? f.looked.data : "");
        f.rc = KSOCK_E_NOENT;
    } else if (f.rc == 0 &&
               (f.found->desc.kind != (uint32_t)kind || strcmp(f.found->desc.name, name) != 0)) {
        ksock_errstr_set(errstr, errstr_size, "plugin %s declares %s \"%s\", expected %s \"%s\"",
                         f.found->file,
                         ksock_plugin_kind_name((ksock_plugin_kind_t)f.found->desc.kind),
                         f.found->desc.name, kn, name);
        f.rc = KSOCK_E_PLUGIN;
    }
    ksock_buf_free(&f.looked);
    if (f.rc == 0) *out = f.found;
    return f.rc;
}

bool ksock__plugin_is(const ksock_plugin_t *p, ksock_plugin_entry_fn entry)
{
    const ksock_plugin_desc_t *d = entry();
    return p->handle == NULL && p->desc.name == d->name; /* the same descriptor, not a copy */
}

const ksock_plugin_desc_t *ksock_plugin_desc(const ksock_plugin_t *p)
{
    return &p->desc;
}

const char *ksock_plugin_file(const ksock_plugin_t *p)
{
    return p->file;
}

int ksock__plugins_configure(ksock_runtime_t *rt, const ksock_config_t *doc,
                             const ksock_cfg_t *root, char *errstr, size_t errstr_size)
{
    const ksock_cfg_t *pp = ksock_cfg_get(root, "plugin_path");
    if (pp == NULL) return 0;
    if (ksock_cfg_type(pp) != KSOCK_CFG_ARRAY) {
        ksock_errstr_set(errstr, errstr_size,
                         "%s:%d:%d: key \"plugin_path\": expected an array of directories, got %s",
                         ksock__cfg_doc_name(doc), ksock_cfg_line(pp), ksock_cfg_column(pp),
                         ksock_cfg_type_name(ksock_cfg_type(pp)));
        return KSOCK_E_CONFIG;
    }
    /* Add in reverse so the first listed directory ends up searched first. */
    for (size_t i = ksock_cfg_count(pp); i-- > 0;) {
        const ksock_cfg_t *d = ksock_cfg_at(pp, i, NULL);
        if (ksock_cfg_type(d) != KSOCK_CFG_STRING) {
            ksock_errstr_set(errstr, errstr_size,
                             "%s:%d:%d: key \"plugin_path\": element %zu: expected a string",
                             ksock__cfg_doc_name(doc), ksock_cfg_line(d), ksock_cfg_column(d), i);
            return KSOCK_E_CONFIG;
        }
        if (ksock_plugin_path_add(rt, ksock_cfg_string(d)) != 0) {
            ksock_errstr_set(errstr, errstr_size, "key \"plugin_path\": out of memory");
            return KSOCK_E_NOMEM;
        }
    }
    return 0;
}

/* ---- Instances ------------------------------------------------------------- */

/* An instance with its names and a zeroed options struct; NULL on ENOMEM. */
static ksock_plugin_instance_t *instance_alloc(ksock_plugin_t *p, const char *iname)
{
    const ksock_plugin_desc_t *d = &p->desc;
    ksock_plugin_instance_t *pi = calloc(1, sizeof(*pi));
    if (pi == NULL) return NULL;
    pi->size = sizeof(*pi);
    pi->plugin = p;
    pi->vtable = d->vtable;
    pi->name = ksock__strdup(iname);
    pi->options = calloc(1, d->options_struct_size ? d->options_struct_size : 1);
    ksock_buf_t comp = KSOCK_BUF_INIT;
    int rc = ksock_buf_appendf(&comp, "%s:%s", ksock_plugin_kind_name((ksock_plugin_kind_t)d->kind),
                               d->name);
    if (rc == 0 && strcmp(iname, d->name) != 0) rc = ksock_buf_appendf(&comp, "/%s", iname);
    pi->component = comp.data;
    if (pi->name == NULL || pi->options == NULL || rc != 0) {
        free(pi->options);
        free(pi->name);
        ksock_buf_free(&comp);
        free(pi);
        return NULL;
    }
    return pi;
}

/* "kind \"name\"" or "kind \"name\" instance \"iname\"", for messages. */
static void instance_owner(const ksock_plugin_desc_t *d, const char *iname, char *out, size_t n)
{
    const char *kind = ksock_plugin_kind_name((ksock_plugin_kind_t)d->kind);
    bool named = strcmp(iname, d->name) != 0;
    snprintf(out, n, "%s \"%s\"%s%s%s", kind, d->name, named ? " instance \"" : "",
             named ? iname : "", named ? "\"" : "");
}

/*
 * Call the plugin's create() with pi's options; on failure free pi and
 * everything its options own. `rc` is the options step's result.
 */
static int instance_create(ksock_runtime_t *rt, ksock_plugin_instance_t *pi, int rc,
                           const ksock_config_t *doc, const char *owner,
                           ksock_plugin_instance_t **out, char *errstr, size_t errstr_size)
{
    const ksock_plugin_desc_t *d = &pi->plugin->desc;
    if (rc == 0) {
        pi->ctx =
            (ksock_plugin_ctx_t){sizeof(ksock_plugin_ctx_t), rt, pi->name, pi->component, doc};
        const ksock_vtable_head_t *h = d->vtable;
        char why[400] = "";
        rc = h->create(&pi->ctx, pi->options, &pi->inst, why, sizeof(why));
        if (rc != 0)
            ksock_errstr_set(errstr, errstr_size, "%s: %s", owner,
                             why[0] ? why : ksock_strerror(rc));
    }
    if (rc != 0) {
        if (d->options) ksock_options_free(d->options, d->option_size, pi->options);
        free(pi->options);
        free(pi->name);
        free(pi->component);
        free(pi);
        return rc;
    }
    pi->plugin->instances++;
    *out = pi;
    return 0;
}

int ksock_plugin_instance_new(ksock_runtime_t *rt, ksock_plugin_t *p, const char *instance_name,
                              const ksock_config_t *doc, const ksock_cfg_t *opts_obj,
                              const char *const *ignore, ksock_plugin_instance_t **out,
                              char *errstr, size_t errstr_size)
{
    const ksock_plugin_desc_t *d = &p->desc;
    const char *iname = instance_name ? instance_name : d->name;
    *out = NULL;
    ksock_plugin_instance_t *pi = instance_alloc(p, iname);
    if (pi == NULL) return KSOCK_E_NOMEM;
    char owner[200];
    instance_owner(d, iname, owner, sizeof(owner));
    int rc = 0;
    if (d->options)
        rc = ksock_options_apply(d->options, d->option_size, doc, opts_obj, owner, ignore,
                                 pi->options, errstr, errstr_size);
    else if (opts_obj && ksock_cfg_count(opts_obj) > 0)
        /* No schema: any key not handled by the caller is unknown. */
        rc = ksock_options_apply(NULL, sizeof(ksock_option_t), doc, opts_obj, owner, ignore,
                                 pi->options, errstr, errstr_size);
    return instance_create(rt, pi, rc, doc, owner, out, errstr, errstr_size);
}

int ksock__plugin_instance_new_typed(ksock_runtime_t *rt, ksock_plugin_t *p, const void *options,
                                     size_t size, ksock_plugin_instance_t **out, char *errstr,
                                     size_t errstr_size)
{
    const ksock_plugin_desc_t *d = &p->desc;
    *out = NULL;
    if (size != d->options_struct_size) {
        ksock_errstr_set(errstr, errstr_size, "%s: options struct is %zu bytes, expected %u",
                         d->name, size, (unsigned)d->options_struct_size);
        return KSOCK_E_INVAL;
    }
    ksock_plugin_instance_t *pi = instance_alloc(p, d->name);
    if (pi == NULL) return KSOCK_E_NOMEM;
    if (size) memcpy(pi->options, options, size);
    char owner[200];
    instance_owner(d, d->name, owner, sizeof(owner));
    return instance_create(rt, pi, 0, NULL, owner, out, errstr, errstr_size);
}

int ksock_plugin_check_options(ksock_plugin_t *p, const char *instance_name,
                               const ksock_config_t *doc, const ksock_cfg_t *opts_obj,
                               const char *const *ignore, char *errstr, size_t errstr_size)
{
    const ksock_plugin_desc_t *d = &p->desc;
    const char *kind = ksock_plugin_kind_name((ksock_plugin_kind_t)d->kind);
    char owner[200];
    if (instance_name && strcmp(instance_name, d->name) != 0)
        snprintf(owner, sizeof(owner), "%s \"%s\" instance \"%s\"", kind, d->name, instance_name);
    else
        snprintf(owner, sizeof(owner), "%s \"%s\"", kind, d->name);
    void *scratch = calloc(1, d->options_struct_size ? d->options_struct_size : 1);
    if (scratch == NULL) return KSOCK_E_NOMEM;
    int rc =
        ksock_options_apply(d->options, d->option_size ? d->option_size : sizeof(ksock_option_t),
                            doc, opts_obj, owner, ignore, scratch, errstr, errstr_size);
    if (d->options) ksock_options_free(d->options, d->option_size, scratch);
    free(scratch);
    return rc;
}

const void *ksock_plugin_instance_vtable(const ksock_plugin_instance_t *pi)
{
    return pi->vtable;
}

void *ksock_plugin_instance_inst(const ksock_plugin_instance_t *pi)
{
    return pi->inst;
}

ksock_plugin_t *ksock_plugin_instance_plugin(const ksock_plugin_instance_t *pi)
{
    return pi->plugin;
}

const void *ksock_plugin_instance_options(const ksock_plugin_instance_t *pi)
{
    return pi->options;
}

const char *ksock_plugin_instance_name(const ksock_plugin_instance_t *pi)
{
    return pi->name;
}

const char *ksock_plugin_instance_component(const ksock_plugin_instance_t *pi)
{
    return pi->component;
}

void ksock_plugin_instance_free(ksock_plugin_instance_t *pi)
{
    if (pi == NULL) return;
    const ksock_plugin_desc_t *d = &pi->plugin->desc;
    ((const ksock_vtable_head_t *)d->vtable)->destroy(pi->inst);
    if (d->options) ksock_options_free(d->options, d->option_size, pi->options);
    pi->plugin->instances--;
    free(pi->options);
    free(pi->name);
    free(pi->component);
    free(pi);
}

void ksock__plugins_destroy(ksock_runtime_t *rt)
{
    /* Most recent first, so a plugin loaded after another is finished before it. */
    ksock_plugin_t *p = rt->plugins;
    rt->plugins = NULL;
    bool keep = getenv("KSOCK_NO_DLCLOSE") != NULL; /* keeps symbols for leak reports */
    while (p) {
        ksock_plugin_t *next = p->next;
        if (p->instances == 0) {
            if (p->desc.fini) p->desc.fini();
            if (p->handle && !keep) dlclose(p->handle);
        } else {
            /* Unloading code that live instances still point into would crash later. */
            fprintf(stderr, "ksock: plugin %s still has %u instance(s); not unloading it\n",
                    p->file, p->instances);
            p->vtable = NULL; /* likewise its vtable: leaked on purpose */
        }
        free(p->vtable);
        free(p->file);
        free(p);
        p = next;
    }
}

/* ---- Scanning (ksockd --list-plugins) --------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct {
    ksock_runtime_t *rt;
    ksock_plugin_scan_cb cb;
    void *data;
} scan_ctx_t;

static void scan_dir(const char *dir, void *data)
{
    scan_ctx_t *s = data;
    DIR *d = opendir(dir);
    if (d == NULL) return;
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".so") != 0) continue;
        char **v = realloc(names, (n + 1) * sizeof(char *));
        char *name = v ? ksock__strdup(e->d_name) : NULL;
        if (v) names = v;
        if (name == NULL) {
            /* Reported like a file that failed to load; the listing goes on without it. */
            s->cb(dir, NULL, KSOCK_E_NOMEM, "out of memory listing the directory", s->data);
            break;
        }
        names[n++] = name;
    }
    closedir(d);
    qsort(names, n, sizeof(char *), cmp_str);
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX], err[512] = "";
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        ksock_plugin_t *p = NULL;
        int rc = ksock_plugin_load_file(s->rt, path, &p, err, sizeof(err));
        s->cb(rc == 0 ? p->file : path, rc == 0 ? &p->desc : NULL, rc, err, s->data);
        free(names[i]);
    }
    free(names);
}

void ksock_plugin_scan(ksock_runtime_t *rt, ksock_plugin_scan_cb cb, void *data)
{
    for (ksock_plugin_t *p = rt->plugins; p; p = p->next)
        if (p->handle == NULL) cb(p->file, &p->desc, 0, "", data); /* built-ins */
    scan_ctx_t s = {rt, cb, data};
    each_dir(rt, scan_dir, &s);
}
