/*
 * Bad input for every decoder (issue: "Bad input, each with a test"):
 * truncated input, trailing garbage, invalid UTF-8, NaN and infinities,
 * integers beyond int64, duplicate keys, nesting deeper than the limit,
 * strings and byte strings over the size limit, protobuf unknown fields and
 * wrong wire types, msgpack extension types. Each must give the expected
 * code and a message with the byte offset and the reason; never a crash
 * (each test runs in its own process) and never a leak (ST_LEAK_CHECK).
 */
#include "serde_test.h"

/* One bad input: bytes, expected code, and substrings the message must contain. */
typedef struct bad_s {
    const char *what;
    const char *data;
    size_t len; /* 0: strlen(data) */
    int code;
    const char *where; /* e.g. "offset 4" */
    const char *why;
} bad_t;

#define BAD(what, data, code, where, why)                                                          \
    {                                                                                              \
        what, data, sizeof(data) - 1, code, where, why                                             \
    }

static void check_values(st_ser_t *s, const bad_t *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *err = st_decode_fails(s, cases[i].data, cases[i].len, cases[i].code);
        printf("# %s: %s\n", cases[i].what, err);
        if (cases[i].where) ASSERT_CONTAINS(err, cases[i].where);
        ASSERT_CONTAINS(err, cases[i].why);
    }
}

static void check_envelopes(st_ser_t *s, const bad_t *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *err = st_envelope_fails(s, cases[i].data, cases[i].len, cases[i].code);
        printf("# %s: %s\n", cases[i].what, err);
        if (cases[i].where) ASSERT_CONTAINS(err, cases[i].where);
        ASSERT_CONTAINS(err, cases[i].why);
    }
}

#define NCASES(a) (sizeof(a) / sizeof(a[0]))
#define E_DEC     KSOCK_E_DECODE
#define E_LIM     KSOCK_E_LIMIT
#define E_PRO     KSOCK_E_PROTO

/* ---- JSON ---------------------------------------------------------------------------- */

static const bad_t json_values[] = {
    BAD("truncated array", "[1,2", E_DEC, "offset 4", "premature EOF"),
    BAD("truncated object", "{\"a\":", E_DEC, "offset 5", "premature EOF"),
    BAD("truncated string", "\"abc", E_DEC, "offset 4", "premature EOF"),
    BAD("empty input", "", E_DEC, "offset 0", "premature EOF"),
    BAD("trailing garbage", "1 2", E_DEC, "offset", "trailing garbage"),
    BAD("trailing object", "{} {}", E_DEC, "offset", "trailing garbage"),
    BAD("invalid UTF-8 byte", "\"a\xff\"", E_DEC, "offset", "UTF8"),
    BAD("overlong UTF-8", "\"\xc0\xaf\"", E_DEC, "offset", "UTF"),
    BAD("UTF-8 surrogate", "\"\xed\xa0\x80\"", E_DEC, "offset 5", "invalid UTF-8 in string"),
    BAD("lone high surrogate escape", "\"\\ud800\"", E_DEC, "offset 8",
        "unpaired UTF-16 surrogate"),
    BAD("high surrogate then non-low", "\"\\ud800\\u0041\"", E_DEC, "offset",
        "unpaired UTF-16 surrogate"),
    BAD("lone low surrogate escape", "\"\\udc00x\"", E_DEC, "offset", "invalid UTF-8"),
    BAD("invalid UTF-8 in a key", "{\"\xff\":1}", E_DEC, "offset", "UTF8"),
    BAD("NaN", "NaN", E_DEC, "offset 1", "invalid char"),
    BAD("Infinity", "[Infinity]", E_DEC, "offset 2", "invalid char"),
    BAD("-Infinity", "-Infinity", E_DEC, "offset", "error"),
    BAD("double overflow", "1e400", E_DEC, "offset 5", "out of range of a double"),
    BAD("int64 max + 1", "9223372036854775808", E_DEC, "offset 19", "integer beyond int64"),
    BAD("int64 min - 1", "[-9223372036854775809]", E_DEC, "offset 21", "integer beyond int64"),
    BAD("huge integer", "123456789012345678901234567890", E_DEC, "offset", "integer beyond int64"),
    BAD("duplicate key", "{\"a\":1,\"b\":2,\"a\":3}", E_DEC, "offset 18", "duplicate key \"a\""),
    BAD("duplicate key after escaping", "{\"a\":1,\"\\u0061\":2}", E_DEC, "offset",
        "duplicate key"),
    BAD("reserved $ key", "{\"$ref\":1}", E_DEC, "offset 7", "reserved key \"$ref\""),
    BAD("$bytes with another member", "{\"$bytes\":\"AA==\",\"x\":1}", E_DEC, "offset",
        "other members"),
    BAD("$bytes not base64", "{\"$bytes\":\"A*==\"}", E_DEC, "offset", "invalid base64"),
    BAD("$bytes not a string", "{\"$bytes\":[1]}", E_DEC, "offset", "wants a base64 string"),
    BAD("$bytes after a key", "{\"a\":1,\"$bytes\":\"\"}", E_DEC, "offset", "reserved key"),
    BAD("comment", "/* c */ 1", E_DEC, "offset", "error"),
    BAD("single quotes", "['a']", E_DEC, "offset", "invalid char"),
    BAD("control char in string", "\"a\tb\"", E_DEC, "offset", "invalid"),
};

