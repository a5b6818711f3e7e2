/* Scenario: each step writes one word into every 8th page of a 16 MiB buffer (512 pages, two in
   each 64 KiB chunk, from a different first page each step), so saves and the undo save a restore
   makes store many scattered written pages, not whole chunks. step_done() is where gdb stops; it
   prints the step and a hash of the whole buffer. Usage: ckpt_scatter [STEPS] */
#include <stdio.h>
#include <stdlib.h>

#define SIZE (16 << 20)
#define PAGE 4096
#define STRIDE 8

unsigned char buf[SIZE];
unsigned long long seed = 2463534242ULL;

void step_done(int step, unsigned long long hash)
{
    printf("| step %2d: hash %016llx\n", step, hash);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int steps = argc > 1 ? atoi(argv[1]) : 8;
    for (int step = 1; step <= steps; step++) {
        for (long page = step % STRIDE; page < SIZE / PAGE; page += STRIDE) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *(unsigned long long *)(buf + page * PAGE + seed % (PAGE - 8)) = seed;
        }
        unsigned long long hash = 1469598103934665603ULL;
        for (long i = 0; i < SIZE; i += 8)
            hash = (hash ^ *(unsigned long long *)(buf + i)) * 1099511628211ULL;
        step_done(step, hash);
    }
    printf("| done\n");
    return 0;
}
