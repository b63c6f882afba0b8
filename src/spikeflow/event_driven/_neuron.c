/* The event-driven neuron (Zhu et al., NeurIPS 2022) on the CPU: forward and time-based
 * backward, fused over T, for float and double. The same arithmetic, in the same order,
 * as spikeflow/event_driven/kernel.py (the tests compare them bit for bit): constants
 * are rounded to the element type, products are never fused (-ffp-contract=off).
 *
 * Layout: every tensor is [T, n] contiguous. Each thread takes blocks of BLOCK neurons
 * and walks time outside, neurons inside, so the inner loop vectorises.
 */
#include <stdint.h>

#define BLOCK 256

#define DEFINE_KERNELS(T, SUFFIX)                                                          \
  void ed_forward_##SUFFIX(int64_t steps, int64_t n, int threads, const T *current,       \
                           T *spikes, T *rise, T *slope, double decay_m_, double decay_s_, \
                           double decay_g_, double scale_, double threshold_,              \
                           int exponential) {                                              \
    const T decay_m = (T)decay_m_, decay_s = (T)decay_s_, decay_g = (T)decay_g_;           \
    const T scale = (T)scale_, threshold = (T)threshold_;                                  \
    _Pragma("omp parallel for schedule(static) num_threads(threads)")                      \
    for (int64_t start = 0; start < n; start += BLOCK) {                                   \
      const int64_t width = n - start < BLOCK ? n - start : BLOCK;                         \
      T trace_m[BLOCK], trace_s[BLOCK], trace_g[BLOCK], u_last[BLOCK];                     \
      for (int64_t j = 0; j < width; ++j)                                                  \
        trace_m[j] = trace_s[j] = trace_g[j] = u_last[j] = (T)0;                           \
      for (int64_t t = 0; t < steps; ++t) {                                                \
        const int64_t row = t * n + start;                                                 \
        for (int64_t j = 0; j < width; ++j) {                                              \
          const T c = current[row + j];                                                    \
          const T m = (trace_m[j] + c) * decay_m;                                          \
          const T s = (trace_s[j] + c) * decay_s;                                          \
          const T u = (m - s) * scale;                                                     \
          rise[row + j] = u - u_last[j];                                                   \
          const T keep = u < threshold ? (T)1 : (T)0;                                      \
          spikes[row + j] = (T)1 - keep;                                                   \
          if (exponential) {                                                               \
            const T g = (trace_g[j] + c) * decay_g;                                        \
            slope[row + j] = g;                                                            \
            trace_g[j] = g * keep;                                                         \
          }                                                                                \
          u_last[j] = u * keep;                                                            \
          trace_m[j] = m * keep;                                                           \
          trace_s[j] = s * keep;                                                           \
        }                                                                                  \
      }                                                                                    \
    }                                                                                      \
  }                                                                                        \
                                                                                           \
  void ed_backward_##SUFFIX(int64_t steps, int64_t n, int threads, const T *grad_time,     \
                            const T *spikes, const T *rise, const T *slope,                \
                            const T *kernel, const T *slope_kernel, T *for_input,          \
                            T *for_weight, double max_dt_du_, double max_dt_du_input_) {   \
    const T max_w = (T)max_dt_du_, max_in = (T)max_dt_du_input_;                           \
    _Pragma("omp parallel for schedule(static) num_threads(threads)")                      \
    for (int64_t start = 0; start < n; start += BLOCK) {                                   \
      const int64_t width = n - start < BLOCK ? n - start : BLOCK;                         \
      T at_weight[BLOCK], at_input[BLOCK];                                                 \
      int64_t since[BLOCK];                                                                \
      for (int64_t j = 0; j < width; ++j) {                                                \
        at_weight[j] = at_input[j] = (T)0;                                                 \
        since[j] = steps;                                                                  \
      }                                                                                    \
      for (int64_t t = steps - 1; t >= 0; --t) {                                           \
        const int64_t row = t * n + start;                                                 \
        for (int64_t j = 0; j < width; ++j) {                                              \
          const int fired = spikes[row + j] > (T)0;                                        \
          T dt_du = (T)-1 / rise[row + j];                                                 \
          dt_du = dt_du < -max_w ? -max_w : dt_du;                                         \
          dt_du = dt_du > (T)0 ? (T)0 : dt_du;                                             \
          T dt_du_in = (T)-1 / slope[row + j];                                             \
          dt_du_in = dt_du_in < -max_in ? -max_in : dt_du_in;                              \
          dt_du_in = dt_du_in > (T)0 ? (T)0 : dt_du_in;                                    \
          const T g = grad_time[row + j];                                                  \
          at_weight[j] = fired ? g * dt_du : at_weight[j];                                 \
          at_input[j] = fired ? g * dt_du_in : at_input[j];                                \
          const int64_t next = since[j] + 1 < steps ? since[j] + 1 : steps;                \
          since[j] = fired ? 0 : next;                                                     \
          for_input[row + j] = at_input[j] * -slope_kernel[since[j]];                      \
          for_weight[row + j] = at_weight[j] * kernel[since[j]];                           \
        }                                                                                  \
      }                                                                                    \
    }                                                                                      \
  }

DEFINE_KERNELS(float, f32)
DEFINE_KERNELS(double, f64)
