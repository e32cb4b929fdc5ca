/*
 * The reconnection policies as a user sees them: the built-in backoff and
 * reconnect_none loaded from build/plugins through the real loader
 * (KSOCK_PLUGIN_PATH from test_env), configured from JSON text the way a
 * config file would, and asked for delays. What is checked is the contract
 * of docs/websocket.md and include/ksock/reconnect.h: the exact schedule
 * without jitter, the bounds and spread of full jitter, max_retries, the
 * closes and refusals that are never retried, and options refused at
 * instance creation.
 */
#include "test.h"

#include <ksock/ksock.h>

#if defined(__SANITIZE_ADDRESS__)
#define RT_HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RT_HAVE_LSAN 1
#endif
#endif

#ifdef RT_HAVE_LSAN
#include <sanitizer/lsan_interface.h>
/* Every test ends with this: a leak fails the test that caused it. */
#define RT_LEAK_CHECK() ASSERT(__lsan_do_recoverable_leak_check() == 0)
#else
#define RT_LEAK_CHECK() ((void)0)
#endif

/* A policy instance and what it needs kept alive. */
typedef struct rt_policy_s {
    ksock_runtime_t *rt;
    ksock_config_t *doc;
    ksock_plugin_instance_t *pi;
    const ksock_reconnect_vtable_t *vt;
    void *inst;
} rt_policy_t;

static ksock_runtime_t *rt_runtime(void)
{
    ksock_runtime_t *rt = NULL;
    char err[512] = "";
    if (ksock_runtime_new(&rt, err, sizeof(err)) != 0) TEST_FAIL_("ksock_runtime_new: %s", err);
    ksock_log_options_t lo = {sizeof(lo), KSOCK_LOG_WARN, "console", KSOCK_LOG_FORMAT_TEXT, NULL};
    ksock_log_configure(rt, &lo, err, sizeof(err)); /* keep TAP output readable */
    return rt;
}

/*
 * Try to make an instance of reconnect policy `name` with `options_json`
 * (NULL: no options at all). Returns the loader's code; on failure errstr
 * says why and *out holds nothing to free.
 */
static int rt_try_open(const char *name, const char *options_json, rt_policy_t *out, char *errstr,
                       size_t errstr_size)
{
    rt_policy_t p = {.rt = rt_runtime()};
    ksock_plugin_t *plugin;
    int rc = ksock_plugin_find(p.rt, KSOCK_PLUGIN_RECONNECT, name, &plugin, errstr, errstr_size);
    if (rc != 0) TEST_FAIL_("plugin_find(reconnect %s): %s", name, errstr);
    const ksock_cfg_t *opts = NULL;
    if (options_json) {
        rc = ksock_config_load_string("opts.json", options_json, strlen(options_json), &p.doc,
                                      errstr, errstr_size);
        if (rc != 0) TEST_FAIL_("options do not parse: %s: %s", errstr, options_json);
        opts = ksock_config_root(p.doc);
    }
    rc =
        ksock_plugin_instance_new(p.rt, plugin, "t", p.doc, opts, NULL, &p.pi, errstr, errstr_size);
    if (rc != 0) {
        ASSERT_NULL(p.pi);
        ksock_config_free(p.doc);
        ksock_runtime_destroy(p.rt);
        return rc;
    }
    p.vt = ksock_plugin_instance_vtable(p.pi);
    p.inst = ksock_plugin_instance_inst(p.pi);
    ASSERT_GE(p.vt->size, sizeof(ksock_reconnect_vtable_t));
    *out = p;
    return 0;
}

static rt_policy_t rt_open(const char *name, const char *options_json)
{
    rt_policy_t p;
    char err[512] = "";
    int rc = rt_try_open(name, options_json, &p, err, sizeof(err));
    if (rc != 0) TEST_FAIL_("instance_new(reconnect %s, %s): %s", name, options_json, err);
    return p;
}

static void rt_close(rt_policy_t *p)
{
    ksock_plugin_instance_free(p->pi);
    ksock_config_free(p->doc);
    ksock_runtime_destroy(p->rt);
    memset(p, 0, sizeof(*p));
}

