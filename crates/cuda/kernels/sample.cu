// Kernels that choose the next token on the device (engine::sampler's
// rules), so only the chosen id crosses the bus. Included by ds4.cu.
//
// The definition is the `sampling` crate (crates/sampling/src/lib.rs):
// drop NaN; top-k keeps the k largest by (f32::total_cmp descending, lower
// id first); weights w = exp(l/T - max l/T) in f64; min-p keeps w >= min_p;
// the kept tokens in that order; top-p cuts after the first prefix whose
// running sum reaches top_p * (sum of w over the top-k set); the draw is the
// first kept token whose running sum exceeds unit * (sum of the kept); when
// nothing is kept, the argmax. Each step here computes the same f64
// operations: the weights with the same rounded divide and subtract (exp
// may differ from the host's libm in the last bit), the running sums
// sequentially in the kept order as the host does, so the host's and the
// device's sums differ only by those last bits, and the top-k set's total by
// its summation order (the host's is the order `select_nth_unstable`
// leaves). A draw can land on another token only when `unit` falls within
// such a rounding of a boundary between two kept tokens.
//
// One block of SMP_THREADS threads per call (a decode step samples one
// position). Every reduction has a fixed order, so a call is deterministic.
// The kept set is found without sorting the vocabulary: top-k by a radix
// select of the k-th largest key, min-p by its own test; only the kept
// tokens are sorted (in shared memory up to SMP_TILE of them, tile by tile
// with the longer strides in global memory beyond).

#define SMP_THREADS 1024
#define SMP_WARPS (SMP_THREADS / WARP)
#define SMP_TILE 4096

typedef unsigned long long smp_u64;

struct SmpShared {
    smp_u64 tile[SMP_TILE];
    double wbuf[SMP_THREADS];
    unsigned hist[257];
    smp_u64 part_u64[SMP_WARPS];
    double part_f64[SMP_WARPS];
    float part_f32[SMP_WARPS];
    int part_int[SMP_WARPS];
    int count;
    int digit;
    unsigned rem;
    unsigned cnt;
    smp_u64 found;
    int cut;
    double run;
};

// Sort key of value v at index i: f32::total_cmp's order of v in the high
// half, the complement of i in the low half, so a larger key comes first in
// the sampler's order (value descending, lower id first on ties). Keys of
// distinct tokens differ and none is 0, which pads sorts and marks excluded
// tokens.
__device__ __forceinline__ smp_u64 smp_key(float v, int i) {
    return ((smp_u64)ord_key(v) << 32) | (smp_u64)(0xffffffffu - (uint32_t)i);
}

__device__ __forceinline__ int smp_id(smp_u64 key) { return (int)(0xffffffffu - (uint32_t)(key & 0xffffffffu)); }

// The key of x[i]; with skip_nan a NaN's key is 0 (the sampler never keeps
// NaN, while top_logits ranks it by its bits as f32::total_cmp does).
__device__ __forceinline__ smp_u64 smp_key_at(const float *x, int i, bool skip_nan) {
    float v = x[i];
    return (skip_nan && isnan(v)) ? 0ull : smp_key(v, i);
}

// A candidate's weight relative to the most probable: exp(l/T - zmax), the
// divide and subtract rounded as the host's f64 operations.
__device__ __forceinline__ double smp_weight(float l, double t, double zmax) {
    return exp(__dsub_rn(__ddiv_rn((double)l, t), zmax));
}

// Block sums and extremes: a butterfly inside each warp (every lane ends
// with the same value), then the warps' results in warp order.
__device__ double smp_sum_f64(double v, SmpShared &sh) {
    for (int o = 16; o > 0; o >>= 1) v = __dadd_rn(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (threadIdx.x % WARP == 0) sh.part_f64[threadIdx.x / WARP] = v;
    __syncthreads();
    double r = 0.0;
    for (int w = 0; w < (int)(blockDim.x / WARP); w++) r = __dadd_rn(r, sh.part_f64[w]);
    __syncthreads();
    return r;
}

__device__ int smp_min_int(int v, SmpShared &sh) {
    for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (threadIdx.x % WARP == 0) sh.part_int[threadIdx.x / WARP] = v;
    __syncthreads();
    int r = v;
    for (int w = 0; w < (int)(blockDim.x / WARP); w++) r = min(r, sh.part_int[w]);
    __syncthreads();
    return r;
}

// The largest value ignoring NaN (f32::max's fold from -inf).
__device__ float smp_max_f32(float v, SmpShared &sh) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (threadIdx.x % WARP == 0) sh.part_f32[threadIdx.x / WARP] = v;
    __syncthreads();
    float r = -INFINITY;
    for (int w = 0; w < (int)(blockDim.x / WARP); w++) r = fmaxf(r, sh.part_f32[w]);
    __syncthreads();
    return r;
}

