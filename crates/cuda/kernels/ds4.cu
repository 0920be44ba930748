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

// The Q8_K activation block (gguf-and-quants.md §3.6), the layout of
// gguf::quant::BlockQ8K (#[repr(C)], 292 bytes).
struct block_q8_K {
    float d;
    int8_t qs[256];
    int16_t bsums[16];
};

__device__ __forceinline__ uint32_t u32_at(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

// Q8_K activation quantization (§5.1): one warp per 256-value block, lane l
// holding values 8l..8l+7. The scale comes from the FIRST element of largest
// magnitude (ties go to the lower index, as the CPU's scan leaves them), so
// codes, bsums and d equal the CPU's bit for bit.
extern "C" __global__ void quantize_q8_k(const float *x, int nblocks, block_q8_K *y) {
    int block = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    if (block >= nblocks) return;
    const float *xb = x + (size_t)block * 256;
    float v[8];
    float best = -1.0f;
    int best_i = 0;
#pragma unroll
    for (int k = 0; k < 8; k++) {
        v[k] = xb[8 * lane + k];
        if (fabsf(v[k]) > best) {
            best = fabsf(v[k]);
            best_i = 8 * lane + k;
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float ob = __shfl_xor_sync(0xffffffffu, best, o);
        int oi = __shfl_xor_sync(0xffffffffu, best_i, o);
        if (ob > best || (ob == best && oi < best_i)) {
            best = ob;
            best_i = oi;
        }
    }
    block_q8_K *out = y + block;
    if (best == 0.0f) {
#pragma unroll
        for (int k = 0; k < 8; k++) out->qs[8 * lane + k] = 0;
        if (lane < 16) out->bsums[lane] = 0;
        if (lane == 0) out->d = 0.0f;
        return;
    }
    float mx = xb[best_i];
    float iscale = __fdiv_rn(-127.0f, mx);
    int sum = 0;
#pragma unroll
    for (int k = 0; k < 8; k++) {
        int q = max(-128, min(127, __float2int_rn(__fmul_rn(iscale, v[k]))));
        out->qs[8 * lane + k] = (int8_t)q;
        sum += q;
    }
    // bsums cover 16 values: two lanes each.
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    if ((lane & 1) == 0) out->bsums[lane / 2] = (int16_t)sum;
    if (lane == 0) out->d = __fdiv_rn(1.0f, iscale);
}

// Q2_K x Q8_K (§5.4), one warp per row, lanes over 256-blocks; each block's
// float term is (dall*isum - dmin*summs) exactly as the CPU forms it.
extern "C" __global__ void matvec_q2_k(const uint8_t *w, int rows, int cols, const block_q8_K *y,
                                       float *out) {
    int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    if (row >= rows) return;
    int nb = cols / 256;
    const uint8_t *r = w + (size_t)row * nb * 84;
    float acc = 0.0f;
    for (int b = lane; b < nb; b += WARP) {
        const uint8_t *x = r + (size_t)b * 84;
        const block_q8_K *a = y + b;
        const uint8_t *scales = x;
        const uint8_t *qs = x + 16;
        int summs = 0;
        for (int j = 0; j < 16; j++) summs += (int)a->bsums[j] * (int)(scales[j] >> 4);
        int isum = 0;
        for (int s = 0; s < 16; s++) {
            int h = s / 8, j = (s % 8) / 2, half = s % 2;
            int sub = 0;
            for (int l = 0; l < 16; l++) {
                int q = (qs[32 * h + 16 * half + l] >> (2 * j)) & 3;
                sub += q * (int)a->qs[128 * h + 32 * j + 16 * half + l];
            }
            isum += (int)(scales[s] & 15) * sub;
        }
        float dall = __fmul_rn(a->d, f16_at(x + 80));
        float dmin = __fmul_rn(a->d, f16_at(x + 82));
        acc = __fadd_rn(acc, __fsub_rn(__fmul_rn(dall, (float)isum), __fmul_rn(dmin, (float)summs)));
    }
    acc = warp_sum(acc);
    if (lane == 0) out[row] = acc;
}

// Q4_K x Q8_K (§5.5), same structure.
extern "C" __global__ void matvec_q4_k(const uint8_t *w, int rows, int cols, const block_q8_K *y,
                                       float *out) {
    int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    if (row >= rows) return;
    int nb = cols / 256;
    const uint8_t *r = w + (size_t)row * nb * 144;
    float acc = 0.0f;
    for (int b = lane; b < nb; b += WARP) {
        const uint8_t *x = r + (size_t)b * 144;
        const block_q8_K *a = y + b;
        const uint8_t *S = x + 4;
        const uint8_t *qs = x + 16;
        int summs = 0, isum = 0;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            if (j < 4) {
                sc = S[j] & 63;
                m = S[j + 4] & 63;
            } else {
                sc = (S[j + 4] & 15) | ((S[j - 4] >> 6) << 4);
                m = (S[j + 4] >> 4) | ((S[j] >> 6) << 4);
            }
            summs += m * ((int)a->bsums[2 * j] + (int)a->bsums[2 * j + 1]);
            const uint8_t *q = qs + 32 * (j / 2);
            int shift = 4 * (j % 2);
            int sub = 0;
            for (int i = 0; i < 32; i++) sub += ((q[i] >> shift) & 15) * (int)a->qs[32 * j + i];
            isum += sc * sub;
        }
        float d = __fmul_rn(a->d, f16_at(x));
        float dmin = __fmul_rn(a->d, f16_at(x + 2));
        acc = __fadd_rn(acc, __fsub_rn(__fmul_rn(d, (float)isum), __fmul_rn(dmin, (float)summs)));
    }
    acc = warp_sum(acc);
    if (lane == 0) out[row] = acc;
}

// IQ2_XXS x Q8_K (§5.6 scalar structure): integer bsum per block, one float
// term d*bsum per block, the 1/8 applied once at the end. `grid` (256 u64)
// and `ksigns` (128 bytes) are gguf::quant::tables, uploaded at start.
extern "C" __global__ void matvec_iq2_xxs(const uint8_t *w, int rows, int cols, const block_q8_K *y,
                                          const uint64_t *grid, const uint8_t *ksigns, float *out) {
    int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    if (row >= rows) return;
    int nb = cols / 256;
    const uint8_t *r = w + (size_t)row * nb * 66;
    float acc = 0.0f;
    for (int b = lane; b < nb; b += WARP) {
        const uint8_t *x = r + (size_t)b * 66;
        const block_q8_K *a = y + b;
        float d = __fmul_rn(f16_at(x), a->d);
        int bsum = 0;
        for (int g = 0; g < 8; g++) {
            uint32_t A = u32_at(x + 2 + 8 * g);
            uint32_t B = u32_at(x + 6 + 8 * g);
            int ls = 2 * (int)(B >> 28) + 1;
            int sumi = 0;
            for (int i = 0; i < 4; i++) {
                uint64_t gr = grid[(A >> (8 * i)) & 0xFF];
                uint8_t signs = ksigns[(B >> (7 * i)) & 127];
                for (int j = 0; j < 8; j++) {
                    int gv = (int)((gr >> (8 * j)) & 0xFF);
                    int v = (signs >> j) & 1 ? -gv : gv;
                    sumi += v * (int)a->qs[32 * g + 8 * i + j];
                }
            }
            bsum += sumi * ls;
        }
        acc = __fadd_rn(acc, __fmul_rn(d, (float)bsum));
    }
    acc = warp_sum(acc);
    if (lane == 0) out[row] = __fmul_rn(0.125f, acc);
}

// ---------------------------------------------------------------------------
// Element-wise stages of a layer (model.md §4, §5; attention.md §5, §6, §12).

// Block-wide f32 sum; blockDim.x is a multiple of 32, at most 1024.
__device__ float block_sum(float v) {
    __shared__ float part[32];
    v = warp_sum(v);
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    if (lane == 0) part[warp] = v;
    __syncthreads();
    int nw = blockDim.x / WARP;
    v = lane < nw ? part[lane] : 0.0f;
    if (warp == 0) v = warp_sum(v);
    if (threadIdx.x == 0) part[0] = v;
    __syncthreads();
    float r = part[0];
    __syncthreads();
    return r;
}

// out = (x * rms_scale(x)) * w for `count` vectors of n (one block each);
// w may be null for the unweighted norm of the HC state.
extern "C" __global__ void rms_norm(const float *x, const float *w, int n, float eps, float *out) {
    const float *v = x + (size_t)blockIdx.x * n;
    float *o = out + (size_t)blockIdx.x * n;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss = __fadd_rn(ss, __fmul_rn(v[i], v[i]));
    ss = block_sum(ss);
    float s = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(ss, (float)n), eps)));
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float y = __fmul_rn(v[i], s);
        o[i] = w ? __fmul_rn(y, w[i]) : y;
    }
}

