/*
 * The bridge's limits (docs/bridge.md, Limits): connections per principal,
 * counted at the handshake, and publishes per second per connection, a
 * token bucket.
 *
 * The per-principal count is taken on the transport's thread (on_handshake)
 * and given back on the loop (on_close), so it is the one piece of bridge
 * state behind a mutex. A connection over its publish rate is not refused:
 * its reading is paused, like at max_inflight, until the bucket holds a
 * token again, so nothing is lost and the client is slowed by TCP. Both
 * act on one connection or one principal only; nothing here blocks the
 * loop, so a client at a limit never slows another.
 */
#include "bridge_internal.h"

#define PCOUNT_BUCKETS 256

typedef struct pcount_s {
    struct pcount_s *next;
    uint64_t n;
    char subject[];
} pcount_t;

int ksock__br_limits_init(ksock_bridge_t *b)
{
    b->pcount = calloc(PCOUNT_BUCKETS, sizeof(*b->pcount));
    if (b->pcount == NULL) return KSOCK_E_NOMEM;
    pthread_mutex_init(&b->plock, NULL);
    return 0;
}

void ksock__br_limits_free(ksock_bridge_t *b)
{
    if (b->pcount == NULL) return;
    for (size_t i = 0; i < PCOUNT_BUCKETS; i++) {
        for (pcount_t *p = b->pcount[i], *next; p; p = next) {
            next = p->next;
            free(p);
        }
    }
    free(b->pcount);
    b->pcount = NULL;
    pthread_mutex_destroy(&b->plock);
}

static pcount_t **pcount_slot(ksock_bridge_t *b, const char *subject)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const unsigned char *s = (const unsigned char *)subject; *s; s++)
        h = (h ^ *s) * 1099511628211ull;
    pcount_t **pp = &b->pcount[h % PCOUNT_BUCKETS];
    while (*pp && strcmp((*pp)->subject, subject) != 0)
        pp = &(*pp)->next;
    return pp;
}

/* Transport thread. Counts every connection when a limit is set, so that one set by a reload
 * (later) would see the truth; with no limit nothing is counted. */
int ksock__br_limits_admit(ksock_bridge_t *b, conn_t *c, char *errstr, size_t errstr_size)
{
    c->b = b;
    if (b->max_per_principal == 0) return 0;
    const char *subject = c->principal->subject ? c->principal->subject : "";
    int rc = 0;
    pthread_mutex_lock(&b->plock);
    pcount_t **pp = pcount_slot(b, subject);
    if (*pp == NULL) {
        size_t n = strlen(subject) + 1;
        if ((*pp = calloc(1, sizeof(pcount_t) + n)) != NULL) memcpy((*pp)->subject, subject, n);
    }
    if (*pp == NULL) {
        rc = KSOCK_E_NOMEM;
    } else if ((*pp)->n >= b->max_per_principal) {
        ksock_errstr_set(errstr, errstr_size,
                         "too many connections for this principal "
                         "(bridge.max_connections_per_principal: %" PRIu64 ")",
                         b->max_per_principal);
        atomic_fetch_add(&b->refused_principal, 1);
        rc = KSOCK_E_LIMIT;
    } else {
        (*pp)->n++;
        c->counted = true;
    }
    pthread_mutex_unlock(&b->plock);
    return rc;
}

void ksock__br_limits_conn_free(conn_t *c)
{
    ksock_timer_close(c->rate_timer);
    ksock_timer_close(c->exp_timer);
    c->rate_timer = c->exp_timer = NULL;
    if (!c->counted) return;
    ksock_bridge_t *b = c->b;
    pthread_mutex_lock(&b->plock);
    pcount_t **pp = pcount_slot(b, c->principal->subject ? c->principal->subject : "");
    if (*pp && --(*pp)->n == 0) {
        pcount_t *gone = *pp;
        *pp = gone->next;
        free(gone);
    }
    pthread_mutex_unlock(&b->plock);
    c->counted = false;
}

/* ---- Publish rate ------------------------------------------------------------ */

static void rate_resume(ksock_timer_t *t, void *data)
{
    (void)t;
    conn_t *c = data;
    c->rate_paused = false;
    ksock__br_conn_update_pause(c->b, c);
}

/* Refill the bucket for the time since the last publish (at most to the burst). */
static void rate_refill(ksock_bridge_t *b, conn_t *c, uint64_t now)
{
    if (c->tokens_ns == 0) {
        c->tokens = b->publish_burst;
    } else {
        c->tokens += (double)(now - c->tokens_ns) / 1e9 * b->publish_rate;
        if (c->tokens > b->publish_burst) c->tokens = b->publish_burst;
    }
    c->tokens_ns = now;
}

/*
 * A publish takes a token. The one that takes the last pauses the
 * connection until the bucket holds a whole token again; a publish the
 * transport had already handed over before the pause took effect is still
 * served (the bucket goes below zero and the pause lasts longer), so the
 * average stays at the rate. Without pause_read (a 1.0 transport) a
 * publish with no token is refused with -22 instead.
 */
bool ksock__br_rate_take(ksock_bridge_t *b, conn_t *c, const ksock_envelope_t *env)
{
    if (b->publish_rate <= 0) return true;
    rate_refill(b, c, ksock_now_ns());
    if (!b->can_pause && c->tokens < 1.0) {
        b->stats.limit_rate_refused++;
        b->stats.publish_errors++;
        BR_COUNT_REFUSED(b, KSOCK_E_LIMIT);
        ksock__br_reply_error(b, c, env->id, env->id_len, env->topic, env->topic_len, KSOCK_E_LIMIT,
                              "over this connection's publish rate (bridge.publish_rate)");
        return false;
    }
    c->tokens -= 1.0;
    if (c->tokens >= 1.0 || !b->can_pause || c->rate_paused) return true;
    if (c->rate_timer == NULL && ksock_timer_init(b->rt, &c->rate_timer, rate_resume, c) != 0)
        return true; /* no timer, no pause: served at the rate of the bucket's refills instead */
    uint64_t ms = (uint64_t)((1.0 - c->tokens) / b->publish_rate * 1000.0) + 1;
    if (ksock_timer_start(c->rate_timer, ms, 0) != 0) return true;
    c->rate_paused = true;
    b->stats.limit_rate_paused++;
    ksock__br_conn_update_pause(b, c);
    return true;
}
