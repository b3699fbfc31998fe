// SPDX-License-Identifier: GPL-2.0
/* Test object: an extern __kconfig variable, which rawprobe rejects clearly. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

extern unsigned int LINUX_KERNEL_VERSION __kconfig;

SEC("socket")
int uses_kconfig(void *ctx)
{
	return LINUX_KERNEL_VERSION > 0x050000;
}

char LICENSE[] SEC("license") = "GPL";
