/*
 * Token lifetime on open connections (docs/auth.md, Expiry and refresh;
 * docs/protocol.md, Tokens): a connection whose principal expires is
 * closed with 4401 "token expired" at that moment, unless the client sent
 * a new token first with the `token` op.
 *
 * A new token goes through the connection's authenticator exactly as the
 * handshake's did (its authenticate(), with the token where the handshake
 * would carry it), on the loop thread: authenticate() is thread-safe and
 * does no I/O by contract. The new principal replaces the old one at once,
 * so the next publish is judged by it, and every subscription it no longer
 * allows ends with -16. A refused token changes nothing: the old one stays
 * until it expires.
 */
#include "bridge_internal.h"

/* 4401: the project's "unauthorized" close code (ksock_close_code_is_final). */
#define CLOSE_TOKEN_EXPIRED 4401
/* A new token longer than this is refused before the authenticator sees it. */
#define TOKEN_MAX 65536

static void expired(ksock_timer_t *t, void *data);

/*
 * (Re)start the timer for what is left of the token, rounded up. The loop's
 * timers count from the time cached at the start of its iteration, so one
 * may fire a few ms early: expired() then waits for the rest.
 */
static void arm_left(conn_t *c, int64_t left_ns)
{
    ksock_timer_start(c->exp_timer, left_ns > 0 ? (uint64_t)(left_ns + 999999) / 1000000 : 0, 0);
}

static void expired(ksock_timer_t *t, void *data)
{
    (void)t;
    conn_t *c = data;
    ksock_bridge_t *b = c->b;
    if (c->closing || b->stopped) return;
    int64_t left_ns = c->principal->expires_at_ms * 1000000 - ksock_wallclock_ns();
    if (left_ns > 0) { /* never a moment before exp */
        arm_left(c, left_ns);
        return;
    }
    b->stats.token_expired++;
    ksock_log(
        b->rt, KSOCK_LOG_INFO, COMPONENT,
        (ksock_kv_t[]){KSOCK_KV_I64("conn", c->id), KSOCK_KV_STR("subject", c->principal->subject)},
        2, "token expired: closing with 4401");
    ksock__br_conn_close(b, c, CLOSE_TOKEN_EXPIRED, "token expired");
}

void ksock__br_token_arm(ksock_bridge_t *b, conn_t *c)
{
    int64_t exp = c->principal->expires_at_ms;
    if (exp <= 0 || exp == INT64_MAX) { /* none, or too far to matter */
        if (c->exp_timer) ksock_timer_stop(c->exp_timer);
        return;
    }
    if (c->exp_timer == NULL && ksock_timer_init(b->rt, &c->exp_timer, expired, c) != 0) {
        /* Without a timer the connection would outlive its token: end it now instead. */
        ksock__br_conn_close(b, c, CLOSE_INTERNAL, "out of memory");
        return;
    }
    arm_left(c, exp * 1000000 - ksock_wallclock_ns());
}

/* A token carried as a handshake would carry it, in every place an authenticator looks. */
static int authenticate(ksock_bridge_t *b, conn_t *c, const char *tok, ksock_principal_t **out,
                        char *err, size_t errlen)
{
    size_t n = strlen(tok);
    char *bearer = malloc(n + 8), *query = malloc(n + 7);
    if (bearer == NULL || query == NULL) {
        free(bearer);
        free(query);
        return KSOCK_E_NOMEM;
    }
    snprintf(bearer, n + 8, "Bearer %s", tok);
    /* The query form only for a token that needs no percent-encoding (every JWT). */
    bool plain =
        strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~") == n;
    snprintf(query, n + 7, "token=%s", tok);
    ksock_kvpair_t hdrs[] = {{"authorization", bearer}, {"x-ksock-token", tok}};
    char sub[300];
    snprintf(sub, sizeof(sub), SUBPROTO_PREFIX "%s", c->ser ? c->ser->name : "");
    ksock_handshake_t hs = {
        .size = sizeof(hs),
        .path = "/",
        .query = plain ? query : NULL,
        .headers = hdrs,
        .nheaders = 2,
        .peer_addr = "",
        .subprotocol = sub,
    };
    int rc = b->av->authenticate(b->auth->inst, &hs, out, err, errlen);
    free(bearer);
    free(query);
    if (rc == 0 && *out == NULL) rc = KSOCK_E_INTERNAL;
    return rc;
}

