/*
 * A transport as built against the ABI 1.0 headers: abi_minor 0 and a
 * vtable that ends at stop() (1.1 appended pause_read). The loader must
 * accept it, and a host must see that pause_read is not there
 * (KSOCK_HAS_FIELD). Built into tests/abi/transport_v10.so.
 */
#include <ksock/transport.h>

#include <stddef.h>
#include <stdlib.h>

static int v10_create(const ksock_plugin_ctx_t *ctx, const void *options, void **inst, char *errstr,
                      size_t errstr_size)
{
    (void)ctx;
    (void)options;
    (void)errstr;
    (void)errstr_size;
    *inst = malloc(1);
    return *inst ? 0 : KSOCK_E_NOMEM;
}

static void v10_destroy(void *inst)
{
    free(inst);
}

static int v10_send(void *inst, ksock_conn_id_t id, ksock_frame_t *frame)
{
    (void)inst;
    (void)id;
    (void)frame;
    return KSOCK_E_CLOSED;
}

static int v10_close(void *inst, ksock_conn_id_t id, int code, const char *reason)
{
    (void)inst;
    (void)id;
    (void)code;
    (void)reason;
    return KSOCK_E_CLOSED;
}

static int v10_listen(void *inst, const ksock_transport_events_t *ev, char *errstr,
                      size_t errstr_size)
{
    (void)inst;
    (void)ev;
    (void)errstr;
    (void)errstr_size;
    return 0;
}

static void v10_stop(void *inst)
{
    (void)inst;
}

static const ksock_transport_vtable_t v10_vtable = {
    .size = offsetof(ksock_transport_vtable_t, pause_read), /* the 1.0 vtable's end */
    .create = v10_create,
    .destroy = v10_destroy,
    .listen = v10_listen,
    .send = v10_send,
    .close = v10_close,
    .stop = v10_stop,
};

static const ksock_plugin_desc_t v10_desc = {
    .magic = KSOCK_PLUGIN_MAGIC,
    .abi_major = 1,
    .abi_minor = 0,
    .struct_size = (uint32_t)sizeof(ksock_plugin_desc_t),
    .kind = KSOCK_PLUGIN_TRANSPORT,
    .option_size = (uint32_t)sizeof(ksock_option_t),
    .name = "v10",
    .version = "1.0.0",
    .description = "ABI test fixture: a transport built for ABI 1.0",
    .vtable = &v10_vtable,
};

KSOCK_PLUGIN_DEFINE(transport_v10, v10_desc)
