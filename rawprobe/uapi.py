"""Kernel UAPI numbers: the enums of ``linux/bpf.h`` and ``linux/perf_event.h``.

The one definition of each kernel enumeration rawprobe uses, for the spec
layer (which must not import ``_sys`` or cffi) and for ``_sys`` alike
(``rawprobe._sys.consts`` re-exports them).  Each class strips one common
prefix from the kernel's names and says which (``BPF_MAP_TYPE_HASH`` is
``MapType.HASH``; ``BPF_FUNC_ktime_get_ns`` is ``BpfFunc.ktime_get_ns``).

Values are the UAPI's, which never change; the classes list what Linux 6.18
knows, so a value being here does not mean the running kernel supports it.
Comments give the first kernel of members that arrived after 4.19.

The classes are :class:`rawprobe._records.IntConst`, not ``enum.IntEnum``:
the same use (ints with names, ``MapType(27)``, ``MapType["RINGBUF"]``,
iteration) for ~1 us a member instead of ~15 us, and no ``enum`` import.
Flag classes list single bits; ``|`` of two members is a plain int.
"""
from __future__ import annotations

from ._records import IntConst

__all__ = [
    "BPF_OBJ_NAME_LEN", "BpfCmd", "MapType", "MAP_IN_MAP_TYPES", "MAP_TYPES_WITHOUT_BTF",
    "MAP_TYPES_WITHOUT_BTF_VALUE", "ProgType", "AttachType", "LinkType",
    "BpfFunc", "StatsType", "BpfPerfEventType", "MapFlags", "ProgFlags", "MultiLinkFlags",
    "UpdateFlags",
    "PerfType", "PerfSwId", "PerfSampleFormat", "PerfRecordType", "PerfFlag",
]

BPF_OBJ_NAME_LEN = 16           # map and program names, NUL included


# ---- linux/bpf.h --------------------------------------------------------------

class BpfCmd(IntConst):
    """``enum bpf_cmd`` without ``BPF_``."""
    MAP_CREATE = 0
    MAP_LOOKUP_ELEM = 1
    MAP_UPDATE_ELEM = 2
    MAP_DELETE_ELEM = 3
    MAP_GET_NEXT_KEY = 4
    PROG_LOAD = 5
    OBJ_PIN = 6
    OBJ_GET = 7
    PROG_ATTACH = 8
    PROG_DETACH = 9
    PROG_TEST_RUN = 10
    PROG_RUN = 10
    PROG_GET_NEXT_ID = 11
    MAP_GET_NEXT_ID = 12
    PROG_GET_FD_BY_ID = 13
    MAP_GET_FD_BY_ID = 14
    OBJ_GET_INFO_BY_FD = 15
    PROG_QUERY = 16
    RAW_TRACEPOINT_OPEN = 17
    BTF_LOAD = 18
    BTF_GET_FD_BY_ID = 19
    TASK_FD_QUERY = 20
    MAP_LOOKUP_AND_DELETE_ELEM = 21
    MAP_FREEZE = 22             # 5.2
    BTF_GET_NEXT_ID = 23
    MAP_LOOKUP_BATCH = 24
    MAP_LOOKUP_AND_DELETE_BATCH = 25
    MAP_UPDATE_BATCH = 26
    MAP_DELETE_BATCH = 27
    LINK_CREATE = 28            # 5.7
    LINK_UPDATE = 29
    LINK_GET_FD_BY_ID = 30
    LINK_GET_NEXT_ID = 31
    ENABLE_STATS = 32           # 5.8
    ITER_CREATE = 33
    LINK_DETACH = 34            # 5.9
    PROG_BIND_MAP = 35
    TOKEN_CREATE = 36
    PROG_STREAM_READ_BY_FD = 37


