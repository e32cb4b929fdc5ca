/*
 * auth_jwt: the claims of a token, checked (exp, nbf, iat with leeway,
 * max_ttl, iss, aud, sub), and the claims of a token to issue, built from
 * the user details (sub, ttl, permissions).
 */
#include "jwt_internal.h"

#include <ksock/runtime.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* A NumericDate claim: absent (0, *present false), a finite number, or a refusal. */
int jwt_date_claim(const ksock_value_t *claims, const char *name, bool *present, double *out,
                   char *errstr, size_t errstr_size)
{
    const ksock_value_t *v = ksock_value_map_get(claims, name);
    *present = v != NULL;
    *out = 0;
    if (v == NULL) return 0;
    if (ksock_value_type(v) == KSOCK_VALUE_INT) {
        *out = (double)ksock_value_get_int(v);
    } else if (ksock_value_type(v) == KSOCK_VALUE_DOUBLE && isfinite(ksock_value_get_double(v))) {
        *out = ksock_value_get_double(v);
    } else {
        return jwt_refuse(errstr, errstr_size, "%s is not a number of seconds", name);
    }
    return 0;
}

static int check_times(const jwt_auth_t *a, const ksock_value_t *claims, char *errstr,
                       size_t errstr_size)
{
    const jwt_opts_t *o = a->o;
    double now = (double)ksock_wallclock_ns() / 1e9, leeway = (double)o->leeway / 1000.0;
    bool has_exp, has_nbf, has_iat;
    double exp, nbf, iat;
    int rc = jwt_date_claim(claims, "exp", &has_exp, &exp, errstr, errstr_size);
    if (rc == 0) rc = jwt_date_claim(claims, "nbf", &has_nbf, &nbf, errstr, errstr_size);
    if (rc == 0) rc = jwt_date_claim(claims, "iat", &has_iat, &iat, errstr, errstr_size);
    if (rc != 0) return rc;
    if (!has_exp && o->require_exp)
        return jwt_refuse(errstr, errstr_size, "no exp claim (require_exp is on)");
    if (has_exp && now >= exp + leeway)
        return jwt_refuse(errstr, errstr_size, "token expired %.0f s ago", now - exp);
    if (has_nbf && now + leeway < nbf)
        return jwt_refuse(errstr, errstr_size, "token not valid yet (nbf is %.0f s ahead)",
                          nbf - now);
    if (has_iat && iat > now + leeway)
        return jwt_refuse(errstr, errstr_size, "token issued in the future (iat is %.0f s ahead)",
                          iat - now);
    if (o->max_ttl > 0) {
        if (!has_exp || !has_iat)
            return jwt_refuse(errstr, errstr_size, "no %s claim (max_ttl is set)",
                              has_exp ? "iat" : "exp");
        if (exp - iat > (double)o->max_ttl / 1000.0)
            return jwt_refuse(errstr, errstr_size,
                              "lifetime exp - iat of %.0f s exceeds max_ttl (%lld s)", exp - iat,
                              (long long)(o->max_ttl / 1000));
    }
    return 0;
}

static int check_iss_aud(const jwt_auth_t *a, const ksock_value_t *claims, char *errstr,
                         size_t errstr_size)
{
    char buf[64];
    const jwt_opts_t *o = a->o;
    if (o->issuer) {
        const ksock_value_t *iss = ksock_value_map_get(claims, "iss");
        if (iss == NULL)
            return jwt_refuse(errstr, errstr_size, "no iss claim (issuer is configured)");
        if (!jwt_is_string(iss) || strcmp(ksock_value_get_string(iss, NULL), o->issuer) != 0)
            return jwt_refuse(errstr, errstr_size, "iss \"%s\" is not the configured issuer",
                              jwt_printable(iss, buf, sizeof(buf)));
    }
    const ksock_value_t *aud = ksock_value_map_get(claims, "aud");
    if (o->audience == NULL) {
        /* RFC 7519 4.1.3: a recipient not named in a present aud must refuse the token. */
        if (aud)
            return jwt_refuse(errstr, errstr_size,
                              "the token has an aud claim but no audience is configured");
        return 0;
    }
    if (aud == NULL)
        return jwt_refuse(errstr, errstr_size, "no aud claim (audience is configured)");
    if (jwt_is_string(aud) && strcmp(ksock_value_get_string(aud, NULL), o->audience) == 0) return 0;
    if (ksock_value_type(aud) == KSOCK_VALUE_ARRAY) {
        for (size_t i = 0; i < ksock_value_count(aud); i++) {
            const ksock_value_t *e = ksock_value_array_get(aud, i);
            if (jwt_is_string(e) && strcmp(ksock_value_get_string(e, NULL), o->audience) == 0)
                return 0;
        }
    }
    return jwt_refuse(errstr, errstr_size, "aud does not name the configured audience");
}

