// SPDX-License-Identifier: GPL-2.0
/* Test object for rawprobe's ELF -> spec layer (parsed only, never loaded by
 * the spec tests): several programs in one section, static and global
 * subprograms in .text reached directly and transitively, a bpf_loop callback,
 * CO-RE relocations in a program and in a subprogram, and global data in
 * every kind of section.  UAPI headers only. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

/* .rodata: constant configuration, set before load */
const volatile int target_pid = 0;
const volatile char target_comm[16] = "init";
const volatile long long neg_default = -5;
const volatile unsigned char small_u8 = 7;
const volatile __s16 signed_s16 = -2;
/* .rodata.custom */
const volatile int ro_custom SEC(".rodata.custom") = 3;

/* .data, .bss, .data.custom */
int counter = 1;
unsigned long long hits;
static volatile int static_bss;
char custom_buf[8] SEC(".data.custom") = "custom";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

struct loop_ctx {
	__u64 sum;
	int limit;
};

/* bpf_loop callback: referenced via ld_imm64 src_reg=BPF_PSEUDO_FUNC */
static long loop_cb(__u32 idx, void *data)
{
	struct loop_ctx *c = data;

	c->sum += idx;
	return idx >= (__u32)c->limit;
}

/* static, called from another static subprogram only (transitive) */
static __noinline int bump(int n)
{
	hits += n;
	static_bss += 1;
	return n + 1;
}

/* static subprogram touching a map, a global and another subprogram */
static __noinline int record(__u32 key)
{
	__u64 one = 1, *v;

	v = bpf_map_lookup_elem(&counts, &key);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(&counts, &key, &one, BPF_ANY);
	return bump(counter);
}

/* global subprogram: verified on its own by the kernel */
__noinline int global_scale(int x)
{
	return x * 3 + 1;
}

SEC("tracepoint/syscalls/sys_enter_write")
int tp_write_a(void *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;

	if (target_pid && pid != target_pid)
		return 0;
	return record(pid) + global_scale(small_u8);
}

SEC("tracepoint/syscalls/sys_enter_write")
int tp_write_b(void *ctx)
{
	struct loop_ctx c = { .sum = 0, .limit = ro_custom };

	bpf_loop(8, loop_cb, &c, 0);
	counter += (int)c.sum + signed_s16;
	custom_buf[0] = 'C';
	return record(1);
}

/* CO-RE relocations inside a subprogram: they must follow it when linked */
struct task_struct {
	int pid;
	int tgid;
} __attribute__((preserve_access_index));

static __noinline int core_tgid(void)
{
	struct task_struct *t = (void *)bpf_get_current_task();

	return BPF_CORE_READ(t, tgid);
}

SEC("raw_tp/sys_enter")
int rawtp_enter(void *ctx)
{
	char buf[16];
	const char *lit = "string literal";

	bpf_probe_read_kernel_str(buf, sizeof(buf), lit);
	if (buf[0] == target_comm[0])
		hits += neg_default;
	if (bpf_core_field_exists(struct task_struct, pid))
		hits += core_tgid();
	bpf_printk("rawtp %d", hits);
	return 0;
}

SEC("kprobe/ksys_write+0x10")
int kp_write(void *ctx)
{
	return global_scale(counter);
}
