/*
 * getaddrinfo() calls logged with the caller's pid (LD_PRELOAD), for the
 * tests of names (t/71, t/86): OCDZ_GAI_LOG is the log file.
 */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* nginx empties its workers' environment: the path is read at load */
static char  log[4096];

__attribute__((constructor)) static void
gai_shim_init(void)
{
    const char  *p;

    p = getenv("OCDZ_GAI_LOG");

    if (p) {
        snprintf(log, sizeof(log), "%s", p);
    }
}

int
getaddrinfo(const char *node, const char *service,
    const struct addrinfo *hints, struct addrinfo **res)
{
    static int (*real)(const char *, const char *, const struct addrinfo *,
                       struct addrinfo **);
    int          fd;

    if (real == NULL) {
        real = dlsym(RTLD_NEXT, "getaddrinfo");
    }

    if (log[0]) {
        fd = open(log, O_WRONLY | O_APPEND | O_CREAT, 0666);
        if (fd >= 0) {
            dprintf(fd, "%d %s\n", (int) getpid(), node ? node : "-");
            close(fd);
        }
    }

    return real(node, service, hints, res);
}