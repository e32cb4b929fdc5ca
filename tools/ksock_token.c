/*
 * `ksock token`: spec V generateWebSocketToken / validateWebSocketToken from
 * the command line (Centrifugo's `gentoken` / `checktoken`), with the "jwt"
 * authenticator loaded through the real plugin loader. JSON goes in and
 * out through the "json" serializer.
 *
 *   ksock token generate OPTIONS USER_JSON
 *       prints the token and exits 0, or the error and exits 1
 *   ksock token validate OPTIONS TOKEN
 *       prints the claims as JSON and exits 0, or the error and exits 1
 *   ksock token authenticate OPTIONS HEADER_NAME HEADER_VALUE QUERY
 *       what ksockd's handshake would decide: authenticate() with that
 *       header ("" for none) and raw query ("" for none); prints
 *       {"subject", "subscribe", "publish", "expires_at_ms"} or the error
 *       and exits 1
 *
 * OPTIONS are the authenticator's options: a JSON object, or the path of a
 * file holding one. Errors go to stdout (the answer); exit 2 when the
 * instance cannot be made (bad options: the error on stderr).
 */
#include "ksock_cli.h"

#include <ksock/ksock.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct tool_s {
    ksock_runtime_t *rt;
    ksock_config_t *doc;
    ksock_plugin_instance_t *pi;
    const ksock_auth_vtable_t *vt;
} tool_t;

static int tool_open(tool_t *t, const char *options, char *err, size_t err_size)
{
    ksock_plugin_t *plugin;
    const char *p = options;
    while (*p == ' ' || *p == '\t' || *p == '\n')
        p++;
    int rc = ksock_runtime_new(&t->rt, err, err_size);
    if (rc == 0) rc = ksock_serde_set_default_by_name(t->rt, "json", err, err_size);
    if (rc == 0) rc = ksock_plugin_find(t->rt, KSOCK_PLUGIN_AUTH, "jwt", &plugin, err, err_size);
    if (rc == 0 && *p == '{')
        rc = ksock_config_load_string("options", options, strlen(options), &t->doc, err, err_size);
    else if (rc == 0)
        rc = ksock_config_load_file(options, &t->doc, err, err_size);
    if (rc == 0)
        rc = ksock_plugin_instance_new(t->rt, plugin, "tool", t->doc, ksock_config_root(t->doc),
                                       NULL, &t->pi, err, err_size);
    if (rc == 0) t->vt = ksock_plugin_instance_vtable(t->pi);
    return rc;
}

static void tool_close(tool_t *t)
{
    if (t->pi) ksock_plugin_instance_free(t->pi);
    ksock_config_free(t->doc);
    if (t->rt) ksock_runtime_destroy(t->rt);
}

static int print_json(tool_t *t, const ksock_value_t *v, char *err, size_t err_size)
{
    ksock_buf_t out = KSOCK_BUF_INIT;
    int rc = ksock_serde_serialize(t->rt, v, NULL, &out, NULL, err, err_size);
    if (rc == 0) printf("%.*s\n", (int)out.len, out.data);
    ksock_buf_free(&out);
    return rc;
}

static int do_validate(tool_t *t, const char *token, char *err, size_t err_size)
{
    ksock_value_t *claims = NULL;
    int rc =
        t->vt->validate_token(ksock_plugin_instance_inst(t->pi), token, &claims, err, err_size);
    if (rc == 0) {
        rc = print_json(t, claims, err, err_size);
        ksock_value_unref(claims);
    }
    return rc;
}

static int do_generate(tool_t *t, const char *user_json, char *err, size_t err_size)
{
    ksock_value_t *user = NULL;
    char *token = NULL;
    int rc =
        ksock_serde_deserialize(t->rt, user_json, strlen(user_json), NULL, &user, err, err_size);
    if (rc == 0)
        rc = t->vt->generate_token(ksock_plugin_instance_inst(t->pi), user, &token, err, err_size);
    if (rc == 0) printf("%s\n", token);
    free(token);
    if (user) ksock_value_unref(user);
    return rc;
}

static ksock_value_t *perm_list(const ksock_principal_t *p, unsigned right)
{
    ksock_value_t *a = ksock_value_array();
    for (size_t i = 0; a && i < p->nperms; i++)
        if (p->perms[i].rights & right)
            ksock_value_array_push(a, ksock_value_cstring(p->perms[i].pattern));
    return a;
}

static int do_authenticate(tool_t *t, const char *name, const char *value, const char *query,
                           char *err, size_t err_size)
{
    ksock_kvpair_t hdr = {name, value};
    ksock_handshake_t hs = {
        .size = sizeof(hs),
        .path = "/ws",
        .query = query[0] ? query : NULL,
        .headers = &hdr,
        .nheaders = name[0] ? 1 : 0,
        .peer_addr = "127.0.0.1:1",
        .subprotocol = "ksock.v1.json",
    };
    ksock_principal_t *p = NULL;
    int rc = t->vt->authenticate(ksock_plugin_instance_inst(t->pi), &hs, &p, err, err_size);
    if (rc != 0) return rc;
    ksock_value_t *m = ksock_value_map();
    ksock_value_map_set(m, "subject", 7, ksock_value_cstring(p->subject));
    ksock_value_map_set(m, "subscribe", 9, perm_list(p, KSOCK_PERM_SUBSCRIBE));
    ksock_value_map_set(m, "publish", 7, perm_list(p, KSOCK_PERM_PUBLISH));
    ksock_value_map_set(m, "expires_at_ms", 13, ksock_value_int(p->expires_at_ms));
    rc = print_json(t, m, err, err_size);
    ksock_value_unref(m);
    ksock_principal_free(p);
    return rc;
}

int ksock_token_main(int argc, char **argv)
{
    /* argv[0] is "token". */
    if (argc < 4 || (strcmp(argv[1], "authenticate") == 0 && argc < 6)) {
        fprintf(stderr, "usage: ksock token generate OPTIONS USER_JSON\n"
                        "       ksock token validate OPTIONS TOKEN\n"
                        "       ksock token authenticate OPTIONS HEADER VALUE QUERY\n"
                        "OPTIONS: the jwt authenticator's options, as JSON or a file "
                        "(docs/auth.md)\n");
        return 2;
    }
    tool_t t = {0};
    char err[1024] = "";
    if (tool_open(&t, argv[2], err, sizeof(err)) != 0) {
        fprintf(stderr, "ksock token: %s\n", err);
        tool_close(&t);
        return 2;
    }
    int rc;
    if (strcmp(argv[1], "validate") == 0)
        rc = do_validate(&t, argv[3], err, sizeof(err));
    else if (strcmp(argv[1], "generate") == 0)
        rc = do_generate(&t, argv[3], err, sizeof(err));
    else if (strcmp(argv[1], "authenticate") == 0)
        rc = do_authenticate(&t, argv[3], argv[4], argv[5], err, sizeof(err));
    else
        rc = KSOCK_E_INVAL, snprintf(err, sizeof(err), "unknown command %s", argv[1]);
    if (rc != 0) printf("%s: %s\n", ksock_err_name(rc), err);
    tool_close(&t);
    return rc == 0 ? 0 : 1;
}
