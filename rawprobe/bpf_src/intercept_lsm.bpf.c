// SPDX-License-Identifier: (GPL-2.0-only OR MIT)
/*
 * The interceptor's deny path: a call hook that makes the chosen call FAIL
 * (returns deny_ret, -errno, to the caller) instead of only reporting it; same
 * filters, skip count, maps, .rodata and bookkeeping programs as
 * intercept.bpf.c, which this file includes.
 *
 *   rp_lsm        lsm/HOOK                    the BPF LSM (5.7; active only
 *                                             where "bpf" is in the lsm= list)
 *   rp_fmod_ret   fmod_ret/security_HOOK      a BPF trampoline on the LSM
 *                                             framework's own entry point: works
 *                                             where the BPF LSM is not active
 *                                             (the kernel allows fmod_ret on
 *                                             security_* functions without
 *                                             CONFIG_FUNCTION_ERROR_INJECTION)
 *
 * Both are BPF trampoline programs bound to their hook at load time (the
 * section's file_permission is replaced by userspace), so this is an object
 * of its own: it loads only where the kernel has trampolines.
 *
 * The hook runs inside a syscall; which one is the user's orig_ax
 * (bpf_task_pt_regs), so `--syscall write` denies write() and not the
 * pwrite64() or writev() that reach file_permission too.  `mask_arg` /
 * `mask` narrow it further by one of the hook's own arguments (MAY_WRITE for
 * file_permission).  The call's recorded arguments are the syscall's, from
 * the same registers.
 *
 * The first matching call of a process (after the skip count) is its
 * intercept event, flagged RP_F_DENIED; from then on, until the process
 * exits, every matching call of it is denied too and reported as an
 * rp_deny_event -- also after the tool stopped taking new targets
 * (`intake_closed`).  Never denied: the tool, tgid 1, protected_tgids (the
 * tool's ancestors), kernel threads.
 *
 * Minimum kernel: 5.17 (bpf_get_func_arg in trampoline programs;
 * bpf_task_pt_regs 5.15).
 */
#define RP_LSM_OBJECT 1
#include "intercept.bpf.c"

/* The syscall number in the user registers of the syscall being served (a
 * flavour of the kernel's struct pt_regs: CO-RE matches it by name without
 * the ___lsm suffix). */
struct pt_regs___lsm {
	unsigned long orig_ax;
} __attribute__((preserve_access_index));

/* ---- configuration: .rodata, set by userspace before load ---- */

/* What a denied call returns: -errno (-EPERM by default).  Negated here, not
 * in the program: the verifier (6.12) checks an LSM program's return value is
 * within [-4095, 0], and it knows a frozen .rodata value but not the range of
 * a negated one. */
const volatile __s32 deny_ret = -1;
const volatile __s32 mask_arg = -1;		/* the hook argument tested, -1 = none */
const volatile __u64 mask = 0;			/* the call matches if (arg & mask) */

/* ---- state: .bss ---- */

__u32 intake_closed = 0;	/* set by the tool: no new targets, but those
				 * handled stay denied until they exit */
__u64 denied_calls = 0;		/* every call denied, records lost or not */

struct rp_deny_event *_btf_deny_event __attribute__((unused));

_Static_assert(sizeof(struct rp_deny_event) == 104, "rp_deny_event layout");
_Static_assert(__builtin_offsetof(struct rp_deny_event, comm) == 80, "comm offset");

/* tgid 1 or one of protected_tgids (the tool's ancestors), by the tgid the
 * tool sees. */
static __always_inline int is_protected(__u32 vtgid)
{
	return vtgid == 1 || bpf_map_lookup_elem(&protected_tgids, &vtgid);
}

/* A process already handled by this watch (and still the same process). */
static __always_inline int being_handled(struct task_struct *task, __u32 tgid)
{
	struct rp_handled *st = bpf_map_lookup_elem(&handled, &tgid);

	return st && st->start_time == leader_start_time(task);
}

/* A later call of a process being denied: deny it, and say so. */
static __always_inline int deny_again(struct task_struct *task, __u32 vtgid,
				       struct pt_regs *regs, __s32 nr, __u32 hook)
{
	struct rp_deny_event *e;
	__u32 i;

	__sync_fetch_and_add(&denied_calls, 1);
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&lost_events, 1);
		return deny_ret;
	}
	e->type = RP_EV_DENY;
	e->tgid = vtgid;
	e->pid = ns_tid(task);
	e->syscall_nr = nr;
	e->ktime_ns = bpf_ktime_get_ns();
	e->start_time = leader_start_time(task);
	syscall_args(e->args, regs);
	for (i = 0; i < RP_NARGS; i++)
		if (i >= nargs)
			e->args[i] = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->ret = deny_ret;
	e->hook = hook;
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
	return deny_ret;
}

/* Both hooks: 0 lets the call go on, deny_ret makes it fail. */
static __always_inline int deny_call(void *ctx, __u32 hook)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct rp_intercept_event *e;
	struct pt_regs *regs;
	__u32 tgid, vtgid;
	__s32 nr;

	vtgid = task_matches(task, hook);
	if (!vtgid)
		return 0;
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	nr = (__s32)BPF_CORE_READ((struct pt_regs___lsm *)regs, orig_ax);
	if (syscall_nr >= 0 && nr != syscall_nr)
		return 0;
	if (compat_syscall(task))
		return 0;
	if (mask_arg >= 0) {
		__u64 v = 0;

		if (bpf_get_func_arg(ctx, mask_arg, &v) || !(v & mask))
			return 0;
	}

	tgid = task->tgid;		/* the maps' key */
	if (being_handled(task, tgid))
		return is_protected(vtgid) ? 0 : deny_again(task, vtgid, regs, nr, hook);
	if (intake_closed)
		return 0;

	e = intercept_begin(hook, nr);
	if (!e) {
		/* Skipped, or another thread of this process was handled first
		 * (then this call is denied like every later one). */
		if (being_handled(task, tgid) && !is_protected(vtgid))
			return deny_again(task, vtgid, regs, nr, hook);
		return 0;
	}
	syscall_args(e->args, regs);
	if (!(e->flags & RP_F_PROTECTED)) {
		e->flags |= RP_F_DENIED;
		__sync_fetch_and_add(&denied_calls, 1);
		intercept_finish(e);
		return deny_ret;
	}
	intercept_finish(e);
	return 0;
}

SEC("lsm/file_permission")
int rp_lsm(unsigned long long *ctx)
{
	return deny_call(ctx, RP_HOOK_LSM);
}

SEC("fmod_ret/security_file_permission")
int rp_fmod_ret(unsigned long long *ctx)
{
	return deny_call(ctx, RP_HOOK_FMOD_RET);
}
