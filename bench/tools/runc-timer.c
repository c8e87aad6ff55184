/* runc wrapper for the B2 breakdown.
 *
 * Given to both shims as their runtime binary (BinaryName). It runs the real
 * runc (REAL_RUNC) as a child, in the cgroup CGROUP_PROCS, waits for it, and
 * appends one line to LOG_FILE:
 *     <start> <end> <argv...>
 * with CLOCK_MONOTONIC seconds (the harness reads the same clock), written
 * with a single O_APPEND write so concurrent calls do not interleave.
 * It exits as runc did. The wrapper itself stays in the shim's cgroup. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void join_cgroup(void) {
    int fd = open(CGROUP_PROCS, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        char buf[32];
        int n = snprintf(buf, sizeof buf, "%d\n", (int)getpid());
        if (write(fd, buf, (size_t)n) < 0) { /* accounting only */ }
        close(fd);
    }
}

int main(int argc, char **argv) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) {
        perror("runc-timer: fork");
        return 127;
    }
    if (pid == 0) {
        join_cgroup();
        execv(REAL_RUNC, argv);
        perror("runc-timer: execv " REAL_RUNC);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) { status = 127 << 8; break; }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);

    char line[4096];
    int len = snprintf(line, sizeof line, "%ld.%09ld %ld.%09ld",
                       (long)t0.tv_sec, t0.tv_nsec, (long)t1.tv_sec, t1.tv_nsec);
    for (int i = 1; i < argc && len < (int)sizeof line - 2; i++)
        len += snprintf(line + len, sizeof line - (size_t)len, " %s", argv[i]);
    if (len > (int)sizeof line - 2) len = (int)sizeof line - 2;
    line[len++] = '\n';
    int fd = open(LOG_FILE, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        if (write(fd, line, (size_t)len) < 0) { /* timing only */ }
        close(fd);
    }
    if (WIFSIGNALED(status)) {
        signal(WTERMSIG(status), SIG_DFL);
        raise(WTERMSIG(status));
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 127;
}
