// The transcendental functions and the f64 block sum of the forward pass,
// operation for operation those of the CPU (`model::math`,
// `gguf::order::block_sum`), so both backends produce the same bits: only
// correctly rounded IEEE operations (the _rn intrinsics, which nvcc never
// contracts into FMAs), constants given by their bits. Included by ds4.cu.

// Block-wide f64 sum in the block order of gguf::order (each warp's
// butterfly, then a butterfly of the warps' sums padded with zeros);
// blockDim.x a multiple of 32.
__device__ double block_sum_f64(double v) {
    __shared__ double part[32];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = __dadd_rn(v, __shfl_xor_sync(0xffffffffu, v, o));
    int warp = threadIdx.x / WARP, lane = threadIdx.x % WARP;
    if (lane == 0) part[warp] = v;
    __syncthreads();
    int nw = blockDim.x / WARP;
    v = lane < nw ? part[lane] : 0.0;
    if (warp == 0) {
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v = __dadd_rn(v, __shfl_xor_sync(0xffffffffu, v, o));
    }
    if (threadIdx.x == 0) part[0] = v;
    __syncthreads();
    double r = part[0];
    __syncthreads();
    return r;
}

// 2^e for e in [-126, 127], exactly.
__device__ __forceinline__ float pow2i(int e) { return __uint_as_float((uint32_t)(e + 127) << 23); }

// model::math::exp.
__device__ float det_exp(float x) {
    const float LOG2E = __uint_as_float(0x3fb8aa3bu);
    const float LN2_HI = __uint_as_float(0x3f317200u);
    const float LN2_LO = __uint_as_float(0x35bfbe8eu);
    const float C[8] = {1.0f,
                        1.0f,
                        0.5f,
                        __uint_as_float(0x3e2aaaabu),
                        __uint_as_float(0x3d2aaaabu),
                        __uint_as_float(0x3c088889u),
                        __uint_as_float(0x3ab60b61u),
                        __uint_as_float(0x39500d01u)};
    if (x != x) return x;
    if (x > __uint_as_float(0x42b1999au)) return INFINITY;
    if (x < -104.0f) return 0.0f;
    float n = rintf(__fmul_rn(x, LOG2E));
    float r = __fsub_rn(__fsub_rn(x, __fmul_rn(n, LN2_HI)), __fmul_rn(n, LN2_LO));
    float p = C[7];
#pragma unroll
    for (int i = 6; i >= 0; i--) p = __fadd_rn(__fmul_rn(p, r), C[i]);
    int ni = (int)n;
    int n1 = ni / 2;
    return __fmul_rn(__fmul_rn(p, pow2i(n1)), pow2i(ni - n1));
}

// model::math::ln (u >= 1, finite).
__device__ float det_ln(float u) {
    const float LN2_HI = __uint_as_float(0x3f317200u);
    const float LN2_LO = __uint_as_float(0x35bfbe8eu);
    uint32_t bits = __float_as_uint(u);
    int e = (int)((bits >> 23) & 0xff) - 127;
    float m = __uint_as_float((bits & 0x007fffffu) | 0x3f800000u);
    if (m > __uint_as_float(0x3fb504f3u)) {
        m = __fmul_rn(m, 0.5f);
        e += 1;
    }
    float f = __fsub_rn(m, 1.0f);
    float s = __fdiv_rn(f, __fadd_rn(2.0f, f));
    float z = __fmul_rn(s, s);
    float r = __uint_as_float(0x3e3a2e8cu);                  // 2/11
    r = __fadd_rn(__fmul_rn(r, z), __uint_as_float(0x3e638e39u)); // 2/9
    r = __fadd_rn(__fmul_rn(r, z), __uint_as_float(0x3e924925u)); // 2/7
    r = __fadd_rn(__fmul_rn(r, z), __uint_as_float(0x3ecccccdu)); // 2/5
    r = __fadd_rn(__fmul_rn(r, z), __uint_as_float(0x3f2aaaabu)); // 2/3
    r = __fmul_rn(z, r);
    float hfsq = __fmul_rn(__fmul_rn(0.5f, f), f);
    float ln_m = __fsub_rn(f, __fsub_rn(hfsq, __fmul_rn(s, __fadd_rn(hfsq, r))));
    float ef = (float)e;
    return __fadd_rn(__fmul_rn(ef, LN2_HI), __fadd_rn(ln_m, __fmul_rn(ef, LN2_LO)));
}

