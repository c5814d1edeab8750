// lenet5_engine.c - TFLite Micro's reference integer arithmetic for the lenet_edge graph.
//
// Each function names the TFLM / gemmlowp routine whose arithmetic it repeats
// (tensorflow/lite/kernels/internal/reference/integer_ops/*.h, common.h,
// gemmlowp fixedpoint/fixedpoint.h). The build is TFLM's default
// double-rounding MultiplyByQuantizedMultiplier (TFLITE_SINGLE_ROUNDING=0).
// Signed wrap-around that TFLM's C++ relies on is written with unsigned casts,
// so the sanitizer build reports nothing that is intended.
//
// The convolution and fully connected inner loops have three forms with the same
// integer sums: SSE2 on x86 hosts, Armv7E-M DSP (SMLAD) on the Cortex-M4, and
// plain C (-DLENET5_ENGINE_PORTABLE forces it). All three are checked against the
// tflite_micro runtime on 10,400 inputs (python -m lenet_edge.firmware check).
#include "lenet5_engine.h"

#include <stddef.h>
#include <stdint.h>

#include "lenet5_engine_params.h"

// ------------------------------------------------------------ fixed-point helpers
static int32_t wrap_add(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }
static int32_t wrap_sub(int32_t a, int32_t b) { return (int32_t)((uint32_t)a - (uint32_t)b); }
static int32_t wrap_shl(int32_t x, int s) { return (int32_t)((uint32_t)x << s); }

// gemmlowp::SaturatingRoundingDoublingHighMul (int32). gemmlowp divides (ab + nudge) by
// 2^31 truncating toward zero, nudge = 2^30 for ab >= 0 and 1 - 2^30 otherwise; for
// ab < 0 that is ceil((ab + 1 - 2^30) / 2^31) = floor((ab + 2^30) / 2^31), the same
// expression as for ab >= 0, so one arithmetic shift gives the identical result.
// tests/fixedpoint_test.c checks this against the literal form.
static inline int32_t sat_rounding_doubling_high_mul(int32_t a, int32_t b) {
  if (a == b && a == INT32_MIN) return INT32_MAX;
  return (int32_t)(((int64_t)a * (int64_t)b + (INT64_C(1) << 30)) >> 31);
}

// gemmlowp::RoundingDivideByPOT: x / 2^e to nearest, ties away from zero. gemmlowp adds
// one when the remainder exceeds 2^(e-1) - 1 (x >= 0) or 2^(e-1) (x < 0), which is
// floor((x + 2^(e-1) - [x < 0]) / 2^e); in 64 bits, so the sum cannot overflow.
static inline int32_t rounding_divide_by_pot(int32_t x, int exponent) {
  if (exponent == 0) return x;
  return (int32_t)(((int64_t)x + (INT64_C(1) << (exponent - 1)) - (x < 0)) >> exponent);
}

// gemmlowp::SaturatingRoundingMultiplyByPOT<exponent> for exponent > 0.
static int32_t saturating_shl(int32_t x, int exponent) {
  const int32_t threshold = (int32_t)((INT64_C(1) << (31 - exponent)) - 1);
  if (x > threshold) return INT32_MAX;
  if (x < -threshold) return INT32_MIN;
  return wrap_shl(x, exponent);
}

// tflite::MultiplyByQuantizedMultiplier (double rounding), shift > 0 is a left shift.
static inline int32_t multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int shift) {
  const int left_shift = shift > 0 ? shift : 0;
  const int right_shift = shift > 0 ? 0 : -shift;
  return rounding_divide_by_pot(sat_rounding_doubling_high_mul(wrap_shl(x, left_shift), multiplier),
                                right_shift);
}

