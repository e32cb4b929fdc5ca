/*
 * What core/ws/ws.c (the connection state machine) and core/ws/ws_subs.c
 * (subscriptions that resume by themselves) and core/ws/ws_token.c (token
 * refresh) share. Not installed.
 */
#ifndef KSOCK_WS_INTERNAL_H
#define KSOCK_WS_INTERNAL_H

#include "../internal.h"

#include <ksock/ws.h>

#define WS_COMPONENT "ws"

typedef struct ksock__ws_sub_s ksock__ws_sub_t;

typedef struct ws_qmsg_s {
    struct ws_qmsg_s *next;
    ksock_frame_t *frame;
} ws_qmsg_t;

struct ksock_ws_manager_s {
    ksock_runtime_t *rt;
    ksock_config_t *tdoc; /* transport options document, borrowed by the instance */
    ksock_plugin_instance_t *transport;
    const ksock_transport_vtable_t *tv;
    ksock_transport_events_t ev;
    ksock_reconnect_opts_t reconnect; /* strings owned below */
    char *reconnect_policy, *reconnect_policy_json;
    char *ca_file, *token, *cert_file, *key_file;
    bool insecure;
    ksock_ws_t *conns; /* every live handle */
};

struct ksock_ws_s {
    ksock_ws_manager_t *mgr;
    ksock_ws_t *next, **pprev;
    void *data;
    ksock_ws_state_t state;
    ksock_conn_id_t conn_id; /* 0: none */
    bool user_closed;
    int close_code;
    char *close_reason;

    /* request */
    char *url; /* with the query parameters */
    char *subprotocol_req;
    char *ca_file, *cert_file, *key_file;
    bool insecure;
    uint64_t max_message_size;
    ksock_kvpair_t *headers;
    size_t nheaders;
    char *subprotocol; /* accepted */
    const ksock_serde_strategy_t *strategy;

    /* resilience */
    bool reconnect_enabled;
    ksock_reconnect_opts_t ropts;
    ksock_config_t *pdoc; /* policy options document */
    ksock_plugin_instance_t *policy;
    uint32_t attempt;
    uint64_t opened_at_ns;
    bool ever_opened;
    ksock_timer_t *timer;
    bool final_pending; /* the timer delivers the final on_close */
    int final_code, final_err;
    const char *final_reason; /* close_reason or a literal: delivering it allocates nothing */

    /* the queue kept while disconnected */
    ws_qmsg_t *q_head, *q_tail;
    size_t q_msgs, q_bytes;

    ksock_ws_open_cb on_open;
    ksock_ws_message_cb on_message;
    ksock_ws_frame_cb on_frame;
    ksock_ws_close_cb on_close;
    ksock_ws_reconnecting_cb on_reconnecting;
    ksock_ws_reconnected_cb on_reconnected;
    ksock_ws_writable_cb on_writable;

    /* subscriptions (ws_subs.c) */
    const ksock_serializer_vtable_t *sv; /* the serializer plugin, for envelopes; NULL: none */
    void *sv_inst;
    const ksock_value_limits_t *sv_lim;
    ksock__ws_sub_t *subs;
    uint64_t next_req;        /* numbers the ids the library makes */
    ksock_timer_t *sub_timer; /* retries a refused resume */
    ksock_ws_envelope_cb on_envelope;

    /* token refresh (ws_token.c) */
    ksock_ws_token_cb on_token;
    void *token_data;
    ksock_timer_t *token_timer;
    int64_t token_exp_ms; /* the current token's expiry, 0: unknown */
};

/* Send a frame as ksock_ws_send() does (ws.c). */
int ksock__ws_send_frame(ksock_ws_t *ws, ksock_frame_t *f);

/* ---- ws_subs.c ---- */

/* Set up / free what the subscriptions need (called from connect and ws_free). */
int ksock__ws_subs_init(ksock_ws_t *ws);
void ksock__ws_subs_free(ksock_ws_t *ws);
/* A message arrived: decode it when anything needs envelopes, keep the positions, deliver. */
void ksock__ws_subs_message(ksock_ws_t *ws, const void *payload, size_t len);
/* The connection opened: subscribe again (resume) where this connection has not. */
void ksock__ws_subs_opened(ksock_ws_t *ws);

/* ---- ws_token.c ---- */

/* The connection opened: schedule the refresh of the token it sent. */
void ksock__ws_token_opened(ksock_ws_t *ws);
/* An envelope: true when it answers the library's own `token` (then it is not delivered). */
bool ksock__ws_token_envelope(ksock_ws_t *ws, const ksock_envelope_t *env);
void ksock__ws_token_free(ksock_ws_t *ws);

#endif
