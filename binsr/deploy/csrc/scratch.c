/* Scratch memory reused across calls: fresh large mallocs are mmapped and page-faulted on every layer
 * (glibc returns them at free), which cost more than small layers' arithmetic. One cached block; a
 * call that finds it taken (another Python thread, the GIL being released) uses its own malloc. */
#include <stdlib.h>
#include "bitkernels.h"

static void *scratch_block = NULL;
static size_t scratch_size = 0;
static int scratch_taken = 0;

void *scratch_take(size_t size, int *cached) {
    *cached = !__atomic_exchange_n(&scratch_taken, 1, __ATOMIC_ACQUIRE);
    if (!*cached) return malloc(size);
    if (scratch_size < size) {
        free(scratch_block);
        scratch_block = malloc(size);
        scratch_size = scratch_block ? size : 0;
    }
    if (!scratch_block) __atomic_store_n(&scratch_taken, 0, __ATOMIC_RELEASE);
    return scratch_block;
}

void scratch_give(void *block, int cached) {
    if (cached) __atomic_store_n(&scratch_taken, 0, __ATOMIC_RELEASE);
    else free(block);
}

/* the next 64-byte aligned piece of `bytes` bytes from *at (NULL for 0 bytes) */
void *carve(char **at, size_t bytes) {
    if (!bytes) return NULL;
    void *piece = *at;
    *at += (bytes + 63) / 64 * 64;
    return piece;
}

