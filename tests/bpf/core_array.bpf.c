// SPDX-License-Identifier: GPL-2.0
/* CO-RE relocations through arrays, against the running kernel (libbpf is the
 * oracle: tests/test_core.py compares every patched instruction with what
 * `bpftool prog loadall -d` reports, and checks the values the program reads).
 *
 * The local declarations differ from the kernel's on purpose, so every answer
 * must come from the kernel's BTF, not from what clang put in the instruction:
 *   - arrays of another length (char comm[8] or [32] for the kernel's [16]);
 *   - a flexible array locally where the kernel's is fixed, and the other way;
 *   - array elements of another size (struct rlimit with only rlim_max);
 *   - the kernel's flexible arrays (cgroup.ancestors[], pid.numbers[]);
 *   - an array behind a typedef locally (the kernel's cpumask.bits is plain);
 *   - pointer arithmetic on the root (r[7].rlim_max: the first access index);
 *   - arrays that are not the kernel's field (other elements, or not an array);
 *   - a zero-length array that is not last in the kernel's struct: not flexible;
 *   - loads of array elements whose size differs (u32 here, the kernel's u8),
 *     by direct access from a tp_btf program (the load's size is patched).
 * Kernel structs are declared partially with preserve_access_index, as in
 * core_read.bpf.c (run in tests/bpf):
 *   clang-19 -g -O2 -target bpf -D__TARGET_ARCH_x86 \
 *       -I/usr/include/x86_64-linux-gnu -fdebug-prefix-map=$PWD=. \
 *       -c core_array.bpf.c -o core_array.bpf.o
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct rlimit {                        /* 16 bytes in the kernel: rlim_cur first */
	unsigned long rlim_max;
} __attribute__((preserve_access_index));

struct signal_struct {
	struct rlimit rlim[16];
} __attribute__((preserve_access_index));

struct cgroup {
	int level;
	struct cgroup *ancestors[];    /* flexible in the kernel too */
} __attribute__((preserve_access_index));

struct cgroup___fixed {                /* a fixed array locally */
	struct cgroup___fixed *ancestors[4];
} __attribute__((preserve_access_index));

struct css_set {
	struct cgroup *dfl_cgrp;
} __attribute__((preserve_access_index));

struct upid {
	int nr;
} __attribute__((preserve_access_index));

struct pid {
	unsigned int level;
	struct upid numbers[];         /* flexible, of structs */
} __attribute__((preserve_access_index));

typedef unsigned long rp_bits_t[1];

struct cpumask {                       /* bits[4] in the kernel (NR_CPUS 256) */
	rp_bits_t bits;
} __attribute__((preserve_access_index));

struct task_struct {
	int pid;
	int tgid;
	char comm[16];
	struct signal_struct *signal;
	struct css_set *cgroups;
	struct pid *thread_pid;
	struct cpumask cpus_mask;
} __attribute__((preserve_access_index));

struct task_struct___small {
	char comm[8];
} __attribute__((preserve_access_index));

struct task_struct___big {
	char comm[32];
} __attribute__((preserve_access_index));

struct task_struct___mismatch {
	void *comm[2];                 /* pointers, not chars: incompatible */
	char pid[4];                   /* an int in the kernel */
} __attribute__((preserve_access_index));

struct task_struct___wide {
	__u32 perf_recursion[4];       /* u8 in the kernel, both behind typedefs */
} __attribute__((preserve_access_index));

struct sk_buff {
	char pad;
	__u8 __cloned_offset[];        /* zero-length but not last in the kernel */
} __attribute__((preserve_access_index));

struct task_struct___flex {
	int pid;
	char comm[];                   /* last here, not in the kernel */
} __attribute__((preserve_access_index));

struct array_out {
	/* read through the relocated paths; tests compare with /proc and getrlimit */
	char comm5;
	char small_comm5;
	char flex_comm5;
	__u64 nofile_max;              /* signal->rlim[RLIMIT_NOFILE].rlim_max */
	__u64 nofile_max_ptr;          /* the same through (&rlim[0])[7] */
	__u32 numbers0_nr;             /* thread_pid->numbers[0].nr */
	__u32 root_is_own_ancestor;    /* root cgroup's ancestors[0] is itself */
	__u32 root_level;
	__u64 cpus0;                   /* cpus_mask.bits[0] */
	/* relocated constants */
	__u32 size_small_comm;         /* the kernel's comm: 16 */
	__u32 size_rlim;               /* 16 elements of the kernel's 16-byte rlimit */
	__u32 size_rlim2;
	__u32 size_ancestors;          /* a flexible array: 0 */
	__u32 size_ancestors1;
	__u32 size_numbers1;
	__u32 size_bits;               /* the kernel's bits[4] */
	__u32 off_big_comm15;
	__u32 off_flex_comm5;
	__u32 off_rlim5;
	__u32 off_rlim3_max;
	__u32 off_ptr7_max;
	__u32 off_ancestors2;
	__u32 off_fixed_ancestors3;
	__u32 off_numbers1_nr;
	__u32 off_bits0;
	__u32 exists_big_comm15;
	__u32 exists_big_comm20;       /* past the kernel's 16: 0 */
	__u32 exists_flex_comm5;
	__u32 exists_flex_comm20;      /* 0 */
	__u32 exists_ancestors1000;    /* flexible: no bound, 1 */
	__u32 exists_fixed_ancestors3;
	__u32 exists_ptr_comm;         /* 0 */
	__u32 exists_array_pid;        /* 0 */
	__u32 off_cloned;              /* the zero-length member itself: found */
	__u32 exists_cloned0;          /* an element of it: no such element, 0 */
	__u64 seen;                    /* only written by dead code */
};

