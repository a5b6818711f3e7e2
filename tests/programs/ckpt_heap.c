/* Scenario: the heap grows with brk at every step (malloc's mmap threshold raised), and each step
   prints where the program break stands from where it began and whether the step's block lies
   in the heap. A restore that re-creates heap memory without moving the kernel's break leaves
   the next malloc unable to grow the heap: it maps its block elsewhere, and the line says so. */
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define STEPS 8

static char *base;

void report(int step, char *block)
{
    char *brk_now = sbrk(0);
    printf("| step %d: break at +%ld, block in heap: %s\n", step, (long)(brk_now - base),
           block >= base && block < brk_now ? "yes" : "no");
    fflush(stdout);
}

int main(void)
{
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    base = sbrk(0);
    for (int step = 1; step <= STEPS; step++) {
        char *block = malloc(step * (256 << 10));
        memset(block, step, step * (256 << 10));
        report(step, block);
    }
    printf("| done\n");
    return 0;
}