TEST(json_bad_values)
{
    ksock_runtime_t *rt = st_runtime();
    st_ser_t s = st_open(rt, "json");
    check_values(&s, json_values, NCASES(json_values));
    st_close(&s);
    ksock_runtime_destroy(rt);
    ST_LEAK_CHECK();
}

/* Nesting of `depth` arrays around 0. */
static char *nested_json(int depth)
{
    char *p = malloc((size_t)depth * 2 + 2);
    ASSERT_NOT_NULL(p);
    memset(p, '[', (size_t)depth);
    p[depth] = '0';
    memset(p + depth + 1, ']', (size_t)depth);
    p[2 * depth + 1] = '\0';
    return p;
}

TEST(json_limits)
{
    ksock_runtime_t *rt = st_runtime();
    st_ser_t s = st_open(rt, "json");
    /* Depth: 64 levels pass, 65 fail, a million fail fast (yajl does not recurse). */
    char *ok = nested_json(64), *deep = nested_json(65), *huge = nested_json(1000000);
    ksock_value_unref(st_decode(&s, ok, strlen(ok)));
    ASSERT_CONTAINS(st_decode_fails(&s, deep, strlen(deep), E_LIM),
                    "offset 65: nesting deeper than 64");
    ASSERT_CONTAINS(st_decode_fails(&s, huge, strlen(huge), E_LIM), "nesting deeper than 64");
    free(ok);
    free(deep);
    free(huge);
    /* Sizes. */
    s.lim.max_string = 8;
    ASSERT_CONTAINS(st_decode_fails(&s, "\"123456789\"", 11, E_LIM), "string longer than 8 bytes");
    ASSERT_CONTAINS(st_decode_fails(&s, "{\"123456789\":1}", 15, E_LIM), "key longer than 8 bytes");
    /* base64 text is longer than its bytes, so the string limit already bounds "$bytes". */
    ASSERT_CONTAINS(st_decode_fails(&s, "{\"$bytes\":\"AAAAAAAAAAAA\"}", 25, E_LIM),
                    "offset 24: string longer than 8 bytes");
    ksock_value_unref(st_decode(&s, "\"12345678\"", 10));
    s.lim.max_items = 3;
    ASSERT_CONTAINS(st_decode_fails(&s, "[1,2,3,4]", 9, E_LIM), "more than 3 items in one array");
    ASSERT_CONTAINS(st_decode_fails(&s, "{\"a\":1,\"b\":2,\"c\":3,\"d\":4}", 25, E_LIM), "object");
    s.lim.max_total = 4;
    ASSERT_CONTAINS(st_decode_fails(&s, "12345", 5, E_LIM), "over the 4 limit");
    st_close(&s);
    ksock_runtime_destroy(rt);
    ST_LEAK_CHECK();
}

