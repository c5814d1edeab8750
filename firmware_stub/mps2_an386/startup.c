// mps2-an386 start-up: vector table, .data/.bss set-up, FPU on, semihosting stdio, main().
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern int main(int argc, char **argv);
extern void initialise_monitor_handles(void);  // librdimon: stdio over semihosting
extern void __libc_init_array(void);

void Reset_Handler(void);
void Default_Handler(void);

// The C library's constructors run through __libc_init_array; this image has none of its own.
void _init(void) {}
void _fini(void) {}

void Default_Handler(void) {
  // A fault: leave QEMU with a failure status through semihosting rather than hang.
  exit(99);
}

__attribute__((section(".isr_vector"), used)) static void (*const g_vectors[16])(void) = {
    (void (*)(void))(uintptr_t)&_estack,  // initial stack pointer
    Reset_Handler,
    Default_Handler,  // NMI
    Default_Handler,  // HardFault
    Default_Handler,  // MemManage
    Default_Handler,  // BusFault
    Default_Handler,  // UsageFault
    0, 0, 0, 0,
    Default_Handler,  // SVCall
    Default_Handler,  // DebugMon
    0,
    Default_Handler,  // PendSV
    Default_Handler,  // SysTick
};

void Reset_Handler(void) {
  memcpy(&_sdata, &_sidata, (size_t)((char *)&_edata - (char *)&_sdata));
  memset(&_sbss, 0, (size_t)((char *)&_ebss - (char *)&_sbss));
  // CPACR: full access to CP10/CP11 (the FPU), needed with -mfloat-abi=hard.
  volatile uint32_t *cpacr = (volatile uint32_t *)0xE000ED88u;
  *cpacr |= (0xFu << 20);
  __asm volatile("dsb\n\tisb" ::: "memory");
  initialise_monitor_handles();
  __libc_init_array();
  static char prog[] = "lenet5_m4";
  static char *argv[] = {prog, 0};
  exit(main(1, argv));
}
