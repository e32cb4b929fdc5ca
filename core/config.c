/*
 * The config tree: JSON with comments, parsed with yajl's callback API so
 * every node remembers its line and column (yajl's tree API forgets them,
 * and an operator wants "ksockd.json:12:5: unknown key" rather than a
 * guess).
 *
 * Positions: yajl reports, during a callback, how many bytes it has
 * consumed, i.e. where the current token ends. The token starts at the
 * first byte after the previous token that is not whitespace, ',', ':' or
 * a comment. A cursor moving forward only turns offsets into line:column
 * in linear time.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

struct ksock_cfg_node_s {
    ksock_cfg_type_t type;
    int line, col;
    union {
        bool b;
        int64_t i;
        double d;
        struct {
            char *s;
            size_t len;
        } str;
        struct {
            size_t n, cap;
            struct ksock_cfg_node_s **items;
            char **keys; /* objects only */
        } c;
    } u;
};

struct ksock_config_s {
    char *name;
    ksock_cfg_t *root;
    /* Adoption links documents here, so ksock_runtime_adopt_config() cannot fail. */
    ksock_config_t *adopted_next;
};

#define MAX_DEPTH 64

typedef struct {
    yajl_handle h;
    const char *text;
    size_t len;
    const char *name;
    /* position cursor */
    size_t prev_end;
    size_t cur_off;
    int cur_line, cur_col;
    /* building */
    ksock_cfg_t *root;
    ksock_cfg_t *stack[MAX_DEPTH];
    int depth;
    char *pending_key; /* object key waiting for its value */
    int pending_line, pending_col;
    char err[512];
    bool nomem; /* an allocation failed: KSOCK_E_NOMEM, not a syntax error */
} parser_t;

/* Advance the cursor to `off`, counting lines; offsets only grow. */
static void cursor_to(parser_t *p, size_t off, int *line, int *col)
{
    if (off > p->len) off = p->len;
    if (off < p->cur_off) { /* should not happen; restart rather than lie */
        p->cur_off = 0;
        p->cur_line = 1;
        p->cur_col = 1;
    }
    for (; p->cur_off < off; p->cur_off++) {
        if (p->text[p->cur_off] == '\n') {
            p->cur_line++;
            p->cur_col = 1;
        } else {
            p->cur_col++;
        }
    }
    *line = p->cur_line;
    *col = p->cur_col;
}

/* Where does the token that just ended begin? */
static size_t token_start(parser_t *p)
{
    size_t i = p->prev_end;
    while (i < p->len) {
        char c = p->text[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ',' || c == ':') {
            i++;
        } else if (c == '/' && i + 1 < p->len && p->text[i + 1] == '*') {
            /* memmem, not strstr: the text is not NUL-terminated (found by fuzz-config). */
            const char *e = memmem(p->text + i + 2, p->len - i - 2, "*/", 2);
            i = e ? (size_t)(e - p->text) + 2 : p->len;
        } else if (c == '/' && i + 1 < p->len && p->text[i + 1] == '/') {
            while (i < p->len && p->text[i] != '\n')
                i++;
        } else {
            break;
        }
    }
    return i;
}

static void mark(parser_t *p, int *line, int *col)
{
    size_t start = token_start(p);
    cursor_to(p, start, line, col);
    p->prev_end = yajl_get_bytes_consumed(p->h);
}

static void node_free(ksock_cfg_t *n)
{
    if (n == NULL) return;
    if (n->type == KSOCK_CFG_STRING) {
        free(n->u.str.s);
    } else if (n->type == KSOCK_CFG_ARRAY || n->type == KSOCK_CFG_OBJECT) {
        for (size_t i = 0; i < n->u.c.n; i++) {
            node_free(n->u.c.items[i]);
            if (n->u.c.keys) free(n->u.c.keys[i]);
        }
        free(n->u.c.items);
        free(n->u.c.keys);
    }
    free(n);
}

