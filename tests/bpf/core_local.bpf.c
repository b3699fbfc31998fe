// SPDX-License-Identifier: GPL-2.0
/* CO-RE relocations against core_target.bpf.c's BTF (see there); never loaded.
 *   clang-19 -g -O2 -target bpf -D__TARGET_ARCH_x86 \
 *       -I/usr/include/x86_64-linux-gnu -fdebug-prefix-map=$PWD=. \
 *       -c core_local.bpf.c -o core_local.bpf.o
 */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#ifndef bpf_core_field_signed
#define bpf_core_field_signed(field) \
	__builtin_preserve_field_info(field, BPF_FIELD_SIGNED)
#endif

struct pt {
	int x;
	int y;
} __attribute__((preserve_access_index));

enum color { RED = 1, GREEN = 5, BLUE = -3, PURPLE = 9 };
enum big { BIG_A = 0x100000000ULL, BIG_B = 7 };
enum big___small { BIG_B___small = 7 };                 /* ENUM locally, ENUM64 in target */

struct thing {
	int a;
	unsigned int flags: 3;
	unsigned int mode: 5;
	short s2;                  /* inside anonymous union/struct in the target */
	__u64 counter;
	long long scount;
	struct pt pts[4];
	char name[8];
	void *ptr;
	enum color color;
	enum big big;
	int *int_not_ptr;
	int missing;
	unsigned short grid[2][3]; /* [3][4] in the target */
	int tail[];
} __attribute__((preserve_access_index));

typedef struct thing thing_t;
typedef int my_int;

union un {
	int i;
} __attribute__((preserve_access_index));

struct nonexistent {
	int x;
};

struct amb {
	int b;
} __attribute__((preserve_access_index));

/* Bitfields that straddle their type's size in the (packed) target. */
struct pk {
	unsigned int mid: 30;
	unsigned int hi: 10;
} __attribute__((preserve_access_index));

struct pk2 {
	unsigned int edge: 16;
} __attribute__((preserve_access_index));

struct dup {
	int a;
} __attribute__((preserve_access_index));

struct opaque {
	int whatever;
};

/* TYPE_MATCHES: enumerators a subset of the target's (flavour ignored)... */
enum color___m { RED___m = 1, GREEN___m };
/* ...a struct with a subset of the target's members, same types... */
struct match_me {
	int a;
	struct opaque *o;          /* a FWD in the target: fine behind a pointer */
	enum color___m c;          /* `enum color` here would not match: PURPLE */
} __attribute__((preserve_access_index));
/* ...a signedness mismatch... */
struct match_me___sign {
	unsigned int a;
};
/* ...an array length mismatch... */
struct match_me___arr {
	int arr[4];
};
/* ...an enum with a name the target lacks. */
enum color___x { RED___x = 1, ORANGE___x };

__u64 sink[64];

SEC("raw_tracepoint/fields")
int fields(struct thing *t)
{
	sink[0] = t->a;                                    /* LDX, 4 bytes */
	sink[1] = t->s2;                                   /* LDX through anon members */
	sink[2] = t->counter;                              /* LDX 8 -> 4 bytes */
	if (bpf_core_field_exists(t->scount))
		sink[3] = t->scount;                       /* signed, size changes: poison */
	sink[4] = t->pts[2].y;
	sink[5] = t->name[3];
	sink[6] = t->tail[5];                              /* flexible array */
	t->a = 42;                                         /* ST imm */
	t->color = sink[7];                                /* STX */
	if (bpf_core_field_exists(t->missing))
		sink[8] = t->missing;
	sink[9] = bpf_core_field_exists(t->missing);
	sink[10] = bpf_core_field_exists(t->int_not_ptr);
	sink[11] = bpf_core_field_exists(t->a);
	sink[12] = bpf_core_field_size(t->pts);
	sink[13] = bpf_core_field_size(t->pts[1]);
	sink[14] = bpf_core_field_size(t->name);
	sink[15] = bpf_core_field_size(t->counter);
	sink[16] = bpf_core_field_signed(t->a);
	sink[17] = bpf_core_field_signed(t->counter);
	sink[18] = bpf_core_field_signed(t->color);
	sink[19] = bpf_core_field_signed(t->big);
	sink[20] = BPF_CORE_READ_BITFIELD(t, flags);
	sink[21] = BPF_CORE_READ_BITFIELD(t, mode);
	sink[22] = bpf_core_field_offset(t->color);
	sink[23] = **t->grid;                              /* LDX of the member: 2 bytes */
	sink[24] = t->grid[1][2];                          /* clang relocates grid[1] only */
	sink[25] = bpf_core_field_size(t->grid);
	sink[26] = bpf_core_field_size(t->grid[1]);
	sink[27] = BPF_CORE_READ_BITFIELD((struct pk *)t, mid);   /* needs an 8-byte load */
	sink[28] = BPF_CORE_READ_BITFIELD((struct pk2 *)t, edge); /* ends where 4 bytes do */
	return 0;
}

SEC("raw_tracepoint/types")
int types(void *ctx)
{
	sink[30] = bpf_core_type_id_local(struct thing);
	sink[31] = bpf_core_type_id_kernel(struct thing);
	sink[32] = bpf_core_type_id_kernel(thing_t);
	sink[33] = bpf_core_type_exists(struct thing);
	sink[34] = bpf_core_type_exists(struct nonexistent);
	sink[35] = bpf_core_type_exists(my_int);
	sink[36] = bpf_core_type_exists(union un);
	sink[37] = bpf_core_type_size(struct thing);
	sink[38] = bpf_core_type_size(struct pt);
	sink[39] = bpf_core_type_size(my_int);
	sink[40] = bpf_core_type_size(struct nonexistent);
	sink[41] = bpf_core_type_matches(struct match_me);
	sink[42] = bpf_core_type_matches(struct match_me___sign);
	sink[43] = bpf_core_type_matches(struct match_me___arr);
	sink[44] = bpf_core_type_matches(enum color___m);
	sink[45] = bpf_core_type_matches(enum color___x);
	sink[46] = bpf_core_type_id_kernel(struct nonexistent);
	return 0;
}

SEC("raw_tracepoint/enums")
int enums(void *ctx)
{
	sink[50] = bpf_core_enum_value_exists(enum color, GREEN);
	sink[51] = bpf_core_enum_value_exists(enum color, PURPLE);
	sink[52] = bpf_core_enum_value(enum color, GREEN);
	sink[53] = bpf_core_enum_value(enum color, BLUE);
	sink[54] = bpf_core_enum_value(enum big, BIG_A);
	sink[55] = bpf_core_enum_value(enum big___small, BIG_B___small);
	if (bpf_core_enum_value_exists(enum color, PURPLE))
		sink[56] = bpf_core_enum_value(enum color, PURPLE);   /* poisoned */
	return 0;
}

SEC("raw_tracepoint/flavours")
int flavours(struct dup *d)
{
	sink[60] = d->a;                                   /* two agreeing candidates */
	return 0;
}

SEC("raw_tracepoint/ambiguous")
int ambiguous(struct amb *a)
{
	sink[61] = a->b;                                   /* two disagreeing candidates */
	return 0;
}

SEC("raw_tracepoint/toowide")
int toowide(struct pk *pk)
{
	sink[62] = BPF_CORE_READ_BITFIELD(pk, hi);         /* no single 8-byte load holds it */
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
