// SPDX-License-Identifier: GPL-2.0
/* pinning.bpf.c with pinned_counts twice as large: a definition that no
 * longer matches what an earlier load pinned. */
#define PINNED_MAX_ENTRIES 32
#include "pinning.bpf.c"