/* Attach a finished node to its parent (or make it the root). 0 stops yajl. */
static int attach(parser_t *p, ksock_cfg_t *n)
{
    if (p->depth == 0) {
        p->root = n;
        return 1;
    }
    ksock_cfg_t *parent = p->stack[p->depth - 1];
    if (parent->u.c.n == parent->u.c.cap) {
        size_t cap = parent->u.c.cap ? parent->u.c.cap * 2 : 4;
        void *items = realloc(parent->u.c.items, cap * sizeof(*parent->u.c.items));
        if (items == NULL) goto nomem;
        parent->u.c.items = items;
        if (parent->type == KSOCK_CFG_OBJECT) {
            void *keys = realloc(parent->u.c.keys, cap * sizeof(char *));
            if (keys == NULL) goto nomem;
            parent->u.c.keys = keys;
        }
        parent->u.c.cap = cap;
    }
    parent->u.c.items[parent->u.c.n] = n;
    if (parent->type == KSOCK_CFG_OBJECT) {
        parent->u.c.keys[parent->u.c.n] = p->pending_key;
        p->pending_key = NULL;
    }
    parent->u.c.n++;
    return 1;
nomem:
    node_free(n);
    p->nomem = true;
    return 0;
}

static ksock_cfg_t *new_node(parser_t *p, ksock_cfg_type_t t)
{
    ksock_cfg_t *n = calloc(1, sizeof(*n));
    if (n == NULL) {
        p->nomem = true;
        return NULL;
    }
    n->type = t;
    mark(p, &n->line, &n->col);
    return n;
}

static int cb_null(void *ctx)
{
    parser_t *p = ctx;
    ksock_cfg_t *n = new_node(p, KSOCK_CFG_NULL);
    return n ? attach(p, n) : 0;
}

static int cb_bool(void *ctx, int b)
{
    parser_t *p = ctx;
    ksock_cfg_t *n = new_node(p, KSOCK_CFG_BOOL);
    if (n == NULL) return 0;
    n->u.b = b != 0;
    return attach(p, n);
}

static int cb_int(void *ctx, long long i)
{
    parser_t *p = ctx;
    ksock_cfg_t *n = new_node(p, KSOCK_CFG_INT);
    if (n == NULL) return 0;
    n->u.i = i;
    return attach(p, n);
}

static int cb_double(void *ctx, double d)
{
    parser_t *p = ctx;
    ksock_cfg_t *n = new_node(p, KSOCK_CFG_DOUBLE);
    if (n == NULL) return 0;
    n->u.d = d;
    return attach(p, n);
}

static int cb_string(void *ctx, const unsigned char *s, size_t len)
{
    parser_t *p = ctx;
    ksock_cfg_t *n = new_node(p, KSOCK_CFG_STRING);
    if (n == NULL) return 0;
    n->u.str.s = malloc(len + 1);
    if (n->u.str.s == NULL) {
        free(n);
        p->nomem = true;
        return 0;
    }
    memcpy(n->u.str.s, s, len);
    n->u.str.s[len] = '\0';
    n->u.str.len = len;
    return attach(p, n);
}

static int open_container(parser_t *p, ksock_cfg_type_t t)
{
    if (p->depth == MAX_DEPTH) {
        int line, col;
        mark(p, &line, &col);
        snprintf(p->err, sizeof(p->err), "%d:%d: nesting deeper than %d levels", line, col,
                 MAX_DEPTH);
        return 0;
    }
    ksock_cfg_t *n = new_node(p, t);
    if (n == NULL) return 0;
    /* Attach first (it consumes the pending key), then descend into it. */
    if (!attach(p, n)) return 0;
    p->stack[p->depth++] = n;
    return 1;
}

static int cb_start_map(void *ctx)
{
    return open_container(ctx, KSOCK_CFG_OBJECT);
}

static int cb_start_array(void *ctx)
{
    return open_container(ctx, KSOCK_CFG_ARRAY);
}

static int cb_end(void *ctx)
{
    parser_t *p = ctx;
    p->prev_end = yajl_get_bytes_consumed(p->h);
    p->depth--;
    return 1;
}

