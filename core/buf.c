/*
 * Growable buffers and caller-owned error strings.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *ksock_version(void)
{
    return KSOCK_VERSION_STRING;
}

int ksock_buf_reserve(ksock_buf_t *b, size_t extra)
{
    /* +1 keeps room for a terminating NUL after the data. */
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) return KSOCK_E_NOMEM;
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (p == NULL) return KSOCK_E_NOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int ksock_buf_append(ksock_buf_t *b, const void *p, size_t n)
{
    if (ksock_buf_reserve(b, n) != 0) return KSOCK_E_NOMEM;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int ksock_buf_appendf(ksock_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    char small[256];
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) return KSOCK_E_INVAL;
    if ((size_t)n < sizeof(small)) return ksock_buf_append(b, small, (size_t)n);
    if (ksock_buf_reserve(b, (size_t)n) != 0) return KSOCK_E_NOMEM;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void ksock_buf_free(ksock_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void ksock_errstr_set(char *errstr, size_t errstr_size, const char *fmt, ...)
{
    if (errstr == NULL || errstr_size == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
}

char *ksock__strdup(const char *s)
{
    if (s == NULL) return NULL;
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p == NULL) return NULL;
    memcpy(p, s, n);
    return p;
}