/* An ordinary loss: the connection was reset, no close frame. */
static ksock_disconnect_info_t rt_info(uint32_t attempt)
{
    ksock_disconnect_info_t info = {
        .size = sizeof(info),
        .err = KSOCK_E_CLOSED,
        .close_code = 0,
        .reason = NULL,
        .attempt = attempt,
        .connected_ms = 0,
    };
    return info;
}

static int64_t rt_delay(rt_policy_t *p, uint32_t attempt)
{
    ksock_disconnect_info_t info = rt_info(attempt);
    char why[256] = "";
    int64_t d = p->vt->next_delay(p->inst, &info, why, sizeof(why));
    if (d == KSOCK_RECONNECT_GIVE_UP) TEST_FAIL_("attempt %u gave up: %s", attempt, why);
    return d;
}

/* The schedule of docs/websocket.md: min(max_delay, retry_delay * 2^(n-1)). */
static int64_t rt_expected_base(int64_t retry_delay, int64_t max_delay, uint32_t attempt)
{
    int64_t base = retry_delay;
    for (uint32_t i = 1; i < attempt && base < max_delay; i++)
        base *= 2;
    return base < max_delay ? base : max_delay;
}

/* ---- backoff: the schedule -------------------------------------------------------- */

TEST(exponential_without_jitter_doubles_up_to_max_delay)
{
    rt_policy_t p = rt_open("backoff", "{\"retry_delay\": \"100ms\", \"max_delay\": \"5s\", "
                                       "\"exponential_backoff\": true, \"jitter\": false, "
                                       "\"max_retries\": -1}");
    static const struct {
        uint32_t attempt;
        int64_t ms;
    } want[] = {
        {1, 100},   {2, 200},   {3, 400},   {4, 800},     {5, 1600},          {6, 3200},
        {7, 5000},  {8, 5000},  {10, 5000}, {31, 5000},   {32, 5000},         {33, 5000},
        {63, 5000}, {64, 5000}, {65, 5000}, {1000, 5000}, {UINT32_MAX, 5000},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        int64_t d = rt_delay(&p, want[i].attempt);
        if (d != want[i].ms)
            TEST_FAIL_("attempt %u: delay %lld ms, want %lld ms", want[i].attempt, (long long)d,
                       (long long)want[i].ms);
    }
    for (uint32_t n = 1; n <= 2000; n++)
        ASSERT_EQ(rt_delay(&p, n), rt_expected_base(100, 5000, n));
    /* Asking again gives the same answer: the instance holds no attempt counter. */
    ASSERT_EQ(rt_delay(&p, 3), 400);
    ASSERT_EQ(rt_delay(&p, 3), 400);
    rt_close(&p);

    /* The largest delays the schema allows do not overflow either. */
    p = rt_open("backoff", "{\"retry_delay\": \"1d\", \"max_delay\": \"1d\", \"jitter\": false, "
                           "\"max_retries\": -1}");
    ASSERT_EQ(rt_delay(&p, 1), 86400000);
    ASSERT_EQ(rt_delay(&p, 64), 86400000);
    ASSERT_EQ(rt_delay(&p, 1000), 86400000);
    rt_close(&p);
    p = rt_open("backoff", "{\"retry_delay\": 1, \"max_delay\": \"1d\", \"jitter\": false, "
                           "\"max_retries\": -1}");
    ASSERT_EQ(rt_delay(&p, 1), 1);
    ASSERT_EQ(rt_delay(&p, 27), 67108864); /* 2^26 */
    ASSERT_EQ(rt_delay(&p, 28), 86400000); /* 2^27 > 1 day: capped */
    ASSERT_EQ(rt_delay(&p, 64), 86400000);
    ASSERT_EQ(rt_delay(&p, 1000), 86400000);
    rt_close(&p);
    RT_LEAK_CHECK();
}

TEST(defaults_without_jitter_are_one_second_doubling_to_thirty)
{
    /* Only jitter off: the documented defaults 1s, doubling, cap 30s. */
    rt_policy_t p = rt_open("backoff", "{\"jitter\": false}");
    static const int64_t want[] = {1000,  2000,  4000,  8000,  16000,
                                   30000, 30000, 30000, 30000, 30000};
    for (uint32_t n = 1; n <= 10; n++)
        ASSERT_EQ(rt_delay(&p, n), want[n - 1]);
    rt_close(&p);
    RT_LEAK_CHECK();
}

