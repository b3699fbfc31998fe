// SPDX-License-Identifier: GPL-2.0
/* Loader test object: an freplace program, whose target (handle) is a global
 * function of another, already loaded BPF program, which rawprobe refuses to
 * load (saying so); and an ordinary program beside it, which loads. */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("freplace/handle")
int new_handle(void *ctx)
{
	return 1;
}

SEC("raw_tp/sys_enter")
int ordinary(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
