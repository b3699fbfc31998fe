// SPDX-License-Identifier: GPL-2.0
/* CO-RE relocation test object: one of each of the 13 relocation kinds.
 *
 * Kernel structs are declared here, partially, with preserve_access_index
 * instead of including vmlinux.h, so this object builds the same anywhere
 * (run in tests/bpf; the prefix map keeps the checkout's path out of the .o):
 *   clang-19 -g -O2 -target bpf -D__TARGET_ARCH_x86 \
 *       -I/usr/include/x86_64-linux-gnu -fdebug-prefix-map=$PWD=. \
 *       -c core_read.bpf.c -o core_read.bpf.o
 *
 * Each value the programs compute lands in `out` (.bss), so a loader test can
 * trigger a syscall and compare with what Python knows about itself.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

typedef int pid_t;

/* libbpf-dev 1.1 has no bpf_core_field_signed(); it is this builtin. */
#ifndef bpf_core_field_signed
#define bpf_core_field_signed(field) \
	__builtin_preserve_field_info(field, BPF_FIELD_SIGNED)
#endif

struct mm_struct {
	unsigned long total_vm;        /* inside two anonymous structs in the kernel */
	int map_count;
} __attribute__((preserve_access_index));

struct task_struct {
	pid_t pid;
	pid_t tgid;
	struct task_struct *real_parent;
	struct mm_struct *mm;
	char comm[16];
	__u64 start_time;
	unsigned int in_execve: 1;     /* a bitfield in the kernel too */
	unsigned int sched_reset_on_fork: 1;
	long rawprobe_no_such_field;   /* never in any kernel */
} __attribute__((preserve_access_index));

/* Flavours: same essential name "task_struct", different fields. */
struct task_struct___old {
	long state;                    /* before 5.14 */
} __attribute__((preserve_access_index));

struct task_struct___new {
	unsigned int __state;          /* since 5.14 */
} __attribute__((preserve_access_index));

struct list_head {
	struct list_head *next;
	struct list_head *prev;
} __attribute__((preserve_access_index));

/* Matches the kernel's list_head by name and shape... */
struct list_head___same {
	struct list_head___same *next;
	struct list_head___same *prev;
};

/* ...and this one does not (int where the kernel has a pointer). */
struct list_head___different {
	int next;
};

struct rawprobe_no_such_struct {
	int x;
};

enum pid_type {
	PIDTYPE_PID,
	PIDTYPE_TGID,
	PIDTYPE_PGID,
	PIDTYPE_SID,
	PIDTYPE_MAX,
};

enum pid_type___missing {
	PIDTYPE_RAWPROBE_MISSING___missing = 42,
};

/* A 64-bit enum (BTF_KIND_ENUM64 locally and in the kernel). */
enum perf_callchain_context {
	PERF_CONTEXT_KERNEL = 0xffffffffffffff80ULL,
};

struct core_out {
	__u32 pid;
	__u32 tgid;
	__u32 ppid;
	char comm[16];
	char comm3;
	__u64 start_time;
	__u64 total_vm;
	__u64 in_execve;
	__u64 sched_reset_on_fork;
	__u32 off_tgid;
	__u32 size_comm;
	__u32 size_start_time;
	__u32 signed_pid;
	__u32 signed_start_time;
	__u32 exists_pid;
	__u32 exists_no_such_field;
	__u32 exists_old_state;
	__u32 exists_new_state;
	__u32 new_state_off;
	__u32 type_id_local;
	__u32 type_id_kernel;
	__u32 type_exists_task;
	__u32 type_exists_missing;
	__u32 type_exists_pid_t;
	__u32 type_size_task;
	__u32 type_size_pid_t;
	__u32 type_matches_same;
	__u32 type_matches_different;
	__u32 enum_exists_sid;
	__u32 enum_exists_missing;
	__u32 enum_value_sid;
	__u64 enum_value_kernel_ctx;
	__u64 seen;
};

const volatile __u32 target_tgid = 0;
struct core_out out = {};

