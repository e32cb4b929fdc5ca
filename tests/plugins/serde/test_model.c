/*
 * The value model (value.h), the envelope helpers (serializer.h) and the
 * serialization API (serde.h, spec II) with caller-supplied and plugin
 * strategies.
 */
#include "serde_test.h"

#include <math.h>

/* ---- Values ------------------------------------------------------------------------- */

TEST(scalars)
{
    ksock_value_t *n = ksock_value_null(), *t = ksock_value_bool(true), *i = ksock_value_int(-7),
                  *d = ksock_value_double(2.5), *s = ksock_value_cstring("h\xc3\xa9"),
                  *b = ksock_value_bytes("\x00\xff", 2);
    ASSERT_EQ(ksock_value_type(n), KSOCK_VALUE_NULL);
    ASSERT(ksock_value_get_bool(t));
    ASSERT_EQ(ksock_value_get_int(i), -7);
    ASSERT(ksock_value_get_double(d) == 2.5);
    ASSERT(ksock_value_get_double(i) == -7.0); /* ints read as doubles too */
    size_t len;
    ASSERT_STR_EQ(ksock_value_get_string(s, &len), "h\xc3\xa9");
    ASSERT_EQ(len, 3);
    ASSERT_NULL(ksock_value_get_string(b, &len)); /* no silent type punning */
    ASSERT_EQ(len, 0);
    ASSERT_MEM_EQ(ksock_value_get_bytes(b, &len), "\x00\xff", 2);
    ASSERT_STR_EQ(ksock_value_type_name(ksock_value_type(b)), "bytes");
    ASSERT_STR_EQ(ksock_value_type_name((ksock_value_type_t)99), "unknown");
    ASSERT_EQ(ksock_value_depth(i), 0);
    /* Singletons ignore reference counting. */
    ASSERT(ksock_value_ref(n) == n);
    ksock_value_unref(n);
    ksock_value_unref(n);
    ksock_value_t *values[] = {n, t, i, d, s, b};
    for (size_t k = 0; k < 6; k++)
        ksock_value_unref(values[k]);
    ST_LEAK_CHECK();
}

TEST(strings_must_be_utf8)
{
    static const char *const bad[] = {
        "\xff", "\xc0\xaf", "\xe0\x80\xaf",        "\xed\xa0\x80", "\xf4\x90\x80\x80",
        "\xc3", "a\x80",    "\xf8\x88\x80\x80\x80"};
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
        ASSERT_NULL(ksock_value_cstring(bad[k]));
    size_t at = 99;
    ASSERT(!ksock_utf8_check("abcdefghij\xc3\x28", 12, &at));
    ASSERT_EQ(at, 10);
    ASSERT(ksock_utf8_check("\xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf \xef\xbf\xbd", 13, NULL));
    ksock_value_t *nul = ksock_value_string("a\0b", 3); /* U+0000 is valid UTF-8 */
    ASSERT_NOT_NULL(nul);
    ksock_value_unref(nul);
    ST_LEAK_CHECK();
}

TEST(containers)
{
    ksock_value_t *arr = ksock_value_array(), *map = ksock_value_map();
    ASSERT_OK(ksock_value_array_push(arr, ksock_value_int(1)));
    ASSERT_OK(ksock_value_array_push(arr, ksock_value_cstring("x")));
    ASSERT_EQ(ksock_value_count(arr), 2);
    ASSERT_NULL(ksock_value_array_get(arr, 2));
    ASSERT_OK(ksock_value_map_set(map, "z", 1, ksock_value_int(1)));
    ASSERT_OK(ksock_value_map_set(map, "a", 1, arr));
    ASSERT_EQ(ksock_value_map_set(map, "z", 1, ksock_value_int(2)), KSOCK_E_EXIST);
    ASSERT_EQ(ksock_value_map_set(map, "\xff", 1, ksock_value_null()), KSOCK_E_INVAL);
    ASSERT_OK(ksock_value_map_set(map, "k\0k", 3, ksock_value_null())); /* NUL inside a key */
    const char *key;
    size_t klen;
    ksock_value_map_at(map, 1, &key, &klen);
    ASSERT_STR_EQ(key, "a"); /* insertion order */
    ASSERT(ksock_value_map_get(map, "a") == arr);
    ASSERT_NOT_NULL(ksock_value_map_getn(map, "k\0k", 3));
    ASSERT_NULL(ksock_value_map_get(map, "k"));
    ASSERT_EQ(ksock_value_depth(map), 2);
    ksock_value_unref(map);
    ST_LEAK_CHECK();
}

