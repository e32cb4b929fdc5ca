/*
 * logsink "file": records appended to a file, buffered.
 *
 * write() formats the record into an in-memory buffer and issues one
 * write(2) when the buffer reaches buffer_size; a repeating timer writes out
 * whatever is buffered every flush_interval, and flush()/reopen()/destroy()
 * write it out too. A record at "error" level is written out at once, so the
 * line that explains a crash is on disk before the crash.
 *
 * Threads: the core calls write() (and flush/reopen) under its logger lock,
 * write() from any thread, while the flush timer runs on the loop thread
 * without that lock. So the buffer, the descriptor and the counters have
 * their own mutex, always taken after the logger lock and never held while
 * calling back into the core (reporting an error logs, and logging enters
 * write()). Nothing here reports from flush() or reopen() either: the core
 * holds its logger lock there, and logging would deadlock on it.
 *
 * Failures: write() never reports; it records the failure under the lock.
 * The timer (loop thread) reports the first failure of a run through
 * ksock_report_error(), then a summary at most once a minute while the run
 * lasts, and logs a warning when writes succeed again.
 */
#include <ksock/logsink.h>
#include <ksock/runtime.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILE_SUMMARY_INTERVAL_NS (60ull * 1000000000ull)

typedef struct file_opts_s {
    char *path;
    int64_t buffer_size;    /* bytes; 0 writes every record at once */
    int64_t flush_interval; /* ms */
    char *mode;             /* octal text, "0640" */
} file_opts_t;

static const ksock_option_t file_options[] = {
    KSOCK_OPTION("path", KSOCK_OPT_STRING, KSOCK_OPT_REQUIRED, NULL, file_opts_t, path,
                 "File to append records to. Opened with O_APPEND|O_CREAT at start-up (an "
                 "unopenable path stops start-up) and again on SIGHUP."),
    KSOCK_OPTION_RANGE("buffer_size", KSOCK_OPT_SIZE, 0, "64KiB", file_opts_t, buffer_size, 0,
                       64 * 1024 * 1024,
                       "Bytes buffered before a write(2); 0 writes every record at once."),
    KSOCK_OPTION_RANGE("flush_interval", KSOCK_OPT_DURATION, 0, "1s", file_opts_t, flush_interval,
                       1, 3600 * 1000,
                       "Longest time a record waits in the buffer before it is written."),
    KSOCK_OPTION("mode", KSOCK_OPT_STRING, 0, "0640", file_opts_t, mode,
                 "Permissions of a file the sink creates, as an octal string (\"0640\"); "
                 "the process umask applies; an existing file keeps its mode."),
    KSOCK_OPTION_END,
};

typedef struct file_sink_s {
    ksock_runtime_t *rt;
    const char *component; /* borrowed from the ctx, valid until destroy returns */
    char *path;
    mode_t mode;
    ksock_log_format_t format;
    size_t buffer_size;
    ksock_timer_t *timer;

    pthread_mutex_t lock; /* everything below */
    int fd;
    ksock_buf_t buf;
    uint64_t buffered; /* records in buf */
    uint64_t written, dropped, errors;

    /* The current failure run of write(2), reported from the timer. */
    bool failing;         /* the last write(2) failed */
    bool fail_reported;   /* the first failure of this run was reported */
    bool recovered;       /* a run ended since the last tick */
    int fail_errno;       /* errno of the last failure */
    int reopen_errno;     /* a failed reopen not yet reported, or 0 */
    uint64_t run_dropped; /* records dropped in this run, since the last report */
    uint64_t run_total;   /* records dropped in this run */
    uint64_t last_report_ns;
} file_sink_t;

static int file_open(const char *path, mode_t mode)
{
    /* O_APPEND: several writers (or a process before and after a restart)
     * never overwrite each other, and logrotate's copytruncate works.
     * O_NONBLOCK only for the open: a FIFO with no reader fails with ENXIO
     * instead of blocking start-up (or the loop, on SIGHUP) forever. */
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, mode);
    if (fd >= 0) {
        int fl = fcntl(fd, F_GETFL);
        if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    }
    return fd;
}

static int parse_mode(const char *s, mode_t *out)
{
    if (s == NULL || *s == '\0') return -1;
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(s, &end, 8);
    if (errno != 0 || *end != '\0' || v > 07777 || s[0] == '-' || s[0] == '+') return -1;
    *out = (mode_t)v;
    return 0;
}

/* Record a failed write(2). Called with the lock held. */
static void file_note_failure(file_sink_t *fs, int err, uint64_t lost)
{
    fs->errors++;
    fs->dropped += lost;
    fs->run_dropped += lost;
    fs->run_total += lost;
    fs->fail_errno = err;
    fs->failing = true;
}

/*
 * Write out the buffer. Called with the lock held. On failure the buffered
 * records are dropped and counted (a record partly written before an error
 * counts as dropped too): keeping them would grow the buffer without bound
 * while the disk is full.
 */
