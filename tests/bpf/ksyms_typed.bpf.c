// SPDX-License-Identifier: GPL-2.0
/* Loader test object: a typed __ksym, the per-CPU runqueues, read with
 * bpf_per_cpu_ptr() and bpf_this_cpu_ptr() (5.10+).  The kernel finds the
 * variable through kallsyms, which lists data symbols only with
 * CONFIG_KALLSYMS_ALL: tested in the VM.  get_cpus (raw_tp, run with
 * BPF_PROG_TEST_RUN) stores the cpu field of CPU ctx->args[0]'s runqueue and
 * of this CPU's, with the CPU it runs on.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

typedef __u32 u32;
typedef __s64 s64;

struct rq {
	int cpu;
} __attribute__((preserve_access_index));

extern const struct rq runqueues __ksym;

struct results {
	s64 cpu_of_arg;
	s64 cpu_of_this;
	s64 this_cpu;
};

struct results results;

SEC("raw_tp/sys_enter")
int get_cpus(struct bpf_raw_tracepoint_args *ctx)
{
	const struct rq *rq = bpf_per_cpu_ptr(&runqueues, (u32)ctx->args[0]);

	results.cpu_of_arg = rq ? rq->cpu : -1;
	results.cpu_of_this = ((const struct rq *)bpf_this_cpu_ptr(&runqueues))->cpu;
	results.this_cpu = bpf_get_smp_processor_id();
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