const volatile __u32 target_tgid = 0;
struct array_out out = {};

SEC("raw_tracepoint/sys_enter")
int core_arrays(void *ctx)
{
	struct sk_buff *skb = ctx;             /* only named in relocations */
	struct task_struct *t = (void *)bpf_get_current_task();
	struct task_struct___small *small = (void *)t;
	struct task_struct___big *big = (void *)t;
	struct task_struct___flex *flex = (void *)t;
	struct task_struct___mismatch *mismatch = (void *)t;
	struct signal_struct *sig;
	struct rlimit *r;
	struct cgroup *cg, *root;
	struct cgroup___fixed *fixed;
	struct pid *p;

	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	sig = BPF_CORE_READ(t, signal);
	cg = BPF_CORE_READ(t, cgroups, dfl_cgrp);
	fixed = (void *)cg;
	p = BPF_CORE_READ(t, thread_pid);
	r = &sig->rlim[0];

	out.comm5 = BPF_CORE_READ(t, comm[5]);
	out.small_comm5 = BPF_CORE_READ(small, comm[5]);
	out.flex_comm5 = BPF_CORE_READ(flex, comm[5]);
	out.nofile_max = BPF_CORE_READ(sig, rlim[7].rlim_max);
	out.nofile_max_ptr = BPF_CORE_READ(&r[7], rlim_max);
	out.numbers0_nr = BPF_CORE_READ(p, numbers[0].nr);
	root = BPF_CORE_READ(cg, ancestors[0]);
	out.root_is_own_ancestor = BPF_CORE_READ(root, ancestors[0]) == root;
	out.root_level = BPF_CORE_READ(root, level);
	out.cpus0 = BPF_CORE_READ(t, cpus_mask.bits[0]);

	out.size_small_comm = bpf_core_field_size(small->comm);
	out.size_rlim = bpf_core_field_size(sig->rlim);
	out.size_rlim2 = bpf_core_field_size(sig->rlim[2]);
	out.size_ancestors = bpf_core_field_size(cg->ancestors);
	out.size_ancestors1 = bpf_core_field_size(cg->ancestors[1]);
	out.size_numbers1 = bpf_core_field_size(p->numbers[1]);
	out.size_bits = bpf_core_field_size(t->cpus_mask.bits);
	out.off_big_comm15 = bpf_core_field_offset(big->comm[15]);
	out.off_flex_comm5 = bpf_core_field_offset(flex->comm[5]);
	out.off_rlim5 = bpf_core_field_offset(sig->rlim[5]);
	out.off_rlim3_max = bpf_core_field_offset(sig->rlim[3].rlim_max);
	out.off_ptr7_max = bpf_core_field_offset(r[7].rlim_max);
	out.off_ancestors2 = bpf_core_field_offset(cg->ancestors[2]);
	out.off_fixed_ancestors3 = bpf_core_field_offset(fixed->ancestors[3]);
	out.off_numbers1_nr = bpf_core_field_offset(p->numbers[1].nr);
	out.off_bits0 = bpf_core_field_offset(t->cpus_mask.bits[0]);
	out.exists_big_comm15 = bpf_core_field_exists(big->comm[15]);
	out.exists_big_comm20 = bpf_core_field_exists(big->comm[20]);
	out.exists_flex_comm5 = bpf_core_field_exists(flex->comm[5]);
	out.exists_flex_comm20 = bpf_core_field_exists(flex->comm[20]);
	out.exists_ancestors1000 = bpf_core_field_exists(cg->ancestors[1000]);
	out.exists_fixed_ancestors3 = bpf_core_field_exists(fixed->ancestors[3]);
	out.exists_ptr_comm = bpf_core_field_exists(mismatch->comm[1]);
	out.exists_array_pid = bpf_core_field_exists(mismatch->pid);
	out.off_cloned = bpf_core_field_offset(skb->__cloned_offset);
	out.exists_cloned0 = bpf_core_field_exists(skb->__cloned_offset[0]);
	if (bpf_core_field_exists(big->comm[20]))
		out.seen = BPF_CORE_READ(big, comm[20]);        /* poisoned, dead */
	if (bpf_core_field_exists(flex->comm[20]))
		out.seen = BPF_CORE_READ(flex, comm[20]);       /* poisoned, dead */
	return 0;
}

struct array_direct_out {
	__u32 perf_recursion1;
	__u32 exists;
	char comm0;                    /* the array member itself loaded, not an element */
	char comm2;
};

struct array_direct_out direct_out = {};

SEC("tp_btf/sys_enter")
int core_arrays_direct(__u64 *ctx)
{
	struct task_struct___wide *t = (void *)bpf_get_current_task_btf();
	struct task_struct___small *small = (void *)t;

	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	direct_out.exists = bpf_core_field_exists(t->perf_recursion[1]);
	if (bpf_core_field_exists(t->perf_recursion[1]))
		direct_out.perf_recursion1 = t->perf_recursion[1];      /* LDX W -> LDX B */
	/* Loads of 1-byte elements, 8 or 16 of them: only the offset changes (libbpf
	 * before its 2025 fix compared whole array sizes and poisoned the first). */
	direct_out.comm0 = *small->comm;
	direct_out.comm2 = small->comm[2];
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
