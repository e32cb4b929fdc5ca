/*
 * serializer_json: decoding an envelope (docs/protocol.md section 3) straight
 * from yajl's callbacks into a ksock_envelope_t, with no value tree.
 *
 * A small state machine follows where the parser is: the top object, the
 * headers or offsets array, one header or offset object, or an embedded
 * JSON value (key_json / value_json), which is re-written compactly into a
 * buffer as it streams by and becomes the key or value bytes.
 *
 * One unit (~820 lines): a single streaming state machine over yajl's
 * callbacks; its states share one reader struct and splitting them by
 * field would scatter the transitions a reader has to follow together.
 */
#include "json_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

enum field {
    F_OP,
    F_ID,
    F_TOPIC,
    F_PARTITION,
    F_OFFSET,
    F_TIMESTAMP,
    F_KEY,
    F_KEY_B64,
    F_KEY_JSON,
    F_VALUE,
    F_VALUE_B64,
    F_VALUE_JSON,
    F_HEADERS,
    F_START,
    F_OFFSETS,
    F_START_TS,
    F_ERROR_CODE,
    F_ERROR_MESSAGE,
    F_COUNT,
    F_NONE = -1
};

enum kind { K_STR, K_INT, K_ANY, K_ARR };

static const struct {
    const char *name;
    size_t len;
    enum kind kind;
} fields[F_COUNT] = {
#define FIELD(n, k)                                                                                \
    {                                                                                              \
        n, sizeof(n) - 1, k                                                                        \
    }
    FIELD("op", K_STR),         FIELD("id", K_STR),
    FIELD("topic", K_STR),      FIELD("partition", K_INT),
    FIELD("offset", K_INT),     FIELD("timestamp", K_INT),
    FIELD("key", K_STR),        FIELD("key_b64", K_STR),
    FIELD("key_json", K_ANY),   FIELD("value", K_STR),
    FIELD("value_b64", K_STR),  FIELD("value_json", K_ANY),
    FIELD("headers", K_ARR),    FIELD("start", K_STR),
    FIELD("offsets", K_ARR),    FIELD("start_timestamp", K_INT),
    FIELD("error_code", K_INT), FIELD("error_message", K_STR),
#undef FIELD
};

static const char *const kind_desc[] = {"a string", "an integer", "any JSON value", "an array"};

enum state { S_START, S_TOP, S_HEADERS, S_HEADER, S_OFFSETS, S_OFFSET, S_EMBED, S_DONE };

/* Members of a header object and of an offsets entry. */
enum { H_KEY = 1, H_VALUE = 2, H_VALUE_B64 = 4, O_PARTITION = 1, O_OFFSET = 2 };

typedef struct env_reader_s {
    yajl_handle h;
    const unsigned char *input;
    const ksock_value_limits_t *lim;
    ksock_envelope_t *env;
    json_err_t err;
    json_err_t proto; /* the first rule broken (KSOCK_E_PROTO), reported if err stays clear */
    enum state state;
    int field;     /* top-level member waiting for its value */
    uint32_t seen; /* top-level members seen, by bit */
    /* headers and offsets collect here, then move to the arena */
    ksock_header_t *hdrs;
    size_t nhdrs, caphdrs;
    int sub_field; /* H_* / O_* member waiting for its value */
    unsigned sub_seen;
    ksock_partition_offset_t *offs;
    size_t noffs, capoffs;
    /* embedded JSON */
    ksock_buf_t emb;
    uint32_t emb_depth, max_depth;
    uint8_t emb_is_map[KSOCK_VALUE_MAX_DEPTH + 1];
    uint8_t emb_first[KSOCK_VALUE_MAX_DEPTH + 1];
} env_reader_t;