int jwt_check_claims(const jwt_auth_t *a, const ksock_value_t *claims, char *errstr,
                     size_t errstr_size)
{
    int rc = check_times(a, claims, errstr, errstr_size);
    if (rc == 0) rc = check_iss_aud(a, claims, errstr, errstr_size);
    if (rc != 0) return rc;
    const ksock_value_t *sub = ksock_value_map_get(claims, "sub");
    if (sub == NULL) return jwt_refuse(errstr, errstr_size, "no sub claim");
    size_t n = 0;
    if (!jwt_is_string(sub) || ksock_value_get_string(sub, &n)[0] == '\0' ||
        strlen(ksock_value_get_string(sub, NULL)) != n)
        return jwt_refuse(errstr, errstr_size, "sub is not a non-empty string");
    return jwt_check_perms(a, claims, NULL, errstr, errstr_size);
}

/* A refusal of the user details given to generate_token: KSOCK_E_INVAL. */
static int bad_user(char *errstr, size_t errstr_size, const char *fmt, ...) KSOCK_PRINTF(3, 4);
static int bad_user(char *errstr, size_t errstr_size, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ksock_errstr_set(errstr, errstr_size, "jwt: user details: %s", msg);
    return KSOCK_E_INVAL;
}

static int set_claim(ksock_value_t *claims, const char *key, ksock_value_t *v)
{
    if (v == NULL) return KSOCK_E_NOMEM;
    return ksock_value_map_set(claims, key, strlen(key), v);
}

/* The user's subject: "sub", or "userId" as in the spec's example. */
static int user_subject(const ksock_value_t *user, const ksock_value_t **out, char *errstr,
                        size_t errstr_size)
{
    const ksock_value_t *sub = ksock_value_map_get(user, "sub"),
                        *uid = ksock_value_map_get(user, "userId");
    if (sub && uid && !ksock_value_equal(sub, uid))
        return bad_user(errstr, errstr_size, "\"sub\" and \"userId\" disagree");
    const ksock_value_t *v = sub ? sub : uid;
    size_t n = 0;
    if (v == NULL) return bad_user(errstr, errstr_size, "\"sub\" (or \"userId\") is missing");
    if (!jwt_is_string(v) || ksock_value_get_string(v, &n)[0] == '\0' ||
        strlen(ksock_value_get_string(v, NULL)) != n)
        return bad_user(errstr, errstr_size, "\"sub\" must be a non-empty string");
    *out = v;
    return 0;
}

static int user_ttl(const jwt_auth_t *a, const ksock_value_t *user, int64_t *ttl_s, char *errstr,
                    size_t errstr_size)
{
    const ksock_value_t *t = ksock_value_map_get(user, "ttl");
    *ttl_s = a->o->default_ttl / 1000;
    if (t) {
        if (ksock_value_type(t) != KSOCK_VALUE_INT || ksock_value_get_int(t) <= 0 ||
            ksock_value_get_int(t) > 3650 * 86400)
            return bad_user(errstr, errstr_size,
                            "\"ttl\" must be a whole number of seconds "
                            "between 1 and 10 years");
        *ttl_s = ksock_value_get_int(t);
    }
    if (a->o->max_ttl > 0 && *ttl_s * 1000 > a->o->max_ttl)
        return bad_user(errstr, errstr_size, "\"ttl\" of %lld s exceeds max_ttl (%lld s)",
                        (long long)*ttl_s, (long long)(a->o->max_ttl / 1000));
    return 0;
}

