/*
 * KafkaSocks error codes.
 *
 * Functions return 0 on success or one of the negative KSOCK_E_* codes.
 * Every code belongs to a class that a reconnection policy can branch on:
 * RETRIABLE (the same call may succeed later) or FATAL (it will not until
 * something is changed). The list below is the single source of truth:
 * it produces the enum, ksock_err_name(), ksock_strerror() and
 * ksock_err_is_retriable(). New codes are appended with new numbers; a code
 * never changes meaning.
 */
#ifndef KSOCK_ERROR_H
#define KSOCK_ERROR_H

#include <ksock/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* XX(name, number, class, message) */
#define KSOCK_ERRNO_MAP(XX)                                                                        \
    XX(INVAL, -1, FATAL, "invalid argument")                                                       \
    XX(NOMEM, -2, RETRIABLE, "out of memory")                                                      \
    XX(IO, -3, RETRIABLE, "input/output error")                                                    \
    XX(NOENT, -4, FATAL, "no such file or entry")                                                  \
    XX(CONFIG, -5, FATAL, "invalid configuration")                                                 \
    XX(PLUGIN, -6, FATAL, "plugin refused")                                                        \
    XX(ABI, -7, FATAL, "plugin ABI mismatch")                                                      \
    XX(EXIST, -8, FATAL, "already exists")                                                         \
    XX(AGAIN, -9, RETRIABLE, "resource temporarily unavailable")                                   \
    XX(TIMEDOUT, -10, RETRIABLE, "timed out")                                                      \
    XX(CONNREFUSED, -11, RETRIABLE, "connection refused")                                          \
    XX(CONNRESET, -12, RETRIABLE, "connection reset by peer")                                      \
    XX(CLOSED, -13, RETRIABLE, "connection closed")                                                \
    XX(TLS, -14, FATAL, "TLS error")                                                               \
    XX(AUTH, -15, FATAL, "authentication failed")                                                  \
    XX(FORBIDDEN, -16, FATAL, "permission denied")                                                 \
    XX(PROTO, -17, FATAL, "protocol error")                                                        \
    XX(TOOBIG, -18, FATAL, "message too large")                                                    \
    XX(DECODE, -19, FATAL, "malformed input")                                                      \
    XX(ENCODE, -20, FATAL, "value cannot be encoded")                                              \
    XX(UNSUPPORTED, -21, FATAL, "operation not supported")                                         \
    XX(LIMIT, -22, FATAL, "limit exceeded")                                                        \
    XX(QUEUE_FULL, -23, RETRIABLE, "queue full")                                                   \
    XX(STATE, -24, FATAL, "invalid state for this operation")                                      \
    XX(CANCELED, -25, RETRIABLE, "operation canceled")                                             \
    XX(SHUTDOWN, -26, FATAL, "runtime is shutting down")                                           \
    XX(KAFKA, -27, RETRIABLE, "Kafka error")                                                       \
    XX(KAFKA_FATAL, -28, FATAL, "fatal Kafka error")                                               \
    XX(UNKNOWN_TOPIC, -29, FATAL, "unknown topic or partition")                                    \
    XX(RESOLVE, -30, RETRIABLE, "host name resolution failed")                                     \
    XX(INTERNAL, -31, FATAL, "internal error")                                                     \
    XX(SKIPPED, -32, RETRIABLE, "records skipped")

typedef enum {
    KSOCK_OK = 0,
#define KSOCK__ERR_ENUM(name, num, cls, msg) KSOCK_E_##name = (num),
    KSOCK_ERRNO_MAP(KSOCK__ERR_ENUM)
#undef KSOCK__ERR_ENUM
} ksock_err_t;

typedef enum { KSOCK_ERRCLASS_FATAL = 0, KSOCK_ERRCLASS_RETRIABLE = 1 } ksock_errclass_t;

/* "KSOCK_E_TIMEDOUT" for KSOCK_E_TIMEDOUT; "KSOCK_E_UNKNOWN" for a code not in the list. */
KSOCK_EXTERN const char *ksock_err_name(int err);
/* A short English description. Static storage; never NULL. */
KSOCK_EXTERN const char *ksock_strerror(int err);
/* The class of a code; unknown codes are fatal. */
KSOCK_EXTERN ksock_errclass_t ksock_err_class(int err);
/* Shorthand for ksock_err_class(err) == KSOCK_ERRCLASS_RETRIABLE. */
KSOCK_EXTERN bool ksock_err_is_retriable(int err);
/* Map an errno value (ENOENT, ECONNREFUSED, ...) onto the closest KSOCK_E_* code. */
KSOCK_EXTERN int ksock_err_from_errno(int errnum);

/*
 * An error as delivered to the handler registered with ksock_on_error()
 * (spec VI `onError`). Borrowed: valid during the callback only.
 */
typedef struct ksock_error_s {
    size_t size;           /* sizeof(ksock_error_t) as compiled into the library */
    int code;              /* KSOCK_E_* */
    ksock_errclass_t cls;  /* retriable or fatal */
    const char *component; /* "core", "kafka", "plugin:logsink_http", ... */
    const char *message;   /* human-readable detail */
} ksock_error_t;

typedef void (*ksock_error_cb)(ksock_runtime_t *rt, const ksock_error_t *err, void *data);

#ifdef __cplusplus
}
#endif
#endif
