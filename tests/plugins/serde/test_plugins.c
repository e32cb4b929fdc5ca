/*
 * The serializer plugins as plugins: found by the real loader, their
 * descriptors and options, a third-party serializer added without touching
 * the core, and our encodings checked against the reference libraries
 * (protobuf-c for ksock.proto, msgpack-c, yajl's tree parser).
 */
#include "serde_test.h"

#include "ksock.pb-c.h"
#include <msgpack.h>
#include <yajl/yajl_tree.h>

TEST(all_three_load_through_the_loader)
{
    ksock_runtime_t *rt = st_runtime();
    char err[512];
    static const char *const files[] = {"serializer_json.so", "serializer_msgpack.so",
                                        "serializer_protobuf.so"};
    for (int f = 0; f < ST_NFORMATS; f++) {
        ksock_plugin_t *p;
        ASSERT_OK(
            ksock_plugin_find(rt, KSOCK_PLUGIN_SERIALIZER, st_formats[f], &p, err, sizeof(err)));
        const ksock_plugin_desc_t *d = ksock_plugin_desc(p);
        ASSERT_STR_EQ(d->name, st_formats[f]);
        ASSERT_EQ(d->kind, KSOCK_PLUGIN_SERIALIZER);
        ASSERT_CONTAINS(ksock_plugin_file(p), files[f]);
        st_ser_t s = st_open(rt, st_formats[f]);
        ASSERT_EQ(s.vt->size, sizeof(ksock_serializer_vtable_t));
        ASSERT_EQ(s.vt->frame_type(s.inst), f == 0 ? KSOCK_FRAME_TEXT : KSOCK_FRAME_BINARY);
        st_close(&s);
    }
    ksock_runtime_destroy(rt);
    ST_LEAK_CHECK();
}

TEST(options_are_validated_by_the_core)
{
    ksock_runtime_t *rt = st_runtime();
    char err[512] = "";
    ksock_plugin_t *p;
    ASSERT_OK(ksock_plugin_find(rt, KSOCK_PLUGIN_SERIALIZER, "protobuf", &p, err, sizeof(err)));
    ksock_config_t *doc;
    const char *bad = "{\"unknown_fields\":\"maybe\"}";
    ASSERT_OK(ksock_config_load_string("o", bad, strlen(bad), &doc, err, sizeof(err)));
    ksock_plugin_instance_t *pi = NULL;
    ASSERT_EQ(ksock_plugin_instance_new(rt, p, "t", doc, ksock_config_root(doc), NULL, &pi, err,
                                        sizeof(err)),
              KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "unknown_fields");
    ASSERT_NULL(pi);
    ksock_config_free(doc);
    ASSERT_OK(ksock_plugin_find(rt, KSOCK_PLUGIN_SERIALIZER, "json", &p, err, sizeof(err)));
    const char *wrong = "{\"json_topics\":\"orders\"}";
    ASSERT_OK(ksock_config_load_string("o", wrong, strlen(wrong), &doc, err, sizeof(err)));
    ASSERT_EQ(ksock_plugin_instance_new(rt, p, "t", doc, ksock_config_root(doc), NULL, &pi, err,
                                        sizeof(err)),
              KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "json_topics");
    ksock_config_free(doc);
    ksock_runtime_destroy(rt);
    ST_LEAK_CHECK();
}

/* A record envelope with `value` on `topic`, encoded by `s`, as a string. */
static char *encode_record(st_ser_t *s, const char *topic, const char *value, size_t len)
{
    ksock_envelope_t e;
    ksock_envelope_init(&e);
    e.op = KSOCK_OP_RECORD;
    e.topic = topic;
    e.topic_len = strlen(topic);
    e.partition = 0;
    e.offset = 1;
    e.value = (ksock_bytes_t){value, len, true};
    ksock_buf_t out = KSOCK_BUF_INIT;
    char err[256];
    ASSERT_OK(s->vt->encode_envelope(s->inst, &e, &out, err, sizeof(err)));
    return out.data;
}

