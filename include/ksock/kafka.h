/*
 * Kafka producer and consumer on the runtime loop (spec IV,
 * KafkaIntegrationManager, and the Kafka half of spec V,
 * configureKafkaSecurity).
 *
 * Built on librdkafka. Each producer or consumer is an opaque handle created
 * on a ksock_runtime_t. librdkafka's own threads do the network I/O; its
 * results reach the loop through a file descriptor that librdkafka writes to
 * when one of its queues becomes non-empty (rd_kafka_queue_io_event_enable),
 * and the loop drains that queue in bounded batches. Every callback below
 * therefore runs on the loop thread, never inside the call that started the
 * operation, and a call that fails never fires its callback.
 *
 * Threads: every function here must be called on the loop thread unless it
 * says otherwise (the runtime's rule, see runtime.h).
 *
 * Configuration: a ksock_kafka_conf_t holds librdkafka properties as
 * strings. Any librdkafka property passes through unchanged and is checked
 * by librdkafka when the handle is created (an unknown name fails there, with
 * errstr naming it). A few keys are ours:
 *
 *   bootstrap.servers = "embedded" | "embedded:N"
 *       start librdkafka's in-process mock cluster (N brokers, default 1),
 *       shared by every handle of the runtime that names the same N. Data
 *       lives in memory only; a warning says so when the cluster starts.
 *   <secret>.file, <secret>.env
 *       read the secret property <secret> (sasl.password, ssl.key.password,
 *       ssl.keystore.password, sasl.oauthbearer.client.secret) from a file
 *       (one line, trailing newline removed) or an environment variable,
 *       when the handle is created. A config file may not hold these secrets
 *       directly (ksock_kafka_conf_set_cfg refuses them), and they are masked
 *       as "***" in every dump and log line.
 *   enable.auto.offset.store (consumer)
 *       true (default): the offset of a message is stored after its handler
 *       returned 0, not when librdkafka hands it over (at-least-once). false:
 *       the application stores offsets with ksock_kafka_consumer_store().
 *   ksock.dispatch.batch
 *       most events (producer) or messages (consumer) handled per loop
 *       wake-up before the loop serves other work (default 256, 1..100000).
 *
 * Defaults we set before the user's properties: producers get
 * enable.idempotence=true and acks=all (idempotence is left off only if the
 * user sets acks to something other than all); TLS connections get
 * ssl.endpoint.identification.algorithm=https.
 */
#ifndef KSOCK_KAFKA_H
#define KSOCK_KAFKA_H

#include <ksock/common.h>
#include <ksock/config.h>
#include <ksock/error.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ksock_kafka_conf_s ksock_kafka_conf_t;
typedef struct ksock_kafka_producer_s ksock_kafka_producer_t;
typedef struct ksock_kafka_consumer_s ksock_kafka_consumer_t;

/* librdkafka types, for the escape hatches at the end of this file. */
struct rd_kafka_s;
struct rd_kafka_mock_cluster_s;

/* ---- Properties ---------------------------------------------------------- */

/* New empty property set. *out owned by the caller: ksock_kafka_conf_free(). */
KSOCK_EXTERN int ksock_kafka_conf_new(ksock_kafka_conf_t **out);
/* Deep copy into *out (owned by the caller). Errors: KSOCK_E_NOMEM. */
KSOCK_EXTERN int ksock_kafka_conf_dup(const ksock_kafka_conf_t *conf, ksock_kafka_conf_t **out);
/* NULL is a no-op. */
KSOCK_EXTERN void ksock_kafka_conf_free(ksock_kafka_conf_t *conf);

/*
 * Set `key` to `value` (both copied; a later set of the same key wins).
 * Only the form is checked here (non-empty key, no "*.file" and "*.env" for
 * a key that is not a secret); librdkafka checks names and values at create.
 * Errors: KSOCK_E_INVAL, KSOCK_E_NOMEM, with errstr.
 */
KSOCK_EXTERN int ksock_kafka_conf_set(ksock_kafka_conf_t *conf, const char *key, const char *value,
                                      char *errstr, size_t errstr_size);

