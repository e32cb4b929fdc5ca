/*
 * ksock-bench internals (tools/bench/ksock_bench.c is the driver; docs/benchmarks.md, Fan-out).
 *
 * kb_ws.c     the WebSocket client: epoll, non-blocking connect, the upgrade, masked client
 *             frames, a frame parser that takes several frames per read and frames split across
 *             reads. One loop per I/O thread; every connection belongs to one thread.
 * kb_proto.c  envelopes: the few the generator sends (subscribe, publish) and a cheap reader of
 *             the ones it receives (record, ack, subscribed, error, pong), JSON and MessagePack;
 *             the latency histogram.
 * kb_kafka.c  librdkafka: topic creation, high watermarks, the producer thread, the raw baseline.
 */
#ifndef KB_H
#define KB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

enum kb_mode { KB_FANOUT, KB_IDLE, KB_PUBLISH };
enum kb_fmt { KB_JSON, KB_MSGPACK };

/* What a received envelope was; kb_proto.c's reader fills it. */
enum kb_op { KB_OP_OTHER, KB_OP_RECORD, KB_OP_ACK, KB_OP_SUBSCRIBED, KB_OP_ERROR, KB_OP_PONG };
typedef struct {
    enum kb_op op;
    int32_t partition; /* record: -1 when absent */
    int64_t offset;    /* record: -1 when absent */
    int64_t sent_ns;   /* record: the digits the value starts with; ack: the id; -1 when absent */
    int32_t error_code;
    /* subscribed, error -32: the `offsets` entries go to offs[partition] when the caller set
     * offs (partitions >= ncap are counted in noffs but not stored) */
    int64_t *offs;
    int ncap, noffs;
} kb_env_t;

/* Log-bucketed latency histogram (HDR-style, 64 sub-buckets per power of two: ~1.6 % wide). */
#define KB_HIST_BUCKETS (40 * 64)
typedef struct {
    uint64_t n[KB_HIST_BUCKETS];
    uint64_t count;
    int64_t max;
} kb_hist_t;

enum { KB_C_IDLE, KB_C_CONNECTING, KB_C_HANDSHAKE, KB_C_OPEN, KB_C_CLOSED };

/* One connection: kept small (10,000 of them must fit); the buffers exist only while needed. */
typedef struct kb_conn {
    int fd;
    uint8_t state;    /* KB_C_* (kb_ws.c) */
    uint8_t thread;   /* index of the owning I/O thread */
    uint8_t want_out; /* EPOLLOUT registered */
    uint8_t hs_done;  /* the 101 was read */
    uint32_t rlen;    /* bytes in rbuf: a partial frame (or handshake) carried to the next read */
    uint8_t *rbuf;
    uint32_t wlen, woff; /* unsent bytes wbuf[woff..wlen) */
    uint8_t *wbuf;
    uint32_t wcap;
    uint32_t received; /* records, first copies only */
    uint32_t dups, gaps;
    uint32_t sent, acked; /* publish mode */
    int64_t *next;        /* fanout: expected next offset per partition; -1 = none yet */
} kb_conn_t;

/* Counters one I/O thread publishes for the driver (relaxed stores, once per loop turn). */
typedef struct {
    _Atomic uint64_t open, subscribed, sub_errors, closed, records, acks, errors, dups, gaps,
        bad_frames, skipped, start_moved, reads;
    _Atomic int64_t first_ns, last_ns; /* CLOCK_MONOTONIC of the first/last record or ack */
} kb_counts_t;

