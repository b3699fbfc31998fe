// SPDX-License-Identifier: GPL-2.0
/* Loader test object: __ksym externs of each kind, declared as tools declare
 * them, used by programs a test runs and compares with the kernel's own
 * answers and with libbpf's load of the same object.
 *
 *  sum_iter (raw_tp, run with BPF_PROG_TEST_RUN): open-coded iterator kfuncs
 *    (bpf_iter_num_*, any program type, 6.4+) add 0..n-1, n = ctx->args[0];
 *    stores the address of a typeless ksym (_stext) and of absent weak ones,
 *    and whether an absent weak kfunc exists (its guarded call is dead code).
 *  flavours (raw_tp): kfuncs named with ___flavour suffixes, resolved by
 *    their names without them (libbpf 1.3+): one compatible, one whose
 *    prototype is not the kernel's (weak: absent).
 *  task_by_pid (tracepoint sys_enter_getppid): bpf_task_from_pid() and
 *    bpf_task_release() (6.2+), reading the task's tgid.
 *  current_task (tp_btf sys_enter): bpf_task_acquire() of the current task.
 *
 * vmlinux.h's names for the types, declared here so the object builds the
 * same anywhere; kfunc prototypes as the kernel's BTF has them.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

typedef __u32 u32;
typedef __s32 s32;
typedef __u64 u64;

/* libbpf 1.1's bpf_helpers.h predates it */
#ifndef bpf_ksym_exists
#define bpf_ksym_exists(sym) (!!(sym))
#endif

struct task_struct {
	int pid;
	int tgid;
} __attribute__((preserve_access_index));

struct bpf_iter_num {
	u64 __opaque[1];
} __attribute__((aligned(8)));

extern int bpf_iter_num_new(struct bpf_iter_num *it, int start, int end) __ksym;
extern int *bpf_iter_num_next(struct bpf_iter_num *it) __ksym;
extern void bpf_iter_num_destroy(struct bpf_iter_num *it) __ksym;
extern struct task_struct *bpf_task_from_pid(s32 pid) __ksym;
extern struct task_struct *bpf_task_acquire(struct task_struct *p) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;

/* weak, and absent from every kernel */
extern void bpf_rawprobe_no_such_kfunc(int x) __ksym __weak;
extern const int rawprobe_no_such_variable __ksym __weak;
extern const void rawprobe_no_such_symbol __ksym __weak;

/* typeless: an address from /proc/kallsyms */
extern const void _stext __ksym;

/* ___flavour names resolve to the kernel's kfunc without the suffix */
extern void bpf_rcu_read_lock___compat(void) __ksym __weak;
extern void bpf_rcu_read_unlock(void) __ksym __weak;
extern int bpf_iter_num_new___wrong_proto(int start) __ksym __weak;

struct results {
	u64 sum;
	u64 stext;
	u64 no_such_symbol;
	u64 no_such_variable;
	u64 no_such_kfunc_exists;
	u64 no_such_kfunc_called;
	u64 flavour_exists;
	u64 flavour_called;
	u64 wrong_proto_exists;
	u64 task_tgid;
	u64 current_tgid;
};

const volatile u32 target_tgid = 0;
struct results results;

SEC("raw_tp/sys_enter")
int sum_iter(struct bpf_raw_tracepoint_args *ctx)
{
	struct bpf_iter_num it;
	int *v;
	u64 sum = 0;

	bpf_iter_num_new(&it, 0, ctx->args[0]);
	while ((v = bpf_iter_num_next(&it)))
		sum += *v;
	bpf_iter_num_destroy(&it);
	results.sum = sum;
	results.stext = (u64)&_stext;
	results.no_such_symbol = (u64)&rawprobe_no_such_symbol;
	results.no_such_variable = (u64)&rawprobe_no_such_variable;
	results.no_such_kfunc_exists = bpf_ksym_exists(bpf_rawprobe_no_such_kfunc);
	if (bpf_ksym_exists(bpf_rawprobe_no_such_kfunc)) {
		bpf_rawprobe_no_such_kfunc(1);
		results.no_such_kfunc_called = 1;
	}
	return 0;
}

SEC("raw_tp/sys_enter")
int flavours(struct bpf_raw_tracepoint_args *ctx)
{
	results.flavour_exists = bpf_ksym_exists(bpf_rcu_read_lock___compat);
	if (bpf_ksym_exists(bpf_rcu_read_lock___compat) && bpf_ksym_exists(bpf_rcu_read_unlock)) {
		bpf_rcu_read_lock___compat();
		results.flavour_called = 1;
		bpf_rcu_read_unlock();
	}
	results.wrong_proto_exists = bpf_ksym_exists(bpf_iter_num_new___wrong_proto);
	if (bpf_ksym_exists(bpf_iter_num_new___wrong_proto))
		bpf_iter_num_new___wrong_proto(0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int task_by_pid(void *ctx)
{
	struct task_struct *t;

	if (bpf_get_current_pid_tgid() >> 32 != target_tgid)
		return 0;
	t = bpf_task_from_pid(target_tgid);
	if (t) {
		results.task_tgid = t->tgid;
		bpf_task_release(t);
	}
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(current_task, struct pt_regs *regs, long id)
{
	struct task_struct *t;

	if (bpf_get_current_pid_tgid() >> 32 != target_tgid)
		return 0;
	t = bpf_task_acquire(bpf_get_current_task_btf());
	if (t) {
		results.current_tgid = t->tgid;
		bpf_task_release(t);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
