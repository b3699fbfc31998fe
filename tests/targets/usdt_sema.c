/* rpt:sema, a probe with a semaphore (see usdt_target.c): the kernel raises
 * rpt_sema_semaphore while a uprobe with its ref_ctr_offset is attached. */
#define _SDT_HAS_SEMAPHORES 1
#include <stdio.h>
#include <sys/sdt.h>

unsigned short rpt_sema_semaphore __attribute__((section(".probes")));

__attribute__((noinline)) void fire_sema(long v)
{
	if (rpt_sema_semaphore) {
		STAP_PROBE1(rpt, sema, v);
		printf("fire rpt:sema %ld\n", v);
	}
}
