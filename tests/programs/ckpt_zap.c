/* Scenario: memory that changes without being written. At every step the program fills a 1 MiB
   anonymous mapping with that step's pattern and checks it (check(), where gdb stops, hashes it
   and prints the hash); then it empties the mapping without writing to it: with
   madvise(MADV_DONTNEED) (mode "dontneed") or by unmapping it and mapping it again at the same
   address (mode "remap"), and calls emptied(), where gdb can stop too. A restore made at emptied()
   must bring the pattern back although the program wrote nothing since the checkpoint.
   Usage: ckpt_zap dontneed|remap [STEPS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define SIZE (1 << 20)

unsigned char *region;

static unsigned long long hash(void)
{
    unsigned long long h = 1469598103934665603ULL;
    for (long i = 0; i < SIZE; i += 8)
        h = (h ^ *(unsigned long long *)(region + i)) * 1099511628211ULL;
    return h;
}

void check(int step)
{
    printf("| step %d: hash %016llx\n", step, hash());
    fflush(stdout);
}

void emptied(int step)
{
    printf("| step %d emptied: hash %016llx\n", step, hash());
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int remap = argc > 1 && strcmp(argv[1], "remap") == 0;
    int steps = argc > 2 ? atoi(argv[2]) : 5;
    region = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED)
        return 1;
    for (int step = 1; step <= steps; step++) {
        for (long i = 0; i < SIZE; i++)
            region[i] = (unsigned char)(i * 7 + step * 13 + (i >> 12));
        check(step);
        if (remap) {
            munmap(region, SIZE);
            if (mmap(region, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                     -1, 0) != region)
                return 1;
        } else {
            madvise(region, SIZE, MADV_DONTNEED);
        }
        emptied(step);
    }
    return 0;
}
