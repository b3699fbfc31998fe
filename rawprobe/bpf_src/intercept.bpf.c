// SPDX-License-Identifier: (GPL-2.0-only OR MIT)
/*
 * rawprobe's interceptor, kernel side.
 *
 * One object, several hooks; userspace loads it, sets the .rodata
 * configuration, and attaches ONE of the call hooks plus the bookkeeping
 * programs:
 *
 *   call hooks (pick one)          rp_sys_enter     raw_tracepoint/sys_enter
 *                                  rp_sys_enter_tp  tracepoint/syscalls/sys_enter_*
 *                                  rp_kprobe        kprobe/SYMBOL[+OFFSET]
 *                                  rp_fentry        fentry/FUNC (intercept_fentry.bpf.o)
 *   bookkeeping (always)           rp_proc_exit     raw_tracepoint/sched_process_exit
 *                                  rp_sig_generate  raw_tracepoint/signal_generate
 *                                  rp_sig_deliver   raw_tracepoint/signal_deliver
 *
 * The fentry hook lives in a second object built from this same file
 * (intercept_fentry.bpf.c defines RP_FENTRY_OBJECT): fentry needs its target's
 * BTF id at load time and fails to load with EPERM on kernels without
 * trampolines, and a whole-object load (bpftool prog loadall, or a loader that
 * loads every program) must succeed on every kernel.  The deny path's LSM
 * hook lives in a third (intercept_lsm.bpf.c, RP_LSM_OBJECT), for the same
 * reasons.
 *
 * Kernel structs are declared here with preserve_access_index instead of
 * including a generated vmlinux.h: CO-RE relocates each field by name against
 * the running kernel's BTF, so the object is machine-independent.
 *
 * Minimum kernel: 5.12 for this object (ring buffer 5.8, atomic fetch-add and
 * cmpxchg on map values 5.12 -- built with -mcpu=v3); 5.17 for the fentry object
 * (bpf_get_func_arg).
 */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "intercept.h"

#define SIGKILL 9
#define PF_KTHREAD 0x00200000
#define TS_COMPAT 0x0002	/* x86 thread_info.status: a 32-bit (ia32) syscall is running */

/* ---- kernel types, relocated by CO-RE (only the fields used) ---- */

struct pt_regs {
	unsigned long r10;
	unsigned long r9;
	unsigned long r8;
	unsigned long cx;
	unsigned long dx;
	unsigned long si;
	unsigned long di;
} __attribute__((preserve_access_index));

typedef struct {
	int counter;
} rp_atomic_t;

typedef struct {
	unsigned int val;
} rp_kuid_t;

/* Whose process it is, for the kernel's own signalling rule (kill_ok_by_cred). */
struct cred {
	rp_kuid_t uid;
	rp_kuid_t suid;
} __attribute__((preserve_access_index));

struct ns_common {
	unsigned int inum;	/* the inode number /proc/PID/ns/<type> shows */
} __attribute__((preserve_access_index));

struct pid_namespace {
	struct ns_common ns;
} __attribute__((preserve_access_index));

/* A task's number in one pid namespace. */
struct upid {
	int nr;
	struct pid_namespace *ns;
} __attribute__((preserve_access_index));

/* numbers[0..level]: the task's number in each pid namespace from the initial
 * one (0) down to its own (level).  pidfs (6.9+) numbers every struct pid too:
 * `ino`, the inode number its pidfds show. */
struct pid {
	unsigned int level;
	__u64 ino;
	struct upid numbers[1];
} __attribute__((preserve_access_index));

struct signal_struct {
	rp_atomic_t live;	/* threads not yet past do_exit()'s group_dead test */
} __attribute__((preserve_access_index));

struct thread_info {
	__u32 status;
} __attribute__((preserve_access_index));

struct task_struct {
	struct thread_info thread_info;
	unsigned int flags;
	int exit_code;
	char comm[16];
	int pid;
	int tgid;
	struct task_struct *group_leader;
	struct pid *thread_pid;
	__u64 start_time;
	__u64 start_boottime;
	struct signal_struct *signal;
	const struct cred *real_cred;
} __attribute__((preserve_access_index));

/* Context of a syscalls/sys_enter_* tracepoint program: the 8-byte common
 * header, int __syscall_nr at 8, one 8-byte slot per argument from 16
 * (events/syscalls/sys_enter_* /format).  Not BTF-typed: plain offsets. */
