/*
 * A fake in-process transport for the bridge tests (test-bridge.c).
 *
 * The transport is not what those tests are about, so it is replaced by a
 * plugin of kind transport that talks to no network: the test injects the
 * events a real transport would deliver (handshake, open, message, the
 * peer's close) on the loop thread, and the fake records every frame the
 * bridge sends and every close it asks for. The bridge, the serializer, the
 * authenticator and the producer are the real ones.
 *
 * fake_transport.c is compiled into the test program as a built-in plugin
 * (KSOCK_PLUGIN_BUILTIN) and registered with
 * ksock_plugins_register_builtin(), so the loader checks its descriptor and
 * the bridge gets it as a plugin instance like ksockd gets `ws`. The test
 * reaches the state below through the instance's `inst` pointer.
 *
 * Like the `ws` transport, close() and stop() deliver the resulting
 * on_close events later, posted to the loop (ksock_runtime_post), never
 * from inside the call. send_many() (ABI 1.2) is a loop over send(): each
 * frame it queues is recorded as send() records it.
 */
#ifndef KSOCK_TEST_FAKE_TRANSPORT_H
#define KSOCK_TEST_FAKE_TRANSPORT_H

#include <ksock/ksock.h>

#define FAKE_TRANSPORT_NAME     "fake"
#define FAKE_TRANSPORT_V10_NAME "fake10" /* the same, as built for ABI 1.0: no pause_read */
#define FAKE_MAX_CONNS          16

typedef enum {
    FAKE_CONN_FREE = 0,
    FAKE_CONN_OPEN,    /* on_open delivered */
    FAKE_CONN_CLOSING, /* the bridge asked for a close; on_close is posted */
    FAKE_CONN_CLOSED   /* on_close delivered */
} fake_conn_state_t;

typedef struct fake_conn_s {
    ksock_conn_id_t id;
    void *conn_data; /* what on_handshake set */
    fake_conn_state_t state;
    size_t queued; /* frames accepted by send() */
    /* pause_read: while paused, injected messages wait here (in order) instead of on_message. */
    bool paused;
    struct fake_held_s *held_head, *held_tail;
    size_t held;     /* messages waiting */
    size_t pauses;   /* pause_read(true) calls that paused it */
    bool resume_due; /* a resume is posted: held messages are delivered from the loop */
} fake_conn_t;

/* A frame the bridge sent, copied. */
typedef struct fake_frame_s {
    ksock_conn_id_t conn;
    ksock_frame_type_t type;
    char *data; /* NUL-terminated copy */
    size_t len;
} fake_frame_t;

/* A close the bridge asked for. */
typedef struct fake_close_s {
    ksock_conn_id_t conn;
    int code;
    char reason[128];
} fake_close_t;

typedef struct fake_transport_s {
    ksock_runtime_t *rt;
    ksock_transport_events_t ev; /* from listen() */
    bool listening, stopped;
    ksock_conn_id_t next_id;
    fake_conn_t conns[FAKE_MAX_CONNS];
    fake_frame_t *frames;
    size_t nframes, cap;
    fake_close_t closes[FAKE_MAX_CONNS * 2];
    size_t ncloses;
    size_t send_limit; /* frames per connection before send() says KSOCK_E_QUEUE_FULL; 0: none */
    size_t posted;     /* on_close events posted and not yet delivered */
    void *posted_list; /* events posted to the loop (fake_transport.c), orphaned by destroy */
} fake_transport_t;

#ifdef __cplusplus
extern "C" {
#endif

/* The plugin's entry (KSOCK_PLUGIN_BUILTIN): pass to ksock_plugins_register_builtin(). */
const ksock_plugin_desc_t *ksock_builtin_fake_transport(void);
/* The same transport as a plugin built for ABI 1.0 would be: a vtable that ends at stop. */
const ksock_plugin_desc_t *fake_transport_v10_entry(void);

/*
 * A client connects: on_handshake with `hs` (subprotocol, headers...; size
 * and peer_addr filled in if unset), then, if accepted, on_open with the
 * subprotocol. Returns the connection id (> 0), or the handshake's refusal
 * (a negative KSOCK_E_* code) with errstr filled.
 */
int64_t fake_accept(fake_transport_t *f, const ksock_handshake_t *hs, char *errstr,
                    size_t errstr_size);
/*
 * A message from the client; NUL-terminated text frame. While the bridge
 * has paused reading the connection, the message is held, as a real
 * transport holds what it has read, and delivered after the resume.
 */
void fake_message(fake_transport_t *f, ksock_conn_id_t id, const char *text);
/* The same with explicit bytes and frame type. */
void fake_message_bytes(fake_transport_t *f, ksock_conn_id_t id, ksock_frame_type_t type,
                        const void *data, size_t len);
/* The client read everything queued: send() accepts again and on_writable fires now. */
void fake_drain(fake_transport_t *f, ksock_conn_id_t id);
/* The client closes (or the socket dies): on_close now. */
void fake_peer_close(fake_transport_t *f, ksock_conn_id_t id, int code);

fake_conn_t *fake_conn(fake_transport_t *f, ksock_conn_id_t id);
/* Frames sent to `id` so far, and the k-th of them (NULL past the end). */
size_t fake_nframes(const fake_transport_t *f, ksock_conn_id_t id);
const fake_frame_t *fake_frame(const fake_transport_t *f, ksock_conn_id_t id, size_t k);
/* The close the bridge asked for on `id`, or NULL. */
const fake_close_t *fake_close_of(const fake_transport_t *f, ksock_conn_id_t id);

#ifdef __cplusplus
}
#endif
#endif