/*
 * Set several properties from a NULL-terminated list of key, value pairs:
 * {"bootstrap.servers", "localhost:9092", "linger.ms", "5", NULL}.
 * Stops at the first error (the earlier keys stay set).
 */
KSOCK_EXTERN int ksock_kafka_conf_set_list(ksock_kafka_conf_t *conf, const char *const *kv,
                                           char *errstr, size_t errstr_size);

/*
 * Set properties from a config object (the ksockd "kafka" section): every
 * member is a property. Strings pass as they are, integers and doubles as
 * their decimal text, booleans as "true"/"false", and an array of strings as
 * a comma-separated list. Each property remembers its FILE:LINE:COL, so a
 * create-time error names where the bad key came from. Secrets written
 * directly (sasl.password ...) are refused: use <secret>.file or .env.
 * `doc` may be NULL (then messages carry no position).
 * Errors: KSOCK_E_CONFIG with "FILE:LINE:COL: kafka: key \"k\": reason".
 */
KSOCK_EXTERN int ksock_kafka_conf_set_cfg(ksock_kafka_conf_t *conf, const ksock_config_t *doc,
                                          const ksock_cfg_t *obj, char *errstr, size_t errstr_size);

/* The value of `key`, or NULL. Borrowed: valid until the key is set again or conf freed. */
KSOCK_EXTERN const char *ksock_kafka_conf_get(const ksock_kafka_conf_t *conf, const char *key);

/* True for keys whose values are never shown: passwords, secrets, private keys. */
KSOCK_EXTERN bool ksock_kafka_conf_is_secret(const char *key);

/*
 * Append "key=value" lines to `out`, in the order set, with the values of
 * secret keys replaced by "***". For logs and `ksockd --check`.
 * Errors: KSOCK_E_NOMEM.
 */
KSOCK_EXTERN int ksock_kafka_conf_dump(const ksock_kafka_conf_t *conf, ksock_buf_t *out);

/* ---- Security (spec V configureKafkaSecurity) ---------------------------- */

/*
 * The C form of KafkaSecurityOptions. Zero-initialise, set `size`, fill what
 * applies; NULL strings are left unset. Translated into librdkafka
 * properties:
 *   protocol            security.protocol ("plaintext", "ssl", "sasl_plaintext",
 *                       "sasl_ssl"); NULL: derived (SASL if a mechanism is set,
 *                       TLS if any TLS field is set)
 *   ca_location         ssl.ca.location (PEM file or directory)
 *   certificate_location, key_location   ssl.certificate.location, ssl.key.location
 *   key_password_file / _env             ssl.key.password.file / .env
 *   no_hostname_verification             true sets ssl.endpoint.identification.algorithm=none
 *                                        (default: https, the name is verified)
 *   sasl_mechanism      sasl.mechanisms: "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"
 *   sasl_username       sasl.username
 *   sasl_password_file / _env            sasl.password.file / .env
 *   sasl_password       sasl.password itself, for programs that got it from
 *                       elsewhere (a vault); never from a config file
 */
typedef struct ksock_kafka_security_options_s {
    size_t size; /* sizeof(ksock_kafka_security_options_t) */
    const char *protocol;
    const char *ca_location;
    const char *certificate_location;
    const char *key_location;
    const char *key_password_file;
    const char *key_password_env;
    bool no_hostname_verification;
    const char *sasl_mechanism;
    const char *sasl_username;
    const char *sasl_password_file;
    const char *sasl_password_env;
    const char *sasl_password;
} ksock_kafka_security_options_t;

/*
 * Set the properties that `opts` describes on `conf` (borrowed; strings are
 * copied). Errors: KSOCK_E_INVAL (unknown mechanism or protocol, password
 * given two ways, SASL without a user name), with errstr.
 */
KSOCK_EXTERN int ksock_kafka_conf_set_security(ksock_kafka_conf_t *conf,
                                               const ksock_kafka_security_options_t *opts,
                                               char *errstr, size_t errstr_size);