static const bad_t json_envelopes[] = {
    BAD("truncated", "{\"op\":\"ping\"", E_DEC, "offset 12", "premature EOF"),
    BAD("trailing garbage", "{\"op\":\"ping\"} x", E_DEC, "offset", "trailing garbage"),
    BAD("not an object", "[1]", E_DEC, "offset 1", "an envelope is a JSON object"),
    BAD("scalar", "\"ping\"", E_DEC, "offset", "an envelope is a JSON object"),
    BAD("unknown member", "{\"op\":\"ping\",\"bogus\":1}", E_DEC, "offset 20",
        "unknown member \"bogus\""),
    BAD("duplicate member", "{\"op\":\"ping\",\"op\":\"pong\"}", E_DEC, "offset",
        "duplicate member \"op\""),
    BAD("two spellings of value",
        "{\"op\":\"publish\",\"topic\":\"t\",\"value\":\"a\",\"value_b64\":\"YQ==\"}", E_DEC,
        "offset", "more than one of value, value_b64, value_json"),
    BAD("unknown op", "{\"op\":\"fly\"}", E_PRO, "offset 11", "unknown op \"fly\""),
    BAD("unknown start", "{\"op\":\"subscribe\",\"topic\":\"t\",\"start\":\"soon\"}", E_PRO,
        "offset", "unknown start"),
    BAD("partition as string", "{\"op\":\"ack\",\"partition\":\"0\"}", E_DEC, "offset",
        "member \"partition\" must be an integer"),
    BAD("offset as double", "{\"op\":\"ack\",\"offset\":1.5}", E_DEC, "offset 24",
        "member \"offset\" must be an integer"),
    BAD("negative offset", "{\"op\":\"ack\",\"offset\":-1}", E_PRO, "offset", "must be >= 0"),
    BAD("partition beyond int32", "{\"op\":\"ack\",\"partition\":2147483648}", E_DEC, "offset",
        "partition beyond int32"),
    BAD("offset beyond int64", "{\"op\":\"ack\",\"offset\":9223372036854775808}", E_DEC, "offset",
        "integer beyond int64"),
    BAD("positive error_code", "{\"op\":\"error\",\"error_code\":5}", E_PRO, "offset", "negative"),
    BAD("invalid UTF-8 topic", "{\"op\":\"ping\",\"topic\":\"\xfe\"}", E_DEC, "offset", "UTF8"),
    BAD("bad base64", "{\"op\":\"ping\",\"key_b64\":\"@@@@\"}", E_DEC, "offset", "invalid base64"),
    BAD("headers not an array", "{\"op\":\"ping\",\"headers\":{}}", E_DEC, "offset",
        "must be an array"),
    BAD("header not an object", "{\"op\":\"ping\",\"headers\":[1]}", E_DEC, "offset",
        "headers entries must be objects"),
    BAD("header without key", "{\"op\":\"ping\",\"headers\":[{\"value\":\"v\"}]}", E_PRO, "offset",
        "header without a key"),
    BAD("header with two values",
        "{\"op\":\"ping\",\"headers\":[{\"key\":\"k\",\"value\":\"v\",\"value_b64\":\"\"}]}", E_DEC,
        "offset", "duplicate header member"),
    BAD("offsets entry incomplete",
        "{\"op\":\"subscribe\",\"topic\":\"t\",\"start\":\"offsets\",\"offsets\":[{\"partition\":0}"
        "]}",
        E_PRO, "offset", "needs partition and offset"),
    BAD("NaN in value_json", "{\"op\":\"ping\",\"value_json\":[NaN]}", E_DEC, "offset",
        "invalid char"),
    BAD("no op", "{\"id\":\"x\"}", E_PRO, NULL, "op missing"),
    BAD("record without partition", "{\"op\":\"record\",\"topic\":\"t\",\"offset\":1}", E_PRO, NULL,
        "record needs topic, partition and offset"),
    BAD("offsets without start offsets",
        "{\"op\":\"subscribe\",\"topic\":\"t\",\"offsets\":[{\"partition\":0,\"offset\":1}]}",
        E_PRO, NULL, "offsets given but start is not \"offsets\""),
    BAD("empty topic", "{\"op\":\"subscribe\",\"topic\":\"\"}", E_PRO, NULL, "topic is empty"),
};

TEST(json_bad_envelopes)
{
    ksock_runtime_t *rt = st_runtime();
    st_ser_t s = st_open(rt, "json");
    check_envelopes(&s, json_envelopes, NCASES(json_envelopes));
    /* Embedded JSON obeys the depth limit too. */
    s.lim.max_depth = 3;
    const char *deep = "{\"op\":\"ping\",\"value_json\":[[[[1]]]]}";
    ASSERT_CONTAINS(st_envelope_fails(&s, deep, strlen(deep), E_LIM), "nesting deeper than 3");
    s.lim.max_string = 4;
    const char *big = "{\"op\":\"ping\",\"value_json\":[1,2,3]}";
    ASSERT_CONTAINS(st_envelope_fails(&s, big, strlen(big), E_LIM), "embedded JSON longer than 4");
    const char *longstr = "{\"op\":\"ping\",\"id\":\"12345\"}";
    ASSERT_CONTAINS(st_envelope_fails(&s, longstr, strlen(longstr), E_LIM), "string longer than 4");
    st_close(&s);
    ksock_runtime_destroy(rt);
    ST_LEAK_CHECK();
}

/* ---- MessagePack ------------------------------------------------------------------------- */

#define B(s) s, sizeof(s) - 1