// The k-th largest (k >= 1) key of x[0, n) (smp_key_at), k at most the
// number of nonzero keys. Radix select from the top, 8 bits a pass: a
// histogram of the keys that share the digits chosen so far (lanes with the
// same digit add once, so hot digits do not serialize), then the digit
// holding the k-th. Once a single key shares the digits, one pass fetches
// it. Counts are integers, so the result does not depend on timing.
__device__ smp_u64 smp_select(const float *x, int n, bool skip_nan, unsigned k, SmpShared &sh) {
    int lane = threadIdx.x % WARP;
    smp_u64 prefix = 0, mask = 0;
    for (int shift = 56; shift >= 0; shift -= 8) {
        for (int i = threadIdx.x; i < 257; i += blockDim.x) sh.hist[i] = 0;
        __syncthreads();
        for (int base = 0; base < n; base += blockDim.x) {
            int i = base + threadIdx.x;
            int bin = 256;
            if (i < n) {
                smp_u64 key = smp_key_at(x, i, skip_nan);
                if ((key & mask) == prefix) bin = (int)((key >> shift) & 0xff);
            }
            unsigned peers = __match_any_sync(0xffffffffu, bin);
            if (bin < 256 && lane == __ffs(peers) - 1) atomicAdd(&sh.hist[bin], (unsigned)__popc(peers));
        }
        __syncthreads();
        if (threadIdx.x < WARP) {
            // Lane l holds digits 255-8l down to 248-8l; a scan over the
            // lanes counts the keys in the digits above each lane's.
            unsigned c[8], s = 0;
            for (int j = 0; j < 8; j++) {
                c[j] = sh.hist[255 - 8 * lane - j];
                s += c[j];
            }
            unsigned incl = s;
            for (int o = 1; o < WARP; o <<= 1) {
                unsigned v = __shfl_up_sync(0xffffffffu, incl, o);
                if (lane >= o) incl += v;
            }
            unsigned owner = __ballot_sync(0xffffffffu, incl >= k);
            if (lane == __ffs(owner) - 1) {
                unsigned r = k - (incl - s);
                for (int j = 0; j < 8; j++) {
                    if (r <= c[j]) {
                        sh.digit = 255 - 8 * lane - j;
                        sh.rem = r;
                        sh.cnt = c[j];
                        break;
                    }
                    r -= c[j];
                }
            }
        }
        __syncthreads();
        prefix |= (smp_u64)sh.digit << shift;
        mask |= 0xffull << shift;
        k = sh.rem;
        unsigned cnt = sh.cnt;
        __syncthreads();
        if (cnt == 1) {
            for (int i = threadIdx.x; i < n; i += blockDim.x) {
                smp_u64 key = smp_key_at(x, i, skip_nan);
                if ((key & mask) == prefix) sh.found = key;
            }
            __syncthreads();
            smp_u64 found = sh.found;
            __syncthreads();
            return found;
        }
    }
    return prefix;
}

// Appends `key` to out when `take`, at a slot counted in sh.count (one
// atomic per warp). Every thread of the block calls it the same number of
// times; the order of the appended keys is arbitrary (they are sorted next).
__device__ __forceinline__ void smp_append(smp_u64 *out, bool take, smp_u64 key, SmpShared &sh) {
    unsigned lane = threadIdx.x % WARP;
    unsigned b = __ballot_sync(0xffffffffu, take);
    int base = 0;
    if (lane == 0 && b) base = atomicAdd(&sh.count, __popc(b));
    base = __shfl_sync(0xffffffffu, base, 0);
    if (take) out[base + __popc(b & ((1u << lane) - 1u))] = key;
}

