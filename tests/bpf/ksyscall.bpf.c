// SPDX-License-Identifier: GPL-2.0
/* Loader test object: SEC("ksyscall/<name>") and SEC("kretsyscall/<name>"),
 * kprobes on a syscall's entry point whose arguments BPF_KSYSCALL reads
 * through the syscall wrapper's struct pt_regs (LINUX_HAS_SYSCALL_WRAPPER).
 * A test calls kill(getpid(), 0) and getppid() and checks what was seen.
 *
 * The kernel's types as a vmlinux.h declares them (bpf_tracing.h reads
 * pt_regs by the kernel's field names under __VMLINUX_H__), here so the
 * object builds the same anywhere.
 */
#include <linux/types.h>
#include <linux/bpf.h>

#define __VMLINUX_H__
struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di;
	unsigned long orig_ax, ip, cs, flags, sp, ss;
} __attribute__((preserve_access_index));

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

typedef __u32 u32;
typedef __s64 s64;

const volatile u32 target_tgid = 0;

struct seen {
	s64 kill_pid;
	s64 kill_sig;
	s64 kill_calls;
	s64 getppid_ret;
};

struct seen seen;

static int ours(void)
{
	return bpf_get_current_pid_tgid() >> 32 == target_tgid;
}

SEC("ksyscall/kill")
int BPF_KSYSCALL(on_kill, int pid, int sig)
{
	if (ours()) {
		seen.kill_pid = pid;
		seen.kill_sig = sig;
		__sync_fetch_and_add(&seen.kill_calls, 1);
	}
	return 0;
}

SEC("kretsyscall/getppid")
int BPF_KRETPROBE(after_getppid, long ret)
{
	if (ours())
		seen.getppid_ret = ret;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
