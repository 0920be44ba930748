// Kernels of the GPU forward pass (cuda-design.md), included by ds4.cu.
//
// Every kernel works on a batch: the tokens of a prefill chunk, the experts
// chosen for them, or the output groups of a token. Matrix-vector products
// address their batch as "slots": slot s multiplies weight matrix
// `ids ? ids[s] : s % w_mod` (each `w_stride` bytes apart) by activation
// vector `s / act_div` (each `act_stride` values apart) into output row
// block `s`. One launch thus covers a chunk of tokens against one weight
// (w_mod 1, act_div 1), the k routed experts of each token (ids, act_div k),
// or the grouped output projection (w_mod groups). The slot is blockIdx.x,
// so the blocks of all slots that read the same weight rows run together
// and share them through L2.

// Row `row` of slot `blockIdx.x`: the weight bytes, the activation offset
// (in values) and whether this warp has a row at all.
struct SlotRow {
    const uint8_t *w;
    long long act;
    int row;
    int lane;
};

__device__ __forceinline__ bool slot_row(const uint8_t *w, long long w_stride, const int *ids, int w_mod,
                                         int rows, long long row_bytes, int act_div, int act_stride, SlotRow &r) {
    int s = blockIdx.x;
    r.row = blockIdx.y * (blockDim.x / WARP) + threadIdx.x / WARP;
    r.lane = threadIdx.x % WARP;
    if (r.row >= rows) return false;
    long long e = ids ? (long long)ids[s] : (long long)(s % w_mod);
    r.w = w + e * w_stride + (long long)r.row * row_bytes;
    r.act = (long long)(s / act_div) * act_stride;
    return true;
}

__device__ __forceinline__ void slot_store(float *y, int rows, const SlotRow &r, float acc) {
    acc = warp_sum(acc);
    if (r.lane == 0) y[(long long)blockIdx.x * rows + r.row] = acc;
}

// Q8_0 weights x ds4's Q8_0 activation (gguf-and-quants.md §5.3): lane l
// takes blocks l, l+32, ...; each block's integer sum is exact and its float
// term is (wd * scale) * isum as on the CPU; the lanes' partial sums are then
// added by the warp (the only reordering against the CPU's block order).
extern "C" __global__ void mm_q8_0(const uint8_t *w, long long w_stride, const int *ids, int w_mod, int rows,
                                   int cols, const int8_t *qs, const float *scales, int act_div, int act_stride,
                                   float *y) {
    int nb = cols / 32;
    SlotRow r;
    if (!slot_row(w, w_stride, ids, w_mod, rows, (long long)nb * 34, act_div, act_stride, r)) return;
    const int8_t *aq = qs + r.act;
    const float *as = scales + r.act / 32;
    float acc = 0.0f;
    for (int b = r.lane; b < nb; b += WARP) {
        const uint8_t *blk = r.w + (size_t)b * 34;
        const int8_t *a = aq + b * 32;
        int isum = 0;
#pragma unroll 8
        for (int j = 0; j < 32; j++) isum += (int)(int8_t)blk[2 + j] * (int)a[j];
        acc = __fadd_rn(acc, __fmul_rn(__fmul_rn(f16_at(blk), as[b]), (float)isum));
    }
    slot_store(y, rows, r, acc);
}

__device__ __forceinline__ int pack4(const uint8_t *p) {
    return (int)((uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24));
}

// uint4 loads per 32 Q8_0 blocks (32 * 34 bytes).
#define Q8_CHUNK16 68

// mm_q8_0 for rows of a multiple of 8 blocks (16-byte aligned rows, the
// caller checks): byte loads leave a warp one small load in flight, so this
// streams each row in 32-block chunks with 16-byte loads, the next chunk's
// loads issued before the current chunk is consumed, through shared memory.
// Lane l still takes blocks l, l+32, ... and forms the same terms, so the
// sums are mm_q8_0's (and the CPU's).
extern "C" __global__ void __launch_bounds__(256) mm_q8_0_staged(const uint8_t *w, long long w_stride,
                                                                 const int *ids, int w_mod, int rows, int cols,
                                                                 const int8_t *qs, const float *scales,
                                                                 int act_div, int act_stride, float *y) {
    __shared__ uint4 stage[8][Q8_CHUNK16];
    int nb = cols / 32;
    SlotRow r;
    if (!slot_row(w, w_stride, ids, w_mod, rows, (long long)nb * 34, act_div, act_stride, r)) return;
    int warp = threadIdx.x / WARP;
    const uint4 *src = (const uint4 *)r.w;
    const int8_t *aq = qs + r.act;
    const float *as = scales + r.act / 32;
    uint4 v[3];
    int cnt = min(WARP, nb) * 34 / 16;
#pragma unroll
    for (int k = 0; k < 3; k++) {
        int i = r.lane + WARP * k;
        if (i < cnt) v[k] = src[i];
    }
    float acc = 0.0f;
    for (int b0 = 0; b0 < nb; b0 += WARP) {
        int nblk = min(WARP, nb - b0);
        cnt = nblk * 34 / 16;
#pragma unroll
        for (int k = 0; k < 3; k++) {
            int i = r.lane + WARP * k;
            if (i < cnt) stage[warp][i] = v[k];
        }
        __syncwarp();
        if (b0 + WARP < nb) {
            int base = (b0 + WARP) * 34 / 16;
            int next = min(WARP, nb - b0 - WARP) * 34 / 16;
#pragma unroll
            for (int k = 0; k < 3; k++) {
                int i = r.lane + WARP * k;
                if (i < next) v[k] = src[base + i];
            }
        }
        if (r.lane < nblk) {
            int b = b0 + r.lane;
            const uint8_t *blk = (const uint8_t *)stage[warp] + r.lane * 34;
            const int *a = (const int *)(aq + (size_t)b * 32);
            int isum = 0;
#pragma unroll
            for (int j = 0; j < 8; j++) isum = __dp4a(pack4(blk + 2 + 4 * j), a[j], isum);
            acc = __fadd_rn(acc, __fmul_rn(__fmul_rn(f16_at(blk), as[b]), (float)isum));
        }
        __syncwarp();
    }
    slot_store(y, rows, r, acc);
}

