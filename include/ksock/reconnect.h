/*
 * Reconnection-policy interface (spec III). Given the attempt number and
 * why the connection was lost, a policy answers with the next delay or
 * "give up". Plugins: reconnect_backoff (exponential with full jitter, the
 * default) and reconnect_none.
 *
 * The connection that uses a policy keeps the per-connection state (the
 * attempt counter, when it became stable); a policy instance is shared by
 * every connection configured with it and holds only its options and RNG.
 * Loop thread only.
 */
#ifndef KSOCK_RECONNECT_H
#define KSOCK_RECONNECT_H

#include <ksock/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KSOCK_RECONNECT_GIVE_UP (-1)

/* Why the last connection or attempt ended. Borrowed for the call. */
typedef struct ksock_disconnect_info_s {
    size_t size;           /* sizeof(ksock_disconnect_info_t) */
    int err;               /* KSOCK_E_* (CONNREFUSED, TIMEDOUT, CLOSED, AUTH, ...) */
    int close_code;        /* WebSocket close code, 0 if none was received */
    const char *reason;    /* close reason or error text, may be NULL */
    uint32_t attempt;      /* 1 for the first retry after a loss */
    uint64_t connected_ms; /* how long the last connection stayed up (0: never up) */
} ksock_disconnect_info_t;

typedef struct ksock_reconnect_vtable_s {
    KSOCK_VTABLE_HEAD;
    /*
     * Milliseconds to wait before attempt `info->attempt`, or
     * KSOCK_RECONNECT_GIVE_UP. `why` (caller-owned, may be NULL) receives
     * the reason when giving up, e.g. "max_retries (5) reached" or
     * "close code 4401 is final"; it becomes the reason on_close reports.
     * Left empty, on_close reports the close as it happened (reconnect_none
     * does that).
     */
    int64_t (*next_delay)(void *inst, const ksock_disconnect_info_t *info, char *why,
                          size_t why_size);
    /* Minimum time a connection must stay up before the attempt counter resets (ms). */
    uint64_t (*stable_after_ms)(void *inst);
} ksock_reconnect_vtable_t;

/*
 * True for close codes that mean "do not come back": 1008 (policy
 * violation), 4401 (unauthenticated), 4403 (forbidden). Policies use it.
 */
KSOCK_EXTERN bool ksock_close_code_is_final(int close_code);

#ifdef __cplusplus
}
#endif
#endif
