// SPDX-License-Identifier: GPL-2.0
/* Loader test object: maps pinned by name (__uint(pinning, LIBBPF_PIN_BY_NAME)),
 * as tools that share a map between loads or between programs declare them.
 * pinned_counts, pinned_slots, pinned_events, pinned_outer and pinned_jumps
 * are pinned; private_counts and slot_a are not.  bump() adds ctx->args[1]
 * to slot ctx->args[0] of each counter map, then tail-calls tail() through
 * pinned_jumps; it is run with BPF_PROG_TEST_RUN, so a test can run libbpf's
 * copy of it too.
 * pinning_mismatch.bpf.c builds the same object with a different
 * max_entries, as a newer version of a tool might.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#ifndef PINNED_MAX_ENTRIES
#define PINNED_MAX_ENTRIES 16
#endif

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PINNED_MAX_ENTRIES);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pinned_counts SEC(".maps");

/* a second pinned map, of another type, with map_flags */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pinned_slots SEC(".maps");

/* max_entries 0: one slot per possible CPU, made so at creation */
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pinned_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} private_counts SEC(".maps");

/* Pinned maps with initial slots: a reused program array gets this load's
 * programs (as libbpf fills it), a reused map of maps keeps its own slots. */
struct slot {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} slot_a SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct slot);
} pinned_outer SEC(".maps") = {
	.values = { [0] = &slot_a },
};

int tail(struct bpf_raw_tracepoint_args *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, int (void *));
} pinned_jumps SEC(".maps") = {
	.values = { [0] = (void *)&tail },
};

static void add(void *map, __u32 key, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(map, &key);

	if (v)
		__sync_fetch_and_add(v, n);
	else
		bpf_map_update_elem(map, &key, &n, BPF_NOEXIST);
}

SEC("raw_tp/sys_enter")
int bump(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 key = ctx->args[0];
	__u64 n = ctx->args[1];
	__u64 *slot;

	add(&pinned_counts, key, n);
	add(&private_counts, key, n);
	slot = bpf_map_lookup_elem(&pinned_slots, &key);
	if (slot)
		__sync_fetch_and_add(slot, n);
	bpf_tail_call(ctx, &pinned_jumps, 0);
	return 0;
}

/* reached through pinned_jumps: counts in private_counts under key + 100 */
SEC("raw_tp/sys_enter")
int tail(struct bpf_raw_tracepoint_args *ctx)
{
	add(&private_counts, ctx->args[0] + 100, ctx->args[1]);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