// model::math::softplus.
__device__ float det_softplus(float z) {
    if (z > 20.0f) return z;
    float y = det_exp(z);
    if (z < -20.0f) return y;
    float u = __fadd_rn(1.0f, y);
    if (u == 1.0f) return y;
    return __fmul_rn(det_ln(u), __fdiv_rn(y, __fsub_rn(u, 1.0f)));
}

// model::math::sin_cos.
__device__ void det_sincos(float theta, float *sin_out, float *cos_out) {
    if (!isfinite(theta)) {
        *sin_out = NAN;
        *cos_out = NAN;
        return;
    }
    const double TWO_OVER_PI = __longlong_as_double(0x3fe45f306dc9c883LL);
    const double PIO2_1 = __longlong_as_double(0x3ff921fb54400000LL);
    const double PIO2_2 = __longlong_as_double(0x3dd0b4611a600000LL);
    const double PIO2_3 = __longlong_as_double(0x3ba3198a2e037073LL);
    const long long SC[7] = {(long long)0xbfc5555555555555ULL, 0x3f81111111111111LL, (long long)0xbf2a01a01a01a01aULL,
                             0x3ec71de3a556c734LL, (long long)0xbe5ae64567f544e4ULL, 0x3de6124613a86d09LL,
                             (long long)0xbd6ae7f3e733b81fULL};
    const long long CC[8] = {(long long)0xbfe0000000000000ULL, 0x3fa5555555555555LL,
                             (long long)0xbf56c16c16c16c17ULL, 0x3efa01a01a01a01aLL,
                             (long long)0xbe927e4fb7789f5cULL, 0x3e21eed8eff8d898LL,
                             (long long)0xbda93974a8c07c9dULL, 0x3d2ae7f3e733b81fLL};
    double t = (double)theta;
    double k = rint(__dmul_rn(t, TWO_OVER_PI));
    double r = __dsub_rn(__dsub_rn(__dsub_rn(t, __dmul_rn(k, PIO2_1)), __dmul_rn(k, PIO2_2)), __dmul_rn(k, PIO2_3));
    double r2 = __dmul_rn(r, r);
    double ps = __longlong_as_double(SC[6]);
#pragma unroll
    for (int i = 5; i >= 0; i--) ps = __dadd_rn(__dmul_rn(ps, r2), __longlong_as_double(SC[i]));
    double sin_r = __dadd_rn(r, __dmul_rn(__dmul_rn(r, r2), ps));
    double pc = __longlong_as_double(CC[7]);
#pragma unroll
    for (int i = 6; i >= 0; i--) pc = __dadd_rn(__dmul_rn(pc, r2), __longlong_as_double(CC[i]));
    double cos_r = __dadd_rn(1.0, __dmul_rn(r2, pc));
    double s, c;
    switch ((int)((long long)k & 3)) {
    case 0: s = sin_r; c = cos_r; break;
    case 1: s = cos_r; c = -sin_r; break;
    case 2: s = -sin_r; c = -cos_r; break;
    default: s = -cos_r; c = sin_r; break;
    }
    *sin_out = __double2float_rn(s);
    *cos_out = __double2float_rn(c);
}

// Evaluates the functions above on `n` inputs for the selftest: out holds
// exp, softplus, sin and cos of each input, in that order per input.
extern "C" __global__ void math_probe(const float *x, int n, float *out) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float s, c;
    det_sincos(x[i], &s, &c);
    out[4 * i] = det_exp(x[i]);
    out[4 * i + 1] = det_softplus(x[i]);
    out[4 * i + 2] = s;
    out[4 * i + 3] = c;
}