static int8_t clamp_int8(int32_t v) {
  return (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
}

// ------------------------------------------------------------ gemmlowp::tanh
// Raw int32 fixed-point values; FixedPoint<int32, n> has n integer bits.

// gemmlowp::RoundingHalfSum (int32).
static int32_t rounding_half_sum(int32_t a, int32_t b) {
  const int64_t sum = (int64_t)a + (int64_t)b;
  const int64_t sign = sum >= 0 ? 1 : -1;
  return (int32_t)((sum + sign) / 2);
}

// exp(x) for x in [-1/4, 0), Q0.31 in and out.
static int32_t exp_on_interval_between_negative_one_quarter_and_0_excl(int32_t a) {
  const int32_t constant_term = 1895147668;     // exp(-1/8)
  const int32_t constant_1_over_3 = 715827883;  // 1/3
  const int32_t x = wrap_add(a, INT32_C(1) << 28);  // a + 1/8
  const int32_t x2 = sat_rounding_doubling_high_mul(x, x);
  const int32_t x3 = sat_rounding_doubling_high_mul(x2, x);
  const int32_t x4 = sat_rounding_doubling_high_mul(x2, x2);
  const int32_t x4_over_4 = rounding_divide_by_pot(x4, 2);
  const int32_t poly = rounding_divide_by_pot(
      wrap_add(sat_rounding_doubling_high_mul(wrap_add(x4_over_4, x3), constant_1_over_3), x2), 1);
  return wrap_add(constant_term, sat_rounding_doubling_high_mul(constant_term, wrap_add(x, poly)));
}

// exp(x) for x <= 0; input FixedPoint<int32, 5> (the doubled tanh argument), output Q0.31.
static int32_t exp_on_negative_values_5(int32_t a) {
  enum { kIntegerBits = 5, kFractionalBits = 31 - kIntegerBits };
  static const int32_t kMultipliers[7] = {  // exp(-2^e) for e = -2 .. 4, Q0.31
      1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
  const int32_t one_quarter = INT32_C(1) << (kFractionalBits - 2);
  const int32_t mask = one_quarter - 1;
  const int32_t a_mod_quarter_minus_one_quarter = wrap_sub(a & mask, one_quarter);
  int32_t result = exp_on_interval_between_negative_one_quarter_and_0_excl(
      saturating_shl(a_mod_quarter_minus_one_quarter, kIntegerBits));  // Rescale<0>
  const int32_t remainder = wrap_sub(a_mod_quarter_minus_one_quarter, a);
  for (int e = -2; e <= 4; ++e) {  // the barrel shifter: every e < kIntegerBits
    if (remainder & (INT32_C(1) << (kFractionalBits + e))) {
      result = sat_rounding_doubling_high_mul(result, kMultipliers[e + 2]);
    }
  }
  // kIntegerBits == 5: no clamp below -32 (gemmlowp applies it only above 5 integer bits).
  return a == 0 ? INT32_MAX : result;
}

// (1 - x) / (1 + x) for x in (0, 1), Q0.31; Newton-Raphson division in FixedPoint<int32, 2>.
static int32_t one_minus_x_over_one_plus_x_for_x_in_0_1(int32_t a) {
  const int32_t one_f2 = INT32_C(1) << 29;
  const int32_t half_denominator = rounding_half_sum(a, INT32_MAX);
  int32_t x = wrap_add(1515870810, sat_rounding_doubling_high_mul(half_denominator, -1010580540));
  for (int i = 0; i < 3; ++i) {
    const int32_t half_denominator_times_x = sat_rounding_doubling_high_mul(half_denominator, x);
    const int32_t one_minus = wrap_sub(one_f2, half_denominator_times_x);
    x = wrap_add(x, saturating_shl(sat_rounding_doubling_high_mul(x, one_minus), 2));  // Rescale<2> of F4
  }
  return saturating_shl(wrap_sub(x, one_f2), 2);  // Rescale<0> of F2
}

// gemmlowp::tanh for FixedPoint<int32, 4> input; Q0.31 output.
static int32_t fixed_tanh_4(int32_t a) {
  const int negative = a < 0;
  const int32_t n = negative ? a : wrap_sub(0, a);
  // neg_tanh_on_negative_values: ExactMulByPot<1> reinterprets the raw value with 5 integer bits.
  const int32_t t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values_5(n));
  if (a == 0) return 0;
  return negative ? wrap_sub(0, t) : t;
}

// reference_integer_ops::Tanh (int8), one element.
static int8_t tanh_int8(int8_t q, int32_t zero_point, int32_t radius, int32_t multiplier, int32_t shift) {
  const int32_t input = (int32_t)q - zero_point;
  if (input <= -radius) return INT8_MIN;
  if (input >= radius) return INT8_MAX;
  const int32_t input_in_q4 = multiply_by_quantized_multiplier(input, multiplier, (int)shift);
  const int32_t output_in_q0 = fixed_tanh_4(input_in_q4);
  return clamp_int8(rounding_divide_by_pot(output_in_q0, 31 - 7));
}

// ------------------------------------------------------------ state
enum { kTanhC1, kTanhS2, kTanhC3, kTanhS4, kTanhC5, kTanhF6 };

static int8_t s_arena[LENET5_ENGINE_ARENA_BYTES];
static int8_t s_tanh[LENET5_ENGINE_TANH_TABLES][256];  // indexed by (uint8_t)(q + 128)

static void build_tanh_table(int8_t table[256], int32_t zero_point, int32_t radius, int32_t multiplier,
                             int32_t shift) {
  for (int q = -128; q <= 127; ++q) {
    table[q + 128] = tanh_int8((int8_t)q, zero_point, radius, multiplier, shift);
  }
}

#define BUILD_TANH_TABLE(L)                                                                  \
  build_tanh_table(s_tanh[kTanh##L], LENET5_##L##_TANH_ZERO_POINT, LENET5_##L##_TANH_RADIUS, \
                   LENET5_##L##_TANH_MULTIPLIER, LENET5_##L##_TANH_SHIFT)

void lenet5_engine_init(void) {
  BUILD_TANH_TABLE(C1);
  BUILD_TANH_TABLE(S2);
  BUILD_TANH_TABLE(C3);
  BUILD_TANH_TABLE(S4);
  BUILD_TANH_TABLE(C5);
  BUILD_TANH_TABLE(F6);
}

int8_t *lenet5_engine_input(void) { return s_arena; }

// ------------------------------------------------------------ layers
// A linear op's int8 output goes straight through its TANH table: TFLM runs TANH
// as a separate op on that same int8 tensor, so the result is identical.
static inline int8_t requantize_tanh(int32_t acc, int32_t multiplier, int shift, int32_t output_offset,
                              const int8_t table[256]) {
  const int32_t q = multiply_by_quantized_multiplier(acc, multiplier, shift) + output_offset;
  return table[(uint8_t)(clamp_int8(q) + 128)];
}

// Activations between layers are kept planar ([map][row][column]) so the inner
// loops run along a row; TFLM's NHWC order matters only where C5 flattens S4,
// which S4 therefore writes as NHWC. Integer sums are exact, so the order of
// the additions and splitting sum(w * (x + offset)) into sum(w * x) + offset *
// sum(w) change nothing.
struct conv_layer {
  int in_h, in_w, in_c, out_h, out_w, out_c, k;
  int32_t input_offset, output_offset;
  const int8_t *weights;       // per output map: [maps it reads][k][k]
  const uint8_t *in_count;     // how many input maps each output map reads
  const uint8_t *in_maps;      // which ones (C3: the paper's connection table)
  const int32_t *bias, *multiplier;
  const int8_t *shift;
  const int8_t *tanh;
};

#if defined(__SSE2__) && !defined(LENET5_ENGINE_PORTABLE)
#include <emmintrin.h>
#define LENET5_ENGINE_SSE2 1
// x86 hosts: eight columns at a time with SSE2 16-bit multiply-adds (pmaddwd),
// the same integer sums as the portable loop below. It loads 16 input bytes per
// row, up to 3 bytes past the last input map (inside s_arena, see the buffer
// plan); lanes use bytes 0..11 of each load only, all within the input row.
// Columns x + t .. x + t + 7 as int16, from columns x .. x + 15 in lo, hi (t a constant).
#define TAPS(lo, hi, t) _mm_or_si128(_mm_srli_si128((lo), 2 * (t)), _mm_slli_si128((hi), 16 - 2 * (t)))

// Two taps' weights, as the int16 pair each pmaddwd lane multiplies.
static __m128i weight_pair(int8_t w0, int8_t w1) {
  return _mm_set1_epi32((int32_t)(((uint32_t)(uint16_t)(int16_t)w1 << 16) | (uint16_t)(int16_t)w0));
}

static void conv_row8_sse2(const int8_t *in, int plane, int in_w, const int8_t *w_map, const uint8_t *maps,
                           int n, int y, int x, int32_t bias, int32_t out[8]) {
  __m128i acc_lo = _mm_set1_epi32(bias), acc_hi = acc_lo;
  for (int j = 0; j < n; ++j) {
    const int8_t *src = in + maps[j] * plane + y * in_w + x;
    const int8_t *w = w_map + j * 25;
    for (int ky = 0; ky < 5; ++ky, src += in_w, w += 5) {
      const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)src);
      const __m128i lo = _mm_srai_epi16(_mm_unpacklo_epi8(v, v), 8);
      const __m128i hi = _mm_srai_epi16(_mm_unpackhi_epi8(v, v), 8);
      const __m128i t1 = TAPS(lo, hi, 1), t2 = TAPS(lo, hi, 2), t3 = TAPS(lo, hi, 3), t4 = TAPS(lo, hi, 4);
      const __m128i w01 = weight_pair(w[0], w[1]), w23 = weight_pair(w[2], w[3]), w4 = weight_pair(w[4], 0);
      const __m128i zero = _mm_setzero_si128();
      acc_lo = _mm_add_epi32(acc_lo, _mm_madd_epi16(_mm_unpacklo_epi16(lo, t1), w01));
      acc_hi = _mm_add_epi32(acc_hi, _mm_madd_epi16(_mm_unpackhi_epi16(lo, t1), w01));
      acc_lo = _mm_add_epi32(acc_lo, _mm_madd_epi16(_mm_unpacklo_epi16(t2, t3), w23));
      acc_hi = _mm_add_epi32(acc_hi, _mm_madd_epi16(_mm_unpackhi_epi16(t2, t3), w23));
      acc_lo = _mm_add_epi32(acc_lo, _mm_madd_epi16(_mm_unpacklo_epi16(t4, zero), w4));
      acc_hi = _mm_add_epi32(acc_hi, _mm_madd_epi16(_mm_unpackhi_epi16(t4, zero), w4));
    }
  }
  _mm_storeu_si128((__m128i *)(void *)out, acc_lo);
  _mm_storeu_si128((__m128i *)(void *)(out + 4), acc_hi);
}
#endif

#if defined(__ARM_FEATURE_DSP) && !defined(LENET5_ENGINE_PORTABLE)
#include <arm_acle.h>
#include <string.h>
#define LENET5_ENGINE_ARM_DSP 1
// Cortex-M4 and other Armv7E-M cores: dual 16-bit multiply-accumulates (SMLAD) on
// int8 values widened in pairs (SXTB16), the same integer sums as the portable loops.
static inline uint32_t load_word(const int8_t *p) {  // unaligned word loads are allowed on Armv7-M
  uint32_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

// SXTB16 with its built-in rotation, and the halfword packs, written out because GCC
// does not combine them from C: (bytes 1, 3) sign-extended; (lo a, lo b); (lo a, hi b); (hi b, hi a).
static inline uint32_t sxtb16_ror8(uint32_t x) {
  uint32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
  return r;
}
static inline uint32_t pack_lo_lo(uint32_t a, uint32_t b) {
  uint32_t r;
  __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
  return r;
}
static inline uint32_t pack_lo_hi(uint32_t a, uint32_t b) {
  uint32_t r;
  __asm__("pkhbt %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
  return r;
}
static inline uint32_t pack_hi_hi(uint32_t a, uint32_t b) {  // (hi a, hi b): low half from a's top
  uint32_t r;
  __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(b), "r"(a));
  return r;
}

// acc_i += sum_t w[t] * src[i + t] for i < 4, t < 5 (one kernel row, four columns).
#define CONV_TAPS4_DSP(src, w, a0, a1, a2, a3)                                                 \
  do {                                                                                         \
    const uint32_t x_ = load_word(src), y_ = load_word((src) + 4), wv_ = load_word(w);         \
    const uint32_t e0 = (uint32_t)__sxtb16(x_), e1 = sxtb16_ror8(x_);   /* (s0,s2) (s1,s3) */    \
    const uint32_t f0 = (uint32_t)__sxtb16(y_), f1 = sxtb16_ror8(y_);   /* (s4,s6) (s5,s7) */    \
    const uint32_t g0 = (uint32_t)__sxtb16(wv_), g1 = sxtb16_ror8(wv_); /* (w0,w2) (w1,w3) */    \
    const int16x2_t w01 = (int16x2_t)pack_lo_lo(g0, g1), w23 = (int16x2_t)pack_hi_hi(g0, g1);  \
    const int16x2_t w4 = (int16x2_t)(w)[4];                                                    \
    const int16x2_t s23 = (int16x2_t)pack_hi_hi(e0, e1);                                       \
    const int16x2_t s34 = (int16x2_t)((e1 >> 16) | (f0 << 16));                                \
    (a0) = __smlabb((int16x2_t)f0, w4, __smlad(s23, w23, __smlad((int16x2_t)pack_lo_lo(e0, e1), w01, (a0)))); \
    (a1) = __smlabb((int16x2_t)f1, w4, __smlad(s34, w23, __smlad((int16x2_t)pack_lo_hi(e1, e0), w01, (a1)))); \
    (a2) = __smlatb((int16x2_t)f0, w4, __smlad((int16x2_t)pack_lo_lo(f0, f1), w23, __smlad(s23, w01, (a2)))); \
    (a3) = __smlatb((int16x2_t)f1, w4, __smlad((int16x2_t)pack_lo_hi(f1, f0), w23, __smlad(s34, w01, (a3)))); \
  } while (0)

// sum_i a[i] * b[i], four at a time.
static inline int32_t dot_int8_dsp(const int8_t *a, const int8_t *b, int n, int32_t acc) {
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    const uint32_t x = load_word(a + i), y = load_word(b + i);
    acc = __smlad(__sxtb16(x), __sxtb16(y), acc);                       // bytes 0 and 2
    acc = __smlad((int16x2_t)sxtb16_ror8(x), (int16x2_t)sxtb16_ror8(y), acc);  // bytes 1 and 3
  }
  for (; i < n; ++i) acc += (int32_t)a[i] * b[i];
  return acc;
}
#endif

// One output row of one map, four columns at a time (accumulators stay in registers).
// Reads src[x .. x + 7] of each input row: in range, as in_w = out_w + 4.
#define CONV_K 5
static void conv_row(const struct conv_layer *l, const int8_t *in, const int8_t *w_map, const uint8_t *maps,
                     int n, int y, int32_t bias, int oc, int8_t *dst) {
  const int plane = l->in_h * l->in_w;
#ifdef LENET5_ENGINE_SSE2
  for (int xb = 0; xb < l->out_w; xb += 8) {
    const int x = xb + 8 <= l->out_w ? xb : l->out_w - 8;
    int32_t acc[8];
    conv_row8_sse2(in, plane, l->in_w, w_map, maps, n, y, x, bias, acc);
    for (int i = 0; i < 8; ++i) {
      dst[x + i] = requantize_tanh(acc[i], l->multiplier[oc], l->shift[oc], l->output_offset, l->tanh);
    }
  }
  return;
#endif
  // Blocks of four columns; when out_w is not a multiple of four, the last block
  // overlaps the one before it and writes a few columns twice with equal values.
  for (int xb = 0; xb < l->out_w; xb += 4) {
    const int x = xb + 4 <= l->out_w ? xb : l->out_w - 4;
    int32_t a0 = bias, a1 = bias, a2 = bias, a3 = bias;
    for (int j = 0; j < n; ++j) {
      const int8_t *src = in + maps[j] * plane + y * l->in_w + x;
      const int8_t *w = w_map + j * CONV_K * CONV_K;
      for (int ky = 0; ky < CONV_K; ++ky, src += l->in_w, w += CONV_K) {
#ifdef LENET5_ENGINE_ARM_DSP
        CONV_TAPS4_DSP(src, w, a0, a1, a2, a3);
        continue;
#endif
        // Eight inputs feed the four outputs through the five taps of this kernel row.
        const int32_t s0 = src[0], s1 = src[1], s2 = src[2], s3 = src[3];
        const int32_t s4 = src[4], s5 = src[5], s6 = src[6], s7 = src[7];
        const int32_t w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4];
        a0 += w0 * s0 + w1 * s1 + w2 * s2 + w3 * s3 + w4 * s4;
        a1 += w0 * s1 + w1 * s2 + w2 * s3 + w3 * s4 + w4 * s5;
        a2 += w0 * s2 + w1 * s3 + w2 * s4 + w3 * s5 + w4 * s6;
        a3 += w0 * s3 + w1 * s4 + w2 * s5 + w3 * s6 + w4 * s7;
      }
    }
    dst[x] = requantize_tanh(a0, l->multiplier[oc], l->shift[oc], l->output_offset, l->tanh);
    dst[x + 1] = requantize_tanh(a1, l->multiplier[oc], l->shift[oc], l->output_offset, l->tanh);
    dst[x + 2] = requantize_tanh(a2, l->multiplier[oc], l->shift[oc], l->output_offset, l->tanh);
    dst[x + 3] = requantize_tanh(a3, l->multiplier[oc], l->shift[oc], l->output_offset, l->tanh);
  }
}

