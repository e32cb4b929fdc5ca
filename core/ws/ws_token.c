/*
 * Token refresh on an open connection (docs/websocket.md, "Token refresh";
 * docs/protocol.md, Tokens): before the connection's token expires the
 * application's callback is asked for a new one, which goes to the server
 * in a `token` envelope and replaces the bearer token later reconnections
 * send.
 *
 * When: at 80% of the time the token had left when the library got it
 * (so a 10-minute token is refreshed 2 minutes before it expires), but at
 * least 30 s before it expires, or halfway for one with under a minute
 * left: the callback, the round trip and a retry need time too. The
 * expiry is the `exp` claim read from the JWT without checking its
 * signature (it only schedules, the server decides), then the one the
 * server's `token` answer gives. A token with no readable expiry is never
 * refreshed. A refresh the callback cannot give (NULL) or the server
 * refuses (-15) is tried again every second until the token expires; a
 * server without the op (-17, -21) ends the refreshing.
 */
#include "ws_internal.h"

#include <ksock/codec.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TOKEN_RETRY_MS 1000
#define TOKEN_ID       "ksock.token"

/* The `exp` claim of a JWT in ms since the epoch, or 0 when it has none we can read. */
static int64_t jwt_exp_ms(const char *tok)
{
    const char *a = strchr(tok, '.'), *z = a ? strchr(a + 1, '.') : NULL;
    if (z == NULL) return 0;
    ksock_buf_t json = KSOCK_BUF_INIT;
    int64_t ms = 0;
    if (ksock_base64_decode(a + 1, (size_t)(z - a - 1), true, &json) == 0 &&
        ksock_buf_append(&json, "", 1) == 0) {
        /* A scan, not a parse: good enough to schedule, and never trusted. */
        const char *p = strstr((const char *)json.data, "\"exp\"");
        if (p) p = strchr(p + 5, ':');
        if (p) {
            double exp = strtod(p + 1, NULL);
            if (isfinite(exp) && exp > 0 && exp < 9.2e15) ms = (int64_t)(exp * 1000.0);
        }
    }
    ksock_buf_free(&json);
    return ms;
}

/* Start the timer for a token that expires at `exp_ms` (0: never). */
static void schedule(ksock_ws_t *ws, int64_t exp_ms)
{
    ws->token_exp_ms = exp_ms;
    if (exp_ms <= 0 || ws->token_timer == NULL) return;
    int64_t left = exp_ms - ksock_wallclock_ns() / 1000000;
    int64_t margin = left / 5, floor_ms = left / 2 < 30000 ? left / 2 : 30000;
    if (margin < floor_ms) margin = floor_ms;
    ksock_timer_start(ws->token_timer, left > 0 ? (uint64_t)(left - margin) : 0, 0);
}

/* Try again shortly, while the token is still good. */
static void retry(ksock_ws_t *ws)
{
    int64_t left = ws->token_exp_ms - ksock_wallclock_ns() / 1000000;
    if (left > 0) ksock_timer_start(ws->token_timer, TOKEN_RETRY_MS, 0);
}

/* Reconnections send the new token: replace (or add) the Authorization header. */
static int set_bearer(ksock_ws_t *ws, const char *tok)
{
    ksock_buf_t b = KSOCK_BUF_INIT;
    if (ksock_buf_appendf(&b, "Bearer %s", tok) != 0) return KSOCK_E_NOMEM;
    for (size_t i = 0; i < ws->nheaders; i++) {
        if (strcasecmp(ws->headers[i].name, "authorization") == 0) {
            free((char *)ws->headers[i].value);
            ws->headers[i].value = (char *)b.data;
            return 0;
        }
    }
    ksock_kvpair_t *h = realloc(ws->headers, (ws->nheaders + 1) * sizeof(*h));
    char *name = ksock__strdup("authorization");
    if (h == NULL || name == NULL) {
        if (h) ws->headers = h;
        free(name);
        ksock_buf_free(&b);
        return KSOCK_E_NOMEM;
    }
    ws->headers = h;
    h[ws->nheaders].name = name;
    h[ws->nheaders].value = (char *)b.data;
    ws->nheaders++;
    return 0;
}

