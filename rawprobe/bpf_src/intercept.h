/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * Records shared by intercept.bpf.c and the Python side of rawprobe.
 *
 * Every record starts with a __u32 `type` (enum rp_event_type) so one ring
 * buffer carries all of them.  Layouts are fixed: explicit sizes, natural
 * alignment, explicit padding, little-endian (x86-64).  The byte offsets are
 * written next to each field and checked by _Static_assert in
 * intercept.bpf.c; Python's struct formats (all "<", no implicit padding):
 *
 *   rp_intercept_event  "<IIII16siIIi6QQQQQQII64sQ"       216 bytes
 *   rp_signal_event     "<IIIIiiIIQQ16s"                   64 bytes
 *   rp_exit_event       "<IIIi16sQQQQQQQQQiI"              112 bytes
 *   rp_handled          "<QQQQQQQQiIII"                     80 bytes
 *   rp_deny_event       "<IIIiQQ6Q16siI"                   104 bytes
 *
 * Pids: every tgid, pid and sender_tgid in a record is the process's number in
 * the tool's pid namespace (the .rodata `pidns_ino`; the initial namespace when
 * 0), so the tool in a container of its own reports and signals by the pids it
 * sees; a process it cannot see is never intercepted.  Maps stay keyed by the
 * initial namespace's tgid, which every task has.
 *
 * Clock: every *_ns field named ktime/exit/intercept/signal/kill/deliver is
 * bpf_ktime_get_ns(), i.e. CLOCK_MONOTONIC, comparable with
 * time.monotonic_ns().  start_time is the thread-group leader's
 * task->start_time (CLOCK_MONOTONIC ns); start_boottime is its
 * task->start_boottime (CLOCK_BOOTTIME ns), the value /proc/PID/stat field 22
 * shows divided by 1e9/USER_HZ (integer division by 10**7 for USER_HZ 100).
 */
#ifndef RAWPROBE_INTERCEPT_H
#define RAWPROBE_INTERCEPT_H

#include <linux/types.h>

#define RP_COMM_LEN 16
#define RP_NARGS 6
#define RP_BUF_MAX 64

enum rp_event_type {
	RP_EV_INTERCEPT = 1,	/* struct rp_intercept_event */
	RP_EV_SIGNAL = 2,	/* struct rp_signal_event */
	RP_EV_EXIT = 3,		/* struct rp_exit_event */
	RP_EV_DENY = 4,		/* struct rp_deny_event (intercept_lsm.bpf.c) */
};

/* Which program produced an intercept event. */
enum rp_hook {
	RP_HOOK_RAW_TP = 1,	/* raw_tracepoint/sys_enter */
	RP_HOOK_TRACEPOINT = 2,	/* tracepoint/syscalls/sys_enter_* */
	RP_HOOK_KPROBE = 3,	/* kprobe/SYMBOL[+OFFSET] */
	RP_HOOK_FENTRY = 4,	/* fentry/FUNCTION (intercept_fentry.bpf.o) */
	RP_HOOK_LSM = 5,	/* lsm/HOOK (intercept_lsm.bpf.o) */
	RP_HOOK_FMOD_RET = 6,	/* fmod_ret/security_HOOK (intercept_lsm.bpf.o) */
};

/* Value of the .rodata variable `action`. */
enum rp_action {
	RP_ACTION_REPORT = 0,		/* record only, nobody is signalled */
	RP_ACTION_SIGNAL = 1,		/* userspace sends the signal */
	RP_ACTION_KERNEL_SIGNAL = 2,	/* bpf_send_signal(signal_nr) at the call */
};

/* Value of the .rodata variable `skip_mode`. */
enum rp_skip_mode {
	RP_SKIP_PER_PROCESS = 0,	/* each tgid lets skip_count calls through */
	RP_SKIP_GLOBAL = 1,		/* skip_count matching calls in total */
};

/* Value of the .rodata variable `filter_cgroup`. */
enum rp_cgroup_mode {
	RP_CGROUP_OFF = 0,
	RP_CGROUP_EXACT = 1,	/* caller's cgroup v2 id == target_cgroup_id */
	RP_CGROUP_SUBTREE = 2,	/* ancestor at target_cgroup_level == target_cgroup_id */
};

/* rp_signal_event.kind */
enum rp_signal_kind {
	RP_SIG_GENERATE = 1,	/* signal/signal_generate: queued to the process */
	RP_SIG_DELIVER = 2,	/* signal/signal_deliver: taken by one of its threads */
};

/* rp_intercept_event.flags */
#define RP_F_KERNEL_SIGNAL 0x1	/* bpf_send_signal() was called; see signal_ret */
#define RP_F_BUF_FAULT 0x2	/* reading the user buffer failed; buf_len is 0 */
#define RP_F_PROTECTED 0x4	/* tgid 1 or in protected_tgids: kernel-signal withheld */
#define RP_F_DEFERRED 0x8	/* kernel-signal, but the kernel left this one to the tool:
				 * max_in_flight or max_signals reached, or the tool's
				 * credentials would not let it signal this process */
#define RP_F_DENIED 0x10	/* the call was made to fail: returned deny_ret
				 * (intercept_lsm.bpf.c) */

/* rp_handled.flags */
#define RP_HF_IN_FLIGHT 0x1	/* counted in kernel_in_flight until its exit */

