/* Scenario: a program that tracks its own writes, for tests/unit/test_dirty.py (no gdb). In mode
   "track" it registers a buffer with userfaultfd write-protect-async and write-protects it itself
   (UFFDIO_WRITEPROTECT, not PAGEMAP_SCAN: the code under test must not arm its own oracle); in mode
   "plain" it doesn't. Then it reads the pages named rN and writes the pages named wN, prints the
   addresses it wrote, and waits for stdin to close while the test looks at it from outside.
   Usage: dirty_selftrack track|plain NPAGES [wN|rN]... */
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

static void die(const char *what)
{
    printf("| unsupported %s\n", what);
    fflush(stdout);
    exit(3);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    int track = strcmp(argv[1], "track") == 0;
    long npages = atol(argv[2]);
    long page = sysconf(_SC_PAGESIZE);
    size_t len = (size_t)npages * page;
    char *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED)
        return 2;
    if (track) {
        int uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
        if (uffd < 0)
            die("userfaultfd");
        struct uffdio_api api = {.api = UFFD_API,
                                 .features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED};
        if (ioctl(uffd, UFFDIO_API, &api))
            die("UFFD_FEATURE_WP_ASYNC");
        struct uffdio_register reg = {.range = {(unsigned long)buf, len},
                                      .mode = UFFDIO_REGISTER_MODE_WP};
        if (ioctl(uffd, UFFDIO_REGISTER, &reg))
            die("UFFDIO_REGISTER_MODE_WP");
        struct uffdio_writeprotect wp = {.range = {(unsigned long)buf, len},
                                         .mode = UFFDIO_WRITEPROTECT_MODE_WP};
        if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp))
            die("UFFDIO_WRITEPROTECT");
    }
    printf("| buffer %p %ld\n", (void *)buf, npages);
    unsigned long sum = 0;
    for (int i = 3; i < argc; i++) {
        long k = atol(argv[i] + 1);
        if (k < 0 || k >= npages)
            return 2;
        if (argv[i][0] == 'w') {
            buf[k * page + (k * 37) % page] = (char)(k | 1);
            printf("| wrote %p\n", (void *)(buf + k * page));
        } else {
            sum += ((volatile char *)buf)[k * page + 5];
        }
    }
    printf("| read sum %lu\n| ready\n", sum);
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0)
        ;
    return 0;
}
