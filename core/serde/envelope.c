/*
 * The Kafka envelope (serializer.h): names, the decoder arena, and the one
 * rule check that every serializer applies (docs/protocol.md section 2).
 *
 * The rules live here rather than in each plugin so that a frame one format
 * accepts is exactly a frame every other format can carry: cross-format
 * conversion never meets an envelope the target format refuses.
 */
#include "../internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Names ----------------------------------------------------------------- */

static const char *const op_names[] = {
    NULL,    "subscribe",  "unsubscribe",  "publish", "ack",  "record",
    "error", "subscribed", "unsubscribed", "ping",    "pong", "token",
};
#define OP_COUNT (sizeof(op_names) / sizeof(op_names[0]))

static const char *const start_names[] = {"latest", "earliest", "offsets", "timestamp"};
#define START_COUNT (sizeof(start_names) / sizeof(start_names[0]))

const char *ksock_op_name(ksock_op_t op)
{
    return (unsigned)op < OP_COUNT ? op_names[op] : NULL;
}

const char *ksock_start_name(ksock_start_t start)
{
    return (unsigned)start < START_COUNT ? start_names[start] : NULL;
}

static int name_lookup(const char *const *names, size_t n, size_t first, const char *s, size_t len)
{
    for (size_t i = first; i < n; i++)
        if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0) return (int)i;
    return -1;
}

int ksock_op_parse(const char *name, size_t len, ksock_op_t *out)
{
    int i = name ? name_lookup(op_names, OP_COUNT, 1, name, len) : -1;
    if (i < 0) return KSOCK_E_INVAL;
    *out = (ksock_op_t)i;
    return 0;
}

int ksock_start_parse(const char *name, size_t len, ksock_start_t *out)
{
    int i = name ? name_lookup(start_names, START_COUNT, 0, name, len) : -1;
    if (i < 0) return KSOCK_E_INVAL;
    *out = (ksock_start_t)i;
    return 0;
}

/* ---- Init, clear and the arena ------------------------------------------------ */

/*
 * Decoders allocate strings, header arrays and offset lists here, so that
 * one ksock_envelope_clear() releases everything whatever the format did.
 * Blocks are bump-allocated and chained; a typical envelope needs one.
 */
typedef struct arena_block_s {
    struct arena_block_s *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} arena_block_t;

#define ARENA_ALIGN 16
#define ARENA_FIRST 512

void ksock_envelope_init(ksock_envelope_t *env)
{
    memset(env, 0, sizeof(*env));
    env->size = sizeof(*env);
    env->op = KSOCK_OP_NONE;
    env->partition = -1;
    env->offset = -1;
    env->timestamp = -1;
    env->start = KSOCK_START_LATEST;
    env->start_timestamp = -1;
}

void ksock_envelope_clear(ksock_envelope_t *env)
{
    arena_block_t *b = env->arena_;
    while (b) {
        arena_block_t *next = b->next;
        free(b);
        b = next;
    }
    ksock_envelope_init(env);
}

