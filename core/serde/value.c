/*
 * The value model (value.h): reference-counted values, built bottom-up and
 * immutable once they are inside another value.
 *
 * Strings and byte strings live in the same allocation as their header, so
 * a decoded scalar costs one malloc. null, true and false are static
 * singletons that reference counting ignores. Maps keep insertion order in
 * an entry array; past MAP_INDEX_MIN entries they also get a hash index so
 * that duplicate detection (needed on every insert: decoders refuse
 * duplicate keys) stays O(1). The hash is keyed with a per-process random
 * seed, so a hostile frame cannot pick keys that all collide.
 */
#include "../internal.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define MAP_INDEX_MIN 8 /* below this, a linear scan beats hashing */

typedef struct map_entry_s {
    char *key; /* NUL-terminated copy */
    size_t key_len;
    uint64_t hash;
    ksock_value_t *val;
} map_entry_t;

struct ksock_value_s {
    _Atomic uint32_t refs;
    uint8_t type;     /* ksock_value_type_t */
    uint8_t frozen;   /* added to a container: no more changes */
    uint8_t immortal; /* static singleton: refcount ignored */
    uint16_t depth;   /* see ksock_value_depth() */
    union {
        bool b;
        int64_t i;
        double d;
        struct {
            char *p; /* inline, right after the struct */
            size_t len;
        } s;
        struct {
            ksock_value_t **v;
            size_t n, cap;
        } a;
        struct {
            map_entry_t *e;
            size_t n, cap;
            uint32_t *index;  /* slots hold entry index + 1; 0 is empty */
            size_t index_cap; /* power of two, or 0 while n < MAP_INDEX_MIN */
        } m;
    } u;
};

static ksock_value_t value_null = {.refs = 1, .type = KSOCK_VALUE_NULL, .immortal = 1};
static ksock_value_t value_true = {.refs = 1, .type = KSOCK_VALUE_BOOL, .immortal = 1, .u.b = true};
static ksock_value_t value_false = {.refs = 1, .type = KSOCK_VALUE_BOOL, .immortal = 1};

static const ksock_value_limits_t default_limits = {
    .size = sizeof(ksock_value_limits_t),
    .max_depth = 64,
    .max_string = 16u << 20,
    .max_items = 1u << 20,
    .max_total = 64u << 20,
};

void ksock_value_limits_default(ksock_value_limits_t *l)
{
    *l = default_limits;
}

const ksock_value_limits_t *ksock_value_limits_or_default(const ksock_value_limits_t *lim)
{
    return lim ? lim : &default_limits;
}

/* ---- Strict UTF-8 ------------------------------------------------------ */

/* Length of the well-formed sequence at s (Unicode table 3-7), or 0. */
static size_t utf8_seq_len(const unsigned char *s, size_t avail)
{
    unsigned c = s[0];
    unsigned lo = 0x80, hi = 0xBF;
    size_t n;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
    else
        return 0; /* continuation byte, overlong lead C0/C1, or F5..FF */
    if (avail < n) return 0;
    /* The second byte's range excludes overlongs, surrogates and > U+10FFFF. */
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return n;
}

int ksock_decode_fail(ksock_decode_err_t *e, int rc, size_t at, const char *fmt, ...)
{
    if (e->rc != 0) return e->rc;
    e->rc = rc;
    e->at = at;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return rc;
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if the byte there starts none. */
static size_t utf8_seq(const unsigned char *s, size_t left)
{
    size_t n = *s < 0x80 ? 1 : *s >= 0xF0 ? 4 : *s >= 0xE0 ? 3 : *s >= 0xC2 ? 2 : 0;
    return n && n <= left && ksock_utf8_check(s, n, NULL) ? n : 0;
}

/*
 * Append `s` to out[*o..cap) so that the result is valid UTF-8 without
 * control characters whatever `s` holds (messages quote client bytes, and
 * replies and log lines must stay valid text): C0, DEL and C1 controls
 * become \u00XX, bytes that are not UTF-8 \xNN, a backslash \\. Stops
 * before a piece that does not fit, so nothing is ever cut in half.
 */
static void printable_append(char *out, size_t cap, size_t *o, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        char esc[8];
        size_t n = utf8_seq(p + i, len - i), plen;
        unsigned cp = n == 2 ? ((p[i] & 0x1fu) << 6 | (p[i + 1] & 0x3fu)) : p[i];
        if (n == 0) {
            plen = (size_t)snprintf(esc, sizeof(esc), "\\x%02x", p[i]);
        } else if ((n == 1 && (cp < 0x20 || cp == 0x7f)) || (n == 2 && cp < 0xa0)) {
            plen = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", cp);
        } else if (n == 1 && cp == '\\') {
            plen = (size_t)snprintf(esc, sizeof(esc), "\\\\");
        } else {
            memcpy(esc, p + i, n);
            plen = n;
        }
        if (cap - *o <= plen) return;
        memcpy(out + *o, esc, plen);
        *o += plen;
        i += n ? n : 1;
    }
}

