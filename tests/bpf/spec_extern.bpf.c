// SPDX-License-Identifier: GPL-2.0
/* Test object: an extern that is neither __kconfig nor __ksym, which nothing
 * can fill: rawprobe rejects it clearly (libbpf too). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

extern int rawprobe_plain_extern;

SEC("socket")
int uses_extern(void *ctx)
{
	return rawprobe_plain_extern & 1;
}

char LICENSE[] SEC("license") = "GPL";