/*
 * Runtime-wide security (the spec's global configureKafkaSecurity): every
 * producer and consumer created on `rt` afterwards starts from these
 * properties; its own conf may still override each of them. Calling it again
 * replaces the previous settings. Errors as ksock_kafka_conf_set_security().
 */
KSOCK_EXTERN int ksock_kafka_configure_security(ksock_runtime_t *rt,
                                                const ksock_kafka_security_options_t *opts,
                                                char *errstr, size_t errstr_size);

/* ---- Records ------------------------------------------------------------- */

typedef struct ksock_kafka_header_s {
    const char *name;  /* NUL-terminated */
    const void *value; /* may be NULL (a null header value) */
    size_t value_len;
} ksock_kafka_header_t;

/* Offsets with a meaning (librdkafka's logical offsets, same values). */
#define KSOCK_KAFKA_OFFSET_BEGINNING (-2)
#define KSOCK_KAFKA_OFFSET_END       (-1)
#define KSOCK_KAFKA_OFFSET_STORED    (-1000) /* the group's committed offset */
#define KSOCK_KAFKA_OFFSET_INVALID   (-1001)

/* record.flags: use record.partition instead of the partitioner. */
#define KSOCK_KAFKA_RECORD_F_PARTITION 0x1u

/*
 * A record to produce (the spec's ProducerMessage). Borrowed by the send
 * call: topic, key, value and headers are copied before it returns. A
 * zero-initialised record goes to the partition the key hashes to.
 */
typedef struct ksock_kafka_record_s {
    const char *topic;
    const void *key; /* NULL: no key */
    size_t key_len;
    const void *value; /* NULL: a null value (tombstone) */
    size_t value_len;
    const ksock_kafka_header_t *headers;
    size_t header_count;
    int32_t partition;    /* only with KSOCK_KAFKA_RECORD_F_PARTITION */
    unsigned flags;       /* KSOCK_KAFKA_RECORD_F_* */
    int64_t timestamp_ms; /* 0: now */
    void *data;           /* handed to the delivery callback as `data` */
} ksock_kafka_record_t;

/* Whether a failed record may nonetheless have been written (librdkafka's message status). */
typedef enum {
    KSOCK_KAFKA_NOT_PERSISTED = 0,
    KSOCK_KAFKA_POSSIBLY_PERSISTED = 1,
    KSOCK_KAFKA_PERSISTED = 2
} ksock_kafka_persisted_t;

/*
 * The outcome of one record (the C form of the spec's Promise). Borrowed:
 * valid during the callback only. On success err is 0 and partition/offset
 * say where the record is; on failure err is a KSOCK_E_* code, errstr says
 * why and offset is -1.
 */
typedef struct ksock_kafka_delivery_s {
    int err;            /* 0 or KSOCK_E_* */
    int kafka_err;      /* librdkafka's rd_kafka_resp_err_t, for detail */
    const char *errstr; /* NULL on success */
    const char *topic;
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms;
    const void *key;
    size_t key_len;
    const void *value;
    size_t value_len;
    ksock_kafka_persisted_t persisted;
} ksock_kafka_delivery_t;

typedef void (*ksock_kafka_delivery_cb)(ksock_kafka_producer_t *p, const ksock_kafka_delivery_t *d,
                                        void *data);

/* ---- Producer ------------------------------------------------------------ */

/*
 * Create a producer on `rt` from `conf` (borrowed: copied, may be freed
 * afterwards). On success *pp is owned by the caller: release with
 * ksock_kafka_producer_destroy() before the runtime is destroyed.
 * Errors: KSOCK_E_CONFIG (unknown property or bad value, errstr names it and
 * where it came from; missing bootstrap.servers; unreadable secret file),
 * KSOCK_E_NOMEM, KSOCK_E_STATE (not on the loop thread).
 */
KSOCK_EXTERN int ksock_kafka_producer_new(ksock_runtime_t *rt, ksock_kafka_producer_t **pp,
                                          const ksock_kafka_conf_t *conf, char *errstr,
                                          size_t errstr_size);