// reference_integer_ops::ConvPerChannel, VALID padding, stride 1; planar in and out.
// Skipping the weights the connection table fixes at zero leaves every sum unchanged.
static void conv_valid(const struct conv_layer *l, const int8_t *in, int8_t *out) {
  const int8_t *w_map = l->weights;
  const uint8_t *maps = l->in_maps;
  const int kk = CONV_K * CONV_K;
  for (int oc = 0; oc < l->out_c; ++oc) {
    const int n = l->in_count[oc];
    int32_t wsum = 0;
    for (int i = 0; i < n * kk; ++i) wsum += w_map[i];
    const int32_t bias = l->bias[oc] + l->input_offset * wsum;
    for (int y = 0; y < l->out_h; ++y) {
      conv_row(l, in, w_map, maps, n, y, bias, oc, out + (oc * l->out_h + y) * l->out_w);
    }
    w_map += kk * n;
    maps += n;
  }
}

struct subsampling_layer {
  int in_w, c, out_h, out_w;
  int32_t input_offset, output_offset;
  const int8_t *weights;  // [2][2][c]
  const int32_t *bias, *multiplier;
  const int8_t *shift;
  const int8_t *tanh;
};

// reference_integer_ops::DepthwiseConvPerChannel, 2x2 kernel, stride 2, VALID;
// planar input. Planar output may be written in place over the input: output
// element i is written after the inputs it needs, and all later outputs read
// input elements at index > i. NHWC output (for C5) goes to a separate buffer.
static void subsample(const struct subsampling_layer *l, const int8_t *in, int8_t *out, int nhwc_out) {
  const int in_plane = 2 * l->out_h * l->in_w;
  for (int c = 0; c < l->c; ++c) {
    const int32_t w00 = l->weights[c], w01 = l->weights[l->c + c];
    const int32_t w10 = l->weights[2 * l->c + c], w11 = l->weights[3 * l->c + c];
    const int32_t bias = l->bias[c] + l->input_offset * (w00 + w01 + w10 + w11);
    for (int y = 0; y < l->out_h; ++y) {
      const int8_t *r0 = in + c * in_plane + 2 * y * l->in_w, *r1 = r0 + l->in_w;
      for (int x = 0; x < l->out_w; ++x) {
        const int32_t acc = w00 * r0[2 * x] + w01 * r0[2 * x + 1] + w10 * r1[2 * x] + w11 * r1[2 * x + 1] + bias;
        const int idx = nhwc_out ? (y * l->out_w + x) * l->c + c : (c * l->out_h + y) * l->out_w + x;
        out[idx] = requantize_tanh(acc, l->multiplier[c], l->shift[c], l->output_offset, l->tanh);
      }
    }
  }
}