static void file_flush_locked(file_sink_t *fs)
{
    size_t off = 0;
    if (fs->buf.len == 0) return;
    while (off < fs->buf.len) {
        ssize_t n = write(fs->fd, fs->buf.data + off, fs->buf.len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            file_note_failure(fs, n < 0 ? errno : EIO, fs->buffered);
            goto done;
        }
        off += (size_t)n;
    }
    fs->written += fs->buffered;
    if (fs->failing) {
        fs->failing = false;
        fs->recovered = true;
    }
done:
    fs->buf.len = 0;
    fs->buffered = 0;
}

/*
 * The loop-thread side of failure reporting; see the header comment.
 * Takes a snapshot under the lock and reports after releasing it.
 */
static void file_report(file_sink_t *fs)
{
    char msg[512];
    int code = 0, reopen_errno = 0;
    bool recovered = false;
    uint64_t recovered_total = 0;
    uint64_t now = ksock_now_ns();

    pthread_mutex_lock(&fs->lock);
    if (fs->recovered) {
        recovered = true;
        recovered_total = fs->run_total;
        fs->recovered = false;
        fs->fail_reported = false;
        fs->run_dropped = fs->run_total = 0;
    }
    reopen_errno = fs->reopen_errno;
    fs->reopen_errno = 0;
    if (fs->failing && !fs->fail_reported) {
        code = ksock_err_from_errno(fs->fail_errno);
        snprintf(msg, sizeof(msg), "cannot write to \"%s\": %s (%llu records dropped)", fs->path,
                 strerror(fs->fail_errno), (unsigned long long)fs->run_dropped);
        fs->fail_reported = true;
        fs->run_dropped = 0;
        fs->last_report_ns = now;
    } else if (fs->failing && fs->run_dropped > 0 &&
               now - fs->last_report_ns >= FILE_SUMMARY_INTERVAL_NS) {
        code = ksock_err_from_errno(fs->fail_errno);
        snprintf(msg, sizeof(msg), "still cannot write to \"%s\": %s (%llu more records dropped)",
                 fs->path, strerror(fs->fail_errno), (unsigned long long)fs->run_dropped);
        fs->run_dropped = 0;
        fs->last_report_ns = now;
    }
    pthread_mutex_unlock(&fs->lock);

    if (recovered) {
        ksock_kv_t kv[] = {KSOCK_KV_STR("path", fs->path),
                           KSOCK_KV_I64("dropped", recovered_total)};
        ksock_log(fs->rt, KSOCK_LOG_WARN, fs->component, kv, 2,
                  "writing to the log file again after dropping %llu records",
                  (unsigned long long)recovered_total);
    }
    if (reopen_errno != 0)
        ksock_report_error(fs->rt, ksock_err_from_errno(reopen_errno), fs->component,
                           "cannot reopen \"%s\": %s; still writing to the file opened before",
                           fs->path, strerror(reopen_errno));
    if (code != 0) ksock_report_error(fs->rt, code, fs->component, "%s", msg);
}

static void file_timer_cb(ksock_timer_t *t, void *data)
{
    file_sink_t *fs = data;
    (void)t;
    pthread_mutex_lock(&fs->lock);
    file_flush_locked(fs);
    pthread_mutex_unlock(&fs->lock);
    file_report(fs);
}

static void file_destroy(void *inst);

static int file_create(const ksock_plugin_ctx_t *ctx, const void *options, void **inst,
                       char *errstr, size_t errstr_size)
{
    const file_opts_t *o = options;
    mode_t mode = 0;
    if (parse_mode(o->mode, &mode) != 0) {
        ksock_errstr_set(errstr, errstr_size,
                         "key \"mode\": \"%s\" is not an octal file mode such as \"0640\"",
                         o->mode ? o->mode : "");
        return KSOCK_E_CONFIG;
    }
    if (o->path == NULL || o->path[0] == '\0') {
        ksock_errstr_set(errstr, errstr_size, "key \"path\": must not be empty");
        return KSOCK_E_CONFIG;
    }

    file_sink_t *fs = calloc(1, sizeof(*fs));
    if (fs == NULL) return KSOCK_E_NOMEM;
    fs->rt = ctx->rt;
    fs->component = ctx->component;
    fs->mode = mode;
    fs->fd = -1;
    fs->buffer_size = (size_t)o->buffer_size;
    fs->format = KSOCK_LOG_FORMAT_TEXT;
    pthread_mutex_init(&fs->lock, NULL);
    fs->path = strdup(o->path);
    if (fs->path == NULL) {
        file_destroy(fs);
        return KSOCK_E_NOMEM;
    }

    fs->fd = file_open(fs->path, mode);
    if (fs->fd < 0) {
        int e = errno;
        ksock_errstr_set(errstr, errstr_size, "cannot open \"%s\": %s", fs->path,
                         e == ENXIO ? "a FIFO with no reader" : strerror(e));
        file_destroy(fs);
        return KSOCK_E_IO;
    }
    /* Reserve the whole buffer now so the hot path rarely reallocates. */
    if (ksock_buf_reserve(&fs->buf, fs->buffer_size + 512) != 0) {
        file_destroy(fs);
        return KSOCK_E_NOMEM;
    }
    int rc = ksock_timer_init(ctx->rt, &fs->timer, file_timer_cb, fs);
    if (rc == 0)
        rc = ksock_timer_start(fs->timer, (uint64_t)o->flush_interval, (uint64_t)o->flush_interval);
    if (rc != 0) {
        ksock_errstr_set(errstr, errstr_size, "cannot start the flush timer: %s",
                         ksock_strerror(rc));
        file_destroy(fs);
        return rc;
    }
    *inst = fs;
    return 0;
}

