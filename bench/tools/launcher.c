/* Shim launcher for the benchmark harness.
 *
 * containerd finds `containerd-shim-<name>-v2` on its PATH; the harness puts
 * a copy of this program there, compiled with SHIM (the real binary),
 * CGROUP_PROCS (a cpuacct cgroup of the harness), TIMING_FLAG and TIMING_LOG.
 * It moves itself into that cgroup and execs the real shim with the same
 * arguments, so every shim process of one implementation (start, daemon,
 * delete) and the runc processes it spawns are accounted together. Cost: one
 * execve of a small static binary per shim invocation, the same for both
 * implementations.
 *
 * While the file TIMING_FLAG exists (B2's breakdown runs only), it instead
 * runs the shim as a child, waits for it, and appends
 *     <start> <end> <start|delete|other>
 * (CLOCK_MONOTONIC seconds) to TIMING_LOG, so the harness can time the
 * `start` and `delete` invocations containerd makes. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int fd = open(CGROUP_PROCS, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        char buf[32];
        int n = snprintf(buf, sizeof buf, "%d\n", (int)getpid());
        if (write(fd, buf, (size_t)n) < 0) { /* accounting only; run anyway */ }
        close(fd);
    }
    if (access(TIMING_FLAG, F_OK) != 0) {
        execv(SHIM, argv);
        perror("launcher: execv " SHIM);
        return 127;
    }

    const char *what = "other";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "start") == 0) what = "start";
        else if (strcmp(argv[i], "delete") == 0) what = "delete";
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) {
        perror("launcher: fork");
        return 127;
    }
    if (pid == 0) {
        execv(SHIM, argv);
        perror("launcher: execv " SHIM);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) { status = 127 << 8; break; }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    char line[128];
    int len = snprintf(line, sizeof line, "%ld.%09ld %ld.%09ld %s\n", (long)t0.tv_sec,
                       t0.tv_nsec, (long)t1.tv_sec, t1.tv_nsec, what);
    fd = open(TIMING_LOG, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
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