TEST(fixed_delay_when_exponential_is_off)
{
    rt_policy_t p = rt_open("backoff", "{\"retry_delay\": \"250ms\", \"max_delay\": \"10s\", "
                                       "\"exponential_backoff\": false, \"jitter\": false, "
                                       "\"max_retries\": -1}");
    static const uint32_t attempts[] = {1, 2, 3, 4, 5, 10, 31, 32, 33, 64, 1000, UINT32_MAX};
    for (size_t i = 0; i < sizeof(attempts) / sizeof(attempts[0]); i++)
        ASSERT_EQ(rt_delay(&p, attempts[i]), 250);
    rt_close(&p);

    /* retry_delay 0 is allowed: retry at once, every time. */
    p = rt_open("backoff", "{\"retry_delay\": 0, \"exponential_backoff\": false, "
                           "\"max_retries\": -1}");
    for (uint32_t n = 1; n <= 100; n++)
        ASSERT_EQ(rt_delay(&p, n), 0);
    rt_close(&p);
    RT_LEAK_CHECK();
}

/*
 * Full jitter: every draw within [0, base(n)], and spread over the window.
 * 2000 uniform draws all landing in the lowest (or highest) quarter would
 * happen with probability 0.75^2000: never, unless the RNG is broken.
 */
static void rt_check_jitter(rt_policy_t *p, int64_t retry_delay, int64_t max_delay,
                            uint32_t attempt)
{
    int64_t cap = rt_expected_base(retry_delay, max_delay, attempt);
    int64_t lo = INT64_MAX, hi = -1;
    double sum = 0;
    enum { DRAWS = 2000 };
    for (int i = 0; i < DRAWS; i++) {
        int64_t d = rt_delay(p, attempt);
        if (d < 0 || d > cap)
            TEST_FAIL_("attempt %u: delay %lld ms outside [0, %lld]", attempt, (long long)d,
                       (long long)cap);
        if (d < lo) lo = d;
        if (d > hi) hi = d;
        sum += (double)d;
    }
    if (lo == hi)
        TEST_FAIL_("attempt %u: all %d draws were %lld ms", attempt, DRAWS, (long long)lo);
    if (!(lo < cap / 4 && hi > cap * 3 / 4))
        TEST_FAIL_("attempt %u: draws in [%lld, %lld], want spread over [0, %lld]", attempt,
                   (long long)lo, (long long)hi, (long long)cap);
    /* Uniform: the mean is near cap/2 (sd of the mean ~ cap/155 here; allow 10 %). */
    double mean = sum / DRAWS;
    if (mean < cap * 0.4 || mean > cap * 0.6)
        TEST_FAIL_("attempt %u: mean %.1f ms, want about %lld", attempt, mean,
                   (long long)(cap / 2));
}

TEST(full_jitter_stays_within_the_window_and_spreads)
{
    rt_policy_t p = rt_open("backoff", "{\"retry_delay\": \"100ms\", \"max_delay\": \"5s\", "
                                       "\"jitter\": true, \"max_retries\": -1}");
    static const uint32_t attempts[] = {1, 2, 3, 4, 5, 6, 7, 8, 64, 1000};
    for (size_t i = 0; i < sizeof(attempts) / sizeof(attempts[0]); i++)
        rt_check_jitter(&p, 100, 5000, attempts[i]);
    rt_close(&p);

    /* Jitter also applies to the fixed delay. */
    p = rt_open("backoff", "{\"retry_delay\": \"2s\", \"exponential_backoff\": false, "
                           "\"max_retries\": -1}");
    rt_check_jitter(&p, 2000, 2000, 1);
    rt_check_jitter(&p, 2000, 2000, 50);
    rt_close(&p);

    /* Jitter is the default. */
    p = rt_open("backoff", "{}");
    rt_check_jitter(&p, 1000, 30000, 1);
    rt_check_jitter(&p, 1000, 30000, 6);
    rt_close(&p);
    RT_LEAK_CHECK();
}