static void file_destroy(void *inst)
{
    file_sink_t *fs = inst;
    if (fs == NULL) return;
    ksock_timer_close(fs->timer);
    fs->timer = NULL;
    if (fs->fd >= 0) {
        /* Nobody is left to report a failure to: the logger is tearing this sink down. */
        pthread_mutex_lock(&fs->lock);
        file_flush_locked(fs);
        pthread_mutex_unlock(&fs->lock);
        close(fs->fd);
    }
    ksock_buf_free(&fs->buf);
    pthread_mutex_destroy(&fs->lock);
    free(fs->path);
    free(fs);
}

static void file_set_format(void *inst, ksock_log_format_t fmt)
{
    file_sink_t *fs = inst;
    pthread_mutex_lock(&fs->lock);
    fs->format = fmt;
    pthread_mutex_unlock(&fs->lock);
}

static int file_write(void *inst, const ksock_log_record_t *rec)
{
    file_sink_t *fs = inst;
    pthread_mutex_lock(&fs->lock);
    size_t before = fs->buf.len;
    if (ksock_log_record_format(rec, fs->format, &fs->buf) != 0) {
        /* Whatever was appended before the failure is not a whole line. */
        fs->buf.len = before;
        if (fs->buf.data) fs->buf.data[before] = '\0';
        pthread_mutex_unlock(&fs->lock);
        /* The core counts (and reports) a record that write() refuses. */
        return KSOCK_E_NOMEM;
    }
    fs->buffered++;
    if (fs->buf.len >= fs->buffer_size || rec->level >= KSOCK_LOG_ERROR) file_flush_locked(fs);
    pthread_mutex_unlock(&fs->lock);
    /* A failed write(2) is counted and reported by the timer; the record was
     * accepted, so the core must not count it a second time. */
    return 0;
}

static void file_flush(void *inst)
{
    file_sink_t *fs = inst;
    pthread_mutex_lock(&fs->lock);
    file_flush_locked(fs);
    pthread_mutex_unlock(&fs->lock);
}

/*
 * SIGHUP / logrotate: what is buffered goes to the old file (it belongs
 * there: it was logged before the rotation), then the path is opened anew.
 * If the new open fails the sink keeps writing to the old descriptor:
 * records in a renamed file beat records lost, and the failure is reported.
 */
static void file_reopen(void *inst)
{
    file_sink_t *fs = inst;
    int fd = file_open(fs->path, fs->mode);
    int err = errno;
    pthread_mutex_lock(&fs->lock);
    file_flush_locked(fs);
    if (fd < 0) {
        /* Reported at the next tick; every failed reopen is, since each
         * follows an operator's action (one SIGHUP). */
        fs->errors++;
        fs->reopen_errno = err;
        pthread_mutex_unlock(&fs->lock);
        return;
    }
    int old = fs->fd;
    fs->fd = fd;
    pthread_mutex_unlock(&fs->lock);
    close(old);
}

static void file_stats(void *inst, uint64_t *written, uint64_t *dropped, uint64_t *errors)
{
    file_sink_t *fs = inst;
    pthread_mutex_lock(&fs->lock);
    *written = fs->written;
    *dropped = fs->dropped;
    *errors = fs->errors;
    pthread_mutex_unlock(&fs->lock);
}

static const ksock_logsink_vtable_t file_vtable = {
    .size = sizeof(ksock_logsink_vtable_t),
    .create = file_create,
    .destroy = file_destroy,
    .set_format = file_set_format,
    .write = file_write,
    .flush = file_flush,
    .reopen = file_reopen,
    .stats = file_stats,
};

static const ksock_plugin_desc_t file_desc = {
    KSOCK_PLUGIN_HEADER(KSOCK_PLUGIN_LOGSINK),
    .name = "file",
    .version = KSOCK_VERSION_STRING,
    .description = "Append log records to a file (buffered; reopened on SIGHUP)",
    .options = file_options,
    .options_struct_size = sizeof(file_opts_t),
    .vtable = &file_vtable,
};

KSOCK_PLUGIN_DEFINE(logsink_file, file_desc)