TEST(json_topics_embed_json_values)
{
    ksock_runtime_t *rt = st_runtime();
    st_ser_t s = st_open_with(rt, "json", "{\"json_topics\":[\"exact\",\"pre*\"]}", NULL, NULL);
    static const struct {
        const char *topic, *value, *member;
    } cases[] = {
        {"exact", "{\"a\":1}", "\"value_json\":{\"a\":1}}"},
        {"prefix.x", " [1, 2] ", "\"value_json\": [1, 2] }"}, /* verbatim, whitespace and all */
        {"pre", "null", "\"value_json\":null}"},
        {"exactly", "{\"a\":1}", "\"value\":\"{\\\"a\\\":1}\"}"}, /* not listed: text */
        {"exact", "{not json", "\"value\":\"{not json\"}"},       /* not JSON: text */
        {"exact", "1 2", "\"value\":\"1 2\"}"},                   /* two values: text */
        {"exact", "NaN", "\"value\":\"NaN\"}"},
        {"exact", "\"\xc0\xaf\"", "\"value_b64\":\"IsCvIg==\"}"}, /* overlong UTF-8: bytes */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *json = encode_record(&s, cases[i].topic, cases[i].value, strlen(cases[i].value));
        ASSERT_CONTAINS(json, cases[i].member);
        /* And back: value_json decodes to the compact text, the others to the bytes. */
        ksock_envelope_t e;
        ksock_envelope_init(&e);
        char err[256];
        ASSERT_OK(s.vt->decode_envelope(s.inst, json, strlen(json), &s.lim, &e, err, sizeof(err)));
        ASSERT(e.value.present);
        if (strstr(cases[i].member, "value_json") == NULL) {
            ASSERT_EQ(e.value.len, strlen(cases[i].value));
            ASSERT_MEM_EQ(e.value.data, cases[i].value, e.value.len);
        }
        ksock_envelope_clear(&e);
        free(json);
    }
    /* Embedded JSON must decode again: 64 levels are embedded, 65 (over the limit) sent as text. */
    char deep[200];
    for (int levels = 64; levels <= 65; levels++) {
        memset(deep, '[', (size_t)levels);
        memset(deep + levels, ']', (size_t)levels);
        char *json = encode_record(&s, "exact", deep, 2 * (size_t)levels);
        ASSERT_CONTAINS(json, levels == 64 ? "\"value_json\":[[" : "\"value\":\"[[");
        free(json);
    }
    st_close(&s);
    st_ser_t all = st_open_with(rt, "json", "{\"json_topics\":[\"*\"]}", NULL, NULL);
    char *json = encode_record(&all, "anything", "42", 2);
    ASSERT_CONTAINS(json, "\"value_json\":42");
    free(json);
    st_close(&all);
    ksock_runtime_destroy(rt);
    ST_LEAK_CHECK();
}

/* ---- A third-party serializer, registered without touching the core ------------------ */

static int hex_create(const ksock_plugin_ctx_t *ctx, const void *options, void **inst, char *errstr,
                      size_t errstr_size)
{
    static int tag;
    *inst = &tag;
    return 0;
}

static void hex_destroy(void *inst) {}

static ksock_frame_type_t hex_frame_type(void *inst)
{
    return KSOCK_FRAME_TEXT;
}

static int hex_encode(void *inst, const ksock_value_t *v, ksock_buf_t *out, char *errstr,
                      size_t errstr_size)
{
    size_t len;
    const unsigned char *p = ksock_value_get_bytes(v, &len);
    if (p == NULL) return KSOCK_E_ENCODE;
    for (size_t i = 0; i < len; i++)
        if (ksock_buf_appendf(out, "%02x", p[i]) != 0) return KSOCK_E_NOMEM;
    return 0;
}

static int hex_decode(void *inst, const void *data, size_t len, const ksock_value_limits_t *lim,
                      ksock_value_t **out, char *errstr, size_t errstr_size)
{
    size_t n;
    char *text = malloc(len + 1);
    memcpy(text, data, len);
    text[len] = '\0';
    unsigned char *bytes = st_unhex(text, &n);
    *out = ksock_value_bytes(bytes, n);
    free(bytes);
    free(text);
    return 0;
}

/* Envelopes are optional for a value-only serializer. */
static int hex_encode_envelope(void *inst, const ksock_envelope_t *env, ksock_buf_t *out,
                               char *errstr, size_t errstr_size)
{
    return KSOCK_E_UNSUPPORTED;
}