static int cb_map_key(void *ctx, const unsigned char *k, size_t len)
{
    parser_t *p = ctx;
    int line, col;
    mark(p, &line, &col);
    ksock_cfg_t *obj = p->stack[p->depth - 1];
    for (size_t i = 0; i < obj->u.c.n; i++) {
        if (strlen(obj->u.c.keys[i]) == len && memcmp(obj->u.c.keys[i], k, len) == 0) {
            snprintf(p->err, sizeof(p->err), "%d:%d: duplicate key \"%.*s\"", line, col,
                     (int)(len > 200 ? 200 : len), (const char *)k);
            return 0;
        }
    }
    free(p->pending_key);
    p->pending_key = malloc(len + 1);
    if (p->pending_key == NULL) {
        p->nomem = true;
        return 0;
    }
    memcpy(p->pending_key, k, len);
    p->pending_key[len] = '\0';
    return 1;
}

static const yajl_callbacks callbacks = {
    cb_null,      cb_bool,    cb_int, cb_double,      NULL,   cb_string,
    cb_start_map, cb_map_key, cb_end, cb_start_array, cb_end,
};

/* yajl's messages span lines and start with "parse error: "; keep one clean line. */
static void yajl_message(parser_t *p, const unsigned char *msg, char *out, size_t out_size)
{
    const char *m = (const char *)msg;
    if (strncmp(m, "parse error: ", 13) == 0) m += 13;
    size_t n = strcspn(m, "\n");
    snprintf(out, out_size, "%.*s", (int)n, m);
}

int ksock_config_load_string(const char *name, const char *text, size_t len, ksock_config_t **out,
                             char *errstr, size_t errstr_size)
{
    *out = NULL;
    parser_t p;
    memset(&p, 0, sizeof(p));
    p.text = text;
    p.len = len;
    p.name = name;
    p.cur_line = p.cur_col = 1;
    p.h = yajl_alloc(&callbacks, NULL, &p);
    if (p.h == NULL) return KSOCK_E_NOMEM;
    yajl_config(p.h, yajl_allow_comments, 1);

    yajl_status st = yajl_parse(p.h, (const unsigned char *)text, len);
    bool at_end = false;
    if (st == yajl_status_ok) {
        st = yajl_complete_parse(p.h);
        /* An error here is a premature end; yajl then reports 0 bytes consumed. */
        at_end = true;
    }
    if (st != yajl_status_ok && p.nomem) {
        node_free(p.root);
        free(p.pending_key);
        yajl_free(p.h);
        ksock_errstr_set(errstr, errstr_size, "%s: out of memory", name);
        return KSOCK_E_NOMEM;
    }
    if (st != yajl_status_ok) {
        if (p.err[0] == '\0' || st == yajl_status_error) {
            bool empty = len == 0 || token_start(&(parser_t){.text = text, .len = len}) == len;
            size_t off = empty ? 0 : at_end ? len : yajl_get_bytes_consumed(p.h);
            int line, col;
            if (off > len) off = len;
            /* yajl counts the offending token as consumed: point at it, not past it. */
            if (off > 0 && !at_end) off--;
            p.cur_off = 0;
            p.cur_line = p.cur_col = 1;
            cursor_to(&p, off, &line, &col);
            unsigned char *m = yajl_get_error(p.h, 0, (const unsigned char *)text, len);
            char clean[256];
            yajl_message(&p, m, clean, sizeof(clean));
            yajl_free_error(p.h, m);
            if (empty) snprintf(clean, sizeof(clean), "empty document");
            ksock_errstr_set(errstr, errstr_size, "%s:%d:%d: syntax error: %s", name, line, col,
                             clean);
        } else {
            ksock_errstr_set(errstr, errstr_size, "%s:%s", name, p.err);
        }
        node_free(p.root);
        free(p.pending_key);
        yajl_free(p.h);
        return KSOCK_E_CONFIG;
    }
    yajl_free(p.h);
    free(p.pending_key);

    ksock_config_t *cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL) {
        node_free(p.root);
        return KSOCK_E_NOMEM;
    }
    cfg->name = ksock__strdup(name);
    cfg->root = p.root;
    if (name && cfg->name == NULL) {
        ksock_config_free(cfg);
        return KSOCK_E_NOMEM;
    }
    *out = cfg;
    return 0;
}