// ggml_e8m0_to_fp32_half: 2^(e-128), the MXFP4 scale halved because the
// value table is stored doubled.
__device__ __forceinline__ float e8m0_half(uint8_t e) {
    uint32_t bits = e < 2 ? (0x00200000u << e) : ((uint32_t)(e - 1) << 23);
    return __uint_as_float(bits);
}

__constant__ int8_t KVALUES_MXFP4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

// MXFP4 weights x ds4's Q8_0 activation: like Q8_0 with the E8M0 half scale.
extern "C" __global__ void mm_mxfp4(const uint8_t *w, long long w_stride, const int *ids, int w_mod, int rows,
                                    int cols, const int8_t *qs, const float *scales, int act_div, int act_stride,
                                    float *y) {
    int nb = cols / 32;
    SlotRow r;
    if (!slot_row(w, w_stride, ids, w_mod, rows, (long long)nb * 17, act_div, act_stride, r)) return;
    const int8_t *aq = qs + r.act;
    const float *as = scales + r.act / 32;
    float acc = 0.0f;
    for (int b = r.lane; b < nb; b += WARP) {
        const uint8_t *blk = r.w + (size_t)b * 17;
        const int8_t *a = aq + b * 32;
        int isum = 0;
        for (int j = 0; j < 16; j++) {
            uint8_t q = blk[1 + j];
            isum += (int)KVALUES_MXFP4[q & 15] * (int)a[j];
            isum += (int)KVALUES_MXFP4[q >> 4] * (int)a[j + 16];
        }
        acc = __fadd_rn(acc, __fmul_rn(__fmul_rn(e8m0_half(blk[0]), as[b]), (float)isum));
    }
    slot_store(y, rows, r, acc);
}

// F16 weights x f32 activations (model.md §11.1): f32 products and sums.
extern "C" __global__ void mm_f16(const uint8_t *w, long long w_stride, const int *ids, int w_mod, int rows,
                                  int cols, const float *x, int act_div, int act_stride, float *y) {
    SlotRow r;
    if (!slot_row(w, w_stride, ids, w_mod, rows, (long long)cols * 2, act_div, act_stride, r)) return;
    const uint16_t *wr = (const uint16_t *)r.w;
    const float *xa = x + r.act;
    float acc = 0.0f;
    // Unrolled: the loads of 8 terms are issued before their (ordered) adds.
#pragma unroll 8
    for (int i = r.lane; i < cols; i += WARP) acc = __fadd_rn(acc, __fmul_rn(half_to_float(wr[i]), xa[i]));
    slot_store(y, rows, r, acc);
}

// F32 weights x f32 activations (also every weight of the f32 reference
// mode, dequantized at upload).
extern "C" __global__ void mm_f32(const uint8_t *w, long long w_stride, const int *ids, int w_mod, int rows,
                                  int cols, const float *x, int act_div, int act_stride, float *y) {
    SlotRow r;
    if (!slot_row(w, w_stride, ids, w_mod, rows, (long long)cols * 4, act_div, act_stride, r)) return;
    const float *wr = (const float *)r.w;
    const float *xa = x + r.act;
    float acc = 0.0f;
    // Unrolled: the loads of 8 terms are issued before their (ordered) adds.
#pragma unroll 8
    for (int i = r.lane; i < cols; i += WARP) acc = __fadd_rn(acc, __fmul_rn(wr[i], xa[i]));
    slot_store(y, rows, r, acc);
}

// F16 or F32 weights x f32 activations for matrices of few, long rows (the
// HC mixes: 24 rows of 16384): one block per (slot, row), threads over
// the columns, then a block sum. Chosen by the matrix's shape alone, so a
// row's sum order never depends on the batch.
template <typename W>
__device__ void mm_wide(const uint8_t *w, long long w_stride, const int *ids, int w_mod, int rows, int cols,
                        const float *x, int act_div, int act_stride, float *y) {
    int s = blockIdx.x, row = blockIdx.y;
    long long e = ids ? (long long)ids[s] : (long long)(s % w_mod);
    const W *wr = (const W *)(w + e * w_stride) + (size_t)row * cols;
    const float *xa = x + (long long)(s / act_div) * act_stride;
    float acc = 0.0f;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) {
        float wv;
        if constexpr (sizeof(W) == 2) wv = half_to_float(wr[i]);
        else wv = wr[i];
        acc = __fadd_rn(acc, __fmul_rn(wv, xa[i]));
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) y[(long long)s * rows + row] = acc;
}

extern "C" __global__ void mm_f16_wide(const uint8_t *w, long long w_stride, const int *ids, int w_mod, int rows,
                                       int cols, const float *x, int act_div, int act_stride, float *y) {
    mm_wide<uint16_t>(w, w_stride, ids, w_mod, rows, cols, x, act_div, act_stride, y);
}

extern "C" __global__ void mm_f32_wide(const uint8_t *w, long long w_stride, const int *ids, int w_mod, int rows,
                                       int cols, const float *x, int act_div, int act_stride, float *y) {
    mm_wide<float>(w, w_stride, ids, w_mod, rows, cols, x, act_div, act_stride, y);
}

// The per-lane order of the slot kernels' float sums, kept when lanes
// share blocks: lane L adds the terms of blocks L, L+32, ... in increasing
// order, then the warp sums the lanes. `term` is block b's term held by
// lane `src`; every lane takes part.
__device__ __forceinline__ void add_in_lane_order(float &acc, float term, int b, int src, int lane) {
    float v = __shfl_sync(0xffffffffu, term, src);
    if (b >= 0 && lane == b % WARP) acc = __fadd_rn(acc, v);
}

// The decoders below read weight blocks with 4-byte loads: every weight
// tensor is its own allocation (256-byte aligned), Q2_K blocks are 84 bytes
// and IQ2_XXS blocks 66, so Q2_K code bytes are 4-byte aligned and IQ2_XXS
// fields 2-byte aligned (Gpu::k_mm refuses anything else). One load per
// four code bytes instead of one per byte: the Q2_K kernel was bound by
// those load instructions (ncu: 33 -> 26 us a decode launch).

