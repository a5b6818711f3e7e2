/* The restore benchmark's program: BIG_MIB MiB (argv[1], default 256) of heap, every page touched
   and filled with a pattern, then a stop at bench_stop() for the debugger. The debugger calls
   fill() to make the memory differ between restores and checksum() to verify one.
   After bench_stop() returns, the program changes all of it and reports its checksum. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define NOINLINE __attribute__((noinline, used))

uint64_t *buf;              /* malloc'd: glibc maps a block this size with mmap */
size_t words;

/* Every word depends on its index and `seed`, so two seeds differ in every word. */
NOINLINE void fill(uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < words; i++)
        buf[i] = (i * 0xD6E8FEB86659FD93ull) ^ x;
}

NOINLINE uint64_t checksum(void)
{
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < words; i++)
        h = (h ^ buf[i]) * 0x100000001B3ull;
    return h;
}

NOINLINE void bench_stop(void)
{
    __asm__ volatile("" ::: "memory");
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 256;
    words = (mib << 20) / sizeof *buf;
    buf = malloc(words * sizeof *buf);
    if (!buf) {
        perror("malloc");
        return 1;
    }
    fill(1);
    bench_stop();
    fill(2);
    printf("checksum %016llx\n", (unsigned long long)checksum());
    return 0;
}
