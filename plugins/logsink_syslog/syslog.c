/*
 * logsink "syslog": records sent as RFC 3164 datagrams to the local syslog
 * socket (default /dev/log).
 *
 * Why not openlog()/syslog(): libc keeps one ident, one facility and one
 * socket for the whole process, so two instances (or a library that also
 * calls openlog) would fight over them; and when nothing listens on
 * /dev/log libc drops messages without telling anyone. Writing the
 * datagrams ourselves gives each instance its own socket, ident and
 * facility, lets us count every drop, and lets a test bind the socket.
 *
 * What goes on the wire is what glibc's syslog() sends to /dev/log:
 *
 *     <PRI>Mmm dd hh:mm:ss IDENT[PID]: MESSAGE
 *
 * PRI = facility * 8 + severity; the timestamp is local time; there is no
 * hostname (the local daemon adds it). MESSAGE is the record in the sink's
 * format: for "text" the core's line without its leading time and level
 * (the syslog header carries both), for "json" the JSON object. Datagrams
 * longer than max_message_size are cut at a UTF-8 character boundary.
 *
 * Never blocking: the socket is non-blocking and every send() uses
 * MSG_DONTWAIT. A record that cannot be sent (no socket, daemon not
 * reading, queue full) is dropped: write() returns an error so the core
 * counts it and reports the start of the run. The socket is reconnected on
 * the next record after a send fails (a restarted daemon binds a new
 * socket at the same path), and at most once a second while it stays
 * unreachable. Only SOCK_DGRAM sockets are supported (what rsyslog,
 * syslog-ng and journald all bind at /dev/log).
 *
 * Threads: write() runs under the core's logger lock from any thread; the
 * report timer runs on the loop. The state they share has its own mutex,
 * never held while calling into the core.
 */
#include <ksock/logsink.h>
#include <ksock/runtime.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define SL_RECONNECT_NS 1000000000ull /* at most one connect attempt a second */
#define SL_REPORT_MS    1000

static const char *const sl_facility_names[] = {"daemon", "user",   "local0", "local1",
                                                "local2", "local3", "local4", "local5",
                                                "local6", "local7", NULL};
static const int sl_facility_codes[] = {3, 1, 16, 17, 18, 19, 20, 21, 22, 23};

typedef struct syslog_opts_s {
    char *ident;
    int facility;
    char *socket;
    int64_t max_message_size;
} syslog_opts_t;

static const ksock_option_t syslog_options[] = {
    KSOCK_OPTION("ident", KSOCK_OPT_STRING, 0, "ksockd", syslog_opts_t, ident,
                 "Tag in front of every message (IDENT[PID]: ...)."),
    KSOCK_OPTION_ENUM("facility", 0, "daemon", syslog_opts_t, facility, sl_facility_names,
                      "Syslog facility: daemon, user, local0 ... local7."),
    KSOCK_OPTION("socket", KSOCK_OPT_STRING, 0, "/dev/log", syslog_opts_t, socket,
                 "Unix datagram socket of the local syslog daemon."),
    KSOCK_OPTION_RANGE("max_message_size", KSOCK_OPT_SIZE, 0, "8KiB", syslog_opts_t,
                       max_message_size, 480, 65536,
                       "Longest datagram sent; longer messages are cut (rsyslog's default "
                       "limit is 8KiB)."),
    KSOCK_OPTION_END,
};

typedef struct syslog_sink_s {
    ksock_runtime_t *rt;
    const char *component; /* borrowed from the ctx until destroy returns */
    char *ident;
    char *path;
    int facility;
    size_t max_size;
    struct sockaddr_un addr;
    socklen_t addrlen;
    ksock_timer_t *timer;

    /* Used by write() only, which the logger lock serializes. */
    ksock_log_format_t format;
    int fd; /* -1 while disconnected */
    uint64_t next_connect_ns;
    ksock_buf_t line;   /* the formatted record */
    char hdr_cache[32]; /* "Mmm dd hh:mm:ss" for hdr_sec */
    time_t hdr_sec;

    pthread_mutex_t lock; /* everything below: shared with the timer and stats() */
    uint64_t written, errors;
    bool down;          /* the last send or connect failed */
    bool down_reported; /* that was reported */
    bool up_again;      /* a run of failures ended since the last tick */
    int down_errno;
    uint64_t run_dropped; /* records dropped in the current run */
} syslog_sink_t;