void *ksock_envelope_alloc(ksock_envelope_t *env, size_t n)
{
    arena_block_t *b = env->arena_;
    if (n > SIZE_MAX - 2 * ARENA_ALIGN - sizeof(arena_block_t)) return NULL;
    n = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (n == 0) n = ARENA_ALIGN;
    if (b == NULL || b->cap - b->used < n) {
        size_t cap = b ? b->cap * 2 : ARENA_FIRST;
        if (cap > (64u << 10)) cap = 64u << 10; /* grow, but not without bound */
        if (cap < n) cap = n;
        arena_block_t *nb = malloc(sizeof(*nb) + cap);
        if (nb == NULL) return NULL;
        nb->next = b;
        nb->used = 0;
        nb->cap = cap;
        env->arena_ = b = nb;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

/* ---- The rule check ------------------------------------------------------------ */

static int proto_fail(char *errstr, size_t errstr_size, const char *fmt, ...) KSOCK_PRINTF(3, 4);

static int proto_fail(char *errstr, size_t errstr_size, const char *fmt, ...)
{
    if (errstr && errstr_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
    }
    return KSOCK_E_PROTO;
}

/* A string field: NULL is absent; present means (ptr, len) of valid UTF-8. */
static bool str_ok(const char *s, size_t len)
{
    if (s == NULL) return len == 0;
    return ksock_utf8_check(s, len, NULL);
}

static int check_strings(const ksock_envelope_t *e, char *err, size_t errsz)
{
    if (!str_ok(e->id, e->id_len)) return proto_fail(err, errsz, "id is not valid UTF-8");
    if (!str_ok(e->topic, e->topic_len)) return proto_fail(err, errsz, "topic is not valid UTF-8");
    if (e->topic && e->topic_len == 0) return proto_fail(err, errsz, "topic is empty");
    if (!str_ok(e->error_message, e->error_message_len))
        return proto_fail(err, errsz, "error_message is not valid UTF-8");
    if (e->nheaders && e->headers == NULL) return proto_fail(err, errsz, "headers missing");
    for (size_t i = 0; i < e->nheaders; i++) {
        const ksock_header_t *h = &e->headers[i];
        if (h->key == NULL && h->key_len) return proto_fail(err, errsz, "header %zu: no key", i);
        if (!ksock_utf8_check(h->key ? h->key : "", h->key_len, NULL))
            return proto_fail(err, errsz, "header %zu: key is not valid UTF-8", i);
        if (h->value.present && h->value.data == NULL && h->value.len)
            return proto_fail(err, errsz, "header %zu: value missing", i);
    }
    return 0;
}

static int check_numbers(const ksock_envelope_t *e, char *err, size_t errsz)
{
    if (e->partition < -1) return proto_fail(err, errsz, "partition %d is negative", e->partition);
    if (e->offset < -1)
        return proto_fail(err, errsz, "offset %lld is negative", (long long)e->offset);
    if (e->timestamp < -1)
        return proto_fail(err, errsz, "timestamp %lld is negative", (long long)e->timestamp);
    if (e->start_timestamp < -1)
        return proto_fail(err, errsz, "start_timestamp %lld is negative",
                          (long long)e->start_timestamp);
    if (e->error_code > 0)
        return proto_fail(err, errsz, "error_code %d is positive", (int)e->error_code);
    if ((e->key.present && e->key.data == NULL && e->key.len) ||
        (e->value.present && e->value.data == NULL && e->value.len))
        return proto_fail(err, errsz, "key or value data missing");
    return 0;
}

static int check_start(const ksock_envelope_t *e, char *err, size_t errsz)
{
    if (ksock_start_name(e->start) == NULL)
        return proto_fail(err, errsz, "unknown start %d", (int)e->start);
    if (e->noffsets && e->start != KSOCK_START_OFFSETS)
        return proto_fail(err, errsz, "offsets given but start is not \"offsets\"");
    if (e->start_timestamp != -1 && e->start != KSOCK_START_TIMESTAMP)
        return proto_fail(err, errsz, "start_timestamp given but start is not \"timestamp\"");
    if (e->start == KSOCK_START_OFFSETS && e->noffsets == 0)
        return proto_fail(err, errsz, "start \"offsets\" needs at least one offset");
    if (e->start == KSOCK_START_TIMESTAMP && e->start_timestamp < 0)
        return proto_fail(err, errsz, "start \"timestamp\" needs start_timestamp");
    if (e->noffsets && e->offsets == NULL) return proto_fail(err, errsz, "offsets missing");
    for (size_t i = 0; i < e->noffsets; i++)
        if (e->offsets[i].partition < 0 || e->offsets[i].offset < 0)
            return proto_fail(err, errsz, "offsets[%zu]: partition and offset must be >= 0", i);
    return 0;
}

/* The op's required fields (docs/protocol.md, table "Operations"). */
static int check_required(const ksock_envelope_t *e, char *err, size_t errsz)
{
    const char *op = ksock_op_name(e->op);
    switch (e->op) {
    case KSOCK_OP_SUBSCRIBE:
    case KSOCK_OP_UNSUBSCRIBE:
    case KSOCK_OP_PUBLISH:
    case KSOCK_OP_SUBSCRIBED:
    case KSOCK_OP_UNSUBSCRIBED:
        if (e->topic == NULL) return proto_fail(err, errsz, "%s needs a topic", op);
        return 0;
    case KSOCK_OP_ACK:
    case KSOCK_OP_RECORD:
        if (e->topic == NULL || e->partition < 0 || e->offset < 0)
            return proto_fail(err, errsz, "%s needs topic, partition and offset", op);
        return 0;
    case KSOCK_OP_ERROR:
        if (e->error_code >= 0) return proto_fail(err, errsz, "error needs a negative error_code");
        return 0;
    case KSOCK_OP_PING:
    case KSOCK_OP_PONG:
    case KSOCK_OP_TOKEN: /* its value is the server's to check (docs/protocol.md, Tokens) */
        return 0;
    case KSOCK_OP_NONE:
        return proto_fail(err, errsz, "op missing");
    }
    return proto_fail(err, errsz, "unknown op %d", (int)e->op);
}

int ksock_envelope_check(const ksock_envelope_t *env, char *errstr, size_t errstr_size)
{
    int rc = check_required(env, errstr, errstr_size);
    if (rc == 0) rc = check_start(env, errstr, errstr_size);
    if (rc == 0) rc = check_numbers(env, errstr, errstr_size);
    if (rc == 0) rc = check_strings(env, errstr, errstr_size);
    return rc;
}

/* ---- Equality ------------------------------------------------------------------ */

static bool str_eq(const char *a, size_t alen, const char *b, size_t blen)
{
    if ((a == NULL) != (b == NULL)) return false;
    return a == NULL || (alen == blen && (alen == 0 || memcmp(a, b, alen) == 0));
}

static bool bytes_eq(const ksock_bytes_t *a, const ksock_bytes_t *b)
{
    if (a->present != b->present) return false;
    return !a->present ||
           (a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0));
}

static bool headers_eq(const ksock_envelope_t *a, const ksock_envelope_t *b)
{
    if (a->nheaders != b->nheaders) return false;
    for (size_t i = 0; i < a->nheaders; i++) {
        const ksock_header_t *x = &a->headers[i], *y = &b->headers[i];
        if (!str_eq(x->key ? x->key : "", x->key_len, y->key ? y->key : "", y->key_len) ||
            !bytes_eq(&x->value, &y->value))
            return false;
    }
    return true;
}

static bool offsets_eq(const ksock_envelope_t *a, const ksock_envelope_t *b)
{
    if (a->noffsets != b->noffsets) return false;
    for (size_t i = 0; i < a->noffsets; i++)
        if (a->offsets[i].partition != b->offsets[i].partition ||
            a->offsets[i].offset != b->offsets[i].offset)
            return false;
    return true;
}

bool ksock_envelope_equal(const ksock_envelope_t *a, const ksock_envelope_t *b)
{
    return a->op == b->op && str_eq(a->id, a->id_len, b->id, b->id_len) &&
           str_eq(a->topic, a->topic_len, b->topic, b->topic_len) && a->partition == b->partition &&
           a->offset == b->offset && a->timestamp == b->timestamp && bytes_eq(&a->key, &b->key) &&
           bytes_eq(&a->value, &b->value) && headers_eq(a, b) && a->start == b->start &&
           offsets_eq(a, b) && a->start_timestamp == b->start_timestamp &&
           a->error_code == b->error_code &&
           str_eq(a->error_message, a->error_message_len, b->error_message, b->error_message_len);
}
