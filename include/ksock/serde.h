/*
 * The serialization API (spec II, DataSerializationManager).
 *
 * A strategy turns a value (value.h) into a WebSocket frame and back. The
 * runtime holds one global serialization strategy and one global
 * deserialization strategy; every serialize/deserialize call may pass its
 * own strategy instead (spec: "customStrategy"). A strategy is either
 * written by the caller (fill a ksock_serde_strategy_t with your own
 * functions) or provided by a serializer plugin, loaded by name through
 * the plugin loader ("json", "msgpack", "protobuf", or a third party's).
 *
 *   const ksock_serde_strategy_t *mp;
 *   ksock_serde_strategy_from_plugin(rt, "msgpack", NULL, &mp, err, sizeof err);
 *   ksock_serde_set_default_by_name(rt, "json", err, sizeof err);
 *   ksock_buf_t frame = KSOCK_BUF_INIT;
 *   ksock_frame_type_t type;
 *   ksock_serde_serialize(rt, msg, NULL, &frame, &type, err, sizeof err); // global: json, text
 *   ksock_serde_serialize(rt, msg, mp, &frame, &type, err, sizeof err);   // per call: msgpack
 *   ksock_buf_free(&frame);
 *
 * Threads: the setters and ksock_serde_strategy_from_plugin() run on the
 * loop thread, and not while another thread is inside serialize or
 * deserialize. ksock_serde_serialize()/_deserialize() may be called from
 * any thread (the plugin strategies keep no mutable state).
 */
#ifndef KSOCK_SERDE_H
#define KSOCK_SERDE_H

#include <ksock/serializer.h>
#include <ksock/value.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Serialize `msg` by appending to `out` (caller-owned; on failure `out`
 * may hold a partial frame past its original length, which the caller
 * discards). Returns 0 or a KSOCK_E_* code with errstr filled.
 */
typedef int (*ksock_serde_encode_fn)(void *data, const ksock_value_t *msg, ksock_buf_t *out,
                                     char *errstr, size_t errstr_size);
/*
 * Deserialize `len` bytes (borrowed for the call). On success *out holds
 * one reference for the caller. Returns 0 or a KSOCK_E_* code with errstr
 * filled (and *out untouched).
 */
typedef int (*ksock_serde_decode_fn)(void *data, const void *buf, size_t len, ksock_value_t **out,
                                     char *errstr, size_t errstr_size);

/*
 * A serialization and/or deserialization strategy (spec
 * SerializationStrategy / DeserializationStrategy in one struct). A
 * strategy used only for serializing may leave `decode` NULL, and the
 * other way round. The struct grows only at the end; set `size` to
 * sizeof(ksock_serde_strategy_t).
 */
typedef struct ksock_serde_strategy_s {
    size_t size;                   /* sizeof(ksock_serde_strategy_t) */
    const char *name;              /* for messages; may be NULL */
    ksock_frame_type_t frame_type; /* what serialize reports: text or binary */
    ksock_serde_encode_fn encode;
    ksock_serde_decode_fn decode;
    void *data; /* passed to encode/decode; owned by whoever made the strategy */
} ksock_serde_strategy_t;

/*
 * Set the global serialization (spec setSerializationStrategy) or
 * deserialization (setDeserializationStrategy) strategy. The struct is
 * copied; strings and `data` are borrowed and must stay valid until the
 * strategy is replaced or the runtime is destroyed. NULL clears it.
 * Errors: KSOCK_E_INVAL (size too small, or the needed function is NULL).
 */
KSOCK_EXTERN int ksock_serde_set_serialization_strategy(ksock_runtime_t *rt,
                                                        const ksock_serde_strategy_t *s);
KSOCK_EXTERN int ksock_serde_set_deserialization_strategy(ksock_runtime_t *rt,
                                                          const ksock_serde_strategy_t *s);

/*
 * The strategy of the serializer plugin `name`, loaded through the plugin
 * loader (ksock_plugin_find) with the options in `options_json` (a JSON
 * object as text, e.g. "{\"unknown_fields\":\"ignore\"}", or NULL for the
 * defaults). The runtime owns the plugin instance and the returned strategy
 * (*out is borrowed until ksock_runtime_destroy()); calling again with the
 * same name and options returns the same strategy. Plugin strategies decode
 * with the runtime's limits (ksock_serde_set_limits).
 * Errors: KSOCK_E_NOENT (no such plugin; errstr lists where it looked),
 * KSOCK_E_PLUGIN/KSOCK_E_ABI (refused), KSOCK_E_CONFIG (bad options).
 */
KSOCK_EXTERN int ksock_serde_strategy_from_plugin(ksock_runtime_t *rt, const char *name,
                                                  const char *options_json,
                                                  const ksock_serde_strategy_t **out, char *errstr,
                                                  size_t errstr_size);

/*
 * Make the serializer plugin `name` (default options) both the global
 * serialization and deserialization strategy. Errors as above; on error
 * the previous strategies stay in place.
 */
KSOCK_EXTERN int ksock_serde_set_default_by_name(ksock_runtime_t *rt, const char *name,
                                                 char *errstr, size_t errstr_size);

/*
 * Limits that plugin strategies apply when deserializing (defaults:
 * ksock_value_limits_default). Copied. Errors: KSOCK_E_INVAL.
 */
KSOCK_EXTERN int ksock_serde_set_limits(ksock_runtime_t *rt, const ksock_value_limits_t *lim);
KSOCK_EXTERN void ksock_serde_get_limits(ksock_runtime_t *rt, ksock_value_limits_t *out);

/*
 * Serialize `msg` (spec serializeMessage) with `custom`, or with the global
 * serialization strategy when `custom` is NULL. Appends the frame to `out`
 * (caller-owned: free with ksock_buf_free()) and stores its frame type in
 * *type (may be NULL). `msg` is borrowed for the call.
 * Errors: KSOCK_E_STATE (no strategy set), KSOCK_E_INVAL, or the
 * strategy's code (KSOCK_E_ENCODE, KSOCK_E_LIMIT, KSOCK_E_NOMEM) with errstr.
 * On failure `out` keeps its original length.
 */
KSOCK_EXTERN int ksock_serde_serialize(ksock_runtime_t *rt, const ksock_value_t *msg,
                                       const ksock_serde_strategy_t *custom, ksock_buf_t *out,
                                       ksock_frame_type_t *type, char *errstr, size_t errstr_size);

/*
 * Deserialize `len` bytes at `data` (spec deserializeMessage; borrowed for
 * the call) with `custom`, or the global deserialization strategy. On
 * success *out holds one reference for the caller (ksock_value_unref).
 * Errors: KSOCK_E_STATE, KSOCK_E_INVAL, or the strategy's code
 * (KSOCK_E_DECODE, KSOCK_E_LIMIT with the byte offset in errstr).
 */
KSOCK_EXTERN int ksock_serde_deserialize(ksock_runtime_t *rt, const void *data, size_t len,
                                         const ksock_serde_strategy_t *custom, ksock_value_t **out,
                                         char *errstr, size_t errstr_size);

#ifdef __cplusplus
}
#endif
#endif
