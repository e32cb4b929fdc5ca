/*
 * reconnect policy "backoff": exponential backoff with full jitter (the
 * default), or a fixed delay when exponential_backoff is false.
 *
 * Built into libksock, like the console log sink: it is the default policy
 * of the client API (spec III), whose ksock_reconnect_opts_t fields are this
 * policy's options. Every runtime registers it as the built-in reconnect
 * plugin "backoff", so configs, --describe-plugin and the loader see it as
 * any other plugin; core/ws/ws.c creates it from the typed struct
 * (ksock__backoff_opts_t) without going through JSON, and knows nothing of
 * any other policy's options.
 *
 *   base(n)  = exponential ? min(max_delay, retry_delay * 2^(n-1)) : retry_delay
 *   delay(n) = jitter ? uniform(0, base(n)) : base(n)
 *
 * Full jitter (AWS architecture blog, "Exponential Backoff And Jitter")
 * spreads a crowd of clients that lost the same server over the whole
 * window instead of having them return in waves. Closes that mean "do not
 * come back" (ksock_close_code_is_final: 1008, 4401, 4403) and refused
 * credentials (KSOCK_E_AUTH, KSOCK_E_FORBIDDEN) give up at once.
 *
 * The instance holds only its options and an RNG; the connection keeps the
 * attempt counter. Loop thread only.
 */
#include "../internal.h"

#include <ksock/reconnect.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

typedef ksock__backoff_opts_t backoff_opts_t;

static const ksock_option_t backoff_options[] = {
    KSOCK_OPTION_RANGE(
        "max_retries", KSOCK_OPT_INT, 0, "10", backoff_opts_t, max_retries, -1, 1000000000,
        "Attempts after a loss before giving up; -1: never give up, 0: never retry."),
    KSOCK_OPTION_RANGE("retry_delay", KSOCK_OPT_DURATION, 0, "1s", backoff_opts_t, retry_delay, 0,
                       86400000,
                       "Delay before the first retry (the fixed delay when "
                       "exponential_backoff is false)."),
    KSOCK_OPTION("exponential_backoff", KSOCK_OPT_BOOL, 0, "true", backoff_opts_t,
                 exponential_backoff, "Double the delay after every failed attempt."),
    KSOCK_OPTION_RANGE("max_delay", KSOCK_OPT_DURATION, 0, "30s", backoff_opts_t, max_delay, 0,
                       86400000, "Upper bound of the delay."),
    KSOCK_OPTION("jitter", KSOCK_OPT_BOOL, 0, "true", backoff_opts_t, jitter,
                 "Full jitter: wait a uniformly random time between 0 and the delay."),
    KSOCK_OPTION_RANGE("stable_after", KSOCK_OPT_DURATION, 0, "10s", backoff_opts_t, stable_after,
                       0, 86400000,
                       "A connection that stays up this long resets the attempt counter."),
    KSOCK_OPTION_END,
};

typedef struct backoff_s {
    backoff_opts_t o;
    uint64_t rng; /* xorshift64* state, never 0 */
} backoff_t;

static uint64_t rng_next(backoff_t *b)
{
    uint64_t x = b->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    b->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static int backoff_create(const ksock_plugin_ctx_t *ctx, const void *options, void **inst,
                          char *errstr, size_t errstr_size)
{
    (void)ctx;
    const backoff_opts_t *o = options;
    if (o->max_delay < o->retry_delay) {
        ksock_errstr_set(errstr, errstr_size, "max_delay (%lld ms) is below retry_delay (%lld ms)",
                         (long long)o->max_delay, (long long)o->retry_delay);
        return KSOCK_E_CONFIG;
    }
    backoff_t *b = calloc(1, sizeof(*b));
    if (b == NULL) return KSOCK_E_NOMEM;
    b->o = *o;
    if (getrandom(&b->rng, sizeof(b->rng), 0) != (ssize_t)sizeof(b->rng) || b->rng == 0)
        b->rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)b;
    *inst = b;
    return 0;
}

static void backoff_destroy(void *inst)
{
    free(inst);
}

static int64_t backoff_next_delay(void *inst, const ksock_disconnect_info_t *info, char *why,
                                  size_t why_size)
{
    backoff_t *b = inst;
    if (info->close_code && ksock_close_code_is_final(info->close_code)) {
        ksock_errstr_set(why, why_size, "close code %d is final%s%s", info->close_code,
                         info->reason ? ": " : "", info->reason ? info->reason : "");
        return KSOCK_RECONNECT_GIVE_UP;
    }
    if (info->err == KSOCK_E_AUTH || info->err == KSOCK_E_FORBIDDEN) {
        ksock_errstr_set(why, why_size, "%s%s%s", ksock_strerror(info->err),
                         info->reason ? ": " : "", info->reason ? info->reason : "");
        return KSOCK_RECONNECT_GIVE_UP;
    }
    if (b->o.max_retries >= 0 && (int64_t)info->attempt > b->o.max_retries) {
        ksock_errstr_set(why, why_size, "max_retries (%lld) reached", (long long)b->o.max_retries);
        return KSOCK_RECONNECT_GIVE_UP;
    }
    uint64_t base = (uint64_t)b->o.retry_delay;
    if (b->o.exponential_backoff) {
        uint32_t n = info->attempt ? info->attempt - 1 : 0;
        for (uint32_t i = 0; i < n && base > 0 && base < (uint64_t)b->o.max_delay; i++)
            base *= 2;
        if (base > (uint64_t)b->o.max_delay) base = (uint64_t)b->o.max_delay;
    }
    if (b->o.jitter && base > 0) base = rng_next(b) % (base + 1);
    return (int64_t)base;
}

static uint64_t backoff_stable_after_ms(void *inst)
{
    return (uint64_t)((backoff_t *)inst)->o.stable_after;
}

static const ksock_reconnect_vtable_t backoff_vtable = {
    .size = sizeof(ksock_reconnect_vtable_t),
    .create = backoff_create,
    .destroy = backoff_destroy,
    .next_delay = backoff_next_delay,
    .stable_after_ms = backoff_stable_after_ms,
};

static const ksock_plugin_desc_t backoff_desc = {
    KSOCK_PLUGIN_HEADER(KSOCK_PLUGIN_RECONNECT),
    .name = "backoff",
    .version = "0.1.0",
    .description = "Exponential backoff with full jitter (fixed delay when exponential is off)",
    .options = backoff_options,
    .options_struct_size = sizeof(backoff_opts_t),
    .vtable = &backoff_vtable,
};

const ksock_plugin_desc_t *ksock__backoff_entry(void)
{
    return &backoff_desc;
}