// Interleaved-pair RoPE on the last 2*pairs dims of each of `count`
// vectors of `dim` (one thread per pair); `inverse` rotates backwards
// (attention.md §5.1, §5.6). inv_freq as computed by model::rope::Rope.
extern "C" __global__ void rope(float *v, int count, int dim, const float *inv_freq, int pairs, int pos,
                                int inverse) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= count * pairs) return;
    int vec = t / pairs, k = t % pairs;
    float *tail = v + (size_t)vec * dim + (dim - 2 * pairs);
    float theta = __fmul_rn((float)pos, inv_freq[k]);
    float s, c;
    sincosf(theta, &s, &c);
    if (inverse) s = -s;
    float a = tail[2 * k], b = tail[2 * k + 1];
    tail[2 * k] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
    tail[2 * k + 1] = __fadd_rn(__fmul_rn(a, s), __fmul_rn(b, c));
}

// Smallest power of two >= x (x > 0): the "ue8m0" scale (model::qat).
__device__ __forceinline__ float pow2_ceil(float x) {
    uint32_t bits = __float_as_uint(x);
    uint32_t e = (bits >> 23) & 0xff, m = bits & 0x7fffff;
    if (e == 0) {
        if (m == 0 || (m & (m - 1)) == 0) return x;
        return __uint_as_float(1u << (32 - __clz(m)));
    }
    return m == 0 ? x : __uint_as_float((e + 1) << 23);
}

