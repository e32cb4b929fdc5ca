/*
 * What the ABI fixture plugins (fixture.c) and their test (test-loader.c)
 * share: the options struct and the instance struct of the good fixture,
 * so the test can look inside an instance and check that every instance
 * has state of its own.
 */
#ifndef KSOCK_TEST_ABI_FIXTURE_H
#define KSOCK_TEST_ABI_FIXTURE_H

#include <ksock/logsink.h>

/* The good fixture's options: one of each scalar type the schema knows. */
typedef struct fixture_opts_s {
    char *tag;           /* string, required */
    int64_t limit;       /* int in [0, 1000], default 100 */
    int mode;            /* enum count|drop, default count */
    int64_t interval_ms; /* duration, default 1s */
    int64_t buffer;      /* size, default 4KiB */
    bool fail_create;    /* bool, default false: create() refuses */
    char *path;          /* string, optional: append "tag: message" lines here */
} fixture_opts_t;

enum { FIXTURE_MODE_COUNT = 0, FIXTURE_MODE_DROP = 1 };

#define FIXTURE_INST_MAGIC 0x46495854u /* "FIXT" */

typedef struct fixture_inst_s {
    uint32_t magic;
    ksock_runtime_t *rt;
    char tag[64];
    char instance[64];   /* ctx->instance at create */
    char component[128]; /* ctx->component at create */
    int64_t limit, interval_ms, buffer;
    int mode;
    ksock_log_format_t format;
    bool format_set; /* set_format() was called */
    uint64_t written;
    uint64_t refused; /* write() calls that returned an error (drop mode) */
    unsigned flushes, reopens;
    int fd; /* -1 without "path" */
} fixture_inst_t;

/*
 * $KSOCK_FIXTURE_TRACE names a file the fixture appends its life-cycle
 * events to, one per line: "init", "create TAG", "destroy TAG", "fini",
 * "unload" (the .so's destructor, i.e. dlclose). Tests use it to check the
 * teardown order.
 */
#define FIXTURE_TRACE_ENV "KSOCK_FIXTURE_TRACE"

#endif
