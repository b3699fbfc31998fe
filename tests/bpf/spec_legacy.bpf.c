// SPDX-License-Identifier: GPL-2.0
/* Test object: a legacy SEC("maps") struct bpf_map_def, which rawprobe rejects. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct bpf_map_def_legacy {
	unsigned int type;
	unsigned int key_size;
	unsigned int value_size;
	unsigned int max_entries;
	unsigned int map_flags;
};

struct bpf_map_def_legacy old_map SEC("maps") = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = 4,
	.value_size = 8,
	.max_entries = 1,
};

SEC("socket")
int sock(void *ctx)
{
	__u32 k = 0;

	return bpf_map_lookup_elem(&old_map, &k) != 0;
}

char LICENSE[] SEC("license") = "GPL";
