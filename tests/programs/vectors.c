/* Scenario: ymm0-15 and MXCSR restored exactly. Each round loads a pattern into ymm0-15 and a
   rounding mode into MXCSR, stops at vec_stop (gdb's breakpoint), then stores the registers back
   and compares them with the pattern in memory. After a restore to round R the registers must be
   round R's again, or the program prints BAD. */
#include <stdio.h>
#include <string.h>

unsigned char pattern[16][32] __attribute__((aligned(32)));
unsigned char seen[16][32] __attribute__((aligned(32)));
unsigned int mxcsr_in, mxcsr_seen;
int round_no;

void vec_roundtrip(void *in, void *out, unsigned int *mx_in, unsigned int *mx_out);
__asm__(
    ".text\n"
    ".globl vec_roundtrip\n"
    ".type vec_roundtrip, @function\n"
    "vec_roundtrip:\n"
    "  vmovdqu 0(%rdi), %ymm0\n"
    "  vmovdqu 32(%rdi), %ymm1\n"
    "  vmovdqu 64(%rdi), %ymm2\n"
    "  vmovdqu 96(%rdi), %ymm3\n"
    "  vmovdqu 128(%rdi), %ymm4\n"
    "  vmovdqu 160(%rdi), %ymm5\n"
    "  vmovdqu 192(%rdi), %ymm6\n"
    "  vmovdqu 224(%rdi), %ymm7\n"
    "  vmovdqu 256(%rdi), %ymm8\n"
    "  vmovdqu 288(%rdi), %ymm9\n"
    "  vmovdqu 320(%rdi), %ymm10\n"
    "  vmovdqu 352(%rdi), %ymm11\n"
    "  vmovdqu 384(%rdi), %ymm12\n"
    "  vmovdqu 416(%rdi), %ymm13\n"
    "  vmovdqu 448(%rdi), %ymm14\n"
    "  vmovdqu 480(%rdi), %ymm15\n"
    "  ldmxcsr (%rdx)\n"
    ".globl vec_stop\n"
    "vec_stop:\n"
    "  nop\n"
    "  vmovdqu %ymm0, 0(%rsi)\n"
    "  vmovdqu %ymm1, 32(%rsi)\n"
    "  vmovdqu %ymm2, 64(%rsi)\n"
    "  vmovdqu %ymm3, 96(%rsi)\n"
    "  vmovdqu %ymm4, 128(%rsi)\n"
    "  vmovdqu %ymm5, 160(%rsi)\n"
    "  vmovdqu %ymm6, 192(%rsi)\n"
    "  vmovdqu %ymm7, 224(%rsi)\n"
    "  vmovdqu %ymm8, 256(%rsi)\n"
    "  vmovdqu %ymm9, 288(%rsi)\n"
    "  vmovdqu %ymm10, 320(%rsi)\n"
    "  vmovdqu %ymm11, 352(%rsi)\n"
    "  vmovdqu %ymm12, 384(%rsi)\n"
    "  vmovdqu %ymm13, 416(%rsi)\n"
    "  vmovdqu %ymm14, 448(%rsi)\n"
    "  vmovdqu %ymm15, 480(%rsi)\n"
    "  stmxcsr (%rcx)\n"
    "  vzeroupper\n"
    "  sub $8, %rsp\n"
    "  movl $0x1f80, (%rsp)\n"
    "  ldmxcsr (%rsp)\n"
    "  add $8, %rsp\n"
    "  ret\n"
    ".size vec_roundtrip, .-vec_roundtrip\n");

int main(void)
{
    for (round_no = 1; round_no <= 4; round_no++) {
        for (int r = 0; r < 16; r++)
            for (int b = 0; b < 32; b++)
                pattern[r][b] = (unsigned char)(round_no * 37 + r * 11 + b * 3);
        /* rounding control in bits 13-14, flush-to-zero in bit 15 on odd rounds */
        mxcsr_in = 0x1f80 | (unsigned)(round_no % 4) << 13 | (unsigned)(round_no & 1) << 15;
        vec_roundtrip(pattern, seen, &mxcsr_in, &mxcsr_seen);
        int ok = memcmp(pattern, seen, sizeof pattern) == 0 && mxcsr_in == mxcsr_seen;
        printf("| round %d: ymm0-15 %s, mxcsr %#x %s\n", round_no,
               memcmp(pattern, seen, sizeof pattern) == 0 ? "ok" : "BAD",
               mxcsr_seen, mxcsr_in == mxcsr_seen ? "ok" : "BAD");
        fflush(stdout);
        if (!ok)
            return 1;
    }
    return 0;
}
