// lenet5_engine: a small int8 inference engine for the lenet_edge LeNet-5.
//
// It does the integer arithmetic of TensorFlow Lite Micro's reference kernels
// (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, TANH, MUL, SQUARED_DIFFERENCE,
// SUM) for this one graph, with parameters generated from lenet5_int8.tflite
// (export/lenet5_engine_params.{h,c}); its int8 outputs equal TFLM's byte for
// byte. No heap: one static activation buffer and six 256-byte tanh tables.
#ifndef LENET_EDGE_FIRMWARE_STUB_LENET5_ENGINE_H_
#define LENET_EDGE_FIRMWARE_STUB_LENET5_ENGINE_H_

#include <stdint.h>

#include "lenet5_engine_params.h"

#define LENET5_ENGINE_INPUT_SIZE (LENET5_ENGINE_INPUT_H * LENET5_ENGINE_INPUT_W)

// Activation buffer: [input | C1 output]; later layers reuse it (see lenet5_engine.c).
#define LENET5_ENGINE_ARENA_BYTES \
  (LENET5_ENGINE_INPUT_SIZE + LENET5_C1_OUT_H * LENET5_C1_OUT_W * LENET5_C1_OUT_C)
#define LENET5_ENGINE_TANH_TABLES 6
#define LENET5_ENGINE_TANH_TABLE_BYTES (LENET5_ENGINE_TANH_TABLES * 256)

#ifdef __cplusplus
extern "C" {
#endif

// Builds the tanh tables (TFLM's int8 tanh, evaluated once per input value). Call once.
void lenet5_engine_init(void);

// Where the caller writes the int8 32x32 input image (row-major, quantized with
// LENET5_INPUT_SCALE / LENET5_INPUT_ZERO_POINT) before lenet5_engine_invoke().
int8_t *lenet5_engine_input(void);

// Runs the network on the input buffer; writes the ten int8 RBF distances.
void lenet5_engine_invoke(int8_t output[LENET5_ENGINE_CLASSES]);

// The predicted class: the index of the SMALLEST distance (first one on ties).
int lenet5_engine_argmin(const int8_t output[LENET5_ENGINE_CLASSES]);

#ifdef __cplusplus
}
#endif

#endif  // LENET_EDGE_FIRMWARE_STUB_LENET5_ENGINE_H_
