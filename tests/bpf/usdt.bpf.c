// SPDX-License-Identifier: GPL-2.0
/* Loader test object: USDT programs written against libbpf's usdt.bpf.h, the
 * way real projects write them.  Each probe hit sends one struct usdt_rec
 * (usdt_rec.h) to the ring buffer `events`: which program, the process, the
 * attach cookie (bpf_usdt_cookie), the argument count and the arguments as
 * bpf_usdt_arg() read them.  The test target is tests/targets/usdt_target.c.
 *
 * on_probe (SEC("usdt")) is attached explicitly, to any probe; on_consts names
 * its probe in the section (auto-attach) by a bare binary name, which both
 * loaders look up in PATH, and reads its arguments through BPF_USDT().
 */
#include <linux/types.h>
#include <linux/bpf.h>

#define __VMLINUX_H__
typedef _Bool bool;
struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di;
	unsigned long orig_ax, ip, cs, flags, sp, ss;
} __attribute__((preserve_access_index));

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

#include "usdt_rec.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

static __always_inline struct usdt_rec *new_rec(struct pt_regs *ctx, __u32 prog)
{
	struct usdt_rec *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);

	if (!r)
		return 0;
	__builtin_memset(r, 0, sizeof(*r));
	r->prog = prog;
	r->pid = bpf_get_current_pid_tgid() >> 32;
	r->cookie = bpf_usdt_cookie(ctx);
	r->arg_cnt = bpf_usdt_arg_cnt(ctx);
	return r;
}

SEC("usdt")
int on_probe(struct pt_regs *ctx)
{
	struct usdt_rec *r = new_rec(ctx, USDT_PROG_PROBE);
	long v;

	if (!r)
		return 0;
	for (int i = 0; i < USDT_REC_ARGS; i++) {
		if (bpf_usdt_arg(ctx, i, &v) == 0)
			r->args[i] = v;
	}
	bpf_ringbuf_submit(r, 0);
	return 0;
}

SEC("usdt/rawprobe_usdt_target:rpt:consts")
int BPF_USDT(on_consts, int a, int b, long c)
{
	struct usdt_rec *r = new_rec(ctx, USDT_PROG_CONSTS);

	if (!r)
		return 0;
	r->args[0] = a;
	r->args[1] = b;
	r->args[2] = c;
	bpf_ringbuf_submit(r, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
