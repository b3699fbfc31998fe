// SPDX-License-Identifier: GPL-2.0
/* Loader test object: global data set before load and read after a trigger,
 * static and global subprograms, a bpf_loop callback, and maps written by the
 * program, all on a tracepoint the test triggers with getppid().
 *
 *   clang-19 -g -O2 -target bpf -D__TARGET_ARCH_x86 \
 *       -I/usr/include/x86_64-linux-gnu -c load_basic.bpf.c -o load_basic.bpf.o
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

const volatile __u32 target_tgid = 0;      /* .rodata: set before load */
const volatile __u64 multiplier = 3;       /* .rodata: default kept */
__u32 base_value = 5;                      /* .data: initialised, writable after load */
__u64 hits;                                /* .bss */
__u64 loop_sum;
__u64 static_result;
__u64 global_result;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} per_tgid SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} percpu_hits SEC(".maps");

static __noinline __u64 scale(__u64 x)
{
	return x * multiplier;
}

/* A global function is verified on its own: scalar in, scalar out. */
__noinline __u64 add_base(__u64 x)
{
	return x + base_value;
}

static long sum_cb(__u32 index, void *ctx)
{
	*(__u64 *)ctx += index;
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int count_getppid(void *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 zero = 0;
	__u64 one = 1, *v, sum = 0;

	if (tgid != target_tgid)
		return 0;
	__sync_fetch_and_add(&hits, 1);
	v = bpf_map_lookup_elem(&per_tgid, &tgid);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&per_tgid, &tgid, &one, BPF_NOEXIST);
	v = bpf_map_lookup_elem(&percpu_hits, &zero);
	if (v)
		*v += 1;
	bpf_loop(10, sum_cb, &sum, 0);            /* 0 + 1 + ... + 9 = 45 */
	loop_sum = sum;
	static_result = scale(hits);
	global_result = add_base(hits);
	return 0;
}

/* Rejected by the verifier: dereferences a scalar. */
SEC("raw_tracepoint/sys_enter")
int bad_deref(void *ctx)
{
	return *(int *)(long)bpf_get_prandom_u32();
}

char LICENSE[] SEC("license") = "GPL";