__device__ __forceinline__ float e4m3_round(float y) {
    float a = fabsf(y);
    float step = a < 0.015625f ? 0.001953125f : __uint_as_float(((__float_as_uint(a) >> 23) - 3) << 23);
    float r = fminf(__fmul_rn(rintf(__fdiv_rn(a, step)), step), 448.0f);
    return copysignf(r, y);
}

// FP8 E4M3 round trip of dims [0, nope) of `count` rows of `dim`, blocks of
// 64 (attention.md §6.1): one warp per block, two values per lane.
extern "C" __global__ void fp8_round_trip(float *v, int count, int dim, int nope) {
    int per_row = nope / 64;
    int block = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    if (block >= count * per_row) return;
    float *b = v + (size_t)(block / per_row) * dim + (block % per_row) * 64;
    float x0 = b[lane], x1 = b[lane + 32];
    float amax = fmaxf(warp_max(fmaxf(fabsf(x0), fabsf(x1))), 1e-4f);
    float scale = pow2_ceil(__fdiv_rn(amax, 448.0f));
    b[lane] = __fmul_rn(e4m3_round(fminf(fmaxf(__fdiv_rn(x0, scale), -448.0f), 448.0f)), scale);
    b[lane + 32] = __fmul_rn(e4m3_round(fminf(fmaxf(__fdiv_rn(x1, scale), -448.0f), 448.0f)), scale);
}

// Round to f16 and back (storage precision of attention rows, §12).
extern "C" __global__ void f16_round(float *v, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v[i]));
    v[i] = half_to_float(h);
}

// ---------------------------------------------------------------------------
// Hyper-connections (model.md §5), router (§7.1–7.3) and sink attention
// (attention.md §9).