#define FAIL(r, rc, ...) json_fail(&(r)->err, (r)->h, (rc), __VA_ARGS__)
/*
 * A well-typed value that breaks a rule of docs/protocol.md section 2:
 * noted, and the parse goes on, so that a malformed frame is a decode
 * error wherever its fault is (protocol.md section 6, which code when).
 * Returns 1, what a callback returns to go on.
 */
static int proto_rule(env_reader_t *r, const char *fmt, ...) KSOCK_PRINTF(2, 3);

static int proto_rule(env_reader_t *r, const char *fmt, ...)
{
    if (r->proto.rc != 0) return 1;
    r->proto.rc = KSOCK_E_PROTO;
    r->proto.at = yajl_get_bytes_consumed(r->h);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->proto.msg, sizeof(r->proto.msg), fmt, ap);
    va_end(ap);
    return 1;
}

static int nomem(env_reader_t *r)
{
    return FAIL(r, KSOCK_E_NOMEM, "out of memory");
}

static int wrong_type(env_reader_t *r)
{
    switch (r->state) {
    case S_HEADERS:
        return FAIL(r, KSOCK_E_DECODE, "headers entries must be objects");
    case S_OFFSETS:
        return FAIL(r, KSOCK_E_DECODE, "offsets entries must be objects");
    case S_HEADER:
        return FAIL(r, KSOCK_E_DECODE, "header members must be strings");
    case S_OFFSET:
        return FAIL(r, KSOCK_E_DECODE, "offsets entries hold two integers");
    default:
        break;
    }
    if (r->field == F_NONE) return FAIL(r, KSOCK_E_DECODE, "unexpected value");
    return FAIL(r, KSOCK_E_DECODE, "member \"%s\" must be %s", fields[r->field].name,
                kind_desc[fields[r->field].kind]);
}

/* Copy into the envelope's arena (NUL-terminated for convenience). */
static const char *arena_copy(env_reader_t *r, const void *p, size_t len)
{
    char *c = ksock_envelope_alloc(r->env, len + 1);
    if (c == NULL) return NULL;
    if (len) memcpy(c, p, len);
    c[len] = '\0';
    return c;
}

/* ---- Scalars at the top level ------------------------------------------------------ */

static int checked_string(env_reader_t *r, const unsigned char *s, size_t len)
{
    if (len > r->lim->max_string)
        return FAIL(r, KSOCK_E_LIMIT, "string longer than %llu bytes",
                    (unsigned long long)r->lim->max_string);
    const char *why =
        json_string_problem(r->input, yajl_get_bytes_consumed(r->h), (const char *)s, len);
    return why ? FAIL(r, KSOCK_E_DECODE, "%s", why) : 1;
}

static int set_text(env_reader_t *r, const char **dst, size_t *dst_len, const unsigned char *s,
                    size_t len)
{
    *dst = arena_copy(r, s, len);
    *dst_len = len;
    return *dst ? 1 : nomem(r);
}

static int set_bytes(env_reader_t *r, ksock_bytes_t *dst, const unsigned char *s, size_t len,
                     bool b64)
{
    if (!b64) {
        dst->data = arena_copy(r, s, len);
        dst->len = len;
    } else {
        unsigned char *buf = ksock_envelope_alloc(r->env, len / 4 * 3 + 1);
        ptrdiff_t n = buf ? json_base64_decode((const char *)s, len, buf) : 0;
        if (n < 0) return FAIL(r, KSOCK_E_DECODE, "invalid base64");
        dst->data = buf;
        dst->len = (size_t)n;
    }
    dst->present = true;
    return dst->data ? 1 : nomem(r);
}