SEC("raw_tracepoint/sys_enter")
int core_probe_read(void *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task();

	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;

	out.pid = BPF_CORE_READ(t, pid);
	out.tgid = BPF_CORE_READ(t, tgid);
	out.ppid = BPF_CORE_READ(t, real_parent, tgid);
	BPF_CORE_READ_STR_INTO(&out.comm, t, comm);
	out.comm3 = BPF_CORE_READ(t, comm[3]);
	out.start_time = BPF_CORE_READ(t, start_time);
	out.total_vm = BPF_CORE_READ(t, mm, total_vm);
	out.in_execve = BPF_CORE_READ_BITFIELD_PROBED(t, in_execve);
	out.sched_reset_on_fork = BPF_CORE_READ_BITFIELD_PROBED(t, sched_reset_on_fork);

	out.off_tgid = bpf_core_field_offset(t->tgid);
	out.size_comm = bpf_core_field_size(t->comm);
	out.size_start_time = bpf_core_field_size(t->start_time);
	out.signed_pid = bpf_core_field_signed(t->pid);
	out.signed_start_time = bpf_core_field_signed(t->start_time);
	out.exists_pid = bpf_core_field_exists(t->pid);
	out.exists_no_such_field = bpf_core_field_exists(t->rawprobe_no_such_field);
	if (bpf_core_field_exists(t->rawprobe_no_such_field))
		out.seen = BPF_CORE_READ(t, rawprobe_no_such_field);   /* poisoned, dead */

	out.exists_old_state = bpf_core_field_exists(((struct task_struct___old *)t)->state);
	out.exists_new_state = bpf_core_field_exists(((struct task_struct___new *)t)->__state);
	if (bpf_core_field_exists(((struct task_struct___new *)t)->__state))
		out.new_state_off = bpf_core_field_offset(((struct task_struct___new *)t)->__state);

	out.type_id_local = bpf_core_type_id_local(struct task_struct);
	out.type_id_kernel = bpf_core_type_id_kernel(struct task_struct);
	out.type_exists_task = bpf_core_type_exists(struct task_struct);
	out.type_exists_missing = bpf_core_type_exists(struct rawprobe_no_such_struct);
	out.type_exists_pid_t = bpf_core_type_exists(pid_t);
	out.type_size_task = bpf_core_type_size(struct task_struct);
	out.type_size_pid_t = bpf_core_type_size(pid_t);
	out.type_matches_same = bpf_core_type_matches(struct list_head___same);
	out.type_matches_different = bpf_core_type_matches(struct list_head___different);

	out.enum_exists_sid = bpf_core_enum_value_exists(enum pid_type, PIDTYPE_SID);
	out.enum_exists_missing = bpf_core_enum_value_exists(enum pid_type___missing,
							     PIDTYPE_RAWPROBE_MISSING___missing);
	out.enum_value_sid = bpf_core_enum_value(enum pid_type, PIDTYPE_SID);
	out.enum_value_kernel_ctx = bpf_core_enum_value(enum perf_callchain_context,
							PERF_CONTEXT_KERNEL);
	out.seen += 1;
	return 0;
}

struct core_direct_out {
	__u32 pid;
	__u32 tgid;
	__u32 ppid;
	__u64 in_execve;
	__u64 total_vm;
	__u64 seen;
};

struct core_direct_out direct_out = {};

/* BTF-typed pointers: plain loads (LDX) carry the CO-RE relocations. */
SEC("tp_btf/sys_enter")
int core_direct(__u64 *ctx)
{
	struct task_struct *t = bpf_get_current_task_btf();

	if (t->tgid != target_tgid)
		return 0;
	direct_out.pid = t->pid;
	direct_out.tgid = t->tgid;
	direct_out.ppid = t->real_parent->tgid;
	direct_out.in_execve = BPF_CORE_READ_BITFIELD(t, in_execve);
	if (t->mm)
		direct_out.total_vm = t->mm->total_vm;
	direct_out.seen += 1;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
