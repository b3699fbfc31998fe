// SPDX-License-Identifier: GPL-2.0
/* Test object for rawprobe's ELF -> spec layer: one BTF-defined map of every
 * type rawprobe creates, plus map-in-map and prog-array initial values. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct stats {
	__u64 packets;
	__u64 bytes;
	__u32 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 128);
	__type(key, __u32);
	__type(value, __u64);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} hash_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} array_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 32);
	__type(key, __u64);
	__type(value, __u32);
} percpu_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stats);
} percpu_array SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct stats);
	__type(value, __u8);
	__uint(numa_node, 0);
} lru_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} ringbuf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} perf_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_BLOOM_FILTER);
	__uint(max_entries, 100);
	__type(value, __u32);
	__uint(map_extra, 3);
} bloom SEC(".maps");

int tail_target(void *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, sizeof(__u32));
	__array(values, int (void *));
} jump_table SEC(".maps") = {
	.values = { [2] = (void *)&tail_target },
};

struct inner_map {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
};

struct inner_map inner_a SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 3);
	__type(key, __u32);
	__array(values, struct inner_map);
} outer SEC(".maps") = {
	.values = { [1] = &inner_a },
};

SEC("tp/sched/sched_process_exec")
int tail_target(void *ctx)
{
	return 1;
}

SEC("tp/sched/sched_process_exec")
int use_maps(void *ctx)
{
	__u32 k = 0, v32 = 1;
	__u64 k64 = 2, v64 = 3;
	struct stats st = {}, *s;
	__u8 b = 1;
	void *inner;

	bpf_map_update_elem(&hash_map, &k, &v64, BPF_ANY);
	s = bpf_map_lookup_elem(&array_map, &k);
	if (s)
		s->packets++;
	bpf_map_update_elem(&percpu_hash, &k64, &v32, BPF_ANY);
	s = bpf_map_lookup_elem(&percpu_array, &k);
	if (s)
		s->bytes += 10;
	bpf_map_update_elem(&lru_hash, &st, &b, BPF_ANY);
	bpf_ringbuf_output(&ringbuf, &st, sizeof(st), 0);
	bpf_perf_event_output(ctx, &perf_events, BPF_F_CURRENT_CPU, &st, sizeof(st));
	bpf_map_push_elem(&bloom, &v32, 0);
	inner = bpf_map_lookup_elem(&outer, &k);
	if (inner)
		bpf_map_lookup_elem(inner, &k);
	bpf_tail_call(ctx, &jump_table, 2);
	return 0;
}
