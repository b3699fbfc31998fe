// SPDX-License-Identifier: GPL-2.0
/* Test object for BPF LSM programs (the attach layer, tests/test_link_lsm.py).
 *
 * Each program denies one call of one process and counts the calls it saw:
 *   deny_getpgid  lsm/task_getpgid     getpgid(pid != 0) of target_tgid: -EXDEV
 *   deny_open_s   lsm.s/file_open      open() by a task named target_comm: -EROFS
 *   cg_getpgid    lsm_cgroup/task_getpgid  getpgid() in the attached cgroup: 0 = deny
 *                                      (the kernel answers EPERM)
 * EXDEV and EROFS are what nothing else makes these calls return.
 * Build: make tests/bpf/lsm_test.bpf.o
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define EXDEV 18
#define EROFS 30

const volatile __u32 target_tgid = 0;
const volatile char target_comm[16] = {};

__u64 getpgid_calls = 0;
__u64 open_calls = 0;
__u64 cgroup_calls = 0;

SEC("lsm/task_getpgid")
int deny_getpgid(__u64 *ctx)
{
	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	__sync_fetch_and_add(&getpgid_calls, 1);
	return -EXDEV;
}

SEC("lsm.s/file_open")
int deny_open_s(__u64 *ctx)
{
	char comm[16];
	int i;

	bpf_get_current_comm(comm, sizeof(comm));
	for (i = 0; i < 16; i++) {
		if (comm[i] != target_comm[i])
			return 0;
		if (!comm[i])
			break;
	}
	__sync_fetch_and_add(&open_calls, 1);
	return -EROFS;
}

SEC("lsm_cgroup/task_getpgid")
int cg_getpgid(__u64 *ctx)
{
	__sync_fetch_and_add(&cgroup_calls, 1);
	return 0;
}
