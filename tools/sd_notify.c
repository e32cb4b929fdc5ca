/*
 * sd_notify(3) for ksockd: see sd_notify.h. The wire format is systemd's
 * (man sd_notify, "NOTIFY_SOCKET"): newline-separated VAR=VALUE lines in
 * one datagram; the address is a filesystem path, or an abstract socket
 * name when it starts with '@'. systemd learns the sender from the
 * credentials the kernel attaches, so nothing else is sent.
 */
#include "sd_notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Fill *sa from $NOTIFY_SOCKET; 0 and *len, 1 when unset, or -errno. */
static int notify_address(struct sockaddr_un *sa, socklen_t *len)
{
    const char *e = getenv("NOTIFY_SOCKET");
    if (e == NULL || e[0] == '\0') return 1;
    size_t n = strlen(e);
    /* vsock: and other forms systemd accepts are for VMs, not for ksockd. */
    if ((e[0] != '/' && e[0] != '@') || n >= sizeof(sa->sun_path)) return -EAFNOSUPPORT;
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, e, n);
    if (e[0] == '@') sa->sun_path[0] = '\0'; /* abstract: the name is the bytes after the NUL */
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    return 0;
}

static int notify_send(const char *msg, size_t n)
{
    struct sockaddr_un sa;
    socklen_t len;
    int rc = notify_address(&sa, &len);
    if (rc != 0) return rc > 0 ? 0 : rc;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    ssize_t w = sendto(fd, msg, n, MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
    rc = w < 0 ? -errno : (size_t)w == n ? 0 : -EMSGSIZE;
    close(fd);
    return rc;
}

int ksockd_notify(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0) return -EINVAL;
    /* The state lines come first and STATUS= last: cutting shortens only the status text. */
    return notify_send(msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
}

int ksockd_notify_reloading(const char *status)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t usec = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    return ksockd_notify("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=%s", (unsigned long long)usec,
                         status);
}