// Q2_K sub-block `sb` (values 16sb..16sb+15) of the 64 code bytes `qs`
// (4-byte aligned), as four words of int8 codes for dp4a: the 2-bit field j
// of each byte of a word, `(word >> 2j) & 0x03030303`.
__device__ __forceinline__ void q2k_sub(const uint8_t *qs, int sb, int *wv) {
    int h = sb / 8, j = (sb % 8) / 2, hf = sb % 2;
    const uint32_t *q = (const uint32_t *)(qs + 32 * h + 16 * hf);
#pragma unroll
    for (int k = 0; k < 4; k++) wv[k] = (int)((q[k] >> (2 * j)) & 0x03030303u);
}

// Four grid bytes (each < 128) with byte j negated where bit j of `s` is
// set, four at a time: the bits spread to 0/0xFF byte masks m, then
// (v ^ m) - m per byte is -v where m = 0xFF and v where m = 0 (the same
// int8 values as negating byte by byte).
__device__ __forceinline__ uint32_t apply_signs(uint32_t v, uint32_t s) {
    uint32_t m = ((s & 1u) | ((s & 2u) << 7) | ((s & 4u) << 14) | ((s & 8u) << 21)) * 0xFFu;
    return __vsub4(v ^ m, m);
}

// The two little-endian words at `p` and `p + 4` (`p` 2-byte aligned) from
// three aligned loads.
__device__ __forceinline__ void u32x2_at_a2(const uint8_t *p, uint32_t &a, uint32_t &b) {
    uintptr_t addr = (uintptr_t)p;
    const uint32_t *q = (const uint32_t *)(addr & ~(uintptr_t)3);
    uint32_t w0 = q[0], w1 = q[1];
    if ((addr & 3) == 0) {
        a = w0;
        b = w1;
    } else {
        uint32_t w2 = q[2];
        a = __funnelshift_r(w0, w1, 16);
        b = __funnelshift_r(w1, w2, 16);
    }
}

// IQ2_XXS group `g` (values 32g..32g+31) of block `x` (2-byte aligned) as
// eight words of signed int8 values for dp4a; returns the group's scale
// 2*(B>>28)+1. The sign byte of index k is KSIGNS[k] = k | parity(k) << 7
// (gguf::quant::tables), computed instead of looked up.
__device__ __forceinline__ int iq2_group(const uint8_t *x, int g, const uint64_t *grid, int *wv) {
    uint32_t A, B;
    u32x2_at_a2(x + 2 + 8 * g, A, B);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        uint64_t gr = grid[(A >> (8 * i)) & 0xFF];
        uint32_t k = (B >> (7 * i)) & 127;
        uint32_t signs = k | ((__popc(k) & 1) << 7);
        wv[2 * i] = (int)apply_signs((uint32_t)gr, signs & 15);
        wv[2 * i + 1] = (int)apply_signs((uint32_t)(gr >> 32), signs >> 4);
    }
    return 2 * (int)(B >> 28) + 1;
}

// Q2_K x Q8_K (§5.4). Each lane takes one 16-value sub-block (16 lanes per
// 256-block, two blocks per pass), so every lane works even on 2048-wide
// rows; the integer sums are exact and each block's float term
// (dall*isum - dmin*summs) is added in the lane order of the one-lane-per-
// block layout, so results do not depend on the layout.
extern "C" __global__ void mm_q2_k(const uint8_t *w, long long w_stride, const int *ids, int w_mod, int rows,
                                   int cols, const block_q8_K *act, int act_div, int act_stride, float *y) {
    int nb = cols / 256;
    SlotRow r;
    if (!slot_row(w, w_stride, ids, w_mod, rows, (long long)nb * 84, act_div, act_stride, r)) return;
    const block_q8_K *ya = act + r.act / 256;
    int sb = r.lane % 16, half_warp = r.lane / 16;
    float acc = 0.0f;
    // Unrolled so the loads of several blocks are in flight at once.
#pragma unroll 4
    for (int b0 = 0; b0 < nb; b0 += 2) {
        int b = b0 + half_warp;
        int isum = 0, summs = 0;
        float dall = 0.0f, dmin = 0.0f;
        if (b < nb) {
            const uint8_t *x = r.w + (size_t)b * 84;
            const block_q8_K *a = ya + b;
            const int *aq = (const int *)(a->qs + 16 * sb);
            int wv[4];
            q2k_sub(x + 16, sb, wv);
            int sub = 0;
#pragma unroll
            for (int k = 0; k < 4; k++) sub = __dp4a(wv[k], aq[k], sub);
            isum = (int)(x[sb] & 15) * sub;
            summs = (int)a->bsums[sb] * (int)(x[sb] >> 4);
            dall = __fmul_rn(a->d, f16_at(x + 80));
            dmin = __fmul_rn(a->d, f16_at(x + 82));
        }
#pragma unroll
        for (int o = 1; o < 16; o <<= 1) {
            isum += __shfl_xor_sync(0xffffffffu, isum, o);
            summs += __shfl_xor_sync(0xffffffffu, summs, o);
        }
        float term = __fsub_rn(__fmul_rn(dall, (float)isum), __fmul_rn(dmin, (float)summs));
        add_in_lane_order(acc, term, b0 < nb ? b0 : -1, 0, r.lane);
        add_in_lane_order(acc, term, b0 + 1 < nb ? b0 + 1 : -1, 16, r.lane);
    }
    slot_store(y, rows, r, acc);
}

