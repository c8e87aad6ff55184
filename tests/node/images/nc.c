/*
 * A small netcat for the agnhost stand-in image: Debian's busybox nc has no
 * UDP. Kubernetes' networking specs run `echo hostName | nc -w 1 -u IP PORT`
 * (and TCP the same way without -u). Sends stdin to IP:PORT, prints what
 * comes back until -w SECONDS pass without data (UDP: after stdin ends) or
 * the peer closes. Options: -u (UDP), -w N, -z (connect only); IPv4 and IPv6
 * literals and names. Built with `gcc -static`.
 */
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int udp = 0, wait_s = -1, zero = 0, opt;
    while ((opt = getopt(argc, argv, "uw:zvn")) != -1) {
        switch (opt) {
        case 'u': udp = 1; break;
        case 'w': wait_s = atoi(optarg); break;
        case 'z': zero = 1; break;
        case 'v': case 'n': break;
        default:
            fprintf(stderr, "usage: nc [-u] [-w SECONDS] [-z] HOST PORT\n");
            return 2;
        }
    }
    if (argc - optind != 2) {
        fprintf(stderr, "usage: nc [-u] [-w SECONDS] [-z] HOST PORT\n");
        return 2;
    }
    struct addrinfo hints = {0}, *ai;
    hints.ai_socktype = udp ? SOCK_DGRAM : SOCK_STREAM;
    int rc = getaddrinfo(argv[optind], argv[optind + 1], &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "nc: %s: %s\n", argv[optind], gai_strerror(rc));
        return 1;
    }
    int fd = socket(ai->ai_family, ai->ai_socktype, 0);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        perror("nc: connect");
        return 1;
    }
    if (zero)
        return 0;
    int timeout_ms = wait_s >= 0 ? wait_s * 1000 : -1;
    int stdin_open = 1;
    char buf[65536];
    for (;;) {
        struct pollfd p[2] = {{fd, POLLIN, 0}, {0, POLLIN, 0}};
        int n = poll(p, stdin_open ? 2 : 1, stdin_open ? -1 : timeout_ms);
        if (n < 0) {
            perror("nc: poll");
            return 1;
        }
        if (n == 0)
            return 0; /* -w seconds of silence after stdin ended */
        if (p[0].revents) {
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r <= 0)
                return r < 0 && udp ? 1 : 0;
            if (write(1, buf, r) != r)
                return 1;
        }
        if (stdin_open && p[1].revents) {
            ssize_t r = read(0, buf, sizeof buf);
            if (r <= 0) {
                stdin_open = 0;
                if (!udp)
                    shutdown(fd, SHUT_WR);
                continue;
            }
            if (send(fd, buf, r, 0) != r) {
                perror("nc: send");
                return 1;
            }
        }
    }
}