struct rp_sys_enter_record {
	__u64 common;
	__s32 nr;
	__u32 pad;
	__u64 args[RP_NARGS];
};

/* ---- configuration: .rodata, set by userspace before load ---- */

const volatile char target_comm[RP_COMM_LEN] __attribute__((aligned(8))) = {};
const volatile __u32 filter_comm = 0;		/* 1: caller thread's comm == target_comm */
/* The bytes of the comm that count, up to and including its NUL: the kernel
 * does not promise zeroes after it (a shorter name set over a longer one). */
const volatile __u64 target_comm_mask[2] = {};
const volatile __u32 filter_tgid = 0;		/* 1: caller's tgid is a key of target_tgids
						 * and its start the value there */
const volatile __u64 tick_ns = 10000000;	/* 1e9 / USER_HZ: /proc's start time unit */
/* the tool's time-namespace CLOCK_BOOTTIME offset: /proc adds it to the start
 * times it shows the tool, so target_tgids holds start ticks in that frame */
const volatile __s64 boot_offset_ns = 0;
const volatile __u32 filter_cgroup = 0;		/* enum rp_cgroup_mode */
const volatile __u64 target_cgroup_id = 0;
const volatile __u32 target_cgroup_level = 0;	/* for RP_CGROUP_SUBTREE; root is 0 */
const volatile __u32 filter_uid = 0;		/* 1: caller's real uid == target_uid */
const volatile __u32 target_uid = 0;
const volatile __u32 self_tgid = 0;		/* the tool: never intercepted */
/* The tool's pid namespace (its inode number) when it is not the initial one:
 * only the processes it can see are intercepted, and records carry their pids
 * there (self_tgid, target_tgids and protected_tgids hold such pids too). */
const volatile __u32 pidns_ino = 0;
const volatile __s32 syscall_nr = -1;		/* raw_tp/tracepoint filter; -1 = any.
						 * kprobe/fentry: the syscall whose entry
						 * they hook, for the record */
/* kprobe/fentry on a syscall's entry symbol (__x64_sys_write): its one
 * argument is the caller's struct pt_regs, where the syscall's arguments are. */
const volatile __u32 args_in_regs = 0;
const volatile __u32 nargs = RP_NARGS;		/* args[i >= nargs] are reported as 0 */
const volatile __u64 skip_count = 0;		/* let this many matching calls through */
const volatile __u32 skip_mode = RP_SKIP_PER_PROCESS;
const volatile __u32 action = RP_ACTION_REPORT;	/* enum rp_action */
const volatile __u32 signal_nr = 15;		/* SIGTERM; the signal the tool sends */
/* kernel-signal's limits, decided here at the call (0 = none); what is over
 * them is left to the tool (RP_F_DEFERRED), which queues or drops it. */
const volatile __u64 max_in_flight = 0;		/* kernel-signalled, not yet exited */
const volatile __u64 max_signals = 0;		/* --count: signals sent in all */
/* 1: the tool lacks CAP_KILL, so kernel-signal only where the tool itself
 * could signal: its real or effective uid is the target's real or saved uid. */
const volatile __u32 check_cred = 0;
const volatile __u32 tool_uid = 0;
const volatile __u32 tool_euid = 0;
const volatile __u32 capture_len = 0;		/* bytes of user buffer to copy, <= 64 */
const volatile __s32 buf_arg = -1;		/* index of the buffer argument, -1 = none */
const volatile __s32 len_arg = -1;		/* index of its length argument, -1 = none */

/* ---- counters: .bss, readable after load ---- */

__u64 lost_events = 0;		/* ring buffer full: events dropped */
__u64 handled_full = 0;		/* `handled` full: a matching process not handled */
__u64 kernel_in_flight = 0;	/* kernel-signalled processes that have not exited */
__u64 signals_sent = 0;		/* by kernel-signal, in all */
__u32 pidns_level1 = 0;		/* 1 + the level of the tool's pid namespace, once seen */

/* Never used: they put the record types into the object's BTF, so the
 * Python side can check its struct formats against the object itself. */
struct rp_intercept_event *_btf_intercept_event __attribute__((unused));
struct rp_signal_event *_btf_signal_event __attribute__((unused));
struct rp_exit_event *_btf_exit_event __attribute__((unused));

/* ---- maps ---- */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	/* Room for a burst: 3,000 new targets at once take ~1.5 MiB (an
	 * intercept, two signal records and an exit each) if the tool is slow
	 * to read; records lost are counted in lost_events and reported. */
	__uint(max_entries, 4 * 1024 * 1024);
} events SEC(".maps");

