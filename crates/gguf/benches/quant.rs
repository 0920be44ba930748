//! Throughput of the block decoders and dot kernels at Flash row width
//! (4096 columns), in bytes of weights per second.
//!
//! Weights are quantized from random values (MXFP4: random nibbles with
//! realistic exponents), never zeros, so no kernel sees a degenerate block.
//! `dequant` and `dot` run single-threaded (the dequant size stays below
//! the parallel threshold); `matvec` uses the rayon pool.
//!
//!   cargo bench -p gguf --bench quant

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gguf::quant::{dequantize, matvec_with, quantize, vec_dot_with, Activation, Isa};
use gguf::GgmlType;

const COLS: usize = 4096;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn normal(&mut self) -> f32 {
        let s: f32 = (0..4)
            .map(|_| (self.next() >> 40) as f32 / (1u64 << 24) as f32)
            .sum();
        s - 2.0
    }
}

fn weights(ty: GgmlType, rows: usize, rng: &mut Rng) -> Vec<u8> {
    if ty == GgmlType::Mxfp4 {
        let mut w = vec![0u8; rows * COLS / 32 * 17];
        for blk in w.chunks_exact_mut(17) {
            blk[0] = 118 + (rng.next() % 12) as u8;
            for b in &mut blk[1..] {
                *b = rng.next() as u8;
            }
        }
        return w;
    }
    let x: Vec<f32> = (0..rows * COLS).map(|_| rng.normal() * 0.02).collect();
    quantize(ty, &x, COLS, None).expect("quantizable type")
}

fn isas() -> Vec<Isa> {
    [Isa::Scalar, Isa::Avx2]
        .into_iter()
        .filter(|i| i.is_available())
        .collect()
}

fn bench_dequant(c: &mut Criterion) {
    let mut rng = Rng(1);
    let mut g = c.benchmark_group("dequant");
    let rows = 16; // 65536 values: decoded on the calling thread
    for ty in [
        GgmlType::F16,
        GgmlType::Bf16,
        GgmlType::Q8_0,
        GgmlType::Q2K,
        GgmlType::Q4K,
        GgmlType::Iq2Xxs,
        GgmlType::Mxfp4,
    ] {
        let w = weights(ty, rows, &mut rng);
        let mut out = vec![0.0f32; rows * COLS];
        g.throughput(Throughput::Bytes(w.len() as u64));
        g.bench_function(BenchmarkId::from_parameter(ty), |b| {
            b.iter(|| dequantize(ty, black_box(&w), &mut out).unwrap())
        });
    }
    g.finish();
}

const DOT_TYPES: [GgmlType; 5] = [
    GgmlType::Q8_0,
    GgmlType::Q2K,
    GgmlType::Q4K,
    GgmlType::Iq2Xxs,
    GgmlType::Mxfp4,
];

fn bench_dot(c: &mut Criterion) {
    let mut rng = Rng(2);
    let mut g = c.benchmark_group("dot");
    let rows = 64;
    for ty in DOT_TYPES {
        let w = weights(ty, rows, &mut rng);
        let row_bytes = w.len() / rows;
        let x: Vec<f32> = (0..COLS).map(|_| rng.normal()).collect();
        let act = Activation::quantize_for(ty, &x).unwrap();
        g.throughput(Throughput::Bytes(w.len() as u64));
        for isa in isas() {
            g.bench_function(BenchmarkId::new(ty.name(), format!("{isa:?}")), |b| {
                b.iter(|| {
                    let mut s = 0.0f32;
                    for row in w.chunks_exact(row_bytes) {
                        s += vec_dot_with(isa, ty, black_box(row), &act).unwrap();
                    }
                    s
                })
            });
        }
    }
    g.finish();
}

fn bench_matvec(c: &mut Criterion) {
    let mut rng = Rng(3);
    let mut g = c.benchmark_group("matvec");
    let rows = 1024;
    for ty in DOT_TYPES {
        let w = weights(ty, rows, &mut rng);
        let x: Vec<f32> = (0..COLS).map(|_| rng.normal()).collect();
        let act = Activation::quantize_for(ty, &x).unwrap();
        let mut out = vec![0.0f32; rows];
        g.throughput(Throughput::Bytes(w.len() as u64));
        let isa = Isa::detect();
        g.bench_function(BenchmarkId::new(ty.name(), format!("{isa:?}")), |b| {
            b.iter(|| matvec_with(isa, ty, black_box(&w), rows, COLS, &act, &mut out).unwrap())
        });
    }
    g.finish();
}

fn bench_activation(c: &mut Criterion) {
    let mut rng = Rng(4);
    let x: Vec<f32> = (0..COLS).map(|_| rng.normal()).collect();
    let mut g = c.benchmark_group("activation");
    g.throughput(Throughput::Bytes((COLS * 4) as u64));
    for ty in [GgmlType::Q2K, GgmlType::Q8_0] {
        g.bench_function(BenchmarkId::from_parameter(ty), |b| {
            b.iter(|| Activation::quantize_for(ty, black_box(&x)).unwrap())
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_dequant, bench_dot, bench_matvec, bench_activation
}
criterion_main!(benches);