int ksock_decode_report(const ksock_decode_err_t *e, const char *format, char *errstr,
                        size_t errstr_size)
{
    if (errstr == NULL || errstr_size == 0) return e->rc;
    int n = snprintf(errstr, errstr_size, "%s: offset %zu: ", format, e->at);
    size_t o = n < 0 ? 0 : (size_t)n;
    if (o >= errstr_size) return e->rc; /* only the prefix fitted, and it is ours */
    printable_append(errstr, errstr_size, &o, e->msg, strnlen(e->msg, sizeof(e->msg)));
    errstr[o] = '\0';
    return e->rc;
}

bool ksock_utf8_check(const void *p, size_t len, size_t *bad_at)
{
    const unsigned char *s = p, *start = p, *end = s + len;
    while (s < end) {
        if (*s < 0x80) {
            /* ASCII fast path, 8 bytes at a time: most topics, keys and ids. */
            while ((size_t)(end - s) >= 8) {
                uint64_t w;
                memcpy(&w, s, 8);
                if (w & 0x8080808080808080ull) break;
                s += 8;
            }
            while (s < end && *s < 0x80)
                s++;
            continue;
        }
        size_t n = utf8_seq_len(s, (size_t)(end - s));
        if (n == 0) {
            if (bad_at) *bad_at = (size_t)(s - start);
            return false;
        }
        s += n;
    }
    return true;
}

/* ---- Keyed hash (SipHash-1-3) for map indexes ----------------------------- */

static uint64_t hash_k0, hash_k1;
static pthread_once_t hash_once = PTHREAD_ONCE_INIT;