class MapType(IntConst):
    """``enum bpf_map_type`` without ``BPF_MAP_TYPE_``."""
    UNSPEC = 0
    HASH = 1
    ARRAY = 2
    PROG_ARRAY = 3
    PERF_EVENT_ARRAY = 4
    PERCPU_HASH = 5
    PERCPU_ARRAY = 6
    STACK_TRACE = 7
    CGROUP_ARRAY = 8
    LRU_HASH = 9
    LRU_PERCPU_HASH = 10
    LPM_TRIE = 11
    ARRAY_OF_MAPS = 12
    HASH_OF_MAPS = 13
    DEVMAP = 14
    SOCKMAP = 15
    CPUMAP = 16
    XSKMAP = 17
    SOCKHASH = 18
    CGROUP_STORAGE = 19
    CGROUP_STORAGE_DEPRECATED = 19
    REUSEPORT_SOCKARRAY = 20
    PERCPU_CGROUP_STORAGE = 21
    PERCPU_CGROUP_STORAGE_DEPRECATED = 21
    QUEUE = 22
    STACK = 23
    SK_STORAGE = 24
    DEVMAP_HASH = 25
    STRUCT_OPS = 26
    RINGBUF = 27                # 5.8
    INODE_STORAGE = 28
    TASK_STORAGE = 29
    BLOOM_FILTER = 30           # 5.16
    USER_RINGBUF = 31
    CGRP_STORAGE = 32
    ARENA = 33


# Map-type facts the loader acts on, kept beside the numbers.
#: maps whose values are other maps (an inner map template is needed to create them)
MAP_IN_MAP_TYPES = frozenset({MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS})
#: map types whose kernel side takes no BTF key/value type ids: their ops answer
#: BTF with map_check_no_btf (ENOTSUPP, 5.0+) or, keyless, have no BTF check at all
#: (EINVAL).  The list libbpf creates without BTF ids.
MAP_TYPES_WITHOUT_BTF = frozenset({
    MapType.PERF_EVENT_ARRAY, MapType.CGROUP_ARRAY, MapType.STACK_TRACE,
    MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS, MapType.DEVMAP, MapType.DEVMAP_HASH,
    MapType.CPUMAP, MapType.XSKMAP, MapType.SOCKMAP, MapType.SOCKHASH, MapType.QUEUE,
    MapType.STACK, MapType.ARENA})
#: map types that take a BTF key type id but no value type id (the value type of a
#: struct_ops map is the kernel's, given as btf_vmlinux_value_type_id)
MAP_TYPES_WITHOUT_BTF_VALUE = frozenset({MapType.STRUCT_OPS})


class ProgType(IntConst):
    """``enum bpf_prog_type`` without ``BPF_PROG_TYPE_``."""
    UNSPEC = 0
    SOCKET_FILTER = 1
    KPROBE = 2
    SCHED_CLS = 3
    SCHED_ACT = 4
    TRACEPOINT = 5
    XDP = 6
    PERF_EVENT = 7
    CGROUP_SKB = 8
    CGROUP_SOCK = 9
    LWT_IN = 10
    LWT_OUT = 11
    LWT_XMIT = 12
    SOCK_OPS = 13
    SK_SKB = 14
    CGROUP_DEVICE = 15
    SK_MSG = 16
    RAW_TRACEPOINT = 17
    CGROUP_SOCK_ADDR = 18
    LWT_SEG6LOCAL = 19
    LIRC_MODE2 = 20
    SK_REUSEPORT = 21
    FLOW_DISSECTOR = 22
    CGROUP_SYSCTL = 23
    RAW_TRACEPOINT_WRITABLE = 24
    CGROUP_SOCKOPT = 25
    TRACING = 26                # 5.5: tp_btf, fentry/fexit, fmod_ret, iter
    STRUCT_OPS = 27
    EXT = 28
    LSM = 29                    # 5.7
    SK_LOOKUP = 30
    SYSCALL = 31                # 5.14
    NETFILTER = 32              # 6.4