/*
 * Wake-ups.  A ring buffer wake-up is an irq_work: a self-interrupt on the
 * CPU of whatever task submitted the record, plus an IPI to wake the tool's
 * CPU -- paid by that task, tens of microseconds on a virtual machine.  So
 * every record says explicitly whether the tool must be woken (never the
 * adaptive default: one unread record submitted without a wake-up would
 * silence every adaptive wake-up after it):
 *
 *   intercept, signal/report     FORCE: the tool acts on it, at once
 *   intercept, kernel-signal     none: the target is signalled already;
 *                                waking the tool here would delay the
 *                                delivery on this very CPU
 *   deliver,   kernel-signal     FORCE: the tool's cue, after the target
 *                                took the signal
 *   exit,      kernel-signal     FORCE: in case the signal never arrives
 *   everything else              none: carried along by the next wake-up;
 *                                the tool watches each target's pidfd, and
 *                                in kernel-signal mode bounds its sleep
 */
#define RP_WAKE (action == RP_ACTION_KERNEL_SIGNAL ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP)

/* tgid -> state of a process being handled; created at the intercept,
 * deleted when its last thread exits. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct rp_handled);
} handled SEC(".maps");

/* tgid -> its leader's start_boottime in /proc's clock ticks (stat field 22,
 * what the tool can read): the --pid set, when filter_tgid is on.  The start
 * binds each pid to the process the operator named: a later process that
 * reuses the pid does not match. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} target_tgids SEC(".maps");

/* tgid -> 1: never signalled by the kernel-signal action (the tool's
 * ancestors, anything userspace wants spared); tgid 1 never is either.
 * Their intercepted calls are still reported, flagged RP_F_PROTECTED (with
 * every action), so userspace can log the refusal. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u8);
} protected_tgids SEC(".maps");

/* tgid -> matching calls seen so far (per-process skip counting). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
} skip_counts SEC(".maps");

/* [0] -> matching calls seen so far by all processes (global skip counting). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} global_hits SEC(".maps");

_Static_assert(sizeof(struct rp_intercept_event) == 216, "rp_intercept_event layout");
_Static_assert(__builtin_offsetof(struct rp_intercept_event, pid_ino) == 208, "pid_ino offset");
_Static_assert(__builtin_offsetof(struct rp_intercept_event, args) == 48, "args offset");
_Static_assert(__builtin_offsetof(struct rp_intercept_event, buf) == 144, "buf offset");
_Static_assert(sizeof(struct rp_signal_event) == 64, "rp_signal_event layout");
_Static_assert(__builtin_offsetof(struct rp_signal_event, comm) == 48, "comm offset");
_Static_assert(sizeof(struct rp_exit_event) == 112, "rp_exit_event layout");
_Static_assert(__builtin_offsetof(struct rp_exit_event, deliver_sig) == 104, "deliver_sig offset");
_Static_assert(sizeof(struct rp_handled) == 80, "rp_handled layout");

/* ---- the call hooks' common part ---- */

/* Is the syscall under way a 32-bit (ia32) one?  Its number is then from the
 * ia32 table, where 1 is exit, not write: never compare it with an x86-64
 * number.  The syscalls/ tracepoints skip compat calls the same way. */
static __always_inline int compat_syscall(struct task_struct *task)
{
	return task->thread_info.status & TS_COMPAT;
}

static __always_inline __u64 leader_start_time(struct task_struct *task)
{
	return BPF_CORE_READ(task, group_leader, start_time);
}

/* MAX_PID_NS_LEVEL (kernel/pid_namespace.c): pid namespaces nest at most so deep. */
#define RP_PIDNS_MAX_LEVEL 32

/*
 * The number of `pid` in the tool's pid namespace, or 0 if the tool cannot see
 * it.  The namespace is found by its inode number among the pid's numbers[],
 * at the namespace's level (the same for every pid it holds, so it is kept in
 * pidns_level1 once found); userspace cannot tell that level when its /proc is
 * its own namespace's (NSpid then lists one number).  `pid` is a plain kernel
 * address (from a probe read): numbers[] is indexed at run time.
 */
