// SPDX-License-Identifier: GPL-2.0
/* Test object: a BPF LSM program that refuses BPF_PROG_LOAD of chosen program
 * types with EPERM, the way a locked-down kernel refuses fentry (this
 * project's development machine does).  The interceptor's tests load it in
 * the VM, whose kernels run the BPF LSM, to take hooks away for real and see
 * `watch --hook auto` fall back to the next one and say why.
 *
 * deny_types: bit N set refuses program type N (enum bpf_prog_type).  The
 * hook is security_bpf(int cmd, union bpf_attr *attr, unsigned int size)
 * (5.7+ as a BPF LSM hook; 6.14 added a fourth argument, not used here).
 * Build: make tests/bpf/deny_prog_load.bpf.o
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define EPERM 1

char LICENSE[] SEC("license") = "GPL";

const volatile __u64 deny_types = 0;
__u64 denied = 0;		/* loads refused, for the test to see it worked */

SEC("lsm/bpf")
int deny_prog_load(unsigned long long *ctx)
{
	union bpf_attr *attr = (union bpf_attr *)ctx[1];
	__u32 type = 0;

	if ((int)ctx[0] != BPF_PROG_LOAD)
		return 0;
	bpf_probe_read_kernel(&type, sizeof(type), &attr->prog_type);
	if (type < 64 && (deny_types >> type) & 1) {
		__sync_fetch_and_add(&denied, 1);
		return -EPERM;
	}
	return 0;
}
