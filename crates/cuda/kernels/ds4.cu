// ds4rs CUDA kernels. Each kernel implements the CPU reference of the
// `gguf`/`model` crates (spec section cited per kernel); the CPU code is the
// definition and `ds4rs selftest` checks every kernel against it.
//
// Byte layouts are the GGUF block layouts (gguf-and-quants.md §3); blocks are
// read byte by byte where their fields are not naturally aligned (Q8_0's 34-byte
// blocks), so any tensor offset works.

#include <stdint.h>

#define WARP 32

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// IEEE half to float by the hardware conversion; no cuda_fp16.h, whose
// CCCL dependency the PyPI nvcc package lacks.
__device__ __forceinline__ float half_to_float(uint16_t h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ float f16_at(const uint8_t *p) {
    return half_to_float((uint16_t)(p[0] | (p[1] << 8)));
}

// ds4's Q8_0 activation quantization (gguf-and-quants.md §5.2, strict form):
// one warp per 32-value block, d = amax/127, id = 1/d, q = lrint(x*id).
// n need not be a multiple of 32: missing values count as 0.
extern "C" __global__ void quantize_q8_0_act(const float *x, int n, int8_t *qs, float *scales) {
    int block = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    int nb = (n + 31) / 32;
    if (block >= nb) return;
    int i = block * 32 + lane;
    float v = i < n ? x[i] : 0.0f;
    float amax = warp_max(fabsf(v));
    float d = __fdiv_rn(amax, 127.0f);
    float id = d != 0.0f ? __fdiv_rn(1.0f, d) : 0.0f;
    int q = __float2int_rn(__fmul_rn(v, id));
    q = max(-128, min(127, q));
    qs[i] = (int8_t)q;
    if (lane == 0) scales[block] = d;
}

// y = W x for Q8_0 weights and a Q8_0 activation (§5.3): one warp per row;
// lane l handles blocks l, l+32, ...; each block's integer sum is exact and
// its float term is (wd * scale) * isum as on the CPU; the warp then adds the
// lanes' partial sums (the only reordering against the CPU's block order).
extern "C" __global__ void matvec_q8_0(const uint8_t *w, int rows, int cols, const int8_t *qs,
                                       const float *scales, float *y) {
    int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    if (row >= rows) return;
    int nb = cols / 32;
    const uint8_t *r = w + (size_t)row * nb * 34;
    float acc = 0.0f;
    for (int b = lane; b < nb; b += WARP) {
        const uint8_t *blk = r + (size_t)b * 34;
        const int8_t *a = qs + b * 32;
        int isum = 0;
#pragma unroll 8
        for (int j = 0; j < 32; j++) isum += (int)(int8_t)blk[2 + j] * (int)a[j];
        acc = __fadd_rn(acc, __fmul_rn(__fmul_rn(f16_at(blk), scales[b]), (float)isum));
    }
    acc = warp_sum(acc);
    if (lane == 0) y[row] = acc;
}

// y = W x for F16 weights and f32 activations (model.md §11.1, F16 x f32
// class): one warp per row, f32 products and sums.
extern "C" __global__ void matvec_f16(const uint16_t *w, int rows, int cols, const float *x, float *y) {
    int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    if (row >= rows) return;
    const uint16_t *r = w + (size_t)row * cols;
    float acc = 0.0f;
    for (int i = lane; i < cols; i += WARP) acc = __fadd_rn(acc, __fmul_rn(half_to_float(r[i]), x[i]));
    acc = warp_sum(acc);
    if (lane == 0) y[row] = acc;
}
