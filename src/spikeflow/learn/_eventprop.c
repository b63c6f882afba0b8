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
 * The backward reads the spikes as bits (spikeflow.memory.packing: element e in bit
 * e % 8 of byte e / 8) and the slopes at the spikes in time order (the forward's
 * order: step, then element), and finds each chunk's first slope of every step from a
 * table of spike counts per (step, chunk) it builds first.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static int thread_id(void) {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

static int fired_bit(const uint8_t *bits, int64_t e) { return (bits[e >> 3] >> (e & 7)) & 1; }

#define DEFINE_KERNELS(T, SUFFIX)                                                          \
  /* Returns 0, or 1 when a work buffer could not be allocated. */                         \
  int ep_forward_##SUFFIX(int64_t steps, int64_t plane, int64_t width, int threads,        \
                          const T *current, const T *wt, T *spikes, T *voltage,             \
                          T *slope_minus, T *slope_plus, double a_, double charge_,         \
                          double leak_, double v_leak_, double v_th_, double v_reset_,      \
                          double leak_minus_reset_, int norse) {                            \
    const T a = (T)a_, charge = (T)charge_, leak = (T)leak_, v_leak = (T)v_leak_;           \
    const T v_th = (T)v_th_, v_reset = (T)v_reset_, rest = (T)leak_minus_reset_;           \
    const int64_t chunks = (plane + width - 1) / width;                                    \
    int failed = 0;                                                                        \
    _Pragma("omp parallel num_threads(threads) reduction(|| : failed)") {                  \
      T *v = malloc(3 * width * sizeof(T));                                                \
      if (!v) failed = 1;                                                                  \
      T *i = v ? v + width : NULL, *rec = v ? v + 2 * width : NULL;                        \
      _Pragma("omp for schedule(static)")                                                  \
      for (int64_t c = 0; c < chunks; ++c) {                                               \
        if (!v) continue;                                                                  \
        const int64_t start = c * width;                                                   \
        const int64_t w = plane - start < width ? plane - start : width;                   \
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
          for (int64_t j = 0; j < w; ++j) {                                                \
            T J = i[j] + current[row + j];                                                 \
            if (wt) J = J + rec[j];                                                        \
            const T base = norse ? i[j] : J;                                               \
            const T before = v[j];                                                         \
            const T h = before + charge * ((v_leak - before) + J);                         \
            const int fired = h > v_th;                                                    \
            v[j] = fired ? v_reset : h;                                                    \
            i[j] = J + leak * J;                                                           \
            spikes[row + j] = fired ? (T)1 : (T)0;                                         \
            voltage[row + j] = v[j];                                                       \
            if (fired) {                                                                   \
              slope_minus[row + j] = a * ((v_leak - before) + base);                       \
              slope_plus[row + j] = a * (rest + base);                                     \
            }                                                                              \
          }                                                                                \
        }                                                                                  \
      }                                                                                    \
      free(v);                                                                             \
    }                                                                                      \
    return failed;                                                                         \
  }                                                                                        \
                                                                                           \
  /* Returns 0, or 1 when a work buffer could not be allocated. d_rec_t: one [N, N]    */  \
  /* block per thread, zeroed, accumulating d_rec transposed; d_time may be NULL.      */  \
  int ep_backward_##SUFFIX(int64_t steps, int64_t plane, int64_t width, int threads,       \
                           const uint8_t *bits, const T *slope_minus, const T *slope_plus,  \
                           const T *grad_spikes, const T *grad_voltage, const T *wt,        \
                           T *d_current, T *d_time, T *d_rec_t, double a_, double b_,       \
                           double c1_, double c2_, double c3_, int norse) {                 \
    /* eventprop: c1 = dt a, c2 = 1 - dt b, c3 = 1 - dt a; norse: c1 = dt b, c2 = a dt */  \
    const T a = (T)a_, b = (T)b_, c1 = (T)c1_, c2 = (T)c2_, c3 = (T)c3_;                   \
    const int64_t chunks = (plane + width - 1) / width;                                    \
    int64_t *offset = malloc((size_t)(steps * chunks) * sizeof(int64_t));                  \
    if (!offset) return 1;                                                                 \
    _Pragma("omp parallel for schedule(static) num_threads(threads)")                      \
    for (int64_t c = 0; c < chunks; ++c) {                                                 \
      const int64_t start = c * width;                                                     \
      const int64_t w = plane - start < width ? plane - start : width;                     \
      for (int64_t t = 0; t < steps; ++t) {                                                \
        int64_t count = 0;                                                                 \
        for (int64_t j = 0; j < w; ++j) count += fired_bit(bits, t * plane + start + j);   \
        offset[t * chunks + c] = count;                                                    \
      }                                                                                    \
    }                                                                                      \
    int64_t total = 0;                                                                     \
    for (int64_t k = 0; k < steps * chunks; ++k) {                                         \
      const int64_t count = offset[k];                                                     \
      offset[k] = total;                                                                   \
      total += count;                                                                      \
    }                                                                                      \
    int failed = 0;                                                                        \
    _Pragma("omp parallel num_threads(threads) reduction(|| : failed)") {                  \
      T *lam_v = malloc(4 * width * sizeof(T));                                            \
      T *lam_i = lam_v ? lam_v + width : NULL, *u_next = lam_v ? lam_v + 2 * width : NULL; \
      T *u_now = lam_v ? lam_v + 3 * width : NULL;                                         \
      T *d_rec = d_rec_t ? d_rec_t + (int64_t)thread_id() * width * width : NULL;          \
      if (!lam_v) failed = 1;                                                              \
      _Pragma("omp for schedule(static)")                                                  \
      for (int64_t c = 0; c < chunks; ++c) {                                               \
        if (!lam_v) continue;                                                              \
        const int64_t start = c * width;                                                   \
        const int64_t w = plane - start < width ? plane - start : width;                   \
        for (int64_t j = 0; j < w; ++j) lam_v[j] = lam_i[j] = u_next[j] = (T)0;            \
        for (int64_t t = steps - 1; t >= 0; --t) {                                         \
          const int64_t row = t * plane + start;                                           \
          if (norse && d_rec) /* d_rec += λJ[t+1]ᵀ z[t] */                                 \
            for (int64_t m = 0; m < w; ++m)                                                \
              if (fired_bit(bits, row + m))                                                \
                for (int64_t j = 0; j < w; ++j) d_rec[m * w + j] += lam_i[j];              \
          int64_t at = offset[t * chunks + c];                                             \
          for (int64_t j = 0; j < w; ++j) {                                                \
            const T lv = lam_v[j] + grad_voltage[row + j];                                 \
            const T li = lam_i[j];                                                         \
            T lj = (T)0, lh;                                                               \
            if (norse) {                                                                   \
              lj = li + c1 * (lv - li);                                                    \
              lh = lv - c2 * lv;                                                           \
            } else {                                                                       \
              lh = lv;                                                                     \
            }                                                                              \
            if (fired_bit(bits, row + j)) {                                                \
              T g_rec = (T)0; /* Σ_i W_rec[i, n] u_i[t+1] */                               \
              if (wt) {                                                                    \
                const T *column = wt + j * w;                                              \
                for (int64_t k = 0; k < w; ++k) g_rec += u_next[k] * column[k];            \
              }                                                                            \
              const T g = grad_spikes[row + j] + g_rec;                                    \
              const T sm = slope_minus[at], sp = slope_plus[at];                           \
              ++at;                                                                        \
              lh = lh * (sp / sm) + g / sm;                                                \
            }                                                                              \
            if (norse) {                                                                   \
              lam_v[j] = lh;                                                               \
              u_now[j] = lj;                                                               \
            } else {                                                                       \
              lj = c1 * lh + c2 * li;                                                      \
              lam_v[j] = c3 * lh;                                                          \
              u_now[j] = a * lh - b * lj;                                                  \
            }                                                                              \
            d_current[row + j] = lj;                                                       \
            if (d_time) d_time[row + j] = a * lh - b * lj;                                 \
            lam_i[j] = lj;                                                                 \
          }                                                                                \
          if (wt) {                                                                        \
            if (!norse && d_rec && t > 0) /* d_rec += λJ[t]ᵀ z[t-1] */                     \
              for (int64_t m = 0; m < w; ++m)                                              \
                if (fired_bit(bits, row - plane + m))                                      \
                  for (int64_t j = 0; j < w; ++j) d_rec[m * w + j] += lam_i[j];            \
            T *swap = u_next;                                                              \
            u_next = u_now;                                                                \
            u_now = swap;                                                                  \
          }                                                                                \
        }                                                                                  \
      }                                                                                    \
      free(lam_v);                                                                         \
    }                                                                                      \
    free(offset);                                                                          \
    return failed;                                                                         \
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
