/* docs/errors.md lists every code of KSOCK_ERRNO_MAP with its number and class. */
#include "test.h"

#include <ksock/ksock.h>

TEST(every_code_is_documented)
{
    char path[512], line[64];
    snprintf(path, sizeof(path), "%s/docs/errors.md", getenv("KSOCK_SOURCE_ROOT"));
    FILE *f = fopen(path, "r");
    ASSERT_NOT_NULL(f);
    static char doc[1 << 16];
    size_t n = fread(doc, 1, sizeof(doc) - 1, f);
    doc[n] = '\0';
    fclose(f);
#define XX(name, num, cls, msg)                                                                    \
    snprintf(line, sizeof(line), "| %d | `KSOCK_E_%s` | %s |", num, #name,                         \
             ksock_err_is_retriable(num) ? "retriable" : "fatal");                                 \
    ASSERT_CONTAINS(doc, line);
    KSOCK_ERRNO_MAP(XX)
#undef XX
}

TEST_LIST(TEST_ENTRY(every_code_is_documented))