static __always_inline __u32 ns_nr(const struct pid *pid)
{
	unsigned long numbers = (unsigned long)pid + bpf_core_field_offset(struct pid, numbers);
	__u32 level, known = pidns_level1, k;

	if (!pid)
		return 0;
	level = BPF_CORE_READ(pid, level);
	if (known && known - 1 > level)
		return 0;
	for (k = 0; k < RP_PIDNS_MAX_LEVEL; k++) {
		__u32 i = known ? known - 1 : k;
		unsigned long upid = numbers + i * bpf_core_type_size(struct upid);
		struct pid_namespace *pidns = NULL;
		int nr = 0;

		if (i > level)
			break;
		if (bpf_probe_read_kernel(&pidns, sizeof(pidns),
					  (void *)(upid + bpf_core_field_offset(struct upid, ns))) ||
		    BPF_CORE_READ(pidns, ns.inum) != pidns_ino) {
			if (known)
				break;
			continue;
		}
		if (bpf_probe_read_kernel(&nr, sizeof(nr),
					  (void *)(upid + bpf_core_field_offset(struct upid, nr))))
			break;
		pidns_level1 = i + 1;
		return nr;
	}
	return 0;
}

/* A task's thread group in the tool's pid namespace (0: not visible there). */
static __always_inline __u32 ns_tgid(struct task_struct *task)
{
	return pidns_ino ? ns_nr(BPF_CORE_READ(task, group_leader, thread_pid))
			 : BPF_CORE_READ(task, tgid);
}

/* A task (thread) in the tool's pid namespace (0: not visible there). */
static __always_inline __u32 ns_tid(struct task_struct *task)
{
	return pidns_ino ? ns_nr(BPF_CORE_READ(task, thread_pid)) : BPF_CORE_READ(task, pid);
}

/* The kernel's rule for an unprivileged sender (kill_ok_by_cred), with the
 * tool as the sender. */
static __always_inline int tool_may_signal(struct task_struct *task)
{
	__u32 uid = BPF_CORE_READ(task, real_cred, uid.val);
	__u32 suid = BPF_CORE_READ(task, real_cred, suid.val);

	return tool_uid == uid || tool_uid == suid || tool_euid == uid || tool_euid == suid;
}

/* The kernel-signal guards that need counting: a slot in max_in_flight and
 * one of max_signals.  Returns 1 with both taken, 0 (nothing taken) if either
 * is full. */
static __always_inline int take_signal_slot(void)
{
	if (max_in_flight &&
	    __sync_fetch_and_add(&kernel_in_flight, 1) >= max_in_flight) {
		__sync_fetch_and_add(&kernel_in_flight, -1);
		return 0;
	}
	if (max_signals && __sync_fetch_and_add(&signals_sent, 1) >= max_signals) {
		__sync_fetch_and_add(&signals_sent, -1);
		if (max_in_flight)
			__sync_fetch_and_add(&kernel_in_flight, -1);
		return 0;
	}
	return 1;
}

/* A `handled` entry goes away: give back its in-flight slot. */
static __always_inline void release_slot(const struct rp_handled *st)
{
	if (max_in_flight && (st->flags & RP_HF_IN_FLIGHT))
		__sync_fetch_and_add(&kernel_in_flight, -1);
}

/*
 * Is `task` one of the processes this watch is about?  Its tgid as the tool
 * sees it (in pid namespace pidns_ino) if so, else 0.  The filters, cheapest
 * first: a non-target process pays only for these, and the comm test, the
 * one nearly every watch has, costs two loads and no helper call.  Disabled
 * filters are dead code (.rodata is frozen).  `hook` is a constant at every
 * call site, so the kernel-thread test is only compiled into the hooks on
 * kernel functions (kprobe, fentry, lsm).
 */
static __always_inline __u32 task_matches(struct task_struct *task, __u32 hook)
{
	__u32 vtgid;

	if (filter_comm) {
		const __u64 *c = (const __u64 *)task->comm;

		if ((c[0] & target_comm_mask[0]) != *(const volatile __u64 *)&target_comm[0] ||
		    (c[1] & target_comm_mask[1]) != *(const volatile __u64 *)&target_comm[8])
			return 0;
	}
	/* 0 if the tool cannot see the process */
	vtgid = pidns_ino ? ns_tgid(task) : task->tgid;
	if (!vtgid || vtgid == self_tgid)
		return 0;
	if (filter_tgid) {
		__u64 *named = bpf_map_lookup_elem(&target_tgids, &vtgid);

		if (!named ||
		    *named != (BPF_CORE_READ(task, group_leader, start_boottime) +
			       boot_offset_ns) / tick_ns)
			return 0;
	}
	if (filter_uid && (__u32)bpf_get_current_uid_gid() != target_uid)
		return 0;
	if (filter_cgroup == RP_CGROUP_EXACT &&
	    bpf_get_current_cgroup_id() != target_cgroup_id)
		return 0;
	if (filter_cgroup == RP_CGROUP_SUBTREE &&
	    bpf_get_current_ancestor_cgroup_id(target_cgroup_level) != target_cgroup_id)
		return 0;

	if ((hook == RP_HOOK_KPROBE || hook == RP_HOOK_FENTRY || hook == RP_HOOK_LSM ||
	     hook == RP_HOOK_FMOD_RET) && (task->flags & PF_KTHREAD))
		return 0;
	return vtgid;
}