int ksock_config_load_file(const char *path, ksock_config_t **out, char *errstr, size_t errstr_size)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int e = errno;
        ksock_errstr_set(errstr, errstr_size, "%s: cannot open: %s", path, strerror(e));
        return e == ENOENT ? KSOCK_E_NOENT : KSOCK_E_IO;
    }
    ksock_buf_t b = KSOCK_BUF_INIT;
    char chunk[65536];
    size_t n;
    int rc = 0;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (ksock_buf_append(&b, chunk, n) != 0) {
            rc = KSOCK_E_NOMEM;
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        ksock_errstr_set(errstr, errstr_size, "%s: read error: %s", path, strerror(errno));
        rc = KSOCK_E_IO;
    }
    fclose(f);
    if (rc == 0)
        rc = ksock_config_load_string(path, b.data ? b.data : "", b.len, out, errstr, errstr_size);
    ksock_buf_free(&b);
    return rc;
}

ksock_config_t **ksock__config_adopted_next(ksock_config_t *doc)
{
    return &doc->adopted_next;
}

void ksock_config_free(ksock_config_t *cfg)
{
    if (cfg == NULL) return;
    node_free(cfg->root);
    free(cfg->name);
    free(cfg);
}

const ksock_cfg_t *ksock_config_root(const ksock_config_t *cfg)
{
    return cfg->root;
}

const char *ksock_config_name(const ksock_config_t *cfg)
{
    return cfg->name;
}

const char *ksock__cfg_doc_name(const ksock_config_t *doc)
{
    return doc ? doc->name : "(config)";
}

ksock_cfg_type_t ksock_cfg_type(const ksock_cfg_t *n)
{
    return n ? n->type : KSOCK_CFG_NULL;
}

const char *ksock_cfg_type_name(ksock_cfg_type_t t)
{
    static const char *names[] = {"null", "bool", "integer", "number", "string", "array", "object"};
    return (unsigned)t < sizeof(names) / sizeof(names[0]) ? names[t] : "unknown";
}

int ksock_cfg_line(const ksock_cfg_t *n)
{
    return n ? n->line : 0;
}

int ksock_cfg_column(const ksock_cfg_t *n)
{
    return n ? n->col : 0;
}

const ksock_cfg_t *ksock_cfg_get(const ksock_cfg_t *obj, const char *key)
{
    if (obj == NULL || obj->type != KSOCK_CFG_OBJECT) return NULL;
    for (size_t i = 0; i < obj->u.c.n; i++)
        if (strcmp(obj->u.c.keys[i], key) == 0) return obj->u.c.items[i];
    return NULL;
}

size_t ksock_cfg_count(const ksock_cfg_t *n)
{
    if (n == NULL || (n->type != KSOCK_CFG_ARRAY && n->type != KSOCK_CFG_OBJECT)) return 0;
    return n->u.c.n;
}

const ksock_cfg_t *ksock_cfg_at(const ksock_cfg_t *n, size_t i, const char **key)
{
    if (i >= ksock_cfg_count(n)) return NULL;
    if (key) *key = n->type == KSOCK_CFG_OBJECT ? n->u.c.keys[i] : NULL;
    return n->u.c.items[i];
}

const char *ksock_cfg_string(const ksock_cfg_t *n)
{
    return n && n->type == KSOCK_CFG_STRING ? n->u.str.s : NULL;
}

int64_t ksock_cfg_int(const ksock_cfg_t *n)
{
    return n && n->type == KSOCK_CFG_INT ? n->u.i : 0;
}

double ksock_cfg_double(const ksock_cfg_t *n)
{
    if (n && n->type == KSOCK_CFG_DOUBLE) return n->u.d;
    if (n && n->type == KSOCK_CFG_INT) return (double)n->u.i;
    return 0.0;
}

bool ksock_cfg_bool(const ksock_cfg_t *n)
{
    return n && n->type == KSOCK_CFG_BOOL ? n->u.b : false;
}