// reference_integer_ops::FullyConnected, per-tensor weights (zero point 0).
static void fully_connected(const int8_t *in, int n_in, int n_out, const int8_t *weights,
                            const int32_t *bias, int32_t input_offset, int32_t multiplier, int shift,
                            int32_t output_offset, const int8_t *tanh, int8_t *out) {
  for (int o = 0; o < n_out; ++o) {
    const int8_t *w = weights + (size_t)o * (size_t)n_in;
#ifdef LENET5_ENGINE_ARM_DSP
    int32_t acc = dot_int8_dsp(w, in, n_in, bias[o]);
#else
    int32_t acc = bias[o];
    for (int i = 0; i < n_in; ++i) acc += (int32_t)w[i] * in[i];
#endif
    if (input_offset != 0) {  // tanh outputs have zero point 0, so this runs only for other graphs
      int32_t wsum = 0;
      for (int i = 0; i < n_in; ++i) wsum += w[i];
      acc += input_offset * wsum;
    }
    out[o] = requantize_tanh(acc, multiplier, shift, output_offset, tanh);
  }
}

// The RBF output: MUL (F6 by the constant A), SQUARED_DIFFERENCE against the ten
// prototypes (each int8 difference requantized on its own, as TFLM does), SUM.
static void rbf(const int8_t *f6, int8_t out[LENET5_ENGINE_CLASSES]) {
  int32_t scaled[LENET5_RBF_UNITS];
  for (int j = 0; j < LENET5_RBF_UNITS; ++j) {  // reference_integer_ops::MulElementwise
    const int32_t a = LENET5_MUL_INPUT1_OFFSET + f6[j];
    const int32_t b = LENET5_MUL_INPUT2_OFFSET + LENET5_MUL_CONSTANT;
    const int32_t m = LENET5_MUL_OUTPUT_OFFSET +
                      multiply_by_quantized_multiplier(a * b, LENET5_MUL_MULTIPLIER, LENET5_MUL_SHIFT);
    // SquaredDifference's first operand, already offset, shifted and rescaled.
    const int32_t v = (int32_t)clamp_int8(m) + LENET5_SQD_INPUT1_OFFSET;
    scaled[j] = multiply_by_quantized_multiplier(wrap_shl(v, LENET5_SQD_LEFT_SHIFT),
                                                 LENET5_SQD_INPUT1_MULTIPLIER, LENET5_SQD_INPUT1_SHIFT);
  }
  for (int c = 0; c < LENET5_ENGINE_CLASSES; ++c) {
    const int8_t *proto = g_lenet5_rbf_prototypes + c * LENET5_RBF_UNITS;
    int32_t sum = 0;
    for (int j = 0; j < LENET5_RBF_UNITS; ++j) {  // micro/kernels/squared_difference.cc
      const int32_t p = wrap_shl(LENET5_SQD_INPUT2_OFFSET + proto[j], LENET5_SQD_LEFT_SHIFT);
      const int32_t diff = wrap_sub(scaled[j], multiply_by_quantized_multiplier(
                                                   p, LENET5_SQD_INPUT2_MULTIPLIER, LENET5_SQD_INPUT2_SHIFT));
      const int32_t sq = (int32_t)((uint32_t)diff * (uint32_t)diff);
      const int32_t d = multiply_by_quantized_multiplier(sq, LENET5_SQD_OUTPUT_MULTIPLIER,
                                                         LENET5_SQD_OUTPUT_SHIFT) + LENET5_SQD_OUTPUT_OFFSET;
      sum += clamp_int8(d);
    }
    // reference_ops::QuantizedMeanOrSum, compute_sum = true.
    const int32_t shifted = sum - LENET5_SUM_INPUT_ZERO_POINT * LENET5_SUM_COUNT;
    out[c] = clamp_int8(multiply_by_quantized_multiplier(shifted, LENET5_SUM_MULTIPLIER, LENET5_SUM_SHIFT) +
                        LENET5_SUM_OUTPUT_ZERO_POINT);
  }
}

