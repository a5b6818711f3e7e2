/* Scenario: the unit tests' fixture cores (tests/unit/conftest.py), one from gcore, one from the kernel.
   Prints "| NAME ADDR VALUE" about itself so the tests can check a core's bytes against the
   program's own word; two extra threads wait so the cores hold three NT_PRSTATUS notes.
   Run with argument "abort" to die in abort() after printing (the kernel then writes a core). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xmmintrin.h>

long unit_global = 1;
static pthread_barrier_t started;

static void *waiter(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&started);
    for (;;)
        pause();
    return NULL;
}

/* The tests break here (gcore) or abort here (kernel core). */
void unit_checkpoint(void)
{
    __asm__ volatile("" ::: "memory");
}

int main(int argc, char **argv)
{
    int crash = argc > 1 && strcmp(argv[1], "abort") == 0;
    pthread_t threads[2];
    pthread_attr_t attr;

    pthread_barrier_init(&started, NULL, 3);
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 << 10);     /* small stacks keep the cores small */
    for (int i = 0; i < 2; i++)
        pthread_create(&threads[i], &attr, waiter, NULL);
    pthread_barrier_wait(&started);

    unit_global = 0x5eed0000L + getpid();
    char *heap = malloc(64);
    snprintf(heap, 64, "heap-string-%d", (int)getpid());
    /* Round toward zero and mask underflow differently from the default, so MXCSR is not 0x1f80. */
    _mm_setcsr(0x7f80);

    printf("| pid %d\n", (int)getpid());
    printf("| global %p %ld\n", (void *)&unit_global, unit_global);
    printf("| heap %p %s\n", (void *)heap, heap);
    printf("| mxcsr %#x\n", _mm_getcsr());
    fflush(stdout);

    unit_checkpoint();
    if (crash)
        abort();
    printf("| done\n");
    return 0;
}
