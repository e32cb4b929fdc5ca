/*
 * The shared vectors (tests/vectors/manifest.json): for every value and
 * envelope, in every format it lists, the plugin loaded through the real
 * loader must decode the expected bytes to the reference, encode the
 * reference to exactly the expected bytes, and convert from every other
 * format to exactly these bytes.
 */
#include "serde_test.h"

typedef struct vectors_s {
    ksock_runtime_t *rt;
    ksock_config_t *manifest;
    st_ser_t ser[ST_NFORMATS];
} vectors_t;

static int format_index(const char *name)
{
    for (int f = 0; f < ST_NFORMATS; f++)
        if (strcmp(st_formats[f], name) == 0) return f;
    TEST_FAIL_("unknown format %s", name);
}

static vectors_t vectors_open(void)
{
    vectors_t v = {.rt = st_runtime()};
    char err[512];
    int rc = ksock_config_load_file(st_vector_path("manifest.json"), &v.manifest, err, sizeof(err));
    if (rc != 0) TEST_FAIL_("manifest: %s", err);
    const ksock_cfg_t *root = ksock_config_root(v.manifest);
    ASSERT_EQ(ksock_cfg_int(ksock_cfg_get(root, "version")), 1);
    /* The json instance gets the manifest's json_options (declared JSON topics). */
    v.ser[0] = st_open_with(v.rt, "json", NULL, v.manifest, ksock_cfg_get(root, "json_options"));
    v.ser[1] = st_open(v.rt, "msgpack");
    v.ser[2] = st_open(v.rt, "protobuf");
    return v;
}

static void vectors_close(vectors_t *v)
{
    for (int f = 0; f < ST_NFORMATS; f++)
        st_close(&v->ser[f]);
    ksock_config_free(v->manifest);
    ksock_runtime_destroy(v->rt);
}

/* The i-th entry of manifest list `kind`, with its name and formats. */
static const ksock_cfg_t *entry(vectors_t *v, const char *kind, size_t i, const char **name)
{
    const ksock_cfg_t *list = ksock_cfg_get(ksock_config_root(v->manifest), kind);
    const ksock_cfg_t *e = ksock_cfg_at(list, i, NULL);
    *name = ksock_cfg_string(ksock_cfg_get(e, "name"));
    ASSERT_NOT_NULL(*name);
    return ksock_cfg_get(e, "formats");
}

static size_t entry_count(vectors_t *v, const char *kind)
{
    return ksock_cfg_count(ksock_cfg_get(ksock_config_root(v->manifest), kind));
}

/* Compare an encoding with the expected bytes; prints both on mismatch. */
static int same_bytes(const char *what, const char *name, const char *fmt, const ksock_buf_t *got,
                      const unsigned char *want, size_t want_len)
{
    if (got->len == want_len && memcmp(got->data, want, want_len) == 0) return 1;
    fprintf(stderr, "# %s %s in %s differs\n", what, name, fmt);
    st_dump("want", want, want_len);
    st_dump("got ", got->data, got->len);
    return 0;
}

/* ---- Values -------------------------------------------------------------------------- */

static ksock_value_t *decode_value_vector(vectors_t *v, const char *name, const char *fmt)
{
    size_t len;
    unsigned char *bytes = st_vector_bytes("values", name, fmt, &len);
    if (bytes == NULL) TEST_FAIL_("missing %s/%s in %s", "values", name, fmt);
    ksock_value_t *val = st_decode(&v->ser[format_index(fmt)], bytes, len);
    free(bytes);
    return val;
}

/* One value vector in every format: decode == reference, encode == bytes. */
static int check_value(vectors_t *v, const char *name, const ksock_cfg_t *formats)
{
    int bad = 0;
    const char *ref_fmt = ksock_cfg_string(ksock_cfg_at(formats, 0, NULL));
    ksock_value_t *ref = decode_value_vector(v, name, ref_fmt);
    for (size_t i = 0; i < ksock_cfg_count(formats); i++) {
        const char *fmt = ksock_cfg_string(ksock_cfg_at(formats, i, NULL));
        st_ser_t *s = &v->ser[format_index(fmt)];
        size_t len;
        unsigned char *want = st_vector_bytes("values", name, fmt, &len);
        ksock_value_t *got = st_decode(s, want, len);
        if (!ksock_value_equal(got, ref)) {
            fprintf(stderr, "# value %s: %s decodes to something else than %s\n", name, fmt,
                    ref_fmt);
            bad++;
        }
        ksock_buf_t out = KSOCK_BUF_INIT;
        char err[256];
        ASSERT_OK(s->vt->encode_value(s->inst, ref, &out, err, sizeof(err)));
        bad += !same_bytes("value", name, fmt, &out, want, len);
        ksock_buf_free(&out);
        ksock_value_unref(got);
        free(want);
    }
    ksock_value_unref(ref);
    return bad;
}