static int hex_decode_envelope(void *inst, const void *data, size_t len,
                               const ksock_value_limits_t *lim, ksock_envelope_t *env, char *errstr,
                               size_t errstr_size)
{
    return KSOCK_E_UNSUPPORTED;
}

static const ksock_serializer_vtable_t hex_vtable = {
    .size = sizeof(ksock_serializer_vtable_t),
    .create = hex_create,
    .destroy = hex_destroy,
    .frame_type = hex_frame_type,
    .encode_value = hex_encode,
    .decode_value = hex_decode,
    .encode_envelope = hex_encode_envelope,
    .decode_envelope = hex_decode_envelope,
};

static const ksock_plugin_desc_t hex_desc = {
    KSOCK_PLUGIN_HEADER(KSOCK_PLUGIN_SERIALIZER), .name = "hex",         .version = "0",
    .description = "a third party's serializer",  .vtable = &hex_vtable,
};

static const ksock_plugin_desc_t *hex_entry(void)
{
    return &hex_desc;
}

TEST(a_fourth_serializer_needs_no_core_change)
{
    ksock_runtime_t *rt = st_runtime();
    char err[512] = "";
    ASSERT_OK(ksock_plugins_register_builtin(rt, hex_entry, err, sizeof(err)));
    ASSERT_OK(ksock_serde_set_default_by_name(rt, "hex", err, sizeof(err)));
    ksock_value_t *v = ksock_value_bytes("\x01\xab", 2), *back = NULL;
    ksock_buf_t out = KSOCK_BUF_INIT;
    ASSERT_OK(ksock_serde_serialize(rt, v, NULL, &out, NULL, err, sizeof(err)));
    ASSERT_STR_EQ(out.data, "01ab");
    ASSERT_OK(ksock_serde_deserialize(rt, out.data, out.len, NULL, &back, err, sizeof(err)));
    ASSERT(ksock_value_equal(v, back));
    ksock_value_unref(v);
    ksock_value_unref(back);
    ksock_buf_free(&out);
    ksock_runtime_destroy(rt);
    ST_LEAK_CHECK();
}

/* ---- Reference implementations ------------------------------------------------------------ */

typedef void (*vector_fn)(const char *kind, const char *name, const unsigned char *b, size_t len,
                          void *arg);

/* Call fn for every vector of `format` (kind "values" and "envelopes"). */
static void each_vector(const char *format, vector_fn fn, void *arg)
{
    ksock_config_t *m;
    char err[512];
    ASSERT_OK(ksock_config_load_file(st_vector_path("manifest.json"), &m, err, sizeof(err)));
    static const char *const kinds[] = {"values", "envelopes"};
    for (int k = 0; k < 2; k++) {
        const ksock_cfg_t *list = ksock_cfg_get(ksock_config_root(m), kinds[k]);
        for (size_t i = 0; i < ksock_cfg_count(list); i++) {
            const char *name = ksock_cfg_string(ksock_cfg_get(ksock_cfg_at(list, i, NULL), "name"));
            size_t len;
            unsigned char *b = st_vector_bytes(kinds[k], name, format, &len);
            if (b == NULL) continue;
            fn(kinds[k], name, b, len, arg);
            free(b);
        }
    }
    ksock_config_free(m);
}

/*
 * protobuf-c unpacks every protobuf vector and packs it back to the same
 * bytes: our encoding is the canonical one. (Skipped: the two vectors with
 * U+0000 in a string, which protobuf-c's char * strings cannot hold.)
 */
static void protobuf_c_roundtrip(const char *kind, const char *name, const unsigned char *b,
                                 size_t len, void *arg)
{
    if (strcmp(name, "string_nul") == 0 || strcmp(name, "map_keys_unicode") == 0) return;
    const ProtobufCMessageDescriptor *d = strcmp(kind, "values") == 0
                                              ? &ksock__v1__value__descriptor
                                              : &ksock__v1__envelope__descriptor;
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, b);
    if (m == NULL) TEST_FAIL_("protobuf-c cannot unpack %s/%s", kind, name);
    ASSERT_EQ(protobuf_c_message_get_packed_size(m), len);
    unsigned char *again = malloc(len + 1);
    protobuf_c_message_pack(m, again);
    if (memcmp(again, b, len) != 0) {
        st_dump("ours", b, len);
        st_dump("protobuf-c", again, len);
        TEST_FAIL_("protobuf-c packs %s/%s differently", kind, name);
    }
    free(again);
    protobuf_c_message_free_unpacked(m, NULL);
    (*(int *)arg)++;
}

