// mps2-an386 board: instruction counts from SysTick, and the stack high-water mark
// of the engine (the stack below main's frame is painted before each inference and
// scanned after it). Printing and files go through semihosting (startup.c).
#include <stdint.h>
#include <stdio.h>

#include "board.h"

#define PAINT 0xC5C5C5C5u

extern uint32_t _sstack;
static uint32_t *s_top;       // stack pointer in board_inference_begin's caller
static uint32_t s_max_bytes;  // deepest use seen below it

// SysTick counts the 25 MHz processor clock. Under `qemu -icount shift=0` every
// instruction advances the virtual clock by 1 ns (one tick = 40 instructions);
// a calibration loop of known length checks that ratio in every run.
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SYSTICK_MAX 0x00FFFFFFu
#define CALIBRATION_LOOPS 1000000u  // two instructions each (subs, bne)
static uint32_t s_tick0, s_calibration_ticks;
static uint64_t s_ticks;

// Ticks taken by a loop of known length: instructions per tick, measured, not assumed.
static uint32_t calibrate(void) {
  uint32_t n = CALIBRATION_LOOPS;
  const uint32_t t0 = SYST_CVR;
  __asm volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
  return (t0 - SYST_CVR) & SYSTICK_MAX;
}

void board_init(void) {
  SYST_RVR = SYSTICK_MAX;
  SYST_CVR = 0;
  SYST_CSR = 0x5u;  // enable, processor clock, no interrupt
  s_calibration_ticks = calibrate();
}

// A leaf with no stack frame (build/m4/app/board_m4.su says 0 bytes), so the stack
// pointer read here is main's at the call: everything below it is free to paint,
// and everything the engine touches below it is the engine's stack.
__attribute__((noinline)) void board_inference_begin(void) {
  uint32_t *sp;
  __asm volatile("mov %0, sp" : "=r"(sp));
  s_top = sp;
  // volatile: a plain loop would become a memset() call, whose frame this would paint over.
  for (volatile uint32_t *p = &_sstack; p < s_top; ++p) *p = PAINT;
  s_tick0 = SYST_CVR;
}

void board_inference_end(void) {
  s_ticks += (s_tick0 - SYST_CVR) & SYSTICK_MAX;  // counts down; one inference is far below 2^24 ticks
  const uint32_t *p = &_sstack;
  while (p < s_top && *p == PAINT) ++p;
  const uint32_t used = (uint32_t)((const char *)s_top - (const char *)p);
  if (used > s_max_bytes) s_max_bytes = used;
}

void board_report(long images) {
  printf("engine stack high-water mark: %lu bytes over %ld inferences\n", (unsigned long)s_max_bytes, images);
  if (images > 0) {
    printf("systick: %lu ticks per inference; calibration: %lu ticks for %lu loop instructions\n",
           (unsigned long)(s_ticks / (uint64_t)images), (unsigned long)s_calibration_ticks,
           (unsigned long)(2u * CALIBRATION_LOOPS));
  }
}

