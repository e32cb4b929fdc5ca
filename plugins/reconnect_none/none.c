/*
 * reconnect policy "none": never come back. The connection reports its
 * close to the application as it happened; nothing is retried.
 */
#include <ksock/reconnect.h>

#include <stdlib.h>

static int none_create(const ksock_plugin_ctx_t *ctx, const void *options, void **inst,
                       char *errstr, size_t errstr_size)
{
    (void)ctx;
    (void)options;
    (void)errstr;
    (void)errstr_size;
    *inst = NULL; /* stateless */
    return 0;
}

static void none_destroy(void *inst)
{
    (void)inst;
}

static int64_t none_next_delay(void *inst, const ksock_disconnect_info_t *info, char *why,
                               size_t why_size)
{
    (void)inst;
    (void)info;
    /* Nothing to add: an empty why reports the close as it happened. */
    if (why && why_size) why[0] = '\0';
    return KSOCK_RECONNECT_GIVE_UP;
}

static uint64_t none_stable_after_ms(void *inst)
{
    (void)inst;
    return 0;
}

static const ksock_reconnect_vtable_t none_vtable = {
    .size = sizeof(ksock_reconnect_vtable_t),
    .create = none_create,
    .destroy = none_destroy,
    .next_delay = none_next_delay,
    .stable_after_ms = none_stable_after_ms,
};

static const ksock_plugin_desc_t none_desc = {
    KSOCK_PLUGIN_HEADER(KSOCK_PLUGIN_RECONNECT),
    .name = "none",
    .version = "0.1.0",
    .description = "Never reconnect",
    .options = NULL,
    .options_struct_size = 0,
    .vtable = &none_vtable,
};

KSOCK_PLUGIN_DEFINE(reconnect_none, none_desc)
