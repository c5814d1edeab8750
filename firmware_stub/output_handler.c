// Prints each prediction with its RBF outputs, or writes raw outputs (host --outputs).
#include "output_handler.h"

#include <stdio.h>
#include <string.h>

static FILE *s_raw;
static long s_checked, s_mismatched, s_correct, s_labelled;
static int s_write_failed;

void output_handler_set_raw_file(FILE *f) { s_raw = f; }

void output_handler_handle(long n, const struct image_info *info,
                           const int8_t output[LENET5_ENGINE_CLASSES], int predicted) {
  if (info->label >= 0) {
    ++s_labelled;
    if (predicted == info->label) ++s_correct;
  }
  int match = -1;
  if (info->expected != NULL) {
    match = memcmp(info->expected, output, LENET5_ENGINE_CLASSES) == 0;
    ++s_checked;
    if (!match) ++s_mismatched;
  }
  if (s_raw != NULL) {
    if (fwrite(output, 1, LENET5_ENGINE_CLASSES, s_raw) != LENET5_ENGINE_CLASSES) s_write_failed = 1;
    return;
  }
  printf("image %ld", n);
  if (info->test_index >= 0) printf(" (test #%ld)", info->test_index);
  if (info->label >= 0) printf(" label %d", info->label);
  printf(": predicted %d  rbf_int8", predicted);
  for (int c = 0; c < LENET5_ENGINE_CLASSES; ++c) printf(" %d", output[c]);
  if (match >= 0) printf("  tflm %s", match ? "match" : "MISMATCH");
  printf("\n");
}

int output_handler_finish(long n) {
  if (s_raw != NULL) {
    if (fflush(s_raw) != 0) s_write_failed = 1;
  } else {
    printf("images %ld  correct %ld/%ld  tflm-checked %ld  mismatched %ld\n", n, s_correct, s_labelled,
           s_checked, s_mismatched);
  }
  if (s_write_failed) {
    fprintf(stderr, "error: writing the outputs file failed (disk full?)\n");
    return 1;
  }
  return s_mismatched != 0 ? 3 : 0;
}
