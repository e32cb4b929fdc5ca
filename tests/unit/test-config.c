/* The config tree: values, positions, comments, and every syntax error path. */
#include "test.h"

#include <ksock/ksock.h>

static ksock_config_t *load(const char *text, char *err, size_t errlen, int *rc)
{
    ksock_config_t *cfg = NULL;
    *rc = ksock_config_load_string("t.json", text, strlen(text), &cfg, err, errlen);
    return cfg;
}

TEST(values_and_positions)
{
    char err[256];
    int rc;
    ksock_config_t *cfg =
        load("{\n  // a comment\n  \"a\": 1,\n  /* block */ \"b\": [true, null, 2.5, \"x\"],\n"
             "  \"c\": {\"d\": \"e\"}\n}",
             err, sizeof(err), &rc);
    ASSERT_OK(rc);
    const ksock_cfg_t *root = ksock_config_root(cfg);
    ASSERT_EQ(ksock_cfg_type(root), KSOCK_CFG_OBJECT);
    ASSERT_EQ(ksock_cfg_count(root), 3);
    const ksock_cfg_t *a = ksock_cfg_get(root, "a");
    ASSERT_EQ(ksock_cfg_int(a), 1);
    ASSERT_EQ(ksock_cfg_line(a), 3);
    ASSERT_EQ(ksock_cfg_column(a), 8);
    const ksock_cfg_t *b = ksock_cfg_get(root, "b");
    ASSERT_EQ(ksock_cfg_line(b), 4);
    ASSERT_EQ(ksock_cfg_column(b), 20);
    ASSERT_EQ(ksock_cfg_count(b), 4);
    ASSERT(ksock_cfg_bool(ksock_cfg_at(b, 0, NULL)));
    ASSERT_EQ(ksock_cfg_type(ksock_cfg_at(b, 1, NULL)), KSOCK_CFG_NULL);
    ASSERT(ksock_cfg_double(ksock_cfg_at(b, 2, NULL)) == 2.5);
    ASSERT_STR_EQ(ksock_cfg_string(ksock_cfg_at(b, 3, NULL)), "x");
    ASSERT_EQ(ksock_cfg_column(ksock_cfg_at(b, 3, NULL)), 38);
    const char *key;
    const ksock_cfg_t *c = ksock_cfg_at(root, 2, &key);
    ASSERT_STR_EQ(key, "c");
    ASSERT_STR_EQ(ksock_cfg_string(ksock_cfg_get(c, "d")), "e");
    ASSERT_EQ(ksock_cfg_line(ksock_cfg_get(c, "d")), 5);
    ASSERT_NULL(ksock_cfg_get(root, "missing"));
    ASSERT_NULL(ksock_cfg_get(a, "not an object"));
    ksock_config_free(cfg);
}

TEST(syntax_error_has_line_and_column)
{
    char err[256];
    int rc;
    ASSERT_NULL(load("{\n  \"a\": 1,\n  \"b\": ,\n}", err, sizeof(err), &rc));
    ASSERT_EQ(rc, KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "t.json:3:");
    ASSERT_CONTAINS(err, "syntax error");
}

TEST(trailing_comma)
{
    char err[256];
    int rc;
    ASSERT_NULL(load("{\"a\": 1,\n}", err, sizeof(err), &rc));
    ASSERT_EQ(rc, KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "t.json:2:1: syntax error");
}

TEST(truncated_document)
{
    char err[256];
    int rc;
    ASSERT_NULL(load("{\"a\": [1, 2", err, sizeof(err), &rc));
    ASSERT_EQ(rc, KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "t.json:1:");
}

TEST(empty_document)
{
    char err[256];
    int rc;
    ASSERT_NULL(load("  // nothing\n", err, sizeof(err), &rc));
    ASSERT_EQ(rc, KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "empty document");
}

TEST(trailing_garbage)
{
    char err[256];
    int rc;
    ASSERT_NULL(load("{} {}", err, sizeof(err), &rc));
    ASSERT_EQ(rc, KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "t.json:1:");
}

TEST(duplicate_key)
{
    char err[256];
    int rc;
    ASSERT_NULL(load("{\"a\": 1,\n \"a\": 2}", err, sizeof(err), &rc));
    ASSERT_EQ(rc, KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "t.json:2:2: duplicate key \"a\"");
}

TEST(invalid_utf8)
{
    char err[256];
    int rc;
    ASSERT_NULL(load("{\"a\": \"\xff\xfe\"}", err, sizeof(err), &rc));
    ASSERT_EQ(rc, KSOCK_E_CONFIG);
}

TEST(too_deep)
{
    char text[400], err[256];
    int rc;
    memset(text, '[', 100);
    memset(text + 100, ']', 100);
    text[200] = '\0';
    ASSERT_NULL(load(text, err, sizeof(err), &rc));
    ASSERT_EQ(rc, KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "nesting deeper than");
}

TEST(integer_overflow)
{
    char err[256];
    int rc;
    ASSERT_NULL(load("{\"a\": 99999999999999999999}", err, sizeof(err), &rc));
    ASSERT_EQ(rc, KSOCK_E_CONFIG);
}

TEST(missing_file)
{
    char err[256];
    ksock_config_t *cfg;
    ASSERT_EQ(ksock_config_load_file("/nonexistent/ksockd.json", &cfg, err, sizeof(err)),
              KSOCK_E_NOENT);
    ASSERT_NULL(cfg);
    ASSERT_CONTAINS(err, "/nonexistent/ksockd.json");
}

TEST_LIST(TEST_ENTRY(values_and_positions), TEST_ENTRY(syntax_error_has_line_and_column),
          TEST_ENTRY(trailing_comma), TEST_ENTRY(truncated_document), TEST_ENTRY(empty_document),
          TEST_ENTRY(trailing_garbage), TEST_ENTRY(duplicate_key), TEST_ENTRY(invalid_utf8),
          TEST_ENTRY(too_deep), TEST_ENTRY(integer_overflow), TEST_ENTRY(missing_file))
