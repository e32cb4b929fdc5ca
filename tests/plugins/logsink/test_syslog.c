/*
 * logsink "syslog" through the real loader, against a unix datagram socket
 * the test binds in place of /dev/log: RFC 3164 priority, header and
 * message; formats; no socket; daemon restart; truncation; two instances.
 */
#include "logsink_test.h"

#include <sys/socket.h>
#include <sys/un.h>

static int bind_dgram(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    struct sockaddr_un a;
    memset(&a, 0, sizeof(a));
    a.sun_family = AF_UNIX;
    ASSERT_LT(strlen(path), sizeof(a.sun_path));
    strcpy(a.sun_path, path);
    unlink(path);
    ASSERT_OK(bind(fd, (struct sockaddr *)&a, sizeof(a)));
    return fd;
}

/* Next datagram, NUL-terminated, or -1 if none is waiting. */
static ssize_t recv_one(int fd, char *buf, size_t n)
{
    ssize_t r = recv(fd, buf, n - 1, MSG_DONTWAIT);
    if (r >= 0) buf[r] = '\0';
    return r;
}

/* Next datagram from the "test" component (the core may log too). */
static ssize_t recv_test(int fd, char *buf, size_t n)
{
    ssize_t r;
    while ((r = recv_one(fd, buf, n)) >= 0)
        if (strstr(buf, "]: test: ") || strstr(buf, "\"component\":\"test\"")) return r;
    return -1;
}

static const char *syslog_sink(const char *name, const char *sock, const char *extra)
{
    return lt_fmt("{\"type\":\"syslog\",\"name\":\"%s\",\"socket\":\"%s\",\"level\":\"debug\"%s%s}",
                  name, sock, extra ? "," : "", extra ? extra : "");
}

/* "<PRI>Mmm dd hh:mm:ss " ; returns the rest. */
static const char *check_header(const char *d, int pri)
{
    char want[16];
    snprintf(want, sizeof(want), "<%d>", pri);
    if (strncmp(d, want, strlen(want)) != 0) TEST_FAIL_("want %s: %s", want, d);
    const char *p = d + strlen(want);
    static const char *months = "JanFebMarAprMayJunJulAugSepOctNovDec";
    char mon[4] = {p[0], p[1], p[2], 0};
    ASSERT_NOT_NULL(strstr(months, mon));
    ASSERT_EQ(p[3], ' ');
    ASSERT(p[4] == ' ' || (p[4] >= '1' && p[4] <= '3'));
    ASSERT(p[5] >= '0' && p[5] <= '9');
    ASSERT_EQ(p[6], ' ');
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(p + 7, "%H:%M:%S", &tm);
    ASSERT_NOT_NULL(end);
    ASSERT_EQ(end - (p + 7), 8);
    ASSERT_EQ(*end, ' ');
    /* Local time, within a minute of now. */
    time_t now = time(NULL);
    struct tm lt;
    localtime_r(&now, &lt);
    int diff = (lt.tm_hour * 3600 + lt.tm_min * 60 + lt.tm_sec) -
               (tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec);
    ASSERT(diff >= -1 && (diff <= 60 || diff >= 86400 - 60));
    return end + 1;
}