/*
 * Decide whether this call is intercepted.  Returns a reserved ring buffer
 * record with the common fields filled, or NULL (call not ours, skipped, or
 * slipped by an already handled process).
 */
static __always_inline struct rp_intercept_event *intercept_begin(__u32 hook, __s32 nr)
{
	/* A BTF pointer: its fields are plain loads, no helper call per field. */
	struct task_struct *task = bpf_get_current_task_btf();
	struct rp_handled *st;
	struct rp_intercept_event *e;
	__u64 hit = 1, now, start;
	__u32 tgid, vtgid, flags;
	long err;

	/* tgid keys the maps; vtgid is what the tool sees (task_matches). */
	vtgid = task_matches(task, hook);
	if (!vtgid)
		return NULL;
	tgid = task->tgid;

	/* Already handled: count the call, never report it again.  A call
	 * before any delivery of our signal "slipped through"; after it, it is
	 * the process reacting (its SIGTERM cleanup). */
	st = bpf_map_lookup_elem(&handled, &tgid);
	if (st) {
		if (st->start_time == leader_start_time(task)) {
			if (st->deliver_ns)
				__sync_fetch_and_add(&st->after_signal, 1);
			else
				__sync_fetch_and_add(&st->slipped, 1);
			return NULL;
		}
		/* A stale entry: the tgid was reused and the exit was missed. */
		release_slot(st);
		bpf_map_delete_elem(&handled, &tgid);
	}

	if (skip_mode == RP_SKIP_GLOBAL) {
		__u32 zero = 0;
		__u64 *count = bpf_map_lookup_elem(&global_hits, &zero);

		if (!count)
			return NULL;
		hit = __sync_fetch_and_add(count, 1) + 1;
	} else if (skip_count) {
		__u64 *count = bpf_map_lookup_elem(&skip_counts, &tgid);

		if (!count) {
			__u64 init = 0;

			bpf_map_update_elem(&skip_counts, &tgid, &init, BPF_NOEXIST);
			count = bpf_map_lookup_elem(&skip_counts, &tgid);
			if (!count)
				return NULL;
		}
		hit = __sync_fetch_and_add(count, 1) + 1;
	}
	if (hit <= skip_count)
		return NULL;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&lost_events, 1);
		return NULL;
	}

	now = bpf_ktime_get_ns();
	start = leader_start_time(task);

	/* What the kernel does with it, decided before it is marked handled so
	 * the `handled` entry carries its in-flight slot from the start. */
	flags = 0;
	if (vtgid == 1 || bpf_map_lookup_elem(&protected_tgids, &vtgid))
		flags = RP_F_PROTECTED;
	else if (action == RP_ACTION_KERNEL_SIGNAL)
		flags = (check_cred && !tool_may_signal(task)) || !take_signal_slot()
			? RP_F_DEFERRED : RP_F_KERNEL_SIGNAL;
	{
		struct rp_handled fresh = {
			.intercept_ns = now,
			.start_time = start,
			.hit = hit,
			.flags = flags == RP_F_KERNEL_SIGNAL ? RP_HF_IN_FLIGHT : 0,
			.ns_tgid = vtgid,
		};

		err = bpf_map_update_elem(&handled, &tgid, &fresh, BPF_NOEXIST);
		if (err)
			release_slot(&fresh);
	}
	if (err) {
		/* -EEXIST: another thread of this process won the race, so this
		 * call slipped; anything else: the map is full. */
		st = bpf_map_lookup_elem(&handled, &tgid);
		if (st)
			__sync_fetch_and_add(&st->slipped, 1);
		else
			__sync_fetch_and_add(&handled_full, 1);
		bpf_ringbuf_discard(e, 0);
		return NULL;
	}

	/*
	 * kernel-signal, first thing: the signal is queued to the whole thread
	 * group before this call returns to user space.  The return path checks
	 * for pending signals, so the caller runs no further user code -- makes
	 * no further call -- until the signal is delivered (its handler runs, or
	 * the default action kills it there).  Where the helper may not send
	 * directly (irqs or, since 6.13, preemption disabled: every hook here)
	 * it queues an irq_work, a self-interrupt taken as soon as interrupts
	 * are on; the return from that interrupt checks for signals too, so the
	 * effect is the same.  Only other threads of the process, already
	 * running elsewhere, can slip a call in before they are stopped.  Sent
	 * before the record is filled in: that interrupt is the slow part.
	 */
	e->signal_ret = flags == RP_F_KERNEL_SIGNAL ? bpf_send_signal(signal_nr) : 0;
	e->flags = flags;

	e->type = RP_EV_INTERCEPT;
	e->tgid = vtgid;
	e->pid = pidns_ino ? ns_tid(task) : (__u32)bpf_get_current_pid_tgid();
	e->uid = (__u32)bpf_get_current_uid_gid();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->syscall_nr = nr;
	e->hook = hook;
	e->ktime_ns = now;
	e->start_time = start;
	e->start_boottime = BPF_CORE_READ(task, group_leader, start_boottime);
	e->hit = hit;
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->buf_len = 0;
	e->_pad0 = 0;
	/* The exact identity for userspace's pid-reuse guard (64-bit: pidfs
	 * inode numbers are never reused within a boot). */
	e->pid_ino = 0;
	if (bpf_core_field_exists(struct pid, ino) && sizeof(long) == 8)
		e->pid_ino = BPF_CORE_READ(task, group_leader, thread_pid, ino);
	/* Reserved ring buffer space holds old records: leave no stale bytes. */
	__builtin_memset(e->buf, 0, sizeof(e->buf));
	return e;
}

