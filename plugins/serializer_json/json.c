/*
 * serializer_json: the "json" serializer plugin (subprotocol ksock.v1.json,
 * text frames). Values and envelopes as described in
 * docs/serialization.md and docs/protocol.md section 3.
 */
#include "json_internal.h"

#include <stdlib.h>

static const ksock_option_t json_options[] = {
    KSOCK_OPTION("json_topics", KSOCK_OPT_LIST, 0, NULL, json_opts_t, json_topics,
                 "Topics whose record values are embedded as JSON (value_json) when they parse; "
                 "\"name\", \"prefix*\" or \"*\""),
    KSOCK_OPTION("json_key_topics", KSOCK_OPT_LIST, 0, NULL, json_opts_t, json_key_topics,
                 "Topics whose record keys are embedded as JSON (key_json) when they parse"),
    KSOCK_OPTION_END,
};

static int json_create(const ksock_plugin_ctx_t *ctx, const void *options, void **inst,
                       char *errstr, size_t errstr_size)
{
    json_inst_t *in = calloc(1, sizeof(*in));
    if (in == NULL) return KSOCK_E_NOMEM;
    in->opts = options;
    *inst = in;
    return 0;
}

static void json_destroy(void *inst)
{
    free(inst);
}

static ksock_frame_type_t json_frame_type(void *inst)
{
    return KSOCK_FRAME_TEXT;
}

static int json_vt_encode_value(void *inst, const ksock_value_t *v, ksock_buf_t *out, char *errstr,
                                size_t errstr_size)
{
    size_t before = out->len;
    int rc = json_encode_value(v, out, errstr, errstr_size);
    if (rc != 0) {
        out->len = before;
        json_finish(out);
    }
    return rc;
}

static int json_vt_decode_value(void *inst, const void *data, size_t len,
                                const ksock_value_limits_t *lim, ksock_value_t **out, char *errstr,
                                size_t errstr_size)
{
    return json_decode_value(data, len, ksock_value_limits_or_default(lim), out, errstr,
                             errstr_size);
}

static int json_vt_encode_envelope(void *inst, const ksock_envelope_t *env, ksock_buf_t *out,
                                   char *errstr, size_t errstr_size)
{
    return json_encode_envelope(inst, env, out, errstr, errstr_size);
}

static int json_vt_decode_envelope(void *inst, const void *data, size_t len,
                                   const ksock_value_limits_t *lim, ksock_envelope_t *env,
                                   char *errstr, size_t errstr_size)
{
    return json_decode_envelope(data, len, ksock_value_limits_or_default(lim), env, errstr,
                                errstr_size);
}

static const ksock_serializer_vtable_t json_vtable = {
    .size = sizeof(ksock_serializer_vtable_t),
    .create = json_create,
    .destroy = json_destroy,
    .frame_type = json_frame_type,
    .encode_value = json_vt_encode_value,
    .decode_value = json_vt_decode_value,
    .encode_envelope = json_vt_encode_envelope,
    .decode_envelope = json_vt_decode_envelope,
};

static const ksock_plugin_desc_t json_desc = {
    KSOCK_PLUGIN_HEADER(KSOCK_PLUGIN_SERIALIZER),
    .name = "json",
    .version = "1.0.0",
    .description = "JSON (yajl): subprotocol ksock.v1.json, text frames",
    .options = json_options,
    .options_struct_size = sizeof(json_opts_t),
    .vtable = &json_vtable,
};

KSOCK_PLUGIN_DEFINE(serializer_json, json_desc)
