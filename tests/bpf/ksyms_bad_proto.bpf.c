// SPDX-License-Identifier: GPL-2.0
/* A strong kfunc declared with a prototype the kernel's does not match
 * (bpf_iter_num_new takes an iterator and two ints): the load fails. */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

extern int bpf_iter_num_new(int start) __ksym;

SEC("raw_tp/sys_enter")
int bad_proto(struct bpf_raw_tracepoint_args *ctx)
{
	return bpf_iter_num_new(0);
}

char LICENSE[] SEC("license") = "GPL";
