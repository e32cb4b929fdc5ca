/*
 * The service manager's readiness protocol (sd_notify(3)), for ksockd under
 * systemd with Type=notify: a few lines sent as one datagram to the AF_UNIX
 * socket named by $NOTIFY_SOCKET. Written here rather than linked from
 * libsystemd because it is one sendto() and ksockd needs nothing else of
 * systemd. Without $NOTIFY_SOCKET (not started by systemd, or another
 * Type) every call does nothing and returns 0.
 */
#ifndef KSOCKD_SD_NOTIFY_H
#define KSOCKD_SD_NOTIFY_H

/*
 * Send the state lines (e.g. "READY=1\nSTATUS=serving"), formatted as by
 * printf. Returns 0 when sent or when there is nowhere to send, else a
 * negative errno (the caller may ignore it: systemd then only misses a
 * state change). Any thread; blocks at most as long as a local datagram.
 */
int ksockd_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * "RELOADING=1" with the MONOTONIC_USEC= systemd wants next to it (the
 * CLOCK_MONOTONIC time of the reload's start) and STATUS=status. Send
 * "READY=1" once the reload is over, whatever its outcome.
 */
int ksockd_notify_reloading(const char *status);

#endif