static int top_string(env_reader_t *r, const unsigned char *s, size_t len)
{
    ksock_envelope_t *e = r->env;
    const char *t = (const char *)s;
    switch (r->field) {
    case F_OP:
        if (ksock_op_parse(t, len, &e->op) != 0)
            return proto_rule(r, "unknown op \"%.*s\"", (int)(len > 32 ? 32 : len), t);
        return 1;
    case F_START:
        if (ksock_start_parse(t, len, &e->start) != 0)
            return proto_rule(r, "unknown start \"%.*s\"", (int)(len > 32 ? 32 : len), t);
        return 1;
    case F_ID:
        return set_text(r, &e->id, &e->id_len, s, len);
    case F_TOPIC:
        return set_text(r, &e->topic, &e->topic_len, s, len);
    case F_ERROR_MESSAGE:
        return set_text(r, &e->error_message, &e->error_message_len, s, len);
    case F_KEY:
    case F_KEY_B64:
        return set_bytes(r, &e->key, s, len, r->field == F_KEY_B64);
    case F_VALUE:
    case F_VALUE_B64:
        return set_bytes(r, &e->value, s, len, r->field == F_VALUE_B64);
    }
    return wrong_type(r);
}

static int top_int(env_reader_t *r, int64_t v)
{
    ksock_envelope_t *e = r->env;
    const char *name = fields[r->field].name;
    if (r->field == F_ERROR_CODE) {
        if (v < INT32_MIN) return FAIL(r, KSOCK_E_DECODE, "error_code beyond int32");
        if (v >= 0) return proto_rule(r, "error_code must be negative");
        e->error_code = (int32_t)v;
        return 1;
    }
    if (r->field == F_PARTITION && v > INT32_MAX)
        return FAIL(r, KSOCK_E_DECODE, "partition beyond int32");
    if (v < 0) return proto_rule(r, "member \"%s\" must be >= 0", name);
    switch (r->field) {
    case F_PARTITION:
        e->partition = (int32_t)v;
        return 1;
    case F_OFFSET:
        e->offset = v;
        return 1;
    case F_TIMESTAMP:
        e->timestamp = v;
        return 1;
    case F_START_TS:
        e->start_timestamp = v;
        return 1;
    }
    return wrong_type(r);
}

/* ---- Embedded JSON (key_json / value_json) ----------------------------------------- */

static int emb_finish(env_reader_t *r)
{
    if (r->emb.len > r->lim->max_string)
        return FAIL(r, KSOCK_E_LIMIT, "embedded JSON longer than %llu bytes",
                    (unsigned long long)r->lim->max_string);
    ksock_bytes_t *dst = r->field == F_KEY_JSON ? &r->env->key : &r->env->value;
    dst->data = arena_copy(r, r->emb.data ? r->emb.data : "", r->emb.len);
    dst->len = r->emb.len;
    dst->present = true;
    r->emb.len = 0;
    r->state = S_TOP;
    r->field = F_NONE;
    return dst->data ? 1 : nomem(r);
}

/* Before a value inside embedded JSON: the comma between array elements. */
static int emb_before(env_reader_t *r)
{
    uint32_t d = r->emb_depth;
    if (d == 0 || r->emb_is_map[d]) return 1;
    if (!r->emb_first[d] && JSON_LIT(&r->emb, ",") != 0) return nomem(r);
    r->emb_first[d] = 0;
    return 1;
}

/* After a complete value: done when it was the whole embedded value. */
static int emb_after(env_reader_t *r)
{
    return r->emb_depth == 0 ? emb_finish(r) : 1;
}

static int emb_scalar(env_reader_t *r, const char *text, size_t len)
{
    if (!emb_before(r)) return 0;
    if (json_put(&r->emb, text, len) != 0) return nomem(r);
    return emb_after(r);
}

static int emb_string(env_reader_t *r, const unsigned char *s, size_t len)
{
    if (!checked_string(r, s, len) || !emb_before(r)) return 0;
    if (json_put_string(&r->emb, (const char *)s, len) != 0) return nomem(r);
    return emb_after(r);
}