static const bad_t mp_values[] = {
    {"truncated uint16", B("\xcd\x01"), E_DEC, "offset 0", "truncated input"},
    {"truncated float64", B("\xcb\x3f\xf0"), E_DEC, "offset 0", "truncated input"},
    {"truncated str", B("\xa5hel"), E_DEC, "offset 0", "truncated input"},
    {"truncated array", B("\x93\x01\x02"), E_DEC, "offset 0", "truncated input"},
    {"truncated map value",
     B("\x81\xa1"
       "a"),
     E_DEC, "offset 3", "truncated input"},
    {"empty input", "", 0, E_DEC, "offset 0", "truncated input"},
    {"array32 claims 4G items", B("\xdd\xff\xff\xff\xff"), E_LIM, "offset 0", "over the"},
    {"array16 claims more than the input", B("\xdc\x01\x00\x01"), E_DEC, "offset 0",
     "truncated input (array of 256 items)"},
    {"str32 claims 4 GiB",
     B("\xdb\xff\xff\xff\xff"
       "abc"),
     E_LIM, "offset 0", "string of 4294967295 bytes"},
    {"trailing garbage", B("\x01\x02"), E_DEC, "offset 1", "trailing garbage"},
    {"invalid UTF-8 in str",
     B("\xa3"
       "a\xff"
       "b"),
     E_DEC, "offset 2", "invalid UTF-8"},
    {"surrogate in str", B("\xa3\xed\xa0\x80"), E_DEC, "offset 1", "invalid UTF-8"},
    {"uint64 beyond int64", B("\xcf\x80\x00\x00\x00\x00\x00\x00\x00"), E_DEC, "offset 0",
     "integer beyond int64"},
    {"fixext1", B("\xd4\x01\x00"), E_DEC, "offset 0", "extension type 0xd4"},
    {"timestamp ext", B("\xd6\xff\x00\x00\x00\x00"), E_DEC, "offset 0", "extension type 0xd6"},
    {"ext8 in an array", B("\x91\xc7\x01\x05\x00"), E_DEC, "offset 1", "extension type 0xc7"},
    {"never-used 0xc1", B("\xc1"), E_DEC, "offset 0", "0xc1 is never used"},
    {"integer map key", B("\x81\x01\x02"), E_DEC, "offset 1", "map key is not a string"},
    {"duplicate key",
     B("\x82\xa1"
       "a\x01\xa1"
       "a\x02"),
     E_DEC, "offset 4", "duplicate key \"a\""},
    {"invalid UTF-8 key", B("\x81\xa1\xff\x01"), E_DEC, "offset 2", "invalid UTF-8"},
};

TEST(msgpack_bad_values)
{
    ksock_runtime_t *rt = st_runtime();
    st_ser_t s = st_open(rt, "msgpack");
    check_values(&s, mp_values, NCASES(mp_values));
    /* float32 is accepted (other encoders write it) and becomes a double. */
    ksock_value_t *f = st_decode(&s, "\xca\x3f\xc0\x00\x00", 5);
    ASSERT(ksock_value_get_double(f) == 1.5);
    ksock_value_unref(f);
    st_close(&s);
    ksock_runtime_destroy(rt);
    ST_LEAK_CHECK();
}

TEST(msgpack_limits)
{
    ksock_runtime_t *rt = st_runtime();
    st_ser_t s = st_open(rt, "msgpack");
    unsigned char buf[1000001];
    memset(buf, 0x91, sizeof(buf) - 1); /* a million nested one-element arrays */
    buf[sizeof(buf) - 1] = 0x00;
    ksock_value_unref(st_decode(&s, buf + sizeof(buf) - 65, 65)); /* 64 levels */
    ASSERT_CONTAINS(st_decode_fails(&s, buf + sizeof(buf) - 66, 66, E_LIM),
                    "offset 64: nesting deeper than 64");
    ASSERT_CONTAINS(st_decode_fails(&s, buf, sizeof(buf), E_LIM), "nesting deeper than 64");
    s.lim.max_string = 3;
    ASSERT_CONTAINS(st_decode_fails(&s,
                                    "\xa4"
                                    "abcd",
                                    5, E_LIM),
                    "string of 4 bytes over the 3 limit");
    ASSERT_CONTAINS(st_decode_fails(&s,
                                    "\xc4\x04"
                                    "abcd",
                                    6, E_LIM),
                    "byte string of 4 bytes");
    s.lim.max_items = 2;
    ASSERT_CONTAINS(st_decode_fails(&s, "\x93\x01\x02\x03", 4, E_LIM),
                    "array of 3 items over the 2 limit");
    ASSERT_CONTAINS(st_decode_fails(&s,
                                    "\x83\xa1"
                                    "a\x01\xa1"
                                    "b\x01\xa1"
                                    "c\x01",
                                    13, E_LIM),
                    "map of 3 items");
    st_close(&s);
    ksock_runtime_destroy(rt);
    ST_LEAK_CHECK();
}

