/*
 * serializer_msgpack: the "msgpack" serializer plugin (subprotocol
 * ksock.v1.msgpack, binary frames). Values map onto MessagePack types one
 * to one; envelopes are maps keyed by the JSON member names
 * (docs/protocol.md section 4). No options.
 */
#include "mp_internal.h"

#include <stdlib.h>

/* No per-instance state: create returns a dummy non-NULL pointer. */
static int mp_create(const ksock_plugin_ctx_t *ctx, const void *options, void **inst, char *errstr,
                     size_t errstr_size)
{
    static int instance_tag;
    *inst = &instance_tag;
    return 0;
}

static void mp_destroy(void *inst) {}

static ksock_frame_type_t mp_frame_type(void *inst)
{
    return KSOCK_FRAME_BINARY;
}

static int mp_vt_encode_value(void *inst, const ksock_value_t *v, ksock_buf_t *out, char *errstr,
                              size_t errstr_size)
{
    return mp_encode_value(v, out, errstr, errstr_size);
}

static int mp_vt_decode_value(void *inst, const void *data, size_t len,
                              const ksock_value_limits_t *lim, ksock_value_t **out, char *errstr,
                              size_t errstr_size)
{
    return mp_decode_value(data, len, ksock_value_limits_or_default(lim), out, errstr, errstr_size);
}

static int mp_vt_encode_envelope(void *inst, const ksock_envelope_t *env, ksock_buf_t *out,
                                 char *errstr, size_t errstr_size)
{
    return mp_encode_envelope(env, out, errstr, errstr_size);
}

static int mp_vt_decode_envelope(void *inst, const void *data, size_t len,
                                 const ksock_value_limits_t *lim, ksock_envelope_t *env,
                                 char *errstr, size_t errstr_size)
{
    return mp_decode_envelope(data, len, ksock_value_limits_or_default(lim), env, errstr,
                              errstr_size);
}

static const ksock_serializer_vtable_t mp_vtable = {
    .size = sizeof(ksock_serializer_vtable_t),
    .create = mp_create,
    .destroy = mp_destroy,
    .frame_type = mp_frame_type,
    .encode_value = mp_vt_encode_value,
    .decode_value = mp_vt_decode_value,
    .encode_envelope = mp_vt_encode_envelope,
    .decode_envelope = mp_vt_decode_envelope,
};

static const ksock_plugin_desc_t mp_desc = {
    KSOCK_PLUGIN_HEADER(KSOCK_PLUGIN_SERIALIZER),
    .name = "msgpack",
    .version = "1.0.0",
    .description = "MessagePack (msgpack-c): subprotocol ksock.v1.msgpack, binary frames",
    .options = NULL, /* no options */
    .vtable = &mp_vtable,
};

KSOCK_PLUGIN_DEFINE(serializer_msgpack, mp_desc)
