// SPDX-License-Identifier: GPL-2.0
/* Loader test object: BPF iterators.  dump_task (iter/task) writes one line
 * "<tgid> <pid> <comm>" per task; dump_maps (iter/bpf_map) one line
 * "<id> <name> <max_entries>" per BPF map.  Read back through the
 * iterator's file, beside libbpf's.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

typedef __u32 u32;
typedef __u64 u64;

/* the kernel's iterator contexts, as vmlinux.h declares them */
struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
	u64 session_id;
	u64 seq_num;
} __attribute__((preserve_access_index));

struct task_struct {
	int pid;
	int tgid;
	char comm[16];
} __attribute__((preserve_access_index));

struct bpf_iter__task {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
} __attribute__((preserve_access_index));

struct bpf_map {
	u32 id;
	char name[16];
	u32 max_entries;
} __attribute__((preserve_access_index));

struct bpf_iter__bpf_map {
	struct bpf_iter_meta *meta;
	struct bpf_map *map;
} __attribute__((preserve_access_index));

/* a map of this object, for dump_maps to find */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 42);
	__type(key, u32);
	__type(value, u64);
} iter_marker SEC(".maps");

SEC("iter/task")
int dump_task(struct bpf_iter__task *ctx)
{
	struct task_struct *t = ctx->task;

	if (!t)
		return 0;
	BPF_SEQ_PRINTF(ctx->meta->seq, "%d %d %s\n", t->tgid, t->pid, t->comm);
	return 0;
}

SEC("iter/bpf_map")
int dump_maps(struct bpf_iter__bpf_map *ctx)
{
	struct bpf_map *m = ctx->map;

	if (!m)
		return 0;
	BPF_SEQ_PRINTF(ctx->meta->seq, "%u %s %u\n", m->id, m->name, m->max_entries);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
