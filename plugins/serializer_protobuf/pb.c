/*
 * serializer_protobuf: the "protobuf" serializer plugin (subprotocol
 * ksock.v1.protobuf, binary frames), speaking ksock.proto
 * (docs/protocol.md section 5).
 */
#include "pb_internal.h"

#include <stdlib.h>

static const char *const unknown_values[] = {"error", "ignore", NULL};

static const ksock_option_t pb_options[] = {
    KSOCK_OPTION_ENUM("unknown_fields", 0, "error", pb_opts_t, unknown_fields, unknown_values,
                      "What a decoder does with a field number ksock.proto does not define: "
                      "\"error\" (v1 is strict) or \"ignore\" (skip it, protobuf's usual rule)"),
    KSOCK_OPTION_END,
};

static int pb_create(const ksock_plugin_ctx_t *ctx, const void *options, void **inst, char *errstr,
                     size_t errstr_size)
{
    const pb_opts_t *o = options;
    pb_inst_t *in = calloc(1, sizeof(*in));
    if (in == NULL) return KSOCK_E_NOMEM;
    in->ignore_unknown = o && o->unknown_fields == PB_UNKNOWN_IGNORE;
    *inst = in;
    return 0;
}

static void pb_destroy(void *inst)
{
    free(inst);
}

static ksock_frame_type_t pb_frame_type(void *inst)
{
    return KSOCK_FRAME_BINARY;
}

static int pb_vt_encode_value(void *inst, const ksock_value_t *v, ksock_buf_t *out, char *errstr,
                              size_t errstr_size)
{
    return pb_encode_value(v, out, errstr, errstr_size);
}

static int pb_vt_decode_value(void *inst, const void *data, size_t len,
                              const ksock_value_limits_t *lim, ksock_value_t **out, char *errstr,
                              size_t errstr_size)
{
    const pb_inst_t *in = inst;
    return pb_decode_value(data, len, ksock_value_limits_or_default(lim), in->ignore_unknown, out,
                           errstr, errstr_size);
}

static int pb_vt_encode_envelope(void *inst, const ksock_envelope_t *env, ksock_buf_t *out,
                                 char *errstr, size_t errstr_size)
{
    return pb_encode_envelope(env, out, errstr, errstr_size);
}

static int pb_vt_decode_envelope(void *inst, const void *data, size_t len,
                                 const ksock_value_limits_t *lim, ksock_envelope_t *env,
                                 char *errstr, size_t errstr_size)
{
    const pb_inst_t *in = inst;
    return pb_decode_envelope(data, len, ksock_value_limits_or_default(lim), in->ignore_unknown,
                              env, errstr, errstr_size);
}

static const ksock_serializer_vtable_t pb_vtable = {
    .size = sizeof(ksock_serializer_vtable_t),
    .create = pb_create,
    .destroy = pb_destroy,
    .frame_type = pb_frame_type,
    .encode_value = pb_vt_encode_value,
    .decode_value = pb_vt_decode_value,
    .encode_envelope = pb_vt_encode_envelope,
    .decode_envelope = pb_vt_decode_envelope,
};

static const ksock_plugin_desc_t pb_desc = {
    KSOCK_PLUGIN_HEADER(KSOCK_PLUGIN_SERIALIZER),
    .name = "protobuf",
    .version = "1.0.0",
    .description = "Protocol Buffers (ksock.proto, protobuf-c descriptors): subprotocol "
                   "ksock.v1.protobuf, binary frames",
    .options = pb_options,
    .options_struct_size = sizeof(pb_opts_t),
    .vtable = &pb_vtable,
};

KSOCK_PLUGIN_DEFINE(serializer_protobuf, pb_desc)