TEST(protobuf_c_agrees_with_every_vector)
{
    int n = 0;
    each_vector("protobuf", protobuf_c_roundtrip, &n);
    printf("# %d vectors round-tripped through protobuf-c\n", n);
    ASSERT_GE(n, 70);
    ST_LEAK_CHECK();
}

/* An envelope packed by protobuf-c decodes to the same fields with our reader. */
TEST(protobuf_c_envelope_decodes)
{
    Ksock__V1__Header h = KSOCK__V1__HEADER__INIT;
    h.key = "trace";
    h.has_value = 1;
    h.value.data = (uint8_t *)"abc";
    h.value.len = 3;
    Ksock__V1__Header *hs[] = {&h};
    Ksock__V1__Envelope m = KSOCK__V1__ENVELOPE__INIT;
    m.has_op = 1;
    m.op = KSOCK__V1__OP__OP_RECORD;
    m.topic = "orders";
    m.has_partition = m.has_offset = m.has_timestamp = 1;
    m.partition = 3;
    m.offset = 1042;
    m.timestamp = 1700000000000;
    m.has_value = 1;
    m.value.data = (uint8_t *)"hello";
    m.value.len = 5;
    m.n_headers = 1;
    m.headers = hs;
    size_t len = protobuf_c_message_get_packed_size(&m.base);
    unsigned char *buf = malloc(len);
    protobuf_c_message_pack(&m.base, buf);
    ksock_runtime_t *rt = st_runtime();
    st_ser_t s = st_open(rt, "protobuf");
    ksock_envelope_t e;
    ksock_envelope_init(&e);
    char err[256];
    ASSERT_OK(s.vt->decode_envelope(s.inst, buf, len, &s.lim, &e, err, sizeof(err)));
    ASSERT_EQ(e.op, KSOCK_OP_RECORD);
    ASSERT_EQ(e.topic_len, 6);
    ASSERT_MEM_EQ(e.topic, "orders", 6);
    ASSERT_EQ(e.partition, 3);
    ASSERT_EQ(e.offset, 1042);
    ASSERT_EQ(e.timestamp, 1700000000000);
    ASSERT(!e.key.present);
    ASSERT_EQ(e.value.len, 5);
    ASSERT_EQ(e.nheaders, 1);
    ASSERT_MEM_EQ(e.headers[0].value.data, "abc", 3);
    /* And ours encodes it to the same bytes. */
    ksock_buf_t out = KSOCK_BUF_INIT;
    ASSERT_OK(s.vt->encode_envelope(s.inst, &e, &out, err, sizeof(err)));
    ASSERT_EQ(out.len, len);
    ASSERT_MEM_EQ(out.data, buf, len);
    ksock_buf_free(&out);
    ksock_envelope_clear(&e);
    free(buf);
    st_close(&s);
    ksock_runtime_destroy(rt);
    ST_LEAK_CHECK();
}

/* msgpack-c unpacks every msgpack vector and packs it back to the same bytes. */
static void msgpack_c_roundtrip(const char *kind, const char *name, const unsigned char *b,
                                size_t len, void *arg)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    if (msgpack_unpack_next(&u, (const char *)b, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len)
        TEST_FAIL_("msgpack-c cannot unpack %s/%s", kind, name);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    ASSERT_OK(msgpack_pack_object(&pk, u.data));
    if (sb.size != len || memcmp(sb.data, b, len) != 0) {
        st_dump("ours", b, len);
        st_dump("msgpack-c", sb.data, sb.size);
        TEST_FAIL_("msgpack-c packs %s/%s differently", kind, name);
    }
    msgpack_sbuffer_destroy(&sb);
    msgpack_unpacked_destroy(&u);
    (*(int *)arg)++;
}