// ------------------------------------------------------------ the network
// Activation buffer plan (bytes of s_arena):
//   input [0, 1024)  C1 -> [1024, 5728)  S2 -> [1024, 2200) in place  C3 -> [2200, 3800)
//   S4 -> [3800, 4200) (NHWC)  C5 -> [0, 120)  F6 -> [120, 204)
#define OFF_IN 0
#define OFF_C1 LENET5_ENGINE_INPUT_SIZE
#define OFF_C3 (OFF_C1 + LENET5_S2_OUT_H * LENET5_S2_OUT_W * LENET5_S2_OUT_C)
#define OFF_S4 (OFF_C3 + LENET5_C3_OUT_H * LENET5_C3_OUT_W * LENET5_C3_OUT_C)
#define OFF_C5 0
#define OFF_F6 (OFF_C5 + LENET5_C5_OUT)
_Static_assert(OFF_S4 + LENET5_C5_IN <= LENET5_ENGINE_ARENA_BYTES, "S4 output does not fit the arena");
_Static_assert(OFF_F6 + LENET5_F6_OUT <= OFF_C3, "C5/F6 outputs must not overlap S4's output");
_Static_assert(LENET5_C1_IN_C == 1 && LENET5_C1_IN_H == LENET5_ENGINE_INPUT_H, "C1 reads the input image");
_Static_assert(LENET5_C5_IN == LENET5_S4_OUT_H * LENET5_S4_OUT_W * LENET5_S4_OUT_C, "C5 reads all of S4");
_Static_assert(LENET5_C1_K == CONV_K && LENET5_C3_K == CONV_K, "the convolutions are 5x5");
_Static_assert(LENET5_C1_OUT_W >= 8 && LENET5_C3_OUT_W >= 8, "conv_row works on blocks of eight (SSE2) or four columns");
// conv_row8_sse2 loads up to 3 bytes past each convolution's input; they must lie in s_arena.
_Static_assert(OFF_C1 + LENET5_S2_OUT_H * LENET5_S2_OUT_W * LENET5_S2_OUT_C + 3 <= LENET5_ENGINE_ARENA_BYTES &&
               OFF_IN + LENET5_ENGINE_INPUT_SIZE + 3 <= LENET5_ENGINE_ARENA_BYTES, "SSE2 over-read room");

