/* Scenario: a 4-thread program (main + 3 workers) restored thread by thread. Each worker keeps its
   accumulator on its own stack and publishes it at every phase; main prints all of them at each
   phase (phase() is where gdb stops) and the final results. Mixing up two threads' registers
   would swap stacks and show as different numbers or a crash. */
#include <pthread.h>
#include <stdio.h>

#define WORKERS 3
#define PHASES 5

pthread_barrier_t computed, released;
long progress[WORKERS];
long results[WORKERS];

void phase(int k)
{
    printf("| phase %d:", k);
    for (int i = 0; i < WORKERS; i++)
        printf(" %ld", progress[i]);
    printf("\n");
    fflush(stdout);
}

static void *worker(void *arg)
{
    long id = (long)arg;
    long acc = id + 1;              /* lives on this thread's stack */
    for (int k = 1; k <= PHASES; k++) {
        acc = acc * 31 + id * k + 7;
        progress[id] = acc;
        pthread_barrier_wait(&computed);
        pthread_barrier_wait(&released);
    }
    results[id] = acc;
    return NULL;
}

int main(void)
{
    pthread_t t[WORKERS];
    pthread_barrier_init(&computed, NULL, WORKERS + 1);
    pthread_barrier_init(&released, NULL, WORKERS + 1);
    for (long i = 0; i < WORKERS; i++)
        pthread_create(&t[i], NULL, worker, (void *)i);
    for (int k = 1; k <= PHASES; k++) {
        pthread_barrier_wait(&computed);
        phase(k);
        pthread_barrier_wait(&released);
    }
    for (int i = 0; i < WORKERS; i++)
        pthread_join(t[i], NULL);
    printf("| results: %ld %ld %ld\n", results[0], results[1], results[2]);
    fflush(stdout);
    return 0;
}