TEST(big_map_uses_its_index)
{
    ksock_value_t *map = ksock_value_map();
    char key[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        ASSERT_OK(ksock_value_map_set(map, key, strlen(key), ksock_value_int(i)));
    }
    for (int i = 0; i < 20000; i += 7) {
        snprintf(key, sizeof(key), "key-%d", i);
        ASSERT_EQ(ksock_value_get_int(ksock_value_map_get(map, key)), i);
        ASSERT_EQ(ksock_value_map_set(map, key, strlen(key), ksock_value_null()), KSOCK_E_EXIST);
    }
    ASSERT_NULL(ksock_value_map_get(map, "key-20000"));
    ksock_value_unref(map);
    ST_LEAK_CHECK();
}

TEST(containers_freeze_once_nested)
{
    ksock_value_t *inner = ksock_value_array(), *outer = ksock_value_array();
    ASSERT_OK(ksock_value_array_push(outer, ksock_value_ref(inner)));
    /* inner is now part of outer: no more changes, so no cycles and exact depths. */
    ASSERT_EQ(ksock_value_array_push(inner, ksock_value_int(1)), KSOCK_E_INVAL);
    ASSERT_EQ(ksock_value_array_push(inner, ksock_value_ref(outer)), KSOCK_E_INVAL);
    ASSERT_EQ(ksock_value_array_push(outer, ksock_value_ref(outer)), KSOCK_E_INVAL);
    ASSERT_EQ(ksock_value_array_push(NULL, ksock_value_int(1)), KSOCK_E_INVAL);
    ksock_value_t *map = ksock_value_map();
    ASSERT_EQ(ksock_value_array_push(map, ksock_value_int(1)), KSOCK_E_INVAL); /* wrong kind */
    ASSERT_EQ(ksock_value_array_push(map, NULL), KSOCK_E_INVAL);
    ksock_value_unref(map);
    ksock_value_unref(inner);
    ksock_value_unref(outer);
    ST_LEAK_CHECK();
}

TEST(depth_ceiling)
{
    ksock_value_t *v = ksock_value_array();
    for (int d = 1; d < KSOCK_VALUE_MAX_DEPTH; d++) {
        ksock_value_t *w = ksock_value_array();
        ASSERT_OK(ksock_value_array_push(w, v));
        v = w;
    }
    ASSERT_EQ(ksock_value_depth(v), KSOCK_VALUE_MAX_DEPTH);
    ksock_value_t *top = ksock_value_map();
    ASSERT_EQ(ksock_value_map_set(top, "x", 1, v), KSOCK_E_LIMIT);
    ksock_value_unref(top);
    ST_LEAK_CHECK();
}

TEST(equality)
{
    ksock_value_t *a = ksock_value_map(), *b = ksock_value_map();
    ASSERT_OK(ksock_value_map_set(a, "x", 1, ksock_value_int(1)));
    ASSERT_OK(ksock_value_map_set(a, "y", 1, ksock_value_double(NAN)));
    ASSERT_OK(ksock_value_map_set(b, "y", 1, ksock_value_double(NAN)));
    ASSERT_OK(ksock_value_map_set(b, "x", 1, ksock_value_int(1)));
    ASSERT(ksock_value_equal(a, b)); /* key order does not matter; NaN equals NaN */
    ksock_value_t *z = ksock_value_double(0.0), *mz = ksock_value_double(-0.0),
                  *one = ksock_value_int(1), *onef = ksock_value_double(1.0);
    ASSERT(!ksock_value_equal(z, mz)); /* they encode differently */
    ASSERT(!ksock_value_equal(one, onef));
    ASSERT(!ksock_value_equal(a, NULL));
    ksock_value_t *values[] = {a, b, z, mz, one, onef};
    for (size_t k = 0; k < 6; k++)
        ksock_value_unref(values[k]);
    ST_LEAK_CHECK();
}

