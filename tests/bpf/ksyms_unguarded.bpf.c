// SPDX-License-Identifier: GPL-2.0
/* A weak kfunc no kernel has, called without a bpf_ksym_exists() guard: the
 * verifier reaches the call and refuses the program. */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

extern int bpf_rawprobe_no_such_kfunc(int x) __ksym __weak;

SEC("raw_tp/sys_enter")
int unguarded(struct bpf_raw_tracepoint_args *ctx)
{
	return bpf_rawprobe_no_such_kfunc(1);
}

char LICENSE[] SEC("license") = "GPL";
