/*
 * Attaching a librdkafka queue to the runtime loop.
 *
 * rd_kafka_queue_io_event_enable() makes librdkafka write 8 bytes to an
 * eventfd whenever an op lands on the queue while it is empty. The loop
 * watches the eventfd; the owner's drain function then serves the queue
 * without blocking. librdkafka writes again only after the queue went empty,
 * so a drain must either empty the queue or come back by itself: that is
 * ksock__kwake_again().
 */
#include "kafka_internal.h"

#include <errno.h>
#include <event2/event.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void run_drain(ksock__kwake_t *w)
{
    w->drain(w->owner);
}

static void on_fd(evutil_socket_t fd, short what, void *arg)
{
    ksock__kwake_t *w = arg;
    uint64_t v;
    /* Reset the counter before draining: a write after this point wakes us again. */
    while (read(fd, &v, sizeof(v)) > 0) {
    }
    w->wakeups++;
    run_drain(w);
}

static void on_continue(evutil_socket_t fd, short what, void *arg)
{
    ksock__kwake_t *w = arg;
    w->continued++;
    run_drain(w);
}

int ksock__kwake_init(ksock__kwake_t *w, ksock_runtime_t *rt, rd_kafka_queue_t *q,
                      void (*drain)(void *), void *owner)
{
    struct event_base *base = ksock_runtime_event_base(rt);
    memset(w, 0, sizeof(*w));
    w->q = q;
    w->drain = drain;
    w->owner = owner;
    w->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->fd < 0) return ksock_err_from_errno(errno);
    w->ev = event_new(base, w->fd, EV_READ | EV_PERSIST, on_fd, w);
    w->cont = evtimer_new(base, on_continue, w);
    if (w->ev == NULL || w->cont == NULL || event_add(w->ev, NULL) != 0) {
        ksock__kwake_close(w);
        return KSOCK_E_NOMEM;
    }
    static const uint64_t one = 1;
    rd_kafka_queue_io_event_enable(q, w->fd, &one, sizeof(one));
    /* Ops queued before the fd was attached produced no write: look once. */
    ksock__kwake_again(w);
    return 0;
}

void ksock__kwake_again(ksock__kwake_t *w)
{
    static const struct timeval zero = {0, 0};
    if (w->cont && !evtimer_pending(w->cont, NULL)) evtimer_add(w->cont, &zero);
}

void ksock__kwake_signal(ksock__kwake_t *w)
{
    uint64_t one = 1;
    ssize_t n;
    do {
        n = write(w->fd, &one, sizeof(one));
    } while (n < 0 && errno == EINTR);
}

void ksock__kwake_close(ksock__kwake_t *w)
{
    if (w->drain == NULL) return; /* never initialised (a zeroed struct) */
    if (w->q && w->fd >= 0) rd_kafka_queue_io_event_enable(w->q, -1, NULL, 0);
    if (w->ev) event_free(w->ev);
    if (w->cont) event_free(w->cont);
    if (w->fd >= 0) close(w->fd);
    w->ev = w->cont = NULL;
    w->fd = -1;
    w->q = NULL;
    w->drain = NULL;
}
