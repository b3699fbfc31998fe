// SPDX-License-Identifier: GPL-2.0
/* Test object: an extern __ksym symbol, which rawprobe rejects clearly. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

extern const void bpf_link_fops __ksym;

SEC("socket")
int uses_ksym(void *ctx)
{
	return (long)&bpf_link_fops & 1;
}

char LICENSE[] SEC("license") = "GPL";