static const bad_t mp_envelopes[] = {
    {"not a map", B("\x91\x01"), E_DEC, "offset 0", "an envelope is a map"},
    {"truncated", B("\x82\xa2op\xa4ping"), E_DEC, "offset 9", "truncated input"},
    {"trailing garbage", B("\x81\xa2op\xa4ping\x00"), E_DEC, "offset 9", "trailing garbage"},
    {"unknown member",
     B("\x82\xa2op\xa4ping\xa3"
       "abc\x01"),
     E_DEC, "offset 9", "unknown member \"abc\""},
    {"duplicate member", B("\x82\xa2op\xa4ping\xa2op\xa4pong"), E_DEC, "offset 9",
     "duplicate member \"op\""},
    {"integer member name", B("\x81\x01\x02"), E_DEC, "offset 1", "member name is not a string"},
    {"op as integer", B("\x81\xa2op\x09"), E_DEC, "offset 4", "op must be a string"},
    {"unknown op",
     B("\x81\xa2op\xa3"
       "fly"),
     E_PRO, "offset 4", "unknown op \"fly\""},
    {"offset negative", B("\x82\xa2op\xa4ping\xa6offset\xff"), E_PRO, "offset 16",
     "offset must be >= 0"},
    {"partition beyond int32", B("\x82\xa2op\xa4ping\xa9partition\xce\x80\x00\x00\x00"), E_DEC,
     "offset", "partition beyond int32"},
    {"value as integer", B("\x82\xa2op\xa4ping\xa5value\x01"), E_DEC, "offset 15",
     "value must be bin"},
    {"ext as value", B("\x82\xa2op\xa4ping\xa5value\xd4\x01\x00"), E_DEC, "offset 15",
     "extension type"},
    {"invalid UTF-8 topic", B("\x82\xa2op\xa4ping\xa5topic\xa1\xff"), E_DEC, "offset 16",
     "invalid UTF-8"},
    {"header without key", B("\x82\xa2op\xa4ping\xa7headers\x91\x80"), E_PRO, "offset 18",
     "header without a key"},
    {"no op", B("\x81\xa2id\xa1x"), E_PRO, NULL, "op missing"},
    {"ack without offset",
     B("\x83\xa2op\xa3"
       "ack\xa5topic\xa1t\xa9partition\x00"),
     E_PRO, NULL, "ack needs"},
};

TEST(msgpack_bad_envelopes)
{
    ksock_runtime_t *rt = st_runtime();
    st_ser_t s = st_open(rt, "msgpack");
    check_envelopes(&s, mp_envelopes, NCASES(mp_envelopes));
    st_close(&s);
    ksock_runtime_destroy(rt);
    ST_LEAK_CHECK();
}

/* ---- Protobuf ------------------------------------------------------------------------------ */

static const bad_t pb_values[] = {
    {"empty input: no kind", "", 0, E_DEC, "offset 0", "Value without a kind"},
    {"truncated varint", B("\x18\x80"), E_DEC, "offset 1", "truncated varint"},
    {"truncated length",
     B("\x2a\x05"
       "ab"),
     E_DEC, "offset 0", "truncated field (length 5)"},
    {"truncated double", B("\x21\x00\x00"), E_DEC, "offset 0", "truncated field"},
    {"varint over 64 bits", B("\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f"), E_DEC, "offset 1",
     "varint over 64 bits"},
    {"unknown field", B("\x48\x01"), E_DEC, "offset 0",
     "unknown field 9 (wire type varint) in ksock.v1.Value"},
    {"wrong wire type", B("\x28\x01"), E_DEC, "offset 0",
     "field 5 (string_value) has wire type 0 (varint), expected 2 (length-delimited)"},
    {"double as varint", B("\x20\x01"), E_DEC, "offset 0",
     "field 4 (double_value) has wire type 0"},
    {"group", B("\x0b\x0c"), E_DEC, "offset 0", "expected 0 (varint)"},
    {"unknown group", B("\x4b"), E_DEC, "offset 0", "unknown field 9 (wire type start group)"},
    {"two kinds", B("\x08\x00\x10\x01"), E_DEC, "offset 2",
     "more than one kind (field 2, bool_value)"},
    {"same kind twice", B("\x10\x01\x10\x00"), E_DEC, "offset 2",
     "field 2 (bool_value) appears twice"},
    {"bool 2", B("\x10\x02"), E_DEC, "offset 0", "bool_value must be 0 or 1"},
    {"null_value 1", B("\x08\x01"), E_DEC, "offset 0", "null_value must be 0"},
    {"invalid UTF-8 string",
     B("\x2a\x03"
       "a\xff"
       "b"),
     E_DEC, "offset 3", "field 5 (string_value): invalid UTF-8"},
    {"array item without kind", B("\x3a\x02\x0a\x00"), E_DEC, "offset 2", "Value without a kind"},
    {"map entry without value",
     B("\x42\x05\x0a\x03\x0a\x01"
       "a"),
     E_DEC, "offset 2", "map entry without value"},
    {"map entry without key", B("\x42\x06\x0a\x04\x12\x02\x08\x00"), E_DEC, "offset 2",
     "map entry without key"},
    {"duplicate map key",
     B("\x42\x14\x0a\x07\x0a\x01"
       "a\x12\x02\x08\x00\x0a\x07\x0a\x01"
       "a\x12\x02\x10\x01\x0a\x00"),
     E_DEC, "offset 11", "duplicate key \"a\""},
    {"nested unknown field", B("\x3a\x04\x0a\x02\x50\x01"), E_DEC, "offset 4", "unknown field 10"},
    {"field number 0", B("\x00\x01"), E_DEC, "offset 0", "invalid field number 0"},
};

