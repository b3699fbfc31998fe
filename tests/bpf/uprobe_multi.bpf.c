// SPDX-License-Identifier: GPL-2.0
/* Loader test object: uprobe.multi and uretprobe.multi (6.6+), one link on
 * many functions of one file.  The auto-attached pair takes a glob over libc's
 * getppid and getpgid ("getp?id") and counts the calls the test's process
 * (target_tgid) makes, the return probe also the last return value; `by_cookie`, attached with explicit functions and
 * cookies, counts per cookie (bpf_get_attach_cookie), from any process.
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

u64 entries;
u64 returns;
s64 last_ret;		/* what the last call returned, as the return probe saw it */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, u32);		/* cookie */
	__type(value, u64);		/* calls */
} cookies SEC(".maps");

static int ours(void)
{
	return bpf_get_current_pid_tgid() >> 32 == target_tgid;
}

SEC("uprobe.multi/libc.so.6:getp?id")
int on_entry(struct pt_regs *ctx)
{
	if (ours())
		__sync_fetch_and_add(&entries, 1);
	return 0;
}

SEC("uretprobe.multi/libc.so.6:getp?id")
int on_return(struct pt_regs *ctx)
{
	if (ours()) {
		__sync_fetch_and_add(&returns, 1);
		last_ret = PT_REGS_RC(ctx);
	}
	return 0;
}

SEC("uprobe.multi")
int by_cookie(struct pt_regs *ctx)
{
	u32 cookie = bpf_get_attach_cookie(ctx);
	u64 *n = bpf_map_lookup_elem(&cookies, &cookie);

	if (n)
		__sync_fetch_and_add(n, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
