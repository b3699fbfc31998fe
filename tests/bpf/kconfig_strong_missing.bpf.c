// SPDX-License-Identifier: GPL-2.0
/* Loader test object: a strong (not __weak) __kconfig extern that no kernel
 * configuration sets: loading must fail, naming it. */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

typedef _Bool bool;

extern bool CONFIG_RAWPROBE_NO_SUCH_OPTION __kconfig;

SEC("tracepoint/syscalls/sys_enter_getppid")
int uses_missing(void *ctx)
{
	return CONFIG_RAWPROBE_NO_SUCH_OPTION;
}

char LICENSE[] SEC("license") = "GPL";