TEST(values_decode_and_encode_exactly)
{
    vectors_t v = vectors_open();
    size_t n = entry_count(&v, "values");
    int bad = 0;
    ASSERT_GE(n, 40);
    for (size_t i = 0; i < n; i++) {
        const char *name;
        const ksock_cfg_t *formats = entry(&v, "values", i, &name);
        bad += check_value(&v, name, formats);
    }
    printf("# %zu value vectors checked\n", n);
    ASSERT_EQ(bad, 0);
    vectors_close(&v);
    ST_LEAK_CHECK();
}

/* decode in A, encode in B, compare with B's bytes. */
static int convert_value(vectors_t *v, const char *name, const char *a, const char *b)
{
    ksock_value_t *val = decode_value_vector(v, name, a);
    st_ser_t *sb = &v->ser[format_index(b)];
    size_t len;
    unsigned char *want = st_vector_bytes("values", name, b, &len);
    ksock_buf_t out = KSOCK_BUF_INIT;
    char err[256];
    ASSERT_OK(sb->vt->encode_value(sb->inst, val, &out, err, sizeof(err)));
    char what[64];
    snprintf(what, sizeof(what), "value from %s", a);
    int ok = same_bytes(what, name, b, &out, want, len);
    ksock_buf_free(&out);
    free(want);
    ksock_value_unref(val);
    return !ok;
}

TEST(values_convert_between_formats)
{
    vectors_t v = vectors_open();
    int bad = 0, pairs = 0;
    for (size_t i = 0; i < entry_count(&v, "values"); i++) {
        const char *name;
        const ksock_cfg_t *formats = entry(&v, "values", i, &name);
        for (size_t a = 0; a < ksock_cfg_count(formats); a++)
            for (size_t b = 0; b < ksock_cfg_count(formats); b++) {
                if (a == b) continue;
                bad += convert_value(&v, name, ksock_cfg_string(ksock_cfg_at(formats, a, NULL)),
                                     ksock_cfg_string(ksock_cfg_at(formats, b, NULL)));
                pairs++;
            }
    }
    printf("# %d conversions checked\n", pairs);
    ASSERT_EQ(bad, 0);
    vectors_close(&v);
    ST_LEAK_CHECK();
}

/* ---- Envelopes -------------------------------------------------------------------------- */

/* Decode vector bytes into `env` (arena kept in env; `bytes` must outlive it). */
static unsigned char *decode_envelope_vector(vectors_t *v, const char *name, const char *fmt,
                                             ksock_envelope_t *env)
{
    size_t len;
    unsigned char *bytes = st_vector_bytes("envelopes", name, fmt, &len);
    if (bytes == NULL) TEST_FAIL_("missing envelopes/%s in %s", name, fmt);
    st_ser_t *s = &v->ser[format_index(fmt)];
    char err[512] = "";
    ksock_envelope_init(env);
    int rc = s->vt->decode_envelope(s->inst, bytes, len, &s->lim, env, err, sizeof(err));
    if (rc != 0) TEST_FAIL_("envelope %s in %s: %s", name, fmt, err);
    return bytes;
}

static int encode_matches(vectors_t *v, const char *name, const char *what, const char *fmt,
                          const ksock_envelope_t *env)
{
    st_ser_t *s = &v->ser[format_index(fmt)];
    size_t len;
    unsigned char *want = st_vector_bytes("envelopes", name, fmt, &len);
    ksock_buf_t out = KSOCK_BUF_INIT;
    char err[512] = "";
    int rc = s->vt->encode_envelope(s->inst, env, &out, err, sizeof(err));
    if (rc != 0) TEST_FAIL_("encode %s in %s: %s", name, fmt, err);
    int ok = same_bytes(what, name, fmt, &out, want, len);
    ksock_buf_free(&out);
    free(want);
    return ok;
}

static int check_envelope(vectors_t *v, const char *name, const ksock_cfg_t *formats)
{
    int bad = 0;
    ksock_envelope_t ref, got;
    const char *ref_fmt = ksock_cfg_string(ksock_cfg_at(formats, 0, NULL));
    unsigned char *ref_bytes = decode_envelope_vector(v, name, ref_fmt, &ref);
    for (size_t i = 0; i < ksock_cfg_count(formats); i++) {
        const char *fmt = ksock_cfg_string(ksock_cfg_at(formats, i, NULL));
        unsigned char *bytes = decode_envelope_vector(v, name, fmt, &got);
        if (!ksock_envelope_equal(&ref, &got)) {
            fprintf(stderr, "# envelope %s: %s decodes differently from %s\n", name, fmt, ref_fmt);
            bad++;
        }
        /* Encode both the reference and this format's own decoding. */
        bad += !encode_matches(v, name, "envelope", fmt, &ref);
        bad += !encode_matches(v, name, "re-encoded envelope", fmt, &got);
        ksock_envelope_clear(&got);
        free(bytes);
    }
    ksock_envelope_clear(&ref);
    free(ref_bytes);
    return bad;
}