// Q4_K x Q8_K (§5.5), same structure.
extern "C" __global__ void mm_q4_k(const uint8_t *w, long long w_stride, const int *ids, int w_mod, int rows,
                                   int cols, const block_q8_K *act, int act_div, int act_stride, float *y) {
    int nb = cols / 256;
    SlotRow r;
    if (!slot_row(w, w_stride, ids, w_mod, rows, (long long)nb * 144, act_div, act_stride, r)) return;
    const block_q8_K *ya = act + r.act / 256;
    float acc = 0.0f;
    for (int b = r.lane; b < nb; b += WARP) {
        const uint8_t *x = r.w + (size_t)b * 144;
        const block_q8_K *a = ya + b;
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
    slot_store(y, rows, r, acc);
}

// IQ2_XXS x Q8_K (§5.6 scalar structure). Each lane takes one 32-value
// group (8 lanes per 256-block, four blocks per pass): the group's integer
// sum times its scale, summed exactly over the block's lanes into bsum; the
// block's float term d*bsum is added in the lane order of the one-lane-per-
// block layout, the 1/8 applied once at the end. `grid` (256 u64) is
// gguf::quant::tables::IQ2XXS_GRID, uploaded at start.
extern "C" __global__ void mm_iq2_xxs(const uint8_t *w, long long w_stride, const int *ids, int w_mod, int rows,
                                      int cols, const block_q8_K *act, int act_div, int act_stride,
                                      const uint64_t *grid, float *y) {
    int nb = cols / 256;
    SlotRow r;
    if (!slot_row(w, w_stride, ids, w_mod, rows, (long long)nb * 66, act_div, act_stride, r)) return;
    const block_q8_K *ya = act + r.act / 256;
    int g = r.lane % 8, quarter = r.lane / 8;
    float acc = 0.0f;
#pragma unroll 4
    for (int b0 = 0; b0 < nb; b0 += 4) {
        int b = b0 + quarter;
        int val = 0;
        float d = 0.0f;
        if (b < nb) {
            const uint8_t *x = r.w + (size_t)b * 66;
            const block_q8_K *a = ya + b;
            const int *aq = (const int *)(a->qs + 32 * g);
            int wv[8];
            int ls = iq2_group(x, g, grid, wv);
            int sumi = 0;
#pragma unroll
            for (int i = 0; i < 8; i++) sumi = __dp4a(wv[i], aq[i], sumi);
            val = sumi * ls;
            d = __fmul_rn(f16_at(x), a->d);
        }
#pragma unroll
        for (int o = 1; o < 8; o <<= 1) val += __shfl_xor_sync(0xffffffffu, val, o);
        float term = __fmul_rn(d, (float)val);
#pragma unroll
        for (int q = 0; q < 4; q++) add_in_lane_order(acc, term, b0 + q < nb ? b0 + q : -1, 8 * q, r.lane);
    }
    acc = warp_sum(acc);
    if (r.lane == 0) y[(long long)blockIdx.x * rows + r.row] = __fmul_rn(0.125f, acc);
}

// ---------------------------------------------------------------------------
// Embedding, RoPE, hyper-connections, router, SwiGLU and the MoE sum, each
// over `T` tokens.

// out[t][h][i] = E[tokens[t]][i] for every HC stream h (model.md §3); the
// table is f16 (`is_f16`) or f32.
extern "C" __global__ void embed(const uint8_t *table, int is_f16, const int *tokens, int T, int d, int n_hc,
                                 float *out) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)T * n_hc * d) return;
    int t = (int)(i / ((long long)n_hc * d)), j = (int)(i % d);
    long long e = (long long)tokens[t] * d + j;
    out[i] = is_f16 ? f16_at(table + 2 * e) : ((const float *)table)[e];
}

// Rotation of pair k of the tail `tail` at position `pos` (attention.md
// §5.1; `inverse` rotates backwards, §5.6).
__device__ __forceinline__ void rope_pair(float *tail, int k, float freq, int pos, int inverse) {
    float theta = __fmul_rn((float)pos, freq);
    float s, c;
    det_sincos(theta, &s, &c);
    if (inverse) s = -s;
    float a = tail[2 * k], b = tail[2 * k + 1];
    tail[2 * k] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
    tail[2 * k + 1] = __fadd_rn(__fmul_rn(a, s), __fmul_rn(b, c));
}

// Interleaved-pair RoPE on the last 2*pairs dims of `count` vectors of
// `dim`; vector v is at position pos0 + v / per_pos (per_pos = the heads of
// one token). One thread per (vector, pair).
extern "C" __global__ void rope(float *v, int count, int dim, const float *inv_freq, int pairs, int pos0,
                                int per_pos, int inverse) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= count * pairs) return;
    int vec = t / pairs, k = t % pairs;
    rope_pair(v + (size_t)vec * dim + (dim - 2 * pairs), k, inv_freq[k], pos0 + vec / per_pos, inverse);
}

// HC-post (§5.3) of T tokens: H'[c][d] = y[d]*post[c] + Σ_r P[r][c]*H[r][d].
extern "C" __global__ void hc_post(const float *y, const float *h, const float *post, const float *comb, int T,
                                   int n_hc, int d, float *out) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)T * n_hc * d) return;
    int t = (int)(i / ((long long)n_hc * d));
    int rem = (int)(i % ((long long)n_hc * d));
    int c = rem / d, j = rem % d;
    const float *pc = comb + (size_t)t * n_hc * n_hc;
    const float *ht = h + (size_t)t * n_hc * d;
    float acc = __fmul_rn(y[(size_t)t * d + j], post[t * n_hc + c]);
    for (int r = 0; r < n_hc; r++) acc = __fadd_rn(acc, __fmul_rn(pc[n_hc * r + c], ht[(size_t)r * d + j]));
    out[i] = acc;
}

// x[t][d] = Σ_h w[t][h] * H[t][h][d] in h order (model.md §5.2 step 9, §8).
extern "C" __global__ void hc_weighted_sum(const float *h, const float *w, int T, int n_hc, int d, float *x) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)T * d) return;
    int t = (int)(i / d), j = (int)(i % d);
    float acc = 0.0f;
    for (int k = 0; k < n_hc; k++)
        acc = __fadd_rn(acc, __fmul_rn(w[t * n_hc + k], h[((size_t)t * n_hc + k) * d + j]));
    x[i] = acc;
}

__device__ __forceinline__ float sigmoid_stable(float z) {
    if (z >= 0.0f) return __fdiv_rn(1.0f, __fadd_rn(1.0f, det_exp(-z)));
    float e = det_exp(z);
    return __fdiv_rn(e, __fadd_rn(1.0f, e));
}

