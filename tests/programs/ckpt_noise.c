/* Scenario: checkpoints of a program whose big buffer (4 MiB of .bss) is refilled with fresh
   pseudo-random bytes at every step, so each checkpoint adds megabytes no other one shares:
   deleting checkpoints must give that space back, and damage in the middle of the store lands in
   bytes a restore needs. step_done() is where gdb stops; it prints the step and a hash of the
   buffer. Usage: ckpt_noise [STEPS] */
#include <stdio.h>
#include <stdlib.h>

#define SIZE (4 << 20)

unsigned long long buf[SIZE / 8];
unsigned long long seed = 88172645463325252ULL;

void step_done(int step, unsigned long long hash)
{
    printf("| step %2d: hash %016llx\n", step, hash);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int steps = argc > 1 ? atoi(argv[1]) : 8;
    for (int step = 1; step <= steps; step++) {
        unsigned long long hash = 1469598103934665603ULL;
        for (long i = 0; i < SIZE / 8; i++) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            buf[i] = seed;
            hash = (hash ^ seed) * 1099511628211ULL;
        }
        step_done(step, hash);
    }
    unsigned long long again = 1469598103934665603ULL;
    for (long i = 0; i < SIZE / 8; i++)
        again = (again ^ buf[i]) * 1099511628211ULL;
    printf("| done: last buffer hash %016llx\n", again);
    return 0;
}
