/* Option schemas: every type, defaults, and every way a value can be wrong. */
#include "test.h"

#include <ksock/ksock.h>

typedef struct {
    char *name;
    int64_t count;
    bool on;
    int64_t timeout;
    int64_t bufsize;
    int mode;
    ksock_strlist_t hosts;
    const ksock_cfg_t *props;
    double ratio;
    const ksock_cfg_t *items;
} opts_t;

static const char *const modes[] = {"fast", "safe", NULL};

static const ksock_option_t schema[] = {
    KSOCK_OPTION("name", KSOCK_OPT_STRING, KSOCK_OPT_REQUIRED, NULL, opts_t, name, "a name"),
    KSOCK_OPTION_RANGE("count", KSOCK_OPT_INT, 0, "3", opts_t, count, 1, 10, "how many"),
    KSOCK_OPTION("on", KSOCK_OPT_BOOL, 0, "true", opts_t, on, "switch"),
    KSOCK_OPTION("timeout", KSOCK_OPT_DURATION, 0, "30s", opts_t, timeout, "wait"),
    KSOCK_OPTION("bufsize", KSOCK_OPT_SIZE, 0, "64KiB", opts_t, bufsize, "buffer"),
    KSOCK_OPTION_ENUM("mode", 0, "safe", opts_t, mode, modes, "mode"),
    KSOCK_OPTION("hosts", KSOCK_OPT_LIST, 0, "a,b", opts_t, hosts, "hosts"),
    KSOCK_OPTION("props", KSOCK_OPT_OBJECT, 0, NULL, opts_t, props, "props"),
    KSOCK_OPTION("ratio", KSOCK_OPT_DOUBLE, 0, "0.5", opts_t, ratio, "ratio"),
    KSOCK_OPTION("items", KSOCK_OPT_ARRAY, 0, NULL, opts_t, items, "items"),
    KSOCK_OPTION_END};

static int apply(const char *text, opts_t *o, char *err, size_t errlen, ksock_config_t **cfgp)
{
    memset(o, 0, sizeof(*o));
    ASSERT_OK(ksock_config_load_string("o.json", text, strlen(text), cfgp, err, errlen));
    return ksock_options_apply(schema, sizeof(ksock_option_t), *cfgp, ksock_config_root(*cfgp),
                               "plugin \"t\"", NULL, o, err, errlen);
}

TEST(defaults)
{
    opts_t o;
    char err[256];
    ksock_config_t *cfg;
    ASSERT_OK(apply("{\"name\": \"n\"}", &o, err, sizeof(err), &cfg));
    ASSERT_STR_EQ(o.name, "n");
    ASSERT_EQ(o.count, 3);
    ASSERT(o.on);
    ASSERT_EQ(o.timeout, 30000);
    ASSERT_EQ(o.bufsize, 65536);
    ASSERT_EQ(o.mode, 1);
    ASSERT_EQ(o.hosts.n, 2);
    ASSERT_STR_EQ(o.hosts.v[1], "b");
    ASSERT_NULL(o.props);
    ASSERT(o.ratio == 0.5);
    ksock_options_free(schema, sizeof(ksock_option_t), &o);
    ASSERT_NULL(o.name);
    ksock_config_free(cfg);
}

TEST(every_type_set)
{
    opts_t o;
    char err[256];
    ksock_config_t *cfg;
    ASSERT_OK(apply("{\"name\": \"n\", \"count\": 7, \"on\": false, \"timeout\": \"250ms\","
                    " \"bufsize\": \"10MB\", \"mode\": \"fast\", \"hosts\": [\"x\"],"
                    " \"props\": {\"k\": 1}, \"ratio\": 2, \"items\": [{}]}",
                    &o, err, sizeof(err), &cfg));
    ASSERT_EQ(o.count, 7);
    ASSERT(!o.on);
    ASSERT_EQ(o.timeout, 250);
    ASSERT_EQ(o.bufsize, 10000000);
    ASSERT_EQ(o.mode, 0);
    ASSERT_EQ(o.hosts.n, 1);
    ASSERT_STR_EQ(o.hosts.v[0], "x");
    ASSERT_EQ(ksock_cfg_int(ksock_cfg_get(o.props, "k")), 1);
    ASSERT(o.ratio == 2.0);
    ASSERT_EQ(ksock_cfg_count(o.items), 1);
    ksock_options_free(schema, sizeof(ksock_option_t), &o);
    ksock_config_free(cfg);
}

/* Each bad document fails with a message that has the position, the owner and the key. */
static void expect_error(const char *text, const char *want1, const char *want2)
{
    opts_t o;
    char err[512];
    ksock_config_t *cfg;
    ASSERT_EQ(apply(text, &o, err, sizeof(err), &cfg), KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "o.json:");
    ASSERT_CONTAINS(err, "plugin \"t\"");
    ASSERT_CONTAINS(err, want1);
    if (want2) ASSERT_CONTAINS(err, want2);
    ksock_options_free(schema, sizeof(ksock_option_t), &o);
    ksock_config_free(cfg);
}

TEST(unknown_key)
{
    expect_error("{\"name\": \"n\",\n \"cuont\": 1}",
                 "o.json:2:11: plugin \"t\": key \"cuont\": unknown key",
                 "known keys: name, count");
}

