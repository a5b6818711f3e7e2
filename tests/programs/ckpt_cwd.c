/* Scenario: the working directory is process state a restore puts back. From the folder given as
   argument, each step goes one folder deeper (mkdir and chdir "sub", relative to where it is) and
   prints how deep it is: resumed in a later step's folder, it prints other depths. */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void report(int step, int depth)
{
    printf("| step %d: depth %d\n", step, depth);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    char start[PATH_MAX], now[PATH_MAX];
    if (argc < 2 || chdir(argv[1]) != 0 || !getcwd(start, sizeof start))
        return 2;
    for (int step = 1; step <= 6; step++) {
        mkdir("sub", 0700);
        if (chdir("sub") != 0 || !getcwd(now, sizeof now))
            return 3;
        int depth = 0;
        for (char *p = now + strlen(start); *p; p++)
            depth += *p == '/';
        report(step, depth);
    }
    printf("| done\n");
    return 0;
}