/* Claims set from the options or the clock; the user may not set them. */
static bool reserved(const jwt_auth_t *a, const char *key)
{
    static const char *const names[] = {"iat", "exp", "nbf", "iss", "aud", NULL};
    for (size_t i = 0; names[i]; i++)
        if (strcmp(key, names[i]) == 0) return true;
    return strcmp(key, a->o->permissions_claim) == 0;
}

/* Keys of the user details that are not copied as claims as they are. */
static bool handled(const char *key)
{
    static const char *const names[] = {"sub", "userId", "ttl", "subscribe", "publish", NULL};
    for (size_t i = 0; names[i]; i++)
        if (strcmp(key, names[i]) == 0) return true;
    return false;
}

static int build_claims(const jwt_auth_t *a, const ksock_value_t *user, ksock_value_t *claims,
                        char *errstr, size_t errstr_size)
{
    const ksock_value_t *sub = NULL;
    int64_t ttl_s = 0;
    int rc = user_subject(user, &sub, errstr, errstr_size);
    if (rc == 0) rc = user_ttl(a, user, &ttl_s, errstr, errstr_size);
    if (rc != 0) return rc;
    rc = set_claim(claims, "sub", ksock_value_ref((ksock_value_t *)sub));
    for (size_t i = 0; rc == 0 && i < ksock_value_count(user); i++) {
        const char *key;
        size_t kn;
        const ksock_value_t *v = ksock_value_map_at(user, i, &key, &kn);
        if (strlen(key) != kn) return bad_user(errstr, errstr_size, "a key contains NUL");
        if (reserved(a, key))
            return bad_user(errstr, errstr_size, "\"%s\" is set by the authenticator%s", key,
                            strcmp(key, a->o->permissions_claim) == 0
                                ? " (give \"subscribe\" and \"publish\" lists)"
                                : "");
        if (!handled(key)) rc = set_claim(claims, key, ksock_value_ref((ksock_value_t *)v));
    }
    ksock_value_t *perms = NULL;
    if (rc == 0) rc = jwt_perms_from_user(user, &perms, errstr, errstr_size);
    if (perms) rc = set_claim(claims, a->o->permissions_claim, perms);
    int64_t now = ksock_wallclock_ns() / 1000000000;
    if (rc == 0 && a->o->issuer) rc = set_claim(claims, "iss", ksock_value_cstring(a->o->issuer));
    if (rc == 0 && a->o->audience)
        rc = set_claim(claims, "aud", ksock_value_cstring(a->o->audience));
    if (rc == 0) rc = set_claim(claims, "iat", ksock_value_int(now));
    if (rc == 0) rc = set_claim(claims, "exp", ksock_value_int(now + ttl_s));
    return rc;
}

int jwt_claims_json(const jwt_auth_t *a, const ksock_value_t *user, char **json, char *errstr,
                    size_t errstr_size)
{
    *json = NULL;
    if (user == NULL || ksock_value_type(user) != KSOCK_VALUE_MAP)
        return bad_user(errstr, errstr_size, "expected a map");
    /* Whatever we issue, we must be able to read back. */
    if (ksock_value_depth(user) >= JWT_JSON_MAX_DEPTH)
        return bad_user(errstr, errstr_size, "nested deeper than %d levels",
                        JWT_JSON_MAX_DEPTH - 1);
    ksock_value_t *claims = ksock_value_map();
    if (claims == NULL) return KSOCK_E_NOMEM;
    int rc = build_claims(a, user, claims, errstr, errstr_size);
    if (rc == 0) rc = jwt_json_write(claims, json, errstr, errstr_size);
    ksock_value_unref(claims);
    if (rc == KSOCK_E_ENCODE) {
        char why[200];
        snprintf(why, sizeof(why), "%s", errstr ? errstr : "");
        rc = bad_user(errstr, errstr_size, "%s", why);
    }
    return rc;
}
