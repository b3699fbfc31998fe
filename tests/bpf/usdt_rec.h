/* What tests/bpf/usdt.bpf.c records per USDT hit (read by tests/test_usdt.py
 * and by its libbpf loader, tests/targets/usdt_libbpf.c). */
#ifndef USDT_REC_H
#define USDT_REC_H

#define USDT_REC_ARGS 6
#define USDT_PROG_PROBE 1
#define USDT_PROG_CONSTS 2

struct usdt_rec {
	__u32 prog;		/* USDT_PROG_* */
	__u32 pid;		/* tgid */
	__u64 cookie;		/* bpf_usdt_cookie() */
	__s64 arg_cnt;		/* bpf_usdt_arg_cnt() */
	__s64 args[USDT_REC_ARGS];
};

#endif
