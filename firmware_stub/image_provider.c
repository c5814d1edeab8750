// Images from a raw int8 file (--images, see file_io.h) or else the embedded MNIST
// test digits (export/sample_digits.h), one after another. Shared by both boards.
#include "image_provider.h"

#include <string.h>

#include "file_io.h"
#include "lenet5_engine.h"
#include "sample_digits.h"

_Static_assert(sizeof g_lenet5_sample_images[0] == LENET5_ENGINE_INPUT_SIZE, "sample size");

int image_provider_init(int argc, char **argv) { return file_io_init(argc, argv); }

int image_provider_next(int8_t *image, struct image_info *info) {
  static int next_sample;
  if (file_io_active()) return file_io_next(image, info);
  if (next_sample >= LENET5_NUM_SAMPLES) return 0;
  memcpy(image, g_lenet5_sample_images[next_sample], LENET5_ENGINE_INPUT_SIZE);
  info->label = g_lenet5_sample_labels[next_sample];
  info->test_index = (long)g_lenet5_sample_test_index[next_sample];
  info->expected = g_lenet5_sample_tflm_outputs[next_sample];
  ++next_sample;
  return 1;
}
