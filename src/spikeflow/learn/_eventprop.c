/* EventProp (spikeflow/learn/eventprop.py) on the CPU: the current-based LIF forward
 * over T and the adjoint backward from T down to 1, fused, for float and double. The
 * same arithmetic, in the same order, as the PyTorch loops of eventprop.py (constants
 * rounded to the element type, products never fused: -ffp-contract=off), except the
 * recurrent sums (W_rec z and the spike-time term through W_rec), which run over the
 * spikes here and through a matmul there.
 *
 * Layout: current, spikes, voltage and the gradients are [T, P] contiguous, P = B * N.
 * The work is split into chunks of `width` consecutive elements of a step; each thread
 * takes whole chunks and walks time outside, elements inside. Without W_rec a chunk is
 * any block; with W_rec it is one batch row (width = N): a row's neurons are coupled
 * within a step, rows never are. W_rec is passed transposed (wt[m * N + n] =
 * W_rec[n, m]): a spike of neuron m adds the row wt[m] to the currents of its row.
 *
 * The forward keeps the two slopes at each spike (V̇⁻, V̇⁺) in a list per chunk and
 * counts the spikes of each (step, chunk); ep_gather then puts them in time order (step,
 * then element: the PyTorch loop's order). The backward reads the spikes as bits
 * (spikeflow.memory.packing: element e in bit e % 8 of byte e / 8), the slopes in time
 * order and, for each (step, chunk), the index of its first slope (the counts' prefix
 * sums). ep_rec_grad then sums the W_rec gradient from the spikes and λJ, each thread
 * owning whole rows of it (one [N, N] buffer, whatever the thread count).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int fired_bit(const uint8_t *bits, int64_t e) { return (bits[e >> 3] >> (e & 7)) & 1; }

#define DEFINE_KERNELS(T, SUFFIX)                                                          \
  /* Returns 0, or 1 when a work buffer could not be allocated (lists then holds what  */  \
  /* was allocated: ep_gather frees it). counts [steps * chunks]: the spikes of each   */  \
  /* (step, chunk); lists [chunks]: each chunk's slopes (V̇⁻, V̇⁺ pairs) in time order. */  \
  int ep_forward_##SUFFIX(int64_t steps, int64_t plane, int64_t width, int threads,        \
                          const T *current, const T *wt, T *spikes, T *voltage,             \
                          int64_t *counts, T **lists, double a_, double charge_,            \
                          double leak_, double v_leak_, double v_th_, double v_reset_,      \
                          double leak_minus_reset_, int norse) {                            \
    const T a = (T)a_, charge = (T)charge_, leak = (T)leak_, v_leak = (T)v_leak_;           \
    const T v_th = (T)v_th_, v_reset = (T)v_reset_, rest = (T)leak_minus_reset_;           \
    const int64_t chunks = (plane + width - 1) / width;                                    \
    int failed = 0;                                                                        \
    _Pragma("omp parallel num_threads(threads) reduction(|| : failed)") {                  \
      T *v = malloc(5 * width * sizeof(T));                                                \
      if (!v) failed = 1;                                                                  \
      T *i = v ? v + width : NULL, *rec = v ? v + 2 * width : NULL;                        \
      T *minus = v ? v + 3 * width : NULL, *plus = v ? v + 4 * width : NULL;               \
      _Pragma("omp for schedule(static)")                                                  \
      for (int64_t c = 0; c < chunks; ++c) {                                               \
        lists[c] = NULL;                                                                   \
        if (!v || failed) continue;                                                        \
        const int64_t start = c * width;                                                   \
        const int64_t w = plane - start < width ? plane - start : width;                   \
        int64_t size = 0, capacity = 64;                                                   \
        T *list = malloc(2 * capacity * sizeof(T));                                        \
        if (!list) {                                                                       \
          failed = 1;                                                                      \
          continue;                                                                        \
        }                                                                                  \
        for (int64_t j = 0; j < w; ++j) {                                                  \
          v[j] = v_leak;                                                                   \
          i[j] = (T)0;                                                                     \
          rec[j] = (T)0;                                                                   \
        }                                                                                  \
        for (int64_t t = 0; t < steps; ++t) {                                              \
          const int64_t row = t * plane + start;                                           \
          if (wt && t > 0) { /* W_rec z[t-1]: the previous step's spikes of this row */    \
            for (int64_t j = 0; j < w; ++j) rec[j] = (T)0;                                 \
            const T *z = spikes + row - plane;                                             \
            for (int64_t m = 0; m < w; ++m)                                                \
              if (z[m] != (T)0)                                                            \
                for (int64_t j = 0; j < w; ++j) rec[j] += wt[m * w + j];                   \
          }                                                                                \
          if (capacity - size < w) { /* room for a spike of every element */               \
            while (capacity - size < w) capacity *= 2;                                     \
            T *grown = realloc(list, 2 * capacity * sizeof(T));                            \
            if (!grown) {                                                                  \
              failed = 1;                                                                  \
              break;                                                                       \
            }                                                                              \
            list = grown;                                                                  \
          }                                                                                \
          /* the dynamics (vectorised), then the spikes' slopes appended in order */     \
          for (int64_t j = 0; j < w; ++j) {                                                \
            T J = i[j] + current[row + j];                                                 \
            if (wt) J = J + rec[j];                                                        \
            const T base = norse ? i[j] : J;                                               \
            const T before = v[j];                                                         \
            const T h = before + charge * ((v_leak - before) + J);                         \
            const T z = h > v_th ? (T)1 : (T)0;                                            \
            v[j] = h > v_th ? v_reset : h;                                                 \
            i[j] = J + leak * J;                                                           \
            spikes[row + j] = z;                                                           \
            voltage[row + j] = v[j];                                                       \
            /* eventprop: a neuron that started above threshold fires at t = 0 whatever */ \
            /* its input; an infinite slope makes that spike's jump 0                   */ \
            minus[j] = (!norse && before > v_th) ? (T)INFINITY                            \
                                                  : a * ((v_leak - before) + base);        \
            plus[j] = a * (rest + base);                                                   \
          }                                                                                \
          const int64_t first = size;                                                      \
          for (int64_t j = 0; j < w; ++j) {                                                \
            list[2 * size] = minus[j];                                                     \
            list[2 * size + 1] = plus[j];                                                  \
            size += spikes[row + j] != (T)0;                                               \
          }                                                                                \
          counts[t * chunks + c] = size - first;                                           \
        }                                                                                  \
        lists[c] = list;                                                                   \
      }                                                                                    \
      free(v);                                                                             \
    }                                                                                      \
    return failed;                                                                         \
  }                                                                                        \
                                                                                           \
  /* The forward's slopes in time order (step, then element) into slope_minus and      */  \
  /* slope_plus; frees the chunks' lists (also after a failed forward). Returns 0, or  */  \
  /* 1 when copy is set and its cursors could not be allocated (nothing copied).       */  \
  int ep_gather_##SUFFIX(int64_t steps, int64_t chunks, const int64_t *counts, T **lists, \
                         T *slope_minus, T *slope_plus, int copy) {                         \
    int failed = 0;                                                                        \
    if (copy) {                                                                            \
      int64_t *at = calloc(chunks > 0 ? (size_t)chunks : 1, sizeof(int64_t));              \
      failed = at == NULL;                                                                 \
      int64_t out = 0;                                                                     \
      for (int64_t t = 0; t < steps && at; ++t)                                            \
        for (int64_t c = 0; c < chunks; ++c)                                               \
          for (int64_t k = 0; k < counts[t * chunks + c]; ++k, ++out, ++at[c]) {           \
            slope_minus[out] = lists[c][2 * at[c]];                                        \
            slope_plus[out] = lists[c][2 * at[c] + 1];                                     \
          }                                                                                \
      free(at);                                                                            \
    }                                                                                      \
    for (int64_t c = 0; c < chunks; ++c) free(lists[c]);                                   \
    return failed;                                                                         \
  }                                                                                        \
                                                                                           \
  /* The jump of λh at the spike of element j of a chunk's row (module docstring of    */  \
  /* eventprop.py); slopes: the next spike's V̇⁻ and V̇⁺, moved on by one.              */  \
  static inline void jump_##SUFFIX(int64_t j, int64_t row, int64_t w, T *lam_h,            \
                                   const T *u_next, const T *wt, const T *grad_spikes,     \
                                   const T *slopes[2]) {                                   \
    T g_rec = (T)0; /* Σ_i W_rec[i, n] u_i[t+1], in 8 partial sums (vectorised) */         \
    if (wt) {                                                                              \
      const T *column = wt + j * w;                                                        \
      T part[8] = {0};                                                                     \
      int64_t k = 0;                                                                       \
      for (; k + 8 <= w; k += 8)                                                           \
        for (int q = 0; q < 8; ++q) part[q] += u_next[k + q] * column[k + q];              \
      for (; k < w; ++k) part[0] += u_next[k] * column[k];                                 \
      g_rec = ((part[0] + part[4]) + (part[1] + part[5])) +                                \
              ((part[2] + part[6]) + (part[3] + part[7]));                                 \
    }                                                                                      \
    const T g = (grad_spikes ? grad_spikes[row + j] : (T)0) + g_rec;                       \
    const T sm = *slopes[0]++, sp = *slopes[1]++;                                          \
    lam_h[j] = lam_h[j] * (sp / sm) + g / sm;                                              \
  }                                                                                        \
                                                                                           \
  /* Returns 0, or 1 when a work buffer could not be allocated. offset [steps *       */  \
  /* chunks]: the index of each (step, chunk)'s first slope; d_time may be NULL, and   */  \
  /* so may grad_spikes and grad_voltage (zero). The W_rec gradient: ep_rec_grad.      */  \
  int ep_backward_##SUFFIX(int64_t steps, int64_t plane, int64_t width, int threads,       \
                           const uint8_t *bits, const int64_t *offset,                      \
                           const T *slope_minus, const T *slope_plus,                       \
                           const T *grad_spikes, const T *grad_voltage, const T *wt,        \
                           T *d_current, T *d_time, double a_, double b_,                   \
                           double c1_, double c2_, double c3_, int norse) {                 \
    /* eventprop: c1 = dt a, c2 = 1 - dt b, c3 = 1 - dt a; norse: c1 = dt b, c2 = a dt */  \
    const T a = (T)a_, b = (T)b_, c1 = (T)c1_, c2 = (T)c2_, c3 = (T)c3_;                   \
    const int64_t chunks = (plane + width - 1) / width;                                    \
    int failed = 0;                                                                        \
    _Pragma("omp parallel num_threads(threads) reduction(|| : failed)") {                  \
      T *lam_v = malloc(5 * width * sizeof(T));                                            \
      T *lam_i = lam_v ? lam_v + width : NULL, *u_next = lam_v ? lam_v + 2 * width : NULL; \
      T *u_now = lam_v ? lam_v + 3 * width : NULL, *lam_h = lam_v ? lam_v + 4 * width : NULL; \
      if (!lam_v) failed = 1;                                                              \
      _Pragma("omp for schedule(static)")                                                  \
      for (int64_t c = 0; c < chunks; ++c) {                                               \
        if (!lam_v) continue;                                                              \
        const int64_t start = c * width;                                                   \
        const int64_t w = plane - start < width ? plane - start : width;                   \
        for (int64_t j = 0; j < w; ++j) lam_v[j] = lam_i[j] = u_next[j] = (T)0;            \
        for (int64_t t = steps - 1; t >= 0; --t) {                                         \
          const int64_t row = t * plane + start;                                           \
          /* λh before the jumps (vectorised), the jumps at the spikes, then λJ, λv */     \
          for (int64_t j = 0; j < w; ++j) {                                                \
            const T lv = grad_voltage ? lam_v[j] + grad_voltage[row + j] : lam_v[j];       \
            if (norse) {                                                                   \
              u_now[j] = lam_i[j] + c1 * (lv - lam_i[j]); /* λJ, set before the jump */    \
              lam_h[j] = lv - c2 * lv;                                                     \
            } else {                                                                       \
              lam_h[j] = lv;                                                               \
            }                                                                              \
          }                                                                                \
          const T *slopes[2] = {slope_minus + offset[t * chunks + c],                     \
                                slope_plus + offset[t * chunks + c]};                      \
          for (int64_t j = 0; j < w;) { /* the spikes in order, a byte at a time */        \
            const int64_t e = row + j;                                                     \
            if ((e & 7) == 0 && j + 8 <= w) {                                              \
              for (unsigned byte = bits[e >> 3]; byte; byte &= byte - 1)                   \
                jump_##SUFFIX(j + __builtin_ctz(byte), row, w, lam_h, u_next, wt,         \
                              grad_spikes, slopes);                                        \
              j += 8;                                                                      \
            } else {                                                                       \
              if (fired_bit(bits, e))                                                      \
                jump_##SUFFIX(j, row, w, lam_h, u_next, wt, grad_spikes, slopes);          \
              ++j;                                                                         \
            }                                                                              \
          }                                                                                \
          for (int64_t j = 0; j < w; ++j) {                                                \
            const T lh = lam_h[j];                                                         \
            T lj;                                                                          \
            if (norse) {                                                                   \
              lj = u_now[j];                                                               \
              lam_v[j] = lh;                                                               \
            } else {                                                                       \
              lj = c1 * lh + c2 * lam_i[j];                                                \
              lam_v[j] = c3 * lh;                                                          \
              u_now[j] = a * lh - b * lj;                                                  \
            }                                                                              \
            d_current[row + j] = lj;                                                       \
            if (d_time) d_time[row + j] = a * lh - b * lj;                                 \
            lam_i[j] = lj;                                                                 \
          }                                                                                \
          if (wt) {                                                                        \
            T *swap = u_next;                                                              \
            u_next = u_now;                                                                \
            u_now = swap;                                                                  \
          }                                                                                \
        }                                                                                  \
      }                                                                                    \
      free(lam_v);                                                                         \
    }                                                                                      \
    return failed;                                                                         \
  }                                                                                        \
                                                                                           \
  /* d_rec_t [N, N] (zeroed) += Σ_s z[s]ᵀ λJ[s+1] over s < steps - 1, the W_rec       */  \
  /* gradient transposed (both rules: EventProp's λJ[t]ᵀ z[t-1], Norse's λJ[t+1]ᵀ z[t]); */  \
  /* lam_j = d_current [steps, batch, N]. Row m is one thread's, summed over the batch */  \
  /* rows, then the steps from the last down: one thread's order for any count.        */  \
  void ep_rec_grad_##SUFFIX(int64_t steps, int64_t batch, int64_t n, int threads,          \
                            const uint8_t *bits, const T *lam_j, T *d_rec_t) {              \
    const int64_t plane = batch * n;                                                       \
    _Pragma("omp parallel for schedule(static) num_threads(threads)")                      \
    for (int64_t m = 0; m < n; ++m) {                                                      \
      T *out = d_rec_t + m * n;                                                            \
      for (int64_t r = 0; r < batch; ++r)                                                  \
        for (int64_t s = steps - 2; s >= 0; --s)                                           \
          if (fired_bit(bits, s * plane + r * n + m)) {                                    \
            const T *lam = lam_j + (s + 1) * plane + r * n;                                \
            for (int64_t j = 0; j < n; ++j) out[j] += lam[j];                              \
          }                                                                                \
    }                                                                                      \
  }                                                                                        \
                                                                                           \
  /* The spikes [n] as bits (spikeflow.memory.packing's layout), bytes [ceil(n / 8)]. */  \
  void ep_pack_##SUFFIX(int64_t n, int threads, const T *spikes, uint8_t *bits) {          \
    const int64_t bytes = (n + 7) / 8;                                                     \
    _Pragma("omp parallel for schedule(static) num_threads(threads)")                      \
    for (int64_t k = 0; k < bytes; ++k) {                                                  \
      unsigned byte = 0;                                                                   \
      for (int64_t e = 8 * k; e < 8 * k + 8 && e < n; ++e)                                 \
        byte |= (unsigned)(spikes[e] != (T)0) << (e - 8 * k);                              \
      bits[k] = (uint8_t)byte;                                                             \
    }                                                                                      \
  }

DEFINE_KERNELS(float, f32)
DEFINE_KERNELS(double, f64)