TEST(protobuf_bad_values)
{
    ksock_runtime_t *rt = st_runtime();
    st_ser_t s = st_open(rt, "protobuf");
    check_values(&s, pb_values, NCASES(pb_values));
    st_close(&s);
    /* With unknown_fields "ignore", unknown fields are skipped, but still checked for truncation.
     */
    st_ser_t ign = st_open_with(rt, "protobuf", "{\"unknown_fields\":\"ignore\"}", NULL, NULL);
    ksock_value_t *v = st_decode(&ign,
                                 "\x48\x01\x10\x01\x52\x01"
                                 "x",
                                 7);
    ASSERT(ksock_value_get_bool(v));
    ksock_value_unref(v);
    ASSERT_CONTAINS(st_decode_fails(&ign,
                                    "\x10\x01\x52\x05"
                                    "x",
                                    5, E_DEC),
                    "offset 2: truncated");
    ASSERT_CONTAINS(st_decode_fails(&ign, "\x4b", 1, E_DEC),
                    "wire type 3 (start group) is not supported");
    st_close(&ign);
    ksock_runtime_destroy(rt);
    ST_LEAK_CHECK();
}

/* Value{array{items: ...}} nested `depth` times around Value{null}, built inside out. */
static unsigned char *nested_pb(int depth, size_t *len)
{
    size_t cap = (size_t)depth * 24 + 16, n = 2;
    unsigned char *buf = malloc(cap), *tmp = malloc(cap);
    ASSERT(buf && tmp);
    buf[0] = 0x08; /* null_value = 0 */
    buf[1] = 0x00;
    for (int d = 0; d < depth; d++) {
        /* items: field 1 of Array, then array_value: field 7 of Value. */
        unsigned char hdr[24];
        size_t h = 0, inner = n;
        hdr[h++] = 0x3a; /* Value.array_value */
        size_t arr = 1 + (inner < 128 ? 1 : inner < 16384 ? 2 : inner < 2097152 ? 3 : 4) + inner;
        for (size_t v = arr;; v >>= 7) {
            hdr[h++] = (unsigned char)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
            if (v < 0x80) break;
        }
        hdr[h++] = 0x0a; /* Array.items */
        for (size_t v = inner;; v >>= 7) {
            hdr[h++] = (unsigned char)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
            if (v < 0x80) break;
        }
        memcpy(tmp, hdr, h);
        memcpy(tmp + h, buf, n);
        n += h;
        unsigned char *t = buf;
        buf = tmp;
        tmp = t;
    }
    free(tmp);
    *len = n;
    return buf;
}

TEST(protobuf_limits)
{
    ksock_runtime_t *rt = st_runtime();
    st_ser_t s = st_open(rt, "protobuf");
    size_t len;
    unsigned char *ok = nested_pb(64, &len);
    ksock_value_t *v = st_decode(&s, ok, len);
    ASSERT_EQ(ksock_value_depth(v), 64);
    ksock_value_unref(v);
    free(ok);
    unsigned char *deep = nested_pb(65, &len);
    ASSERT_CONTAINS(st_decode_fails(&s, deep, len, E_LIM), "nesting deeper than 64");
    free(deep);
    /* 100k levels: protobuf-c's unpacker would recurse 200k frames deep; we stop at 65. */
    unsigned char *huge = nested_pb(100000, &len);
    ASSERT_CONTAINS(st_decode_fails(&s, huge, len, E_LIM), "nesting deeper than 64");
    free(huge);
    s.lim.max_string = 2;
    ASSERT_CONTAINS(st_decode_fails(&s,
                                    "\x2a\x03"
                                    "abc",
                                    5, E_LIM),
                    "field 5 (string_value): 3 bytes over the 2 limit");
    ASSERT_CONTAINS(st_decode_fails(&s,
                                    "\x32\x03"
                                    "abc",
                                    5, E_LIM),
                    "bytes_value");
    s.lim.max_items = 1;
    ASSERT_CONTAINS(st_decode_fails(&s, "\x3a\x08\x0a\x02\x08\x00\x0a\x02\x08\x00", 10, E_LIM),
                    "more than 1 repeated elements in ksock.v1.Array");
    st_close(&s);
    ksock_runtime_destroy(rt);
    ST_LEAK_CHECK();
}