TEST(msgpack_c_agrees_with_every_vector)
{
    int n = 0;
    each_vector("msgpack", msgpack_c_roundtrip, &n);
    printf("# %d vectors round-tripped through msgpack-c\n", n);
    ASSERT_GE(n, 70);
    ST_LEAK_CHECK();
}

/* yajl's tree parser (not the callbacks our decoder uses) accepts every JSON vector. */
static void yajl_tree_accepts(const char *kind, const char *name, const unsigned char *b,
                              size_t len, void *arg)
{
    char err[256] = "";
    yajl_val v = yajl_tree_parse((const char *)b, err, sizeof(err));
    if (v == NULL) TEST_FAIL_("yajl_tree rejects %s/%s: %s", kind, name, err);
    yajl_tree_free(v);
    (*(int *)arg)++;
}

TEST(yajl_tree_accepts_every_json_vector)
{
    int n = 0;
    each_vector("json", yajl_tree_accepts, &n);
    printf("# %d JSON vectors parsed by yajl_tree\n", n);
    ASSERT_GE(n, 70);
    ST_LEAK_CHECK();
}

/* 32-bit lengths and counts (bin32, str32, array16 headers): round trip in every format. */
TEST(large_envelopes_in_every_format)
{
    ksock_runtime_t *rt = st_runtime();
    size_t big = 70000;
    char *value = malloc(big), *topic = malloc(300), *id = malloc(big);
    for (size_t i = 0; i < big; i++)
        value[i] = (char)(i * 7); /* binary: value_b64 in JSON */
    memset(topic, 'q', 300);
    memset(id, 'i', big);
    ksock_header_t hs[300];
    for (int i = 0; i < 300; i++)
        hs[i] = (ksock_header_t){"h", 1, {value, (size_t)i, i % 3 != 0}};
    ksock_envelope_t e;
    ksock_envelope_init(&e);
    e.op = KSOCK_OP_PUBLISH;
    e.topic = topic;
    e.topic_len = 300;
    e.id = id; /* str32 in msgpack */
    e.id_len = big;
    e.key = (ksock_bytes_t){value, big, true};
    e.value = (ksock_bytes_t){value, 65536, true};
    e.headers = hs;
    e.nheaders = 300;
    for (int f = 0; f < ST_NFORMATS; f++) {
        st_ser_t s = st_open(rt, st_formats[f]);
        ksock_buf_t out = KSOCK_BUF_INIT;
        char err[512];
        ASSERT_OK(s.vt->encode_envelope(s.inst, &e, &out, err, sizeof(err)));
        ksock_envelope_t back;
        ksock_envelope_init(&back);
        ASSERT_OK(
            s.vt->decode_envelope(s.inst, out.data, out.len, &s.lim, &back, err, sizeof(err)));
        ASSERT(ksock_envelope_equal(&e, &back));
        if (f == 1) {
            int n = 0;
            msgpack_c_roundtrip("envelopes", "large", (unsigned char *)out.data, out.len, &n);
            ASSERT_EQ(n, 1);
        }
        if (f == 2) {
            int n = 0;
            protobuf_c_roundtrip("envelopes", "large", (unsigned char *)out.data, out.len, &n);
            ASSERT_EQ(n, 1);
        }
        ksock_envelope_clear(&back);
        ksock_buf_free(&out);
        st_close(&s);
    }
    free(value);
    free(topic);
    free(id);
    ksock_runtime_destroy(rt);
    ST_LEAK_CHECK();
}

TEST_LIST(TEST_ENTRY(large_envelopes_in_every_format),
          TEST_ENTRY(all_three_load_through_the_loader),
          TEST_ENTRY(options_are_validated_by_the_core), TEST_ENTRY(json_topics_embed_json_values),
          TEST_ENTRY(a_fourth_serializer_needs_no_core_change),
          TEST_ENTRY(protobuf_c_agrees_with_every_vector), TEST_ENTRY(protobuf_c_envelope_decodes),
          TEST_ENTRY(msgpack_c_agrees_with_every_vector),
          TEST_ENTRY(yajl_tree_accepts_every_json_vector))
