/*
 * A stand-in for the nginx images critest uses (registry.k8s.io/e2e-test-images/
 * nginx and gcr.io/k8s-staging-cri-tools/hostnet-nginx), where no real nginx
 * can be fetched. It does what the tests look at:
 *   - the process is named nginx (pidof nginx) and its command line reads
 *     "nginx: master process ..." (/proc/1/cmdline), like nginx's master;
 *   - it writes its PID to /var/run/nginx.pid;
 *   - it answers every HTTP request on port $NGINX_PORT (default 80) with
 *     200 and a small page, one connection at a time;
 *   - it exits 0 on SIGTERM, SIGINT or SIGQUIT.
 * Built with `gcc -static`.
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

extern char **environ;

static void on_stop(int sig) { (void)sig; _exit(0); }

/* Rewrite the command line the way nginx does (ngx_setproctitle): the argv
 * strings and the environment strings after them are one contiguous area. */
static void set_title(int argc, char **argv, const char *title)
{
    char *start = argv[0], *end = argv[argc - 1] + strlen(argv[argc - 1]) + 1;
    for (char **e = environ; *e; e++)
        if (*e == end)
            end = *e + strlen(*e) + 1;
    size_t room = (size_t)(end - start);
    if (room < 2)
        return;
    memset(start, 0, room);
    strncpy(start, title, room - 1);
}

int main(int argc, char **argv)
{
    const char *p = getenv("NGINX_PORT");
    int port = p ? atoi(p) : 80;
    char title[256] = "nginx: master process";
    for (int i = 0; i < argc; i++) {
        strncat(title, " ", sizeof(title) - strlen(title) - 1);
        strncat(title, argv[i], sizeof(title) - strlen(title) - 1);
    }
    /* Keep the environment readable for children: copy it before the
     * title overwrites the strings. */
    int n = 0;
    while (environ[n])
        n++;
    char **env = calloc((size_t)n + 1, sizeof(char *));
    for (int i = 0; i < n; i++)
        env[i] = strdup(environ[i]);
    set_title(argc, argv, title);
    environ = env;

    struct sigaction sa = {0};
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGQUIT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int s = socket(AF_INET6, SOCK_STREAM, 0);
    int v6 = 1;
    if (s < 0) {
        s = socket(AF_INET, SOCK_STREAM, 0);
        v6 = 0;
    }
    int one = 1, zero = 0;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    int rc;
    if (v6) {
        setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
        struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((unsigned short)port), .sin6_addr = in6addr_any};
        rc = bind(s, (struct sockaddr *)&a, sizeof(a));
    } else {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port), .sin_addr.s_addr = htonl(INADDR_ANY)};
        rc = bind(s, (struct sockaddr *)&a, sizeof(a));
    }
    if (rc < 0 || listen(s, 64) < 0) {
        fprintf(stderr, "nginx: [emerg] bind() to port %d failed (%s)\n", port, strerror(errno));
        return 1;
    }
    FILE *f = fopen("/var/run/nginx.pid", "w");
    if (f) {
        fprintf(f, "%d\n", (int)getpid());
        fclose(f);
    } else {
        fprintf(stderr, "nginx: [alert] could not write /var/run/nginx.pid (%s)\n", strerror(errno));
    }
    static const char body[] =
        "<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>\n"
        "<body><h1>Welcome to nginx!</h1><p>(tether critest stand-in)</p></body></html>\n";
    char resp[512];
    int len = snprintf(resp, sizeof(resp),
                       "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/html\r\n"
                       "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                       sizeof(body) - 1, body);
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0)
            continue;
        struct timeval tv = {.tv_sec = 5};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        char buf[4096];
        size_t got = 0;
        /* Read the request head (up to the blank line), then answer. */
        while (got < sizeof(buf) - 1) {
            ssize_t r = read(c, buf + got, sizeof(buf) - 1 - got);
            if (r <= 0)
                break;
            got += (size_t)r;
            buf[got] = 0;
            if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n"))
                break;
        }
        if (got > 0) {
            ssize_t w = write(c, resp, (size_t)len);
            (void)w;
        }
        shutdown(c, SHUT_WR);
        close(c);
    }
}