class AttachType(IntConst):
    """``enum bpf_attach_type`` without ``BPF_`` (BPF_PROG_LOAD's
    ``expected_attach_type``, BPF_LINK_CREATE's ``attach_type``)."""
    CGROUP_INET_INGRESS = 0
    CGROUP_INET_EGRESS = 1
    CGROUP_INET_SOCK_CREATE = 2
    CGROUP_SOCK_OPS = 3
    SK_SKB_STREAM_PARSER = 4
    SK_SKB_STREAM_VERDICT = 5
    CGROUP_DEVICE = 6
    SK_MSG_VERDICT = 7
    CGROUP_INET4_BIND = 8
    CGROUP_INET6_BIND = 9
    CGROUP_INET4_CONNECT = 10
    CGROUP_INET6_CONNECT = 11
    CGROUP_INET4_POST_BIND = 12
    CGROUP_INET6_POST_BIND = 13
    CGROUP_UDP4_SENDMSG = 14
    CGROUP_UDP6_SENDMSG = 15
    LIRC_MODE2 = 16
    FLOW_DISSECTOR = 17
    CGROUP_SYSCTL = 18
    CGROUP_UDP4_RECVMSG = 19
    CGROUP_UDP6_RECVMSG = 20
    CGROUP_GETSOCKOPT = 21
    CGROUP_SETSOCKOPT = 22
    TRACE_RAW_TP = 23           # 5.5
    TRACE_FENTRY = 24           # 5.5
    TRACE_FEXIT = 25            # 5.5
    MODIFY_RETURN = 26
    LSM_MAC = 27
    TRACE_ITER = 28
    CGROUP_INET4_GETPEERNAME = 29
    CGROUP_INET6_GETPEERNAME = 30
    CGROUP_INET4_GETSOCKNAME = 31
    CGROUP_INET6_GETSOCKNAME = 32
    XDP_DEVMAP = 33
    CGROUP_INET_SOCK_RELEASE = 34
    XDP_CPUMAP = 35
    SK_LOOKUP = 36
    XDP = 37
    SK_SKB_VERDICT = 38
    SK_REUSEPORT_SELECT = 39
    SK_REUSEPORT_SELECT_OR_MIGRATE = 40
    PERF_EVENT = 41             # 5.15: BPF_LINK_CREATE on a perf event
    TRACE_KPROBE_MULTI = 42
    LSM_CGROUP = 43
    STRUCT_OPS = 44
    NETFILTER = 45
    TCX_INGRESS = 46            # 6.6
    TCX_EGRESS = 47
    TRACE_UPROBE_MULTI = 48
    CGROUP_UNIX_CONNECT = 49
    CGROUP_UNIX_SENDMSG = 50
    CGROUP_UNIX_RECVMSG = 51
    CGROUP_UNIX_GETPEERNAME = 52
    CGROUP_UNIX_GETSOCKNAME = 53
    NETKIT_PRIMARY = 54
    NETKIT_PEER = 55
    TRACE_KPROBE_SESSION = 56
    TRACE_UPROBE_SESSION = 57


class LinkType(IntConst):
    """``enum bpf_link_type`` without ``BPF_LINK_TYPE_``."""
    UNSPEC = 0
    RAW_TRACEPOINT = 1
    TRACING = 2
    CGROUP = 3
    ITER = 4
    NETNS = 5
    XDP = 6
    PERF_EVENT = 7
    KPROBE_MULTI = 8
    STRUCT_OPS = 9
    NETFILTER = 10
    TCX = 11
    UPROBE_MULTI = 12
    NETKIT = 13
    SOCKMAP = 14


