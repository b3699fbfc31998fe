// SPDX-License-Identifier: GPL-2.0
/* Loader test object: a __hidden global subprogram that is only valid in its
 * caller's context, beside an ordinary global one that is valid alone.
 *
 * The verifier checks a global function on its own, assuming nothing about its
 * arguments: a struct pointer may be NULL, so read_pair() (no NULL check) is
 * refused as a global function.  Marked __hidden, libbpf gives the kernel its
 * BTF FUNC as static, and the verifier checks it at each call, where the
 * argument is a pointer to the caller's stack.  checked_sum() stays global and
 * is verified alone: it checks its argument itself.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

typedef __u32 u32;
typedef __u64 u64;

struct pair {
	u64 a;
	u64 b;
};

const volatile u32 target_tgid = 0;
u64 hidden_result;
u64 global_result;

__hidden __noinline u64 read_pair(struct pair *p)
{
	return p->a * 10 + p->b;         /* no NULL check: fine only in context */
}

__noinline u64 checked_sum(struct pair *p)
{
	if (!p)
		return 0;
	return p->a + p->b;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
	struct pair p = { .a = 4, .b = 2 };

	if ((u32)(bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	p.b += hidden_result ? 1 : 0;
	hidden_result = read_pair(&p);
	global_result = checked_sum(&p);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
