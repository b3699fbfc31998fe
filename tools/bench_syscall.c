// SPDX-License-Identifier: MIT
/*
 * bench_intercept.py's syscall loop, in C so that a call costs what the
 * kernel makes it cost (a Python loop adds ~60 ns of its own per call).
 *
 *   bench_syscall write|getppid N      prints "CPU_NS WALL_NS" per call
 *
 * write: write(2) of one byte to /dev/null, the syscall a watch hooks;
 * getppid: getppid(2) through syscall(2) (never cached by libc), a syscall
 * nobody watches.  Timed around the N calls with the thread's CPU clock
 * (time on a CPU, user + kernel: what a probe adds, and not the time other
 * tasks took the CPU away on a busy machine) and with CLOCK_MONOTONIC.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double clock_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long i, n = argc > 2 ? atol(argv[2]) : 0;
	int fd = open("/dev/null", O_WRONLY);
	double c0, t0;

	if (argc != 3 || n <= 0 || fd < 0 ||
	    (strcmp(argv[1], "write") && strcmp(argv[1], "getppid"))) {
		fprintf(stderr, "usage: bench_syscall write|getppid N\n");
		return 2;
	}
	c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
	t0 = clock_ns(CLOCK_MONOTONIC);
	if (argv[1][0] == 'w')
		for (i = 0; i < n; i++)
			write(fd, "x", 1);
	else
		for (i = 0; i < n; i++)
			syscall(SYS_getppid);
	printf("%.3f %.3f\n", (clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0) / n,
	       (clock_ns(CLOCK_MONOTONIC) - t0) / n);
	return 0;
}
