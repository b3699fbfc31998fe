// SPDX-License-Identifier: MIT
/*
 * bench_intercept.py's target swarm, in C so that the interval between the
 * target's own clock reading and its write() is a few hundred nanoseconds
 * (a forked Python child spends tens of microseconds there, on copy-on-write
 * faults).
 *
 *   bench_swarm COMM N SHM      (then write a line to its stdin: "go")
 *
 * Renames itself COMM (prctl, not a write), then forks N children one after
 * the other.  Each child stores (pid, CLOCK_MONOTONIC ns) at 16 * i in the
 * shared file SHM just before its first write() to /dev/null -- the call to
 * intercept -- and keeps writing (calls that may slip through) until a signal
 * ends it, or exits with status 9 after 5 s.  The parent waits for it and
 * sleeps 5 ms before the next one.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	char go[8];
	uint64_t *shm;
	int n, out, fd;

	if (argc != 4 || (n = atoi(argv[2])) <= 0)
		return 2;
	prctl(PR_SET_NAME, argv[1], 0, 0, 0);
	out = open("/dev/null", O_WRONLY);
	fd = open(argv[3], O_RDWR);
	shm = mmap(NULL, 16 * (size_t)n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (out < 0 || fd < 0 || shm == MAP_FAILED || read(0, go, sizeof(go)) <= 0)
		return 1;
	for (int i = 0; i < n; i++) {
		pid_t pid = fork();

		if (pid < 0)
			return 1;
		if (pid == 0) {
			uint64_t deadline = mono_ns() + 5000000000u;

			shm[2 * i] = (uint64_t)getpid();
			shm[2 * i + 1] = mono_ns();
			while (mono_ns() < deadline)
				if (write(out, "x", 1) < 0)
					break;
			_exit(9);
		}
		waitpid(pid, NULL, 0);
		usleep(5000);
	}
	return 0;
}
