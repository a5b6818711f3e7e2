/* Scenario: a thread stopped in the middle of a sleep. The worker stops in poke() while main is
   in nanosleep(), so gdb stops main inside the system call, and a checkpoint taken there holds
   main's registers at its restart. Each step prints what nanosleep returned. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static volatile int sleeping, done;

void poke(void) {}

void report(int step, int r, int err)
{
    printf("| step %d: nanosleep returned %d, errno %d\n", step, r, err);
    fflush(stdout);
}

static void *worker(void *arg)
{
    (void)arg;
    while (!sleeping)
        usleep(1000);
    usleep(100 * 1000);     /* main is asleep by now */
    poke();
    while (!done)           /* alive until main is done: checkpoints need the same threads */
        usleep(1000);
    return NULL;
}

int main(void)
{
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    for (int step = 1; step <= 3; step++) {
        struct timespec nap = {0, 400 * 1000 * 1000};
        sleeping = 1;
        errno = 0;
        int r = nanosleep(&nap, NULL);
        report(step, r, errno);
    }
    done = 1;
    pthread_join(t, NULL);
    printf("| done\n");
    return 0;
}