TEST(limits_defaults)
{
    ksock_value_limits_t l;
    ksock_value_limits_default(&l);
    ASSERT_EQ(l.size, sizeof(l));
    ASSERT_EQ(l.max_depth, 64);
    ASSERT_EQ(l.max_string, 16u << 20);
    ASSERT_EQ(l.max_items, 1u << 20);
    ASSERT_EQ(l.max_total, 64u << 20);
}

/* ---- Envelopes ------------------------------------------------------------------------ */

TEST(envelope_init_arena_clear)
{
    ksock_envelope_t e;
    ksock_envelope_init(&e);
    ASSERT_EQ(e.size, sizeof(e));
    ASSERT_EQ(e.op, KSOCK_OP_NONE);
    ASSERT_EQ(e.partition, -1);
    ASSERT_EQ(e.offset, -1);
    ASSERT_EQ(e.timestamp, -1);
    ASSERT_EQ(e.start_timestamp, -1);
    ASSERT_EQ(e.error_code, 0);
    for (int i = 0; i < 1000; i++) {
        unsigned char *p = ksock_envelope_alloc(&e, (size_t)i * 13 % 300 + 1);
        ASSERT_NOT_NULL(p);
        ASSERT_EQ((uintptr_t)p % 16, 0);
        memset(p, 0xab, (size_t)i * 13 % 300 + 1);
    }
    ASSERT_NOT_NULL(ksock_envelope_alloc(&e, 1 << 20)); /* bigger than a block */
    ASSERT_NOT_NULL(ksock_envelope_alloc(&e, 0));
    ksock_envelope_clear(&e);
    ASSERT_NULL(e.arena_);
    ST_LEAK_CHECK();
}

TEST(op_and_start_names)
{
    ksock_op_t op;
    ksock_start_t st;
    for (int i = 1; i <= 11; i++) {
        const char *n = ksock_op_name((ksock_op_t)i);
        ASSERT_NOT_NULL(n);
        ASSERT_OK(ksock_op_parse(n, strlen(n), &op));
        ASSERT_EQ(op, i);
    }
    ASSERT_STR_EQ(ksock_op_name(KSOCK_OP_RECORD), "record");
    ASSERT_NULL(ksock_op_name(KSOCK_OP_NONE));
    ASSERT_STR_EQ(ksock_op_name(KSOCK_OP_TOKEN), "token");
    ASSERT_NULL(ksock_op_name((ksock_op_t)12));
    ASSERT_EQ(ksock_op_parse("recordx", 7, &op), KSOCK_E_INVAL);
    ASSERT_EQ(ksock_op_parse("reco", 4, &op), KSOCK_E_INVAL);
    ASSERT_OK(ksock_start_parse("earliest", 8, &st));
    ASSERT_EQ(st, KSOCK_START_EARLIEST);
    ASSERT_STR_EQ(ksock_start_name(KSOCK_START_TIMESTAMP), "timestamp");
}

/* A valid record to break in one way at a time. */
static void record(ksock_envelope_t *e)
{
    ksock_envelope_init(e);
    e->op = KSOCK_OP_RECORD;
    e->topic = "t";
    e->topic_len = 1;
    e->partition = 0;
    e->offset = 5;
}

