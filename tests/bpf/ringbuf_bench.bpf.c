// Flood producer for tools/bench_ringbuf.py: fixed-size five-field events
// into a large ring buffer, as fast as bpf_loop goes.
// Built by `make test-objects` (UAPI headers only, no vmlinux.h).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

// Python: struct.Struct("<QQIIQ")
struct event {
	__u64 seq;
	__u64 ts;
	__u32 pid;
	__u32 cpu;
	__u64 value;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 32 << 20);
} rb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

struct flood_ctx {
	__u64 first;
	__u64 flags;
	__u64 pid;
	__u64 sent;
};

static long flood_one(__u64 i, void *data)
{
	struct flood_ctx *c = data;
	struct event *e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);

	if (!e) {
		__u32 zero = 0;
		__u64 *d = bpf_map_lookup_elem(&drops, &zero);

		if (d)
			__sync_fetch_and_add(d, 1);
		return 0;
	}
	e->seq = c->first + i;
	e->ts = bpf_ktime_get_ns();
	e->pid = c->pid;
	e->cpu = bpf_get_smp_processor_id();
	e->value = i;
	bpf_ringbuf_submit(e, c->flags);
	c->sent++;
	return 0;
}

// args: [0] events (at most 2^23), [1] first seq, [2] submit flags
// (BPF_RB_NO_WAKEUP = 1 spares the wake-up per record).  Returns events sent;
// each failed reservation adds one to drops[0].
SEC("raw_tp")
int flood(struct bpf_raw_tracepoint_args *ctx)
{
	struct flood_ctx c = {
		.first = ctx->args[1], .flags = ctx->args[2],
		.pid = bpf_get_current_pid_tgid() >> 32,
	};

	bpf_loop(ctx->args[0] & 0x7fffff, flood_one, &c, 0);
	return c.sent;
}
