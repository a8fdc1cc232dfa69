/* notify.h: service manager readiness notification (systemd's sd_notify protocol).
 *
 * The protocol is one datagram of "KEY=VALUE\n" lines to the AF_UNIX socket named by $NOTIFY_SOCKET
 * (a path, or "@name" for the abstract namespace; sd_notify(3)). It is small enough to speak
 * directly, which keeps libsystemd out of the dependencies and lets a test play the manager with a
 * plain datagram socket. Without $NOTIFY_SOCKET every call does nothing. */
#ifndef JWTGATE_NOTIFY_H
#define JWTGATE_NOTIFY_H

/* Sends `state` (e.g. "READY=1", "RELOADING=1", "STOPPING=1"; several lines allowed). Never blocks.
 * Returns 0 (also when there is no manager) or -errno. */
int notify_send(const char *state);

#endif
