/*
 * Log-sink interface: a log record in. The console sink is built into the
 * core; file, syslog and http are plugins (plugins/logsink_*).
 *
 * The core calls write() under its logger lock, so a sink sees one call at
 * a time, but not always from the loop thread (any thread may log). A sink
 * must never block for long in write(): one that talks to the network
 * queues the record (bounded) and sends from the loop.
 * The config keys "type", "name", "level" and "format" of a sink belong to
 * the core (they are not in the plugin's schema): the core filters by level
 * and tells the sink its format through set_format() before the first write.
 */
#ifndef KSOCK_LOGSINK_H
#define KSOCK_LOGSINK_H

#include <ksock/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ksock_logsink_vtable_s {
    KSOCK_VTABLE_HEAD;
    /* The record format this instance should write. Called once after create. */
    void (*set_format)(void *inst, ksock_log_format_t fmt);
    /*
     * Take one record. Must not block on I/O that can hang (network).
     * Returns 0, or a negative code when the record was dropped; the core
     * counts drops and reports the first of a run through the error handler.
     */
    int (*write)(void *inst, const ksock_log_record_t *rec);
    /*
     * Write out buffered records. May be NULL. Loop thread, under the
     * logger lock: records logged from here are dropped, so report
     * problems later (from a timer), not from inside flush.
     */
    void (*flush)(void *inst);
    /* Reopen the destination (SIGHUP / logrotate). May be NULL. Same rules as flush. */
    void (*reopen)(void *inst);
    /*
     * Counters for operators. May be NULL. Any thread, under the logger lock.
     * `written`: records the sink delivered (replaces the core's count);
     * `dropped`: records lost AFTER write() accepted them (queue overflow,
     * failed delivery). The core adds the records whose write() returned an
     * error itself, so a sink must not count those again.
     */
    void (*stats)(void *inst, uint64_t *written, uint64_t *dropped, uint64_t *errors);
} ksock_logsink_vtable_t;

#ifdef __cplusplus
}
#endif
#endif
