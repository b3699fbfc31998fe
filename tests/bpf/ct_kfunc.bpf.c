// SPDX-License-Identifier: GPL-2.0
/* Loader test object: a kfunc of a kernel module.  nf_conntrack registers
 * bpf_xdp_ct_lookup and bpf_ct_release for XDP programs; their BTF is the
 * module's, so the call goes out with the module's BTF object fd in the
 * program's fd_array.  The program looks a TCP 4-tuple up in conntrack
 * (there is no such connection: NULL and opts.error -ENOENT) and keeps what
 * it got.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

typedef __s32 s32;
typedef __u8 u8;
typedef __u32 u32;
typedef __s64 s64;

/* A struct, not a forward declaration: libbpf (and rawprobe) match a kfunc's
 * prototype kind by kind, and the kernel's nf_conn is a struct.  As a
 * vmlinux.h would declare it, with the one member nobody reads here. */
struct nf_conn {
	unsigned long status;
} __attribute__((preserve_access_index));

/* The kernel's struct bpf_ct_opts as 6.1 has it (12 bytes; 6.12 takes 12 or
 * 16: it grew a zone id). */
struct bpf_ct_opts {
	s32 netns_id;
	s32 error;
	u8 l4proto;
	u8 dir;
	u8 reserved[2];
};

extern struct nf_conn *bpf_xdp_ct_lookup(struct xdp_md *xdp_ctx,
					 struct bpf_sock_tuple *bpf_tuple, u32 tuple__sz,
					 struct bpf_ct_opts *opts, u32 opts__sz) __ksym;
extern void bpf_ct_release(struct nf_conn *ct) __ksym;

s64 lookup_error = 1;		/* opts.error after the lookup */
s64 found = -1;			/* whether a connection came back */

SEC("xdp")
int ct_lookup(struct xdp_md *ctx)
{
	struct bpf_sock_tuple tup = {};
	struct bpf_ct_opts opts = { .netns_id = -1, .l4proto = IPPROTO_TCP };
	struct nf_conn *ct;

	tup.ipv4.saddr = bpf_htonl(0x7f000001);
	tup.ipv4.daddr = bpf_htonl(0x7f000001);
	tup.ipv4.sport = bpf_htons(1);
	tup.ipv4.dport = bpf_htons(2);
	ct = bpf_xdp_ct_lookup(ctx, &tup, sizeof(tup.ipv4), &opts, sizeof(opts));
	/* Branch on the pointer itself: 6.1's verifier loses a reference tested
	 * through a copy (found = ct != 0) and calls it unreleased. */
	if (ct) {
		bpf_ct_release(ct);
		found = 1;
	} else {
		found = 0;
	}
	lookup_error = opts.error;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