static int emb_open(env_reader_t *r, bool map)
{
    if (r->emb_depth + 1 > r->max_depth)
        return FAIL(r, KSOCK_E_LIMIT, "nesting deeper than %u", r->max_depth);
    if (!emb_before(r)) return 0;
    if (json_put(&r->emb, map ? "{" : "[", 1) != 0) return nomem(r);
    r->emb_depth++;
    r->emb_is_map[r->emb_depth] = map;
    r->emb_first[r->emb_depth] = 1;
    return 1;
}

static int emb_key(env_reader_t *r, const unsigned char *k, size_t len)
{
    uint32_t d = r->emb_depth;
    if (!checked_string(r, k, len)) return 0;
    if (!r->emb_first[d] && JSON_LIT(&r->emb, ",") != 0) return nomem(r);
    r->emb_first[d] = 0;
    if (json_put_string(&r->emb, (const char *)k, len) != 0 || JSON_LIT(&r->emb, ":") != 0)
        return nomem(r);
    return 1;
}

static int emb_close(env_reader_t *r)
{
    if (json_put(&r->emb, r->emb_is_map[r->emb_depth] ? "}" : "]", 1) != 0) return nomem(r);
    r->emb_depth--;
    return emb_after(r);
}

/* ---- Headers and offsets ------------------------------------------------------------- */

static int header_string(env_reader_t *r, const unsigned char *s, size_t len)
{
    ksock_header_t *h = &r->hdrs[r->nhdrs];
    if (r->sub_field == H_KEY) return set_text(r, &h->key, &h->key_len, s, len);
    return set_bytes(r, &h->value, s, len, r->sub_field == H_VALUE_B64);
}

static int header_open(env_reader_t *r)
{
    if (r->nhdrs >= r->lim->max_items)
        return FAIL(r, KSOCK_E_LIMIT, "more than %llu headers",
                    (unsigned long long)r->lim->max_items);
    if (r->nhdrs == r->caphdrs) {
        size_t cap = r->caphdrs ? r->caphdrs * 2 : 8;
        ksock_header_t *n = realloc(r->hdrs, cap * sizeof(*n));
        if (n == NULL) return nomem(r);
        r->hdrs = n;
        r->caphdrs = cap;
    }
    memset(&r->hdrs[r->nhdrs], 0, sizeof(ksock_header_t));
    r->sub_seen = 0;
    r->state = S_HEADER;
    return 1;
}

static int header_key(env_reader_t *r, const unsigned char *k, size_t len)
{
    int f = len == 3 && memcmp(k, "key", 3) == 0         ? H_KEY
            : len == 5 && memcmp(k, "value", 5) == 0     ? H_VALUE
            : len == 9 && memcmp(k, "value_b64", 9) == 0 ? H_VALUE_B64
                                                         : 0;
    if (f == 0)
        return FAIL(r, KSOCK_E_DECODE, "unknown header member \"%.*s\"", (int)(len > 32 ? 32 : len),
                    k);
    if ((r->sub_seen & f) || (f != H_KEY && (r->sub_seen & (H_VALUE | H_VALUE_B64))))
        return FAIL(r, KSOCK_E_DECODE, "duplicate header member \"%.*s\"", (int)len, k);
    r->sub_seen |= (unsigned)f;
    r->sub_field = f;
    return 1;
}

static int header_close(env_reader_t *r)
{
    if (!(r->sub_seen & H_KEY) || r->hdrs[r->nhdrs].key == NULL)
        proto_rule(r, "header without a key");
    r->nhdrs++;
    r->state = S_HEADERS;
    return 1;
}

static int offset_open(env_reader_t *r)
{
    if (r->noffs >= r->lim->max_items)
        return FAIL(r, KSOCK_E_LIMIT, "more than %llu offsets",
                    (unsigned long long)r->lim->max_items);
    if (r->noffs == r->capoffs) {
        size_t cap = r->capoffs ? r->capoffs * 2 : 8;
        ksock_partition_offset_t *n = realloc(r->offs, cap * sizeof(*n));
        if (n == NULL) return nomem(r);
        r->offs = n;
        r->capoffs = cap;
    }
    r->offs[r->noffs] = (ksock_partition_offset_t){0, 0};
    r->sub_seen = 0;
    r->state = S_OFFSET;
    return 1;
}

