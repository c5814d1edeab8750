// Raw int8 image files in, raw int8 outputs out, read one image at a time (no heap).
#include "file_io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lenet5_engine.h"
#include "output_handler.h"

#define MAX_PATH 1024

static FILE *s_in, *s_out;
static long s_images, s_next, s_repeat = 1;
static const char *s_out_path;
static char s_tmp_path[MAX_PATH + 8];

static int usage(const char *msg) {
  fprintf(stderr, "error: %s\nusage: lenet5 [--images FILE [--outputs FILE] [--repeat R]]\n", msg);
  return 2;
}

int file_io_init(int argc, char **argv) {
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
  if (in_path == NULL) return s_out_path != NULL ? usage("--outputs needs --images") : 0;
  s_in = fopen(in_path, "rb");
  if (s_in == NULL) {
    fprintf(stderr, "error: cannot open %s: %s\n", in_path, strerror(errno));
    return 2;
  }
  const long size = (fseek(s_in, 0, SEEK_END) == 0) ? ftell(s_in) : -1;
  if (size <= 0 || size % LENET5_ENGINE_INPUT_SIZE != 0 || fseek(s_in, 0, SEEK_SET) != 0) {
    fprintf(stderr, "error: %s has %ld bytes; it must hold whole 32x32 int8 images (%d bytes each), "
            "e.g. numpy int8 array.tofile()\n", in_path, size, LENET5_ENGINE_INPUT_SIZE);
    fclose(s_in);
    s_in = NULL;
    return 2;
  }
  s_images = size / LENET5_ENGINE_INPUT_SIZE;
  if (s_out_path != NULL) {
    if (strlen(s_out_path) > MAX_PATH) return usage("--outputs path too long");
    snprintf(s_tmp_path, sizeof s_tmp_path, "%s.tmp", s_out_path);
    s_out = fopen(s_tmp_path, "wb");
    if (s_out == NULL) {
      fprintf(stderr, "error: cannot write %s: %s\n", s_tmp_path, strerror(errno));
      return 2;
    }
    output_handler_set_raw_file(s_out);
  }
  return 0;
}

int file_io_active(void) { return s_in != NULL; }

int file_io_next(int8_t *image, struct image_info *info) {
  if (s_next >= s_images * s_repeat) return 0;
  if (s_next > 0 && s_next % s_images == 0 && fseek(s_in, 0, SEEK_SET) != 0) return 0;
  if (fread(image, 1, LENET5_ENGINE_INPUT_SIZE, s_in) != LENET5_ENGINE_INPUT_SIZE) {
    fprintf(stderr, "error: reading image %ld failed\n", s_next);
    return 0;
  }
  info->label = -1;
  info->test_index = -1;
  info->expected = NULL;
  ++s_next;
  return 1;
}

int file_io_finish(int exit_code) {
  if (s_in != NULL) fclose(s_in);
  if (s_in != NULL && s_next != s_images * s_repeat && exit_code == 0) exit_code = 1;  // a read failed
  if (s_out == NULL) return exit_code;
  const int close_failed = fclose(s_out) != 0;
  if (exit_code != 0 || close_failed || rename(s_tmp_path, s_out_path) != 0) {
    remove(s_tmp_path);
    fprintf(stderr, "error: %s not written\n", s_out_path);
    return exit_code != 0 ? exit_code : 1;
  }
  return 0;
}