// The output head's stream weights (model.md §8): sigmoid(m*scale + base) + eps.
extern "C" __global__ void hc_head_weights(const float *mix, int T, int n_hc, const float *scale,
                                           const float *base, float eps, float *w) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= T * n_hc) return;
    w[i] = __fadd_rn(sigmoid_stable(__fadd_rn(__fmul_rn(mix[i], scale[0]), base[i % n_hc])), eps);
}

// Router of token blockIdx.x (§7.1–7.3): scores sqrt(softplus(logit)); hash
// layers take their ids from `hash_table` at the token's row, others the
// top-k of score+bias by repeated warp argmax (ties to the lower index, as
// the CPU's stable insertion); weights from the unbiased scores,
// normalized with the 2^-14 floor, times `scale`. One warp per token;
// n_expert <= 32*16, k <= 64.
extern "C" __global__ void router(const float *logits, int n_expert, const float *bias, const int *hash_table,
                                  const int *tokens, int k, float scale, int *experts, float *weights) {
    int t = blockIdx.x;
    int lane = threadIdx.x;
    logits += (size_t)t * n_expert;
    experts += t * k;
    weights += t * k;
    const int *hash_ids = hash_table ? hash_table + (size_t)tokens[t] * k : 0;
    float s[16], sel[16];
    int per = (n_expert + WARP - 1) / WARP;
    for (int i = 0; i < per; i++) {
        int e = lane * per + i;
        if (e < n_expert) {
            float z = logits[e];
            s[i] = __fsqrt_rn(det_softplus(z));
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

// mid = (silu(min(g, c)) * clamp(u, -c, c)) * weight (model.md §7.4) over
// `slots` vectors of n; the weight is `weights[slot]` or, without them,
// `weight`. Stable sigmoid; clamp only when c > 1e-6.
extern "C" __global__ void swiglu(const float *g, const float *u, int n, int slots, float clamp_c,
                                  const float *weights, float weight, float *mid) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)n * slots) return;
    float a = g[i], b = u[i];
    if (clamp_c > 1e-6f) {
        a = fminf(a, clamp_c);
        b = fminf(fmaxf(b, -clamp_c), clamp_c);
    }
    float wt = weights ? weights[i / n] : weight;
    mid[i] = __fmul_rn(__fmul_rn(__fmul_rn(a, sigmoid_stable(a)), b), wt);
}

// out[t] = (0 + down[t][0] + ... + down[t][k-1]) + shared[t], the CPU's
// order (model.md §7.5).
extern "C" __global__ void moe_sum(const float *down, int T, int k, int d, const float *shared, float *out) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)T * d) return;
    int t = (int)(i / d), j = (int)(i % d);
    float acc = 0.0f;
    for (int s = 0; s < k; s++) acc = __fadd_rn(acc, down[((size_t)t * k + s) * d + j]);
    out[i] = __fadd_rn(acc, shared[i]);
}

// ---------------------------------------------------------------------------
// Attention state: compressors, the ring of raw rows, the indexer, attention.

// Feeds T tokens (positions pos0..) to a compressor (attention.md §8.3):
// their projections `kvp`/`scp` (T rows of `width`) enter the frontier
// `fkv`/`fsc`, the score plus the phase's `ape` row; each completed window is
// pooled, RMS-normalized with `norm_w`, rotated at its first position,
// rounded (qat 1: FP8 on dims [0, nope); qat 2: Hadamard + FP4) and, with
// `f16_rows`, rounded to f16, then stored at `rows_out` in emission order.
// One block of round_up(d, 32) threads walks the tokens in order.
extern "C" __global__ void compressor_scan(const float *kvp, const float *scp, int T, int pos0, int ratio, int d,
                                           int width, const float *ape, const float *norm_w, float eps,
                                           const float *inv_freq, int pairs, int qat, int nope, int f16_rows,
                                           float *fkv, float *fsc, float *rows_out) {
    __shared__ float buf[1024];
    __shared__ float hbuf[1024];
    int j = threadIdx.x, lane = j % WARP, warp = j / WARP, nw = blockDim.x / WARP;
    int emitted = 0;
    for (int t = 0; t < T; t++) {
        int pos = pos0 + t, phase = pos % ratio;
        int slot = ratio == 4 ? 4 + phase : phase;
        for (int i = j; i < width; i += blockDim.x) {
            fkv[(size_t)slot * width + i] = kvp[(size_t)t * width + i];
            fsc[(size_t)slot * width + i] = __fadd_rn(scp[(size_t)t * width + i], ape[(size_t)phase * width + i]);
        }
        __syncthreads();
        if ((pos + 1) % ratio != 0) continue;
        float v = j < d ? pool_channel(fkv, fsc, ratio, d, width, j) : 0.0f;
        double ss = block_sum_f64(__dmul_rn((double)v, (double)v));
        float mean = __double2float_rn(__ddiv_rn(ss, (double)d));
        float s = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(mean, eps)));
        if (j < d) buf[j] = __fmul_rn(__fmul_rn(v, s), norm_w[j]);
        __syncthreads();
        if (j < pairs) rope_pair(buf + d - 2 * pairs, j, inv_freq[j], pos + 1 - ratio, 0);
        __syncthreads();
        if (qat == 1) {
            for (int b = warp; b < nope / 64; b += nw) fp8_block(buf + 64 * b, lane);
            __syncthreads();
        } else if (qat == 2) {
            indexer_rt_block(buf, hbuf, d);
        }
        if (j < d) rows_out[(size_t)emitted * d + j] = f16_rows ? f16_rt(buf[j]) : buf[j];
        emitted++;
        if (ratio == 4) {
            for (int i = j; i < 4 * width; i += blockDim.x) {
                fkv[i] = fkv[i + 4 * width];
                fsc[i] = fsc[i + 4 * width];
            }
        }
        __syncthreads();
    }
}

// Stores the chunk's raw rows `cur` (T rows of hd at positions pos0..) in
// the ring of the last `window` positions, slot p % window.
extern "C" __global__ void ring_write(const float *cur, int T, int pos0, int window, int hd, float *ring) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)T * hd) return;
    int t = (int)(i / hd), j = (int)(i % hd);
    if (t < T - window) return;
    ring[(size_t)((pos0 + t) % window) * hd + j] = cur[i];
}

