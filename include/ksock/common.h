/*
 * KafkaSocks: shared definitions for every public header.
 *
 * The path of each installed header is part of the API: include
 * <ksock/ksock.h> for everything, or the single interface you need.
 */
#ifndef KSOCK_COMMON_H
#define KSOCK_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Symbols of libksock are hidden unless marked; plugins mark only their entry. */
#if defined(__GNUC__) || defined(__clang__)
#define KSOCK_VISIBLE           __attribute__((visibility("default")))
#define KSOCK_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define KSOCK_VISIBLE
#define KSOCK_PRINTF(fmt, args)
#endif

#ifdef KSOCK_BUILDING_LIBRARY
#define KSOCK_EXTERN KSOCK_VISIBLE
#else
#define KSOCK_EXTERN
#endif

#define KSOCK_VERSION_MAJOR  0
#define KSOCK_VERSION_MINOR  1
#define KSOCK_VERSION_PATCH  0
#define KSOCK_VERSION_STRING "0.1.0"

/* Library version as a string, e.g. "0.1.0". Static storage. */
KSOCK_EXTERN const char *ksock_version(void);

/* The runtime handle: owns the loop, the logger, the plugin registry. See runtime.h. */
typedef struct ksock_runtime_s ksock_runtime_t;

/*
 * True when a caller's struct that starts with `size_t size` is big enough
 * to hold `field`: structs that cross the boundary grow only at the end,
 * and fields added later are read only when the caller's struct has them.
 */
#define KSOCK_HAS_FIELD(s, type, field)                                                            \
    ((s)->size >= offsetof(type, field) + sizeof(((type *)0)->field))

/*
 * A growable byte buffer. The owner of the struct owns `data` and frees it
 * with ksock_buf_free(). Functions that fill a caller's buffer append to it.
 */
typedef struct ksock_buf_s {
    char *data;
    size_t len;
    size_t cap;
} ksock_buf_t;

#define KSOCK_BUF_INIT                                                                             \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

/* Make room for `extra` more bytes. Returns 0 or KSOCK_E_NOMEM. */
KSOCK_EXTERN int ksock_buf_reserve(ksock_buf_t *b, size_t extra);
/* Append `n` bytes. Returns 0 or KSOCK_E_NOMEM. */
KSOCK_EXTERN int ksock_buf_append(ksock_buf_t *b, const void *p, size_t n);
/* Append a formatted string (not NUL-counted in len; data stays NUL-terminated). */
KSOCK_EXTERN int ksock_buf_appendf(ksock_buf_t *b, const char *fmt, ...) KSOCK_PRINTF(2, 3);
/* Release the storage and reset to empty. */
KSOCK_EXTERN void ksock_buf_free(ksock_buf_t *b);

/*
 * Copy a formatted message into a caller-owned error buffer (librdkafka's
 * errstr convention). Safe with errstr == NULL or errstr_size == 0.
 */
KSOCK_EXTERN void ksock_errstr_set(char *errstr, size_t errstr_size, const char *fmt, ...)
    KSOCK_PRINTF(3, 4);

#ifdef __cplusplus
}
#endif
#endif
