"""The JPEG round trip without its entropy coding: libjpeg-turbo's integer pipeline, natively.

A baseline JPEG's Huffman coding is lossless, so ``decode(encode(x, q))`` is fixed by the
lossy steps alone. This kernel repeats them with libjpeg-turbo's integer arithmetic, as its
x86 SIMD code does them (the encoder defaults Pillow and torchvision keep): RGB -> YCbCr in
16-bit fixed point, 4:2:0 box downsampling with alternating bias, edge replication to whole
blocks (columns at full resolution, rows of the subsampled planes after downsampling), the
islow forward DCT, quantisation by reciprocal multiplication (``compute_reciprocal``),
dequantisation, the islow inverse DCT with 16-bit and 8-bit saturation, "fancy" triangular
upsampling with replicated context rows and columns (plain replication below 3 chroma
columns), and YCbCr -> RGB. Grey images are one luminance plane.

It skips about two thirds of the codec's work (the Huffman passes, marker writing and
parsing, the codec's row buffering), and 8x8 blocks go through the transforms as eight
8-lane integer vectors. :mod:`corruptions.imageio` takes this path only where a probe shows
it gives the installed Pillow codec's pixels, and tests compare it on many images, sizes
and qualities. Built into the corruptions' native library (:mod:`corruptions.native`).
"""

from __future__ import annotations

import functools

import torch

# Annex K of the JPEG standard (ITU-T T.81), natural (row-major) order: libjpeg's defaults.
_LUMINANCE = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
_CHROMINANCE = (17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
                24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99) + (99,) * 37  # fmt: skip