// Indexer scores (attention.md §10.2) of token blockIdx.y against its
// visible compressed rows c < (pos+1)/ratio: Σ_e (w_e*s) * relu(q_e · row_c),
// heads in order. One warp per row.
extern "C" __global__ void indexer_scores(const float *qi, const float *wts, const float *rows, int pos0,
                                          int ratio, int nh, int d, float s, int max_n, float *scores) {
    int t = blockIdx.y;
    int c = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    int n = (pos0 + t + 1) / ratio;
    if (c >= n || c >= max_n) return;
    const float *row = rows + (size_t)c * d;
    const float *q = qi + (size_t)t * nh * d;
    float acc = 0.0f;
    for (int e = 0; e < nh; e++) {
        float dot = 0.0f;
        for (int j = lane; j < d; j += WARP) dot = __fadd_rn(dot, __fmul_rn(q[(size_t)e * d + j], row[j]));
        dot = warp_sum(dot);
        acc = __fadd_rn(acc, __fmul_rn(__fmul_rn(wts[t * nh + e], s), fmaxf(dot, 0.0f)));
    }
    if (lane == 0) scores[(size_t)t * max_n + c] = acc;
}

// Block-wide int sum and exclusive prefix sum; blockDim.x a multiple of 32.
__device__ int block_sum_int(int v) {
    __shared__ int part[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    if (lane == 0) part[warp] = v;
    __syncthreads();
    int nw = blockDim.x / WARP;
    int r = 0;
    for (int i = 0; i < nw; i++) r += part[i];
    __syncthreads();
    return r;
}

__device__ int block_scan_excl(int v, int *total) {
    __shared__ int part[32];
    int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP, nw = blockDim.x / WARP;
    int incl = v;
    for (int o = 1; o < WARP; o <<= 1) {
        int n = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += n;
    }
    if (lane == WARP - 1) part[warp] = incl;
    __syncthreads();
    int before = 0, all = 0;
    for (int i = 0; i < nw; i++) {
        if (i < warp) before += part[i];
        all += part[i];
    }
    __syncthreads();
    *total = all;
    return before + incl - v;
}

// The order of f32::total_cmp as an unsigned key.
__device__ __forceinline__ uint32_t ord_key(float f) {
    uint32_t u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Top-k of token blockIdx.x's visible scores (attention.md §10.3): the k
// largest by total order, lower index first on ties, written in ascending
// index order; all visible rows when there are at most k. The k-th key is
// found bit by bit (32 counting passes), then one ordered compaction pass.
extern "C" __global__ void top_k(const float *scores, int pos0, int ratio, int max_n, int k, int *sel, int *n_sel) {
    int t = blockIdx.x;
    int n = min((pos0 + t + 1) / ratio, max_n);
    const float *sc = scores + (size_t)t * max_n;
    int *out = sel + (size_t)t * k;
    if (n <= k) {
        for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = i;
        if (threadIdx.x == 0) n_sel[t] = n;
        return;
    }
    uint32_t kth = 0;
    for (int bit = 31; bit >= 0; bit--) {
        uint32_t cand = kth | (1u << bit);
        int cnt = 0;
        for (int i = threadIdx.x; i < n; i += blockDim.x) cnt += ord_key(sc[i]) >= cand;
        if (block_sum_int(cnt) >= k) kth = cand;
    }
    int gt = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) gt += ord_key(sc[i]) > kth;
    int ties_needed = k - block_sum_int(gt);
    int base = 0, ties_seen = 0;
    for (int start = 0; start < n; start += blockDim.x) {
        int i = start + threadIdx.x;
        uint32_t key = i < n ? ord_key(sc[i]) : 0;
        int is_gt = i < n && key > kth;
        int is_tie = i < n && key == kth;
        int tie_total;
        int tie_rank = ties_seen + block_scan_excl(is_tie, &tie_total);
        int take = is_gt || (is_tie && tie_rank < ties_needed);
        int take_total;
        int off = block_scan_excl(take, &take_total);
        if (take) out[base + off] = i;
        base += take_total;
        ties_seen += tie_total;
    }
    if (threadIdx.x == 0) n_sel[t] = k;
}

// Sink attention (attention.md §9) of head blockIdx.x of token blockIdx.y
// at position pos0 + t. Keys (also the values), in the CPU's order: the raw
// rows of positions max(0, pos-window+1)..pos (from this chunk's `cur` rows,
// or from the ring for earlier positions), then the compressed rows: the
// token's selection `sel` (n_sel[t] rows) when given, else every visible row
// c < (pos+1)/ratio (none when ratio is 0). Scores and their exponentials
// live in dynamic shared memory.
extern "C" __global__ void attention(const float *q, const float *cur, const float *ring, int window,
                                     const float *comp, int ratio, const int *sel, const int *n_sel, int sel_k,
                                     int pos0, int hd, const float *sinks, float scale, float *out) {
    extern __shared__ float sc[];
    int head = blockIdx.x, t = blockIdx.y, nh = gridDim.x;
    int pos = pos0 + t;
    int first = max(0, pos - window + 1);
    int n_raw = pos - first + 1;
    int n_comp = sel ? n_sel[t] : (ratio ? (pos + 1) / ratio : 0);
    int n_keys = n_raw + n_comp;
    const int *st = sel ? sel + (size_t)t * sel_k : 0;
    const float *qh = q + ((size_t)t * nh + head) * hd;
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP, nw = blockDim.x / WARP;
#define KEY_ROW(kk)                                                                                      \
    ((kk) < n_raw ? (first + (kk) >= pos0 ? cur + (size_t)(first + (kk) - pos0) * hd                     \
                                          : ring + (size_t)((first + (kk)) % window) * hd)               \
                  : comp + (size_t)(st ? st[(kk) - n_raw] : (kk) - n_raw) * hd)
    for (int k = warp; k < n_keys; k += nw) {
        const float *key = KEY_ROW(k);
        float acc = 0.0f;
        for (int j = lane; j < hd; j += WARP) acc = __fadd_rn(acc, __fmul_rn(qh[j], key[j]));
        acc = warp_sum(acc);
        if (lane == 0) sc[k] = __fmul_rn(acc, scale);
    }
    __syncthreads();
    float sink = sinks[head];
    float m = sink;
    for (int k = 0; k < n_keys; k++) m = fmaxf(m, sc[k]);
    __syncthreads();
    for (int k = threadIdx.x; k < n_keys; k += blockDim.x) sc[k] = det_exp(__fsub_rn(sc[k], m));
    __syncthreads();
    float den = det_exp(__fsub_rn(sink, m));
    for (int k = 0; k < n_keys; k++) den = __fadd_rn(den, sc[k]);
    float inv = __fdiv_rn(1.0f, den);
    for (int j = threadIdx.x; j < hd; j += blockDim.x) {
        float acc = 0.0f;
        for (int k = 0; k < n_keys; k++) acc = __fadd_rn(acc, __fmul_rn(sc[k], KEY_ROW(k)[j]));
        out[((size_t)t * nh + head) * hd + j] = __fmul_rn(acc, inv);
    }
#undef KEY_ROW
}

// The first index of the largest of x[0, n): NaN never chosen, the lowest
// index on ties, 0 when nothing beats -inf (sampling::argmax); *best gets
// that value (-inf then). Every thread of the block gets both.
__device__ int block_argmax(const float *x, int n, float *best) {
    __shared__ float part_v[32];
    __shared__ int part_i[32];
    float bv = -INFINITY;
    int bi = n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        if (x[i] > bv) {
            bv = x[i];
            bi = i;
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ov > bv || (ov == bv && oi < bi)) {
            bv = ov;
            bi = oi;
        }
    }
    if (threadIdx.x % WARP == 0) {
        part_v[threadIdx.x / WARP] = bv;
        part_i[threadIdx.x / WARP] = bi;
    }
    __syncthreads();
    bv = -INFINITY;
    bi = n;
    for (int w = 0; w < (int)(blockDim.x / WARP); w++) {
        if (part_v[w] > bv || (part_v[w] == bv && part_i[w] < bi)) {
            bv = part_v[w];
            bi = part_i[w];
        }
    }
    __syncthreads();
    *best = bv;
    return bi < n ? bi : 0;
}

