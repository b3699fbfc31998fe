// SPDX-License-Identifier: GPL-2.0
/* A stand-in "kernel" for CO-RE tests: its BTF is the relocation target for
 * core_local.bpf.c, and its .rodata holds the answers the compiler computed
 * (offsetof/sizeof), so the tests check rawprobe against clang, not against
 * rawprobe.  Nothing here is ever loaded.
 *   clang-19 -g -O2 -target bpf -D__TARGET_ARCH_x86 \
 *       -I/usr/include/x86_64-linux-gnu -fdebug-prefix-map=$PWD=. \
 *       -c core_target.bpf.c -o core_target.bpf.o
 */
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

#undef offsetof
#define offsetof(t, m) __builtin_offsetof(t, m)

struct pt {
	int x;
	int y;
};

enum color { RED = 1, GREEN = 5, BLUE = -3 };           /* signed ENUM */
enum big { BIG_A = 0x100000000ULL, BIG_B = 7 };         /* ENUM64 */

struct opaque;                                          /* stays a FWD */

struct thing {
	long pad;
	int a;
	unsigned int flags: 3;     /* bits 96..98 */
	unsigned int mode: 5;      /* bits 99..103 */
	union {
		int u1;
		struct {
			short s1;
			short s2;
		};
	};
	unsigned int counter;      /* local: __u64 (unsigned: load is narrowed) */
	int scount;                /* local: long long (signed: poisoned) */
	struct pt pts[4];
	char name[8];
	void *ptr;
	enum color color;
	enum big big;
	struct pt *pp;
	int int_not_ptr;           /* local: int * (incompatible) */
	unsigned short grid[3][4]; /* local: [2][3] (the elements, 2 bytes, are loaded) */
	int tail[];
};

typedef struct thing thing_t;
typedef int my_int;

union un {
	int i;
	long l;
};

/* Two flavours that disagree about where `b` is: ambiguous. */
struct amb {
	int a;
	int b;
};
struct amb___v2 {
	int b;
	int a;
};

/* Two flavours that agree about `a`: fine. */
struct dup {
	int a;
	int b;
};
struct dup___v2 {
	int a;
	long c;
};

struct match_me {
	int a;
	unsigned long long u;
	struct opaque *o;
	struct pt *p;
	enum color c;
	int arr[3];
};

/* Packed: bitfields are laid end to end, across their type's size. */
struct pk {
	char c;
	unsigned int mid: 30;      /* bits 8..37: 8 bytes from byte 0 hold it, 4 do not */
	unsigned int fill: 22;     /* bits 38..59 */
	unsigned int hi: 10;       /* bits 60..69: no 8-byte load holds it */
} __attribute__((packed));

struct pk2 {
	short s;
	unsigned int edge: 16;     /* bits 16..31: ends exactly where a 4-byte load does */
} __attribute__((packed));

struct pk g_pk;
struct pk2 g_pk2;
struct thing *g_thing;
thing_t *g_thing_t;
my_int g_my_int;
union un g_un;
struct amb g_amb;
struct amb___v2 g_amb2;
struct dup g_dup;
struct dup___v2 g_dup2;
struct match_me g_match;
enum color g_color;
enum big g_big;

/* The compiler's answers. */
const volatile __u64 expect_off_a = offsetof(struct thing, a);
const volatile __u64 expect_off_s2 = offsetof(struct thing, s2);
const volatile __u64 expect_off_counter = offsetof(struct thing, counter);
const volatile __u64 expect_off_scount = offsetof(struct thing, scount);
const volatile __u64 expect_off_pts2_y = offsetof(struct thing, pts[2].y);
const volatile __u64 expect_off_name3 = offsetof(struct thing, name[3]);
const volatile __u64 expect_off_tail5 = offsetof(struct thing, tail) + 5 * sizeof(int);
const volatile __u64 expect_off_color = offsetof(struct thing, color);
const volatile __u64 expect_size_pts = sizeof(((struct thing *)0)->pts);
const volatile __u64 expect_size_pt = sizeof(struct pt);
const volatile __u64 expect_size_name = sizeof(((struct thing *)0)->name);
const volatile __u64 expect_size_counter = sizeof(((struct thing *)0)->counter);
const volatile __u64 expect_size_thing = sizeof(struct thing);
const volatile __u64 expect_off_grid = offsetof(struct thing, grid);
const volatile __u64 expect_off_grid1 = offsetof(struct thing, grid[1]);
const volatile __u64 expect_size_grid = sizeof(((struct thing *)0)->grid);
const volatile __u64 expect_size_grid1 = sizeof(((struct thing *)0)->grid[1]);
const volatile __u64 expect_size_my_int = sizeof(my_int);
const volatile __u64 expect_off_amb_a = offsetof(struct amb, a);
const volatile __u64 expect_off_dup_a = offsetof(struct dup, a);

char LICENSE[] SEC("license") = "GPL";