static int offset_key(env_reader_t *r, const unsigned char *k, size_t len)
{
    int f = len == 9 && memcmp(k, "partition", 9) == 0 ? O_PARTITION
            : len == 6 && memcmp(k, "offset", 6) == 0  ? O_OFFSET
                                                       : 0;
    if (f == 0)
        return FAIL(r, KSOCK_E_DECODE, "unknown offsets member \"%.*s\"",
                    (int)(len > 32 ? 32 : len), k);
    if (r->sub_seen & f)
        return FAIL(r, KSOCK_E_DECODE, "duplicate offsets member \"%.*s\"", (int)len, k);
    r->sub_seen |= (unsigned)f;
    r->sub_field = f;
    return 1;
}

static int offset_int(env_reader_t *r, int64_t v)
{
    ksock_partition_offset_t *o = &r->offs[r->noffs];
    if (r->sub_field == O_PARTITION && v > INT32_MAX)
        return FAIL(r, KSOCK_E_DECODE, "offsets entry: partition beyond int32");
    if (v < 0) return proto_rule(r, "offsets entry: partition and offset must be >= 0");
    if (r->sub_field == O_PARTITION)
        o->partition = (int32_t)v;
    else
        o->offset = v;
    return 1;
}

static int offset_close(env_reader_t *r)
{
    if (r->sub_seen != (O_PARTITION | O_OFFSET))
        proto_rule(r, "offsets entry needs partition and offset");
    r->noffs++;
    r->state = S_OFFSETS;
    return 1;
}

/* ---- Callbacks ------------------------------------------------------------------------ */

/* A scalar as the whole of key_json / value_json. */
static bool embed_scalar(env_reader_t *r)
{
    if (r->state != S_TOP || (r->field != F_KEY_JSON && r->field != F_VALUE_JSON)) return false;
    r->state = S_EMBED;
    r->emb_depth = 0;
    r->emb.len = 0;
    return true;
}

static int on_null(void *ctx)
{
    env_reader_t *r = ctx;
    embed_scalar(r); /* in key_json / value_json, null is the JSON text "null", not absence */
    switch (r->state) {
    case S_TOP: /* null: the member is absent */
        if (r->field == F_NONE) break;
        r->field = F_NONE;
        return 1;
    case S_HEADER:
        if (r->sub_field == H_KEY) break;
        return 1;
    case S_EMBED:
        return emb_scalar(r, "null", 4);
    default:
        break;
    }
    return wrong_type(r);
}

static int on_bool(void *ctx, int b)
{
    env_reader_t *r = ctx;
    embed_scalar(r);
    if (r->state == S_EMBED) return b ? emb_scalar(r, "true", 4) : emb_scalar(r, "false", 5);
    return wrong_type(r);
}

static int on_number(void *ctx, const char *s, size_t len)
{
    env_reader_t *r = ctx;
    embed_scalar(r);
    if (r->state == S_EMBED) return emb_scalar(r, s, len);
    int64_t i;
    double d;
    const char *why = "";
    bool want_int = r->state == S_TOP && r->field != F_NONE && fields[r->field].kind == K_INT;
    if (!want_int && r->state != S_OFFSET) return wrong_type(r);
    int kind = json_number(s, len, &i, &d, &why);
    if (kind < 0) return FAIL(r, kind, "%s", why);
    if (kind == 2) return wrong_type(r); /* a fraction or exponent where an integer belongs */
    if (r->state == S_OFFSET) return offset_int(r, i);
    int ok = top_int(r, i);
    r->field = F_NONE;
    return ok;
}

