// SPDX-License-Identifier: (GPL-2.0-only OR MIT)
/*
 * The interceptor with an fentry call hook (rp_fentry) instead of the
 * raw_tp/tracepoint/kprobe ones; same maps, .rodata and bookkeeping programs.
 * A separate object because fentry programs only load where the kernel has
 * BPF trampolines (not on every kernel rawprobe runs on) and need their
 * target function's BTF id at load time.
 */
#define RP_FENTRY_OBJECT 1
#include "intercept.bpf.c"