TEST(envelope_rules)
{
    char err[256];
    ksock_envelope_t e;
    ksock_header_t h = {"\xff", 1, {NULL, 0, false}};
    ksock_partition_offset_t po = {-1, 3};
    record(&e);
    ASSERT_OK(ksock_envelope_check(&e, err, sizeof(err)));
    /* Each line breaks one rule of docs/protocol.md section 2. */
#define BROKEN(stmt, why)                                                                          \
    do {                                                                                           \
        record(&e);                                                                                \
        stmt;                                                                                      \
        ASSERT_EQ(ksock_envelope_check(&e, err, sizeof(err)), KSOCK_E_PROTO);                      \
        ASSERT_CONTAINS(err, why);                                                                 \
    } while (0)
    BROKEN(e.op = KSOCK_OP_NONE, "op missing");
    BROKEN(e.op = (ksock_op_t)42, "unknown op 42");
    BROKEN(e.topic = NULL, "record needs topic, partition and offset");
    BROKEN(e.topic_len = 0, "topic is empty");
    BROKEN((e.op = KSOCK_OP_PING, e.partition = -5), "partition -5 is negative");
    BROKEN(e.offset = -1, "record needs");
    BROKEN(e.timestamp = -2, "timestamp -2 is negative");
    BROKEN((e.op = KSOCK_OP_ERROR, e.error_code = 0), "error needs a negative error_code");
    BROKEN(e.error_code = 3, "error_code 3 is positive");
    BROKEN((e.op = KSOCK_OP_SUBSCRIBE, e.start = KSOCK_START_OFFSETS), "needs at least one offset");
    BROKEN((e.op = KSOCK_OP_SUBSCRIBE, e.start = KSOCK_START_TIMESTAMP), "needs start_timestamp");
    BROKEN((e.offsets = &po, e.noffsets = 1), "offsets given but start is not");
    BROKEN((e.start = KSOCK_START_OFFSETS, e.offsets = &po, e.noffsets = 1), "offsets[0]");
    BROKEN(e.start_timestamp = 5, "start_timestamp given but start is not");
    BROKEN(e.start = (ksock_start_t)9, "unknown start 9");
    BROKEN((e.id = "\xc3", e.id_len = 1), "id is not valid UTF-8");
    BROKEN((e.headers = &h, e.nheaders = 1), "header 0: key is not valid UTF-8");
    BROKEN((e.error_message = "\x80", e.error_message_len = 1), "error_message");
#undef BROKEN
}

TEST(envelope_equality)
{
    ksock_envelope_t a, b;
    record(&a);
    record(&b);
    ASSERT(ksock_envelope_equal(&a, &b));
    b.key = (ksock_bytes_t){"", 0, true};
    ASSERT(!ksock_envelope_equal(&a, &b)); /* empty key is not a null key */
    a.key = (ksock_bytes_t){"x", 0, true};
    ASSERT(ksock_envelope_equal(&a, &b));
    b.id = "";
    ASSERT(!ksock_envelope_equal(&a, &b)); /* empty id is not no id */
}

/* ---- The serialization API (spec II) ----------------------------------------------------- */

/* A caller-written strategy: "T:" + the type name; decodes "T:int" to 42. */
static int calls;

static int tag_encode(void *data, const ksock_value_t *msg, ksock_buf_t *out, char *errstr,
                      size_t errstr_size)
{
    calls++;
    if (ksock_value_type(msg) == KSOCK_VALUE_DOUBLE) {
        ksock_errstr_set(errstr, errstr_size, "%s: no doubles", (const char *)data);
        ksock_buf_append(out, "partial", 7); /* the API must drop this */
        return KSOCK_E_ENCODE;
    }
    return ksock_buf_appendf(out, "T:%s", ksock_value_type_name(ksock_value_type(msg)));
}

static int tag_decode(void *data, const void *buf, size_t len, ksock_value_t **out, char *errstr,
                      size_t errstr_size)
{
    calls++;
    if (len == 5 && memcmp(buf, "T:int", 5) == 0) {
        *out = ksock_value_int(42);
        return 0;
    }
    ksock_errstr_set(errstr, errstr_size, "not mine");
    return KSOCK_E_DECODE;
}

