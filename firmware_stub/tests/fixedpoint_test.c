// The engine's fixed-point helpers against the literal gemmlowp / TFLite forms, on
// edge values and 20 million pseudo-random inputs. Build and run: make check-fixedpoint
#include <stdint.h>
#include <stdio.h>

#include "../lenet5_engine.c"

// gemmlowp fixedpoint.h, as written there.
static int32_t ref_srdhm(int32_t a, int32_t b) {
  const int overflow = a == b && a == INT32_MIN;
  const int64_t ab = (int64_t)a * (int64_t)b;
  const int32_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
  const int32_t high = (int32_t)((ab + nudge) / (INT64_C(1) << 31));
  return overflow ? INT32_MAX : high;
}

static int32_t ref_rdbpot(int32_t x, int exponent) {
  const int32_t mask = (int32_t)((INT64_C(1) << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + ((x < 0) ? 1 : 0);
  return (x >> exponent) + ((remainder > threshold) ? 1 : 0);
}

static uint64_t s_state = 0x9E3779B97F4A7C15u;
static uint32_t next_u32(void) {  // xorshift64*
  s_state ^= s_state >> 12;
  s_state ^= s_state << 25;
  s_state ^= s_state >> 27;
  return (uint32_t)((s_state * 0x2545F4914F6CDD1Du) >> 32);
}

static long s_checks, s_failures;
static void expect(int32_t got, int32_t want, const char *what, int32_t a, int32_t b) {
  ++s_checks;
  if (got != want && s_failures++ < 10) {
    printf("MISMATCH %s(%ld, %ld): engine %ld, reference %ld\n", what, (long)a, (long)b, (long)got, (long)want);
  }
}

int main(void) {
  static const int32_t edges[] = {INT32_MIN, INT32_MIN + 1, -(1 << 30) - 1, -(1 << 30), -(1 << 30) + 1,
                                  -65536, -3, -2, -1, 0, 1, 2, 3, 65535, (1 << 30) - 1, 1 << 30,
                                  (1 << 30) + 1, INT32_MAX - 1, INT32_MAX};
  const int n = (int)(sizeof edges / sizeof edges[0]);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      expect(sat_rounding_doubling_high_mul(edges[i], edges[j]), ref_srdhm(edges[i], edges[j]), "srdhm",
             edges[i], edges[j]);
    }
    for (int e = 0; e <= 31; ++e) {
      expect(rounding_divide_by_pot(edges[i], e), ref_rdbpot(edges[i], e), "rdbpot", edges[i], e);
    }
  }
  for (long k = 0; k < 10000000; ++k) {
    const int32_t a = (int32_t)next_u32(), b = (int32_t)next_u32();
    const int32_t small = (int32_t)(next_u32() % 2000001u) - 1000000;
    expect(sat_rounding_doubling_high_mul(a, b), ref_srdhm(a, b), "srdhm", a, b);
    expect(sat_rounding_doubling_high_mul(small, b), ref_srdhm(small, b), "srdhm", small, b);
    const int e = (int)(next_u32() % 32u);
    expect(rounding_divide_by_pot(a, e), ref_rdbpot(a, e), "rdbpot", a, e);
    expect(rounding_divide_by_pot(small, e), ref_rdbpot(small, e), "rdbpot", small, e);
  }
  printf("fixed-point helpers: %ld checks, %ld mismatches\n", s_checks, s_failures);
  return s_failures != 0;
}