static void hash_seed(void)
{
    uint64_t k[2] = {0, 0};
    if (getrandom(k, sizeof(k), GRND_NONBLOCK) != (ssize_t)sizeof(k)) {
        /* No entropy yet (early boot): still better than a fixed key. */
        k[0] = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&k;
        k[1] = ksock_now_ns();
    }
    hash_k0 = k[0];
    hash_k1 = k[1];
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

static uint64_t key_hash(const char *key, size_t len)
{
    pthread_once(&hash_once, hash_seed);
    uint64_t v0 = 0x736f6d6570736575ull ^ hash_k0, v1 = 0x646f72616e646f6dull ^ hash_k1;
    uint64_t v2 = 0x6c7967656e657261ull ^ hash_k0, v3 = 0x7465646279746573ull ^ hash_k1;
    const unsigned char *p = (const unsigned char *)key;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t m;
        memcpy(&m, p + i, 8);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t j = 0; i + j < len; j++)
        b |= (uint64_t)p[i + j] << (8 * j);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- Constructors -------------------------------------------------------- */

static ksock_value_t *value_alloc(ksock_value_type_t type, size_t extra)
{
    ksock_value_t *v = malloc(sizeof(*v) + extra);
    if (v == NULL) return NULL;
    memset(v, 0, sizeof(*v));
    atomic_init(&v->refs, 1);
    v->type = (uint8_t)type;
    return v;
}

ksock_value_t *ksock_value_null(void)
{
    return &value_null;
}

ksock_value_t *ksock_value_bool(bool b)
{
    return b ? &value_true : &value_false;
}

ksock_value_t *ksock_value_int(int64_t i)
{
    ksock_value_t *v = value_alloc(KSOCK_VALUE_INT, 0);
    if (v) v->u.i = i;
    return v;
}

ksock_value_t *ksock_value_double(double d)
{
    ksock_value_t *v = value_alloc(KSOCK_VALUE_DOUBLE, 0);
    if (v) v->u.d = d;
    return v;
}

static ksock_value_t *value_blob(ksock_value_type_t type, const void *p, size_t len)
{
    if (len > SIZE_MAX - sizeof(ksock_value_t) - 1) return NULL;
    ksock_value_t *v = value_alloc(type, len + 1);
    if (v == NULL) return NULL;
    v->u.s.p = (char *)(v + 1);
    v->u.s.len = len;
    if (len) memcpy(v->u.s.p, p, len);
    v->u.s.p[len] = '\0'; /* strings are handed out NUL-terminated */
    return v;
}

ksock_value_t *ksock_value_string(const char *s, size_t len)
{
    if (s == NULL && len) return NULL;
    if (!ksock_utf8_check(s, len, NULL)) return NULL;
    return value_blob(KSOCK_VALUE_STRING, s, len);
}

ksock_value_t *ksock_value_cstring(const char *s)
{
    return s ? ksock_value_string(s, strlen(s)) : NULL;
}

ksock_value_t *ksock_value_bytes(const void *p, size_t len)
{
    if (p == NULL && len) return NULL;
    return value_blob(KSOCK_VALUE_BYTES, p, len);
}

ksock_value_t *ksock_value_array(void)
{
    ksock_value_t *v = value_alloc(KSOCK_VALUE_ARRAY, 0);
    if (v) v->depth = 1;
    return v;
}

ksock_value_t *ksock_value_map(void)
{
    ksock_value_t *v = value_alloc(KSOCK_VALUE_MAP, 0);
    if (v) v->depth = 1;
    return v;
}

/* ---- Containers ------------------------------------------------------------ */

/* The checks shared by push and set. On failure the caller drops `item`. */
static int container_accepts(ksock_value_t *c, ksock_value_type_t type, const ksock_value_t *item)
{
    if (c == NULL || item == NULL || c->type != type || c->frozen || c == item)
        return KSOCK_E_INVAL;
    if ((uint32_t)item->depth + 1 > KSOCK_VALUE_MAX_DEPTH) return KSOCK_E_LIMIT;
    return 0;
}

/* Bookkeeping once `item` is inside `c`. */
static void container_adopted(ksock_value_t *c, ksock_value_t *item)
{
    if (item->depth + 1 > c->depth) c->depth = (uint16_t)(item->depth + 1);
    if (!item->immortal) item->frozen = 1;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t ncap = *cap ? *cap * 2 : 4;
    while (ncap < need)
        ncap *= 2;
    if (ncap > SIZE_MAX / elem) return KSOCK_E_NOMEM;
    void *np = realloc(*p, ncap * elem);
    if (np == NULL) return KSOCK_E_NOMEM;
    *p = np;
    *cap = ncap;
    return 0;
}

int ksock_value_array_push(ksock_value_t *arr, ksock_value_t *item)
{
    int rc = container_accepts(arr, KSOCK_VALUE_ARRAY, item);
    if (rc == 0) rc = grow((void **)&arr->u.a.v, &arr->u.a.cap, arr->u.a.n + 1, sizeof(item));
    if (rc != 0) {
        ksock_value_unref(item);
        return rc;
    }
    arr->u.a.v[arr->u.a.n++] = item;
    container_adopted(arr, item);
    return 0;
}

static bool entry_is(const map_entry_t *e, const char *key, size_t len, uint64_t h)
{
    return e->hash == h && e->key_len == len && memcmp(e->key, key, len) == 0;
}

/* Entry index of `key`, or -1. `h` is its hash. */
static ptrdiff_t map_find(const ksock_value_t *m, const char *key, size_t len, uint64_t h)
{
    if (m->u.m.index_cap == 0) {
        for (size_t i = 0; i < m->u.m.n; i++)
            if (entry_is(&m->u.m.e[i], key, len, h)) return (ptrdiff_t)i;
        return -1;
    }
    size_t mask = m->u.m.index_cap - 1;
    for (size_t s = h & mask;; s = (s + 1) & mask) {
        uint32_t slot = m->u.m.index[s];
        if (slot == 0) return -1;
        if (entry_is(&m->u.m.e[slot - 1], key, len, h)) return (ptrdiff_t)slot - 1;
    }
}

static void index_put(ksock_value_t *m, size_t entry)
{
    size_t mask = m->u.m.index_cap - 1;
    size_t s = m->u.m.e[entry].hash & mask;
    while (m->u.m.index[s] != 0)
        s = (s + 1) & mask;
    m->u.m.index[s] = (uint32_t)entry + 1;
}

/* Keep the index at most half full, so probes stay short. */
static int map_reindex(ksock_value_t *m, size_t n)
{
    if (n < MAP_INDEX_MIN || n * 2 <= m->u.m.index_cap) return 0;
    if (n >= UINT32_MAX / 4) return KSOCK_E_LIMIT;
    size_t cap = 16;
    while (cap < n * 4)
        cap *= 2;
    uint32_t *idx = calloc(cap, sizeof(*idx));
    if (idx == NULL) return KSOCK_E_NOMEM;
    free(m->u.m.index);
    m->u.m.index = idx;
    m->u.m.index_cap = cap;
    for (size_t i = 0; i < m->u.m.n; i++)
        index_put(m, i);
    return 0;
}

static int map_insert(ksock_value_t *map, const char *key, size_t key_len, ksock_value_t *item)
{
    uint64_t h = key_hash(key, key_len);
    if (map_find(map, key, key_len, h) >= 0) return KSOCK_E_EXIST;
    int rc = grow((void **)&map->u.m.e, &map->u.m.cap, map->u.m.n + 1, sizeof(map_entry_t));
    if (rc == 0) rc = map_reindex(map, map->u.m.n + 1);
    if (rc != 0) return rc;
    char *k = malloc(key_len + 1);
    if (k == NULL) return KSOCK_E_NOMEM;
    if (key_len) memcpy(k, key, key_len);
    k[key_len] = '\0';
    map_entry_t *e = &map->u.m.e[map->u.m.n];
    *e = (map_entry_t){k, key_len, h, item};
    if (map->u.m.index_cap) index_put(map, map->u.m.n);
    map->u.m.n++;
    return 0;
}

int ksock_value_map_set(ksock_value_t *map, const char *key, size_t key_len, ksock_value_t *item)
{
    int rc = container_accepts(map, KSOCK_VALUE_MAP, item);
    if (rc == 0 && (key == NULL && key_len)) rc = KSOCK_E_INVAL;
    if (rc == 0 && !ksock_utf8_check(key, key_len, NULL)) rc = KSOCK_E_INVAL;
    if (rc == 0) rc = map_insert(map, key ? key : "", key_len, item);
    if (rc != 0) {
        ksock_value_unref(item);
        return rc;
    }
    container_adopted(map, item);
    return 0;
}

/* ---- Reference counting ------------------------------------------------------ */

ksock_value_t *ksock_value_ref(ksock_value_t *v)
{
    if (v && !v->immortal) atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
    return v;
}

static void value_free(ksock_value_t *v)
{
    if (v->type == KSOCK_VALUE_ARRAY) {
        for (size_t i = 0; i < v->u.a.n; i++)
            ksock_value_unref(v->u.a.v[i]);
        free(v->u.a.v);
    } else if (v->type == KSOCK_VALUE_MAP) {
        for (size_t i = 0; i < v->u.m.n; i++) {
            free(v->u.m.e[i].key);
            ksock_value_unref(v->u.m.e[i].val);
        }
        free(v->u.m.e);
        free(v->u.m.index);
    }
    free(v);
}

void ksock_value_unref(ksock_value_t *v)
{
    if (v == NULL || v->immortal) return;
    if (atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) == 1) value_free(v);
}

