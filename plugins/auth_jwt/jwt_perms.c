/*
 * auth_jwt: the permissions claim ({"subscribe": [patterns], "publish":
 * [patterns]}) and the topic patterns it may hold, turned into a
 * principal's rights.
 */
#include "jwt_internal.h"

#include <ksock/auth.h>

#include <string.h>

/* "*", "prefix.*" or an exact topic: a '*' anywhere else would silently match nothing. */
static bool valid_pattern(const char *s, size_t n)
{
    if (n == 0 || n > 255) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c == 0x7f) return false;
        if (c == '*' && !(i == n - 1 && (n == 1 || s[i - 1] == '.'))) return false;
    }
    return true;
}

static const struct {
    const char *key;
    unsigned right;
} perm_keys[] = {{"subscribe", KSOCK_PERM_SUBSCRIBE}, {"publish", KSOCK_PERM_PUBLISH}};

/*
 * Check one permission list ("subscribe" or "publish"): an array of
 * patterns. `who` names it in messages. Adds to `p` when not NULL.
 */
static int perm_list(const ksock_value_t *list, const char *who, const char *key, unsigned right,
                     ksock_principal_t *p, int fail_code, char *errstr, size_t errstr_size)
{
    if (ksock_value_type(list) != KSOCK_VALUE_ARRAY) {
        ksock_errstr_set(errstr, errstr_size, "jwt: %s.%s is not an array of topic patterns", who,
                         key);
        return fail_code;
    }
    for (size_t i = 0; i < ksock_value_count(list); i++) {
        const ksock_value_t *e = ksock_value_array_get(list, i);
        size_t n = 0;
        const char *s = jwt_is_string(e) ? ksock_value_get_string(e, &n) : NULL;
        if (s == NULL || strlen(s) != n || !valid_pattern(s, n)) {
            ksock_errstr_set(errstr, errstr_size,
                             "jwt: %s.%s[%zu] is not a topic pattern (a topic, \"prefix.*\" or "
                             "\"*\")",
                             who, key, i);
            return fail_code;
        }
        if (p && ksock_principal_allow(p, s, right) != 0) return KSOCK_E_NOMEM;
    }
    return 0;
}

/* The permissions claim: absent (no permissions), or {"subscribe": [...], "publish": [...]}. */
int jwt_check_perms(const jwt_auth_t *a, const ksock_value_t *claims, ksock_principal_t *p,
                    char *errstr, size_t errstr_size)
{
    const char *name = a->o->permissions_claim;
    const ksock_value_t *k = ksock_value_map_get(claims, name);
    if (k == NULL) return 0;
    if (ksock_value_type(k) != KSOCK_VALUE_MAP)
        return jwt_refuse(errstr, errstr_size, "the %s claim is not an object", name);
    for (size_t i = 0; i < sizeof(perm_keys) / sizeof(perm_keys[0]); i++) {
        const ksock_value_t *list = ksock_value_map_get(k, perm_keys[i].key);
        if (list == NULL) continue;
        int rc = perm_list(list, name, perm_keys[i].key, perm_keys[i].right, p, KSOCK_E_AUTH,
                           errstr, errstr_size);
        if (rc != 0) return rc;
    }
    return 0;
}

int jwt_perms_from_user(const ksock_value_t *user, ksock_value_t **out, char *errstr,
                        size_t errstr_size)
{
    ksock_value_t *perms = NULL;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof(perm_keys) / sizeof(perm_keys[0]); i++) {
        const ksock_value_t *list = ksock_value_map_get(user, perm_keys[i].key);
        if (list == NULL) continue;
        rc = perm_list(list, "user details", perm_keys[i].key, 0, NULL, KSOCK_E_INVAL, errstr,
                       errstr_size);
        if (rc == 0 && perms == NULL && (perms = ksock_value_map()) == NULL) rc = KSOCK_E_NOMEM;
        if (rc == 0)
            rc = ksock_value_map_set(perms, perm_keys[i].key, strlen(perm_keys[i].key),
                                     ksock_value_ref((ksock_value_t *)list));
    }
    if (rc != 0 && perms) {
        ksock_value_unref(perms);
        perms = NULL;
    }
    *out = perms;
    return rc;
}