static const struct conv_layer kC1 = {
    LENET5_C1_IN_H, LENET5_C1_IN_W, LENET5_C1_IN_C, LENET5_C1_OUT_H, LENET5_C1_OUT_W, LENET5_C1_OUT_C,
    LENET5_C1_K, LENET5_C1_INPUT_OFFSET, LENET5_C1_OUTPUT_OFFSET, g_lenet5_c1_weights,
    g_lenet5_c1_in_count, g_lenet5_c1_in_maps, g_lenet5_c1_bias, g_lenet5_c1_multiplier,
    g_lenet5_c1_shift, s_tanh[kTanhC1]};
static const struct conv_layer kC3 = {
    LENET5_C3_IN_H, LENET5_C3_IN_W, LENET5_C3_IN_C, LENET5_C3_OUT_H, LENET5_C3_OUT_W, LENET5_C3_OUT_C,
    LENET5_C3_K, LENET5_C3_INPUT_OFFSET, LENET5_C3_OUTPUT_OFFSET, g_lenet5_c3_weights,
    g_lenet5_c3_in_count, g_lenet5_c3_in_maps, g_lenet5_c3_bias, g_lenet5_c3_multiplier,
    g_lenet5_c3_shift, s_tanh[kTanhC3]};
static const struct subsampling_layer kS2 = {
    LENET5_S2_IN_W, LENET5_S2_OUT_C, LENET5_S2_OUT_H, LENET5_S2_OUT_W, LENET5_S2_INPUT_OFFSET,
    LENET5_S2_OUTPUT_OFFSET, g_lenet5_s2_weights, g_lenet5_s2_bias, g_lenet5_s2_multiplier,
    g_lenet5_s2_shift, s_tanh[kTanhS2]};