TEST(two_instances_do_not_draw_the_same_sequence)
{
    /* Clients that lost the same server must not come back in step. */
    const char *opts = "{\"retry_delay\": \"1s\", \"max_delay\": \"1d\", \"max_retries\": -1}";
    rt_policy_t a = rt_open("backoff", opts), b = rt_open("backoff", opts);
    int same = 0;
    for (int i = 0; i < 32; i++)
        if (rt_delay(&a, 20) == rt_delay(&b, 20)) same++;
    ASSERT_LT(same, 4);
    rt_close(&a);
    rt_close(&b);
    RT_LEAK_CHECK();
}

/* ---- backoff: when to give up ----------------------------------------------------- */

TEST(max_retries_allows_that_many_attempts_then_gives_up)
{
    rt_policy_t p = rt_open("backoff", "{\"max_retries\": 3, \"retry_delay\": \"10ms\", "
                                       "\"jitter\": false}");
    ASSERT_EQ(rt_delay(&p, 1), 10);
    ASSERT_EQ(rt_delay(&p, 2), 20);
    ASSERT_EQ(rt_delay(&p, 3), 40);
    static const uint32_t over[] = {4, 5, 100, UINT32_MAX};
    for (size_t i = 0; i < sizeof(over) / sizeof(over[0]); i++) {
        ksock_disconnect_info_t info = rt_info(over[i]);
        char why[256] = "";
        ASSERT_EQ(p.vt->next_delay(p.inst, &info, why, sizeof(why)), KSOCK_RECONNECT_GIVE_UP);
        ASSERT_CONTAINS(why, "max_retries");
        ASSERT_CONTAINS(why, "3");
    }
    /* `why` may be NULL. */
    ksock_disconnect_info_t info = rt_info(4);
    ASSERT_EQ(p.vt->next_delay(p.inst, &info, NULL, 0), KSOCK_RECONNECT_GIVE_UP);
    rt_close(&p);

    /* The documented default is 10. */
    p = rt_open("backoff", "{\"jitter\": false}");
    ASSERT_EQ(rt_delay(&p, 10), 30000);
    info = rt_info(11);
    char why[256] = "";
    ASSERT_EQ(p.vt->next_delay(p.inst, &info, why, sizeof(why)), KSOCK_RECONNECT_GIVE_UP);
    ASSERT_CONTAINS(why, "max_retries (10)");
    rt_close(&p);
    RT_LEAK_CHECK();
}

TEST(max_retries_zero_never_retries)
{
    rt_policy_t p = rt_open("backoff", "{\"max_retries\": 0}");
    ksock_disconnect_info_t info = rt_info(1);
    char why[256] = "";
    ASSERT_EQ(p.vt->next_delay(p.inst, &info, why, sizeof(why)), KSOCK_RECONNECT_GIVE_UP);
    ASSERT_CONTAINS(why, "max_retries");
    rt_close(&p);
    RT_LEAK_CHECK();
}

TEST(max_retries_minus_one_never_gives_up)
{
    rt_policy_t p = rt_open("backoff", "{\"max_retries\": -1, \"retry_delay\": \"10ms\", "
                                       "\"max_delay\": \"1s\", \"jitter\": false}");
    for (uint32_t n = 1; n <= 100000; n++) {
        int64_t d = rt_delay(&p, n); /* fails the test on a give-up */
        ASSERT_EQ(d, rt_expected_base(10, 1000, n));
    }
    ASSERT_EQ(rt_delay(&p, UINT32_MAX), 1000);
    rt_close(&p);
    RT_LEAK_CHECK();
}