// One compare-exchange of the bitonic network sorting descending: where
// the pair's block of `size` has the size bit of its global index clear the
// larger key goes first, elsewhere the smaller.
__device__ __forceinline__ void smp_cx(smp_u64 *a, int lo, int hi, bool larger_first) {
    smp_u64 p = a[lo], q = a[hi];
    if ((p < q) == larger_first && p != q) {
        a[lo] = q;
        a[hi] = p;
    }
}

// The network's passes for block sizes size_lo..size_hi on `len` keys in
// shared memory that start at global index g0, strides below len only.
__device__ void smp_tile_passes(smp_u64 *t, int len, int g0, int size_lo, int size_hi) {
    for (int size = size_lo; size <= size_hi; size <<= 1) {
        for (int stride = min(size, len) / 2; stride > 0; stride >>= 1) {
            for (int p = threadIdx.x; p < len / 2; p += blockDim.x) {
                int lo = 2 * stride * (p / stride) + p % stride;
                smp_cx(t, lo, lo + stride, ((g0 + lo) & size) == 0);
            }
            __syncthreads();
        }
    }
}

// Sorts keys[0, m) descending with a bitonic network over the next power of
// two p (`keys` holds p values; the zero padding sorts last). Up to
// SMP_TILE keys sort in shared memory in one go; beyond, each tile sorts
// in shared memory, then every merge runs its strides of SMP_TILE and more
// in global memory and the shorter ones tile by tile.
__device__ void smp_sort(smp_u64 *keys, int m, SmpShared &sh) {
    int p = 1;
    while (p < m) p <<= 1;
    int len = min(p, SMP_TILE);
    for (int g0 = 0; g0 < p; g0 += len) {
        for (int i = threadIdx.x; i < len; i += blockDim.x) sh.tile[i] = g0 + i < m ? keys[g0 + i] : 0ull;
        __syncthreads();
        smp_tile_passes(sh.tile, len, g0, 2, len);
        for (int i = threadIdx.x; i < len; i += blockDim.x) keys[g0 + i] = sh.tile[i];
        __syncthreads();
    }
    for (int size = 2 * SMP_TILE; size <= p; size <<= 1) {
        for (int stride = size / 2; stride >= SMP_TILE; stride >>= 1) {
            for (int q = threadIdx.x; q < p / 2; q += blockDim.x) {
                int lo = 2 * stride * (q / stride) + q % stride;
                smp_cx(keys, lo, lo + stride, (lo & size) == 0);
            }
            __syncthreads();
        }
        for (int g0 = 0; g0 < p; g0 += SMP_TILE) {
            for (int i = threadIdx.x; i < SMP_TILE; i += blockDim.x) sh.tile[i] = keys[g0 + i];
            __syncthreads();
            smp_tile_passes(sh.tile, SMP_TILE, g0, size, size);
            for (int i = threadIdx.x; i < SMP_TILE; i += blockDim.x) keys[g0 + i] = sh.tile[i];
            __syncthreads();
        }
    }
}