/* A syscall's arguments from the caller's saved registers (kernel memory,
 * read with probe reads).  x86-64: di, si, dx, r10, r8, r9. */
static __always_inline void syscall_args(__u64 *args, struct pt_regs *regs)
{
	args[0] = BPF_CORE_READ(regs, di);
	args[1] = BPF_CORE_READ(regs, si);
	args[2] = BPF_CORE_READ(regs, dx);
	args[3] = BPF_CORE_READ(regs, r10);
	args[4] = BPF_CORE_READ(regs, r8);
	args[5] = BPF_CORE_READ(regs, r9);
}

/* Arguments are in e->args: copy the user buffer, publish. */
static __always_inline int intercept_finish(struct rp_intercept_event *e)
{
	__u32 i;

	for (i = 0; i < RP_NARGS; i++)
		if (i >= nargs)
			e->args[i] = 0;

	if (capture_len && buf_arg >= 0 && buf_arg < RP_NARGS) {
		__u64 n = capture_len;

		if (len_arg >= 0 && len_arg < RP_NARGS && e->args[len_arg] < n)
			n = e->args[len_arg];
		if (n > RP_BUF_MAX)
			n = RP_BUF_MAX;
		if (bpf_probe_read_user(e->buf, n, (const void *)e->args[buf_arg]) == 0)
			e->buf_len = n;
		else
			e->flags |= RP_F_BUF_FAULT;
	}

	bpf_ringbuf_submit(e, action == RP_ACTION_KERNEL_SIGNAL ? BPF_RB_NO_WAKEUP
							       : BPF_RB_FORCE_WAKEUP);
	return 0;
}

/* ---- call hooks ---- */

#if defined(RP_LSM_OBJECT)

/* rp_lsm: in intercept_lsm.bpf.c, which includes this file. */

#elif !defined(RP_FENTRY_OBJECT)

/* Every syscall entry.  ctx->args[0] is the caller's struct pt_regs,
 * ctx->args[1] the syscall number. */
SEC("raw_tracepoint/sys_enter")
int rp_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	struct rp_intercept_event *e;
	long nr = (long)ctx->args[1];

	if (syscall_nr >= 0 && nr != syscall_nr)
		return 0;
	if (compat_syscall(bpf_get_current_task_btf()))
		return 0;
	e = intercept_begin(RP_HOOK_RAW_TP, (__s32)nr);
	if (!e)
		return 0;
	syscall_args(e->args, (struct pt_regs *)ctx->args[0]);
	return intercept_finish(e);
}