typedef struct kb_thread {
    int index;
    int ep;
    pthread_t tid;
    kb_conn_t *conns; /* this thread's slice */
    int nconns;
    int next_connect; /* index of the next connection to open */
    int connecting;   /* connections between connect() and 101 */
    uint8_t *buf;     /* the read buffer, KB_RBUF bytes */
    uint8_t *scratch; /* frames being built */
    uint64_t rng;
    kb_hist_t hist;
    /* plain counters, copied to `pub` once per loop turn */
    uint64_t records, acks, errors, dups, gaps, subscribed, sub_errors, closed, open, bad_frames;
    uint64_t reads;       /* recv() calls that returned data */
    uint64_t skipped;     /* error -32 notices (records skipped for a slow client) */
    uint64_t start_moved; /* subscribed offsets other than the watermarks read before */
    int64_t *offs;        /* offsets of the envelope being read, per partition (-1: none) */
    int64_t first_ns, last_ns;
    kb_counts_t pub;
    struct kb_run *run;
} kb_thread_t;

/* The whole run's parameters and shared state. */
typedef struct kb_run {
    enum kb_mode mode;
    enum kb_fmt fmt;
    const char *host, *path;
    int port;
    const char *topic;
    const char *bootstrap;
    int nconns, nthreads, partitions;
    int connect_window; /* handshakes in progress per thread at most */
    int coalesce_us;    /* pause after a turn with few connections ready (kb_ws.c) */
    int subscribe;      /* send subscribe after the upgrade (fanout, idle) */
    long records;       /* fanout: produced; publish: in total over the connections */
    int value_size;
    int window;  /* publish: in flight per connection */
    double rate; /* fanout: records/s, 0 = as fast as possible */
    int linger_ms;
    int64_t *start_offsets; /* fanout: high watermarks when the run began, per partition */
    kb_thread_t *threads;
    kb_conn_t *conns;
    _Atomic int go;        /* publish: start sending */
    _Atomic int stop;      /* I/O threads leave their loop */
    _Atomic long pub_next; /* publish: records handed out so far */
} kb_run_t;

/* ---- kb_ws.c ---- */
int kb_ws_start(kb_run_t *run, char *err, size_t errlen);
void kb_ws_join(kb_run_t *run);
void kb_ws_close_all(kb_run_t *run);
void kb_totals(kb_run_t *run, kb_counts_t *sum); /* sum of the threads' published counters */
int64_t kb_mono_ns(void);
int64_t kb_real_ns(void);
void kb_ws_feed(kb_thread_t *t, kb_conn_t *c, const uint8_t *p, size_t n); /* tests */
#define KB_RBUF (1024 * 1024 + 64) /* read buffer per thread: the largest frame + header */

/* ---- kb_proto.c ---- */
void kb_proto_init(const char *topic); /* before the I/O threads start */
size_t kb_build_subscribe(enum kb_fmt f, const char *topic, uint8_t *out);
size_t kb_build_publish(enum kb_fmt f, const char *topic, int64_t id, int value_size, uint8_t *out);
int kb_read_env(enum kb_fmt f, const uint8_t *p, size_t n, kb_env_t *e);
void kb_value_fill(uint8_t *out, int size, int64_t sent_ns);
void kb_hist_add(kb_hist_t *h, int64_t v);
void kb_hist_merge(kb_hist_t *into, const kb_hist_t *h);
int64_t kb_hist_pct(const kb_hist_t *h, double pct);

/* ---- kb_kafka.c ---- */
typedef struct {
    void *rk;              /* the rd_kafka_t between kb_producer_open and kb_produce */
    int raw;               /* the baseline: librdkafka's default linger, no rate */
    long produced, failed; /* delivery reports */
    double cpu_s;          /* the producer thread's CPU (librdkafka's own threads apart) */
    int64_t t0_ns, t1_ns;  /* monotonic: first send, last delivery report */
    char err[256];
} kb_prod_result_t;
int kb_kafka_prepare(kb_run_t *run, kb_prod_result_t *warm, char *err, size_t errlen);
int kb_producer_open(kb_run_t *run, kb_prod_result_t *res, int raw);
int kb_produce(kb_run_t *run, kb_prod_result_t *res); /* blocks; destroys the producer */
void kb_producer_close(kb_prod_result_t *res);

#endif
