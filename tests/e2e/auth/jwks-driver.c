/*
 * One long-lived "jwt" authenticator instance for test_jwks.py: the key set
 * of a jwks_url lives inside an instance (cache, refresh thread, rate
 * limit), so the test needs a process that keeps one open while it changes
 * what its HTTPS server serves. `ksock token` makes a new instance per call.
 *
 *   jwks-driver OPTIONS_JSON
 *
 * auth_jwt is loaded through the real loader (KSOCK_PLUGIN_PATH). Prints
 * "READY" once created, or "CREATE-FAILED <code> <reason>" and exits 2. Then
 * one line in, one line out:
 *   "a TOKEN" -> authenticate() with "Authorization: Bearer TOKEN"
 *   "v TOKEN" -> validate_token()
 * answered "OK <sub>" or "REFUSED <code> <reason>"; and "s ..." (stress(),
 * below). At end of input the
 * instance is destroyed (the refresh thread joined) and it prints "BYE".
 * Logs (level from KSOCK_TEST_LOG_LEVEL, default info) go to stderr.
 */
#include <ksock/ksock.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int die(const char *what, const char *err)
{
    printf("CREATE-FAILED %s %s\n", what, err);
    return 2;
}

/*
 * "s SECONDS GOOD BAD": 4 threads call validate_token() for SECONDS, taking
 * turns between GOOD (must be accepted) and BAD (an unknown kid: refused,
 * and a refresh started), so key sets are swapped while tokens are being
 * verified with them. Prints "STRESS good=N/M bad-refused=K/L".
 */
typedef struct stress_s {
    const ksock_auth_vtable_t *vt;
    void *inst;
    const char *good, *bad;
    double seconds;
    long good_ok, good_n, bad_refused, bad_n;
} stress_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *stress_thread(void *arg)
{
    stress_t *st = arg;
    double end = now_s() + st->seconds;
    for (long i = 0; now_s() < end; i++) {
        ksock_value_t *claims = NULL;
        char err[512];
        bool good = i % 2 == 0;
        int rc =
            st->vt->validate_token(st->inst, good ? st->good : st->bad, &claims, err, sizeof(err));
        if (claims) ksock_value_unref(claims);
        if (good) {
            st->good_n++;
            st->good_ok += rc == 0;
        } else {
            st->bad_n++;
            st->bad_refused += rc == KSOCK_E_AUTH;
        }
    }
    return NULL;
}

static void stress(const ksock_auth_vtable_t *vt, void *inst, char *args)
{
    char *save = NULL, *secs = strtok_r(args, " ", &save), *good = strtok_r(NULL, " ", &save);
    char *bad = strtok_r(NULL, " ", &save);
    stress_t st[4];
    pthread_t th[4];
    long g = 0, gn = 0, b = 0, bn = 0;
    if (secs == NULL || good == NULL || bad == NULL) {
        printf("REFUSED KSOCK_E_INVAL driver: s SECONDS GOOD BAD\n");
        return;
    }
    for (int i = 0; i < 4; i++) {
        st[i] = (stress_t){vt, inst, good, bad, atof(secs), 0, 0, 0, 0};
        if (pthread_create(&th[i], NULL, stress_thread, &st[i]) != 0) exit(3);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        g += st[i].good_ok, gn += st[i].good_n, b += st[i].bad_refused, bn += st[i].bad_n;
    }
    printf("STRESS good=%ld/%ld bad-refused=%ld/%ld\n", g, gn, b, bn);
}

static void answer(const ksock_auth_vtable_t *vt, void *inst, char *line)
{
    char err[512] = "";
    int rc;
    const char *sub = NULL;
    ksock_principal_t *p = NULL;
    ksock_value_t *claims = NULL;
    if (line[0] == 'a' && line[1] == ' ') {
        char *bearer = malloc(strlen(line) + 8);
        if (bearer == NULL) exit(3);
        sprintf(bearer, "Bearer %s", line + 2);
        ksock_kvpair_t headers[2] = {{"host", "localhost"}, {"authorization", bearer}};
        ksock_handshake_t hs = {.size = sizeof(hs),
                                .path = "/ws",
                                .headers = headers,
                                .nheaders = 2,
                                .peer_addr = "127.0.0.1:5555"};
        rc = vt->authenticate(inst, &hs, &p, err, sizeof(err));
        free(bearer);
        if (rc == 0) sub = p->subject;
    } else if (line[0] == 's' && line[1] == ' ') {
        stress(vt, inst, line + 2);
        fflush(stdout);
        return;
    } else if (line[0] == 'v' && line[1] == ' ') {
        rc = vt->validate_token(inst, line + 2, &claims, err, sizeof(err));
        if (rc == 0) sub = ksock_value_get_string(ksock_value_map_get(claims, "sub"), NULL);
    } else {
        rc = KSOCK_E_INVAL;
        snprintf(err, sizeof(err), "driver: a line is \"a TOKEN\" or \"v TOKEN\"");
    }
    if (rc == 0)
        printf("OK %s\n", sub ? sub : "");
    else
        printf("REFUSED %s %s\n", ksock_err_name(rc), err);
    fflush(stdout);
    ksock_principal_free(p);
    if (claims) ksock_value_unref(claims);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: jwks-driver OPTIONS_JSON\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    ksock_runtime_t *rt = NULL;
    ksock_config_t *doc = NULL;
    ksock_plugin_t *plugin = NULL;
    ksock_plugin_instance_t *pi = NULL;
    char err[512] = "";
    if (ksock_runtime_new(&rt, err, sizeof(err)) != 0) return die("runtime", err);
    const char *lvl = getenv("KSOCK_TEST_LOG_LEVEL");
    ksock_log_options_t lo = {sizeof(lo),
                              lvl && strcmp(lvl, "debug") == 0 ? KSOCK_LOG_DEBUG : KSOCK_LOG_INFO,
                              "console", KSOCK_LOG_FORMAT_TEXT, NULL};
    ksock_log_configure(rt, &lo, err, sizeof(err));
    if (ksock_plugin_find(rt, KSOCK_PLUGIN_AUTH, "jwt", &plugin, err, sizeof(err)) != 0)
        return die("plugin", err);
    if (ksock_config_load_string("opts.json", argv[1], strlen(argv[1]), &doc, err, sizeof(err)))
        return die("options", err);
    int rc = ksock_plugin_instance_new(rt, plugin, "t", doc, ksock_config_root(doc), NULL, &pi, err,
                                       sizeof(err));
    if (rc != 0) { /* refused: what the driver made goes too (the sanitizer build checks leaks) */
        rc = die(ksock_err_name(rc), err);
        ksock_config_free(doc);
        ksock_runtime_destroy(rt);
        return rc;
    }
    const ksock_auth_vtable_t *vt = ksock_plugin_instance_vtable(pi);
    void *inst = ksock_plugin_instance_inst(pi);
    printf("READY\n");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        answer(vt, inst, line);
    }
    free(line);
    ksock_plugin_instance_free(pi);
    ksock_config_free(doc);
    ksock_runtime_destroy(rt);
    printf("BYE\n");
    return 0;
}