/* Subscriptions the new principal does not allow end with -16 (pending ones with their id). */
static void revoke(ksock_bridge_t *b, conn_t *c)
{
    for (sub_t *s = c->subs, *next; s; s = next) {
        next = s->cnext;
        const char *topic = s->topic->name;
        if (ksock_principal_can(c->principal, topic, KSOCK_PERM_SUBSCRIBE)) continue;
        b->stats.token_revoked++;
        const char *id = s->rq ? s->rq->id : NULL; /* a subscribe not yet answered */
        ksock__br_reply_error(b, c, id, id ? s->rq->id_len : 0, topic, strlen(topic),
                              KSOCK_E_FORBIDDEN,
                              "the new token does not allow subscribing to this topic: "
                              "subscription ended");
        ksock__br_sub_free(b, s);
    }
}

/* Refuse a `token` op; the connection keeps its token. */
static void refuse(ksock_bridge_t *b, conn_t *c, const ksock_envelope_t *env, int code,
                   const char *why)
{
    b->stats.token_refused++;
    ksock_log(b->rt, KSOCK_LOG_INFO, COMPONENT,
              (ksock_kv_t[]){KSOCK_KV_I64("conn", c->id),
                             KSOCK_KV_STR("subject", c->principal->subject),
                             KSOCK_KV_STR("code", ksock_err_name(code))},
              3, "new token refused: %s", why);
    ksock__br_reply_error(b, c, env->id, env->id_len, NULL, 0, code, why);
}

void ksock__br_do_token(ksock_bridge_t *b, conn_t *c, const ksock_envelope_t *env)
{
    if (b->av == NULL) {
        refuse(b, c, env, KSOCK_E_UNSUPPORTED, "no authenticator: connections here have no token");
        return;
    }
    const ksock_bytes_t *v = &env->value;
    if (!v->present || v->len == 0) {
        refuse(b, c, env, KSOCK_E_PROTO, "token needs the new token in value");
        return;
    }
    if (v->len > TOKEN_MAX || memchr(v->data, '\0', v->len) != NULL) {
        refuse(b, c, env, KSOCK_E_AUTH, v->len > TOKEN_MAX ? "token too long" : "token holds NUL");
        return;
    }
    char *tok = malloc(v->len + 1), err[256] = "";
    if (tok == NULL) {
        refuse(b, c, env, KSOCK_E_NOMEM, "out of memory");
        return;
    }
    memcpy(tok, v->data, v->len);
    tok[v->len] = '\0';
    ksock_principal_t *p = NULL;
    int rc = authenticate(b, c, tok, &p, err, sizeof(err));
    free(tok);
    if (rc == 0 && strcmp(p->subject, c->principal->subject) != 0) {
        rc = KSOCK_E_AUTH;
        snprintf(err, sizeof(err), "the new token names another subject");
    }
    if (rc != 0) {
        ksock_principal_free(p);
        /* Every refusal is -15 to the client, whatever the authenticator's code (403 or 401). */
        refuse(b, c, env, rc == KSOCK_E_NOMEM ? KSOCK_E_NOMEM : KSOCK_E_AUTH,
               err[0] ? err : ksock_strerror(rc));
        return;
    }
    ksock_principal_free(c->principal); /* counted by subject, which did not change */
    c->principal = p;
    b->stats.token_refreshed++;
    ksock__br_token_arm(b, c);
    revoke(b, c);
    ksock_envelope_t ans;
    ksock_envelope_init(&ans);
    ans.op = KSOCK_OP_TOKEN;
    ans.id = env->id;
    ans.id_len = env->id_len;
    if (p->expires_at_ms > 0 && p->expires_at_ms != INT64_MAX) ans.timestamp = p->expires_at_ms;
    ksock__br_reply(b, c, &ans);
}