TEST(final_close_codes_give_up_at_once)
{
    rt_policy_t p = rt_open("backoff", "{\"max_retries\": -1}");
    static const int final_codes[] = {1008, 4401, 4403};
    for (size_t i = 0; i < 3; i++) {
        ASSERT(ksock_close_code_is_final(final_codes[i]));
        /* On the first attempt already, with and without a reason. */
        ksock_disconnect_info_t info = rt_info(1);
        info.close_code = final_codes[i];
        char why[256] = "", code[16];
        snprintf(code, sizeof(code), "%d", final_codes[i]);
        ASSERT_EQ(p.vt->next_delay(p.inst, &info, why, sizeof(why)), KSOCK_RECONNECT_GIVE_UP);
        ASSERT_CONTAINS(why, code);
        ASSERT_CONTAINS(why, "final");
        info.reason = "token expired";
        ASSERT_EQ(p.vt->next_delay(p.inst, &info, why, sizeof(why)), KSOCK_RECONNECT_GIVE_UP);
        ASSERT_CONTAINS(why, code);
        ASSERT_CONTAINS(why, "token expired");
    }
    /* The example of docs/websocket.md, word for word. */
    ksock_disconnect_info_t info = rt_info(1);
    info.close_code = 4401;
    info.reason = "token expired";
    char why[256] = "";
    ASSERT_EQ(p.vt->next_delay(p.inst, &info, why, sizeof(why)), KSOCK_RECONNECT_GIVE_UP);
    ASSERT_STR_EQ(why, "close code 4401 is final: token expired");

    static const int ordinary[] = {1000, 1001, 1006, 1011, 1012, 1013, 4000, 4400, 4402, 4404};
    for (size_t i = 0; i < sizeof(ordinary) / sizeof(ordinary[0]); i++) {
        ASSERT(!ksock_close_code_is_final(ordinary[i]));
        info = rt_info(1);
        info.close_code = ordinary[i];
        info.reason = "bye";
        ASSERT_GE(p.vt->next_delay(p.inst, &info, why, sizeof(why)), 0);
    }
    ASSERT(!ksock_close_code_is_final(0));
    rt_close(&p);
    RT_LEAK_CHECK();
}

TEST(refused_credentials_give_up_at_once)
{
    /* docs/websocket.md: refused handshakes (401 -> KSOCK_E_AUTH, 403 -> KSOCK_E_FORBIDDEN). */
    rt_policy_t p = rt_open("backoff", "{\"max_retries\": -1}");
    static const int refused[] = {KSOCK_E_AUTH, KSOCK_E_FORBIDDEN};
    for (size_t i = 0; i < 2; i++) {
        ksock_disconnect_info_t info = rt_info(1);
        info.err = refused[i];
        char why[256] = "";
        ASSERT_EQ(p.vt->next_delay(p.inst, &info, why, sizeof(why)), KSOCK_RECONNECT_GIVE_UP);
        ASSERT_CONTAINS(why, ksock_strerror(refused[i]));
        info.reason = "HTTP 401";
        ASSERT_EQ(p.vt->next_delay(p.inst, &info, why, sizeof(why)), KSOCK_RECONNECT_GIVE_UP);
        ASSERT_CONTAINS(why, "HTTP 401");
    }
    /* Errors worth retrying are retried. */
    static const int retriable[] = {KSOCK_E_CLOSED, KSOCK_E_CONNREFUSED, KSOCK_E_TIMEDOUT};
    for (size_t i = 0; i < 3; i++) {
        ksock_disconnect_info_t info = rt_info(1);
        info.err = retriable[i];
        char why[256] = "";
        ASSERT_GE(p.vt->next_delay(p.inst, &info, why, sizeof(why)), 0);
    }
    rt_close(&p);
    RT_LEAK_CHECK();
}

/* ---- backoff: stable_after and options -------------------------------------------- */

TEST(stable_after_is_the_configured_value)
{
    rt_policy_t p = rt_open("backoff", "{\"stable_after\": \"2500ms\"}");
    ASSERT_EQ(p.vt->stable_after_ms(p.inst), 2500);
    rt_close(&p);
    p = rt_open("backoff", "{\"stable_after\": \"1m\"}");
    ASSERT_EQ(p.vt->stable_after_ms(p.inst), 60000);
    rt_close(&p);
    p = rt_open("backoff", "{\"stable_after\": 0}");
    ASSERT_EQ(p.vt->stable_after_ms(p.inst), 0);
    rt_close(&p);
    /* Documented default: 10 s, with an empty object and with no options at all. */
    p = rt_open("backoff", "{}");
    ASSERT_EQ(p.vt->stable_after_ms(p.inst), 10000);
    rt_close(&p);
    p = rt_open("backoff", NULL);
    ASSERT_EQ(p.vt->stable_after_ms(p.inst), 10000);
    rt_close(&p);
    RT_LEAK_CHECK();
}

