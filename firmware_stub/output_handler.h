// What happens with each result (an LED or a radio message on a real board; here
// a printed line, and on the host optionally a raw file of the int8 outputs).
#ifndef LENET_EDGE_FIRMWARE_STUB_OUTPUT_HANDLER_H_
#define LENET_EDGE_FIRMWARE_STUB_OUTPUT_HANDLER_H_

#include <stdint.h>
#include <stdio.h>

#include "image_provider.h"
#include "lenet5_engine.h"

// If set (host), outputs are written there as raw int8, ten bytes per image, and not printed.
void output_handler_set_raw_file(FILE *f);

void output_handler_handle(long n, const struct image_info *info,
                           const int8_t output[LENET5_ENGINE_CLASSES], int predicted);

// Prints the summary; returns the process exit code (non-zero if an output
// differed from the TFLM outputs embedded with the samples, or a write failed).
int output_handler_finish(long n);

#endif  // LENET_EDGE_FIRMWARE_STUB_OUTPUT_HANDLER_H_