static const struct subsampling_layer kS4 = {
    LENET5_S4_IN_W, LENET5_S4_OUT_C, LENET5_S4_OUT_H, LENET5_S4_OUT_W, LENET5_S4_INPUT_OFFSET,
    LENET5_S4_OUTPUT_OFFSET, g_lenet5_s4_weights, g_lenet5_s4_bias, g_lenet5_s4_multiplier,
    g_lenet5_s4_shift, s_tanh[kTanhS4]};

void lenet5_engine_invoke(int8_t output[LENET5_ENGINE_CLASSES]) {
  int8_t *a = s_arena;
  conv_valid(&kC1, a + OFF_IN, a + OFF_C1);
  subsample(&kS2, a + OFF_C1, a + OFF_C1, 0);
  conv_valid(&kC3, a + OFF_C1, a + OFF_C3);
  subsample(&kS4, a + OFF_C3, a + OFF_S4, 1);
  fully_connected(a + OFF_S4, LENET5_C5_IN, LENET5_C5_OUT, g_lenet5_c5_weights, g_lenet5_c5_bias,
                  LENET5_C5_INPUT_OFFSET, LENET5_C5_MULTIPLIER, LENET5_C5_SHIFT, LENET5_C5_OUTPUT_OFFSET,
                  s_tanh[kTanhC5], a + OFF_C5);
  fully_connected(a + OFF_C5, LENET5_F6_IN, LENET5_F6_OUT, g_lenet5_f6_weights, g_lenet5_f6_bias,
                  LENET5_F6_INPUT_OFFSET, LENET5_F6_MULTIPLIER, LENET5_F6_SHIFT, LENET5_F6_OUTPUT_OFFSET,
                  s_tanh[kTanhF6], a + OFF_F6);
  rbf(a + OFF_F6, output);
}

int lenet5_engine_argmin(const int8_t output[LENET5_ENGINE_CLASSES]) {
  int best = 0;
  for (int c = 1; c < LENET5_ENGINE_CLASSES; ++c) {
    if (output[c] < output[best]) best = c;
  }
  return best;
}
