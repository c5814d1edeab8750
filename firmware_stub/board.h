// The few things main.c needs from a board: start-up, and hooks around each
// inference (the host times it, the Cortex-M4 measures the stack it uses).
#ifndef LENET_EDGE_FIRMWARE_STUB_BOARD_H_
#define LENET_EDGE_FIRMWARE_STUB_BOARD_H_

void board_init(void);
void board_inference_begin(void);
void board_inference_end(void);
// Prints the board's measurements (time per image, stack high-water mark).
void board_report(long images);

#endif  // LENET_EDGE_FIRMWARE_STUB_BOARD_H_