/*
 * Queue one record. `cb` (may be NULL) fires exactly once on the loop, later,
 * with the outcome, receiving rec->data; it also fires (with
 * KSOCK_E_CANCELED) for records still pending when the producer is destroyed.
 * A failed call fires nothing. Errors: KSOCK_E_QUEUE_FULL (retriable: the
 * producer's queue, bounded by queue.buffering.max.messages/kbytes, is full;
 * wait for deliveries), KSOCK_E_TOOBIG (larger than message.max.bytes),
 * KSOCK_E_UNKNOWN_TOPIC (explicit partition that does not exist),
 * KSOCK_E_INVAL, KSOCK_E_KAFKA_FATAL, KSOCK_E_STATE (producer closing).
 */
KSOCK_EXTERN int ksock_kafka_send(ksock_kafka_producer_t *p, const ksock_kafka_record_t *rec,
                                  ksock_kafka_delivery_cb cb);

/*
 * Queue `n` records in order, each with its own completion (cb with that
 * record's data). Stops at the first record that cannot be queued and
 * returns its error; *queued (may be NULL) says how many were queued, and
 * only those get callbacks.
 */
KSOCK_EXTERN int ksock_kafka_send_batch(ksock_kafka_producer_t *p, const ksock_kafka_record_t *recs,
                                        size_t n, ksock_kafka_delivery_cb cb, size_t *queued);

typedef void (*ksock_kafka_flush_cb)(ksock_kafka_producer_t *p, int status, void *data);

/*
 * Call `cb` once no record is pending any more (status 0), or after
 * `timeout_ms` (status KSOCK_E_TIMEDOUT). Records sent while the flush
 * waits count too. Never fires inside this call, even when nothing is
 * pending. Errors: KSOCK_E_NOMEM, KSOCK_E_STATE.
 */
KSOCK_EXTERN int ksock_kafka_producer_flush(ksock_kafka_producer_t *p, int timeout_ms,
                                            ksock_kafka_flush_cb cb, void *data);

/*
 * Blocking flush for shutdown paths and tests: serves delivery callbacks on
 * this (the loop) thread until nothing is pending or `timeout_ms` passed.
 * The rest of the loop does not run meanwhile. Returns 0 or KSOCK_E_TIMEDOUT.
 */
KSOCK_EXTERN int ksock_kafka_producer_flush_sync(ksock_kafka_producer_t *p, int timeout_ms);

/* Records queued whose callbacks have not fired yet. */
KSOCK_EXTERN size_t ksock_kafka_producer_pending(const ksock_kafka_producer_t *p);

/*
 * Destroy: waits (blocking, serving callbacks) up to `timeout_ms` for pending
 * records, then purges what is left, so every remaining callback fires with
 * an error (KSOCK_E_CANCELED) before this returns; then pending flush
 * callbacks fire with KSOCK_E_CANCELED. Safe inside the producer's own
 * callbacks (the destroy then happens when the callback returns). NULL is a
 * no-op. `p` is invalid afterwards.
 */
KSOCK_EXTERN void ksock_kafka_producer_destroy(ksock_kafka_producer_t *p, int timeout_ms);

/* ---- Consumer ------------------------------------------------------------ */

/*
 * A received record (the spec's ConsumerMessage). Borrowed: valid during the
 * handler call only; copy what you keep. Headers through
 * ksock_kafka_message_header().
 */
typedef struct ksock_kafka_message_s {
    const char *topic;
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms; /* -1 if the record has none */
    int timestamp_type;   /* 0 none, 1 create time, 2 log-append time */
    const void *key;      /* NULL: no key */
    size_t key_len;
    const void *value; /* NULL: null value */
    size_t value_len;
    size_t header_count;
    const void *internal_; /* the library's; do not touch */
} ksock_kafka_message_t;

/* Header `idx` (0-based, in record order) into *out (borrowed like m). Errors: KSOCK_E_NOENT. */
KSOCK_EXTERN int ksock_kafka_message_header(const ksock_kafka_message_t *m, size_t idx,
                                            ksock_kafka_header_t *out);
/* The last header called `name`. Errors: KSOCK_E_NOENT. */
KSOCK_EXTERN int ksock_kafka_message_header_get(const ksock_kafka_message_t *m, const char *name,
                                                ksock_kafka_header_t *out);