class BpfFunc(IntConst):
    """``enum bpf_func_id`` without ``BPF_FUNC_``: the helpers tracing programs use."""
    unspec = 0
    map_lookup_elem = 1
    map_update_elem = 2
    map_delete_elem = 3
    probe_read = 4
    ktime_get_ns = 5
    trace_printk = 6
    get_prandom_u32 = 7
    get_smp_processor_id = 8
    tail_call = 12
    get_current_pid_tgid = 14
    get_current_uid_gid = 15
    get_current_comm = 16
    perf_event_read = 22
    perf_event_output = 25
    get_stackid = 27
    get_current_task = 35
    probe_write_user = 36
    probe_read_str = 45
    get_stack = 67
    get_current_cgroup_id = 80
    send_signal = 109           # 5.3
    probe_read_user = 112       # 5.5
    probe_read_kernel = 113
    probe_read_user_str = 114
    probe_read_kernel_str = 115
    send_signal_thread = 117
    jiffies64 = 118
    get_ns_current_pid_tgid = 120
    get_current_ancestor_cgroup_id = 123
    ktime_get_boot_ns = 125
    ringbuf_output = 130        # 5.8
    ringbuf_reserve = 131
    ringbuf_submit = 132
    ringbuf_discard = 133
    ringbuf_query = 134
    d_path = 147
    copy_from_user = 148
    snprintf_btf = 149
    task_storage_get = 156
    task_storage_delete = 157
    get_current_task_btf = 158
    ktime_get_coarse_ns = 160
    for_each_map_elem = 164
    snprintf = 165
    get_func_ip = 173
    get_attach_cookie = 174
    task_pt_regs = 175
    trace_vprintk = 177
    find_vma = 180
    loop = 181                  # 5.17
    strncmp = 182
    get_func_arg = 183
    get_func_ret = 184
    get_func_arg_cnt = 185
    copy_from_user_task = 191
    map_lookup_percpu_elem = 195
    ktime_get_tai_ns = 208


class StatsType(IntConst):
    """``enum bpf_stats_type`` without ``BPF_STATS_`` (BPF_ENABLE_STATS)."""
    RUN_TIME = 0


class BpfPerfEventType(IntConst):
    """``enum bpf_perf_event_type`` without ``BPF_PERF_EVENT_`` (link info)."""
    UNSPEC = 0
    UPROBE = 1
    URETPROBE = 2
    KPROBE = 3
    KRETPROBE = 4
    TRACEPOINT = 5
    EVENT = 6


class MapFlags(IntConst):
    """``BPF_F_*`` bits of BPF_MAP_CREATE's ``map_flags``, without ``BPF_F_``."""
    NO_PREALLOC = 1 << 0
    NO_COMMON_LRU = 1 << 1
    NUMA_NODE = 1 << 2
    RDONLY = 1 << 3
    WRONLY = 1 << 4
    STACK_BUILD_ID = 1 << 5
    ZERO_SEED = 1 << 6
    RDONLY_PROG = 1 << 7        # 5.2: programs may not write (.rodata)
    WRONLY_PROG = 1 << 8
    CLONE = 1 << 9
    MMAPABLE = 1 << 10          # 5.5: an array's values can be mmap()ed
    PRESERVE_ELEMS = 1 << 11
    INNER_MAP = 1 << 12
    LINK = 1 << 13
    PATH_FD = 1 << 14
    VTYPE_BTF_OBJ_FD = 1 << 15
    TOKEN_FD = 1 << 16
    SEGV_ON_FAULT = 1 << 17
    NO_USER_CONV = 1 << 18


class ProgFlags(IntConst):
    """``BPF_F_*`` bits of BPF_PROG_LOAD's ``prog_flags``, without ``BPF_F_``."""
    STRICT_ALIGNMENT = 1 << 0
    ANY_ALIGNMENT = 1 << 1
    TEST_RND_HI32 = 1 << 2
    TEST_STATE_FREQ = 1 << 3
    SLEEPABLE = 1 << 4          # 5.10
    XDP_HAS_FRAGS = 1 << 5      # 5.18
    XDP_DEV_BOUND_ONLY = 1 << 6
    TEST_REG_INVARIANTS = 1 << 7


