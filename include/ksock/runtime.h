/*
 * The runtime: one libevent loop and everything that hangs off it.
 *
 * Every callback that user code or a plugin receives from the core runs on
 * the loop thread, i.e. the thread that calls ksock_runtime_run(). The only
 * functions that may be called from other threads are marked "thread-safe".
 * No global state: two runtimes in one process are independent.
 */
#ifndef KSOCK_RUNTIME_H
#define KSOCK_RUNTIME_H

#include <ksock/common.h>
#include <ksock/error.h>

#ifdef __cplusplus
extern "C" {
#endif

struct event_base; /* libevent; plugins on the core loop may use it */

typedef struct ksock_config_s ksock_config_t; /* see config.h */

/*
 * Create a runtime with its own event_base. Logging starts with a console
 * sink at "info" in text format until ksock_runtime_configure() or
 * ksock_log_configure() says otherwise.
 * On success *rtp is owned by the caller: release with ksock_runtime_destroy().
 * Errors: KSOCK_E_NOMEM, KSOCK_E_IO (errstr explains).
 */
KSOCK_EXTERN int ksock_runtime_new(ksock_runtime_t **rtp, char *errstr, size_t errstr_size);

/*
 * Apply a validated configuration: plugin search path, logging and its
 * sinks. Loads the plugins that the config names. The runtime keeps a
 * reference to `cfg` (it must outlive the runtime, or be handed over with
 * ksock_runtime_adopt_config()). Errors: KSOCK_E_CONFIG, KSOCK_E_PLUGIN,
 * KSOCK_E_ABI, KSOCK_E_NOENT with errstr naming file/plugin/key; KSOCK_E_NOMEM.
 */
KSOCK_EXTERN int ksock_runtime_configure(ksock_runtime_t *rt, const ksock_config_t *cfg,
                                         char *errstr, size_t errstr_size);

/*
 * Give ownership of `cfg` to the runtime; it is freed by ksock_runtime_destroy().
 * Adopting the same document again is a no-op. Allocates nothing, so it cannot fail.
 */
KSOCK_EXTERN void ksock_runtime_adopt_config(ksock_runtime_t *rt, ksock_config_t *cfg);

/*
 * Run the loop until ksock_runtime_stop(). Returns 0, or a negative code if
 * the loop could not run. Must be called from one thread only: that thread
 * becomes the loop thread.
 */
KSOCK_EXTERN int ksock_runtime_run(ksock_runtime_t *rt);

/* Run one non-blocking iteration of the loop (tests and embedding). */
KSOCK_EXTERN int ksock_runtime_run_once(ksock_runtime_t *rt, bool block);

/* Ask the loop to return from ksock_runtime_run(). Thread-safe and async-signal-safe. */
KSOCK_EXTERN void ksock_runtime_stop(ksock_runtime_t *rt);

/*
 * Destroy the runtime: stops I/O, destroys plugin instances (log sinks last,
 * so their final records are written), finishes plugins, dlclose()s them.
 * Call from the loop thread after run() returned. NULL is a no-op.
 */
KSOCK_EXTERN void ksock_runtime_destroy(ksock_runtime_t *rt);

/*
 * The libevent base of the loop. Borrowed: valid until ksock_runtime_destroy().
 * Loop thread only: the base is created without locking (one thread owns it);
 * from another thread, ksock_runtime_post() the work instead.
 */
KSOCK_EXTERN struct event_base *ksock_runtime_event_base(ksock_runtime_t *rt);

/* True when called on the loop thread (or when the loop has not run yet). Thread-safe. */
KSOCK_EXTERN bool ksock_runtime_on_loop_thread(const ksock_runtime_t *rt);

/* User data slot: unused by the library. */
KSOCK_EXTERN void ksock_runtime_set_data(ksock_runtime_t *rt, void *data);
KSOCK_EXTERN void *ksock_runtime_get_data(const ksock_runtime_t *rt);

/* --- Cross-thread work ------------------------------------------------ */

typedef void (*ksock_work_cb)(ksock_runtime_t *rt, void *arg);

/*
 * Queue `cb(rt, arg)` to run on the loop thread. Thread-safe; never runs the
 * callback inside this call, even from the loop thread. Callbacks run in the
 * order they were posted. `arg` stays owned by the poster; if the runtime is
 * destroyed first, pending callbacks run with the runtime shutting down so
 * they can free their arg (ksock_runtime_is_stopping() tells).
 * Errors: KSOCK_E_NOMEM, KSOCK_E_SHUTDOWN (callback not queued).
 */
KSOCK_EXTERN int ksock_runtime_post(ksock_runtime_t *rt, ksock_work_cb cb, void *arg);

/* True once destruction has begun. Thread-safe. */
KSOCK_EXTERN bool ksock_runtime_is_stopping(const ksock_runtime_t *rt);

/* --- Timers ------------------------------------------------------------ */

typedef struct ksock_timer_s ksock_timer_t;
typedef void (*ksock_timer_cb)(ksock_timer_t *t, void *data);

/*
 * Create a stopped timer on the loop. Loop thread only.
 * *tp is owned by the caller: release with ksock_timer_close().
 */
KSOCK_EXTERN int ksock_timer_init(ksock_runtime_t *rt, ksock_timer_t **tp, ksock_timer_cb cb,
                                  void *data);
/* Fire after `timeout_ms`, then every `repeat_ms` if non-zero. Restarts a running timer. */
KSOCK_EXTERN int ksock_timer_start(ksock_timer_t *t, uint64_t timeout_ms, uint64_t repeat_ms);
/* Stop; the callback will not fire again until started. */
KSOCK_EXTERN void ksock_timer_stop(ksock_timer_t *t);
/* True while armed. */
KSOCK_EXTERN bool ksock_timer_is_active(const ksock_timer_t *t);
/* Stop and free. Safe from inside the timer's own callback. NULL is a no-op. */
KSOCK_EXTERN void ksock_timer_close(ksock_timer_t *t);

/* --- Signals ----------------------------------------------------------- */

typedef struct ksock_signal_s ksock_signal_t;
typedef void (*ksock_signal_cb)(ksock_signal_t *s, int signum, void *data);

/*
 * Watch `signum` on the loop: the callback runs on the loop thread, never
 * in signal context. Loop thread only. *sp owned by the caller: release
 * with ksock_signal_close().
 */
KSOCK_EXTERN int ksock_signal_start(ksock_runtime_t *rt, ksock_signal_t **sp, int signum,
                                    ksock_signal_cb cb, void *data);
KSOCK_EXTERN void ksock_signal_close(ksock_signal_t *s);

/* --- Time -------------------------------------------------------------- */

/* Monotonic clock in nanoseconds. Thread-safe. */
KSOCK_EXTERN uint64_t ksock_now_ns(void);
/* Wall clock in nanoseconds since the Unix epoch. Thread-safe. */
KSOCK_EXTERN int64_t ksock_wallclock_ns(void);

/* --- Errors (spec VI onError) ---------------------------------------- */

/*
 * Register the runtime's error handler; replaces the previous one. The
 * handler receives every error the library reports asynchronously
 * (a plugin failing, a Kafka error, a sink dropping records...), on the
 * loop thread. NULL removes it. Errors are always logged as well.
 */
KSOCK_EXTERN void ksock_on_error(ksock_runtime_t *rt, ksock_error_cb cb, void *data);

/*
 * Report an error: logs it at "error" level under `component` and calls the
 * error handler on the loop thread. Thread-safe (from another thread the
 * handler call is posted to the loop). Out of memory: the error is still
 * logged, but the handler call is lost.
 */
KSOCK_EXTERN void ksock_report_error(ksock_runtime_t *rt, int code, const char *component,
                                     const char *fmt, ...) KSOCK_PRINTF(4, 5);

#ifdef __cplusplus
}
#endif
#endif