static const ksock_serde_strategy_t tag_strategy = {
    .size = sizeof(ksock_serde_strategy_t),
    .name = "tag",
    .frame_type = KSOCK_FRAME_TEXT,
    .encode = tag_encode,
    .decode = tag_decode,
    .data = "tag",
};

TEST(no_strategy_is_a_clear_error)
{
    ksock_runtime_t *rt = st_runtime();
    char err[256] = "";
    ksock_buf_t out = KSOCK_BUF_INIT;
    ksock_value_t *v = ksock_value_int(1), *got = NULL;
    ASSERT_EQ(ksock_serde_serialize(rt, v, NULL, &out, NULL, err, sizeof(err)), KSOCK_E_STATE);
    ASSERT_CONTAINS(err, "ksock_serde_set_default_by_name");
    ASSERT_EQ(ksock_serde_deserialize(rt, "1", 1, NULL, &got, err, sizeof(err)), KSOCK_E_STATE);
    ASSERT_CONTAINS(err, "deserialization");
    ASSERT_NULL(got);
    ksock_value_unref(v);
    ksock_runtime_destroy(rt);
    ST_LEAK_CHECK();
}

TEST(custom_strategy_global_and_per_call)
{
    ksock_runtime_t *rt = st_runtime();
    char err[256] = "";
    ksock_buf_t out = KSOCK_BUF_INIT;
    ksock_frame_type_t type = 0;
    ksock_value_t *v = ksock_value_bool(true), *d = ksock_value_double(1.0), *got = NULL;
    /* Per call, with no global strategy. */
    ASSERT_OK(ksock_serde_serialize(rt, v, &tag_strategy, &out, &type, err, sizeof(err)));
    ASSERT_STR_EQ(out.data, "T:bool");
    ASSERT_EQ(type, KSOCK_FRAME_TEXT);
    /* As the global strategy; serialize appends to the caller's buffer. */
    ASSERT_OK(ksock_serde_set_serialization_strategy(rt, &tag_strategy));
    ASSERT_OK(ksock_serde_serialize(rt, v, NULL, &out, NULL, err, sizeof(err)));
    ASSERT_STR_EQ(out.data, "T:boolT:bool");
    /* A failing strategy leaves the buffer as it was. */
    ASSERT_EQ(ksock_serde_serialize(rt, d, NULL, &out, NULL, err, sizeof(err)), KSOCK_E_ENCODE);
    ASSERT_STR_EQ(err, "tag: no doubles");
    ASSERT_STR_EQ(out.data, "T:boolT:bool");
    ASSERT_EQ(out.len, 12);
    ASSERT_OK(ksock_serde_set_deserialization_strategy(rt, &tag_strategy));
    ASSERT_OK(ksock_serde_deserialize(rt, "T:int", 5, NULL, &got, err, sizeof(err)));
    ASSERT_EQ(ksock_value_get_int(got), 42);
    ksock_value_unref(got);
    /* Clearing the global strategy. */
    ASSERT_OK(ksock_serde_set_serialization_strategy(rt, NULL));
    ASSERT_EQ(ksock_serde_serialize(rt, v, NULL, &out, NULL, err, sizeof(err)), KSOCK_E_STATE);
    /* Refused strategies. */
    ksock_serde_strategy_t bad = tag_strategy;
    bad.encode = NULL;
    ASSERT_EQ(ksock_serde_set_serialization_strategy(rt, &bad), KSOCK_E_INVAL);
    ASSERT_OK(ksock_serde_set_deserialization_strategy(rt, &bad)); /* decode-only is fine */
    bad.size = 8;
    ASSERT_EQ(ksock_serde_set_deserialization_strategy(rt, &bad), KSOCK_E_INVAL);
    ASSERT_EQ(calls, 4); /* three encodes, one decode */
    ksock_buf_free(&out);
    ksock_value_unref(v);
    ksock_value_unref(d);
    ksock_runtime_destroy(rt);
    ST_LEAK_CHECK();
}