#define MAX_HC 8

// Steps 3–8 of §5.2 for `count` tokens, one thread each, in the CPU's order:
// pre = sigmoid+eps, post = 2*sigmoid, comb = row softmax+eps, then one
// column normalization and (iters-1) row+column normalizations.
extern "C" __global__ void hc_split(const float *mix, int count, int n_hc, const float *scale,
                                    const float *base, int iters, float eps, float *pre, float *post,
                                    float *comb) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= count || n_hc > MAX_HC) return;
    int m = 2 * n_hc + n_hc * n_hc;
    const float *x = mix + (size_t)t * m;
    for (int i = 0; i < n_hc; i++) {
        float z0 = __fadd_rn(__fmul_rn(x[i], scale[0]), base[i]);
        pre[t * n_hc + i] = __fadd_rn(__fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-z0))), eps);
        float z1 = __fadd_rn(__fmul_rn(x[n_hc + i], scale[1]), base[n_hc + i]);
        post[t * n_hc + i] = __fmul_rn(2.0f, __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-z1))));
    }
    float p[MAX_HC * MAX_HC];
    int off = 2 * n_hc;
    for (int r = 0; r < n_hc; r++) {
        float a[MAX_HC];
        float mx = -INFINITY;
        for (int c = 0; c < n_hc; c++) {
            a[c] = __fadd_rn(__fmul_rn(x[off + n_hc * r + c], scale[2]), base[off + n_hc * r + c]);
            mx = fmaxf(mx, a[c]);
        }
        float sum = 0.0f;
        for (int c = 0; c < n_hc; c++) {
            a[c] = expf(__fsub_rn(a[c], mx));
            sum = __fadd_rn(sum, a[c]);
        }
        float inv = __fdiv_rn(1.0f, sum);
        for (int c = 0; c < n_hc; c++) p[n_hc * r + c] = __fadd_rn(__fmul_rn(a[c], inv), eps);
    }
    for (int it = 0; it < iters; it++) {
        if (it > 0) {
            for (int r = 0; r < n_hc; r++) {
                float s = 0.0f;
                for (int c = 0; c < n_hc; c++) s = __fadd_rn(s, p[n_hc * r + c]);
                float inv = __fdiv_rn(1.0f, __fadd_rn(s, eps));
                for (int c = 0; c < n_hc; c++) p[n_hc * r + c] = __fmul_rn(p[n_hc * r + c], inv);
            }
        }
        for (int c = 0; c < n_hc; c++) {
            float s = 0.0f;
            for (int r = 0; r < n_hc; r++) s = __fadd_rn(s, p[n_hc * r + c]);
            float inv = __fdiv_rn(1.0f, __fadd_rn(s, eps));
            for (int r = 0; r < n_hc; r++) p[n_hc * r + c] = __fmul_rn(p[n_hc * r + c], inv);
        }
    }
    for (int i = 0; i < n_hc * n_hc; i++) comb[(size_t)t * n_hc * n_hc + i] = p[i];
}

// HC-post (§5.3) for one token: H'[c][d] = y[d]*post[c] + Σ_r P[r][c]*H[r][d].
extern "C" __global__ void hc_post(const float *y, const float *h, const float *post, const float *comb,
                                   int n_hc, int d, float *out) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_hc * d) return;
    int c = i / d, j = i % d;
    float acc = __fmul_rn(y[j], post[c]);
    for (int r = 0; r < n_hc; r++) acc = __fadd_rn(acc, __fmul_rn(comb[n_hc * r + c], h[(size_t)r * d + j]));
    out[i] = acc;
}

