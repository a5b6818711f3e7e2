/* Scenario: dirty tracking of a multi-threaded program under gdb (tests/integration/
   test_dirty_gdb.py). Four workers each own a slice of the arena; they fill it before stop1 (where
   the test starts tracking), then each writes 24 chosen pages of its slice while tracked, and a
   thread created while tracked writes 8 pages of its own slice. At stop2 (the scan) the workers
   wait at a barrier. The page addresses are printed by main in a fixed order, then checksums. */
#include <pthread.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#define WORKERS 4
#define SLICE 64
#define WRITES 24
#define LATE 8

volatile int stops;
void stop1(void) { stops++; }
void stop2(void) { stops++; }

static unsigned char *arena;
static long page;
static unsigned char *wrote[WORKERS + 1][WRITES];
static pthread_barrier_t ready, go, done, leave;

static void *worker(void *arg)
{
    long w = (long)arg;
    unsigned char *slice = arena + w * SLICE * page;
    for (long k = 0; k < SLICE; k++)                /* before tracking */
        slice[k * page + 7] = (unsigned char)(k + w);
    pthread_barrier_wait(&ready);
    pthread_barrier_wait(&go);
    for (long j = 0; j < WRITES; j++) {
        long k = (j * 5 + w) % SLICE;
        slice[k * page + (j * 13) % page] += (unsigned char)(j + 1);
        wrote[w][j] = slice + k * page;
    }
    pthread_barrier_wait(&done);
    pthread_barrier_wait(&leave);
    return NULL;
}

static void *late(void *arg)
{
    unsigned char *slice = arena + WORKERS * SLICE * page;
    for (long j = 0; j < LATE; j++) {
        slice[(j * 2 + 1) * page] = (unsigned char)(j * 3);
        wrote[WORKERS][j] = slice + (j * 2 + 1) * page;
    }
    return arg;
}

static unsigned long checksum(const unsigned char *p, size_t len)
{
    unsigned long h = 1469598103934665603UL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211UL;
    return h;
}

int main(void)
{
    page = sysconf(_SC_PAGESIZE);
    size_t len = (WORKERS + 1) * SLICE * page;
    arena = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    pthread_barrier_init(&ready, NULL, WORKERS + 1);
    pthread_barrier_init(&go, NULL, WORKERS + 1);
    pthread_barrier_init(&done, NULL, WORKERS + 1);
    pthread_barrier_init(&leave, NULL, WORKERS + 1);
    pthread_t t[WORKERS], l;
    for (long w = 0; w < WORKERS; w++)
        pthread_create(&t[w], NULL, worker, (void *)w);
    printf("| arena %p %p\n", (void *)arena, (void *)(arena + len));
    fflush(stdout);
    pthread_barrier_wait(&ready);
    stop1();
    pthread_barrier_wait(&go);
    pthread_create(&l, NULL, late, NULL);
    pthread_join(l, NULL);
    pthread_barrier_wait(&done);
    for (int w = 0; w <= WORKERS; w++)
        for (int j = 0; j < (w < WORKERS ? WRITES : LATE); j++)
            printf("| page %p\n", (void *)wrote[w][j]);
    fflush(stdout);
    stop2();
    pthread_barrier_wait(&leave);
    for (int w = 0; w < WORKERS; w++)
        pthread_join(t[w], NULL);
    for (int w = 0; w <= WORKERS; w++)
        printf("| sum slice %d %lx\n", w, checksum(arena + w * SLICE * page, SLICE * page));
    return 0;
}
