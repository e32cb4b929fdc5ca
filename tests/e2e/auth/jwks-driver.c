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
 * answered "OK <sub>" or "REFUSED <code> <reason>". At end of input the
 * instance is destroyed (the refresh thread joined) and it prints "BYE".
 * Logs (level from KSOCK_TEST_LOG_LEVEL, default info) go to stderr.
 */
#include <ksock/ksock.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int die(const char *what, const char *err)
{
    printf("CREATE-FAILED %s %s\n", what, err);
    return 2;
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
    if (rc != 0) return die(ksock_err_name(rc), err);
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