static const bad_t pb_envelopes[] = {
    {"unknown field", B("\x08\x09\xf8\x06\x01"), E_DEC, "offset 2",
     "unknown field 111 (wire type varint) in ksock.v1.Envelope"},
    {"topic as varint", B("\x08\x09\x18\x05"), E_DEC, "offset 2",
     "field 3 (topic) has wire type 0 (varint), expected 2 (length-delimited)"},
    {"op as string",
     B("\x0a\x01"
       "x"),
     E_DEC, "offset 0", "field 1 (op) has wire type 2"},
    {"duplicate topic",
     B("\x08\x09\x1a\x01"
       "a\x1a\x01"
       "b"),
     E_DEC, "offset 5", "field 3 (topic) appears twice"},
    {"truncated",
     B("\x08\x09\x1a\x05"
       "ab"),
     E_DEC, "offset 2", "truncated field"},
    {"truncated tag", B("\x08\x09\x80"), E_DEC, "offset 2", "truncated varint"},
    {"negative partition", B("\x08\x09\x20\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"), E_PRO,
     "offset 2", "partition must be >= 0"},
    {"partition beyond int32", B("\x08\x09\x20\x80\x80\x80\x80\x10"), E_DEC, "offset 2",
     "out of int32 range"},
    {"invalid UTF-8 id", B("\x08\x09\x12\x02\xc3\x28"), E_DEC, "offset 4",
     "field 2 (id): invalid UTF-8"},
    {"header without key", B("\x08\x09\x4a\x02\x12\x00"), E_PRO, "offset 2",
     "header without a key"},
    {"header unknown field", B("\x08\x09\x4a\x02\x18\x01"), E_DEC, "offset 4",
     "unknown field 3 (wire type varint) in ksock.v1.Header"},
    {"offsets entry incomplete", B("\x08\x01\x1a\x01t\x50\x02\x5a\x02\x08\x00"), E_PRO, "offset 7",
     "needs partition and offset"},
    {"unknown op number", B("\x08\x2a"), E_PRO, NULL, "unknown op 42"},
    {"unknown start number", B("\x08\x01\x1a\x01t\x50\x07"), E_PRO, NULL, "unknown start 7"},
    {"no op", B("\x12\x01x"), E_PRO, NULL, "op missing"},
    {"error without code", B("\x08\x06"), E_PRO, NULL, "error needs a negative error_code"},
};

TEST(protobuf_bad_envelopes)
{
    ksock_runtime_t *rt = st_runtime();
    st_ser_t s = st_open(rt, "protobuf");
    check_envelopes(&s, pb_envelopes, NCASES(pb_envelopes));
    st_close(&s);
    ksock_runtime_destroy(rt);
    ST_LEAK_CHECK();
}

/* True when `m` can go into a reply or a log line as is: valid UTF-8, no C0, DEL or C1 control. */
static int printable(const char *m)
{
    if (!ksock_utf8_check(m, strlen(m), NULL)) return 0;
    for (const unsigned char *p = (const unsigned char *)m; *p; p++)
        if (*p < 0x20 || *p == 0x7f || (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)) return 0;
    return 1;
}

/*
 * Values: a duplicate map key made of control characters, a C1 control and a
 * backslash. The message quotes the key escaped, never as it came.
 */