/* Creating an instance with `json` fails with KSOCK_E_CONFIG and a message naming each of `words`.
 */
static void rt_refused(const char *json, const char *word1, const char *word2)
{
    rt_policy_t p;
    char err[512] = "";
    int rc = rt_try_open("backoff", json, &p, err, sizeof(err));
    if (rc == 0) {
        rt_close(&p);
        TEST_FAIL_("options accepted: %s", json);
    }
    if (rc != KSOCK_E_CONFIG)
        TEST_FAIL_("options %s: %s (%d), want KSOCK_E_CONFIG: %s", json, ksock_err_name(rc), rc,
                   err);
    ASSERT_CONTAINS(err, word1);
    if (word2) ASSERT_CONTAINS(err, word2);
}

TEST(bad_options_are_refused_at_creation)
{
    rt_refused("{\"retry_delay\": -1}", "retry_delay", NULL);
    rt_refused("{\"retry_delay\": \"-5s\"}", "retry_delay", NULL);
    rt_refused("{\"max_delay\": -1}", "max_delay", NULL);
    rt_refused("{\"stable_after\": -1}", "stable_after", NULL);
    rt_refused("{\"max_retries\": -2}", "max_retries", NULL);
    rt_refused("{\"retry_delay\": \"3d\"}", "retry_delay", NULL); /* above the 1-day bound */
    /* The plugin's own check, after the core's. */
    rt_refused("{\"retry_delay\": \"10s\", \"max_delay\": \"5s\"}", "max_delay", "retry_delay");
    rt_refused("{\"retry_delay\": \"31s\"}", "max_delay", "retry_delay"); /* default max 30s */
    /* Unknown keys are errors, not warnings (a typo must not silently fall back). */
    rt_refused("{\"max_retry\": 3}", "max_retry", NULL);
    rt_refused("{\"retry_delay_ms\": 1000}", "retry_delay_ms", NULL);
    /* Wrong types. */
    rt_refused("{\"max_retries\": \"three\"}", "max_retries", NULL);
    rt_refused("{\"max_retries\": 2.5}", "max_retries", NULL);
    rt_refused("{\"jitter\": \"yes\"}", "jitter", NULL);
    rt_refused("{\"exponential_backoff\": 1}", "exponential_backoff", NULL);
    rt_refused("{\"retry_delay\": \"soon\"}", "retry_delay", NULL);
    rt_refused("{\"retry_delay\": true}", "retry_delay", NULL);
    rt_refused("{\"max_delay\": [1000]}", "max_delay", NULL);

    /* Edges that are fine. */
    static const char *const good[] = {
        "{\"retry_delay\": \"5s\", \"max_delay\": \"5s\"}",
        "{\"retry_delay\": 0, \"max_delay\": 0}",
        "{\"max_retries\": 1000000000}",
        "{\"retry_delay\": 1500, \"max_delay\": \"1d\"}",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        rt_policy_t p = rt_open("backoff", good[i]);
        rt_close(&p);
    }
    RT_LEAK_CHECK();
}

TEST(backoff_descriptor_through_the_loader)
{
    ksock_runtime_t *rt = rt_runtime();
    char err[512] = "";
    ksock_plugin_t *p;
    ASSERT_OK(ksock_plugin_find(rt, KSOCK_PLUGIN_RECONNECT, "backoff", &p, err, sizeof(err)));
    const ksock_plugin_desc_t *d = ksock_plugin_desc(p);
    ASSERT_STR_EQ(d->name, "backoff");
    ASSERT_EQ(d->kind, KSOCK_PLUGIN_RECONNECT);
    /* Built into libksock (core/ws/backoff.c), as the client API's default. */
    ASSERT_STR_EQ(ksock_plugin_file(p), "(builtin)");
    /* The option names docs/websocket.md lists, and no others. */
    static const char *const names[] = {"max_retries", "max_delay",    "retry_delay",
                                        "jitter",      "stable_after", "exponential_backoff"};
    size_t n = 0;
    for (const ksock_option_t *o = d->options; o->name; o++) {
        n++;
        int known = 0;
        for (size_t i = 0; i < 6; i++)
            if (strcmp(o->name, names[i]) == 0) known = 1;
        if (!known) TEST_FAIL_("undocumented option %s", o->name);
    }
    ASSERT_EQ(n, 6);
    ksock_runtime_destroy(rt);
    RT_LEAK_CHECK();
}

