/* Scenario: a checkpoint keeps a file descriptor's offset. The program writes records of varying
   length to FILE with write(2), asks the kernel where its descriptor now is (lseek(fd, 0,
   SEEK_CUR)) and prints it; record() is where gdb stops. At the end it reads the file back and
   checks it against a running hash of everything it wrote.
   Usage: ckpt_records FILE [N] */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

unsigned long written_hash = 1469598103934665603UL;     /* FNV-1a of the bytes written so far */
long written_total;

static unsigned long fnv(unsigned long h, const char *p, long n)
{
    for (long i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211UL;
    return h;
}

void record(int i, long offset)
{
    printf("| record %2d: offset %ld\n", i, offset);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: ckpt_records FILE [N]\n");
        return 2;
    }
    int n = argc > 2 ? atoi(argv[2]) : 12;
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        perror(argv[1]);
        return 1;
    }
    for (int i = 1; i <= n; i++) {
        char buf[128];
        int len = snprintf(buf, sizeof buf, "record %d %.*s\n", i, i * 7 % 40,
                           "abcdefghijklmnopqrstuvwxyz0123456789ABCD");
        if (write(fd, buf, len) != len) {
            perror("write");
            return 1;
        }
        written_hash = fnv(written_hash, buf, len);
        written_total += len;
        record(i, (long)lseek(fd, 0, SEEK_CUR));
    }
    char back[8192];
    long got = pread(fd, back, sizeof back, 0);
    int ok = got == written_total && fnv(1469598103934665603UL, back, got) == written_hash;
    printf("| file: %ld bytes, check %s\n", got, ok ? "ok" : "MISMATCH");
    close(fd);
    return 0;
}
