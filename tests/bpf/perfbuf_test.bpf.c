// Producer for the perf buffer consumer tests (tests/test_perfbuf.py).
// Run with BPF_PROG_TEST_RUN (optionally BPF_F_TEST_RUN_ON_CPU); the raw
// tracepoint context carries the arguments.
// Built by `make test-objects` (UAPI headers only, no vmlinux.h).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");

// 24 bytes (Python: struct.Struct("<QIIQ")); with the 4-byte raw size in
// front the sample is 28 bytes, so the kernel pads the raw data to 28.
struct event {
	__u64 seq;
	__u32 cpu;
	__u32 size;
	__u64 value;
};

struct loop_ctx {
	void *ctx;
	__u64 first;
	__u64 sent;
	__u64 failed;
};

static long emit_one(__u64 i, void *data)
{
	struct loop_ctx *c = data;
	struct event ev = {
		.seq = c->first + i,
		.cpu = bpf_get_smp_processor_id(),
		.size = sizeof(ev),
		.value = (c->first + i) * 7,
	};

	if (bpf_perf_event_output(c->ctx, &events, BPF_F_CURRENT_CPU, &ev, sizeof(ev)))
		c->failed++;
	else
		c->sent++;
	return 0;
}

// args: [0] number of samples, [1] first seq.  Returns samples written; the
// ones the kernel could not write come back as PERF_RECORD_LOST.
SEC("raw_tp")
int emit(struct bpf_raw_tracepoint_args *ctx)
{
	struct loop_ctx c = { .ctx = ctx, .first = ctx->args[1] };

	bpf_loop(ctx->args[0] & 0xffffff, emit_one, &c, 0);
	return c.sent;
}
