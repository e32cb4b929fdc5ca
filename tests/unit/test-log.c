/* Logging: formats, levels per sink, context, thread safety, configuration errors. */
#include "test.h"

#include <fcntl.h>
#include <ksock/ksock.h>
#include <pthread.h>
#include <yajl/yajl_tree.h>

static ksock_runtime_t *new_rt(void)
{
    ksock_runtime_t *rt;
    char err[256];
    ASSERT_OK(ksock_runtime_new(&rt, err, sizeof(err)));
    return rt;
}

/* Point fd at a fresh temp file; return the path. */
static void capture(int fd, char path[64])
{
    snprintf(path, 64, "/tmp/ksock-logtest-XXXXXX");
    int t = mkstemp(path);
    ASSERT(t >= 0);
    fflush(NULL);
    dup2(t, fd);
    close(t);
}

static char *slurp(const char *path)
{
    static char buf[1 << 20];
    FILE *f = fopen(path, "r");
    ASSERT_NOT_NULL(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    unlink(path);
    return buf;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

TEST(record_format_text)
{
    ksock_kv_t ctx[] = {KSOCK_KV_STR("topic", "orders"), KSOCK_KV_I64("partition", 3),
                        KSOCK_KV_BOOL("retry", true), KSOCK_KV_STR("why", "two words")};
    ksock_log_record_t r = {
        sizeof(r), 1764139786123456789LL, KSOCK_LOG_WARN, "kafka", "line one\nline two", 17, ctx,
        4};
    ksock_buf_t b = KSOCK_BUF_INIT;
    ASSERT_OK(ksock_log_record_format(&r, KSOCK_LOG_FORMAT_TEXT, &b));
    ASSERT_STR_EQ(b.data, "2025-11-26T06:49:46.123456Z WARN  kafka: line one\\nline two "
                          "topic=orders partition=3 retry=true why=\"two words\"\n");
    ksock_buf_free(&b);
}

TEST(record_format_json)
{
    ksock_kv_t ctx[] = {KSOCK_KV_STR("q", "a\"b\\c\x01"), KSOCK_KV_DBL("ratio", 0.25),
                        KSOCK_KV_DBL("nan", 0.0 / 0.0)};
    ksock_log_record_t r = {
        sizeof(r), 1764139786000001000LL, KSOCK_LOG_ERROR, "core", "tab\there", 8, ctx, 3};
    ksock_buf_t b = KSOCK_BUF_INIT;
    ASSERT_OK(ksock_log_record_format(&r, KSOCK_LOG_FORMAT_JSON, &b));
    char err[128];
    yajl_val v = yajl_tree_parse(b.data, err, sizeof(err));
    ASSERT_NOT_NULL(v); /* it is valid JSON, escapes and all */
    const char *p_time[] = {"time", NULL}, *p_lvl[] = {"level", NULL}, *p_msg[] = {"message", NULL},
               *p_q[] = {"context", "q", NULL}, *p_ratio[] = {"context", "ratio", NULL},
               *p_nan[] = {"context", "nan", NULL};
    ASSERT_STR_EQ(YAJL_GET_STRING(yajl_tree_get(v, p_time, yajl_t_string)),
                  "2025-11-26T06:49:46.000001Z");
    ASSERT_STR_EQ(YAJL_GET_STRING(yajl_tree_get(v, p_lvl, yajl_t_string)), "error");
    ASSERT_STR_EQ(YAJL_GET_STRING(yajl_tree_get(v, p_msg, yajl_t_string)), "tab\there");
    ASSERT_STR_EQ(YAJL_GET_STRING(yajl_tree_get(v, p_q, yajl_t_string)), "a\"b\\c\x01");
    ASSERT(YAJL_GET_DOUBLE(yajl_tree_get(v, p_ratio, yajl_t_number)) == 0.25);
    ASSERT(YAJL_IS_NULL(yajl_tree_get(v, p_nan, yajl_t_any)));
    yajl_tree_free(v);
    ASSERT_EQ(b.data[b.len - 1], '\n');
    ksock_buf_free(&b);
}

/* Values a client controls: ESC, CR, NUL, invalid UTF-8, a lone surrogate (ED A0 80), a C1 CSI. */
static const char hostile[] = "\x1b[2J\r\n\x00\xff\xed\xa0\x80\xc2\x9b\\\"ok \xc3\xa9";

TEST(record_format_escapes_text)
{
    ksock_kv_t ctx[] = {KSOCK_KV_STR("why", "\x1b[31mred\xfe"), KSOCK_KV_STR("k\n", "plain")};
    ksock_log_record_t r = {sizeof(r),
                            1764139786123456789LL,
                            KSOCK_LOG_INFO,
                            "ws\x1b",
                            hostile,
                            sizeof(hostile) - 1,
                            ctx,
                            2};
    ksock_buf_t b = KSOCK_BUF_INIT;
    ASSERT_OK(ksock_log_record_format(&r, KSOCK_LOG_FORMAT_TEXT, &b));
    ASSERT_STR_EQ(b.data, "2025-11-26T06:49:46.123456Z INFO  ws\\x1b: "
                          "\\x1b[2J\\r\\n\\x00\\xff\\xed\\xa0\\x80\\u009b\\\\\"ok \xc3\xa9 "
                          "why=\"\\x1b[31mred\\xfe\" k\\n=plain\n");
    ksock_buf_free(&b);
}

TEST(record_format_escapes_json)
{
    ksock_kv_t ctx[] = {KSOCK_KV_STR("why\xff", "\x1b[31mred\xfe\x7f")};
    ksock_log_record_t r = {
        sizeof(r), 1764139786123456789LL, KSOCK_LOG_INFO, "ws", hostile, sizeof(hostile) - 1, ctx,
        1};
    ksock_buf_t b = KSOCK_BUF_INIT;
    ASSERT_OK(ksock_log_record_format(&r, KSOCK_LOG_FORMAT_JSON, &b));
    ASSERT_CONTAINS(b.data, "\"message\":\"\\u001b[2J\\r\\n\\u0000\\ufffd\\ufffd\\ufffd\\ufffd"
                            "\\u009b\\\\\\\"ok \xc3\xa9\",\"context\":{\"why\\ufffd\":"
                            "\"\\u001b[31mred\\ufffd\\u007f\"}}\n");
    ASSERT(ksock_utf8_check(b.data, b.len, NULL));
    char err[128];
    yajl_val v = yajl_tree_parse(b.data, err, sizeof(err));
    ASSERT_NOT_NULL(v);
    yajl_tree_free(v);
    ksock_buf_free(&b);
}

/* The built-in console sink formats through the same routine. */
TEST(console_sink_escapes)
{
    ksock_runtime_t *rt = new_rt();
    char out[64], err[256];
    capture(1, out);
    ksock_log_options_t a = {sizeof(a), KSOCK_LOG_DEBUG, "console", KSOCK_LOG_FORMAT_TEXT,
                             "{\"stream\": \"stdout\"}"};
    ASSERT_OK(ksock_log_configure(rt, &a, err, sizeof(err)));
    ksock_kv_t kv[] = {KSOCK_KV_STR("reason", "\x1b[2J\xff")};
    ksock_log(rt, KSOCK_LOG_WARN, "ws", kv, 1, "closed: %s%c", "bye\x1b]0;pwned\x07\n", 0);
    ksock_runtime_destroy(rt);
    fflush(NULL);
    char *o = slurp(out);
    ASSERT_EQ(count_lines(o), 1);
    ASSERT_CONTAINS(o,
                    " WARN  ws: closed: bye\\x1b]0;pwned\\x07\\n\\x00 reason=\"\\x1b[2J\\xff\"\n");
    for (const char *p = o; *p; p++)
        ASSERT(*p == '\n' || ((unsigned char)*p >= 0x20 && *p != 0x7f));
}

TEST(levels_filter_per_sink)
{
    ksock_runtime_t *rt = new_rt();
    char out[64], errp[64], err[256];
    capture(1, out);
    capture(2, errp);
    ksock_log_options_t a = {sizeof(a), KSOCK_LOG_DEBUG, "console", KSOCK_LOG_FORMAT_JSON,
                             "{\"stream\": \"stdout\", \"name\": \"all\"}"};
    ksock_log_options_t b = {sizeof(b), KSOCK_LOG_WARN, "console", KSOCK_LOG_FORMAT_TEXT,
                             "{\"name\": \"warnings\"}"};
    ASSERT_OK(ksock_log_configure(rt, &a, err, sizeof(err)));
    ASSERT_OK(ksock_log_add_sink(rt, &b, err, sizeof(err)));
    ASSERT_EQ(ksock_log_threshold(rt), KSOCK_LOG_DEBUG);
    KSOCK_DEBUG(rt, "t", "debug %d", 1);
    KSOCK_INFO(rt, "t", "info %d", 2);
    ksock_log(rt, KSOCK_LOG_ERROR, "t", (ksock_kv_t[]){KSOCK_KV_I64("n", 3)}, 1, "error %d", 3);
    ksock_log_sink_stats_t st[4];
    ASSERT_EQ(ksock_log_stats(rt, st, 4), 2);
    ASSERT_EQ(st[0].written, 3);
    ASSERT_EQ(st[1].written, 1);
    ksock_runtime_destroy(rt);
    fflush(NULL);
    char *o = slurp(out);
    ASSERT_EQ(count_lines(o), 3);
    ASSERT_CONTAINS(o, "\"message\":\"debug 1\"");
    ASSERT_CONTAINS(o, "\"context\":{\"n\":3}");
    char *e = slurp(errp);
    ASSERT_EQ(count_lines(e), 1);
    ASSERT_CONTAINS(e, "ERROR t: error 3 n=3");
}

static int evaluated;
static int side_effect(void)
{
    return ++evaluated;
}

TEST(filtered_call_does_not_evaluate_arguments)
{
    ksock_runtime_t *rt = new_rt();
    char out[64];
    capture(2, out);
    KSOCK_DEBUG(rt, "t", "%d", side_effect()); /* default console is at info */
    ASSERT_EQ(evaluated, 0);
    KSOCK_INFO(rt, "t", "%d", side_effect());
    ASSERT_EQ(evaluated, 1);
    ksock_runtime_destroy(rt);
    ASSERT_CONTAINS(slurp(out), "INFO  t: 1");
}

static void *log_thread(void *p)
{
    for (int i = 0; i < 2000; i++)
        ksock_log(p, KSOCK_LOG_INFO, "thr", NULL, 0, "line %d", i);
    return NULL;
}

TEST(logging_from_threads_keeps_lines_whole)
{
    ksock_runtime_t *rt = new_rt();
    char out[64];
    capture(2, out);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, log_thread, rt);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    ksock_runtime_destroy(rt);
    char *o = slurp(out);
    ASSERT_EQ(count_lines(o), 8000);
    /* every line is exactly one record */
    for (char *line = o; *line;) {
        char *nl = strchr(line, '\n');
        ASSERT_NOT_NULL(strstr(line, "thr: line "));
        ASSERT(strstr(line, "thr: line ") < nl);
        line = nl + 1;
    }
}

TEST(config_log_section)
{
    ksock_runtime_t *rt = new_rt();
    char out[64], err[512];
    const char *text = "{\"log\": {\"level\": \"warn\", \"format\": \"json\","
                       " \"sinks\": [{\"type\": \"console\", \"stream\": \"stdout\"}]}}";
    ksock_config_t *cfg;
    ASSERT_OK(ksock_config_load_string("c.json", text, strlen(text), &cfg, err, sizeof(err)));
    ksock_runtime_adopt_config(rt, cfg);
    ASSERT_OK(ksock_runtime_configure(rt, cfg, err, sizeof(err)));
    capture(1, out);
    KSOCK_INFO(rt, "t", "hidden");
    KSOCK_WARN(rt, "t", "shown");
    ksock_runtime_destroy(rt);
    char *o = slurp(out);
    ASSERT_EQ(count_lines(o), 1);
    ASSERT_CONTAINS(o, "\"level\":\"warn\"");
}

static void expect_config_error(const char *text, const char *want)
{
    ksock_runtime_t *rt = new_rt();
    char err[512];
    ksock_config_t *cfg;
    ASSERT_OK(ksock_config_load_string("c.json", text, strlen(text), &cfg, err, sizeof(err)));
    ASSERT_EQ(ksock_runtime_configure(rt, cfg, err, sizeof(err)) < 0, 1);
    ASSERT_CONTAINS(err, want);
    ksock_runtime_destroy(rt);
    ksock_config_free(cfg);
}

TEST(config_errors)
{
    expect_config_error("[]", "must be a JSON object");
    expect_config_error("{\"lgo\": {}}", "key \"lgo\": unknown key");
    expect_config_error("{\"log\": {\"level\": \"loud\"}}",
                        "\"loud\" is not one of: debug, info, warn, error, off");
    expect_config_error("{\"log\": {\"sinks\": {}}}", "key \"sinks\": expected an array");
    expect_config_error("{\"log\": {\"sinks\": [3]}}", "sinks[0]: expected an object");
    expect_config_error("{\"log\": {\"sinks\": [{}]}}", "key \"type\": missing");
    expect_config_error("{\"log\": {\"sinks\": [{\"type\": \"console\", \"colour\": true}]}}",
                        "log sink \"console\" (type console): key \"colour\": unknown key");
    expect_config_error(
        "{\"log\": {\"sinks\": [{\"type\": \"console\"}, {\"type\": \"console\"}]}}",
        "two sinks are named \"console\"");
    expect_config_error("{\"log\": {\"sinks\": [{\"type\": \"nosuchsink\"}]}}",
                        "no logsink plugin named \"nosuchsink\"");
}

TEST(level_names)
{
    ksock_log_level_t l;
    ASSERT_OK(ksock_log_level_parse("warning", &l));
    ASSERT_EQ(l, KSOCK_LOG_WARN);
    ASSERT_EQ(ksock_log_level_parse("verbose", &l), KSOCK_E_INVAL);
    ASSERT_STR_EQ(ksock_log_level_name(KSOCK_LOG_DEBUG), "debug");
}

TEST_LIST(TEST_ENTRY(record_format_text), TEST_ENTRY(record_format_json),
          TEST_ENTRY(record_format_escapes_text), TEST_ENTRY(record_format_escapes_json),
          TEST_ENTRY(console_sink_escapes), TEST_ENTRY(levels_filter_per_sink),
          TEST_ENTRY(filtered_call_does_not_evaluate_arguments),
          TEST_ENTRY(logging_from_threads_keeps_lines_whole), TEST_ENTRY(config_log_section),
          TEST_ENTRY(config_errors), TEST_ENTRY(level_names))