/*
 * The message handler. Return 0 when the message is dealt with. Return
 * KSOCK_KAFKA_PAUSE when it cannot be taken now (a full send queue
 * downstream): the partition is paused and this same message is handed
 * over again first after ksock_kafka_consumer_resume(). Nothing is lost and
 * nothing piles up: a paused partition stops fetching, and what was already
 * fetched stays parked (bounded by queued.max.messages.kbytes and
 * ksock.dispatch.batch).
 */
#define KSOCK_KAFKA_PAUSE 1
typedef int (*ksock_kafka_message_cb)(ksock_kafka_consumer_t *c, const ksock_kafka_message_t *m,
                                      void *data);

/* A partition, and an offset where one is meant (KSOCK_KAFKA_OFFSET_* or >= 0). */
typedef struct ksock_kafka_partition_s {
    const char *topic;
    int32_t partition;
    int64_t offset;
    int err; /* in results: 0 or KSOCK_E_* for this partition */
} ksock_kafka_partition_t;

typedef enum {
    KSOCK_KAFKA_ASSIGNED = 1, /* partitions added to this consumer */
    KSOCK_KAFKA_REVOKED = 2,  /* partitions taken away in an orderly rebalance */
    KSOCK_KAFKA_LOST = 3      /* taken away without the chance to commit (session lost) */
} ksock_kafka_rebalance_t;

/*
 * Group rebalances. ASSIGNED fires after the partitions were assigned (pause
 * or resume them here); REVOKED and LOST fire before they are given up (the
 * last chance to store or commit offsets; parked messages of those
 * partitions are then dropped). Partitions borrowed for the call; offsets
 * are KSOCK_KAFKA_OFFSET_INVALID.
 */
typedef void (*ksock_kafka_rebalance_cb)(ksock_kafka_consumer_t *c, ksock_kafka_rebalance_t what,
                                         const ksock_kafka_partition_t *parts, size_t n,
                                         void *data);

/*
 * Create a consumer on `rt` (spec createConsumer). `conf` is borrowed
 * (copied). `topics` (NULL-terminated, borrowed, may be NULL) is the group
 * subscription that ksock_kafka_consumer_start() makes; it needs group.id.
 * With no topics the consumer reads what ksock_kafka_consumer_assign*()
 * gives it (manual assignment; group.id optional, only for commits).
 * `cb` gets every message, `data` is passed to it. *cp owned by the caller:
 * ksock_kafka_consumer_destroy() before the runtime is destroyed.
 * Errors as ksock_kafka_producer_new(); KSOCK_E_INVAL without a handler.
 */
KSOCK_EXTERN int ksock_kafka_consumer_new(ksock_runtime_t *rt, ksock_kafka_consumer_t **cp,
                                          const ksock_kafka_conf_t *conf, const char *const *topics,
                                          ksock_kafka_message_cb cb, void *data, char *errstr,
                                          size_t errstr_size);

/* Register the rebalance callback (group mode). NULL removes it. */
KSOCK_EXTERN void ksock_kafka_consumer_on_rebalance(ksock_kafka_consumer_t *c,
                                                    ksock_kafka_rebalance_cb cb, void *data);

/*
 * Start delivering messages (spec startConsumer): subscribes to the topics
 * given at create (group mode), and lets messages of assigned partitions
 * reach the handler. Group joins and errors after this call are reported
 * through the rebalance callback and the runtime's error handler.
 * Errors: KSOCK_E_CONFIG (topics without group.id), KSOCK_E_KAFKA, KSOCK_E_STATE.
 */
KSOCK_EXTERN int ksock_kafka_consumer_start(ksock_kafka_consumer_t *c);

/*
 * Stop delivering (spec stopConsumer): leaves the subscription (the group
 * rebalances; with auto commit the stored offsets are committed) or drops
 * the manual assignment. Messages fetched but not handled are dropped and
 * will be fetched again from the stored/committed position. start() may be
 * called again. Safe inside the handler.
 */