TEST(plugin_strategies_by_name)
{
    ksock_runtime_t *rt = st_runtime();
    char err[512] = "";
    const ksock_serde_strategy_t *a, *b, *c;
    ASSERT_OK(ksock_serde_strategy_from_plugin(rt, "msgpack", NULL, &a, err, sizeof(err)));
    ASSERT_OK(ksock_serde_strategy_from_plugin(rt, "msgpack", NULL, &b, err, sizeof(err)));
    ASSERT(a == b); /* cached per name and options */
    ASSERT_EQ(a->frame_type, KSOCK_FRAME_BINARY);
    ASSERT_STR_EQ(a->name, "msgpack");
    ASSERT_OK(ksock_serde_strategy_from_plugin(rt, "protobuf", "{\"unknown_fields\":\"ignore\"}",
                                               &c, err, sizeof(err)));
    ASSERT_EQ(ksock_serde_strategy_from_plugin(rt, "yaml", NULL, &c, err, sizeof(err)),
              KSOCK_E_NOENT);
    ASSERT_CONTAINS(err, "serializer_yaml.so");
    ASSERT_EQ(
        ksock_serde_strategy_from_plugin(rt, "protobuf", "{\"bogus\":1}", &c, err, sizeof(err)),
        KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "bogus");
    ASSERT_EQ(ksock_serde_strategy_from_plugin(rt, "json", "[1]", &c, err, sizeof(err)),
              KSOCK_E_CONFIG);
    ASSERT_EQ(ksock_serde_set_default_by_name(rt, "nope", err, sizeof(err)), KSOCK_E_NOENT);
    ksock_runtime_destroy(rt);
    ST_LEAK_CHECK();
}

/* The usage example of spec II, in C. */
TEST(spec_usage_example)
{
    ksock_runtime_t *rt = st_runtime();
    char err[512] = "";
    ASSERT_OK(ksock_serde_set_default_by_name(rt, "json", err, sizeof(err)));
    ksock_value_t *message = ksock_value_map();
    ASSERT_OK(ksock_value_map_set(message, "type", 4, ksock_value_cstring("update")));
    ASSERT_OK(ksock_value_map_set(message, "content", 7, ksock_value_cstring("This is a test")));
    ksock_buf_t frame = KSOCK_BUF_INIT;
    ksock_frame_type_t type;
    ASSERT_OK(ksock_serde_serialize(rt, message, NULL, &frame, &type, err, sizeof(err)));
    ASSERT_STR_EQ(frame.data, "{\"type\":\"update\",\"content\":\"This is a test\"}");
    ASSERT_EQ(type, KSOCK_FRAME_TEXT);
    ksock_value_t *back = NULL;
    ASSERT_OK(ksock_serde_deserialize(rt, frame.data, frame.len, NULL, &back, err, sizeof(err)));
    ASSERT(ksock_value_equal(message, back));
    ksock_value_unref(back);
    /* A per-message custom strategy next to the global one. */
    const ksock_serde_strategy_t *mp;
    ASSERT_OK(ksock_serde_strategy_from_plugin(rt, "msgpack", NULL, &mp, err, sizeof(err)));
    ksock_buf_t bin = KSOCK_BUF_INIT;
    ASSERT_OK(ksock_serde_serialize(rt, message, mp, &bin, &type, err, sizeof(err)));
    ASSERT_EQ(type, KSOCK_FRAME_BINARY);
    ASSERT_EQ((unsigned char)bin.data[0], 0x82);
    ASSERT_OK(ksock_serde_deserialize(rt, bin.data, bin.len, mp, &back, err, sizeof(err)));
    ASSERT(ksock_value_equal(message, back));
    /* The global strategy did not change: msgpack bytes are not JSON. */
    ksock_value_t *none = NULL;
    ASSERT_EQ(ksock_serde_deserialize(rt, bin.data, bin.len, NULL, &none, err, sizeof(err)),
              KSOCK_E_DECODE);
    ASSERT_CONTAINS(err, "json: offset 1: lexical error");
    ksock_value_unref(back);
    ksock_value_unref(message);
    ksock_buf_free(&frame);
    ksock_buf_free(&bin);
    ksock_runtime_destroy(rt);
    ST_LEAK_CHECK();
}