// sampling::pick of a draw from x[0, n) at `unit` in [0, 1), temperature
// > 0 (greedy picks use `argmax`), top_k 0 or below n. Scratch: keys holds
// the next power of two >= n values, cums n. Writes the token to *out. One
// block of SMP_THREADS.
extern "C" __global__ void sample(const float *x, int n, float temperature, int top_k, float top_p, float min_p,
                                  double unit, smp_u64 *keys, double *cums, int *out) {
    __shared__ SmpShared sh;
    float lmax;
    int amax = block_argmax(x, n, &lmax);
    int valid = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) valid += !isnan(x[i]);
    valid = block_sum_int(valid);
    // The top-k set: keys >= ck (every non-NaN key without top-k).
    smp_u64 ck = 1;
    if (top_k > 0 && top_k < valid) ck = smp_select(x, n, true, (unsigned)top_k, sh);
    double t = (double)temperature;
    double zmax = __ddiv_rn((double)lmax, t);
    double min_w = (double)min_p;

    // Weights over the top-k set (their sum is top-p's reference) and the
    // min-p survivors gathered into keys.
    if (threadIdx.x == 0) sh.count = 0;
    __syncthreads();
    double part = 0.0;
    for (int base = 0; base < n; base += blockDim.x) {
        int i = base + threadIdx.x;
        bool take = false;
        smp_u64 key = 0;
        if (i < n) {
            key = smp_key_at(x, i, true);
            if (key >= ck) {
                double w = smp_weight(x[i], t, zmax);
                part = __dadd_rn(part, w);
                take = w >= min_w;
            }
        }
        smp_append(keys, take, key, sh);
    }
    double denom = smp_sum_f64(part, sh);
    int m = sh.count;
    if (m == 0) {
        if (threadIdx.x == 0) *out = amax;
        return;
    }
    smp_sort(keys, m, sh);

    // Running sums in the kept order (one thread, as the host adds them),
    // stopping at top-p's cut.
    bool use_p = top_p < 1.0f;
    double target = __dmul_rn((double)top_p, denom);
    if (threadIdx.x == 0) {
        sh.cut = m;
        sh.run = 0.0;
    }
    __syncthreads();
    for (int c0 = 0; c0 < m; c0 += blockDim.x) {
        if (sh.cut < m) break;
        int j = c0 + threadIdx.x;
        sh.wbuf[threadIdx.x] = j < m ? smp_weight(x[smp_id(keys[j])], t, zmax) : 0.0;
        __syncthreads();
        if (threadIdx.x == 0) {
            double c = sh.run;
            int len = min((int)blockDim.x, m - c0);
            for (int q = 0; q < len; q++) {
                c = __dadd_rn(c, sh.wbuf[q]);
                cums[c0 + q] = c;
                if (use_p && c >= target) {
                    sh.cut = c0 + q + 1;
                    break;
                }
            }
            sh.run = c;
        }
        __syncthreads();
    }
    int kept = sh.cut;
    double u = __dmul_rn(unit, cums[kept - 1]);
    int first = kept;
    for (int j = threadIdx.x; j < kept; j += blockDim.x) {
        if (u < cums[j]) {
            first = j;
            break;
        }
    }
    first = smp_min_int(first, sh);
    if (threadIdx.x == 0) *out = smp_id(keys[first < kept ? first : kept - 1]);
}

// sampling::top_logits of x[0, n): lse_tok[0] = ln Σ exp(x) (the max in
// f32, the sum of exp(x - max) in f64), lse_tok[1] = x[token] (token >= 0),
// and the k (<= n) largest by f32::total_cmp, lower id first on ties, into
// ids/vals, most probable first. Scratch: keys holds the next power of two
// >= k values. One block of SMP_THREADS.
extern "C" __global__ void top_logits(const float *x, int n, int token, int k, smp_u64 *keys, int *ids,
                                      float *vals, float *lse_tok) {
    __shared__ SmpShared sh;
    float m = -INFINITY;
    for (int i = threadIdx.x; i < n; i += blockDim.x) m = fmaxf(m, x[i]);
    m = smp_max_f32(m, sh);
    float lse = m;
    if (isfinite(m)) {
        double s = 0.0;
        for (int i = threadIdx.x; i < n; i += blockDim.x) s = __dadd_rn(s, exp((double)__fsub_rn(x[i], m)));
        s = smp_sum_f64(s, sh);
        lse = __fadd_rn(m, (float)log(s));
    }
    if (threadIdx.x == 0) {
        lse_tok[0] = lse;
        lse_tok[1] = token >= 0 ? x[token] : 0.0f;
    }
    if (k <= 0) return;
    smp_u64 ck = k < n ? smp_select(x, n, false, (unsigned)k, sh) : 1ull;
    if (threadIdx.x == 0) sh.count = 0;
    __syncthreads();
    for (int base = 0; base < n; base += blockDim.x) {
        int i = base + threadIdx.x;
        smp_u64 key = i < n ? smp_key(x[i], i) : 0ull;
        smp_append(keys, i < n && key >= ck, key, sh);
    }
    __syncthreads();
    int got = sh.count;
    smp_sort(keys, got, sh);
    for (int j = threadIdx.x; j < got; j += blockDim.x) {
        int id = smp_id(keys[j]);
        ids[j] = id;
        vals[j] = x[id];
    }
}