KSOCK_EXTERN int ksock_kafka_consumer_stop(ksock_kafka_consumer_t *c);

/*
 * Manual assignment: read exactly these partitions from these offsets
 * (absolute, or KSOCK_KAFKA_OFFSET_*), replacing the current assignment.
 * n == 0 removes it. Made while stopped, it takes effect at start(), so
 * nothing fetched in between is dropped. `parts` borrowed.
 * Errors: KSOCK_E_INVAL, KSOCK_E_STATE (a group subscription), KSOCK_E_KAFKA.
 */
KSOCK_EXTERN int ksock_kafka_consumer_assign(ksock_kafka_consumer_t *c,
                                             const ksock_kafka_partition_t *parts, size_t n);

/*
 * Called when an assignment at a timestamp is in place (status 0) or could
 * not be made (status KSOCK_E_*). `parts` (borrowed for the call) carry the
 * offsets found: the first record at or after the timestamp, or
 * KSOCK_KAFKA_OFFSET_END where there is none yet.
 */
typedef void (*ksock_kafka_assign_cb)(ksock_kafka_consumer_t *c, int status,
                                      const ksock_kafka_partition_t *parts, size_t n, void *data);

/*
 * Manual assignment at a time (Kafka's offsetsForTimes): looks up, for each
 * of `parts` (topic and partition; offset ignored), the earliest offset whose
 * timestamp is >= `timestamp_ms`, then assigns the partitions there. The
 * lookup is a broker round trip; it runs off the loop (a short-lived thread
 * bounded by `timeout_ms`) and `cb` fires on the loop when the assignment
 * is made. Destroying the consumer first fires cb with KSOCK_E_CANCELED.
 * Errors (synchronous): KSOCK_E_INVAL, KSOCK_E_NOMEM, KSOCK_E_STATE (group mode).
 */
KSOCK_EXTERN int ksock_kafka_consumer_assign_at_time(ksock_kafka_consumer_t *c,
                                                     const ksock_kafka_partition_t *parts, size_t n,
                                                     int64_t timestamp_ms, int timeout_ms,
                                                     ksock_kafka_assign_cb cb, void *data);

/*
 * Pause or resume one assigned partition (backpressure). Pausing stops
 * fetching and holds back what was already fetched; resuming hands the held
 * messages over first, in order, from the loop (never inside this call).
 * Safe inside the handler. Errors: KSOCK_E_NOENT (not assigned), KSOCK_E_KAFKA.
 */
KSOCK_EXTERN int ksock_kafka_consumer_pause(ksock_kafka_consumer_t *c, const char *topic,
                                            int32_t partition);
KSOCK_EXTERN int ksock_kafka_consumer_resume(ksock_kafka_consumer_t *c, const char *topic,
                                             int32_t partition);

/*
 * Store `next_offset` (the offset of the next message to read, i.e. the
 * last processed offset + 1) for the next commit. Errors: KSOCK_E_STATE
 * (partition not assigned), KSOCK_E_KAFKA.
 */
KSOCK_EXTERN int ksock_kafka_consumer_store(ksock_kafka_consumer_t *c, const char *topic,
                                            int32_t partition, int64_t next_offset);

/* Called with the commit's result; parts borrowed for the call, each with its own err. */
typedef void (*ksock_kafka_commit_cb)(ksock_kafka_consumer_t *c, int status,
                                      const ksock_kafka_partition_t *parts, size_t n, void *data);

/*
 * Commit `offsets` (next offsets to read), or with n == 0 the stored offsets
 * of all assigned partitions, asynchronously; `cb` (may be NULL) fires on
 * the loop with the outcome. Needs group.id. Errors: KSOCK_E_CONFIG, KSOCK_E_KAFKA.
 */
KSOCK_EXTERN int ksock_kafka_consumer_commit(ksock_kafka_consumer_t *c,
                                             const ksock_kafka_partition_t *offsets, size_t n,
                                             ksock_kafka_commit_cb cb, void *data);