static int on_string(void *ctx, const unsigned char *s, size_t len)
{
    env_reader_t *r = ctx;
    embed_scalar(r);
    if (r->state == S_EMBED) return emb_string(r, s, len);
    if (!checked_string(r, s, len)) return 0;
    if (r->state == S_HEADER) return header_string(r, s, len);
    if (r->state != S_TOP || r->field == F_NONE || fields[r->field].kind != K_STR)
        return wrong_type(r);
    int ok = top_string(r, s, len);
    r->field = F_NONE;
    return ok;
}

static int start_embed(env_reader_t *r, bool map)
{
    r->state = S_EMBED;
    r->emb_depth = 0;
    r->emb.len = 0;
    return emb_open(r, map);
}

static int on_start_map(void *ctx)
{
    env_reader_t *r = ctx;
    switch (r->state) {
    case S_START:
        r->state = S_TOP;
        return 1;
    case S_HEADERS:
        return header_open(r);
    case S_OFFSETS:
        return offset_open(r);
    case S_EMBED:
        return emb_open(r, true);
    case S_TOP:
        if (r->field == F_KEY_JSON || r->field == F_VALUE_JSON) return start_embed(r, true);
        break;
    default:
        break;
    }
    if (r->state == S_START) return FAIL(r, KSOCK_E_DECODE, "an envelope is a JSON object");
    return wrong_type(r);
}

static int top_key(env_reader_t *r, const unsigned char *k, size_t len)
{
    int f = 0;
    while (f < F_COUNT && !(fields[f].len == len && memcmp(fields[f].name, k, len) == 0))
        f++;
    if (f == F_COUNT)
        return FAIL(r, KSOCK_E_DECODE, "unknown member \"%.*s\"", (int)(len > 32 ? 32 : len), k);
    if (r->seen & (1u << f))
        return FAIL(r, KSOCK_E_DECODE, "duplicate member \"%s\"", fields[f].name);
    /* key / key_b64 / key_json are one field in three spellings; so is value. */
    uint32_t group = f >= F_KEY && f <= F_KEY_JSON       ? 7u << F_KEY
                     : f >= F_VALUE && f <= F_VALUE_JSON ? 7u << F_VALUE
                                                         : 0;
    if (r->seen & group)
        return FAIL(r, KSOCK_E_DECODE, "more than one of %s, %s_b64, %s_json",
                    f <= F_KEY_JSON ? "key" : "value", f <= F_KEY_JSON ? "key" : "value",
                    f <= F_KEY_JSON ? "key" : "value");
    r->seen |= 1u << f;
    r->field = f;
    return 1;
}

static int on_map_key(void *ctx, const unsigned char *k, size_t len)
{
    env_reader_t *r = ctx;
    switch (r->state) {
    case S_EMBED:
        return emb_key(r, k, len);
    case S_TOP:
        return top_key(r, k, len);
    case S_HEADER:
        return header_key(r, k, len);
    case S_OFFSET:
        return offset_key(r, k, len);
    default:
        return FAIL(r, KSOCK_E_DECODE, "unexpected key");
    }
}

static int on_end_map(void *ctx)
{
    env_reader_t *r = ctx;
    switch (r->state) {
    case S_EMBED:
        return emb_close(r);
    case S_HEADER:
        return header_close(r);
    case S_OFFSET:
        return offset_close(r);
    case S_TOP:
        r->state = S_DONE;
        return 1;
    default:
        return FAIL(r, KSOCK_E_DECODE, "unexpected end of object");
    }
}

static int on_start_array(void *ctx)
{
    env_reader_t *r = ctx;
    if (r->state == S_EMBED) return emb_open(r, false);
    if (r->state == S_TOP && r->field == F_HEADERS) {
        r->state = S_HEADERS;
        return 1;
    }
    if (r->state == S_TOP && r->field == F_OFFSETS) {
        r->state = S_OFFSETS;
        return 1;
    }
    if (r->state == S_TOP && (r->field == F_KEY_JSON || r->field == F_VALUE_JSON))
        return start_embed(r, false);
    if (r->state == S_START) return FAIL(r, KSOCK_E_DECODE, "an envelope is a JSON object");
    return wrong_type(r);
}