class MultiLinkFlags(IntConst):
    """``BPF_F_*`` bits of BPF_LINK_CREATE's ``kprobe_multi.flags`` and
    ``uprobe_multi.flags``, without ``BPF_F_``: both make return probes."""
    KPROBE_MULTI_RETURN = 1 << 0    # 5.18
    UPROBE_MULTI_RETURN = 1 << 0    # 6.6


class UpdateFlags(IntConst):
    """BPF_MAP_UPDATE_ELEM ``flags`` without ``BPF_``."""
    ANY = 0
    NOEXIST = 1
    EXIST = 2
    F_LOCK = 4


# ---- linux/perf_event.h ---------------------------------------------------------

class PerfType(IntConst):
    """``enum perf_type_id`` without ``PERF_TYPE_``.  Dynamic PMUs (kprobe,
    uprobe) have their type in /sys/bus/event_source/devices/<pmu>/type."""
    HARDWARE = 0
    SOFTWARE = 1
    TRACEPOINT = 2
    HW_CACHE = 3
    RAW = 4
    BREAKPOINT = 5


class PerfSwId(IntConst):
    """``enum perf_sw_ids`` without ``PERF_COUNT_SW_``."""
    CPU_CLOCK = 0
    TASK_CLOCK = 1
    PAGE_FAULTS = 2
    CONTEXT_SWITCHES = 3
    CPU_MIGRATIONS = 4
    PAGE_FAULTS_MIN = 5
    PAGE_FAULTS_MAJ = 6
    ALIGNMENT_FAULTS = 7
    EMULATION_FAULTS = 8
    DUMMY = 9
    BPF_OUTPUT = 10
    CGROUP_SWITCHES = 11


class PerfSampleFormat(IntConst):
    """``enum perf_event_sample_format`` bits without ``PERF_SAMPLE_``."""
    IP = 1 << 0
    TID = 1 << 1
    TIME = 1 << 2
    ADDR = 1 << 3
    READ = 1 << 4
    CALLCHAIN = 1 << 5
    ID = 1 << 6
    CPU = 1 << 7
    PERIOD = 1 << 8
    STREAM_ID = 1 << 9
    RAW = 1 << 10
    BRANCH_STACK = 1 << 11
    REGS_USER = 1 << 12
    STACK_USER = 1 << 13
    WEIGHT = 1 << 14
    DATA_SRC = 1 << 15
    IDENTIFIER = 1 << 16
    TRANSACTION = 1 << 17
    REGS_INTR = 1 << 18
    PHYS_ADDR = 1 << 19
    AUX = 1 << 20
    CGROUP = 1 << 21
    DATA_PAGE_SIZE = 1 << 22
    CODE_PAGE_SIZE = 1 << 23
    WEIGHT_STRUCT = 1 << 24


class PerfRecordType(IntConst):
    """``enum perf_event_type`` (perf_event_header.type) without ``PERF_RECORD_``."""
    MMAP = 1
    LOST = 2
    COMM = 3
    EXIT = 4
    THROTTLE = 5
    UNTHROTTLE = 6
    FORK = 7
    READ = 8
    SAMPLE = 9
    MMAP2 = 10
    AUX = 11
    ITRACE_START = 12
    LOST_SAMPLES = 13
    SWITCH = 14
    SWITCH_CPU_WIDE = 15
    NAMESPACES = 16
    KSYMBOL = 17
    BPF_EVENT = 18
    CGROUP = 19
    TEXT_POKE = 20
    AUX_OUTPUT_HW_ID = 21


class PerfFlag(IntConst):
    """perf_event_open(2) ``flags`` bits without ``PERF_FLAG_``."""
    FD_NO_GROUP = 1 << 0
    FD_OUTPUT = 1 << 1
    PID_CGROUP = 1 << 2
    FD_CLOEXEC = 1 << 3