TEST(syslog_rfc3164_text)
{
    lt_tmpdir();
    const char *sp = lt_path("log.sock");
    int fd = bind_dgram(sp);
    ksock_runtime_t *rt =
        lt_runtime(lt_fmt("{\"log\":{\"sinks\":[%s]}}",
                          syslog_sink("s", sp, "\"ident\":\"ktest\",\"facility\":\"local3\"")));
    ksock_kv_t kv[] = {KSOCK_KV_STR("topic", "orders"), KSOCK_KV_I64("partition", 3)};
    ksock_log(rt, KSOCK_LOG_INFO, "test", kv, 2, "hello syslog");
    ksock_log(rt, KSOCK_LOG_DEBUG, "test", NULL, 0, "d");
    ksock_log(rt, KSOCK_LOG_WARN, "test", NULL, 0, "w");
    ksock_log(rt, KSOCK_LOG_ERROR, "test", NULL, 0, "e");

    char buf[4096], want[256];
    snprintf(want, sizeof(want), "ktest[%ld]: test: ", (long)getpid());
    /* local3 = 19: PRI = 19 * 8 + severity (info 6, debug 7, warning 4, err 3). */
    const int pri[] = {158, 159, 156, 155};
    const char *msg[] = {"hello syslog topic=orders partition=3", "d", "w", "e"};
    for (int i = 0; i < 4; i++) {
        ASSERT_GT(recv_test(fd, buf, sizeof(buf)), 0);
        const char *rest = check_header(buf, pri[i]);
        ASSERT_EQ(strncmp(rest, want, strlen(want)), 0);
        ASSERT_STR_EQ(rest + strlen(want), msg[i]); /* no time, no level, no newline */
    }
    ksock_log_sink_stats_t st = lt_stats(rt, "s");
    ASSERT_GE(st.written, 4);
    ASSERT_EQ(st.dropped, 0);
    ksock_runtime_destroy(rt);
    close(fd);
}

TEST(syslog_json_and_default_facility)
{
    lt_tmpdir();
    const char *sp = lt_path("log.sock");
    int fd = bind_dgram(sp);
    ksock_runtime_t *rt = lt_runtime(
        lt_fmt("{\"log\":{\"sinks\":[%s]}}", syslog_sink("s", sp, "\"format\":\"json\"")));
    ksock_kv_t kv[] = {KSOCK_KV_BOOL("ok", false)};
    ksock_log(rt, KSOCK_LOG_INFO, "test", kv, 1, "as json");
    char buf[4096], want[64];
    ASSERT_GT(recv_test(fd, buf, sizeof(buf)), 0);
    const char *rest = check_header(buf, 3 * 8 + 6); /* daemon.info = 30 */
    snprintf(want, sizeof(want), "ksockd[%ld]: ", (long)getpid());
    ASSERT_EQ(strncmp(rest, want, strlen(want)), 0);
    yajl_val v = lt_json(rest + strlen(want));
    ASSERT_STR_EQ(lt_jstr(v, "message", NULL), "as json");
    ASSERT_STR_EQ(lt_jstr(v, "level", NULL), "info");
    const char *okp[] = {"context", "ok", NULL};
    ASSERT_NOT_NULL(yajl_tree_get(v, okp, yajl_t_false));
    yajl_tree_free(v);
    ksock_runtime_destroy(rt);
    close(fd);
}

/* No syslog daemon: nothing crashes, drops are counted, logging goes on,
 * and records flow once the socket appears (reconnect at most 1/s). */
TEST(syslog_no_socket)
{
    lt_tmpdir();
    const char *sp = lt_path("absent.sock");
    const char *txt = lt_path("other.log");
    ksock_runtime_t *rt = lt_runtime(lt_fmt("{\"log\":{\"sinks\":[%s,{\"type\":\"file\",\"name\":"
                                            "\"f\",\"path\":\"%s\",\"level\":\"debug\","
                                            "\"buffer_size\":0}]}}",
                                            syslog_sink("s", sp, NULL), txt));
    lt_errors_t errs;
    memset(&errs, 0, sizeof(errs));
    ksock_on_error(rt, lt_on_error, &errs);
    for (int i = 0; i < 5; i++)
        ksock_log(rt, KSOCK_LOG_INFO, "test", NULL, 0, "dropped %d", i);
    ksock_log_sink_stats_t st = lt_stats(rt, "s");
    ASSERT_EQ(st.written, 0);
    ASSERT_EQ(st.dropped, 5);
    ASSERT_GE(st.errors, 1);
    /* The other sink is unaffected. */
    char *c = lt_read_file(txt);
    ASSERT_EQ(lt_count(c, "test: dropped "), 5);
    free(c);
    /* The reason reaches the error handler, naming the socket. */
    lt_run_for(rt, 1200);
    ASSERT_CONTAINS(errs.messages, sp);
    ASSERT_CONTAINS(errs.messages, "No such file or directory");

    int fd = bind_dgram(sp);
    lt_run_for(rt, 1100); /* past the reconnect interval */
    ksock_log(rt, KSOCK_LOG_INFO, "test", NULL, 0, "arrives");
    char buf[4096];
    ASSERT_GT(recv_test(fd, buf, sizeof(buf)), 0);
    ASSERT_CONTAINS(buf, "test: arrives");
    st = lt_stats(rt, "s");
    ASSERT_GE(st.written, 1);
    ASSERT_GE(st.dropped, 5);
    ksock_runtime_destroy(rt);
    close(fd);
}

