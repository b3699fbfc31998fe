// Producers for the ring buffer consumer tests (tests/test_ringbuf.py).
// Run with BPF_PROG_TEST_RUN; the raw tracepoint context carries the arguments.
// Built by `make test-objects` (UAPI headers only, no vmlinux.h).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

// One event: five fields, 32 bytes (Python: struct.Struct("<QQIIQ")).
struct event {
	__u64 seq;
	__u64 ts;
	__u32 tag;
	__u32 cpu;
	__u64 value;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);		// small on purpose: forces wrap-around
} rb SEC(".maps");

// Failed reservations: the drop counter of rawprobe's convention.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

struct emit_ctx {
	__u64 first;
	__u64 mode;
	__u64 flags;
	__u64 sent;
};

static void count_drop(void)
{
	__u32 zero = 0;
	__u64 *d = bpf_map_lookup_elem(&drops, &zero);

	if (d)
		__sync_fetch_and_add(d, 1);
}

enum { SUBMIT = 0, DISCARD_ODD = 1, OUTPUT = 2 };

static long emit_one(__u64 i, void *data)
{
	struct emit_ctx *c = data;
	__u64 seq = c->first + i;
	struct event *e;

	if (c->mode == OUTPUT) {
		struct event ev = {
			.seq = seq, .ts = bpf_ktime_get_ns(), .tag = 0xe0e0,
			.cpu = bpf_get_smp_processor_id(), .value = seq * 3,
		};

		if (bpf_ringbuf_output(&rb, &ev, sizeof(ev), c->flags))
			count_drop();
		else
			c->sent++;
		return 0;
	}
	e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);
	if (!e) {
		count_drop();
		return 0;
	}
	e->seq = seq;
	e->ts = bpf_ktime_get_ns();
	e->tag = 0xe0e0;
	e->cpu = bpf_get_smp_processor_id();
	e->value = seq * 3;
	if (c->mode == DISCARD_ODD && (seq & 1)) {
		bpf_ringbuf_discard(e, c->flags);
		return 0;
	}
	bpf_ringbuf_submit(e, c->flags);
	c->sent++;
	return 0;
}

// args: [0] number of events, [1] first seq, [2] mode, [3] wake-up flags.
// Returns the number of events submitted.
SEC("raw_tp")
int emit(struct bpf_raw_tracepoint_args *ctx)
{
	struct emit_ctx c = {
		.first = ctx->args[1], .mode = ctx->args[2], .flags = ctx->args[3],
	};

	bpf_loop(ctx->args[0] & 0xffffff, emit_one, &c, 0);
	return c.sent;
}

// Records of varying sizes: record i has 1 + (first + i) % 200 bytes, each
// byte (first + i) & 0xff, so the consumer can check length and content.
struct var_ctx {
	__u64 first;
	__u64 sent;
	__u8 buf[256];
};

static long emit_var_one(__u64 i, void *data)
{
	struct var_ctx *c = data;
	__u64 seq = c->first + i;
	__u64 len = 1 + seq % 200;

	__builtin_memset(c->buf, seq & 0xff, sizeof(c->buf));
	// Bound the size where the verifier sees it (clang drops a plain mask).
	asm volatile("%0 &= 0xff" : "+r"(len));
	if (bpf_ringbuf_output(&rb, c->buf, len, 0))
		count_drop();
	else
		c->sent++;
	return 0;
}

// args: [0] number of records, [1] first seq.  Returns records written.
SEC("raw_tp")
int emit_var(struct bpf_raw_tracepoint_args *ctx)
{
	struct var_ctx c = { .first = ctx->args[1] };

	bpf_loop(ctx->args[0] & 0xffffff, emit_var_one, &c, 0);
	return c.sent;
}

static long spin(__u64 i, void *data)
{
	return 0;
}

// Holds a reservation while spinning, to show the consumer a BUSY header with
// a committed record behind it.  args: [0] spin iterations, [1] first seq.
// Record order in the ring: seq (held, committed last), then seq + 1.
SEC("raw_tp")
int hold(struct bpf_raw_tracepoint_args *ctx)
{
	struct event *held, *next;

	held = bpf_ringbuf_reserve(&rb, sizeof(*held), 0);
	if (!held)
		return -1;
	next = bpf_ringbuf_reserve(&rb, sizeof(*next), 0);
	if (!next) {
		bpf_ringbuf_discard(held, 0);
		return -1;
	}
	held->seq = ctx->args[1];
	next->seq = ctx->args[1] + 1;
	held->ts = next->ts = bpf_ktime_get_ns();
	held->tag = next->tag = 0xb0b0;
	held->cpu = next->cpu = bpf_get_smp_processor_id();
	held->value = next->value = 0;
	bpf_ringbuf_submit(next, 0);
	bpf_loop(ctx->args[0] & 0x7fffff, spin, 0, 0);
	bpf_ringbuf_submit(held, 0);
	return 0;
}
