/*
 * libFuzzer target for the config reader: JSON with comments through the
 * yajl callback parser with position tracking, then the log section and a
 * schema with every option type. Must never crash, leak or read out of
 * bounds, whatever the bytes.
 */
#include <ksock/ksock.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *s;
    int64_t i, d, z;
    bool b;
    int e;
    ksock_strlist_t l;
    const ksock_cfg_t *o, *a;
    double f;
} fz_opts_t;

static const char *const fz_enum[] = {"a", "b", NULL};
static const ksock_option_t fz_schema[] = {
    KSOCK_OPTION("s", KSOCK_OPT_STRING, 0, "x", fz_opts_t, s, ""),
    KSOCK_OPTION_RANGE("i", KSOCK_OPT_INT, 0, "1", fz_opts_t, i, 0, 100, ""),
    KSOCK_OPTION("d", KSOCK_OPT_DURATION, 0, "1s", fz_opts_t, d, ""),
    KSOCK_OPTION("z", KSOCK_OPT_SIZE, 0, "1KiB", fz_opts_t, z, ""),
    KSOCK_OPTION("b", KSOCK_OPT_BOOL, 0, "true", fz_opts_t, b, ""),
    KSOCK_OPTION_ENUM("e", 0, "a", fz_opts_t, e, fz_enum, ""),
    KSOCK_OPTION("l", KSOCK_OPT_LIST, 0, NULL, fz_opts_t, l, ""),
    KSOCK_OPTION("o", KSOCK_OPT_OBJECT, 0, NULL, fz_opts_t, o, ""),
    KSOCK_OPTION("a", KSOCK_OPT_ARRAY, 0, NULL, fz_opts_t, a, ""),
    KSOCK_OPTION("f", KSOCK_OPT_DOUBLE, 0, NULL, fz_opts_t, f, ""),
    KSOCK_OPTION_END};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    ksock_config_t *cfg;
    if (ksock_config_load_string("fuzz", (const char *)data, size, &cfg, err, sizeof(err)) != 0)
        return 0;
    fz_opts_t o;
    memset(&o, 0, sizeof(o));
    ksock_options_apply(fz_schema, sizeof(ksock_option_t), cfg, ksock_config_root(cfg), "fuzz",
                        NULL, &o, err, sizeof(err));
    ksock_options_free(fz_schema, sizeof(ksock_option_t), &o);

    /* The core's own sections (no plugins are found: the search path is empty). */
    ksock_runtime_t *rt;
    if (ksock_runtime_new(&rt, err, sizeof(err)) == 0) {
        ksock_log_options_t lo = {sizeof(lo), KSOCK_LOG_OFF, "console", KSOCK_LOG_FORMAT_TEXT,
                                  NULL};
        ksock_log_configure(rt, &lo, err, sizeof(err));
        ksock_config_check(rt, cfg, err, sizeof(err));
        ksock_runtime_destroy(rt);
    }
    ksock_config_free(cfg);
    return 0;
}
