/* Scenario: dirty tracking under gdb (tests/integration/test_dirty_gdb.py). The test starts tracking
   at stop1; the program then writes a known set of pages of its arena (printing each address), reads
   others, maps a new region and writes it, grows the heap with sbrk and writes there, and reaches
   stop2, where the test scans. Then it prints checksums, the errno it saw around each stop, its
   descriptors (/proc/self/fd) and the number open() gives next: an untracked run must print the same
   lines, plus one descriptor for the tracked run that still tracks. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NPAGES 1024
#define WRITES 64
#define REGION 16
#define GROW 32

volatile int stops;
void stop1(void) { stops++; }
void stop2(void) { stops++; }

static unsigned long checksum(const unsigned char *p, size_t len)
{
    unsigned long h = 1469598103934665603UL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211UL;
    return h;
}

static void list_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int fds[256], n = 0;
    while ((e = readdir(d)) && n < 256)
        if (e->d_name[0] != '.')
            fds[n++] = atoi(e->d_name);
    for (int i = 0; i < n; i++) {            /* readdir's order is the kernel's: sort */
        for (int j = i + 1; j < n; j++)
            if (fds[j] < fds[i]) { int t = fds[i]; fds[i] = fds[j]; fds[j] = t; }
        char path[64], target[256] = "";
        snprintf(path, sizeof path, "/proc/self/fd/%d", fds[i]);
        ssize_t len = readlink(path, target, sizeof target - 1);
        target[len > 0 ? len : 0] = 0;
        char *colon = strchr(target, ':');   /* "pipe:[123]" -> "pipe"; paths differ between runs */
        if (target[0] == '/')
            strcpy(target, "path");
        else if (colon && !strstr(target, "anon_inode"))
            *colon = 0;
        if (fds[i] != dirfd(d))
            printf("| fd %d %s\n", fds[i], target);
    }
    closedir(d);
}

int main(void)
{
    long page = sysconf(_SC_PAGESIZE);
    unsigned char *arena = mmap(NULL, NPAGES * page, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (long i = 0; i < NPAGES; i += 5)        /* before tracking: must not be reported */
        arena[i * page + 1] = (unsigned char)i;
    printf("| arena %p %p\n", (void *)arena, (void *)(arena + NPAGES * page));
    fflush(stdout);

    errno = 77;
    stop1();
    int errno1 = errno;

    unsigned long reads = 0;
    for (long i = 0; i < WRITES; i++) {
        long k = (i * 37 + 11) % NPAGES;
        arena[k * page + (i * 101) % page] += (unsigned char)(i + 3);
        printf("| page %p\n", (void *)(arena + k * page));
    }
    for (long k = 3; k < NPAGES; k += 7)
        reads += arena[k * page + 9];
    unsigned char *region = mmap(NULL, REGION * page, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    region[0] = 1;
    region[3 * page + 17] = 2;
    printf("| region %p %p\n", (void *)region, (void *)(region + REGION * page));
    unsigned char *grown = sbrk(GROW * page);
    grown[0] = 3;
    grown[(GROW - 1) * page] = 4;
    printf("| brk %p %p\n", (void *)grown, (void *)(grown + GROW * page));
    fflush(stdout);

    errno = 78;
    stop2();
    int errno2 = errno;

    printf("| errno %d %d\n", errno1, errno2);
    printf("| reads %lu\n", reads);
    printf("| sum arena %lx\n", checksum(arena, NPAGES * page));
    printf("| sum region %lx\n", checksum(region, REGION * page));
    printf("| sum brk %lx\n", checksum(grown, GROW * page));
    list_fds();
    printf("| next fd %d\n", open("/dev/null", O_RDONLY));
    return 0;
}
