"""C++ source of the native image kernels: separable shift filters, spatter's water mask and
Pillow's BOX resize (pixelate), frost's and spatter's blends of uint8 images, and the
bilinear sampler (elastic_transform), defocus blur's grouped tap sums and the JPEG
round trip's layout changes.

Built into the same library as the stream kernels (:mod:`corruptions.native`). Each kernel
repeats its eager counterpart's float32 operations in the same order (no fused
multiply-add: the build passes ``-ffp-contract=off``), so the outputs are the eager bits;
``tests/test_corruptions_native.py`` compares them. Kept apart from ``native.py`` so the
build machinery stays readable.
"""

IMAGE_SOURCE = r"""
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

extern "C" {

// ops.shift_filter on `planes` float32 planes of h x w: a horizontal pass then a vertical
// one, each output the float32 sum ((0 + t0*x0) + t1*x1) + ... over the given taps in order.
// tap j of a pass reads padded position (output + off_j); idx maps padded positions to source
// columns (rows), -1 for a constant-zero border. n_w (n_h) = 0 skips that pass.
void shift_filter(const float* x, int64_t planes, int64_t h, int64_t w,
                  const float* taps_w, const int64_t* off_w, int64_t n_w, const int64_t* idx_w, int64_t len_w,
                  const float* taps_h, const int64_t* off_h, int64_t n_h, const int64_t* idx_h,
                  float* out, int threads) {
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> row(n_w ? len_w : 1), mid(n_w && n_h ? h * w : 1), zero(w, 0.0f);
#pragma omp for schedule(static)
    for (int64_t p = 0; p < planes; ++p) {
      const float* src = x + p * h * w;
      float* dst = out + p * h * w;
      const float* hsrc = src;
      if (n_w) {
        float* hdst = n_h ? mid.data() : dst;
        for (int64_t y = 0; y < h; ++y) {
          const float* line = src + y * w;
          for (int64_t k = 0; k < len_w; ++k) row[k] = idx_w[k] < 0 ? 0.0f : line[idx_w[k]];
          float* o = hdst + y * w;
          for (int64_t i = 0; i < w; ++i) o[i] = 0.0f;
          for (int64_t j = 0; j < n_w; ++j) {
            const float t = taps_w[j];
            const float* r = row.data() + off_w[j];
#pragma omp simd
            for (int64_t i = 0; i < w; ++i) o[i] = o[i] + t * r[i];
          }
        }
        hsrc = hdst;
      }
      if (!n_h) continue;
      for (int64_t y = 0; y < h; ++y) {
        float* o = dst + y * w;
        for (int64_t i = 0; i < w; ++i) o[i] = 0.0f;
        for (int64_t j = 0; j < n_h; ++j) {
          const float t = taps_h[j];
          const int64_t r = idx_h[y + off_h[j]];
          const float* line = r < 0 ? zero.data() : hsrc + r * w;
#pragma omp simd
          for (int64_t i = 0; i < w; ++i) o[i] = o[i] + t * line[i];
        }
      }
    }
  }
}

static inline int64_t mirror_index(int64_t i, int64_t n) {  // scipy 'mirror' for pads of one
  if (n == 1) return 0;
  return i < 0 ? -i : (i >= n ? 2 * n - 2 - i : i);
}

// v (h x w) padded by one pixel into p ((h + 2) x (w + 2)): 'nearest', 'mirror' or zeros.
enum Border { NEAREST, MIRROR, ZERO };
static void pad1(const float* v, int64_t h, int64_t w, Border mode, float* p) {
  const int64_t pw = w + 2;
  for (int64_t y = -1; y <= h; ++y) {
    float* o = p + (y + 1) * pw;
    if (mode == ZERO && (y < 0 || y >= h)) { for (int64_t i = 0; i < pw; ++i) o[i] = 0.0f; continue; }
    const int64_t r = mode == NEAREST ? std::min(std::max(y, (int64_t)0), h - 1) : mirror_index(y, h);
    const float* l = v + r * w;
    for (int64_t i = 0; i < w; ++i) o[i + 1] = l[i];
    o[0] = mode == ZERO ? 0.0f : (mode == NEAREST ? l[0] : l[mirror_index(-1, w)]);
    o[w + 1] = mode == ZERO ? 0.0f : (mode == NEAREST ? l[w - 1] : l[mirror_index(w, w)]);
  }
}

// cv2.blur 3x3 (mirror border) as weather._box3 computes it: rows then columns, each
// ((0 + t*a) + t*b) + t*c with t = float32(1/3). p: scratch of (h + 2) x (w + 2).
static void box3(const float* v, int64_t h, int64_t w, float* p, float* tmp, float* out) {
  const float t = (float)(1.0 / 3.0);
  const int64_t pw = w + 2;
  pad1(v, h, w, MIRROR, p);
  for (int64_t y = 0; y < h; ++y) {
    const float* l = p + (y + 1) * pw;
    float* o = tmp + y * w;
#pragma omp simd
    for (int64_t i = 0; i < w; ++i) o[i] = ((0.0f + t * l[i]) + t * l[i + 1]) + t * l[i + 2];
  }
  for (int64_t y = 0; y < h; ++y) {
    const float* a = tmp + mirror_index(y - 1, h) * w;
    const float* b = tmp + y * w;
    const float* c = tmp + mirror_index(y + 1, h) * w;
    float* o = out + y * w;
#pragma omp simd
    for (int64_t i = 0; i < w; ++i) o[i] = ((0.0f + t * a[i]) + t * b[i]) + t * c[i];
  }
}

// cv2.Canny(img, 50, 150) as weather.canny_edges computes it; hysteresis grows at most h + w
// rounds. p, pm: scratch of (h + 2) x (w + 2).
static void canny(const float* img, int64_t h, int64_t w, float tan22, float tan67, float* p, float* pm,
                  float* gx, float* gy, float* mag, uint8_t* weak, uint8_t* edge, std::vector<int64_t>& queue) {
  const int64_t pw = w + 2;
  pad1(img, h, w, NEAREST, p);
  for (int64_t y = 0; y < h; ++y) {  // 3x3 Sobel: integer-valued, exact in any order
    const float *up = p + y * pw, *mid = up + pw, *dn = mid + pw;
    float *ox = gx + y * w, *oy = gy + y * w, *om = mag + y * w;
#pragma omp simd
    for (int64_t i = 0; i < w; ++i) {
      ox[i] = (up[i + 2] - up[i]) + 2.0f * (mid[i + 2] - mid[i]) + (dn[i + 2] - dn[i]);
      oy[i] = (dn[i] + 2.0f * dn[i + 1] + dn[i + 2]) - (up[i] + 2.0f * up[i + 1] + up[i + 2]);
      om[i] = std::fabs(ox[i]) + std::fabs(oy[i]);
    }
  }
  pad1(mag, h, w, ZERO, pm);
  for (int64_t y = 0; y < h; ++y) {  // non-maximum suppression over the four directions
    const float *up = pm + y * pw, *mid = up + pw, *dn = mid + pw;
    const float *ox = gx + y * w, *oy = gy + y * w;
    uint8_t *wk = weak + y * w, *ed = edge + y * w;
#pragma omp simd
    for (int64_t i = 0; i < w; ++i) {
      const float m = mid[i + 1], ax = std::fabs(ox[i]), ay = std::fabs(oy[i]);
      const bool across = (m > mid[i]) & (m >= mid[i + 2]);
      const bool along = (m > up[i + 1]) & (m >= dn[i + 1]);
      const bool main_diag = (m > up[i]) & (m > dn[i + 2]);
      const bool anti_diag = (m > up[i + 2]) & (m > dn[i]);
      const bool flat = ay < ax * tan22, steep = !flat & (ay > ax * tan67), diag = !flat & !steep;
      const bool same_sign = ox[i] * oy[i] > 0.0f;
      const bool keep = (flat & across) | (steep & along) | (diag & same_sign & main_diag) |
                        (diag & !same_sign & anti_diag);  // branch-free, so the loop vectorises
      const bool is_weak = keep & (m > 50.0f);
      wk[i] = is_weak;
      ed[i] = is_weak & (m > 150.0f);
    }
  }
  queue.clear();
  for (int64_t e = 0; e < h * w; ++e)
    if (edge[e]) queue.push_back(e);
  size_t begin = 0;
  for (int64_t round = 0; round < h + w && begin < queue.size(); ++round) {
    const size_t end = queue.size();
    for (size_t q = begin; q < end; ++q) {
      const int64_t y = queue[q] / w, i = queue[q] % w;
      for (int64_t dy = -1; dy <= 1; ++dy)
        for (int64_t dx = -1; dx <= 1; ++dx) {
          const int64_t yy = y + dy, ii = i + dx;
          if (yy < 0 || yy >= h || ii < 0 || ii >= w) continue;
          const int64_t e = yy * w + ii;
          if (weak[e] && !edge[e]) { edge[e] = 1; queue.push_back(e); }
        }
    }
    begin = end;
  }
}

// weather.truncated_distance: exact Euclidean distance to the nearest edge within +-20 rows
// and columns (squared distances are integers, so any evaluation order gives the same value).
static void truncated_distance(const uint8_t* edge, int64_t h, int64_t w, int32_t* rowbest, int32_t* column,
                               float* dist) {
  const int32_t limit = 20, inf = 4 * limit * limit + 1;
  std::vector<int32_t> padded(w + 2 * limit, inf);  // one row: 0 at edges, inf elsewhere and outside
  for (int64_t y = 0; y < h; ++y) {
    const uint8_t* e = edge + y * w;
    int32_t* __restrict p = padded.data() + limit;
    for (int64_t i = 0; i < w; ++i) p[i] = e[i] ? 0 : inf;
    int32_t* __restrict b = rowbest + y * w;
    for (int64_t i = 0; i < w; ++i) b[i] = p[i];
    for (int32_t d = 1; d <= limit; ++d) {
      const int32_t dd = d * d;
      const int32_t *left = p - d, *right = p + d;
#pragma omp simd
      for (int64_t i = 0; i < w; ++i) {
        const int32_t v = std::min(left[i], right[i]) + dd;
        b[i] = b[i] < v ? b[i] : v;
      }
    }
  }
  for (int64_t y = 0; y < h; ++y) {
    int32_t* __restrict acc = column + y * w;
    for (int64_t i = 0; i < w; ++i) acc[i] = rowbest[y * w + i];
    for (int32_t d = 1; d <= limit; ++d) {
      const int32_t dd = d * d;
      for (const int64_t yy : {y - d, y + d}) {
        if (yy < 0 || yy >= h) continue;
        const int32_t* __restrict b = rowbest + yy * w;
#pragma omp simd
        for (int64_t i = 0; i < w; ++i) {
          const int32_t v = b[i] + dd;
          acc[i] = acc[i] < v ? acc[i] : v;
        }
      }
    }
    float* o = dist + y * w;
#pragma omp simd
    for (int64_t i = 0; i < w; ++i) o[i] = std::min(std::sqrt((float)acc[i]), (float)limit);
  }
}

// cv2.equalizeHist as weather.equalize_hist computes it (v: uint8-valued floats, in place).
static void equalize_hist(float* v, int64_t total) {
  int64_t hist[256] = {0};
  for (int64_t e = 0; e < total; ++e) hist[std::min(std::max((int64_t)v[e], (int64_t)0), (int64_t)255)]++;
  int64_t first = 0;
  while (first < 255 && hist[first] == 0) ++first;
  const int64_t h0 = hist[first];
  if (h0 == total) {  // one grey level: OpenCV keeps it
    for (int64_t e = 0; e < total; ++e) v[e] = (float)first;
    return;
  }
  const float scale = (1.0f / (float)std::max(total - h0, (int64_t)1)) * 255.0f;  // torch's 255 / t
  float lut[256];
  int64_t cum = 0;
  for (int b = 0; b < 256; ++b) {
    cum += hist[b];
    const float level = std::nearbyint((float)(cum - h0) * scale);
    lut[b] = std::min(std::max(level, 0.0f), 255.0f);
  }
  for (int64_t e = 0; e < total; ++e) v[e] = lut[std::min(std::max((int64_t)v[e], (int64_t)0), (int64_t)255)];
}

// weather._water_mask from the truncated liquid levels lu8 (n images of h x w float32).
void water_mask(const float* lu8, int64_t n, int64_t h, int64_t w, float tan22, float tan67, float* out,
                int threads) {
  const int64_t hw = h * w, pw = w + 2, padded = (h + 2) * (w + 2);
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> gx(hw), gy(hw), mag(hw), a(hw), b(hw), p(padded), pm(padded);
    std::vector<uint8_t> weak(hw), edge(hw);
    std::vector<int32_t> rowbest(2 * hw);
    std::vector<int64_t> queue;
#pragma omp for schedule(static)
    for (int64_t k = 0; k < n; ++k) {
      const float* img = lu8 + k * hw;
      canny(img, h, w, tan22, tan67, p.data(), pm.data(), gx.data(), gy.data(), mag.data(), weak.data(),
            edge.data(), queue);
      truncated_distance(edge.data(), h, w, rowbest.data(), rowbest.data() + hw, a.data());
      box3(a.data(), h, w, p.data(), gx.data(), b.data());
      for (int64_t e = 0; e < hw; ++e) b[e] = std::floor(b[e]);
      equalize_hist(b.data(), hw);
      pad1(b.data(), h, w, MIRROR, p.data());
      for (int64_t y = 0; y < h; ++y) {  // filter2D(_SPATTER_KERNEL) to CV_8U: integer sums, exact
        const float *up = p.data() + y * pw, *mid = up + pw, *dn = mid + pw;
        float* o = a.data() + y * w;
#pragma omp simd
        for (int64_t i = 0; i < w; ++i) {
          const float s = -2.0f * up[i] - up[i + 1] - mid[i] + mid[i + 1] + mid[i + 2] + dn[i + 1] + 2.0f * dn[i + 2];
          o[i] = std::min(std::max(std::nearbyint(s), 0.0f), 255.0f);
        }
      }
      box3(a.data(), h, w, p.data(), gx.data(), b.data());
      float* o = out + k * hw;
      float mx = 0.0f;
      for (int64_t e = 0; e < hw; ++e) {
        o[e] = img[e] * std::nearbyint(b[e]);
        mx = std::max(mx, o[e]);
      }
      for (int64_t e = 0; e < hw; ++e) o[e] = mx > 0.0f ? o[e] / mx : 0.0f;
    }
  }
}

// One Pillow 8bpc resampling pass: out[o] = clip8((2**21 + sum_k k[o, k] * in[idx[o, k]]) >> 22)
// along a line of `stride`-spaced values (integer arithmetic: exact in any order).
static inline int32_t clip8(int32_t s) { s >>= 22; return s < 0 ? 0 : (s > 255 ? 255 : s); }

}  // extern "C"

// Pillow's BOX tables of one resize: (source index, weight) laid out (taps, out) per axis;
// taps = 0 keeps that axis.
struct BoxTables {
  const int32_t *idx_w, *k_w; int64_t out_w, taps_w;
  const int32_t *idx_h, *k_h; int64_t out_h, taps_h;
};

static inline const int32_t* widen(const int32_t* line, int64_t, int32_t*) { return line; }
static inline const int32_t* widen(const uint8_t* line, int64_t w, int32_t* row) {
  for (int64_t i = 0; i < w; ++i) row[i] = line[i];
  return row;
}

// PIL Image.resize(BOX) of one h x w plane as digital.pil_box_resize computes it: horizontal
// pass, rounded to 8 bits, then vertical. mid: h x out_w scratch; acc: max(w, out_w) and
// row: w scratch.
template <typename In, typename Out>
static void box_plane(const In* src, int64_t h, int64_t w, const BoxTables& t, int32_t* mid, int32_t* acc,
                      int32_t* row, Out* dst) {
  const int64_t mid_w = t.taps_w ? t.out_w : w;
  const int64_t out_h = t.taps_h ? t.out_h : h;
  for (int64_t y = 0; y < h; ++y) {
    int32_t* m = mid + y * mid_w;
    if (!t.taps_w) { for (int64_t i = 0; i < w; ++i) m[i] = src[y * w + i]; continue; }
    const int32_t* line = widen(src + y * w, w, row);  // int32 gathers vectorise, uint8 ones do not
    for (int64_t o = 0; o < t.out_w; ++o) acc[o] = 1 << 21;
    for (int64_t k = 0; k < t.taps_w; ++k) {  // contiguous per tap
      const int32_t *ik = t.idx_w + k * t.out_w, *kk = t.k_w + k * t.out_w;
#pragma omp simd
      for (int64_t o = 0; o < t.out_w; ++o) acc[o] += kk[o] * line[ik[o]];
    }
    for (int64_t o = 0; o < t.out_w; ++o) m[o] = clip8(acc[o]);
  }
  for (int64_t o = 0; o < out_h; ++o) {
    Out* d = dst + o * mid_w;
    if (!t.taps_h) { for (int64_t i = 0; i < mid_w; ++i) d[i] = (Out)mid[o * mid_w + i]; continue; }
    for (int64_t i = 0; i < mid_w; ++i) acc[i] = 1 << 21;
    for (int64_t k = 0; k < t.taps_h; ++k) {
      const int32_t weight = t.k_h[k * t.out_h + o];
      if (!weight) continue;
      const int32_t* line = mid + (int64_t)t.idx_h[k * t.out_h + o] * mid_w;
#pragma omp simd
      for (int64_t i = 0; i < mid_w; ++i) acc[i] += weight * line[i];
    }
#pragma omp simd
    for (int64_t i = 0; i < mid_w; ++i) d[i] = (Out)clip8(acc[i]);
  }
}

extern "C" {

// pixelate: `planes` uint8 planes h x w resized by `down` to (sh, sw), then by `up` back to
// h x w, each plane kept in cache between the two.
void pil_box_pixelate(const uint8_t* x, int64_t planes, int64_t h, int64_t w,
                      const int32_t* dw_idx, const int32_t* dw_k, int64_t sw, int64_t dw_taps,
                      const int32_t* dh_idx, const int32_t* dh_k, int64_t sh, int64_t dh_taps,
                      const int32_t* uw_idx, const int32_t* uw_k, int64_t uw_taps,
                      const int32_t* uh_idx, const int32_t* uh_k, int64_t uh_taps, uint8_t* out, int threads) {
  const BoxTables down{dw_idx, dw_k, sw, dw_taps, dh_idx, dh_k, sh, dh_taps};
  const BoxTables up{uw_idx, uw_k, w, uw_taps, uh_idx, uh_k, h, uh_taps};
#pragma omp parallel num_threads(threads)
  {
    std::vector<int32_t> mid(h * w), small(h * w), acc(w + 1), row(w + 1);
#pragma omp for schedule(static)
    for (int64_t p = 0; p < planes; ++p) {
      box_plane(x + p * h * w, h, w, down, mid.data(), acc.data(), row.data(), small.data());
      box_plane(small.data(), sh, sw, up, mid.data(), acc.data(), row.data(), out + p * h * w);
    }
  }
}

// digital.pil_box_resize of `planes` int32 planes h x w (any sizes).
void pil_box_resize(const int32_t* x, int64_t planes, int64_t h, int64_t w,
                    const int32_t* idx_w, const int32_t* k_w, int64_t out_w, int64_t taps_w,
                    const int32_t* idx_h, const int32_t* k_h, int64_t out_h, int64_t taps_h,
                    int32_t* out, int threads) {
  const BoxTables t{idx_w, k_w, out_w, taps_w, idx_h, k_h, out_h, taps_h};
  const int64_t ow = taps_w ? out_w : w, oh = taps_h ? out_h : h;
#pragma omp parallel num_threads(threads)
  {
    std::vector<int32_t> mid(h * ow), acc(std::max(w, ow)), row(w);
#pragma omp for schedule(static)
    for (int64_t p = 0; p < planes; ++p)
      box_plane(x + p * h * w, h, w, t, mid.data(), acc.data(), row.data(), out + p * oh * ow);
  }
}

// frost on uint8 images with apply's quantisation, as uint8 levels: the float32 ops of
// levels[x] * iw + layer * fw, each rounded apart as torch's ops are, then level_u8
// (levels[v] = float32(v / 255) by torch's own division).
void frost_blend_u8(const uint8_t* x, const float* layer, int64_t n, const float* levels, float iw, float fw,
                    uint8_t* out, int threads) {
#pragma omp parallel for simd schedule(static) num_threads(threads)
  for (int64_t e = 0; e < n; ++e) {
    out[e] = level_u8(levels[x[e]] * iw + layer[e] * fw);
  }
}

// spatter's blend on uint8 images (N, 3, H, W) with its mask m (N, 1, H, W) and apply's
// quantisation, as uint8 levels. water: x + m * colour; mud: x * (1 - m) + colour * m; each
// float32 op rounded apart as torch's are; then level_u8.
void spatter_blend_u8(const uint8_t* x, const float* m, int64_t n, int64_t hw, const float* levels,
                      const float* colour, int water, uint8_t* out, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t k = 0; k < n * 3; ++k) {
    const float c = colour[k % 3];
    const float* mk = m + (k / 3) * hw;
    const uint8_t* xk = x + k * hw;
    uint8_t* ok = out + k * hw;
#pragma omp simd
    for (int64_t e = 0; e < hw; ++e) {
      const float v0 = levels[xk[e]];
      ok[e] = level_u8(water ? v0 + mk[e] * c : v0 * (1.0f - mk[e]) + c * mk[e]);
    }
  }
}

// ops.border_map of one index: 0 nearest, 1 wrap, 2 constant (-1 outside), 3 reflect, 4 mirror.
static inline int64_t border_map(int64_t i, int64_t size, int mode) {
  if (i >= 0 && i < size) return i;  // every mode keeps the inside (no division on the common path)
  if (mode == 0) return i < 0 ? 0 : (i >= size ? size - 1 : i);
  if (mode == 1) { int64_t p = i % size; return p < 0 ? p + size : p; }
  if (mode == 2) return (i >= 0 && i < size) ? i : -1;
  if (size == 1) return 0;
  const int64_t edge = mode == 3 ? 1 : 0, period = 2 * size - 2 + 2 * edge;
  int64_t p = i % period;
  p = p < 0 ? p + period : p;
  return p < size ? p : period - edge - p;
}

// ops.sample_bilinear of float32 images (n, c, h, w) at float32 coordinates (n, ho, wo): the
// four taps (y0, x0), (y0, x1), (y1, x0), (y1, x1) in that order, each v * (wy * wx), summed
// left to right; constant mode multiplies the tap at the clamped index by its validity.
void sample_bilinear(const float* x, int64_t n, int64_t c, int64_t h, int64_t w, const float* ys, const float* xs,
                     int64_t ho, int64_t wo, int mode, float* out, int threads) {
  const int64_t hw = h * w, out_hw = ho * wo;
#pragma omp parallel num_threads(threads)
  {
    std::vector<int64_t> idx(4 * out_hw);  // per tap: the source index, its weight and validity
    std::vector<float> weight(4 * out_hw), valid(4 * out_hw);
#pragma omp for schedule(static)
    for (int64_t s = 0; s < n; ++s) {
      for (int64_t e = 0; e < out_hw; ++e) {
        const float y = ys[s * out_hw + e], xx = xs[s * out_hw + e];
        const float y0f = std::floor(y), x0f = std::floor(xx);
        const float fy = y - y0f, fx = xx - x0f;
        const float wy[2] = {1.0f - fy, fy}, wx[2] = {1.0f - fx, fx};
        const int64_t y0 = (int64_t)y0f, x0 = (int64_t)x0f;
        const int64_t rows[2] = {border_map(y0, h, mode), border_map(y0 + 1, h, mode)};
        const int64_t cols[2] = {border_map(x0, w, mode), border_map(x0 + 1, w, mode)};
        for (int a = 0; a < 2; ++a)
          for (int b = 0; b < 2; ++b) {
            const int64_t i = rows[a] * w + cols[b], t = (2 * a + b) * out_hw + e;
            idx[t] = i < 0 ? 0 : i;
            valid[t] = (rows[a] >= 0 && cols[b] >= 0) ? 1.0f : 0.0f;
            weight[t] = wy[a] * wx[b];
          }
      }
      for (int64_t ch = 0; ch < c; ++ch) {
        const float* plane = x + (s * c + ch) * hw;
        float* dst = out + (s * c + ch) * out_hw;
        const int64_t *i0 = idx.data(), *i1 = i0 + out_hw, *i2 = i1 + out_hw, *i3 = i2 + out_hw;
        const float *w0 = weight.data(), *w1 = w0 + out_hw, *w2 = w1 + out_hw, *w3 = w2 + out_hw;
        if (mode == 2) {
          const float *v0 = valid.data(), *v1 = v0 + out_hw, *v2 = v1 + out_hw, *v3 = v2 + out_hw;
#pragma omp simd
          for (int64_t e = 0; e < out_hw; ++e)
            dst[e] = (((plane[i0[e]] * v0[e]) * w0[e] + (plane[i1[e]] * v1[e]) * w1[e]) + (plane[i2[e]] * v2[e]) * w2[e]) +
                     (plane[i3[e]] * v3[e]) * w3[e];
        } else {
#pragma omp simd
          for (int64_t e = 0; e < out_hw; ++e)
            dst[e] = ((plane[i0[e]] * w0[e] + plane[i1[e]] * w1[e]) + plane[i2[e]] * w2[e]) + plane[i3[e]] * w3[e];
        }
      }
    }
  }
}


}  // extern "C"

// ops.grouped_filter2d of `planes` planes of h x w. Each plane is padded into a float scratch by
// the row and column maps (padded position -> source index, -1 for zero). Per output row y,
// pair row a = padded row (y + ry - a) + padded row (y + ry + a), a = 1..pairs; then every
// output is the float32 value (w_0 * S_0) + w_1 * S_1 + ... over the weight groups in order,
// S_g the sum of its terms in order, term m read from pair row a_m (kind 1) or padded row
// y + dy_m (kind 0) at column x + dx_m; each product and sum rounded apart (as the eager
// slices' ops). Blocks of up to 128 outputs keep the sums in vector registers; rows narrower
// than 16 run one output at a time through the same operations.
// one vector register of floats: 16 with AVX-512, else 8 (GCC splits wider generic vectors
// through the stack, 6x slower on an AVX2 machine)
#ifdef __AVX512F__
constexpr int LANES = 16;
#else
constexpr int LANES = 8;
#endif
typedef float vecf __attribute__((vector_size(4 * LANES)));

static inline vecf load_vec(const float* p) { vecf v; std::memcpy(&v, p, sizeof v); return v; }

template <int U>
static inline void group_block(const float* const* term, int64_t i, const int64_t* start, const float* wt,
                               int64_t groups, float* o) {
  vecf acc[U], s[U];
  for (int64_t g = 0; g < groups; ++g) {
    const float* b0 = term[start[g]] + i;
    for (int u = 0; u < U; ++u) s[u] = load_vec(b0 + LANES * u);
    for (int64_t m = start[g] + 1; m < start[g + 1]; ++m) {
      const float* b = term[m] + i;
      for (int u = 0; u < U; ++u) s[u] = s[u] + load_vec(b + LANES * u);
    }
    const float w = wt[g];
    for (int u = 0; u < U; ++u) acc[u] = g == 0 ? s[u] * w : acc[u] + s[u] * w;
  }
  std::memcpy(o, acc, sizeof acc);
}

static inline float group_one(const float* const* term, int64_t i, const int64_t* start, const float* wt,
                              int64_t groups) {
  float acc = 0.0f;
  for (int64_t g = 0; g < groups; ++g) {
    float s = term[start[g]][i];
    for (int64_t m = start[g] + 1; m < start[g + 1]; ++m) s = s + term[m][i];
    acc = g == 0 ? s * wt[g] : acc + s * wt[g];
  }
  return acc;
}

// a row of w >= LANES U outputs in blocks of LANES U; the last block ends at w, overlapping the
// one before (the same values again): U independent sums per term keep the adds' latency hidden
template <int U>
static inline void blocks(const float* const* term, int64_t w, const int64_t* start, const float* wt, int64_t groups,
                          float* line) {
  int64_t i = 0;
  for (; i + LANES * U <= w; i += LANES * U) group_block<U>(term, i, start, wt, groups, line + i);
  if (i < w) group_block<U>(term, w - LANES * U, start, wt, groups, line + w - LANES * U);
}

static inline float to_float(float v, const float*) { return v; }
static inline float to_float(uint8_t v, const float* levels) { return levels[v]; }
static inline void put(float* o, int64_t i, float v) { o[i] = v; }
static inline void put(uint8_t* o, int64_t i, float v) { o[i] = level_u8(v); }

// columns rx .. rx + w - 1 of a padded row are the source row itself in every border mode
template <typename In>
static void pad_plane(const In* src, int64_t w, const int64_t* rows, int64_t ph, const int64_t* cols, int64_t pw,
                      int64_t rx, const float* levels, float* pad) {
  for (int64_t r = 0; r < ph; ++r) {  // index -1: the constant border's zero
    float* d = pad + r * pw;
    if (rows[r] < 0) { std::fill(d, d + pw, 0.0f); continue; }
    const In* l = src + rows[r] * w;
    for (int64_t c = 0; c < rx; ++c) d[c] = cols[c] < 0 ? 0.0f : to_float(l[cols[c]], levels);
#pragma omp simd
    for (int64_t c = 0; c < w; ++c) d[rx + c] = to_float(l[c], levels);
    for (int64_t c = rx + w; c < pw; ++c) d[c] = cols[c] < 0 ? 0.0f : to_float(l[cols[c]], levels);
  }
}

template <typename In, typename Out>
static void grouped_filter(const In* x, int64_t planes, int64_t h, int64_t w, const int64_t* rows, int64_t ph,
                           const int64_t* cols, int64_t pw, int64_t ry, int64_t pairs, const int64_t* kind,
                           const int64_t* dy, const int64_t* dx, const int64_t* start, const float* wt, int64_t groups,
                           const float* levels, Out* out, int threads) {
  const int64_t terms = start[groups];
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> pad(ph * pw), pair((pairs + 1) * pw), line(w);
    std::vector<const float*> term(terms);
#pragma omp for schedule(static)
    for (int64_t p = 0; p < planes; ++p) {
      pad_plane(x + p * h * w, w, rows, ph, cols, pw, (pw - w) / 2, levels, pad.data());
      Out* dst = out + p * h * w;
      for (int64_t y = 0; y < h; ++y) {
        const float* centre = pad.data() + (y + ry) * pw;
        for (int64_t a = 1; a <= pairs; ++a) {
          const float *up = centre - a * pw, *down = centre + a * pw;
          float* q = pair.data() + a * pw;
#pragma omp simd
          for (int64_t c = 0; c < pw; ++c) q[c] = up[c] + down[c];
        }
        for (int64_t m = 0; m < terms; ++m)
          term[m] = (kind[m] ? pair.data() + dy[m] * pw : pad.data() + (y + dy[m]) * pw) + dx[m];
        if (w >= 8 * LANES) blocks<8>(term.data(), w, start, wt, groups, line.data());
        else if (w >= 4 * LANES) blocks<4>(term.data(), w, start, wt, groups, line.data());
        else if (w >= 2 * LANES) blocks<2>(term.data(), w, start, wt, groups, line.data());
        else if (w >= LANES) blocks<1>(term.data(), w, start, wt, groups, line.data());
        else for (int64_t i = 0; i < w; ++i) line[i] = group_one(term.data(), i, start, wt, groups);
        for (int64_t k = 0; k < w; ++k) put(dst + y * w, k, line[k]);
      }
    }
  }
}

extern "C" {

void grouped_filter_f32(const float* x, int64_t planes, int64_t h, int64_t w, const int64_t* rows, int64_t ph,
                        const int64_t* cols, int64_t pw, int64_t ry, int64_t pairs, const int64_t* kind,
                        const int64_t* dy, const int64_t* dx, const int64_t* start, const float* wt, int64_t groups,
                        float* out, int threads) {
  grouped_filter(x, planes, h, w, rows, ph, cols, pw, ry, pairs, kind, dy, dx, start, wt, groups, nullptr, out,
                 threads);
}

// the same on uint8 levels (levels[v] = float32(v / 255)), written as apply's 8-bit levels
void grouped_filter_u8(const uint8_t* x, int64_t planes, int64_t h, int64_t w, const int64_t* rows, int64_t ph,
                       const int64_t* cols, int64_t pw, int64_t ry, int64_t pairs, const int64_t* kind,
                       const int64_t* dy, const int64_t* dx, const int64_t* start, const float* wt, int64_t groups,
                       const float* levels, uint8_t* out, int threads) {
  grouped_filter(x, planes, h, w, rows, ph, cols, pw, ry, pairs, kind, dy, dx, start, wt, groups, levels, out,
                 threads);
}


// one uint8 image between planar (C, H, W) and interleaved (H, W, C) layout (the JPEG codec's)
void planar_to_interleaved_u8(const uint8_t* src, int64_t c, int64_t hw, uint8_t* dst) {
  if (c == 3) {
    const uint8_t *r = src, *g = src + hw, *b = src + 2 * hw;
    for (int64_t i = 0; i < hw; ++i) { dst[3 * i] = r[i]; dst[3 * i + 1] = g[i]; dst[3 * i + 2] = b[i]; }
    return;
  }
  for (int64_t i = 0; i < hw; ++i)
    for (int64_t k = 0; k < c; ++k) dst[i * c + k] = src[k * hw + i];
}

void interleaved_to_planar_u8(const uint8_t* src, int64_t c, int64_t hw, uint8_t* dst) {
  if (c == 3) {
    uint8_t *r = dst, *g = dst + hw, *b = dst + 2 * hw;
    for (int64_t i = 0; i < hw; ++i) { r[i] = src[3 * i]; g[i] = src[3 * i + 1]; b[i] = src[3 * i + 2]; }
    return;
  }
  for (int64_t i = 0; i < hw; ++i)
    for (int64_t k = 0; k < c; ++k) dst[k * hw + i] = src[i * c + k];
}

}
"""
