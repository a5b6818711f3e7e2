/* Scenario: the signals each thread blocks are kernel state that a checkpoint restore puts back.
   At every step the main thread blocks one more real-time signal and unblocks the one it blocked
   two steps before; a worker thread blocks one more of its own. Each step prints both threads'
   masks as sigprocmask reports them, so a thread resumed with a later step's mask prints another
   line than a clean run does. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>

#define STEPS 8

static pthread_barrier_t turn;
static unsigned long worker_mask;       /* the worker's, as it saw it this step */

static unsigned long blocked(void)
{
    sigset_t now;
    unsigned long bits = 0;
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    for (int sig = 1; sig <= 64; sig++)
        if (sigismember(&now, sig) == 1)
            bits |= 1UL << (sig - 1);
    return bits;
}

static void change(int how, int sig)
{
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    pthread_sigmask(how, &one, NULL);
}

void report(int step)
{
    printf("| step %d: main blocks %#lx, worker blocks %#lx\n", step, blocked(), worker_mask);
    fflush(stdout);
}

static void *worker(void *arg)
{
    (void)arg;
    for (int step = 1; step <= STEPS; step++) {
        change(SIG_BLOCK, SIGRTMIN + 16 + step);
        worker_mask = blocked();
        pthread_barrier_wait(&turn);    /* the worker's mask is in */
        pthread_barrier_wait(&turn);    /* main has reported */
    }
    return NULL;
}

int main(void)
{
    pthread_t t;
    pthread_barrier_init(&turn, NULL, 2);
    pthread_create(&t, NULL, worker, NULL);
    for (int step = 1; step <= STEPS; step++) {
        change(SIG_BLOCK, SIGRTMIN + step);
        if (step > 2)
            change(SIG_UNBLOCK, SIGRTMIN + step - 2);
        pthread_barrier_wait(&turn);
        report(step);
        pthread_barrier_wait(&turn);
    }
    pthread_join(t, NULL);
    printf("| done\n");
    return 0;
}