/*
 * One syscall's tracepoint.  The section names sys_enter_write; userspace may
 * attach it to any syscalls/sys_enter_* tracepoint, all share this layout.
 * The arguments are fetched with a probe read rather than loaded from ctx:
 * the kernel refuses to attach (EACCES) a program whose direct ctx accesses
 * reach past the tracepoint's record, and a record only has as many slots
 * as its syscall has arguments (write: 3).  The perf glue hands BPF a
 * 64-byte copy of the record, so reading all six slots stays in bounds; the
 * ones past the syscall's arity hold junk, which `nargs` zeroes.
 */
SEC("tracepoint/syscalls/sys_enter_write")
int rp_sys_enter_tp(struct rp_sys_enter_record *ctx)
{
	struct rp_intercept_event *e;
	__s32 nr = ctx->nr;

	if (syscall_nr >= 0 && nr != syscall_nr)
		return 0;
	e = intercept_begin(RP_HOOK_TRACEPOINT, nr);
	if (!e)
		return 0;
	if (bpf_probe_read_kernel(e->args, sizeof(e->args), &ctx->args[0]))
		__builtin_memset(e->args, 0, sizeof(e->args));
	return intercept_finish(e);
}

/* Any kernel function, at any offset: the target is given at attach time.
 * args are the kernel calling convention's registers (di, si, dx, cx, r8,
 * r9), which hold the function's arguments only at offset 0. */
SEC("kprobe/ksys_write")
int rp_kprobe(struct pt_regs *ctx)
{
	struct rp_intercept_event *e;

	e = intercept_begin(RP_HOOK_KPROBE, syscall_nr);
	if (!e)
		return 0;
	if (args_in_regs) {
		syscall_args(e->args, (struct pt_regs *)ctx->di);
		return intercept_finish(e);
	}
	e->args[0] = ctx->di;
	e->args[1] = ctx->si;
	e->args[2] = ctx->dx;
	e->args[3] = ctx->cx;
	e->args[4] = ctx->r8;
	e->args[5] = ctx->r9;
	return intercept_finish(e);
}

#else /* RP_FENTRY_OBJECT */

/* fentry resolves its target (a BTF function) at LOAD time: userspace
 * replaces the section's ksys_write with the wanted function before loading.
 * bpf_get_func_arg() reads whatever arguments the target has, so one program
 * fits any target; missing ones stay 0. */
SEC("fentry/ksys_write")
int rp_fentry(void *ctx)
{
	struct rp_intercept_event *e;
	__u32 i;

	e = intercept_begin(RP_HOOK_FENTRY, syscall_nr);
	if (!e)
		return 0;
	if (args_in_regs) {
		__u64 regs = 0;

		bpf_get_func_arg(ctx, 0, &regs);
		syscall_args(e->args, (struct pt_regs *)regs);
		return intercept_finish(e);
	}
	for (i = 0; i < RP_NARGS; i++) {
		__u64 v = 0;

		bpf_get_func_arg(ctx, i, &v);
		e->args[i] = v;
	}
	return intercept_finish(e);
}

#endif /* RP_FENTRY_OBJECT */

/* ---- bookkeeping: signals and exit of handled processes ---- */

/* Emitted once per handled process and kind (first generate of signal_nr,
 * first generate of SIGKILL, first delivery). */
static __always_inline void emit_signal(__u32 kind, __u32 tgid, __u32 pid, int sig,
					 int result, __u32 group, __u64 now,
					 const struct rp_handled *st)
{
	struct rp_signal_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		__sync_fetch_and_add(&lost_events, 1);
		return;
	}
	e->type = RP_EV_SIGNAL;
	e->tgid = tgid;
	e->pid = pid;
	e->kind = kind;
	e->sig = sig;
	e->result = result;
	e->sender_tgid = pidns_ino ? ns_tgid(bpf_get_current_task_btf())
				   : bpf_get_current_pid_tgid() >> 32;
	e->group = group;
	e->ktime_ns = now;
	e->intercept_ns = st->intercept_ns;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, kind == RP_SIG_DELIVER ? RP_WAKE : BPF_RB_NO_WAKEUP);
}

/* TP_PROTO(int sig, struct kernel_siginfo *info, struct task_struct *task,
 *          int group, int result): runs in the sender's context. */