/* The daemon restarts: a new socket at the same path; no record is lost. */
TEST(syslog_daemon_restart)
{
    lt_tmpdir();
    const char *sp = lt_path("log.sock");
    int fd = bind_dgram(sp);
    ksock_runtime_t *rt =
        lt_runtime(lt_fmt("{\"log\":{\"sinks\":[%s]}}", syslog_sink("s", sp, NULL)));
    char buf[4096];
    ksock_log(rt, KSOCK_LOG_INFO, "test", NULL, 0, "first");
    ASSERT_GT(recv_test(fd, buf, sizeof(buf)), 0);
    close(fd);
    fd = bind_dgram(sp); /* unlinks and binds anew */
    ksock_log(rt, KSOCK_LOG_INFO, "test", NULL, 0, "second");
    ASSERT_GT(recv_test(fd, buf, sizeof(buf)), 0);
    ASSERT_CONTAINS(buf, "test: second");
    ASSERT_EQ(lt_stats(rt, "s").dropped, 0);
    ksock_runtime_destroy(rt);
    close(fd);
}

/* Long messages are cut to max_message_size, never inside a UTF-8 character. */
TEST(syslog_truncation_utf8)
{
    lt_tmpdir();
    const char *sp = lt_path("log.sock");
    int fd = bind_dgram(sp);
    ksock_runtime_t *rt = lt_runtime(
        lt_fmt("{\"log\":{\"sinks\":[%s]}}", syslog_sink("s", sp, "\"max_message_size\":500")));
    char big[3001];
    for (int i = 0; i < 1000; i++)
        memcpy(big + 3 * i, "\xe2\x82\xac", 3); /* U+20AC, 3 bytes */
    big[3000] = '\0';
    ksock_log(rt, KSOCK_LOG_INFO, "test", NULL, 0, "%s", big);
    char buf[8192];
    ssize_t n = recv_test(fd, buf, sizeof(buf));
    ASSERT_GT(n, 400);
    ASSERT_LE(n, 500);
    const char *body = strstr(buf, "test: ") + 6;
    ASSERT_EQ((buf + n - body) % 3, 0); /* whole characters only */
    ASSERT_EQ((unsigned char)buf[n - 1], 0xac);
    ksock_runtime_destroy(rt);
    close(fd);
}

/* Next datagram holding lt_log_hostile's record; its length must be what strlen sees. */
static ssize_t recv_hostile(int fd, char *buf, size_t n)
{
    ssize_t r;
    while ((r = recv_one(fd, buf, n)) >= 0)
        if (strstr(buf, "nul=")) {
            ASSERT_EQ(strlen(buf), (size_t)r); /* no raw NUL */
            return r;
        }
    return -1;
}

