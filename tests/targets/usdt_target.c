/* A USDT target for tests/test_usdt.py: real sys/sdt.h probes (Debian's
 * systemtap-sdt-dev) with arguments in several x86-64 formats.
 *
 *   usdt_target [wait]
 *
 * With "wait" it prints "ready" and waits for a byte on stdin (so the test can
 * attach first).  Then it prints "sema <value of rpt:sema's semaphore>" and
 * fires every probe once, printing one line per probe firing:
 *   fire <provider:name> <arg>...
 * with the values the probe passed, as the C types say (signed or not): the
 * test compares what a BPF program read with these lines.
 *
 * rpt:sema has a semaphore (usdt_sema.c, compiled with _SDT_HAS_SEMAPHORES);
 * rpt:twice is one probe with two sites (an always-inline function used twice).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/sdt.h>

void fire_sema(long v);

struct frame {
	int i32;
	unsigned short u16;
	signed char s8;
	long i64;
};

static __attribute__((always_inline)) inline void twice(int x)
{
	STAP_PROBE1(rpt, twice, x);
	printf("fire rpt:twice %d\n", x);
}

__attribute__((noinline)) static void regs(long a, int b, unsigned short c, signed char d,
					   unsigned int e)
{
	/* every argument is still in its register here */
	STAP_PROBE5(rpt, regs, a, b, c, d, e);
	printf("fire rpt:regs %ld %d %u %d %u\n", a, b, c, d, e);
}

__attribute__((noinline)) static void mem(volatile struct frame *end)
{
	/* volatile fields are read from memory: reg+offset operands, negative
	 * ones since the pointer is one past the struct */
	volatile struct frame *f = end - 1;

	STAP_PROBE5(rpt, mem, f->i32, f->u16, f->s8, f->i64, end->i32);
	printf("fire rpt:mem %d %u %d %ld %d\n", f->i32, f->u16, f->s8, f->i64, end->i32);
}

int main(int argc, char **argv)
{
	extern unsigned short rpt_sema_semaphore;
	volatile struct frame f[2];
	char go;
	long seed = argc;

	if (argc > 1 && strcmp(argv[1], "wait") == 0) {
		printf("ready\n");
		fflush(stdout);
		if (read(0, &go, 1) != 1)
			return 2;
	}
	printf("sema %u\n", rpt_sema_semaphore);

	STAP_PROBE3(rpt, consts, 5, -7, 0x7fffffffffffL);
	printf("fire rpt:consts 5 -7 %ld\n", 0x7fffffffffffL);

	regs(-seed * 1000000007L, (int)(-seed * 70000), (unsigned short)(60000 + seed),
	     (signed char)(-100 - seed), 4000000000u + (unsigned int)seed);

	f[0].i32 = -123456 * (int)seed;
	f[0].u16 = 65000 + seed;
	f[0].s8 = -seed;
	f[0].i64 = -seed << 40;
	f[1].i32 = 77 * (int)seed;
	mem(&f[1]);

	twice(11 * (int)seed);
	twice(22 * (int)seed);

	fire_sema(seed * 3);
	fflush(stdout);
	return 0;
}