/* ---- none -------------------------------------------------------------------------- */

TEST(none_always_gives_up)
{
    rt_policy_t p = rt_open("none", NULL);
    ksock_plugin_t *plugin = ksock_plugin_instance_plugin(p.pi);
    ASSERT_STR_EQ(ksock_plugin_desc(plugin)->name, "none");
    ASSERT_EQ(ksock_plugin_desc(plugin)->kind, KSOCK_PLUGIN_RECONNECT);
    ASSERT_CONTAINS(ksock_plugin_file(plugin), "reconnect_none.so");
    static const uint32_t attempts[] = {1, 2, 10, 1000, UINT32_MAX};
    static const int codes[] = {0, 1000, 1001, 1006, 1011, 4000};
    static const int errs[] = {KSOCK_E_CLOSED, KSOCK_E_CONNREFUSED, KSOCK_E_TIMEDOUT};
    for (size_t a = 0; a < sizeof(attempts) / sizeof(attempts[0]); a++)
        for (size_t c = 0; c < sizeof(codes) / sizeof(codes[0]); c++)
            for (size_t e = 0; e < sizeof(errs) / sizeof(errs[0]); e++) {
                ksock_disconnect_info_t info = rt_info(attempts[a]);
                info.close_code = codes[c];
                info.err = errs[e];
                char why[256] = "stale";
                ASSERT_EQ(p.vt->next_delay(p.inst, &info, why, sizeof(why)),
                          KSOCK_RECONNECT_GIVE_UP);
                /* Nothing added: on_close reports the close as it happened. */
                ASSERT_STR_EQ(why, "");
            }
    ksock_disconnect_info_t info = rt_info(1);
    ASSERT_EQ(p.vt->next_delay(p.inst, &info, NULL, 0), KSOCK_RECONNECT_GIVE_UP);
    /* Never retries, so there is no counter to reset: 0 is the sane answer. */
    ASSERT_EQ(p.vt->stable_after_ms(p.inst), 0);
    rt_close(&p);

    /* An empty object is no options; "none" has none, so anything else is refused. */
    p = rt_open("none", "{}");
    rt_close(&p);
    char err[512] = "";
    ASSERT_EQ(rt_try_open("none", "{\"max_retries\": 3}", &p, err, sizeof(err)), KSOCK_E_CONFIG);
    ASSERT_CONTAINS(err, "max_retries");
    RT_LEAK_CHECK();
}

TEST(unknown_policy_is_not_found)
{
    ksock_runtime_t *rt = rt_runtime();
    char err[1024] = "";
    ksock_plugin_t *p = NULL;
    ASSERT_EQ(ksock_plugin_find(rt, KSOCK_PLUGIN_RECONNECT, "fibonacci", &p, err, sizeof(err)),
              KSOCK_E_NOENT);
    ASSERT_CONTAINS(err, "fibonacci");
    ksock_runtime_destroy(rt);
    RT_LEAK_CHECK();
}

TEST_LIST(TEST_ENTRY(exponential_without_jitter_doubles_up_to_max_delay),
          TEST_ENTRY(defaults_without_jitter_are_one_second_doubling_to_thirty),
          TEST_ENTRY(fixed_delay_when_exponential_is_off),
          TEST_ENTRY(full_jitter_stays_within_the_window_and_spreads),
          TEST_ENTRY(two_instances_do_not_draw_the_same_sequence),
          TEST_ENTRY(max_retries_allows_that_many_attempts_then_gives_up),
          TEST_ENTRY(max_retries_zero_never_retries),
          TEST_ENTRY(max_retries_minus_one_never_gives_up),
          TEST_ENTRY(final_close_codes_give_up_at_once),
          TEST_ENTRY(refused_credentials_give_up_at_once),
          TEST_ENTRY(stable_after_is_the_configured_value),
          TEST_ENTRY(bad_options_are_refused_at_creation),
          TEST_ENTRY(backoff_descriptor_through_the_loader), TEST_ENTRY(none_always_gives_up),
          TEST_ENTRY(unknown_policy_is_not_found))
