/* Scenario: `set checkpoint-auto on` and `checkpoint back`. Each of N iterations changes globals, a
   local, a heap list and a string, then calls tick(), which prints them (gdb stops in tick() or
   steps through main with `next`). `printed` counts the lines printed so far, so a test can tell
   where in the output a stop is. The end checks the list against the running sum.
   Usage: ckpt_walk [N] */
#include <stdio.h>
#include <stdlib.h>

struct node { long value; struct node *next; };

long a = 1, b = 2;
long sum;
int printed;
struct node *list;
char label[32];

void tick(int i)
{
    printf("| %2d: a=%ld b=%ld head=%ld label=%s\n", i, a, b, list->value, label);
    fflush(stdout);
    printed++;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 30;
    int i;
    long local = 7;
    for (i = 1; i <= n; i++) {
        a = a * 3 + i;
        b ^= a << (i % 7);
        local = local * 5 % 1000003;
        struct node *p = malloc(sizeof *p);
        p->value = a % 100000 + local;
        p->next = list;
        list = p;
        sum += p->value;
        snprintf(label, sizeof label, "tick-%d-%ld", i, local % 1000);
        tick(i);
    }
    long check = 0;
    for (struct node *p = list; p; p = p->next)
        check += p->value;
    printf("| done: sum=%ld, list check %s\n", sum, check == sum ? "ok" : "MISMATCH");
    return 0;
}