def quant_tables(quality: int) -> tuple[list[int], list[int]]:
    """libjpeg's ``jpeg_set_quality(quality, force_baseline=TRUE)`` tables (luminance, chrominance)."""
    quality = min(max(int(quality), 1), 100)
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    luma, chroma = ([min(max((b * scale + 50) // 100, 1), 255) for b in table] for table in (_LUMINANCE, _CHROMINANCE))
    return luma, chroma


def reciprocal(divisor: int) -> tuple[int, int, int]:
    """libjpeg-turbo's (multiplier, correction, shift) that quantise by ``divisor`` (> 1):
    ``q = (|x| + correction) * multiplier >> shift``, with the sign of x."""
    bits = divisor.bit_length() - 1
    shift = 16 + bits
    mult, rest = divmod(1 << shift, divisor)
    corr = divisor // 2
    if rest == 0:  # a power of two
        mult, shift = mult >> 1, shift - 1
    elif rest <= divisor // 2:
        corr += 1
    else:
        mult += 1
    return mult, corr, shift


@functools.lru_cache(maxsize=128)
def kernel_tables(quality: int) -> torch.Tensor:
    """int32 (4, 2, 64): per plane kind (luma, chroma) the dequantiser, multiplier, correction
    and shift of every coefficient, the tables the native kernel reads."""
    rows = []
    for table in quant_tables(quality):
        recips = [reciprocal(q << 3) for q in table]  # islow's DCT output is 8x the coefficient
        rows.append([table, [r[0] for r in recips], [r[1] for r in recips], [r[2] for r in recips]])
    return torch.tensor(rows, dtype=torch.int32).permute(1, 0, 2).contiguous()


JPEG_SOURCE = r"""
#include <algorithm>
#include <cstdint>
#include <vector>

namespace jpeg {

typedef int32_t v8 __attribute__((vector_size(32)));
typedef uint32_t u8v __attribute__((vector_size(32)));

constexpr int32_t fix16(double x) { return (int32_t)(x * 65536.0 + 0.5); }

// 8x8 transpose of eight row vectors, in place (three rounds of two-source shuffles)
static inline void transpose(v8* r) {
  v8 a[8], b[8];
  for (int i = 0; i < 8; i += 2) {
    a[i] = __builtin_shuffle(r[i], r[i + 1], (v8){0, 8, 1, 9, 4, 12, 5, 13});
    a[i + 1] = __builtin_shuffle(r[i], r[i + 1], (v8){2, 10, 3, 11, 6, 14, 7, 15});
  }
  for (int i = 0; i < 8; i += 4)
    for (int j = 0; j < 2; ++j) {
      b[i + j] = __builtin_shuffle(a[i + j], a[i + j + 2], (v8){0, 1, 8, 9, 4, 5, 12, 13});
      b[i + j + 2] = __builtin_shuffle(a[i + j], a[i + j + 2], (v8){2, 3, 10, 11, 6, 7, 14, 15});
    }
  for (int j = 0; j < 4; ++j) {  // b[1] holds columns 2 and 6, b[2] columns 1 and 5
    const int s = j == 1 ? 2 : j == 2 ? 1 : j;
    r[j] = __builtin_shuffle(b[s], b[s + 4], (v8){0, 1, 2, 3, 8, 9, 10, 11});
    r[j + 4] = __builtin_shuffle(b[s], b[s + 4], (v8){4, 5, 6, 7, 12, 13, 14, 15});
  }
}

// islow forward DCT along the vector index (jfdctint.c's arithmetic); FIRST: pass 1's scaling
template <bool FIRST>
static inline void fdct_1d(v8* d) {
  constexpr int S = FIRST ? 11 : 15;
  const v8 tmp0 = d[0] + d[7], tmp7 = d[0] - d[7], tmp1 = d[1] + d[6], tmp6 = d[1] - d[6];
  const v8 tmp2 = d[2] + d[5], tmp5 = d[2] - d[5], tmp3 = d[3] + d[4], tmp4 = d[3] - d[4];
  const v8 tmp10 = tmp0 + tmp3, tmp13 = tmp0 - tmp3, tmp11 = tmp1 + tmp2, tmp12 = tmp1 - tmp2;
  if (FIRST) { d[0] = (tmp10 + tmp11) << 2; d[4] = (tmp10 - tmp11) << 2; }
  else { d[0] = (tmp10 + tmp11 + 2) >> 2; d[4] = (tmp10 - tmp11 + 2) >> 2; }
  const v8 z1 = (tmp12 + tmp13) * 4433;
  d[2] = (z1 + tmp13 * 6270 + (1 << (S - 1))) >> S;
  d[6] = (z1 - tmp12 * 15137 + (1 << (S - 1))) >> S;
  const v8 z5 = (tmp4 + tmp6 + tmp5 + tmp7) * 9633;
  const v8 o1 = (tmp4 + tmp7) * -7373, o2 = (tmp5 + tmp6) * -20995;
  const v8 o3 = (tmp4 + tmp6) * -16069 + z5, o4 = (tmp5 + tmp7) * -3196 + z5;
  d[7] = (tmp4 * 2446 + o1 + o3 + (1 << (S - 1))) >> S;
  d[5] = (tmp5 * 16819 + o2 + o4 + (1 << (S - 1))) >> S;
  d[3] = (tmp6 * 25172 + o2 + o3 + (1 << (S - 1))) >> S;
  d[1] = (tmp7 * 12299 + o1 + o4 + (1 << (S - 1))) >> S;
}

// islow inverse DCT along the vector index (jidctint.c); FIRST: pass 1 (16-bit saturated
// results, as the SIMD code stores them), else pass 2 (saturated to 8 bits, centred)
template <bool FIRST>
static inline void idct_1d(v8* d) {
  constexpr int S = FIRST ? 11 : 18;
  const v8 z1 = (d[2] + d[6]) * 4433;
  const v8 tmp2 = z1 - d[6] * 15137, tmp3 = z1 + d[2] * 6270;
  const v8 tmp0 = (d[0] + d[4]) << 13, tmp1 = (d[0] - d[4]) << 13;
  const v8 tmp10 = tmp0 + tmp3, tmp13 = tmp0 - tmp3, tmp11 = tmp1 + tmp2, tmp12 = tmp1 - tmp2;
  const v8 z5 = (d[7] + d[3] + d[5] + d[1]) * 9633;
  const v8 q1 = (d[7] + d[1]) * -7373, q2 = (d[5] + d[3]) * -20995;
  const v8 q3 = (d[7] + d[3]) * -16069 + z5, q4 = (d[5] + d[1]) * -3196 + z5;
  const v8 o0 = d[7] * 2446 + q1 + q3, o1 = d[5] * 16819 + q2 + q4;
  const v8 o2 = d[3] * 25172 + q2 + q3, o3 = d[1] * 12299 + q1 + q4;
  constexpr int32_t R = 1 << (S - 1);
  const v8 lo = (v8){} + (FIRST ? -32768 : -128), hi = (v8){} + (FIRST ? 32767 : 127);
  const v8 out[8] = {tmp10 + o3, tmp11 + o2, tmp12 + o1, tmp13 + o0,
                     tmp13 - o0, tmp12 - o1, tmp11 - o2, tmp10 - o3};
  for (int k = 0; k < 8; ++k) {
    v8 v = (out[k] + R) >> S;
    v = v < lo ? lo : v;
    v = v > hi ? hi : v;
    d[k] = FIRST ? v : v + 128;
  }
}

// one 8x8 block of level-shifted samples (row stride `stride`) through the lossy steps;
// t: int32 (4, 64) dequantiser, multiplier, correction, shift
static inline void block_roundtrip(int32_t* p, int64_t stride, const int32_t* t) {
  v8 r[8];
  for (int i = 0; i < 8; ++i) __builtin_memcpy(&r[i], p + i * stride, sizeof(v8));
  transpose(r);
  fdct_1d<true>(r);
  transpose(r);
  fdct_1d<false>(r);
  for (int i = 0; i < 8; ++i) {
    v8 q, m, c, s;
    __builtin_memcpy(&q, t + i * 8, sizeof(v8));
    __builtin_memcpy(&m, t + 64 + i * 8, sizeof(v8));
    __builtin_memcpy(&c, t + 128 + i * 8, sizeof(v8));
    __builtin_memcpy(&s, t + 192 + i * 8, sizeof(v8));
    const v8 neg = r[i] < 0;
    const v8 a = neg ? -r[i] : r[i];
    const v8 lv = (v8)((u8v)((a + c) * m) >> (u8v)s);
    r[i] = (neg ? -lv : lv) * q;
  }
  idct_1d<true>(r);
  transpose(r);
  idct_1d<false>(r);
  transpose(r);
  for (int i = 0; i < 8; ++i) __builtin_memcpy(p + i * stride, &r[i], sizeof(v8));
}

static void plane_roundtrip(int32_t* p, int64_t rows, int64_t cols, const int32_t* t) {
  for (int64_t y = 0; y < rows; y += 8)
    for (int64_t x = 0; x < cols; x += 8) block_roundtrip(p + y * cols + x, cols, t);
}

// RGB -> Y, Cb, Cr in libjpeg's 16-bit fixed point (its tables' sums, rounding included)
static inline int32_t luma(int32_t r, int32_t g, int32_t b) {
  return (fix16(0.299) * r + fix16(0.587) * g + fix16(0.114) * b + 32768) >> 16;
}
static inline int32_t chroma_b(int32_t r, int32_t g, int32_t b) {
  return (-fix16(0.16874) * r - fix16(0.33126) * g + fix16(0.5) * b + (128 << 16) + 32767) >> 16;
}
static inline int32_t chroma_r(int32_t r, int32_t g, int32_t b) {
  return (fix16(0.5) * r - fix16(0.41869) * g - fix16(0.08131) * b + (128 << 16) + 32767) >> 16;
}

// the (4, 64) tables of plane kind p (0 luma, 1 chroma) out of the kernel's (4, 2, 64)
static void plane_tables(const int32_t* tables, int p, int32_t* out) {
  for (int k = 0; k < 4; ++k)
    for (int e = 0; e < 64; ++e) out[k * 64 + e] = tables[(k * 2 + p) * 64 + e];
}

struct Buffers {
  std::vector<int32_t> y, cb, cr, rowb0, rowb1, rowr0, rowr1, sum0, sum1;
};

static void grey_image(const uint8_t* src, int64_t h, int64_t w, const int32_t* t, uint8_t* dst, Buffers& buf) {
  const int64_t ph = (h + 7) / 8 * 8, pw = (w + 7) / 8 * 8;
  buf.y.resize(ph * pw);
  for (int64_t y = 0; y < ph; ++y) {
    const uint8_t* s = src + std::min(y, h - 1) * w;
    int32_t* o = buf.y.data() + y * pw;
    for (int64_t x = 0; x < w; ++x) o[x] = (int32_t)s[x] - 128;
    for (int64_t x = w; x < pw; ++x) o[x] = o[w - 1];
  }
  plane_roundtrip(buf.y.data(), ph, pw, t);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) dst[y * w + x] = (uint8_t)buf.y[y * pw + x];
}

// encoder side of a colour image: level-shifted Y (ph x pw) and 2x2-averaged Cb, Cr (pch x pcw)
static void colour_planes(const uint8_t* src, int64_t h, int64_t w, Buffers& buf) {
  const int64_t hw = h * w, ph = (h + 7) / 8 * 8, pw = (w + 7) / 8 * 8;
  const int64_t pch = (h + 15) / 16 * 8, pcw = (w + 15) / 16 * 8, ch = (h + 1) / 2, wide = 2 * pcw;
  buf.y.resize(ph * pw); buf.cb.resize(pch * pcw); buf.cr.resize(pch * pcw);
  for (auto* v : {&buf.rowb0, &buf.rowb1, &buf.rowr0, &buf.rowr1}) v->resize(wide);
  for (int64_t y = 0; y < std::max(ph, 2 * ch); ++y) {
    const int64_t sy = std::min(y, h - 1);
    const uint8_t *r = src + sy * w, *g = r + hw, *b = g + hw;
    int32_t* cb = (y & 1 ? buf.rowb1 : buf.rowb0).data();
    int32_t* cr = (y & 1 ? buf.rowr1 : buf.rowr0).data();
    if (y < ph) {
      int32_t* o = buf.y.data() + y * pw;
      for (int64_t x = 0; x < w; ++x) o[x] = luma(r[x], g[x], b[x]) - 128;
      for (int64_t x = w; x < pw; ++x) o[x] = o[w - 1];
    }
    if (y >= 2 * ch) continue;
    for (int64_t x = 0; x < w; ++x) { cb[x] = chroma_b(r[x], g[x], b[x]); cr[x] = chroma_r(r[x], g[x], b[x]); }
    for (int64_t x = w; x < wide; ++x) { cb[x] = cb[w - 1]; cr[x] = cr[w - 1]; }
    if (!(y & 1)) continue;
    int32_t *ob = buf.cb.data() + (y / 2) * pcw, *orr = buf.cr.data() + (y / 2) * pcw;
    const int32_t *b0 = buf.rowb0.data(), *b1 = buf.rowb1.data(), *r0 = buf.rowr0.data(), *r1 = buf.rowr1.data();
    for (int64_t j = 0; j < pcw; ++j) {
      const int32_t bias = 1 + (j & 1);
      ob[j] = ((b0[2 * j] + b0[2 * j + 1] + b1[2 * j] + b1[2 * j + 1] + bias) >> 2) - 128;
      orr[j] = ((r0[2 * j] + r0[2 * j + 1] + r1[2 * j] + r1[2 * j + 1] + bias) >> 2) - 128;
    }
  }
  for (int64_t i = ch; i < pch; ++i)
    for (int64_t j = 0; j < pcw; ++j) {
      buf.cb[i * pcw + j] = buf.cb[(ch - 1) * pcw + j];
      buf.cr[i * pcw + j] = buf.cr[(ch - 1) * pcw + j];
    }
}

// one output row (2 * cw values, the first w used) of an upsampled chroma plane of pcw columns,
// cw of them real: row i weighted 3/4, its neighbour k 1/4, then the same across columns
static void upsample_row(const int32_t* plane, int64_t pcw, int64_t cw, int64_t i, int64_t k,
                         int32_t* __restrict sum, int32_t* __restrict out) {
  const int32_t *near = plane + i * pcw, *far = plane + k * pcw;
  if (cw <= 2) {  // libjpeg-turbo upsamples fewer than three columns by replication
    for (int64_t x = 0; x < 2 * cw; ++x) out[x] = near[x >> 1];
    return;
  }
  int32_t* s = sum + 1;  // s[-1] and s[cw] replicate the edge columns
#pragma omp simd
  for (int64_t j = 0; j < cw; ++j) s[j] = 3 * near[j] + far[j];
  s[-1] = s[0];
  s[cw] = s[cw - 1];
#pragma omp simd
  for (int64_t j = 0; j < cw; ++j) {
    out[2 * j] = (3 * s[j] + s[j - 1] + 8) >> 4;
    out[2 * j + 1] = (3 * s[j] + s[j + 1] + 7) >> 4;
  }
}

static void colour_image(const uint8_t* src, int64_t h, int64_t w, const int32_t* tables, uint8_t* dst,
                         Buffers& buf) {
  const int64_t hw = h * w, ph = (h + 7) / 8 * 8, pw = (w + 7) / 8 * 8;
  const int64_t pch = (h + 15) / 16 * 8, pcw = (w + 15) / 16 * 8, ch = (h + 1) / 2, cw = (w + 1) / 2;
  colour_planes(src, h, w, buf);
  int32_t luma_t[256], chroma_t[256];
  plane_tables(tables, 0, luma_t);
  plane_tables(tables, 1, chroma_t);
  plane_roundtrip(buf.y.data(), ph, pw, luma_t);
  plane_roundtrip(buf.cb.data(), pch, pcw, chroma_t);
  plane_roundtrip(buf.cr.data(), pch, pcw, chroma_t);
  buf.sum0.resize(4 * cw); buf.sum1.resize(cw + 2);
  int32_t *ub = buf.sum0.data(), *ur = buf.sum0.data() + 2 * cw, *sum = buf.sum1.data();
  for (int64_t y = 0; y < h; ++y) {
    const int64_t i = y >> 1, k = y & 1 ? std::min(i + 1, ch - 1) : std::max<int64_t>(i - 1, 0);
    upsample_row(buf.cb.data(), pcw, cw, i, k, sum, ub);
    upsample_row(buf.cr.data(), pcw, cw, i, k, sum, ur);
    const int32_t* yy = buf.y.data() + y * pw;
    uint8_t *r = dst + y * w, *g = r + hw, *b = g + hw;
#pragma omp simd
    for (int64_t x = 0; x < w; ++x) {
      const int32_t lum = yy[x], cbv = ub[x] - 128, crv = ur[x] - 128;
      const int32_t rv = lum + ((fix16(1.402) * crv + 32768) >> 16);
      const int32_t gv = lum + ((-fix16(0.34414) * cbv - fix16(0.71414) * crv + 32768) >> 16);
      const int32_t bv = lum + ((fix16(1.772) * cbv + 32768) >> 16);
      r[x] = (uint8_t)std::min(std::max(rv, 0), 255);
      g[x] = (uint8_t)std::min(std::max(gv, 0), 255);
      b[x] = (uint8_t)std::min(std::max(bv, 0), 255);
    }
  }
}

}  // namespace jpeg

extern "C" {

// JPEG encode + decode of n uint8 (c, h, w) images (c = 1 grey, 3 RGB 4:2:0), tables from
// native_jpeg.kernel_tables(quality): the decoded pixels, without the entropy coding
void jpeg_roundtrip_u8(const uint8_t* x, int64_t n, int64_t c, int64_t h, int64_t w, const int32_t* tables,
                       uint8_t* out, int threads) {
#pragma omp parallel num_threads(threads) if (threads > 1 && n > 1)
  {
    jpeg::Buffers buf;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* src = x + i * c * h * w;
      uint8_t* dst = out + i * c * h * w;
      if (c == 1) {
        int32_t luma_t[256];
        jpeg::plane_tables(tables, 0, luma_t);
        jpeg::grey_image(src, h, w, luma_t, dst, buf);
      } else {
        jpeg::colour_image(src, h, w, tables, dst, buf);
      }
    }
  }
}

}
"""