TEST(missing_required)
{
    expect_error("{}", "key \"name\": missing", NULL);
}

TEST(wrong_types)
{
    expect_error("{\"name\": 5}", "key \"name\": expected a string, got integer", NULL);
    expect_error("{\"name\": \"n\", \"count\": \"7\"}",
                 "key \"count\": expected an integer, got string", NULL);
    expect_error("{\"name\": \"n\", \"on\": 1}", "key \"on\": expected true or false", NULL);
    expect_error("{\"name\": \"n\", \"hosts\": \"x\"}",
                 "key \"hosts\": expected an array of strings", NULL);
    expect_error("{\"name\": \"n\", \"hosts\": [1]}", "element 0: expected a string", NULL);
    expect_error("{\"name\": \"n\", \"props\": []}", "key \"props\": expected an object, got array",
                 NULL);
    expect_error("{\"name\": \"n\", \"items\": {}}", "key \"items\": expected an array, got object",
                 NULL);
}

TEST(bad_values)
{
    expect_error("{\"name\": \"n\", \"count\": 11}", "outside [1, 10]", NULL);
    expect_error("{\"name\": \"n\", \"mode\": \"slow\"}", "\"slow\" is not one of: fast, safe",
                 NULL);
    expect_error("{\"name\": \"n\", \"timeout\": \"30\"}", "is not a duration", NULL);
    expect_error("{\"name\": \"n\", \"timeout\": \"-1s\"}", "is not a duration", NULL);
    expect_error("{\"name\": \"n\", \"timeout\": \"5 parsecs\"}", "is not a duration", NULL);
    expect_error("{\"name\": \"n\", \"bufsize\": \"12XB\"}", "is not a size", NULL);
    expect_error("{\"name\": \"n\", \"bufsize\": -5}", "must not be negative", NULL);
}

TEST(duration_and_size_parsing)
{
    int64_t v;
    ASSERT_OK(ksock_parse_duration_ms("1.5s", &v));
    ASSERT_EQ(v, 1500);
    ASSERT_OK(ksock_parse_duration_ms("2h", &v));
    ASSERT_EQ(v, 7200000);
    ASSERT_OK(ksock_parse_duration_ms("0", &v));
    ASSERT_EQ(v, 0);
    ASSERT_EQ(ksock_parse_duration_ms("", &v), KSOCK_E_INVAL);
    ASSERT_EQ(ksock_parse_duration_ms("nan", &v), KSOCK_E_INVAL);
    ASSERT_OK(ksock_parse_size("1GiB", &v));
    ASSERT_EQ(v, 1073741824);
    ASSERT_OK(ksock_parse_size("512", &v));
    ASSERT_EQ(v, 512);
    ASSERT_OK(ksock_parse_size("64 KiB", &v));
    ASSERT_EQ(v, 65536);
    ASSERT_EQ(ksock_parse_size("1e30GiB", &v), KSOCK_E_INVAL);
}

TEST(ignore_list)
{
    opts_t o;
    char err[256];
    ksock_config_t *cfg;
    const char *text = "{\"name\": \"n\", \"type\": \"file\"}";
    memset(&o, 0, sizeof(o));
    ASSERT_OK(ksock_config_load_string("o.json", text, strlen(text), &cfg, err, sizeof(err)));
    static const char *const ignore[] = {"type", NULL};
    ASSERT_OK(ksock_options_apply(schema, sizeof(ksock_option_t), cfg, ksock_config_root(cfg), "t",
                                  ignore, &o, err, sizeof(err)));
    ksock_options_free(schema, sizeof(ksock_option_t), &o);
    ksock_config_free(cfg);
}

TEST(schema_check)
{
    char err[256];
    static const ksock_option_t dup[] = {
        KSOCK_OPTION("a", KSOCK_OPT_INT, 0, NULL, opts_t, count, ""),
        KSOCK_OPTION("a", KSOCK_OPT_INT, 0, NULL, opts_t, count, ""), KSOCK_OPTION_END};
    ASSERT_EQ(ksock_options_check_schema(dup, sizeof(ksock_option_t), "p", err, sizeof(err)),
              KSOCK_E_PLUGIN);
    ASSERT_CONTAINS(err, "declared twice");
    static const ksock_option_t baddef[] = {
        KSOCK_OPTION("t", KSOCK_OPT_DURATION, 0, "forever", opts_t, timeout, ""), KSOCK_OPTION_END};
    ASSERT_EQ(ksock_options_check_schema(baddef, sizeof(ksock_option_t), "p", err, sizeof(err)),
              KSOCK_E_PLUGIN);
    ASSERT_CONTAINS(err, "not a duration");
    ASSERT_OK(ksock_options_check_schema(schema, sizeof(ksock_option_t), "p", err, sizeof(err)));
}

TEST_LIST(TEST_ENTRY(defaults), TEST_ENTRY(every_type_set), TEST_ENTRY(unknown_key),
          TEST_ENTRY(missing_required), TEST_ENTRY(wrong_types), TEST_ENTRY(bad_values),
          TEST_ENTRY(duration_and_size_parsing), TEST_ENTRY(ignore_list), TEST_ENTRY(schema_check))
