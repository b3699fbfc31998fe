/* libbpf as the oracle for tests/test_usdt.py: load tests/bpf/usdt.bpf.o with
 * libbpf, attach it as the test attaches it under rawprobe, and print what the
 * programs recorded.
 *
 *   usdt_libbpf OBJ BINARY PROVIDER:NAME:COOKIE...
 *
 * on_probe is attached with bpf_program__attach_usdt to each PROVIDER:NAME
 * with its cookie, on_consts by its section name (bpf_program__attach).  Then
 * it prints "ready", waits for a line on stdin (the test runs the target
 * meanwhile), and prints one line per struct usdt_rec in the ring buffer:
 *   rec PROG PID COOKIE ARG_CNT ARG0 ... ARG5
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/types.h>
#include <bpf/libbpf.h>

#include "../bpf/usdt_rec.h"

static int on_rec(void *ctx, void *data, size_t size)
{
	const struct usdt_rec *r = data;

	printf("rec %u %u %llu %lld", r->prog, r->pid, (unsigned long long)r->cookie,
	       (long long)r->arg_cnt);
	for (int i = 0; i < USDT_REC_ARGS; i++)
		printf(" %lld", (long long)r->args[i]);
	printf("\n");
	return 0;
}

int main(int argc, char **argv)
{
	struct bpf_object *obj;
	struct bpf_program *probe, *consts;
	struct ring_buffer *rb;
	char line[16];

	if (argc < 3) {
		fprintf(stderr, "usage: %s OBJ BINARY PROVIDER:NAME:COOKIE...\n", argv[0]);
		return 2;
	}
	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj || bpf_object__load(obj)) {
		fprintf(stderr, "cannot load %s\n", argv[1]);
		return 1;
	}
	probe = bpf_object__find_program_by_name(obj, "on_probe");
	consts = bpf_object__find_program_by_name(obj, "on_consts");
	for (int i = 3; i < argc; i++) {
		char provider[64], name[64];
		unsigned long long cookie;
		LIBBPF_OPTS(bpf_usdt_opts, opts);

		if (sscanf(argv[i], "%63[^:]:%63[^:]:%llu", provider, name, &cookie) != 3)
			return 2;
		opts.usdt_cookie = cookie;
		if (!bpf_program__attach_usdt(probe, -1, argv[2], provider, name, &opts)) {
			fprintf(stderr, "cannot attach to %s\n", argv[i]);
			return 1;
		}
	}
	if (!bpf_program__attach(consts)) {
		fprintf(stderr, "cannot auto-attach on_consts\n");
		return 1;
	}
	rb = ring_buffer__new(bpf_map__fd(bpf_object__find_map_by_name(obj, "events")),
			      on_rec, NULL, NULL);
	if (!rb)
		return 1;
	printf("ready\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	ring_buffer__consume(rb);
	return 0;
}
