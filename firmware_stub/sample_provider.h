#ifndef LENET_EDGE_FIRMWARE_STUB_SAMPLE_PROVIDER_H_
#define LENET_EDGE_FIRMWARE_STUB_SAMPLE_PROVIDER_H_

#include <stdint.h>

#include "image_provider.h"

// Next embedded sample digit with its label and TFLM outputs; 0 when all were given.
int sample_provider_next(int8_t *image, struct image_info *info);

#endif  // LENET_EDGE_FIRMWARE_STUB_SAMPLE_PROVIDER_H_
