// SPDX-License-Identifier: GPL-2.0
/* Loader test object: what rawprobe parses but refuses to load, as libbpf's
 * objects hold them: a struct_ops map (a congestion control, in
 * .struct_ops.link) with its struct_ops/ callback, beside an ordinary program.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct sock;

struct tcp_congestion_ops {
	void (*init)(struct sock *sk);
	char name[16];
} __attribute__((preserve_access_index));

SEC("struct_ops/rawprobe_cc_init")
void BPF_PROG(rawprobe_cc_init, struct sock *sk)
{
}

SEC(".struct_ops.link")
struct tcp_congestion_ops rawprobe_cc = {
	.init = (void *)rawprobe_cc_init,
	.name = "rawprobe_cc",
};

SEC("raw_tp/sys_enter")
int ordinary(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