SEC("raw_tracepoint/signal_generate")
int rp_sig_generate(struct bpf_raw_tracepoint_args *ctx)
{
	int sig = (int)ctx->args[0];
	struct task_struct *task = (struct task_struct *)ctx->args[2];
	struct rp_handled *st;
	__u32 tgid;
	__u64 now;
	int first = 0;

	if (sig != (int)signal_nr && sig != SIGKILL)
		return 0;
	tgid = BPF_CORE_READ(task, tgid);
	st = bpf_map_lookup_elem(&handled, &tgid);
	if (!st)
		return 0;
	now = bpf_ktime_get_ns();
	if (sig == (int)signal_nr && __sync_val_compare_and_swap(&st->signal_ns, 0, now) == 0)
		first = 1;
	if (sig == SIGKILL && __sync_val_compare_and_swap(&st->kill_ns, 0, now) == 0)
		first = 1;
	if (first)
		emit_signal(RP_SIG_GENERATE, st->ns_tgid, ns_tid(task), sig,
			    (int)ctx->args[4], (__u32)ctx->args[3], now, st);
	return 0;
}

/* TP_PROTO(int sig, struct kernel_siginfo *info, struct k_sigaction *ka):
 * runs in the receiving thread, in get_signal(), as it takes the signal.
 * A fatal signal without handler shows up here as SIGKILL (the kernel turns
 * it into a group kill when it is queued). */
SEC("raw_tracepoint/signal_deliver")
int rp_sig_deliver(struct bpf_raw_tracepoint_args *ctx)
{
	int sig = (int)ctx->args[0];
	__u64 pid_tgid, now;
	struct rp_handled *st;
	__u32 tgid;

	if (sig != (int)signal_nr && sig != SIGKILL)
		return 0;
	pid_tgid = bpf_get_current_pid_tgid();
	tgid = pid_tgid >> 32;
	st = bpf_map_lookup_elem(&handled, &tgid);
	if (!st)
		return 0;
	now = bpf_ktime_get_ns();
	if (__sync_val_compare_and_swap(&st->deliver_ns, 0, now) != 0)
		return 0;
	st->deliver_sig = sig;
	emit_signal(RP_SIG_DELIVER, st->ns_tgid,
		    pidns_ino ? ns_tid(bpf_get_current_task_btf()) : (__u32)pid_tgid,
		    sig, 0, 0, now, st);
	return 0;
}

/*
 * TP_PROTO(struct task_struct *p[, bool group_dead]) in do_exit(), after the
 * thread has decremented signal->live: live == 0 means this is the last
 * thread of the process, i.e. the process has exited (its pidfd becomes
 * readable a little later, in exit_notify()).  task->exit_code already holds
 * the group's wait status.  Two threads exiting together can both read 0;
 * deleting the `handled` entry decides which one reports.
 */
SEC("raw_tracepoint/sched_process_exit")
int rp_proc_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx->args[0];
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	int per_process_skip = skip_mode == RP_SKIP_PER_PROCESS && skip_count;
	struct rp_exit_event *e;
	struct rp_handled *st, copy;
	__u64 now;

	st = bpf_map_lookup_elem(&handled, &tgid);
	if (!st && !per_process_skip)
		return 0;
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	now = bpf_ktime_get_ns();
	if (per_process_skip)
		bpf_map_delete_elem(&skip_counts, &tgid);
	if (!st)
		return 0;
	copy = *st;
	if (bpf_map_delete_elem(&handled, &tgid) != 0)
		return 0;
	release_slot(&copy);

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&lost_events, 1);
		return 0;
	}
	e->type = RP_EV_EXIT;
	e->tgid = copy.ns_tgid;
	e->pid = pidns_ino ? ns_tid(bpf_get_current_task_btf()) : (__u32)pid_tgid;
	e->exit_code = BPF_CORE_READ(task, exit_code);
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->exit_ns = now;
	e->intercept_ns = copy.intercept_ns;
	e->signal_ns = copy.signal_ns;
	e->kill_ns = copy.kill_ns;
	e->deliver_ns = copy.deliver_ns;
	e->slipped = copy.slipped;
	e->after_signal = copy.after_signal;
	e->hit = copy.hit;
	e->start_time = copy.start_time;
	e->deliver_sig = copy.deliver_sig;
	e->_pad0 = 0;
	bpf_ringbuf_submit(e, RP_WAKE);
	return 0;
}

/* GPL-compatible: bpf_probe_read_*() and bpf_send_signal() are GPL-only. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";
