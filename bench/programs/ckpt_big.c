/* The checkpoint benchmark's program: MIB MiB (argv[1], default 256) of heap filled page by page
   with varied, partly compressible data, then a stop at bench_stop() for the debugger.

   The debugger calls touch() to rewrite some pages (spread over the buffer or contiguous, each
   with new content) and checksum() to verify a restore. After bench_stop() returns, stepper()
   loops forever touching one word of a different page per iteration, for `next` and
   checkpoint-auto timings (it is built without optimisation so that `next` walks its lines). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOINLINE __attribute__((noinline, used))
#define PAGE_WORDS 512      /* 4 KiB */

uint64_t *buf;              /* malloc'd: glibc maps a block this size with mmap */
size_t words, pages;
volatile uint64_t steps;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 33;
    x *= 0xC4CEB9FE1A85EC53ull;
    return x ^ (x >> 33);
}

/* One page of content from (page, seed). Four kinds, chosen by the page number, so the buffer
   compresses to roughly half: random words, small-alphabet text, a repeated 64-byte record,
   and half random / half zero. */
static void fill_page(size_t page, uint64_t seed)
{
    uint64_t *p = buf + page * PAGE_WORDS;
    uint64_t x = mix(page * 0x9E3779B97F4A7C15ull ^ seed * 0xD6E8FEB86659FD93ull) | 1;
    switch (mix(page) & 3) {
    case 0:                 /* incompressible */
        for (int i = 0; i < PAGE_WORDS; i++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            p[i] = x;
        }
        break;
    case 1: {               /* text-like: 16 letters */
        unsigned char *c = (unsigned char *)p;
        for (int i = 0; i < PAGE_WORDS * 8; i++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            c[i] = "etaoin shrdlucmf"[x >> 60];
        }
        break;
    }
    case 2:                 /* a record repeated */
        for (int i = 0; i < PAGE_WORDS; i++)
            p[i] = i % 8 == 0 ? x + i : (uint64_t)(i % 8) * 0x0101010101010101ull;
        break;
    default:                /* half random, half zero */
        for (int i = 0; i < PAGE_WORDS; i++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            p[i] = i < PAGE_WORDS / 2 ? x : 0;
        }
    }
}

NOINLINE void fill(uint64_t seed)
{
    for (size_t page = 0; page < pages; page++)
        fill_page(page, seed);
}

/* Rewrite `count` pages with new content from `seed`: pages first, first + stride, ... (mod the
   page count). stride 1 is a contiguous run. Returns how many pages it wrote. */
NOINLINE long touch(uint64_t seed, long first, long count, long stride)
{
    for (long k = 0; k < count; k++)
        fill_page((size_t)(first + k * stride) % pages, seed + (uint64_t)k * 0x10001);
    return count;
}

NOINLINE uint64_t checksum(void)
{
    /* Four FNV-style lanes so the multiply chains overlap; ~0.05 s for 256 MiB. */
    uint64_t h[4] = {0xCBF29CE484222325ull, 1, 2, 3};
    for (size_t i = 0; i + 3 < words; i += 4)
        for (int l = 0; l < 4; l++)
            h[l] = (h[l] ^ buf[i + l]) * 0x100000001B3ull;
    return mix(h[0] ^ mix(h[1] ^ mix(h[2] ^ mix(h[3]))));
}

NOINLINE void bench_stop(void)
{
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline, used, optimize("O0"))) void stepper(void)
{
    size_t page = 0;
    for (;;) {
        page = (page + 97) % pages;
        buf[page * PAGE_WORDS + 7] ^= steps;
        steps++;
    }
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 256;
    words = (mib << 20) / sizeof *buf;
    pages = words / PAGE_WORDS;
    buf = malloc(words * sizeof *buf);
    if (!buf || !pages) {
        perror("malloc");
        return 1;
    }
    fill(1);
    bench_stop();
    stepper();
    printf("checksum %016llx\n", (unsigned long long)checksum());
    return 0;
}
