// SPDX-License-Identifier: GPL-2.0
/* Test object: one trivial program per section-name convention (parsed only). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";
__u32 VERSION SEC("version") = 0x060100;

#define PROG(sec, name) SEC(sec) int name(void *ctx) { return 0; }

PROG("socket", p_socket)
PROG("kprobe/ksys_write+0x10", p_kprobe_off)
PROG("kprobe/do_unlinkat", p_kprobe)
PROG("kretprobe/do_unlinkat", p_kretprobe)
PROG("uprobe//usr/lib/libc.so.6:malloc+0x4", p_uprobe)
PROG("uretprobe//bin/bash:readline", p_uretprobe)
PROG("uprobe.s//bin/bash:readline", p_uprobe_s)
PROG("tracepoint/syscalls/sys_enter_openat", p_tracepoint)
PROG("tp/sched/sched_switch", p_tp)
PROG("raw_tracepoint/sys_enter", p_raw_tracepoint)
PROG("raw_tp/sys_exit", p_raw_tp)
PROG("tp_btf/sched_switch", p_tp_btf)
PROG("fentry/do_unlinkat", p_fentry)
PROG("fentry.s/do_unlinkat", p_fentry_s)
PROG("fexit/do_unlinkat", p_fexit)
PROG("fmod_ret/security_file_open", p_fmod_ret)
PROG("lsm/file_open", p_lsm)
PROG("lsm.s/bprm_committed_creds", p_lsm_s)
PROG("perf_event", p_perf_event)
PROG("xdp", p_xdp)
PROG("xdp.frags", p_xdp_frags)
PROG("tc", p_tc)
PROG("classifier", p_classifier)
PROG("cgroup_skb/ingress", p_cgroup_skb_ingress)
PROG("cgroup_skb/egress", p_cgroup_skb_egress)
PROG("syscall", p_syscall)
PROG("iter/task", p_iter_task)
PROG("ksyscall/write", p_ksyscall)