static int on_end_array(void *ctx)
{
    env_reader_t *r = ctx;
    if (r->state == S_EMBED) return emb_close(r);
    if (r->state == S_HEADERS || r->state == S_OFFSETS) {
        r->state = S_TOP;
        r->field = F_NONE;
        return 1;
    }
    return FAIL(r, KSOCK_E_DECODE, "unexpected end of array");
}

/* Scalars where the envelope wants an object. */
static int on_top_scalar_guard(env_reader_t *r)
{
    return FAIL(r, KSOCK_E_DECODE, "an envelope is a JSON object");
}

static int on_null_top(void *ctx)
{
    env_reader_t *r = ctx;
    return r->state == S_START ? on_top_scalar_guard(r) : on_null(ctx);
}

static int on_bool_top(void *ctx, int b)
{
    env_reader_t *r = ctx;
    return r->state == S_START ? on_top_scalar_guard(r) : on_bool(ctx, b);
}

static int on_number_top(void *ctx, const char *s, size_t len)
{
    env_reader_t *r = ctx;
    return r->state == S_START ? on_top_scalar_guard(r) : on_number(ctx, s, len);
}

static int on_string_top(void *ctx, const unsigned char *s, size_t len)
{
    env_reader_t *r = ctx;
    return r->state == S_START ? on_top_scalar_guard(r) : on_string(ctx, s, len);
}

static const yajl_callbacks envelope_callbacks = {
    .yajl_null = on_null_top,
    .yajl_boolean = on_bool_top,
    .yajl_number = on_number_top,
    .yajl_string = on_string_top,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_map_key,
    .yajl_end_map = on_end_map,
    .yajl_start_array = on_start_array,
    .yajl_end_array = on_end_array,
};

/* ---- Entry ----------------------------------------------------------------------------- */

/* Move the collected headers and offsets into the envelope's arena. */
static int publish_lists(env_reader_t *r)
{
    ksock_envelope_t *e = r->env;
    if (r->nhdrs) {
        ksock_header_t *h = ksock_envelope_alloc(e, r->nhdrs * sizeof(*h));
        if (h == NULL) return KSOCK_E_NOMEM;
        memcpy(h, r->hdrs, r->nhdrs * sizeof(*h));
        e->headers = h;
        e->nheaders = r->nhdrs;
    }
    if (r->noffs) {
        ksock_partition_offset_t *o = ksock_envelope_alloc(e, r->noffs * sizeof(*o));
        if (o == NULL) return KSOCK_E_NOMEM;
        memcpy(o, r->offs, r->noffs * sizeof(*o));
        e->offsets = o;
        e->noffsets = r->noffs;
    }
    return 0;
}

/* ---- The id of a frame that failed ------------------------------------------------------ */

/*
 * A failed frame's error reply echoes its id when the id itself decoded
 * (serializer.h, decode_envelope), wherever the fault is: this second,
 * lenient pass finds the first top-level "id" member and keeps it if it is
 * a valid string. It stops where yajl stops, so an id after a syntax error
 * is not found.
 */
typedef struct id_scan_s {
    yajl_handle h;
    const unsigned char *input;
    const ksock_value_limits_t *lim;
    ksock_envelope_t *env;
    uint32_t depth;
    bool want, seen;
} id_scan_t;

static int scan_other(void *ctx)
{
    ((id_scan_t *)ctx)->want = false;
    return 1;
}

static int scan_bool(void *ctx, int b)
{
    (void)b;
    return scan_other(ctx);
}

static int scan_number(void *ctx, const char *s, size_t len)
{
    (void)s;
    (void)len;
    return scan_other(ctx);
}