// Router for one token (§7.1–7.3): scores sqrt(softplus(logit)); hash
// layers take `hash_ids`, others the top-k of score+bias by repeated warp
// argmax (ties to the lower index, as the CPU's stable insertion); weights
// from the unbiased scores, normalized with the 2^-14 floor, times `scale`.
// One warp; n_expert <= 32*16.
extern "C" __global__ void router(const float *logits, int n_expert, const float *bias, const int *hash_ids,
                                  int k, float scale, int *experts, float *weights) {
    int lane = threadIdx.x;
    float s[16], sel[16];
    int per = (n_expert + WARP - 1) / WARP;
    for (int i = 0; i < per; i++) {
        int e = lane * per + i;
        if (e < n_expert) {
            float z = logits[e];
            float sp = z > 20.0f ? z : (z < -20.0f ? expf(z) : log1pf(expf(z)));
            s[i] = __fsqrt_rn(sp);
            sel[i] = bias ? __fadd_rn(s[i], bias[e]) : s[i];
        } else {
            s[i] = 0.0f;
            sel[i] = -INFINITY;
        }
    }
    __shared__ float chosen_score[64];
    for (int slot = 0; slot < k; slot++) {
        int best_e = n_expert;
        float best = -INFINITY;
        if (hash_ids) {
            best_e = hash_ids[slot];
        } else {
            for (int i = 0; i < per; i++) {
                int e = lane * per + i;
                if (e < n_expert && (sel[i] > best || (sel[i] == best && e < best_e))) {
                    best = sel[i];
                    best_e = e;
                }
            }
            for (int o = 16; o > 0; o >>= 1) {
                float ob = __shfl_xor_sync(0xffffffffu, best, o);
                int oe = __shfl_xor_sync(0xffffffffu, best_e, o);
                if (ob > best || (ob == best && oe < best_e)) {
                    best = ob;
                    best_e = oe;
                }
            }
            if (best_e / per == lane) sel[best_e % per] = -INFINITY;
        }
        float sc = 0.0f;
        if (best_e / per == lane) sc = s[best_e % per];
        sc = warp_sum(sc);
        if (lane == 0) {
            experts[slot] = best_e;
            chosen_score[slot] = sc;
        }
    }
    __syncwarp();
    if (lane == 0) {
        float sum = 0.0f;
        for (int slot = 0; slot < k; slot++) sum = __fadd_rn(sum, chosen_score[slot]);
        sum = fmaxf(sum, 6.103515625e-5f);
        for (int slot = 0; slot < k; slot++) weights[slot] = __fmul_rn(__fdiv_rn(chosen_score[slot], sum), scale);
    }
}

// One head's sink softmax over `n_keys` rows of `dim` (keys are the
// values): one block per head; scores in dynamic shared memory.
extern "C" __global__ void sink_attention(const float *q, const float *keys, int n_keys, int dim,
                                          const float *sinks, float scale, float *out) {
    extern __shared__ float sc[];
    int head = blockIdx.x;
    const float *qh = q + (size_t)head * dim;
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP, nw = blockDim.x / WARP;
    for (int k = warp; k < n_keys; k += nw) {
        const float *key = keys + (size_t)k * dim;
        float acc = 0.0f;
        for (int j = lane; j < dim; j += WARP) acc = __fadd_rn(acc, __fmul_rn(qh[j], key[j]));
        acc = warp_sum(acc);
        if (lane == 0) sc[k] = __fmul_rn(acc, scale);
    }
    __syncthreads();
    float sink = sinks[head];
    float m = sink;
    for (int k = 0; k < n_keys; k++) m = fmaxf(m, sc[k]);
    float den = expf(__fsub_rn(sink, m));
    for (int k = 0; k < n_keys; k++) den = __fadd_rn(den, expf(__fsub_rn(sc[k], m)));
    float inv = __fdiv_rn(1.0f, den);
    for (int j = threadIdx.x; j < dim; j += blockDim.x) {
        float acc = 0.0f;
        for (int k = 0; k < n_keys; k++) acc = __fadd_rn(acc, __fmul_rn(expf(__fsub_rn(sc[k], m)), keys[(size_t)k * dim + j]));
        out[(size_t)head * dim + j] = __fmul_rn(acc, inv);
    }
}

// ---------------------------------------------------------------------------
// MoE activation, HC collapse, compressor pooling, indexer round trip.