TEST(envelopes_decode_and_encode_exactly)
{
    vectors_t v = vectors_open();
    size_t n = entry_count(&v, "envelopes");
    int bad = 0;
    ASSERT_GE(n, 20);
    for (size_t i = 0; i < n; i++) {
        const char *name;
        const ksock_cfg_t *formats = entry(&v, "envelopes", i, &name);
        bad += check_envelope(&v, name, formats);
    }
    printf("# %zu envelope vectors checked\n", n);
    ASSERT_EQ(bad, 0);
    vectors_close(&v);
    ST_LEAK_CHECK();
}

TEST(envelopes_convert_between_formats)
{
    vectors_t v = vectors_open();
    int bad = 0, pairs = 0;
    for (size_t i = 0; i < entry_count(&v, "envelopes"); i++) {
        const char *name;
        const ksock_cfg_t *formats = entry(&v, "envelopes", i, &name);
        for (size_t a = 0; a < ksock_cfg_count(formats); a++) {
            ksock_envelope_t env;
            const char *fa = ksock_cfg_string(ksock_cfg_at(formats, a, NULL));
            unsigned char *bytes = decode_envelope_vector(&v, name, fa, &env);
            for (size_t b = 0; b < ksock_cfg_count(formats); b++) {
                if (a == b) continue;
                char what[64];
                snprintf(what, sizeof(what), "envelope from %s", fa);
                bad += !encode_matches(&v, name, what,
                                       ksock_cfg_string(ksock_cfg_at(formats, b, NULL)), &env);
                pairs++;
            }
            ksock_envelope_clear(&env);
            free(bytes);
        }
    }
    printf("# %d conversions checked\n", pairs);
    ASSERT_EQ(bad, 0);
    vectors_close(&v);
    ST_LEAK_CHECK();
}

/* The serialization API (spec II) over the same vectors: deserialize, serialize, same bytes. */
TEST(values_through_the_serde_api)
{
    vectors_t v = vectors_open();
    const ksock_serde_strategy_t *strat[ST_NFORMATS];
    char err[512];
    for (int f = 0; f < ST_NFORMATS; f++)
        ASSERT_OK(ksock_serde_strategy_from_plugin(v.rt, st_formats[f], NULL, &strat[f], err,
                                                   sizeof(err)));
    int bad = 0;
    for (size_t i = 0; i < entry_count(&v, "values"); i++) {
        const char *name;
        const ksock_cfg_t *formats = entry(&v, "values", i, &name);
        for (size_t k = 0; k < ksock_cfg_count(formats); k++) {
            const char *fmt = ksock_cfg_string(ksock_cfg_at(formats, k, NULL));
            int f = format_index(fmt);
            size_t len;
            unsigned char *want = st_vector_bytes("values", name, fmt, &len);
            ksock_value_t *val = NULL;
            ASSERT_OK(ksock_serde_deserialize(v.rt, want, len, strat[f], &val, err, sizeof(err)));
            ksock_buf_t out = KSOCK_BUF_INIT;
            ksock_frame_type_t type = 0;
            ASSERT_OK(ksock_serde_serialize(v.rt, val, strat[f], &out, &type, err, sizeof(err)));
            ASSERT_EQ(type, f == 0 ? KSOCK_FRAME_TEXT : KSOCK_FRAME_BINARY);
            bad += !same_bytes("serde api", name, fmt, &out, want, len);
            ksock_buf_free(&out);
            ksock_value_unref(val);
            free(want);
        }
    }
    ASSERT_EQ(bad, 0);
    vectors_close(&v);
    ST_LEAK_CHECK();
}

/* ---- Bad envelopes ------------------------------------------------------------------- */

/* A message a reply or a log line can carry as is: valid UTF-8, no C0, DEL or C1 control. */
static int printable_text(const char *m)
{
    if (!ksock_utf8_check(m, strlen(m), NULL)) return 0;
    for (const unsigned char *p = (const unsigned char *)m; *p; p++)
        if (*p < 0x20 || *p == 0x7f || (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)) return 0;
    return 1;
}

