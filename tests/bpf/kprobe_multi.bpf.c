// SPDX-License-Identifier: GPL-2.0
/* Loader test object: kprobe.multi and kretprobe.multi, one link on many
 * kernel functions.  The auto-attached pair takes a glob over the syscall
 * entry points __x64_sys_getpgid, __x64_sys_getpriority (and getppid where ftrace
 * lists it) and
 * counts calls per function address (bpf_get_func_ip); `by_cookie`, attached
 * with explicit functions and cookies, counts per cookie
 * (bpf_get_attach_cookie).  Only the test's own process (target_tgid) counts;
 * the return probe also keeps the last return value.
 */
#include <linux/types.h>
#include <linux/bpf.h>

/* The kernel's pt_regs as a vmlinux.h declares it (bpf_tracing.h reads the
 * return value by the kernel's field names under __VMLINUX_H__). */
#define __VMLINUX_H__
struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di;
	unsigned long orig_ax, ip, cs, flags, sp, ss;
} __attribute__((preserve_access_index));

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

typedef __u32 u32;
typedef __u64 u64;
typedef __s64 s64;

const volatile u32 target_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, u64);		/* function address */
	__type(value, u64);		/* calls */
} entries SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, u64);
	__type(value, u64);
} returns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, u32);		/* cookie */
	__type(value, u64);		/* calls */
} cookies SEC(".maps");

s64 last_ret;		/* what the last call returned, as the return probe saw it */

static int ours(void)
{
	return bpf_get_current_pid_tgid() >> 32 == target_tgid;
}

static void count(void *map, u64 ip)
{
	u64 one = 1, *n = bpf_map_lookup_elem(map, &ip);

	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(map, &ip, &one, BPF_NOEXIST);
}

SEC("kprobe.multi/__x64_sys_getp?i*")
int on_entry(struct pt_regs *ctx)
{
	if (ours())
		count(&entries, bpf_get_func_ip(ctx));
	return 0;
}

SEC("kretprobe.multi/__x64_sys_getp?i*")
int on_return(struct pt_regs *ctx)
{
	if (ours()) {
		count(&returns, bpf_get_func_ip(ctx));
		last_ret = PT_REGS_RC(ctx);
	}
	return 0;
}

SEC("kprobe.multi")
int by_cookie(struct pt_regs *ctx)
{
	u32 cookie = bpf_get_attach_cookie(ctx);
	u64 *n;

	if (!ours())
		return 0;
	n = bpf_map_lookup_elem(&cookies, &cookie);
	if (n)
		__sync_fetch_and_add(n, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