/* Counters, for operators and tests (size first: the struct grows at the end). */
typedef struct ksock_kafka_consumer_stats_s {
    size_t size;        /* set by the caller: sizeof(ksock_kafka_consumer_stats_t) */
    uint64_t delivered; /* handler calls that returned 0 */
    uint64_t wakeups;   /* loop wake-ups through the queue's file descriptor */
    uint64_t continued; /* drains cut at ksock.dispatch.batch and resumed later */
    size_t parked;      /* messages held for paused partitions right now */
    size_t paused;      /* partitions paused right now */
    size_t queued;      /* ops waiting in librdkafka's consumer queue */
} ksock_kafka_consumer_stats_t;

KSOCK_EXTERN void ksock_kafka_consumer_stats(const ksock_kafka_consumer_t *c,
                                             ksock_kafka_consumer_stats_t *out);

/*
 * Leave the group (blocking for the LeaveGroup round trip; revocation is
 * reported to the rebalance callback), drop parked messages, join pending
 * lookups (their callbacks fire with KSOCK_E_CANCELED) and free. Safe inside
 * the consumer's own callbacks (then done when the callback returns). NULL
 * is a no-op.
 */
KSOCK_EXTERN void ksock_kafka_consumer_destroy(ksock_kafka_consumer_t *c);

/* ---- Both ---------------------------------------------------------------- */

/*
 * librdkafka statistics (statistics.interval.ms > 0): `json` borrowed for the
 * call. Registered per handle; NULL removes.
 */
typedef void (*ksock_kafka_stats_cb)(const char *name, const char *json, size_t len, void *data);
KSOCK_EXTERN void ksock_kafka_producer_on_stats(ksock_kafka_producer_t *p, ksock_kafka_stats_cb cb,
                                                void *data);
KSOCK_EXTERN void ksock_kafka_consumer_on_stats(ksock_kafka_consumer_t *c, ksock_kafka_stats_cb cb,
                                                void *data);

/* User data slots (unused by the library). */
KSOCK_EXTERN void ksock_kafka_producer_set_data(ksock_kafka_producer_t *p, void *data);
KSOCK_EXTERN void *ksock_kafka_producer_get_data(const ksock_kafka_producer_t *p);
KSOCK_EXTERN void ksock_kafka_consumer_set_data(ksock_kafka_consumer_t *c, void *data);
KSOCK_EXTERN void *ksock_kafka_consumer_get_data(const ksock_kafka_consumer_t *c);

/* The client's name (librdkafka's, e.g. "ksock#producer-1"). Borrowed from the handle. */
KSOCK_EXTERN const char *ksock_kafka_producer_name(const ksock_kafka_producer_t *p);
KSOCK_EXTERN const char *ksock_kafka_consumer_name(const ksock_kafka_consumer_t *c);

/* Map a librdkafka rd_kafka_resp_err_t onto the closest KSOCK_E_* code. Thread-safe. */
KSOCK_EXTERN int ksock_kafka_err_map(int rd_kafka_err);

/*
 * The options our Kafka section understands beyond librdkafka's (for
 * `ksockd --describe` and docs). Static storage, terminated by an entry
 * whose name is NULL. The target offsets are meaningless here.
 */
KSOCK_EXTERN const ksock_option_t *ksock_kafka_options_schema(void);

/*
 * Escape hatches. The librdkafka handle behind a producer or consumer, for
 * calls this API does not wrap (metadata, admin). Borrowed: do not poll its
 * queues, change its callbacks or destroy it.
 */
KSOCK_EXTERN struct rd_kafka_s *ksock_kafka_producer_handle(ksock_kafka_producer_t *p);
KSOCK_EXTERN struct rd_kafka_s *ksock_kafka_consumer_handle(ksock_kafka_consumer_t *c);

/*
 * The mock cluster behind "embedded:N" (N >= 1), started on first use by a
 * handle of `rt`, or NULL if none has been. For fault injection in tests
 * (rdkafka_mock.h). Borrowed: lives until the runtime is destroyed.
 */
KSOCK_EXTERN struct rd_kafka_mock_cluster_s *ksock_kafka_embedded_cluster(ksock_runtime_t *rt,
                                                                          int brokers);

#ifdef __cplusplus
}
#endif
#endif