// The greedy token of a row of logits (block_argmax). One block.
extern "C" __global__ void argmax(const float *x, int n, int *out) {
    float best;
    int i = block_argmax(x, n, &best);
    if (threadIdx.x == 0) *out = i;
}

// ---------------------------------------------------------------------------
// Batched matrix products that reuse each weight block across slots.
//
// They compute exactly what the slot kernels above compute for every slot
// (the same integer block sums, the same float terms added in the same
// lane order, the same warp sum), so results do not depend on which kernel
// ran: they only load and decode each weight block once for up to TILE
// slots, and do the integer dot products four bytes at a time (dp4a).

#define TILE 8
#define TILE_Q8 16

// Q8_0 weights shared by every slot (a chunk of tokens, or one output
// group of them): slots blockIdx.x*TILE_Q8 .. +TILE_Q8 of `count`, the
// activation of slot s at s*a_stride (a multiple of 32), its output at
// y + s*y_stride.
extern "C" __global__ void mm_q8_0_tiles(const uint8_t *w, int rows, int cols, const int8_t *qs,
                                         const float *scales, int count, int a_stride, int y_stride, float *y) {
    // Each warp stages 32 consecutive blocks (1088 bytes) of its row with
    // coalesced 4-byte loads, then lane l reads block l from shared memory:
    // the same blocks per lane as a strided loop, so the same sums.
    __shared__ uint32_t stage[8][32 * 34 / 4];
    int warp = threadIdx.x / WARP;
    int row = blockIdx.y * (blockDim.x / WARP) + warp;
    int lane = threadIdx.x % WARP;
    if (row >= rows) return;
    int nb = cols / 32;
    int s0 = blockIdx.x * TILE_Q8;
    int ns = min(TILE_Q8, count - s0);
    const uint8_t *wr = w + (size_t)row * nb * 34;
    // Rows of an even block count start 4-byte aligned (34 * 2 = 68).
    bool staged = nb % 2 == 0;
    float acc[TILE_Q8];
#pragma unroll
    for (int i = 0; i < TILE_Q8; i++) acc[i] = 0.0f;
    for (int b0 = 0; b0 < nb; b0 += WARP) {
        int b = b0 + lane;
        int nblk = min(WARP, nb - b0);
        const uint8_t *blk = wr + (size_t)b * 34;
        if (staged) {
            const uint32_t *span = (const uint32_t *)(wr + (size_t)b0 * 34);
            for (int i = lane; i < nblk * 34 / 4; i += WARP) stage[warp][i] = span[i];
            __syncwarp();
            blk = (const uint8_t *)stage[warp] + lane * 34;
        }
        if (lane < nblk) {
            int wv[8];
#pragma unroll
            for (int j = 0; j < 8; j++) wv[j] = pack4(blk + 2 + 4 * j);
            float wd = f16_at(blk);
#pragma unroll
            for (int i = 0; i < TILE_Q8; i++) {
                if (i < ns) {
                    long long a0 = (long long)(s0 + i) * a_stride + (long long)b * 32;
                    const int *a = (const int *)(qs + a0);
                    int isum = 0;
#pragma unroll
                    for (int j = 0; j < 8; j++) isum = __dp4a(wv[j], a[j], isum);
                    acc[i] = __fadd_rn(acc[i], __fmul_rn(__fmul_rn(wd, scales[a0 / 32]), (float)isum));
                }
            }
        }
        __syncwarp();
    }
#pragma unroll
    for (int i = 0; i < TILE_Q8; i++) {
        float v = warp_sum(acc[i]);
        if (lane == 0 && i < ns) y[(long long)(s0 + i) * y_stride + row] = v;
    }
}

