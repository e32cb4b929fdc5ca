/*
 * A test helper preloaded (LD_PRELOAD) into ws_echo_server: fault
 * injection for the transport's out-of-memory paths. SIGUSR1 arms it,
 * SIGUSR2 disarms it; while armed, malloc, calloc, realloc and strdup fail
 * (NULL, ENOMEM) when called from code in transport_ws.so, and only there:
 * libwebsockets, libksock and the host keep their memory, so what the test
 * sees is the transport's own handling. Not for sanitizer builds, which
 * replace malloc themselves.
 */
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);

static volatile sig_atomic_t armed;

static void on_signal(int sig)
{
    armed = sig == SIGUSR1;
}

__attribute__((constructor)) static void failmalloc_init(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
}

/* Armed, and called from transport_ws.so? */
static int fail_for(const void *caller)
{
    Dl_info di;
    if (!armed) return 0;
    if (dladdr(caller, &di) == 0 || di.dli_fname == NULL) return 0;
    if (strstr(di.dli_fname, "transport_ws") == NULL) return 0;
    errno = ENOMEM;
    return 1;
}

void *malloc(size_t n)
{
    return fail_for(__builtin_return_address(0)) ? NULL : __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
    return fail_for(__builtin_return_address(0)) ? NULL : __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
    return fail_for(__builtin_return_address(0)) ? NULL : __libc_realloc(p, n);
}

char *strdup(const char *s)
{
    if (fail_for(__builtin_return_address(0))) return NULL;
    size_t n = strlen(s) + 1;
    char *d = __libc_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}
