// Host board: images from the embedded samples or a raw int8 file, outputs
// printed or written to a file (atomically), wall-clock time per inference.
//
//   lenet5_host                                  classify the embedded samples
//   lenet5_host --images X.bin [--outputs Y.bin] [--repeat R]
//       X.bin: N images of 1024 int8 bytes; Y.bin gets N x 10 int8 outputs
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "board.h"
#include "image_provider.h"
#include "lenet5_engine.h"
#include "output_handler.h"
#include "sample_provider.h"

#define MAX_TIMED_INFERENCES 200000

static int8_t *s_images;
static long s_num_images, s_next, s_repeat = 1;
static const char *s_out_path;
static char s_tmp_path[4096];
static FILE *s_out;
static struct timespec s_t0;
static double s_us[MAX_TIMED_INFERENCES];
static long s_timed;

static int usage(const char *msg) {
  fprintf(stderr, "error: %s\nusage: lenet5_host [--images FILE [--outputs FILE] [--repeat R]]\n", msg);
  return 2;
}

int image_provider_init(int argc, char **argv) {
  const char *in_path = NULL;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--images") == 0 && i + 1 < argc) {
      in_path = argv[++i];
    } else if (strcmp(argv[i], "--outputs") == 0 && i + 1 < argc) {
      s_out_path = argv[++i];
    } else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
      char *end;
      s_repeat = strtol(argv[++i], &end, 10);
      if (*end != '\0' || s_repeat < 1) return usage("--repeat needs a positive integer");
    } else {
      return usage("unknown or incomplete argument");
    }
  }
  if (in_path == NULL) {
    if (s_out_path != NULL) return usage("--outputs needs --images");
    return 0;
  }
  FILE *f = fopen(in_path, "rb");
  if (f == NULL) {
    fprintf(stderr, "error: cannot open %s: %s\n", in_path, strerror(errno));
    return 2;
  }
  long size = (fseek(f, 0, SEEK_END) == 0) ? ftell(f) : -1;
  if (size <= 0 || size % LENET5_ENGINE_INPUT_SIZE != 0) {
    fclose(f);
    fprintf(stderr, "error: %s has %ld bytes; it must hold whole 32x32 int8 images (%d bytes each), "
            "e.g. numpy int8 array.tofile()\n", in_path, size, LENET5_ENGINE_INPUT_SIZE);
    return 2;
  }
  s_num_images = size / LENET5_ENGINE_INPUT_SIZE;
  s_images = malloc((size_t)size);  // host only: the file's images (the engine itself has no heap)
  if (s_images == NULL || fseek(f, 0, SEEK_SET) != 0 || fread(s_images, 1, (size_t)size, f) != (size_t)size) {
    fclose(f);
    fprintf(stderr, "error: reading %s failed\n", in_path);
    return 2;
  }
  fclose(f);
  if (s_out_path != NULL) {
    snprintf(s_tmp_path, sizeof s_tmp_path, "%s.tmp.%ld", s_out_path, (long)getpid());
    s_out = fopen(s_tmp_path, "wb");
    if (s_out == NULL) {
      fprintf(stderr, "error: cannot write %s: %s\n", s_tmp_path, strerror(errno));
      return 2;
    }
    output_handler_set_raw_file(s_out);
  }
  return 0;
}

int image_provider_next(int8_t *image, struct image_info *info) {
  if (s_images == NULL) return sample_provider_next(image, info);
  if (s_next >= s_num_images * s_repeat) return 0;
  memcpy(image, s_images + (s_next % s_num_images) * LENET5_ENGINE_INPUT_SIZE, LENET5_ENGINE_INPUT_SIZE);
  info->label = -1;
  info->test_index = -1;
  info->expected = NULL;
  ++s_next;
  return 1;
}

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

int board_finish(int exit_code) {
  free(s_images);
  if (s_out == NULL) return exit_code;
  const int close_failed = fclose(s_out) != 0;
  if (exit_code != 0 || close_failed || rename(s_tmp_path, s_out_path) != 0) {
    remove(s_tmp_path);
    fprintf(stderr, "error: %s not written\n", s_out_path);
    return exit_code != 0 ? exit_code : 1;
  }
  return 0;
}
