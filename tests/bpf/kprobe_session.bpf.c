// SPDX-License-Identifier: GPL-2.0
/* Loader test object: kprobe.session (6.10+), one program run at a function's
 * entry and, when that run returns 0, again at its return: every call of
 * getpgid() by the test's process (target_tgid) counts twice.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

typedef __u32 u32;
typedef __u64 u64;

const volatile u32 target_tgid = 0;

u64 runs;

SEC("kprobe.session/__x64_sys_getpgid")
int on_session(struct pt_regs *ctx)
{
	if (bpf_get_current_pid_tgid() >> 32 == target_tgid)
		__sync_fetch_and_add(&runs, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