TEST(hostile_keys_are_escaped_in_value_messages)
{
    ksock_runtime_t *rt = st_runtime();
    static const struct {
        const char *fmt;
        const char *data;
        size_t len;
    } cases[] = {
        {"json", B("{\"\\u001b[2J\\u0085\\\\\":1,\"\\u001b[2J\\u0085\\\\\":2}")},
        {"msgpack", B("\x82\xa7\x1b[2J\xc2\x85\\\x01\xa7\x1b[2J\xc2\x85\\\x02")},
        /* Map{entries: {key, Value{null}} twice}, key "\x1b[2J\xc2\x85\\" */
        {"protobuf", B("\x42\x1e"
                       "\x0a\x0d\x0a\x07\x1b[2J\xc2\x85\\\x12\x02\x08\x00"
                       "\x0a\x0d\x0a\x07\x1b[2J\xc2\x85\\\x12\x02\x08\x00")},
    };
    for (size_t i = 0; i < NCASES(cases); i++) {
        st_ser_t s = st_open(rt, cases[i].fmt);
        const char *err = st_decode_fails(&s, cases[i].data, cases[i].len, E_DEC);
        printf("# %s: %s\n", cases[i].fmt, printable(err) ? err : "(not printable)");
        ASSERT(printable(err));
        ASSERT_CONTAINS(err, "duplicate key \"\\u001b[2J\\u0085\\\\\"");
        st_close(&s);
    }
    ksock_runtime_destroy(rt);
    ST_LEAK_CHECK();
}

/* Envelopes: a member name that is not UTF-8 (msgpack) or a lone surrogate (JSON). */
TEST(hostile_member_names_give_printable_decode_errors)
{
    ksock_runtime_t *rt = st_runtime();
    st_ser_t mp = st_open(rt, "msgpack"), js = st_open(rt, "json");
    const char *err = st_envelope_fails(&mp, B("\x82\xa2op\xa4ping\xa2\xff\xfe\x01"), E_DEC);
    ASSERT(printable(err));
    ASSERT_CONTAINS(err, "unknown member \"\\xff\\xfe\"");
    err = st_envelope_fails(&js, B("{\"op\":\"ping\",\"\\udcff\":1}"), E_DEC);
    ASSERT(printable(err));
    ASSERT_CONTAINS(err, "unknown member \"\\x");
    st_close(&mp);
    st_close(&js);
    ksock_runtime_destroy(rt);
    ST_LEAK_CHECK();
}

/* Every prefix of every vector in every format: an error or a value, never a crash or leak. */
TEST(every_truncation_of_every_vector)
{
    ksock_runtime_t *rt = st_runtime();
    ksock_config_t *manifest;
    char err[512];
    ASSERT_OK(ksock_config_load_file(st_vector_path("manifest.json"), &manifest, err, sizeof(err)));
    const ksock_cfg_t *root = ksock_config_root(manifest);
    size_t tried = 0;
    for (int f = 0; f < ST_NFORMATS; f++) {
        st_ser_t s = st_open(rt, st_formats[f]);
        for (int kind = 0; kind < 2; kind++) {
            const ksock_cfg_t *list = ksock_cfg_get(root, kind ? "envelopes" : "values");
            for (size_t i = 0; i < ksock_cfg_count(list); i++) {
                const char *name =
                    ksock_cfg_string(ksock_cfg_get(ksock_cfg_at(list, i, NULL), "name"));
                size_t len;
                unsigned char *b =
                    st_vector_bytes(kind ? "envelopes" : "values", name, st_formats[f], &len);
                if (b == NULL) continue;
                for (size_t cut = 0; cut < len; cut++, tried++) {
                    unsigned char *copy = malloc(cut + 1); /* exact size: ASan sees overreads */
                    memcpy(copy, b, cut);
                    ksock_value_t *v = NULL;
                    ksock_envelope_t env;
                    ksock_envelope_init(&env);
                    if (kind == 0 &&
                        s.vt->decode_value(s.inst, copy, cut, &s.lim, &v, err, sizeof(err)) == 0)
                        ksock_value_unref(v);
                    if (kind == 1)
                        s.vt->decode_envelope(s.inst, copy, cut, &s.lim, &env, err, sizeof(err));
                    ksock_envelope_clear(&env);
                    free(copy);
                }
                free(b);
            }
        }
        st_close(&s);
    }
    printf("# %zu truncated inputs decoded without a crash\n", tried);
    ksock_config_free(manifest);
    ksock_runtime_destroy(rt);
    ST_LEAK_CHECK();
}

TEST_LIST(TEST_ENTRY(json_bad_values), TEST_ENTRY(json_limits), TEST_ENTRY(json_bad_envelopes),
          TEST_ENTRY(msgpack_bad_values), TEST_ENTRY(msgpack_limits),
          TEST_ENTRY(msgpack_bad_envelopes), TEST_ENTRY(protobuf_bad_values),
          TEST_ENTRY(protobuf_limits), TEST_ENTRY(protobuf_bad_envelopes),
          TEST_ENTRY(hostile_keys_are_escaped_in_value_messages),
          TEST_ENTRY(hostile_member_names_give_printable_decode_errors),
          TEST_ENTRY(every_truncation_of_every_vector))
