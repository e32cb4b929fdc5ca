/*
 * The value model: the C form of the spec's "message: any".
 *
 * A value is null, bool, int64, double, string (UTF-8), bytes, array or map
 * (string keys, insertion order kept, duplicates refused). Values are
 * immutable once built and shared by reference count: ksock_value_ref()
 * adds a reference, ksock_value_unref() drops one and frees at zero.
 * Functions that return a new value give the caller one reference.
 * Containers take ownership of the reference passed to them ("steal").
 * Build bottom-up: once a container has been added to another container it
 * is frozen, and adding to it gives KSOCK_E_INVAL (this makes cycles
 * impossible and keeps every container's depth exact).
 * Not thread-safe while being built; safe to read from several threads
 * once built (the reference count is atomic).
 */
#ifndef KSOCK_VALUE_H
#define KSOCK_VALUE_H

#include <ksock/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ksock_value_s ksock_value_t;

typedef enum {
    KSOCK_VALUE_NULL = 0,
    KSOCK_VALUE_BOOL,
    KSOCK_VALUE_INT,
    KSOCK_VALUE_DOUBLE,
    KSOCK_VALUE_STRING,
    KSOCK_VALUE_BYTES,
    KSOCK_VALUE_ARRAY,
    KSOCK_VALUE_MAP
} ksock_value_type_t;

/*
 * Hard nesting ceiling enforced by the builders, whatever the limits say:
 * it bounds the recursion of encoders, ksock_value_equal() and the
 * destructor. A decoder's max_depth above it is treated as this value.
 */
#define KSOCK_VALUE_MAX_DEPTH 512

/* Limits enforced by every decoder (builders enforce only KSOCK_VALUE_MAX_DEPTH). */
typedef struct ksock_value_limits_s {
    size_t size;         /* sizeof(ksock_value_limits_t) */
    uint32_t max_depth;  /* nesting of arrays/maps (ksock_value_depth); default 64 */
    uint64_t max_string; /* bytes in one string or byte string; default 16 MiB */
    uint64_t max_items;  /* elements in one array or map; default 1M */
    uint64_t max_total;  /* bytes of input a decoder accepts; default 64 MiB */
} ksock_value_limits_t;

/* The defaults above. */
KSOCK_EXTERN void ksock_value_limits_default(ksock_value_limits_t *l);

/*
 * `lim`, or the defaults when `lim` is NULL (decoders receive NULL for
 * "no caller limits"). The defaults are static storage.
 */
KSOCK_EXTERN const ksock_value_limits_t *
ksock_value_limits_or_default(const ksock_value_limits_t *lim);

/* Constructors: NULL only on allocation failure (or invalid UTF-8 for strings). */
KSOCK_EXTERN ksock_value_t *ksock_value_null(void);
KSOCK_EXTERN ksock_value_t *ksock_value_bool(bool b);
KSOCK_EXTERN ksock_value_t *ksock_value_int(int64_t i);
KSOCK_EXTERN ksock_value_t *ksock_value_double(double d);
/* Copies `len` bytes of UTF-8; returns NULL if they are not valid UTF-8. */
KSOCK_EXTERN ksock_value_t *ksock_value_string(const char *s, size_t len);
KSOCK_EXTERN ksock_value_t *ksock_value_cstring(const char *s);
KSOCK_EXTERN ksock_value_t *ksock_value_bytes(const void *p, size_t len);
KSOCK_EXTERN ksock_value_t *ksock_value_array(void);
KSOCK_EXTERN ksock_value_t *ksock_value_map(void);

/*
 * Append to an array; steals `item` (also on failure). Returns 0,
 * KSOCK_E_INVAL (not an array, frozen, item == arr), KSOCK_E_LIMIT (the
 * result would nest deeper than KSOCK_VALUE_MAX_DEPTH) or KSOCK_E_NOMEM.
 */
KSOCK_EXTERN int ksock_value_array_push(ksock_value_t *arr, ksock_value_t *item);
/*
 * Add a key to a map; copies the key, steals `item` (also on failure).
 * Returns 0, KSOCK_E_EXIST for a duplicate key, KSOCK_E_INVAL for a
 * non-UTF-8 key (or as for arrays), KSOCK_E_LIMIT, KSOCK_E_NOMEM.
 */
KSOCK_EXTERN int ksock_value_map_set(ksock_value_t *map, const char *key, size_t key_len,
                                     ksock_value_t *item);

KSOCK_EXTERN ksock_value_t *ksock_value_ref(ksock_value_t *v);
KSOCK_EXTERN void ksock_value_unref(ksock_value_t *v);

/* Accessors: borrowed results, valid while the value lives. */
KSOCK_EXTERN ksock_value_type_t ksock_value_type(const ksock_value_t *v);
KSOCK_EXTERN const char *ksock_value_type_name(ksock_value_type_t t);
KSOCK_EXTERN bool ksock_value_get_bool(const ksock_value_t *v);
KSOCK_EXTERN int64_t ksock_value_get_int(const ksock_value_t *v);
KSOCK_EXTERN double ksock_value_get_double(const ksock_value_t *v);
/* String or bytes contents; *len receives the length. Strings are NUL-terminated. */
KSOCK_EXTERN const char *ksock_value_get_string(const ksock_value_t *v, size_t *len);
KSOCK_EXTERN const void *ksock_value_get_bytes(const ksock_value_t *v, size_t *len);
/* Number of array elements / map entries; 0 for scalars. */
KSOCK_EXTERN size_t ksock_value_count(const ksock_value_t *v);
KSOCK_EXTERN const ksock_value_t *ksock_value_array_get(const ksock_value_t *v, size_t i);
/* i-th map entry in insertion order; *key and *key_len receive the key. */
KSOCK_EXTERN const ksock_value_t *ksock_value_map_at(const ksock_value_t *v, size_t i,
                                                     const char **key, size_t *key_len);
KSOCK_EXTERN const ksock_value_t *ksock_value_map_get(const ksock_value_t *v, const char *key);
/* Same with an explicit key length (keys may contain NUL). */
KSOCK_EXTERN const ksock_value_t *ksock_value_map_getn(const ksock_value_t *v, const char *key,
                                                       size_t key_len);
/* Nesting depth: 0 for a scalar, 1 for an array or map of scalars (or empty), and so on. */
KSOCK_EXTERN uint32_t ksock_value_depth(const ksock_value_t *v);

/* Deep equality (maps compare in order-insensitive fashion; doubles bitwise-equal or both NaN). */
KSOCK_EXTERN bool ksock_value_equal(const ksock_value_t *a, const ksock_value_t *b);

/*
 * Strict UTF-8 check (RFC 3629: no overlong forms, no surrogates, nothing
 * above U+10FFFF). Returns true if valid; otherwise false and, if
 * `bad_at` is not NULL, the offset of the first invalid byte. Thread-safe.
 */
KSOCK_EXTERN bool ksock_utf8_check(const void *p, size_t len, size_t *bad_at);

#ifdef __cplusplus
}
#endif
#endif
