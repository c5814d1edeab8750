// Images from a raw int8 file and outputs to one (host, and the Cortex-M4 through
// semihosting): N x 1024 int8 images in, N x 10 int8 outputs out.
#ifndef LENET_EDGE_FIRMWARE_STUB_FILE_IO_H_
#define LENET_EDGE_FIRMWARE_STUB_FILE_IO_H_

#include <stdint.h>

#include "image_provider.h"

// Parses [--images FILE [--outputs FILE] [--repeat R]]; returns 0, or prints an error and returns 2.
int file_io_init(int argc, char **argv);

// 1 if --images was given.
int file_io_active(void);

// The next image of the file (the file again from the start, --repeat times); 0 when done.
int file_io_next(int8_t *image, struct image_info *info);

// Closes the files; the outputs file appears (renamed from its temporary name) only
// when exit_code is 0 and everything was written. Returns the exit code to use.
int file_io_finish(int exit_code);

#endif  // LENET_EDGE_FIRMWARE_STUB_FILE_IO_H_