static int scan_open(void *ctx)
{
    id_scan_t *c = ctx;
    c->want = false;
    c->depth++;
    return 1;
}

static int scan_close(void *ctx)
{
    ((id_scan_t *)ctx)->depth--;
    return 1;
}

static int scan_key(void *ctx, const unsigned char *k, size_t len)
{
    id_scan_t *c = ctx;
    if (c->depth != 1 || c->seen) return 1;
    c->want = c->seen = len == 2 && memcmp(k, "id", 2) == 0;
    return 1;
}

static int scan_string(void *ctx, const unsigned char *s, size_t len)
{
    id_scan_t *c = ctx;
    if (!c->want) return 1;
    c->want = false;
    if (len > c->lim->max_string ||
        json_string_problem(c->input, yajl_get_bytes_consumed(c->h), (const char *)s, len))
        return 0;
    char *id = ksock_envelope_alloc(c->env, len + 1);
    if (id == NULL) return 0;
    memcpy(id, s, len);
    id[len] = '\0';
    c->env->id = id;
    c->env->id_len = len;
    return 0; /* found: nothing more to read */
}

static const yajl_callbacks id_scan_callbacks = {
    .yajl_null = scan_other,
    .yajl_boolean = scan_bool,
    .yajl_number = scan_number,
    .yajl_string = scan_string,
    .yajl_start_map = scan_open,
    .yajl_map_key = scan_key,
    .yajl_end_map = scan_close,
    .yajl_start_array = scan_open,
    .yajl_end_array = scan_close,
};

/* After a failure: reset every field but a valid id (found again if the decode stopped first). */
static void keep_only_id(const void *data, size_t len, const ksock_value_limits_t *lim,
                         ksock_envelope_t *env)
{
    const char *id = env->id;
    size_t id_len = env->id_len;
    void *arena = env->arena_;
    ksock_envelope_init(env);
    env->arena_ = arena;
    env->id = id;
    env->id_len = id_len;
    if (id != NULL) return;
    id_scan_t c = {.input = data, .lim = lim, .env = env};
    c.h = json_parser(&id_scan_callbacks, &c);
    if (c.h == NULL) return;
    yajl_parse(c.h, data, len);
    yajl_free(c.h);
}

int json_decode_envelope(const void *data, size_t len, const ksock_value_limits_t *lim,
                         ksock_envelope_t *env, char *errstr, size_t errstr_size)
{
    if (len > lim->max_total) {
        ksock_errstr_set(errstr, errstr_size,
                         "json: offset 0: input of %zu bytes over the %llu limit", len,
                         (unsigned long long)lim->max_total);
        return KSOCK_E_LIMIT;
    }
    env_reader_t *r = calloc(1, sizeof(*r));
    if (r == NULL) return KSOCK_E_NOMEM;
    r->input = data;
    r->lim = lim;
    r->env = env;
    r->field = F_NONE;
    r->max_depth = json_max_depth(lim);
    int rc = KSOCK_E_NOMEM;
    r->h = json_parser(&envelope_callbacks, r);
    if (r->h) rc = json_run(r->h, data, len, &r->err);
    if (rc == 0 && r->proto.rc != 0) rc = r->proto.rc;
    if (rc != 0 && r->h) json_report(r->err.rc ? &r->err : &r->proto, errstr, errstr_size);
    if (rc == 0) rc = publish_lists(r);
    if (rc == 0 && (rc = ksock_envelope_check(env, errstr, errstr_size)) != 0) {
        char reason[200];
        snprintf(reason, sizeof(reason), "%s", errstr ? errstr : "");
        ksock_errstr_set(errstr, errstr_size, "json: %s", reason);
    }
    if (r->h) yajl_free(r->h);
    free(r->hdrs);
    free(r->offs);
    ksock_buf_free(&r->emb);
    free(r);
    if (rc != 0 && rc != KSOCK_E_NOMEM) keep_only_id(data, len, lim, env);
    return rc;
}
