// Host board: wall-clock time per inference (images and outputs: image_provider.c,
// file_io.c, output_handler.c).
//
//   lenet5_host                                  classify the embedded samples
//   lenet5_host --images X.bin [--outputs Y.bin] [--repeat R]
//       X.bin: N images of 1024 int8 bytes; Y.bin gets N x 10 int8 outputs
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "board.h"
#include "lenet5_engine.h"
#include "output_handler.h"

#define MAX_TIMED_INFERENCES 200000

static struct timespec s_t0;
static double s_us[MAX_TIMED_INFERENCES];
static long s_timed;

void board_init(void) {}

void board_inference_begin(void) { clock_gettime(CLOCK_MONOTONIC, &s_t0); }

void board_inference_end(void) {
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  if (s_timed < MAX_TIMED_INFERENCES) {
    s_us[s_timed++] = (double)(t1.tv_sec - s_t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - s_t0.tv_nsec) / 1e3;
  }
}

static int compare_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

void board_report(long images) {
  if (s_timed == 0) return;
  qsort(s_us, (size_t)s_timed, sizeof s_us[0], compare_double);
  double total = 0;
  for (long i = 0; i < s_timed; ++i) total += s_us[i];
  fprintf(stderr, "host engine: %ld inferences, median %.2f us, p99 %.2f us, mean %.2f us per image\n",
          images, s_us[s_timed / 2], s_us[(long)(0.99 * (double)(s_timed - 1))], total / (double)s_timed);
}

