// Where the 32x32 int8 input image comes from (a camera on a real board; here
// the embedded MNIST samples, or on the host also a file of raw int8 images).
#ifndef LENET_EDGE_FIRMWARE_STUB_IMAGE_PROVIDER_H_
#define LENET_EDGE_FIRMWARE_STUB_IMAGE_PROVIDER_H_

#include <stdint.h>

struct image_info {
  int label;                // true class, or -1 if unknown
  long test_index;          // index in the MNIST test set, or -1
  const int8_t *expected;   // TFLM's int8 outputs for this image, or NULL
};

// Parses the board's arguments; returns 0, or prints an error and returns non-zero.
int image_provider_init(int argc, char **argv);

// Writes the next image into `image` (LENET5_ENGINE_INPUT_SIZE bytes); returns 1,
// or 0 when there are no more images.
int image_provider_next(int8_t *image, struct image_info *info);

#endif  // LENET_EDGE_FIRMWARE_STUB_IMAGE_PROVIDER_H_
