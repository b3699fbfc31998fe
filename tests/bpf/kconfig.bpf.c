// SPDX-License-Identifier: GPL-2.0
/* Loader test object: __kconfig externs of every kind libbpf fills, copied by
 * a tracepoint program (triggered with getppid()) into .bss, where a test
 * compares them with the kernel's configuration file and with libbpf's load.
 *
 * vmlinux.h's names for the types, declared here so the object builds the
 * same anywhere.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

typedef _Bool bool;
typedef __u8 u8;
typedef __s16 s16;
typedef __u32 u32;
typedef __s64 s64;
typedef __u64 u64;

/* computed by the loader */
extern u32 LINUX_KERNEL_VERSION __kconfig;
extern bool LINUX_HAS_BPF_COOKIE __kconfig;
extern bool LINUX_HAS_SYSCALL_WRAPPER __kconfig;
extern u64 LINUX_NOT_A_VIRTUAL_EXTERN __kconfig __weak;          /* unknown, weak: 0 */
/* from the kernel's configuration */
extern bool CONFIG_BPF_SYSCALL __kconfig;                        /* bool, =y */
extern bool CONFIG_KPROBES __kconfig __weak;                     /* "is not set": 0 */
extern enum libbpf_tristate CONFIG_BPF_JIT __kconfig;            /* tristate, =y */
extern enum libbpf_tristate CONFIG_RAWPROBE_NO_SUCH_TRI __kconfig __weak;
extern char CONFIG_BPF __kconfig;                                /* char: 'y' */
extern int CONFIG_HZ __kconfig;                                  /* int */
extern s16 CONFIG_LOG_BUF_SHIFT __kconfig;                       /* 2-byte signed */
extern u64 CONFIG_NR_CPUS __kconfig;                             /* 8-byte */
extern s64 CONFIG_RAWPROBE_NO_SUCH_INT __kconfig __weak;
extern char CONFIG_DEFAULT_HOSTNAME[16] __kconfig;               /* string */
extern char CONFIG_CC_VERSION_TEXT[8] __kconfig;                 /* string, cut to 7 */
extern char CONFIG_RAWPROBE_NO_SUCH_STRING[4] __kconfig __weak;

struct kconfig_copy {
	u64 kernel_version;
	u64 has_bpf_cookie;
	u64 has_syscall_wrapper;
	u64 not_virtual;
	u64 bpf_syscall;
	u64 kprobes;
	u64 bpf_jit;
	u64 no_such_tri;
	u64 bpf;
	s64 hz;
	s64 log_buf_shift;
	u64 nr_cpus;
	s64 no_such_int;
	char default_hostname[16];
	char cc_version_text[8];
	char no_such_string[4];
};

const volatile u32 target_tgid = 0;
struct kconfig_copy copy;

SEC("tracepoint/syscalls/sys_enter_getppid")
int copy_kconfig(void *ctx)
{
	int i;

	if ((u32)(bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	copy.kernel_version = LINUX_KERNEL_VERSION;
	copy.has_bpf_cookie = LINUX_HAS_BPF_COOKIE;
	copy.has_syscall_wrapper = LINUX_HAS_SYSCALL_WRAPPER;
	copy.not_virtual = LINUX_NOT_A_VIRTUAL_EXTERN;
	copy.bpf_syscall = CONFIG_BPF_SYSCALL;
	copy.kprobes = CONFIG_KPROBES;
	copy.bpf_jit = CONFIG_BPF_JIT;
	copy.no_such_tri = CONFIG_RAWPROBE_NO_SUCH_TRI;
	copy.bpf = CONFIG_BPF;
	copy.hz = CONFIG_HZ;
	copy.log_buf_shift = CONFIG_LOG_BUF_SHIFT;
	copy.nr_cpus = CONFIG_NR_CPUS;
	copy.no_such_int = CONFIG_RAWPROBE_NO_SUCH_INT;
	for (i = 0; i < 16; i++)
		copy.default_hostname[i] = CONFIG_DEFAULT_HOSTNAME[i];
	for (i = 0; i < 8; i++)
		copy.cc_version_text[i] = CONFIG_CC_VERSION_TEXT[i];
	for (i = 0; i < 4; i++)
		copy.no_such_string[i] = CONFIG_RAWPROBE_NO_SUCH_STRING[i];
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
