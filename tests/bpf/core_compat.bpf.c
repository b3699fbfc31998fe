// SPDX-License-Identifier: GPL-2.0
/* CO-RE's compatibility rules against the running kernel, each on both sides
 * of its line (libbpf is the oracle: tests/test_core.py compares every patched
 * instruction with what `bpftool prog loadall -d` reports):
 *   - TYPE_EXISTS / TYPE_SIZE ("compatible"): function prototypes by arity,
 *     parameter and return kinds; arrays by element; pointers by target;
 *   - TYPE_MATCHES ("matches"): the same plus names, int size and signedness,
 *     enum size and enumerators, array lengths, struct/union/forward behind a
 *     pointer;
 *   - FIELD_EXISTS on members whose types differ from the kernel's: struct vs
 *     array, enums by name (an anonymous one matches any).
 * Kernel types are redeclared here with flavour suffixes (run in tests/bpf):
 *   clang-19 -g -O2 -target bpf -D__TARGET_ARCH_x86 \
 *       -I/usr/include/x86_64-linux-gnu -fdebug-prefix-map=$PWD=. \
 *       -c core_compat.bpf.c -o core_compat.bpf.o
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct callback_head___any;
struct cpumask___any { unsigned long bits[4]; };

/* the kernel's: void (*)(void *info) */
typedef void (*smp_call_func_t)(void *info);
typedef void (*smp_call_func_t___arity)(void *info, int more);
typedef void (*smp_call_func_t___param)(int info);
typedef int (*smp_call_func_t___ret)(void *info);
/* the kernel's: void (*)(struct callback_head *): any struct behind a pointer */
typedef void (*rcu_callback_t___other)(struct callback_head___any *head);
/* the kernel's: u64 (*)(u64, u64, u64, u64, u64): ints of any size */
typedef __u32 (*bpf_callback_t___narrow)(__u32, __u32, __u32, __u32, __u32);
/* the kernel's: struct cpumask [1] */
typedef struct cpumask___any cpumask_var_t[1];
typedef int cpumask_var_t___int[1];
typedef struct cpumask___any cpumask_var_t___len[2];

/* TYPE_MATCHES: the kernel's struct rlimit { __kernel_ulong_t rlim_cur, rlim_max; } */
struct rlimit___same { unsigned long rlim_cur; };
struct rlimit___size { unsigned int rlim_cur; };
struct rlimit___sign { long rlim_cur; };
struct rlimit___extra { unsigned long rlim_cur; unsigned long rlim_extra; };
union rlimit___union { unsigned long rlim_cur; };
/* the kernel's enum pid_type: 4 bytes, PIDTYPE_PID..PIDTYPE_MAX */
enum pid_type___sub { PIDTYPE_TGID___sub = 1, PIDTYPE_SID___sub = 3 };
enum pid_type___more { A___more, B___more, C___more, D___more, E___more, F___more };
enum pid_type___big { PIDTYPE_PID___big = 0, PIDTYPE_MAX___big = 0x100000000ULL };
/* the kernel's struct css_set { ...; struct cgroup *dfl_cgrp; ... } */
struct cgroup;                         /* a forward, behind a pointer */
union cgroup___u;
struct css_set___fwd { struct cgroup *dfl_cgrp; };
struct css_set___union { union cgroup___u *dfl_cgrp; };
struct css_set___int { int dfl_cgrp; };
union cgroup___cu { int level; };      /* complete, but a union: the kernel's is a struct */
struct css_set___cunion { union cgroup___cu *dfl_cgrp; };
/* the kernel's struct signal_struct { ...; struct pid *pids[PIDTYPE_MAX]; ... } */
struct pid;
struct signal_struct___pids4 { struct pid *pids[4]; };
struct signal_struct___pids3 { struct pid *pids[3]; };
/* the kernel's struct task_struct { ...; char comm[16]; ... } */
struct task_struct___comm { char comm[16]; };
struct task_struct___short { char comm[15]; };