struct rp_intercept_event {
	__u32 type;		/*   0  RP_EV_INTERCEPT */
	__u32 tgid;		/*   4 */
	__u32 pid;		/*   8  thread id of the caller */
	__u32 uid;		/*  12  real uid, as seen from the initial user ns */
	char comm[RP_COMM_LEN];	/*  16  caller thread's comm, NUL padded */
	__s32 syscall_nr;	/*  32  -1 for kprobe and fentry hooks */
	__u32 hook;		/*  36  enum rp_hook */
	__u32 flags;		/*  40  RP_F_* */
	__s32 signal_ret;	/*  44  bpf_send_signal() return, 0 unless RP_F_KERNEL_SIGNAL */
	__u64 args[RP_NARGS];	/*  48  syscall args (raw_tp/tracepoint) or function args */
	__u64 ktime_ns;		/*  96  bpf_ktime_get_ns() at the call */
	__u64 start_time;	/* 104  group leader task->start_time */
	__u64 start_boottime;	/* 112  group leader task->start_boottime */
	__u64 hit;		/* 120  which matching call this was (1-based) */
	__u64 cgroup_id;	/* 128  caller's cgroup v2 id */
	__u32 buf_len;		/* 136  valid bytes in buf */
	__u32 _pad0;		/* 140 */
	__u8 buf[RP_BUF_MAX];	/* 144  first bytes of the user buffer (write-like calls) */
	__u64 pid_ino;		/* 208  inode number of the group leader's struct pid in
				 *      pidfs (what fstat() of its pidfd shows, 64-bit
				 *      kernels 6.9+); 0 where the kernel has none */
};				/* 216 */

struct rp_signal_event {
	__u32 type;		/*   0  RP_EV_SIGNAL */
	__u32 tgid;		/*   4  the handled process */
	__u32 pid;		/*   8  thread the signal was queued to / delivered to */
	__u32 kind;		/*  12  enum rp_signal_kind */
	__s32 sig;		/*  16 */
	__s32 result;		/*  20  generate: TRACE_SIGNAL_* (0 delivered, 1 ignored,
				 *      2 already pending, 3 overflow, 4 lost info); deliver: 0 */
	__u32 sender_tgid;	/*  24  generate: tgid of the sender (0: outside the tool's
				 *      pid namespace, e.g. the kernel); deliver: == tgid */
	__u32 group;		/*  28  generate: 1 if sent to the whole thread group */
	__u64 ktime_ns;		/*  32 */
	__u64 intercept_ns;	/*  40  ktime_ns of the intercept event */
	char comm[RP_COMM_LEN];	/*  48  generate: sender's comm; deliver: receiver's */
};				/*  64 */

struct rp_exit_event {
	__u32 type;		/*   0  RP_EV_EXIT */
	__u32 tgid;		/*   4 */
	__u32 pid;		/*   8  the last thread to exit */
	__s32 exit_code;	/*  12  wait(2) status: exit status << 8, or the signal
				 *      number (| 0x80 if it dumped core) */
	char comm[RP_COMM_LEN];	/*  16  comm of the last thread */
	__u64 exit_ns;		/*  32  when the last thread passed sched_process_exit */
	__u64 intercept_ns;	/*  40 */
	__u64 signal_ns;	/*  48  first signal_generate of signal_nr, 0 if none */
	__u64 kill_ns;		/*  56  first signal_generate of SIGKILL, 0 if none */
	__u64 deliver_ns;	/*  64  first signal_deliver of signal_nr or SIGKILL, 0 if none */
	__u64 slipped;		/*  72  matching calls after the intercept, before deliver_ns */
	__u64 after_signal;	/*  80  matching calls after deliver_ns (e.g. its cleanup) */
	__u64 hit;		/*  88  hit number of the intercepted call */
	__u64 start_time;	/*  96  group leader task->start_time */
	__s32 deliver_sig;	/* 104  signal seen by signal_deliver (SIGKILL for a fatal
				 *      signal without handler, the kernel converts it) */
	__u32 _pad0;		/* 108 */
};				/* 112 */

/* Value of the `handled` hash map (key: __u32 tgid in the initial pid
 * namespace).  Deleted at exit. */
struct rp_handled {
	__u64 intercept_ns;	/*   0 */
	__u64 start_time;	/*   8  to spot a stale entry after tgid reuse */
	__u64 signal_ns;	/*  16 */
	__u64 kill_ns;		/*  24 */
	__u64 deliver_ns;	/*  32 */
	__u64 slipped;		/*  40 */
	__u64 after_signal;	/*  48 */
	__u64 hit;		/*  56 */
	__s32 deliver_sig;	/*  64 */
	__u32 flags;		/*  68  RP_HF_* */
	__u32 ns_tgid;		/*  72  the tgid in the tool's pid namespace, which
				 *      its signal and exit records report */
	__u32 _pad0;		/*  76 */
};				/*  80 */

/* A later call of a process being denied (the first one is its intercept
 * event, flagged RP_F_DENIED): one per call the deny path refused. */
struct rp_deny_event {
	__u32 type;		/*   0  RP_EV_DENY */
	__u32 tgid;		/*   4 */
	__u32 pid;		/*   8  thread id of the caller */
	__s32 syscall_nr;	/*  12  the syscall the hook ran in, -1 outside one */
	__u64 ktime_ns;		/*  16 */
	__u64 start_time;	/*  24  group leader task->start_time (identity) */
	__u64 args[RP_NARGS];	/*  32  the syscall's arguments */
	char comm[RP_COMM_LEN];	/*  80  caller thread's comm */
	__s32 ret;		/*  96  what the call was made to return: -errno */
	__u32 hook;		/* 100  enum rp_hook */
};				/* 104 */

#endif /* RAWPROBE_INTERCEPT_H */
