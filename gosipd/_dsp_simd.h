/* Saturating int16 addition, vectorised where the target has it.
 *
 * Compilers do not turn a widen-add-clamp loop into paddsw/vqaddq on their
 * own, and mixing is on every call's 20 ms path, so this one primitive is
 * spelled out with SSE2 (every x86-64) and NEON (every AArch64) intrinsics,
 * with a portable scalar loop for the rest and for the tail.
 */
#ifndef GOSIPD_DSP_SIMD_H
#define GOSIPD_DSP_SIMD_H

#include <stddef.h>
#include <stdint.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#elif defined(__ARM_NEON)
#include <arm_neon.h>
#endif

static inline int16_t gosipd_sat16(int32_t v) {
    return (int16_t)(v > 32767 ? 32767 : (v < -32768 ? -32768 : v));
}

/* dst[i] = saturate(a[i] + b[i]); dst may alias a or b. */
static inline void gosipd_add_saturate(int16_t *dst, const int16_t *a,
                                       const int16_t *b, size_t n) {
    size_t i = 0;
#if defined(__SSE2__)
    for (; i + 8 <= n; i += 8) {
        __m128i va = _mm_loadu_si128((const __m128i *)(a + i));
        __m128i vb = _mm_loadu_si128((const __m128i *)(b + i));
        _mm_storeu_si128((__m128i *)(dst + i), _mm_adds_epi16(va, vb));
    }
#elif defined(__ARM_NEON)
    for (; i + 8 <= n; i += 8) {
        vst1q_s16(dst + i, vqaddq_s16(vld1q_s16(a + i), vld1q_s16(b + i)));
    }
#endif
    for (; i < n; i++) {
        dst[i] = gosipd_sat16((int32_t)a[i] + (int32_t)b[i]);
    }
}

#endif
