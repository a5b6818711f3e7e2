/* The demo's program: state in a global, a heap list and a stack array, printed at every step.
   After the loop it checks the list against the global, so a bad restore shows as MISMATCH. */
#include <stdio.h>
#include <stdlib.h>

struct node { long value; struct node *next; };

long total;                 /* a global */
struct node *list;          /* a heap list */

void report(int step, long window)
{
    printf("step %2d: total=%-5ld head=%-4ld window=%ld\n", step, total, list->value, window);
    fflush(stdout);
}

int main(void)
{
    long history[8] = {0};  /* a stack array */
    for (int step = 1; step <= 10; step++) {
        struct node *n = malloc(sizeof *n);
        n->value = (long)step * step;
        n->next = list;
        list = n;
        total += n->value;
        history[step % 8] = total;
        long window = 0;
        for (int i = 0; i < 8; i++)
            window += history[i];
        report(step, window);
    }
    long check = 0;
    for (struct node *p = list; p; p = p->next)
        check += p->value;
    printf("done: total=%ld, list check %s\n", total, check == total ? "ok" : "MISMATCH");
    return 0;
}
