// SPDX-License-Identifier: MIT
/*
 * bench_intercept.py's syscall loop, in C so that a call costs what the
 * kernel makes it cost (a Python loop adds ~60 ns of its own per call).
 *
 *   bench_syscall write|getppid N      prints "BATCH_P50_NS CPU_NS" per call
 *
 * write: write(2) of one byte to /dev/null, the syscall a watch hooks;
 * getppid: getppid(2) through syscall(2) (never cached by libc), a syscall
 * nobody watches.  The N calls run in batches of BATCH, each timed with
 * CLOCK_MONOTONIC; the median batch is the figure: a batch that another task
 * (or, in the test VM, the host) interrupted is an outlier, while what a
 * probe adds is in every batch.  CPU_NS is the thread's CPU time over all N
 * calls, for comparison.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BATCH 256

static double clock_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	long i, j, n = argc > 2 ? atol(argv[2]) : 0, batches = n / BATCH;
	int fd = open("/dev/null", O_WRONLY);
	int is_write = argc > 1 && !strcmp(argv[1], "write");
	double c0, t0, *per_call;

	if (argc != 3 || batches <= 0 || fd < 0 || (!is_write && strcmp(argv[1], "getppid"))) {
		fprintf(stderr, "usage: bench_syscall write|getppid N (N >= %d)\n", BATCH);
		return 2;
	}
	per_call = malloc(batches * sizeof(*per_call));
	if (!per_call)
		return 1;
	c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
	for (i = 0; i < batches; i++) {
		t0 = clock_ns(CLOCK_MONOTONIC);
		if (is_write)
			for (j = 0; j < BATCH; j++)
				write(fd, "x", 1);
		else
			for (j = 0; j < BATCH; j++)
				syscall(SYS_getppid);
		per_call[i] = (clock_ns(CLOCK_MONOTONIC) - t0) / BATCH;
	}
	c0 = (clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0) / (batches * BATCH);
	qsort(per_call, batches, sizeof(*per_call), cmp);
	printf("%.3f %.3f\n", per_call[batches / 2], c0);
	return 0;
}
