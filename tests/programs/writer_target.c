/* Scenario: `checkpoint export` (gdb_checkpoint/core/writer.py) writes a core that stock gdb reads like
   gcore's. Globals, a heap list reached through a pointer, and two worker threads parked in
   functions of their own (so `thread apply all bt` has distinct frames); main stops in
   writer_checkpoint(). Argument N (MiB) also fills a heap buffer of that size, for timing. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct node {
    int value;
    char label[12];
    struct node *next;
};

struct config {
    int id;
    char name[16];
    double ratio;
};

long writer_counter = 41;
struct config writer_config = {7, "exported", 0.625};
struct node *writer_list;            /* heap list, built at run time */
char *writer_big;                    /* optional big heap buffer */
long writer_big_mib;
static pthread_barrier_t parked;

static void worker_park(long id)
{
    volatile long mine = 1000 + id;  /* on this worker's stack */
    (void)mine;
    pthread_barrier_wait(&parked);
    for (;;)
        pause();
}

static void *worker_main(void *arg)
{
    worker_park((long)arg);
    return NULL;
}

/* The tests break here. */
void writer_checkpoint(void)
{
    __asm__ volatile("" ::: "memory");
}

int main(int argc, char **argv)
{
    pthread_t threads[2];
    pthread_barrier_init(&parked, NULL, 3);
    for (long i = 0; i < 2; i++)
        pthread_create(&threads[i], NULL, worker_main, (void *)i);
    pthread_barrier_wait(&parked);

    for (int i = 5; i >= 1; i--) {
        struct node *n = malloc(sizeof *n);
        n->value = i * 11;
        snprintf(n->label, sizeof n->label, "node-%d", i);
        n->next = writer_list;
        writer_list = n;
    }
    writer_counter += 1;
    if (argc > 1) {
        writer_big_mib = atol(argv[1]);
        writer_big = malloc(writer_big_mib << 20);
        for (long i = 0; i < writer_big_mib << 20; i += 4096)
            writer_big[i] = (char)(i >> 12);
    }
    printf("| pid %d\n", (int)getpid());
    fflush(stdout);
    writer_checkpoint();
    return 0;
}
