// lenet5 firmware: set-up, then classify every image the provider has.
#include <stdint.h>

#include "board.h"
#include "file_io.h"
#include "image_provider.h"
#include "lenet5_engine.h"
#include "output_handler.h"

int main(int argc, char **argv) {
  board_init();
  if (image_provider_init(argc, argv) != 0) return 2;
  lenet5_engine_init();

  long n = 0;
  struct image_info info;
  int8_t output[LENET5_ENGINE_CLASSES];
  while (image_provider_next(lenet5_engine_input(), &info)) {
    board_inference_begin();
    lenet5_engine_invoke(output);
    board_inference_end();
    output_handler_handle(n++, &info, output, lenet5_engine_argmin(output));
  }
  board_report(n);
  return file_io_finish(output_handler_finish(n));  // commits or discards an --outputs file
}
