/*
 * libFuzzer target for one serializer decoder, built once per format and
 * kind (tests/fuzz/meson.build):
 *
 *   FUZZ_FORMAT   json | msgpack | protobuf   (the plugin, linked in with
 *                 KSOCK_PLUGIN_BUILTIN)
 *   FUZZ_ENVELOPE 0: decode_value, 1: decode_envelope
 *
 * Beyond "no crash, no leak, no UB", every input that decodes must survive
 * a round trip: encode what was decoded, decode that again, and get the
 * same value or envelope. A difference is a bug, so the target aborts.
 */
#include <ksock/serializer.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAT_(a, b) a##b
#define CAT(a, b)  CAT_(a, b)
#define ENTRY      CAT(ksock_builtin_serializer_, FUZZ_FORMAT)

const ksock_plugin_desc_t *ENTRY(void);
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static const ksock_serializer_vtable_t *vt;
static void *inst;
static ksock_value_limits_t lim;

/*
 * Options: zeroed except, for json, json_topics = ["*"] so that value_json
 * embedding is exercised on every topic. The layout is serializer_json's
 * json_opts_t: two ksock_strlist_t, json_topics first.
 */
static unsigned char options[256];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static char star[] = "*";
    static char *list[] = {star};
    const ksock_plugin_desc_t *d = ENTRY();
    vt = d->vtable;
    if (d->options_struct_size > sizeof(options)) abort();
    if (strcmp(d->name, "json") == 0) {
        ksock_strlist_t topics = {1, list};
        memcpy(options, &topics, sizeof(topics));
    }
    ksock_plugin_ctx_t ctx = {sizeof(ctx), NULL, "fuzz", "fuzz", NULL};
    char err[256];
    if (vt->create(&ctx, options, &inst, err, sizeof(err)) != 0) {
        fprintf(stderr, "create: %s\n", err);
        abort();
    }
    ksock_value_limits_default(&lim);
    return 0;
}

static void fail(const char *what, const char *err)
{
    fprintf(stderr, "round trip: %s: %s\n", what, err);
    abort();
}

/* A decoder's message goes into replies and log lines as is: printable UTF-8 only. */
static void check_message(const char *err)
{
    size_t n = strlen(err);
    if (!ksock_utf8_check(err, n, NULL)) fail("error message is not UTF-8", "");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)err[i];
        if (c < 0x20 || c == 0x7f || (c == 0xc2 && (unsigned char)err[i + 1] <= 0x9f))
            fail("control character in the error message", "");
    }
}

#if !FUZZ_ENVELOPE
static void value_round_trip(const ksock_value_t *v)
{
    ksock_buf_t out = KSOCK_BUF_INIT;
    char err[512];
    ksock_value_t *again = NULL;
    if (vt->encode_value(inst, v, &out, err, sizeof(err)) != 0) fail("encode", err);
    if (vt->decode_value(inst, out.data, out.len, &lim, &again, err, sizeof(err)) != 0)
        fail("decode of our own encoding", err);
    if (!ksock_value_equal(v, again)) fail("value changed", "");
    ksock_value_unref(again);
    ksock_buf_free(&out);
}

#else
static void envelope_round_trip(const ksock_envelope_t *env)
{
    ksock_buf_t out = KSOCK_BUF_INIT;
    char err[512];
    ksock_envelope_t again;
    ksock_envelope_init(&again);
    if (vt->encode_envelope(inst, env, &out, err, sizeof(err)) != 0) fail("encode", err);
    if (vt->decode_envelope(inst, out.data, out.len, &lim, &again, err, sizeof(err)) != 0)
        fail("decode of our own encoding", err);
    if (!ksock_envelope_equal(env, &again)) fail("envelope changed", "");
    ksock_envelope_clear(&again);
    ksock_buf_free(&out);
}

#endif

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    char err[512] = "";
#if FUZZ_ENVELOPE
    ksock_envelope_t env;
    ksock_envelope_init(&env);
    if (vt->decode_envelope(inst, data, size, &lim, &env, err, sizeof(err)) == 0) {
        envelope_round_trip(&env);
    } else {
        /* serializer.h: a failed decode leaves a valid id at most, nothing else */
        check_message(err);
        if (env.id != NULL && !ksock_utf8_check(env.id, env.id_len, NULL))
            fail("a failed decode left an id that is not UTF-8", err);
        if (env.op != KSOCK_OP_NONE || env.topic != NULL || env.nheaders || env.noffsets ||
            env.key.present || env.value.present)
            fail("a failed decode left fields besides the id", err);
    }
    ksock_envelope_clear(&env);
#else
    ksock_value_t *v = NULL;
    if (vt->decode_value(inst, data, size, &lim, &v, err, sizeof(err)) == 0) {
        value_round_trip(v);
        ksock_value_unref(v);
    } else if (v != NULL) {
        fail("a failed decode returned a value", err);
    } else {
        check_message(err);
    }
#endif
    return 0;
}