/* ---- Accessors ---------------------------------------------------------------- */

ksock_value_type_t ksock_value_type(const ksock_value_t *v)
{
    return v ? (ksock_value_type_t)v->type : KSOCK_VALUE_NULL;
}

const char *ksock_value_type_name(ksock_value_type_t t)
{
    static const char *const names[] = {"null",   "bool",  "int",   "double",
                                        "string", "bytes", "array", "map"};
    return (unsigned)t < sizeof(names) / sizeof(names[0]) ? names[t] : "unknown";
}

bool ksock_value_get_bool(const ksock_value_t *v)
{
    return v && v->type == KSOCK_VALUE_BOOL && v->u.b;
}

int64_t ksock_value_get_int(const ksock_value_t *v)
{
    return v && v->type == KSOCK_VALUE_INT ? v->u.i : 0;
}

double ksock_value_get_double(const ksock_value_t *v)
{
    if (v && v->type == KSOCK_VALUE_DOUBLE) return v->u.d;
    if (v && v->type == KSOCK_VALUE_INT) return (double)v->u.i;
    return 0.0;
}

static const char *blob_get(const ksock_value_t *v, ksock_value_type_t t, size_t *len)
{
    if (v == NULL || v->type != t) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = v->u.s.len;
    return v->u.s.p;
}