TEST(runtime_limits_apply_to_plugin_strategies)
{
    ksock_runtime_t *rt = st_runtime();
    char err[512] = "";
    ASSERT_OK(ksock_serde_set_default_by_name(rt, "json", err, sizeof(err)));
    ksock_value_limits_t lim;
    ksock_serde_get_limits(rt, &lim);
    ASSERT_EQ(lim.max_depth, 64);
    lim.max_depth = 2;
    ASSERT_OK(ksock_serde_set_limits(rt, &lim));
    ksock_value_t *v = NULL;
    ASSERT_OK(ksock_serde_deserialize(rt, "[[1]]", 5, NULL, &v, err, sizeof(err)));
    ksock_value_unref(v);
    v = NULL;
    ASSERT_EQ(ksock_serde_deserialize(rt, "[[[1]]]", 7, NULL, &v, err, sizeof(err)), KSOCK_E_LIMIT);
    ASSERT_CONTAINS(err, "nesting deeper than 2");
    lim.max_depth = 0;
    ASSERT_EQ(ksock_serde_set_limits(rt, &lim), KSOCK_E_INVAL);
    ksock_runtime_destroy(rt);
    ST_LEAK_CHECK();
}

/* Values JSON cannot carry are refused with a reason, and nothing is left in the buffer. */
TEST(json_refuses_nan)
{
    ksock_runtime_t *rt = st_runtime();
    char err[512] = "";
    const ksock_serde_strategy_t *js;
    ASSERT_OK(ksock_serde_strategy_from_plugin(rt, "json", NULL, &js, err, sizeof(err)));
    ksock_value_t *arr = ksock_value_array();
    ASSERT_OK(ksock_value_array_push(arr, ksock_value_int(1)));
    ASSERT_OK(ksock_value_array_push(arr, ksock_value_double(INFINITY)));
    ksock_buf_t out = KSOCK_BUF_INIT;
    ASSERT_OK(ksock_buf_append(&out, "keep", 4));
    ASSERT_EQ(ksock_serde_serialize(rt, arr, js, &out, NULL, err, sizeof(err)), KSOCK_E_ENCODE);
    ASSERT_CONTAINS(err, "NaN and Infinity have no JSON form");
    ASSERT_STR_EQ(out.data, "keep");
    ksock_buf_free(&out);
    ksock_value_unref(arr);
    ksock_runtime_destroy(rt);
    ST_LEAK_CHECK();
}

TEST_LIST(TEST_ENTRY(scalars), TEST_ENTRY(strings_must_be_utf8), TEST_ENTRY(containers),
          TEST_ENTRY(big_map_uses_its_index), TEST_ENTRY(containers_freeze_once_nested),
          TEST_ENTRY(depth_ceiling), TEST_ENTRY(equality), TEST_ENTRY(limits_defaults),
          TEST_ENTRY(envelope_init_arena_clear), TEST_ENTRY(op_and_start_names),
          TEST_ENTRY(envelope_rules), TEST_ENTRY(envelope_equality),
          TEST_ENTRY(no_strategy_is_a_clear_error), TEST_ENTRY(custom_strategy_global_and_per_call),
          TEST_ENTRY(plugin_strategies_by_name), TEST_ENTRY(spec_usage_example),
          TEST_ENTRY(runtime_limits_apply_to_plugin_strategies), TEST_ENTRY(json_refuses_nan))