static void token_timer_cb(ksock_timer_t *t, void *data)
{
    (void)t;
    ksock_ws_t *ws = data;
    if (ws->state != KSOCK_WS_OPEN || ws->on_token == NULL) return; /* opened() schedules again */
    char *tok = ws->on_token(ws, ws->token_data);
    if (tok == NULL || *tok == '\0') {
        free(tok);
        retry(ws);
        return;
    }
    char err[256];
    ksock_envelope_t env;
    ksock_envelope_init(&env);
    env.op = KSOCK_OP_TOKEN;
    env.id = TOKEN_ID;
    env.id_len = strlen(TOKEN_ID);
    env.value = (ksock_bytes_t){tok, strlen(tok), true};
    int rc = set_bearer(ws, tok);
    if (rc == 0) rc = ksock_ws_send_envelope(ws, &env, err, sizeof(err));
    if (rc != 0) {
        ksock_report_error(ws->mgr->rt, rc, WS_COMPONENT, "%s: cannot send a new token: %s",
                           ws->url, rc == KSOCK_E_NOMEM ? "out of memory" : err);
        retry(ws);
    }
    /* Until the answer comes, the new token's own exp is the best guess. */
    int64_t exp = jwt_exp_ms(tok);
    free(tok);
    if (rc == 0 && exp > 0) ws->token_exp_ms = exp;
}

bool ksock__ws_token_envelope(ksock_ws_t *ws, const ksock_envelope_t *env)
{
    if (ws->on_token == NULL || env->id == NULL || env->id_len != strlen(TOKEN_ID) ||
        memcmp(env->id, TOKEN_ID, env->id_len) != 0)
        return false;
    if (env->op == KSOCK_OP_TOKEN) {
        schedule(ws, env->timestamp > 0 ? env->timestamp : 0);
    } else if (env->op == KSOCK_OP_ERROR) {
        ksock_report_error(ws->mgr->rt, env->error_code, WS_COMPONENT,
                           "%s: the server refused the new token: %.*s", ws->url,
                           (int)env->error_message_len,
                           env->error_message ? env->error_message : "");
        if (env->error_code == KSOCK_E_PROTO || env->error_code == KSOCK_E_UNSUPPORTED)
            ws->token_exp_ms = 0; /* a server without the op: stop asking */
        else
            retry(ws);
    }
    return true;
}

void ksock__ws_token_opened(ksock_ws_t *ws)
{
    if (ws->on_token == NULL) return;
    for (size_t i = 0; i < ws->nheaders; i++) {
        const char *v = ws->headers[i].value;
        if (strcasecmp(ws->headers[i].name, "authorization") == 0 && v &&
            strncasecmp(v, "bearer ", 7) == 0) {
            schedule(ws, jwt_exp_ms(v + 7));
            return;
        }
    }
}

void ksock__ws_token_free(ksock_ws_t *ws)
{
    ksock_timer_close(ws->token_timer);
    ws->token_timer = NULL;
}

int ksock_ws_on_token_refresh(ksock_ws_t *ws, ksock_ws_token_cb cb, void *data)
{
    if (cb && ws->sv == NULL) return KSOCK_E_INVAL; /* no envelopes without a serializer plugin */
    if (ws->token_timer == NULL) {
        int rc = ksock_timer_init(ws->mgr->rt, &ws->token_timer, token_timer_cb, ws);
        if (rc != 0) return rc;
    }
    ws->on_token = cb;
    ws->token_data = data;
    if (cb == NULL) {
        ksock_timer_stop(ws->token_timer);
        return 0;
    }
    if (ws->state == KSOCK_WS_OPEN) ksock__ws_token_opened(ws);
    return 0;
}
