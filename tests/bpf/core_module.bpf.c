// SPDX-License-Identifier: GPL-2.0
/* CO-RE against a kernel module's types (split BTF, /sys/kernel/btf/<module>).
 *
 * struct p9_client is defined by the 9pnet module: where 9pnet is a module
 * (Debian's kernels; the test VM loads it to mount the host) vmlinux has no
 * candidate for it, and a loader must look in the modules' BTF, as libbpf
 * does.  Each relocation's value lands in `out` when the program runs; see
 * test_relocations_against_a_module_type in tests/test_core.py.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct p9_client {
	unsigned int msize;
	unsigned char proto_version;
} __attribute__((preserve_access_index));

__u64 out[3];

SEC("raw_tracepoint/sys_enter")
int core_module(void *ctx)
{
	out[0] = bpf_core_field_offset(struct p9_client, msize);
	out[1] = bpf_core_field_offset(struct p9_client, proto_version);
	out[2] = bpf_core_type_size(struct p9_client);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
