/* write(1, "x\n", 2) then exit(0), with no libc, as a 64-bit program (the
 * `syscall` instruction: write is 1, exit 60) or, built with -m32, a 32-bit
 * one (int $0x80: write is 4, and 1 is exit -- write's x86-64 number).  Built
 * by tests/test_interceptor_safety.py. */
#if defined(__x86_64__)
#define NR_WRITE 1
#define NR_EXIT 60
static long sys3(long nr, long a, long b, long c)
{
	long ret;

	__asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return ret;
}
#elif defined(__i386__)
#define NR_WRITE 4
#define NR_EXIT 1
static long sys3(long nr, long a, long b, long c)
{
	long ret;

	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
	return ret;
}
#else
#error "x86 only"
#endif

void _start(void)
{
	sys3(NR_WRITE, 1, (long)"x\n", 2);
	sys3(NR_EXIT, 0, 0, 0);
	for (;;)
		;
}