// mid = (silu(min(g, c)) * clamp(u, -c, c)) * weight (model.md §7.4), the
// stable sigmoid; clamp only when c > 1e-6.
extern "C" __global__ void swiglu(const float *g, const float *u, int n, float clamp_c, float weight, float *mid) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float a = g[i], b = u[i];
    if (clamp_c > 1e-6f) {
        a = fminf(a, clamp_c);
        b = fminf(fmaxf(b, -clamp_c), clamp_c);
    }
    float sig;
    if (a >= 0.0f) {
        sig = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-a)));
    } else {
        float e = expf(a);
        sig = __fdiv_rn(e, __fadd_rn(1.0f, e));
    }
    mid[i] = __fmul_rn(__fmul_rn(__fmul_rn(a, sig), b), weight);
}

// x[d] = Σ_h w[h] * H[h][d] in h order (model.md §5.2 step 9, §8).
extern "C" __global__ void hc_weighted_sum(const float *h, const float *w, int n_hc, int d, float *x) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= d) return;
    float acc = 0.0f;
    for (int k = 0; k < n_hc; k++) acc = __fadd_rn(acc, __fmul_rn(w[k], h[(size_t)k * d + i]));
    x[i] = acc;
}

// Per-channel gated softmax pooling of a compressor frontier (attention.md
// §8.4): ratio 4 pools slots 0..3 at column j and slots 4..7 at column d+j;
// other ratios pool slots 0..ratio-1 at column j. One thread per channel.
extern "C" __global__ void compressor_pool(const float *kv, const float *score, int ratio, int d, int width,
                                           float *out) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= d) return;
    int n = ratio == 4 ? 8 : ratio;
    float m = -INFINITY;
    for (int t = 0; t < n; t++) {
        int col = (ratio == 4 && t >= 4) ? d + j : j;
        m = fmaxf(m, score[(size_t)t * width + col]);
    }
    if (m <= -0.5e30f) {
        out[j] = 0.0f;
        return;
    }
    float num = 0.0f, den = 0.0f;
    for (int t = 0; t < n; t++) {
        int col = (ratio == 4 && t >= 4) ? d + j : j;
        float e = expf(__fsub_rn(score[(size_t)t * width + col], m));
        num = __fadd_rn(num, __fmul_rn(e, kv[(size_t)t * width + col]));
        den = __fadd_rn(den, e);
    }
    out[j] = __fdiv_rn(num, den);
}

__device__ __forceinline__ float e2m1_round(float y) {
    const float table[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
    float a = fabsf(y);
    int best = 0;
    for (int i = 1; i < 8; i++) {
        float db = fabsf(a - table[best]), di = fabsf(a - table[i]);
        if (di < db || (di == db && (i % 2) == 0)) best = i;
    }
    return copysignf(table[best], y);
}

// Hadamard rotation then FP4 round trip in 32-blocks (attention.md §6.2)
// of `count` vectors of `dim` (a power of two, at most 1024): one block of
// `dim` threads per vector, butterflies in shared memory in the CPU's order.
extern "C" __global__ void indexer_round_trip(float *v, int dim) {
    __shared__ float buf[1024];
    float *x = v + (size_t)blockIdx.x * dim;
    int i = threadIdx.x;
    buf[i] = x[i];
    __syncthreads();
    for (int stride = 1; stride < dim; stride *= 2) {
        float a = buf[i], partner = buf[i ^ stride];
        __syncthreads();
        buf[i] = (i & stride) ? __fsub_rn(partner, a) : __fadd_rn(a, partner);
        __syncthreads();
    }
    float val = __fmul_rn(buf[i], __fdiv_rn(1.0f, __fsqrt_rn((float)dim)));
    // FP4 in blocks of 32 = one warp each.
    float amax = fmaxf(warp_max(fabsf(val)), 7.052966104933725e-38f);
    float scale = pow2_ceil(__fdiv_rn(amax, 6.0f));
    x[i] = __fmul_rn(e2m1_round(fminf(fmaxf(__fdiv_rn(val, scale), -6.0f), 6.0f)), scale);
}
