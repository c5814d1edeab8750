// mps2-an386 start-up: vector table, .data/.bss set-up, FPU on, semihosting stdio and
// command line, main().
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern int main(int argc, char **argv);
extern void initialise_monitor_handles(void);  // librdimon: stdio over semihosting
extern void __libc_init_array(void);

void Reset_Handler(void);

// Semihosting SYS_GET_CMDLINE (0x15): the program's command line from the debugger/QEMU.
#define MAX_ARGS 16
static char s_cmdline[1024];
static char *s_argv[MAX_ARGS + 1];

static int command_line(void) {
  struct { char *buffer; int length; } block = {s_cmdline, (int)sizeof s_cmdline - 1};
  register int r0 __asm__("r0") = 0x15;
  register void *r1 __asm__("r1") = &block;
  __asm volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  int argc = 0;
  if (r0 == 0) {
    s_cmdline[block.length] = '\0';
    for (char *p = strtok(s_cmdline, " "); p != NULL && argc < MAX_ARGS; p = strtok(NULL, " ")) {
      s_argv[argc++] = p;
    }
  }
  if (argc == 0) {
    static char prog[] = "lenet5_m4";
    s_argv[argc++] = prog;
  }
  s_argv[argc] = 0;
  return argc;
}
void Default_Handler(void);

// newlib's rename() goes through _rename_r, which newlib builds from link() and unlink();
// librdimon has no link() but has the semihosting rename (SYS_RENAME), so use that.
struct _reent;
extern int _rename(const char *old_path, const char *new_path);
int _rename_r(struct _reent *reent, const char *old_path, const char *new_path);
int _rename_r(struct _reent *reent, const char *old_path, const char *new_path) {
  (void)reent;
  return _rename(old_path, new_path);
}

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
  const int argc = command_line();
  exit(main(argc, s_argv));
}
