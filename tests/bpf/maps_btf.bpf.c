// SPDX-License-Identifier: GPL-2.0
/* Loader test object: maps declared the way third-party tools declare them,
 * with __type(key, ...) / __type(value, ...) also on map types whose kernel
 * side takes no BTF (perf-event and cgroup arrays, stack traces, queues,
 * device, CPU, XDP-socket and socket maps).  libbpf creates those without
 * BTF type ids; the kernel refuses them otherwise (ENOTSUPP).  Hash and array
 * maps beside them keep their BTF.  One program uses a few of them on a
 * tracepoint the test triggers with getppid().
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* vmlinux.h's names for the fixed-size integers */
typedef __u32 u32;
typedef __u64 u64;

struct event {
	u32 tgid;
	u32 seq;
};

const volatile u32 target_tgid = 0;
u32 seq;

/* the common convention for perf outputs and cgroup filters */
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__type(key, u32);
	__type(value, u32);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u32);
} cgroup_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 16);
	__type(key, u32);
	__type(value, u64[127]);
} stacks SEC(".maps");

/* keyless: a value type only */
struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 8);
	__type(value, struct event);
} queue SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK);
	__uint(max_entries, 8);
	__type(value, u64);
} lifo SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 4);
	__type(key, u32);
	__type(value, u32);
} devs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 4);
	__type(key, u32);
	__type(value, struct bpf_devmap_val);
} devs_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_CPUMAP);
	__uint(max_entries, 2);
	__type(key, u32);
	__type(value, struct bpf_cpumap_val);
} cpus SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 4);
	__type(key, u32);
	__type(value, u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 4);
	__type(key, u32);
	__type(value, u32);
} socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 4);
	__type(key, u32);
	__type(value, u64);
} sock_hash SEC(".maps");

/* these take BTF, and keep it */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, u32);
	__type(value, struct event);
} by_tgid SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 2);
	__type(key, u32);
	__type(value, u32);
} jumps SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
	struct event e = {};
	u64 one = 1;

	e.tgid = bpf_get_current_pid_tgid() >> 32;
	if (e.tgid != target_tgid)
		return 0;
	e.seq = seq++;
	bpf_map_push_elem(&queue, &e, 0);
	bpf_map_push_elem(&lifo, &one, 0);
	bpf_map_update_elem(&by_tgid, &e.tgid, &e, BPF_ANY);
	bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &e, sizeof(e));
	bpf_tail_call(ctx, &jumps, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
