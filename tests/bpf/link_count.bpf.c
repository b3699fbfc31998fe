// SPDX-License-Identifier: GPL-2.0
/* Test object for the attach layer: every program counts its hits in `counts`.
 *
 * Only hits from the process whose tgid is target_tgid count (0 = any process),
 * and the syscall tracepoints only count target_nr.  The trigger is getpgid(2):
 * nothing else in a Python test process calls it, so counts are exact.
 * Build: clang-19 -O2 -g -target bpf -c link_count.bpf.c -o link_count.bpf.o
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 target_tgid = 0;
const volatile __u64 target_nr = 0;

enum {
	C_TRACEPOINT, C_RAW_TP, C_TP_BTF, C_KPROBE, C_KRETPROBE, C_KPROBE_MANUAL,
	C_FENTRY, C_FEXIT, C_UPROBE, C_URETPROBE, C_UPROBE_AUTO, C_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, C_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

static __always_inline int bump(__u32 idx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 *v;

	if (target_tgid && tgid != target_tgid)
		return 0;
	v = bpf_map_lookup_elem(&counts, &idx);
	if (v)
		__sync_fetch_and_add(v, 1);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getpgid")
int on_tracepoint(void *ctx) { return bump(C_TRACEPOINT); }

/* sys_enter(struct pt_regs *regs, long id): args[1] is the syscall number. */
SEC("raw_tracepoint/sys_enter")
int on_raw_tp(struct bpf_raw_tracepoint_args *ctx)
{
	return ctx->args[1] == target_nr ? bump(C_RAW_TP) : 0;
}

SEC("tp_btf/sys_enter")
int on_tp_btf(__u64 *ctx)
{
	return ctx[1] == target_nr ? bump(C_TP_BTF) : 0;
}

SEC("ksyscall/getpgid")
int on_kprobe(void *ctx) { return bump(C_KPROBE); }

SEC("kretsyscall/getpgid")
int on_kretprobe(void *ctx) { return bump(C_KRETPROBE); }

/* Attached explicitly (offsets, forced tracefs fallback). */
SEC("kprobe")
int on_kprobe_manual(void *ctx) { return bump(C_KPROBE_MANUAL); }

/* do_getpgid is the arch-independent body of getpgid(2) and getpgrp(2). */
SEC("fentry/do_getpgid")
int on_fentry(__u64 *ctx) { return bump(C_FENTRY); }

SEC("fexit/do_getpgid")
int on_fexit(__u64 *ctx) { return bump(C_FEXIT); }

SEC("uprobe")
int on_uprobe(void *ctx) { return bump(C_UPROBE); }

SEC("uretprobe")
int on_uretprobe(void *ctx) { return bump(C_URETPROBE); }

/* libbpf-style target: a bare library name is searched like the dynamic linker
 * does (LD_LIBRARY_PATH first); the test builds this library at run time. */
SEC("uprobe/librawprobe_link_test.so:rp_lib_target")
int on_uprobe_auto(void *ctx) { return bump(C_UPROBE_AUTO); }
