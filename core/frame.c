/*
 * Reference-counted frames: fan-out serializes a record once per
 * serializer and shares the bytes across every connection's send queue.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

struct ksock_frame_s {
    atomic_uint refs;
    ksock_frame_type_t type;
    size_t len;
    void *data; /* points at inline storage or an adopted buffer */
    bool adopted;
    unsigned char inline_data[];
};

ksock_frame_t *ksock_frame_new(ksock_frame_type_t type, const void *data, size_t len)
{
    ksock_frame_t *f = malloc(sizeof(*f) + len);
    if (f == NULL) return NULL;
    atomic_init(&f->refs, 1);
    f->type = type;
    f->len = len;
    f->data = f->inline_data;
    f->adopted = false;
    if (len) memcpy(f->inline_data, data, len);
    return f;
}

ksock_frame_t *ksock_frame_adopt(ksock_frame_type_t type, void *data, size_t len)
{
    ksock_frame_t *f = malloc(sizeof(*f));
    if (f == NULL) return NULL;
    atomic_init(&f->refs, 1);
    f->type = type;
    f->len = len;
    f->data = data;
    f->adopted = true;
    return f;
}

ksock_frame_t *ksock_frame_ref(ksock_frame_t *f)
{
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
    return f;
}

void ksock_frame_unref(ksock_frame_t *f)
{
    if (f == NULL) return;
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1) return;
    if (f->adopted) free(f->data);
    free(f);
}

const void *ksock_frame_data(const ksock_frame_t *f, size_t *len)
{
    if (len) *len = f->len;
    return f->data;
}

ksock_frame_type_t ksock_frame_type(const ksock_frame_t *f)
{
    return f->type;
}
