/* Scenario: worker threads malloc from arenas of their own. glibc reserves each arena's 64 MiB
   as PROT_NONE memory and makes it writable as the arena grows, so a younger process has less of
   it writable than a checkpoint taken later: a restore must give the saved protections back, or
   the next malloc in that arena faults. Each step, two workers each allocate 100 << step blocks
   of 1000 bytes and keep them; main prints what they summed. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORKERS 2
#define STEPS 6

static long sums[WORKERS + 1];
static pthread_barrier_t turn;

void report(int step)
{
    long total = 0;
    for (int i = 1; i <= WORKERS; i++)
        total += sums[i];
    printf("| step %d: total %ld\n", step, total);
    fflush(stdout);
}

static void *worker(void *arg)
{
    long id = (long)arg;
    for (int step = 0; step < STEPS; step++) {
        pthread_barrier_wait(&turn);
        for (int i = 0; i < 100 << step; i++) {
            char *block = malloc(1000);
            memset(block, (int)(i + id), 1000);
            sums[id] += block[999];
        }
        pthread_barrier_wait(&turn);
    }
    return NULL;
}

int main(void)
{
    pthread_t t[WORKERS + 1];
    pthread_barrier_init(&turn, NULL, WORKERS + 1);
    for (long i = 1; i <= WORKERS; i++)
        pthread_create(&t[i], NULL, worker, (void *)i);
    for (int step = 0; step < STEPS; step++) {
        pthread_barrier_wait(&turn);
        pthread_barrier_wait(&turn);
        report(step);
    }
    for (int i = 1; i <= WORKERS; i++)
        pthread_join(t[i], NULL);
    printf("| done\n");
    return 0;
}
