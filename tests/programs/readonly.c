/* Scenario: a writable page of the core is read-only in the live process (the program mprotect'ed
   it since), so process_vm_writev refuses it and rcore must fall back to /proc/PID/mem. */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

char page[4096] __attribute__((aligned(4096)));

void stop(int n) { printf("| stop %d: %s\n", n, page); fflush(stdout); }

int main(void)
{
    strcpy(page, "first words");
    stop(1);
    strcpy(page, "second words");
    mprotect(page, sizeof page, PROT_READ);
    stop(2);
    return 0;
}
