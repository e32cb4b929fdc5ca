/*
 * The plugin ABI that libksock's own exports do not reach: the vtables a
 * plugin fills in and the structs handed across the boundary. This object
 * exports one function whose parameters name every such type, so abidw
 * records their layout in tests/abi/baseline/plugin-surface.abi and
 * tools/abi-check sees a change to any of them. Never installed, never called.
 */
#include <ksock/ksock.h>

__attribute__((visibility("default"))) void
ksock_abi_surface(const ksock_plugin_desc_t *desc, const ksock_plugin_ctx_t *ctx,
                  const ksock_option_t *option, const ksock_transport_vtable_t *transport,
                  const ksock_transport_events_t *events, const ksock_connect_opts_t *connect,
                  const ksock_serializer_vtable_t *serializer, const ksock_decode_err_t *decode_err,
                  const ksock_reconnect_vtable_t *reconnect, const ksock_auth_vtable_t *auth,
                  const ksock_handshake_t *handshake, const ksock_logsink_vtable_t *logsink,
                  const ksock_log_record_t *record, const ksock_bridge_stats_t *bridge_stats,
                  const ksock_kafka_record_t *kafka_record);

void ksock_abi_surface(const ksock_plugin_desc_t *desc, const ksock_plugin_ctx_t *ctx,
                       const ksock_option_t *option, const ksock_transport_vtable_t *transport,
                       const ksock_transport_events_t *events, const ksock_connect_opts_t *connect,
                       const ksock_serializer_vtable_t *serializer,
                       const ksock_decode_err_t *decode_err,
                       const ksock_reconnect_vtable_t *reconnect, const ksock_auth_vtable_t *auth,
                       const ksock_handshake_t *handshake, const ksock_logsink_vtable_t *logsink,
                       const ksock_log_record_t *record, const ksock_bridge_stats_t *bridge_stats,
                       const ksock_kafka_record_t *kafka_record)
{
    (void)desc, (void)ctx, (void)option, (void)transport, (void)events, (void)connect;
    (void)serializer, (void)decode_err, (void)reconnect, (void)auth, (void)handshake;
    (void)logsink, (void)record, (void)bridge_stats, (void)kafka_record;
}