const char *ksock_value_get_string(const ksock_value_t *v, size_t *len)
{
    return blob_get(v, KSOCK_VALUE_STRING, len);
}

const void *ksock_value_get_bytes(const ksock_value_t *v, size_t *len)
{
    return blob_get(v, KSOCK_VALUE_BYTES, len);
}

size_t ksock_value_count(const ksock_value_t *v)
{
    if (v == NULL) return 0;
    if (v->type == KSOCK_VALUE_ARRAY) return v->u.a.n;
    if (v->type == KSOCK_VALUE_MAP) return v->u.m.n;
    return 0;
}

const ksock_value_t *ksock_value_array_get(const ksock_value_t *v, size_t i)
{
    if (v == NULL || v->type != KSOCK_VALUE_ARRAY || i >= v->u.a.n) return NULL;
    return v->u.a.v[i];
}

const ksock_value_t *ksock_value_map_at(const ksock_value_t *v, size_t i, const char **key,
                                        size_t *key_len)
{
    if (v == NULL || v->type != KSOCK_VALUE_MAP || i >= v->u.m.n) return NULL;
    if (key) *key = v->u.m.e[i].key;
    if (key_len) *key_len = v->u.m.e[i].key_len;
    return v->u.m.e[i].val;
}

const ksock_value_t *ksock_value_map_getn(const ksock_value_t *v, const char *key, size_t key_len)
{
    if (v == NULL || v->type != KSOCK_VALUE_MAP || (key == NULL && key_len)) return NULL;
    if (key == NULL) key = "";
    ptrdiff_t i = map_find(v, key, key_len, key_hash(key, key_len));
    return i < 0 ? NULL : v->u.m.e[i].val;
}

const ksock_value_t *ksock_value_map_get(const ksock_value_t *v, const char *key)
{
    return key ? ksock_value_map_getn(v, key, strlen(key)) : NULL;
}

uint32_t ksock_value_depth(const ksock_value_t *v)
{
    return v ? v->depth : 0;
}

/* ---- Equality ------------------------------------------------------------------- */

static bool double_same(double a, double b)
{
    /* Bitwise, so that -0.0 != 0.0 (they encode differently); NaNs are all alike. */
    if (a != a && b != b) return true;
    return memcmp(&a, &b, sizeof(a)) == 0;
}

static bool map_equal(const ksock_value_t *a, const ksock_value_t *b)
{
    for (size_t i = 0; i < a->u.m.n; i++) {
        const map_entry_t *e = &a->u.m.e[i];
        ptrdiff_t j = map_find(b, e->key, e->key_len, e->hash);
        if (j < 0 || !ksock_value_equal(e->val, b->u.m.e[j].val)) return false;
    }
    return true;
}

bool ksock_value_equal(const ksock_value_t *a, const ksock_value_t *b)
{
    if (a == b) return true;
    if (a == NULL || b == NULL || a->type != b->type) return false;
    switch ((ksock_value_type_t)a->type) {
    case KSOCK_VALUE_NULL:
        return true;
    case KSOCK_VALUE_BOOL:
        return a->u.b == b->u.b;
    case KSOCK_VALUE_INT:
        return a->u.i == b->u.i;
    case KSOCK_VALUE_DOUBLE:
        return double_same(a->u.d, b->u.d);
    case KSOCK_VALUE_STRING:
    case KSOCK_VALUE_BYTES:
        return a->u.s.len == b->u.s.len && memcmp(a->u.s.p, b->u.s.p, a->u.s.len) == 0;
    case KSOCK_VALUE_ARRAY:
        if (a->u.a.n != b->u.a.n) return false;
        for (size_t i = 0; i < a->u.a.n; i++)
            if (!ksock_value_equal(a->u.a.v[i], b->u.a.v[i])) return false;
        return true;
    case KSOCK_VALUE_MAP:
        return a->u.m.n == b->u.m.n && map_equal(a, b);
    }
    return false;
}