/* One bad frame in one format: the code, the id left for the reply, nothing else, a clean text. */
static int check_bad(vectors_t *v, const char *name, const char *fmt, int code, const char *id)
{
    size_t len;
    unsigned char *bytes = st_vector_bytes("bad", name, fmt, &len);
    if (bytes == NULL) TEST_FAIL_("missing bad/%s in %s", name, fmt);
    st_ser_t *s = &v->ser[format_index(fmt)];
    ksock_envelope_t env;
    char err[512] = "";
    ksock_envelope_init(&env);
    int rc = s->vt->decode_envelope(s->inst, bytes, len, &s->lim, &env, err, sizeof(err));
    int ok = 1;
    if (rc != code) {
        fprintf(stderr, "# bad %s in %s: want %s, got %s (%s)\n", name, fmt, ksock_err_name(code),
                ksock_err_name(rc), err);
        ok = 0;
    }
    if (id ? (env.id == NULL || env.id_len != strlen(id) || memcmp(env.id, id, env.id_len) != 0)
           : env.id != NULL) {
        fprintf(stderr, "# bad %s in %s: want id %s, got %s%.*s\n", name, fmt, id ? id : "none",
                env.id ? "" : "none", env.id ? (int)env.id_len : 0, env.id ? env.id : "");
        ok = 0;
    }
    if (env.op != KSOCK_OP_NONE || env.topic != NULL || env.partition != -1 || env.nheaders) {
        fprintf(stderr, "# bad %s in %s: fields other than id left set\n", name, fmt);
        ok = 0;
    }
    if (strncmp(err, fmt, strlen(fmt)) != 0 || !printable_text(err)) {
        fprintf(stderr, "# bad %s in %s: message not \"%s: \" and printable UTF-8\n", name, fmt,
                fmt);
        st_dump("message", err, strlen(err));
        ok = 0;
    }
    printf("# %s %s: %s\n", fmt, name, printable_text(err) ? err : "(not printable)");
    ksock_envelope_clear(&env);
    free(bytes);
    return ok;
}

/*
 * Every bad envelope of the manifest, in every format it lists: the code of
 * docs/protocol.md section 6 (the same in every format), the id the error
 * reply echoes, and a message safe to send and log.
 */
TEST(bad_envelopes_fail_alike_in_every_format)
{
    vectors_t v = vectors_open();
    size_t n = entry_count(&v, "bad_envelopes");
    int bad = 0, tried = 0, proto = 0;
    ASSERT_GE(n, 30);
    for (size_t i = 0; i < n; i++) {
        const char *name;
        const ksock_cfg_t *formats = entry(&v, "bad_envelopes", i, &name);
        const ksock_cfg_t *e =
            ksock_cfg_at(ksock_cfg_get(ksock_config_root(v.manifest), "bad_envelopes"), i, NULL);
        int code = (int)ksock_cfg_int(ksock_cfg_get(e, "code"));
        const char *id = ksock_cfg_string(ksock_cfg_get(e, "id"));
        ASSERT(code == KSOCK_E_DECODE || code == KSOCK_E_PROTO);
        ASSERT_STR_EQ(ksock_cfg_string(ksock_cfg_get(e, "code_name")), ksock_err_name(code));
        proto += code == KSOCK_E_PROTO;
        for (size_t k = 0; k < ksock_cfg_count(formats); k++, tried++)
            bad += !check_bad(&v, name, ksock_cfg_string(ksock_cfg_at(formats, k, NULL)), code, id);
    }
    printf("# %d bad frames checked, %d of the cases protocol errors\n", tried, proto);
    ASSERT_EQ(bad, 0);
    ASSERT_GE(proto, 10);
    vectors_close(&v);
    ST_LEAK_CHECK();
}

/* The generator and the checked-in files agree (no hand-edited or stale vector). */
TEST(vector_files_are_generated)
{
    const char *root = getenv("KSOCK_SOURCE_ROOT");
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "python3 '%s/tests/vectors/gen_vectors.py' --check >&2",
             root ? root : ".");
    if (system("command -v python3 >/dev/null 2>&1") != 0)
        TEST_SKIP("no python3 to run gen_vectors.py");
    ASSERT_EQ(system(cmd), 0);
}

TEST_LIST(TEST_ENTRY(values_decode_and_encode_exactly), TEST_ENTRY(values_convert_between_formats),
          TEST_ENTRY(envelopes_decode_and_encode_exactly),
          TEST_ENTRY(envelopes_convert_between_formats), TEST_ENTRY(values_through_the_serde_api),
          TEST_ENTRY(bad_envelopes_fail_alike_in_every_format),
          TEST_ENTRY(vector_files_are_generated))
