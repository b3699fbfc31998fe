// SPDX-License-Identifier: GPL-2.0
/* A strong (not __weak) kfunc that no kernel has: the load fails, naming it. */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

extern int bpf_rawprobe_no_such_kfunc(int x) __ksym;

SEC("raw_tp/sys_enter")
int call_missing(struct bpf_raw_tracepoint_args *ctx)
{
	return bpf_rawprobe_no_such_kfunc(1);
}

char LICENSE[] SEC("license") = "GPL";
