"""The C declarations rawprobe hands to cffi, in one string.

This is the source of ``_ffi.py``: ``tools/gen_ffi.py`` feeds it to cffi's
parser once, at development time, and commits the result, so nothing parses
C when rawprobe runs.  Edit this file, then run ``python tools/gen_ffi.py``.

Layouts are the UAPI ones (include/uapi/linux/bpf.h, perf_event.h,
signalfd.h) as Linux 6.18 has them -- ``LAYOUT_KERNEL`` -- with the kernel's
field names, so the attr a wrapper fills is the kernel's own.  UAPI structs
only grow at the end (or inside unions), so older kernels see a prefix;
wrappers pass only the prefix a command uses.  ``tests/test_sys_layout.py``
checks every field here against the running kernel's BTF.

Only x86_64 and aarch64 (LP64, 8-byte aligned ``__u64``) are supported, so
``__aligned_u64`` is plain ``__u64`` here.  Pointers the kernel reads are
passed as ``__u64`` addresses, as the UAPI declares them.

This module must stay importable without cffi (gen_ffi.py reads it by path).
"""

# The kernel release whose UAPI these declarations follow.
LAYOUT_KERNEL = (6, 18)

CDEFS = r"""
typedef uint8_t  __u8;
typedef uint16_t __u16;
typedef uint32_t __u32;
typedef uint64_t __u64;
typedef int32_t  __s32;
typedef int64_t  __s64;

/* ---- bpf(2) ---------------------------------------------------------- */

union bpf_attr {
    struct {                        /* BPF_MAP_CREATE */
        __u32 map_type;
        __u32 key_size;
        __u32 value_size;
        __u32 max_entries;
        __u32 map_flags;
        __u32 inner_map_fd;
        __u32 numa_node;
        char  map_name[16];
        __u32 map_ifindex;
        __u32 btf_fd;
        __u32 btf_key_type_id;
        __u32 btf_value_type_id;
        __u32 btf_vmlinux_value_type_id;
        __u64 map_extra;
        __s32 value_type_btf_obj_fd;
        __s32 map_token_fd;
        __u64 excl_prog_hash;
        __u32 excl_prog_hash_size;
    };
    struct {                        /* BPF_MAP_*_ELEM, BPF_MAP_GET_NEXT_KEY, BPF_MAP_FREEZE */
        __u32 map_fd;
        __u64 key;
        union {
            __u64 value;
            __u64 next_key;
        };
        __u64 flags;
    };
    struct {                        /* BPF_MAP_*_BATCH */
        __u64 in_batch;
        __u64 out_batch;
        __u64 keys;
        __u64 values;
        __u32 count;
        __u32 map_fd;
        __u64 elem_flags;
        __u64 flags;
    } batch;
    struct {                        /* BPF_PROG_LOAD */
        __u32 prog_type;
        __u32 insn_cnt;
        __u64 insns;
        __u64 license;
        __u32 log_level;
        __u32 log_size;
        __u64 log_buf;
        __u32 kern_version;
        __u32 prog_flags;
        char  prog_name[16];
        __u32 prog_ifindex;
        __u32 expected_attach_type;
        __u32 prog_btf_fd;
        __u32 func_info_rec_size;
        __u64 func_info;
        __u32 func_info_cnt;
        __u32 line_info_rec_size;
        __u64 line_info;
        __u32 line_info_cnt;
        __u32 attach_btf_id;
        union {
            __u32 attach_prog_fd;
            __u32 attach_btf_obj_fd;
        };
        __u32 core_relo_cnt;
        __u64 fd_array;
        __u64 core_relos;
        __u32 core_relo_rec_size;
        __u32 log_true_size;
        __s32 prog_token_fd;
        __u32 fd_array_cnt;
        __u64 signature;
        __u32 signature_size;
        __s32 keyring_id;
    };
    struct {                        /* BPF_OBJ_PIN, BPF_OBJ_GET */
        __u64 pathname;
        __u32 bpf_fd;
        __u32 file_flags;
        __s32 path_fd;
    };
    struct {                        /* BPF_PROG_ATTACH, BPF_PROG_DETACH */
        union {
            __u32 target_fd;
            __u32 target_ifindex;
        };
        __u32 attach_bpf_fd;
        __u32 attach_type;
        __u32 attach_flags;
        __u32 replace_bpf_fd;
        union {
            __u32 relative_fd;
            __u32 relative_id;
        };
        __u64 expected_revision;
    };
    struct {                        /* BPF_PROG_TEST_RUN */
        __u32 prog_fd;
        __u32 retval;
        __u32 data_size_in;
        __u32 data_size_out;
        __u64 data_in;
        __u64 data_out;
        __u32 repeat;
        __u32 duration;
        __u32 ctx_size_in;
        __u32 ctx_size_out;
        __u64 ctx_in;
        __u64 ctx_out;
        __u32 flags;
        __u32 cpu;
        __u32 batch_size;
    } test;
    struct {                        /* BPF_*_GET_NEXT_ID, BPF_*_GET_FD_BY_ID */
        union {
            __u32 start_id;
            __u32 prog_id;
            __u32 map_id;
            __u32 btf_id;
            __u32 link_id;
        };
        __u32 next_id;
        __u32 open_flags;
        __s32 fd_by_id_token_fd;
    };
    struct {                        /* BPF_OBJ_GET_INFO_BY_FD */
        __u32 bpf_fd;
        __u32 info_len;
        __u64 info;
    } info;
    struct {                        /* BPF_PROG_QUERY */
        union {
            __u32 target_fd;
            __u32 target_ifindex;
        };
        __u32 attach_type;
        __u32 query_flags;
        __u32 attach_flags;
        __u64 prog_ids;
        union {
            __u32 prog_cnt;
            __u32 count;
        };
        __u64 prog_attach_flags;
        __u64 link_ids;
        __u64 link_attach_flags;
        __u64 revision;
    } query;
    struct {                        /* BPF_RAW_TRACEPOINT_OPEN */
        __u64 name;
        __u32 prog_fd;
        __u64 cookie;
    } raw_tracepoint;
    struct {                        /* BPF_BTF_LOAD */
        __u64 btf;
        __u64 btf_log_buf;
        __u32 btf_size;
        __u32 btf_log_size;
        __u32 btf_log_level;
        __u32 btf_log_true_size;
        __u32 btf_flags;
        __s32 btf_token_fd;
    };
    struct {                        /* BPF_TASK_FD_QUERY */
        __u32 pid;
        __u32 fd;
        __u32 flags;
        __u32 buf_len;
        __u64 buf;
        __u32 prog_id;
        __u32 fd_type;
        __u64 probe_offset;
        __u64 probe_addr;
    } task_fd_query;
    struct {                        /* BPF_LINK_CREATE */
        union {
            __u32 prog_fd;
            __u32 map_fd;
        };
        union {
            __u32 target_fd;
            __u32 target_ifindex;
        };
        __u32 attach_type;
        __u32 flags;
        union {
            __u32 target_btf_id;
            struct {
                __u64 iter_info;
                __u32 iter_info_len;
            };
            struct {
                __u64 bpf_cookie;
            } perf_event;
            struct {
                __u32 flags;
                __u32 cnt;
                __u64 syms;
                __u64 addrs;
                __u64 cookies;
            } kprobe_multi;
            struct {
                __u32 target_btf_id;
                __u64 cookie;
            } tracing;
            struct {
                __u32 pf;
                __u32 hooknum;
                __s32 priority;
                __u32 flags;
            } netfilter;
            struct {
                union {
                    __u32 relative_fd;
                    __u32 relative_id;
                };
                __u64 expected_revision;
            } tcx;
            struct {
                __u64 path;
                __u64 offsets;
                __u64 ref_ctr_offsets;
                __u64 cookies;
                __u32 cnt;
                __u32 flags;
                __u32 pid;
            } uprobe_multi;
            struct {
                union {
                    __u32 relative_fd;
                    __u32 relative_id;
                };
                __u64 expected_revision;
            } netkit;
            struct {
                union {
                    __u32 relative_fd;
                    __u32 relative_id;
                };
                __u64 expected_revision;
            } cgroup;
        };
    } link_create;
    struct {                        /* BPF_LINK_UPDATE */
        __u32 link_fd;
        union {
            __u32 new_prog_fd;
            __u32 new_map_fd;
        };
        __u32 flags;
        union {
            __u32 old_prog_fd;
            __u32 old_map_fd;
        };
    } link_update;
    struct {                        /* BPF_LINK_DETACH */
        __u32 link_fd;
    } link_detach;
    struct {                        /* BPF_ENABLE_STATS */
        __u32 type;
    } enable_stats;
    struct {                        /* BPF_ITER_CREATE */
        __u32 link_fd;
        __u32 flags;
    } iter_create;
    struct {                        /* BPF_PROG_BIND_MAP */
        __u32 prog_fd;
        __u32 map_fd;
        __u32 flags;
    } prog_bind_map;
    struct {                        /* BPF_TOKEN_CREATE */
        __u32 flags;
        __u32 bpffs_fd;
    } token_create;
    struct {                        /* BPF_PROG_STREAM_READ_BY_FD */
        __u64 stream_buf;
        __u32 stream_buf_len;
        __u32 stream_id;
        __u32 prog_fd;
    } prog_stream_read;
};

/* BPF_OBJ_GET_INFO_BY_FD results */

struct bpf_prog_info {
    __u32 type;
    __u32 id;
    __u8  tag[8];
    __u32 jited_prog_len;
    __u32 xlated_prog_len;
    __u64 jited_prog_insns;
    __u64 xlated_prog_insns;
    __u64 load_time;                /* ns since boot */
    __u32 created_by_uid;
    __u32 nr_map_ids;
    __u64 map_ids;
    char  name[16];
    __u32 ifindex;
    __u32 gpl_compatible:1;         /* then 31 bits of padding */
    __u64 netns_dev;
    __u64 netns_ino;
    __u32 nr_jited_ksyms;
    __u32 nr_jited_func_lens;
    __u64 jited_ksyms;
    __u64 jited_func_lens;
    __u32 btf_id;
    __u32 func_info_rec_size;
    __u64 func_info;
    __u32 nr_func_info;
    __u32 nr_line_info;
    __u64 line_info;
    __u64 jited_line_info;
    __u32 nr_jited_line_info;
    __u32 line_info_rec_size;
    __u32 jited_line_info_rec_size;
    __u32 nr_prog_tags;
    __u64 prog_tags;
    __u64 run_time_ns;
    __u64 run_cnt;
    __u64 recursion_misses;
    __u32 verified_insns;
    __u32 attach_btf_obj_id;
    __u32 attach_btf_id;
};

struct bpf_map_info {
    __u32 type;
    __u32 id;
    __u32 key_size;
    __u32 value_size;
    __u32 max_entries;
    __u32 map_flags;
    char  name[16];
    __u32 ifindex;
    __u32 btf_vmlinux_value_type_id;
    __u64 netns_dev;
    __u64 netns_ino;
    __u32 btf_id;
    __u32 btf_key_type_id;
    __u32 btf_value_type_id;
    __u32 btf_vmlinux_id;
    __u64 map_extra;
    __u64 hash;
    __u32 hash_size;
};

struct bpf_btf_info {
    __u64 btf;
    __u32 btf_size;
    __u32 id;
    __u64 name;
    __u32 name_len;
    __u32 kernel_btf;
};

struct bpf_link_info {
    __u32 type;
    __u32 id;
    __u32 prog_id;
    union {
        struct {
            __u64 tp_name;
            __u32 tp_name_len;
            __u64 cookie;
        } raw_tracepoint;
        struct {
            __u32 attach_type;
            __u32 target_obj_id;
            __u32 target_btf_id;
            __u64 cookie;
        } tracing;
        struct {
            __u64 cgroup_id;
            __u32 attach_type;
        } cgroup;
        struct {
            __u64 target_name;
            __u32 target_name_len;
            union {
                struct {
                    __u32 map_id;
                } map;
            };
            union {
                struct {
                    __u64 cgroup_id;
                    __u32 order;
                } cgroup;
                struct {
                    __u32 tid;
                    __u32 pid;
                } task;
            };
        } iter;
        struct {
            __u32 netns_ino;
            __u32 attach_type;
        } netns;
        struct {
            __u32 ifindex;
        } xdp;
        struct {
            __u32 map_id;
        } struct_ops;
        struct {
            __u32 pf;
            __u32 hooknum;
            __s32 priority;
            __u32 flags;
        } netfilter;
        struct {
            __u64 addrs;
            __u32 count;
            __u32 flags;
            __u64 missed;
            __u64 cookies;
        } kprobe_multi;
        struct {
            __u64 path;
            __u64 offsets;
            __u64 ref_ctr_offsets;
            __u64 cookies;
            __u32 path_size;
            __u32 count;
            __u32 flags;
            __u32 pid;
        } uprobe_multi;
        struct {
            __u32 type;             /* enum bpf_perf_event_type */
            union {
                struct {
                    __u64 file_name;
                    __u32 name_len;
                    __u32 offset;
                    __u64 cookie;
                    __u64 ref_ctr_offset;
                } uprobe;
                struct {
                    __u64 func_name;
                    __u32 name_len;
                    __u32 offset;
                    __u64 addr;
                    __u64 missed;
                    __u64 cookie;
                } kprobe;
                struct {
                    __u64 tp_name;
                    __u32 name_len;
                    __u64 cookie;
                } tracepoint;
                struct {
                    __u64 config;
                    __u32 type;
                    __u64 cookie;
                } event;
            };
        } perf_event;
        struct {
            __u32 ifindex;
            __u32 attach_type;
        } tcx;
        struct {
            __u32 ifindex;
            __u32 attach_type;
        } netkit;
        struct {
            __u32 map_id;
            __u32 attach_type;
        } sockmap;
    };
};

/* ---- perf_event_open(2) --------------------------------------------- */

struct perf_event_attr {
    __u32 type;
    __u32 size;
    __u64 config;
    union {
        __u64 sample_period;
        __u64 sample_freq;
    };
    __u64 sample_type;
    __u64 read_format;
    __u64 disabled:1;
    __u64 inherit:1;
    __u64 pinned:1;
    __u64 exclusive:1;
    __u64 exclude_user:1;
    __u64 exclude_kernel:1;
    __u64 exclude_hv:1;
    __u64 exclude_idle:1;
    __u64 mmap:1;
    __u64 comm:1;
    __u64 freq:1;
    __u64 inherit_stat:1;
    __u64 enable_on_exec:1;
    __u64 task:1;
    __u64 watermark:1;
    __u64 precise_ip:2;
    __u64 mmap_data:1;
    __u64 sample_id_all:1;
    __u64 exclude_host:1;
    __u64 exclude_guest:1;
    __u64 exclude_callchain_kernel:1;
    __u64 exclude_callchain_user:1;
    __u64 mmap2:1;
    __u64 comm_exec:1;
    __u64 use_clockid:1;
    __u64 context_switch:1;
    __u64 write_backward:1;
    __u64 namespaces:1;
    __u64 ksymbol:1;
    __u64 bpf_event:1;
    __u64 aux_output:1;
    __u64 cgroup:1;
    __u64 text_poke:1;
    __u64 build_id:1;
    __u64 inherit_thread:1;
    __u64 remove_on_exec:1;
    __u64 sigtrap:1;
    __u64 __reserved_1:26;
    union {
        __u32 wakeup_events;
        __u32 wakeup_watermark;
    };
    __u32 bp_type;
    union {
        __u64 bp_addr;
        __u64 kprobe_func;          /* for the kprobe PMU: address of a C string */
        __u64 uprobe_path;          /* for the uprobe PMU: address of a C string */
        __u64 config1;
    };
    union {
        __u64 bp_len;
        __u64 kprobe_addr;
        __u64 probe_offset;
        __u64 config2;
    };
    __u64 branch_sample_type;
    __u64 sample_regs_user;
    __u32 sample_stack_user;
    __s32 clockid;
    __u64 sample_regs_intr;
    __u32 aux_watermark;
    __u16 sample_max_stack;
    __u16 __reserved_2;
    __u32 aux_sample_size;
    union {
        __u32 aux_action;
        struct {
            __u32 aux_start_paused:1;
            __u32 aux_pause:1;
            __u32 aux_resume:1;
            __u32 __reserved_3:29;
        };
    };
    __u64 sig_data;
    __u64 config3;
};

/* First page of a perf event's mmap'ed ring buffer. */
struct perf_event_mmap_page {
    __u32 version;
    __u32 compat_version;
    __u32 lock;
    __u32 index;
    __s64 offset;
    __u64 time_enabled;
    __u64 time_running;
    union {
        __u64 capabilities;
        struct {
            __u64 cap_bit0:1;
            __u64 cap_bit0_is_deprecated:1;
            __u64 cap_user_rdpmc:1;
            __u64 cap_user_time:1;
            __u64 cap_user_time_zero:1;
            __u64 cap_user_time_short:1;
            __u64 cap_____res:58;
        };
    };
    __u16 pmc_width;
    __u16 time_shift;
    __u32 time_mult;
    __u64 time_offset;
    __u64 time_zero;
    __u32 size;
    __u32 __reserved_1;
    __u64 time_cycles;
    __u64 time_mask;
    __u8  __reserved[928];
    __u64 data_head;                /* written by the kernel; read with acquire */
    __u64 data_tail;                /* written by the reader; write with release */
    __u64 data_offset;
    __u64 data_size;
    __u64 aux_head;
    __u64 aux_tail;
    __u64 aux_offset;
    __u64 aux_size;
};

struct perf_event_header {
    __u32 type;
    __u16 misc;
    __u16 size;
};

/* ---- signalfd(2), timerfd_create(2) ----------------------------------- */

struct signalfd_siginfo {
    __u32 ssi_signo;
    __s32 ssi_errno;
    __s32 ssi_code;
    __u32 ssi_pid;
    __u32 ssi_uid;
    __s32 ssi_fd;
    __u32 ssi_tid;
    __u32 ssi_band;
    __u32 ssi_overrun;
    __u32 ssi_trapno;
    __s32 ssi_status;
    __s32 ssi_int;
    __u64 ssi_ptr;
    __u64 ssi_utime;
    __u64 ssi_stime;
    __u64 ssi_addr;
    __u16 ssi_addr_lsb;
    __u16 __pad2;
    __s32 ssi_syscall;
    __u64 ssi_call_addr;
    __u32 ssi_arch;
    __u8  __pad[28];
};

/* The C library's sigset_t (glibc and musl: 1024 bits); only ever
   touched through sigemptyset/sigaddset. */
typedef struct { unsigned long __bits[16]; } sigset_t;

struct timespec {
    long tv_sec;
    long tv_nsec;
};

struct itimerspec {
    struct timespec it_interval;
    struct timespec it_value;
};

/* ---- the C library ------------------------------------------------------- */

long syscall(long number, ...);
int ioctl(int fd, unsigned long request, ...);

int sigemptyset(sigset_t *set);
int sigaddset(sigset_t *set, int signum);
int signalfd(int fd, const sigset_t *mask, int flags);
int timerfd_create(int clockid, int flags);
int timerfd_settime(int fd, int flags, const struct itimerspec *new_value,
                    struct itimerspec *old_value);

int mount(const char *source, const char *target, const char *filesystemtype,
          unsigned long mountflags, const void *data);

/* A memory fence: see fence.py for why a spinlock call. */
typedef volatile int pthread_spinlock_t;
int pthread_spin_init(pthread_spinlock_t *lock, int pshared);
int pthread_spin_trylock(pthread_spinlock_t *lock);
int pthread_spin_unlock(pthread_spinlock_t *lock);
"""