static void sl_disconnect(syslog_sink_t *s)
{
    if (s->fd >= 0) close(s->fd);
    s->fd = -1;
}

/* Returns 0 or an errno value. Cheap and never blocks for a unix datagram socket. */
static int sl_connect(syslog_sink_t *s)
{
    sl_disconnect(s);
    s->next_connect_ns = ksock_now_ns() + SL_RECONNECT_NS;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return errno;
    if (connect(fd, (const struct sockaddr *)&s->addr, s->addrlen) != 0) {
        int e = errno;
        close(fd);
        return e;
    }
    s->fd = fd;
    return 0;
}

/* "Nov  6 08:49:37": RFC 3164 wants English month names whatever the locale. */
static const char *sl_timestamp(syslog_sink_t *s, int64_t time_ns)
{
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t sec = (time_t)(time_ns / 1000000000);
    if (sec != s->hdr_sec || s->hdr_cache[0] == '\0') {
        struct tm tm;
        localtime_r(&sec, &tm);
        snprintf(s->hdr_cache, sizeof(s->hdr_cache), "%s %2d %02d:%02d:%02d", months[tm.tm_mon],
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        s->hdr_sec = sec;
    }
    return s->hdr_cache;
}

/*
 * The core's text line is "TIME LEVEL component: message k=v\n"; the syslog
 * header already has a time and a priority, so skip the first two fields.
 * Anything not shaped like that is sent whole.
 */
static const char *sl_strip_text_prefix(const char *p, size_t *len)
{
    const char *end = p + *len;
    const char *sp = memchr(p, ' ', (size_t)(end - p));
    if (sp == NULL || sp - p > 40 || p[0] < '0' || p[0] > '9') return p;
    const char *q = sp;
    while (q < end && *q == ' ')
        q++;
    while (q < end && *q >= 'A' && *q <= 'Z')
        q++; /* DEBUG, INFO, WARN, ERROR */
    if (q == end || *q != ' ') return p;
    while (q < end && *q == ' ')
        q++;
    *len = (size_t)(end - q);
    return q;
}

/* Cut `n` bytes down to `max` without splitting a UTF-8 sequence. */
static size_t sl_utf8_cut(const char *p, size_t n, size_t max)
{
    if (n <= max) return n;
    size_t cut = max;
    while (cut > 0 && ((unsigned char)p[cut] & 0xC0) == 0x80)
        cut--;
    return cut;
}

static int sl_severity(ksock_log_level_t level)
{
    switch (level) {
    case KSOCK_LOG_DEBUG:
        return 7; /* LOG_DEBUG */
    case KSOCK_LOG_INFO:
        return 6; /* LOG_INFO */
    case KSOCK_LOG_WARN:
        return 4; /* LOG_WARNING */
    default:
        return 3; /* LOG_ERR */
    }
}

/* A dropped record. `err` is the errno of a failed attempt, or 0 when no
 * attempt was made (reconnect not due yet). One report per run: a reason
 * that changes inside a run (ENOENT, then ECONNREFUSED) is not news. */
static void sl_note_down(syslog_sink_t *s, int err)
{
    pthread_mutex_lock(&s->lock);
    s->run_dropped++;
    if (err != 0) {
        s->errors++;
        if (!s->down) s->down_errno = err;
    }
    s->down = true;
    pthread_mutex_unlock(&s->lock);
}

static void sl_note_sent(syslog_sink_t *s)
{
    pthread_mutex_lock(&s->lock);
    s->written++;
    if (s->down) {
        s->down = false;
        s->up_again = true;
    }
    pthread_mutex_unlock(&s->lock);
}

static bool sl_should_reconnect(int err)
{
    /* The peer socket is gone or was replaced (daemon restarted). EAGAIN
     * (daemon slow) and EMSGSIZE keep the connection. */
    return err == ECONNREFUSED || err == ENOTCONN || err == ENOENT || err == EPIPE ||
           err == ECONNRESET || err == EDESTADDRREQ || err == EBADF;
}

static int syslog_write(void *inst, const ksock_log_record_t *rec)
{
    syslog_sink_t *s = inst;
    char hdr[160];
    int hl =
        snprintf(hdr, sizeof(hdr), "<%d>%s %s[%ld]: ", s->facility * 8 + sl_severity(rec->level),
                 sl_timestamp(s, rec->time_ns), s->ident, (long)getpid());
    if (hl < 0 || (size_t)hl >= sizeof(hdr)) hl = (int)sizeof(hdr) - 1;

    s->line.len = 0;
    if (ksock_buf_append(&s->line, hdr, (size_t)hl) != 0 ||
        ksock_log_record_format(rec, s->format, &s->line) != 0)
        return KSOCK_E_NOMEM; /* the core counts it */
    const char *body = s->line.data + hl;
    size_t body_len = s->line.len - (size_t)hl;
    if (body_len > 0 && body[body_len - 1] == '\n') body_len--;
    if (s->format == KSOCK_LOG_FORMAT_TEXT) {
        const char *b = sl_strip_text_prefix(body, &body_len);
        memmove(s->line.data + hl, b, body_len);
    }
    size_t len = sl_utf8_cut(s->line.data, (size_t)hl + body_len, s->max_size);

    if (s->fd < 0) {
        if (ksock_now_ns() < s->next_connect_ns) {
            sl_note_down(s, 0);
            return KSOCK_E_CLOSED;
        }
        int e = sl_connect(s);
        if (e != 0) {
            sl_note_down(s, e);
            return ksock_err_from_errno(e);
        }
    }
    for (int attempt = 0;; attempt++) {
        if (send(s->fd, s->line.data, len, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) {
            sl_note_sent(s);
            return 0;
        }
        int e = errno;
        if (e == EINTR) continue;
        /* One immediate reconnect: after a daemon restart the first record
         * finds the old socket dead and the new one already bound. */
        if (attempt == 0 && sl_should_reconnect(e) && sl_connect(s) == 0) continue;
        if (sl_should_reconnect(e)) sl_disconnect(s);
        sl_note_down(s, e);
        return e == EAGAIN || e == EWOULDBLOCK ? KSOCK_E_QUEUE_FULL : ksock_err_from_errno(e);
    }
}

/*
 * Loop side: say why records are dropped (the core's own report only says
 * that they are), once per run of failures, and say when it is over.
 */
static void syslog_timer_cb(ksock_timer_t *t, void *data)
{
    syslog_sink_t *s = data;
    int down_errno = 0;
    bool up_again = false;
    uint64_t dropped = 0;
    (void)t;

    pthread_mutex_lock(&s->lock);
    if (s->down && !s->down_reported && s->down_errno != 0) {
        s->down_reported = true;
        down_errno = s->down_errno;
    }
    if (s->up_again && !s->down) {
        up_again = true;
        s->up_again = false;
        s->down_reported = false;
        dropped = s->run_dropped;
        s->run_dropped = 0;
    }
    pthread_mutex_unlock(&s->lock);

    if (up_again) {
        ksock_kv_t kv[] = {KSOCK_KV_STR("socket", s->path), KSOCK_KV_I64("dropped", dropped)};
        ksock_log(s->rt, KSOCK_LOG_WARN, s->component, kv, 2,
                  "syslog socket reachable again after dropping %llu records",
                  (unsigned long long)dropped);
    }
    if (down_errno != 0)
        ksock_report_error(s->rt, ksock_err_from_errno(down_errno), s->component,
                           "cannot send to syslog socket \"%s\": %s; records are dropped until it "
                           "is reachable (retried at most once a second)",
                           s->path, strerror(down_errno));
}

static void syslog_destroy(void *inst)
{
    syslog_sink_t *s = inst;
    if (s == NULL) return;
    ksock_timer_close(s->timer);
    sl_disconnect(s);
    ksock_buf_free(&s->line);
    pthread_mutex_destroy(&s->lock);
    free(s->ident);
    free(s->path);
    free(s);
}

static int syslog_create(const ksock_plugin_ctx_t *ctx, const void *options, void **inst,
                         char *errstr, size_t errstr_size)
{
    const syslog_opts_t *o = options;
    if (o->socket == NULL || o->socket[0] == '\0' ||
        strlen(o->socket) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        ksock_errstr_set(errstr, errstr_size,
                         "%s: key \"socket\": \"%s\" is not a usable unix socket path (empty or "
                         "longer than %zu bytes)",
                         ctx->component, o->socket ? o->socket : "",
                         sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
        return KSOCK_E_CONFIG;
    }
    if (o->ident == NULL || o->ident[0] == '\0' || strlen(o->ident) > 48 ||
        strpbrk(o->ident, " :[]\n\r\t") != NULL) {
        ksock_errstr_set(errstr, errstr_size,
                         "%s: key \"ident\": \"%s\" must be 1 to 48 characters without "
                         "spaces, ':' or brackets",
                         ctx->component, o->ident ? o->ident : "");
        return KSOCK_E_CONFIG;
    }

    syslog_sink_t *s = calloc(1, sizeof(*s));
    if (s == NULL) return KSOCK_E_NOMEM;
    s->rt = ctx->rt;
    s->component = ctx->component;
    s->fd = -1;
    s->hdr_sec = -1;
    s->format = KSOCK_LOG_FORMAT_TEXT;
    s->facility = sl_facility_codes[o->facility];
    s->max_size = (size_t)o->max_message_size;
    pthread_mutex_init(&s->lock, NULL);
    s->ident = strdup(o->ident);
    s->path = strdup(o->socket);
    s->addr.sun_family = AF_UNIX;
    memcpy(s->addr.sun_path, o->socket, strlen(o->socket) + 1);
    s->addrlen = (socklen_t)sizeof(s->addr);
    if (s->ident == NULL || s->path == NULL ||
        ksock_timer_init(ctx->rt, &s->timer, syslog_timer_cb, s) != 0 ||
        ksock_timer_start(s->timer, SL_REPORT_MS, SL_REPORT_MS) != 0) {
        syslog_destroy(s);
        return KSOCK_E_NOMEM;
    }
    /*
     * A missing socket is not a start-up error: the syslog daemon may come
     * up after us. The first record will say so (through the drop report).
     */
    (void)sl_connect(s);
    s->next_connect_ns = 0; /* the first record may retry at once */
    *inst = s;
    return 0;
}

/* SIGHUP: connect afresh, e.g. after the syslog daemon was replaced. Runs
 * under the logger lock, like write(), so the socket needs no other lock. */
static void syslog_reopen(void *inst)
{
    syslog_sink_t *s = inst;
    (void)sl_connect(s);
    s->next_connect_ns = 0;
}

static void syslog_set_format(void *inst, ksock_log_format_t fmt)
{
    syslog_sink_t *s = inst;
    s->format = fmt;
}

static void syslog_stats(void *inst, uint64_t *written, uint64_t *dropped, uint64_t *errors)
{
    syslog_sink_t *s = inst;
    pthread_mutex_lock(&s->lock);
    *written = s->written;
    /* Every drop happens inside write() and is returned to the core, which counts it. */
    *dropped = 0;
    *errors = s->errors;
    pthread_mutex_unlock(&s->lock);
}

static const ksock_logsink_vtable_t syslog_vtable = {
    .size = sizeof(ksock_logsink_vtable_t),
    .create = syslog_create,
    .destroy = syslog_destroy,
    .set_format = syslog_set_format,
    .write = syslog_write,
    .flush = NULL, /* nothing is buffered */
    .reopen = syslog_reopen,
    .stats = syslog_stats,
};

static const ksock_plugin_desc_t syslog_desc = {
    KSOCK_PLUGIN_HEADER(KSOCK_PLUGIN_LOGSINK),
    .name = "syslog",
    .version = KSOCK_VERSION_STRING,
    .description = "Send log records to the local syslog daemon (RFC 3164 over /dev/log)",
    .options = syslog_options,
    .options_struct_size = sizeof(syslog_opts_t),
    .vtable = &syslog_vtable,
};

KSOCK_PLUGIN_DEFINE(logsink_syslog, syslog_desc)
