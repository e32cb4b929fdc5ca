/*
 * Principals and topic permissions; helpers for authenticators and the
 * handshake. The permission check is the one every publish and subscribe
 * goes through, so its rules are written down here:
 *   "*"        any topic
 *   "prefix.*" any topic that starts with "prefix."
 *   otherwise  exactly that topic
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool ksock_close_code_is_final(int close_code)
{
    return close_code == 1008 || close_code == 4401 || close_code == 4403;
}

const char *ksock_handshake_header(const ksock_handshake_t *hs, const char *name)
{
    for (size_t i = 0; i < hs->nheaders; i++)
        if (strcasecmp(hs->headers[i].name, name) == 0) return hs->headers[i].value;
    return NULL;
}

ksock_principal_t *ksock_principal_new(const char *subject)
{
    ksock_principal_t *p = calloc(1, sizeof(*p));
    if (p == NULL) return NULL;
    p->size = sizeof(*p);
    p->subject = ksock__strdup(subject ? subject : "");
    if (p->subject == NULL) {
        free(p);
        return NULL;
    }
    return p;
}

int ksock_principal_allow(ksock_principal_t *p, const char *pattern, unsigned rights)
{
    ksock_topic_perm_t *v = realloc(p->perms, (p->nperms + 1) * sizeof(*v));
    if (v == NULL) return KSOCK_E_NOMEM;
    p->perms = v;
    char *pat = ksock__strdup(pattern ? pattern : "");
    if (pat == NULL) return KSOCK_E_NOMEM;
    v[p->nperms].pattern = pat;
    v[p->nperms].rights = rights;
    p->nperms++;
    return 0;
}

static bool pattern_match(const char *pat, const char *topic)
{
    size_t n = strlen(pat);
    if (strcmp(pat, "*") == 0) return true;
    if (n >= 2 && pat[n - 1] == '*' && pat[n - 2] == '.') return strncmp(pat, topic, n - 1) == 0;
    return strcmp(pat, topic) == 0;
}

bool ksock_principal_can(const ksock_principal_t *p, const char *topic, unsigned right)
{
    if (p == NULL || topic == NULL) return false;
    for (size_t i = 0; i < p->nperms; i++)
        if ((p->perms[i].rights & right) == right && pattern_match(p->perms[i].pattern, topic))
            return true;
    return false;
}

void ksock_principal_free(ksock_principal_t *p)
{
    if (p == NULL) return;
    for (size_t i = 0; i < p->nperms; i++)
        free(p->perms[i].pattern);
    free(p->perms);
    free(p->subject);
    if (p->claims) ksock_value_unref(p->claims);
    free(p);
}