/* FIELD_EXISTS: the kernel's struct signal_struct { ...; struct rlimit rlim[16]; } */
struct rlimit { unsigned long rlim_max; };
struct signal_struct___struct { struct rlimit rlim; } __attribute__((preserve_access_index));
struct signal_struct___array { struct rlimit rlim[16]; } __attribute__((preserve_access_index));
/* the kernel's struct bpf_prog { ...; enum bpf_prog_type type; ... } */
enum bpf_prog_type___x { BPF_PROG_TYPE_X___x };
enum other_enum { OTHER_A };
struct bpf_prog___flavour { enum bpf_prog_type___x type; } __attribute__((preserve_access_index));
struct bpf_prog___other { enum other_enum type; } __attribute__((preserve_access_index));
struct bpf_prog___anon { enum { ANON_A } type; } __attribute__((preserve_access_index));

__u64 sink[64];

SEC("raw_tracepoint/sys_enter")
int core_compat(void *ctx)
{
	struct signal_struct___struct *s1 = ctx;
	struct signal_struct___array *s2 = ctx;
	struct bpf_prog___flavour *p1 = ctx;
	struct bpf_prog___other *p2 = ctx;
	struct bpf_prog___anon *p3 = ctx;

	sink[0] = bpf_core_type_exists(smp_call_func_t);
	sink[1] = bpf_core_type_exists(smp_call_func_t___arity);
	sink[2] = bpf_core_type_exists(smp_call_func_t___param);
	sink[3] = bpf_core_type_exists(smp_call_func_t___ret);
	sink[4] = bpf_core_type_exists(rcu_callback_t___other);
	sink[5] = bpf_core_type_exists(bpf_callback_t___narrow);
	sink[6] = bpf_core_type_size(smp_call_func_t);
	sink[7] = bpf_core_type_exists(cpumask_var_t);
	sink[8] = bpf_core_type_exists(cpumask_var_t___int);
	sink[9] = bpf_core_type_size(cpumask_var_t___len);

	sink[10] = bpf_core_type_matches(smp_call_func_t);
	sink[11] = bpf_core_type_matches(smp_call_func_t___arity);
	sink[12] = bpf_core_type_matches(smp_call_func_t___param);
	sink[13] = bpf_core_type_matches(smp_call_func_t___ret);
	sink[14] = bpf_core_type_matches(rcu_callback_t___other);
	sink[15] = bpf_core_type_matches(bpf_callback_t___narrow);
	sink[16] = bpf_core_type_matches(cpumask_var_t);
	sink[17] = bpf_core_type_matches(cpumask_var_t___len);
	sink[18] = bpf_core_type_matches(struct rlimit___same);
	sink[19] = bpf_core_type_matches(struct rlimit___size);
	sink[20] = bpf_core_type_matches(struct rlimit___sign);
	sink[21] = bpf_core_type_matches(struct rlimit___extra);
	sink[22] = bpf_core_type_matches(union rlimit___union);
	sink[23] = bpf_core_type_matches(enum pid_type___sub);
	sink[24] = bpf_core_type_matches(enum pid_type___more);
	sink[25] = bpf_core_type_matches(enum pid_type___big);
	sink[26] = bpf_core_type_matches(struct css_set___fwd);
	sink[27] = bpf_core_type_matches(struct css_set___union);
	sink[28] = bpf_core_type_matches(struct css_set___int);
	sink[29] = bpf_core_type_matches(struct task_struct___comm);
	sink[30] = bpf_core_type_matches(struct task_struct___short);
	sink[31] = bpf_core_type_matches(struct css_set___cunion);
	sink[32] = bpf_core_type_matches(struct signal_struct___pids4);
	sink[33] = bpf_core_type_matches(struct signal_struct___pids3);

	sink[40] = bpf_core_field_exists(s1->rlim);
	sink[41] = bpf_core_field_exists(s2->rlim);
	sink[42] = bpf_core_field_exists(p1->type);
	sink[43] = bpf_core_field_exists(p2->type);
	sink[44] = bpf_core_field_exists(p3->type);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
