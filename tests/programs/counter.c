/* Scenario: same-process and new-process restore of globals, a heap list and a stack array.
   Prints "| step N ..." at every step and checks the list against the global at the end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct node { long value; struct node *next; };

long total;
struct node *list;
char big[1 << 20];          /* 1 MiB of .bss the program scribbles on */

void report(int step, long window)
{
    printf("| step %2d: total=%ld head=%ld window=%ld big=%d\n", step, total, list->value, window,
           big[step * 4099 % sizeof big]);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    int steps = argc > 1 ? atoi(argv[1]) : 10;
    long history[8] = {0};
    for (int step = 1; step <= steps; step++) {
        struct node *n = malloc(sizeof *n);
        n->value = (long)step * step;
        n->next = list;
        list = n;
        total += n->value;
        history[step % 8] = total;
        memset(big + step * 4099 % sizeof big, step, 64);
        long window = 0;
        for (int i = 0; i < 8; i++)
            window += history[i];
        report(step, window);
    }
    long check = 0;
    for (struct node *p = list; p; p = p->next)
        check += p->value;
    printf("| done: total=%ld, list check %s\n", total, check == total ? "ok" : "MISMATCH");
    return 0;
}
