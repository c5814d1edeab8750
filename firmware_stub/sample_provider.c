// The embedded MNIST test digits (export/sample_digits.h), one after another.
#include "sample_provider.h"

#include <string.h>

#include "lenet5_engine.h"
#include "sample_digits.h"

_Static_assert(sizeof g_lenet5_sample_images[0] == LENET5_ENGINE_INPUT_SIZE, "sample size");

int sample_provider_next(int8_t *image, struct image_info *info) {
  static int next;
  if (next >= LENET5_NUM_SAMPLES) return 0;
  memcpy(image, g_lenet5_sample_images[next], LENET5_ENGINE_INPUT_SIZE);
  info->label = g_lenet5_sample_labels[next];
  info->test_index = (long)g_lenet5_sample_test_index[next];
  info->expected = g_lenet5_sample_tflm_outputs[next];
  ++next;
  return 1;
}