// Groups the (token, expert) slots by expert: `order` lists the slots of
// expert 0, then of expert 1, ... (each in slot order, so the grouping is
// deterministic), `offsets` has n_expert + 1 bounds. One thread (the slot
// count is a chunk's tokens times k); n_expert <= 512.
extern "C" __global__ void moe_group(const int *experts, int n, int n_expert, int *offsets, int *order) {
    __shared__ int cursor[513];
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    for (int e = 0; e <= n_expert; e++) cursor[e] = 0;
    for (int s = 0; s < n; s++) cursor[experts[s] + 1]++;
    for (int e = 0; e < n_expert; e++) cursor[e + 1] += cursor[e];
    for (int e = 0; e <= n_expert; e++) offsets[e] = cursor[e];
    for (int s = 0; s < n; s++) order[cursor[experts[s]]++] = s;
}

// The expert-grouped walk shared by the IQ2_XXS and Q2_K kernels: one block
// per (expert, 8 rows), a row per warp, that expert's slots TILE at a time;
// lane l decodes its weight blocks l, l+32, ... to int8 once per tile
// (`Dec::decode`) and adds each slot's block term (`Dec::term`) in lane
// order, so the sums are the slot kernels'; `Dec::finish` scales the warp's
// sum. `Dec::BYTES` is the block size.
template <typename Dec>
__device__ void mm_grouped(const uint8_t *w, long long w_stride, const int *offsets, const int *order, int rows,
                           int cols, const block_q8_K *act, int act_div, int act_stride, const Dec &dec,
                           float *y) {
    int e = blockIdx.x;
    int row = blockIdx.y * (blockDim.x / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    int first = offsets[e], n = offsets[e + 1] - first;
    if (row >= rows || n == 0) return;
    int nb = cols / 256;
    const uint8_t *wr = w + (long long)e * w_stride + (size_t)row * nb * Dec::BYTES;
    for (int c0 = 0; c0 < n; c0 += TILE) {
        int ns = min(TILE, n - c0);
        float acc[TILE];
#pragma unroll
        for (int i = 0; i < TILE; i++) acc[i] = 0.0f;
        for (int b = lane; b < nb; b += WARP) {
            typename Dec::Block blk;
            dec.decode(wr + (size_t)b * Dec::BYTES, blk);
#pragma unroll
            for (int i = 0; i < TILE; i++) {
                if (i < ns) {
                    int s = order[first + c0 + i];
                    const block_q8_K *a = act + ((long long)(s / act_div) * act_stride) / 256 + b;
                    acc[i] = __fadd_rn(acc[i], dec.term(blk, a));
                }
            }
        }
#pragma unroll
        for (int i = 0; i < TILE; i++) {
            float v = warp_sum(acc[i]);
            if (lane == 0 && i < ns) y[(long long)order[first + c0 + i] * rows + row] = dec.finish(v);
        }
    }
}

// IQ2_XXS blocks for mm_grouped: the term d*d_a*bsum of §5.6, the 1/8 of
// (2ls+1)/8 applied once to the sum.
struct Iq2Dec {
    static constexpr int BYTES = 66;
    const uint64_t *grid;
    struct Block {
        int wv[64];
        int ls[8];
        float wd;
    };
    __device__ void decode(const uint8_t *x, Block &blk) const {
#pragma unroll
        for (int g = 0; g < 8; g++) blk.ls[g] = iq2_group(x, g, grid, blk.wv + 8 * g);
        blk.wd = f16_at(x);
    }
    __device__ float term(const Block &blk, const block_q8_K *a) const {
        const int *aq = (const int *)a->qs;
        int bsum = 0;
#pragma unroll
        for (int g = 0; g < 8; g++) {
            int sumi = 0;
#pragma unroll
            for (int j = 0; j < 8; j++) sumi = __dp4a(blk.wv[8 * g + j], aq[8 * g + j], sumi);
            bsum += sumi * blk.ls[g];
        }
        return __fmul_rn(__fmul_rn(blk.wd, a->d), (float)bsum);
    }
    __device__ float finish(float v) const { return __fmul_rn(0.125f, v); }
};

// Q2_K blocks for mm_grouped: the term dall*isum - dmin*summs of §5.4
// (sub-block s covers values 16s..16s+15).
struct Q2kDec {
    static constexpr int BYTES = 84;
    struct Block {
        int wv[64];
        const uint8_t *scales;
        float dall_w, dmin_w;
    };
    __device__ void decode(const uint8_t *x, Block &blk) const {
#pragma unroll
        for (int sb = 0; sb < 16; sb++) q2k_sub(x + 16, sb, blk.wv + 4 * sb);
        blk.scales = x;
        blk.dall_w = f16_at(x + 80);
        blk.dmin_w = f16_at(x + 82);
    }
    __device__ float term(const Block &blk, const block_q8_K *a) const {
        const int *aq = (const int *)a->qs;
        int summs = 0;
        for (int j = 0; j < 16; j++) summs += (int)a->bsums[j] * (int)(blk.scales[j] >> 4);
        int isum = 0;
#pragma unroll
        for (int sb = 0; sb < 16; sb++) {
            int sub = 0;
#pragma unroll
            for (int q = 0; q < 4; q++) sub = __dp4a(blk.wv[4 * sb + q], aq[4 * sb + q], sub);
            isum += (int)(blk.scales[sb] & 15) * sub;
        }
        float dall = __fmul_rn(a->d, blk.dall_w);
        float dmin = __fmul_rn(a->d, blk.dmin_w);
        return __fsub_rn(__fmul_rn(dall, (float)isum), __fmul_rn(dmin, (float)summs));
    }
    __device__ float finish(float v) const { return v; }
};

extern "C" __global__ void mm_iq2_xxs_grouped(const uint8_t *w, long long w_stride, const int *offsets,
                                              const int *order, int rows, int cols, const block_q8_K *act,
                                              int act_div, int act_stride, const uint64_t *grid, float *y) {
    mm_grouped(w, w_stride, offsets, order, rows, cols, act, act_div, act_stride, Iq2Dec{grid}, y);
}

extern "C" __global__ void mm_q2_k_grouped(const uint8_t *w, long long w_stride, const int *offsets,
                                           const int *order, int rows, int cols, const block_q8_K *act,
                                           int act_div, int act_stride, float *y) {
    mm_grouped(w, w_stride, offsets, order, rows, cols, act, act_div, act_stride, Q2kDec{}, y);
}