/* Client-controlled bytes reach syslog escaped, in both formats (docs/logging.md). */
TEST(syslog_hostile_values_escaped)
{
    lt_tmpdir();
    const char *sp = lt_path("log.sock"), *sj = lt_path("json.sock");
    int fd = bind_dgram(sp), fj = bind_dgram(sj);
    ksock_runtime_t *rt =
        lt_runtime(lt_fmt("{\"log\":{\"sinks\":[%s,%s]}}", syslog_sink("s", sp, NULL),
                          syslog_sink("j", sj, "\"format\":\"json\"")));
    lt_log_hostile(rt, false);
    char buf[8192], want[64];
    ssize_t n = recv_hostile(fd, buf, sizeof(buf));
    ASSERT_GT(n, 0);
    lt_assert_clean(buf, (size_t)n);
    ASSERT_EQ(lt_count(buf, "\n"), 0);
    snprintf(want, sizeof(want), "ksockd[%ld]: ", (long)getpid());
    const char *rest = strstr(check_header(buf, 3 * 8 + 4), want);
    ASSERT_NOT_NULL(rest);
    ASSERT_EQ(strncmp(rest + strlen(want), "test\\x1b\\n\\xff: reason=a\\x1b[2Jb\\nc\\rd", 38), 0);

    n = recv_hostile(fj, buf, sizeof(buf));
    ASSERT_GT(n, 0);
    lt_assert_clean(buf, (size_t)n);
    rest = strstr(buf, want);
    ASSERT_NOT_NULL(rest);
    yajl_val v = lt_json(rest + strlen(want));
    ASSERT_STR_EQ(lt_jstr(v, "context", "reason"), LT_HOSTILE_JSON);
    ASSERT_STR_EQ(lt_jstr(v, "message", NULL), "reason=" LT_HOSTILE_JSON " nul=");
    yajl_tree_free(v);
    ksock_runtime_destroy(rt);
    close(fd);
    close(fj);
}

/* No process-global state: two instances, two idents, two facilities. */
TEST(syslog_two_instances)
{
    lt_tmpdir();
    const char *s1 = lt_path("a.sock"), *s2 = lt_path("b.sock");
    int f1 = bind_dgram(s1), f2 = bind_dgram(s2);
    ksock_runtime_t *rt =
        lt_runtime(lt_fmt("{\"log\":{\"sinks\":[%s,%s]}}",
                          syslog_sink("a", s1, "\"ident\":\"alpha\",\"facility\":\"user\""),
                          syslog_sink("b", s2, "\"ident\":\"beta\",\"facility\":\"local7\"")));
    ksock_log(rt, KSOCK_LOG_WARN, "test", NULL, 0, "both");
    char buf[4096], want[64];
    ASSERT_GT(recv_test(f1, buf, sizeof(buf)), 0);
    snprintf(want, sizeof(want), "alpha[%ld]: test: both", (long)getpid());
    ASSERT_STR_EQ(check_header(buf, 1 * 8 + 4), want);
    ASSERT_GT(recv_test(f2, buf, sizeof(buf)), 0);
    snprintf(want, sizeof(want), "beta[%ld]: test: both", (long)getpid());
    ASSERT_STR_EQ(check_header(buf, 23 * 8 + 4), want);
    ksock_runtime_destroy(rt);
    close(f1);
    close(f2);
}

TEST(syslog_options_refused)
{
    lt_tmpdir();
    char err[1024] = "";
    ksock_runtime_t *rt = NULL;
    int rc = lt_try_runtime(lt_fmt("{\"log\":{\"sinks\":[%s]}}",
                                   syslog_sink("s", "/dev/log", "\"ident\":\"two words\"")),
                            &rt, err, sizeof(err));
    ASSERT_EQ(rc, KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "ident");
    rc = lt_try_runtime(
        lt_fmt("{\"log\":{\"sinks\":[%s]}}", syslog_sink("s", "/dev/log", "\"facility\":\"kern\"")),
        &rt, err, sizeof(err));
    ASSERT_EQ(rc, KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "facility");
}

TEST_LIST(TEST_ENTRY(syslog_hostile_values_escaped), TEST_ENTRY(syslog_rfc3164_text),
          TEST_ENTRY(syslog_json_and_default_facility), TEST_ENTRY(syslog_no_socket),
          TEST_ENTRY(syslog_daemon_restart), TEST_ENTRY(syslog_truncation_utf8),
          TEST_ENTRY(syslog_two_instances), TEST_ENTRY(syslog_options_refused))
