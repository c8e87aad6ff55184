/*
 * A stand-in for busybox's nmeter, which Debian's busybox lacks, good for
 * what Kubernetes' node e2e specs run: `nmeter -d0 '%3t' | head -n1`, the
 * time of day with N (0-6) digits of the second's fraction. Only the %[N]t
 * conversion is supported; other text is copied. One line each -dMSEC
 * milliseconds (default 1000), forever. Built with `gcc -static`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long delay_ms = 1000;
    const char *fmt = NULL;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "-d", 2) == 0) {
            const char *v = argv[i][2] ? argv[i] + 2 : (i + 1 < argc ? argv[++i] : "1000");
            delay_ms = atol(v);
        } else {
            fmt = argv[i];
        }
    }
    if (!fmt) {
        fprintf(stderr, "usage: nmeter [-dMSEC] FORMAT (only %%[N]t)\n");
        return 1;
    }
    for (;;) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        struct tm tm;
        localtime_r(&tv.tv_sec, &tm);
        for (const char *p = fmt; *p; p++) {
            if (*p != '%') {
                putchar(*p);
                continue;
            }
            int digits = 0;
            if (p[1] >= '0' && p[1] <= '9')
                digits = *++p - '0';
            if (p[1] == 't') {
                p++;
                printf("%02d:%02d:%02d", tm.tm_hour, tm.tm_min, tm.tm_sec);
                if (digits > 6)
                    digits = 6;
                if (digits > 0) {
                    long frac = tv.tv_usec;
                    for (int d = 6; d > digits; d--)
                        frac /= 10;
                    printf(".%0*ld", digits, frac);
                }
            } else if (p[1] == '%') {
                p++;
                putchar('%');
            } else {
                putchar('%');
            }
        }
        putchar('\n');
        if (fflush(stdout) != 0)
            return 0;
        if (delay_ms > 0)
            usleep(delay_ms * 1000);
    }
}
