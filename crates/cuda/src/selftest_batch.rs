//! Device checks of the forward pass's batched kernels: the weight-reusing
//! matrix kernels give exactly the per-slot kernels' results, top-k picks
//! what the CPU picks (ties included), and chunk attention over raw and
//! selected compressed rows matches the CPU's sink attention.

use gguf::quant::{self, ActQ8_0};
use gguf::GgmlType;

use crate::error::Result;
use crate::kern::{Act, AttnArgs, MatKernel, Slots};
use crate::ops::Gpu;
use crate::selftest::{order_bound, random_kquant, random_q8_0, worst_ratio, Check, Rng};

fn exact(name: String, same: bool) -> Check {
    Check {
        name,
        worst: if same { 0.0 } else { f64::INFINITY },
        pass: same,
    }
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// `mm_q8_0_tiles` over `count` tokens against the CPU and, bit for bit,
/// against the one-slot kernel.
fn q8_0_tiles(
    gpu: &Gpu,
    rng: &mut Rng,
    rows: usize,
    cols: usize,
    count: usize,
) -> Result<Vec<Check>> {
    let s = &gpu.stream;
    let w = random_q8_0(rng, rows, cols);
    let x: Vec<f32> = (0..count * cols).map(|_| rng.normalish() * 2.0).collect();
    let (dw, dx) = (s.clone_htod(&w)?, s.clone_htod(&x)?);
    let act = gpu.quantize_q8_0_act(&dx)?;
    let (qs, scales) = (gpu.ptr(&act.qs), gpu.ptr(&act.scales));
    let tiles = s.alloc_zeros::<f32>(count * rows)?;
    let strides = (cols, rows);
    gpu.k_mm_q8_0_tiles(
        gpu.ptr(&dw),
        rows,
        cols,
        qs,
        scales,
        count,
        strides,
        gpu.ptr(&tiles),
    )?;
    let slots = s.alloc_zeros::<f32>(count * rows)?;
    let a = Act::Q8_0 { qs, scales };
    gpu.k_mm(
        MatKernel::Q8_0,
        gpu.ptr(&dw),
        rows,
        cols,
        a,
        Slots::tokens(count, cols),
        gpu.ptr(&slots),
    )?;
    let (t, sl) = (s.clone_dtoh(&tiles)?, s.clone_dtoh(&slots)?);
    let mut wf = vec![0f32; rows * cols];
    quant::dequantize(GgmlType::Q8_0, &w, &mut wf).expect("CPU dequantize");
    let mut worst = 0f64;
    for (i, xi) in x.chunks(cols).enumerate() {
        let a = ActQ8_0::quantize(xi);
        let mut cpu = vec![0f32; rows];
        quant::matvec(GgmlType::Q8_0, &w, rows, cols, &a, &mut cpu).expect("CPU matvec");
        let bound = order_bound(&wf, &a.dequantize(), rows, 1e-5);
        worst = worst.max(worst_ratio(&t[i * rows..(i + 1) * rows], &cpu, &bound));
    }
    Ok(vec![
        Check {
            name: format!("mm_q8_0_tiles {rows}x{cols}, {count} tokens vs CPU"),
            worst,
            pass: worst <= 1.0,
        },
        exact(
            format!("mm_q8_0_tiles {rows}x{cols} = per-slot kernel (bit-exact)"),
            same_bits(&t, &sl),
        ),
    ])
}

/// The grouped output projection of `tokens` tokens (slot s = token *
/// groups + g takes matrix g and activation s) by one strided tile launch
/// per group, as prefill runs it, against the slot kernel, bit for bit.
fn q8_0_group_tiles(
    gpu: &Gpu,
    rng: &mut Rng,
    (groups, rows, cols): (usize, usize, usize),
    tokens: usize,
) -> Result<Check> {
    let s = &gpu.stream;
    let w = random_q8_0(rng, groups * rows, cols);
    let count = tokens * groups;
    let x: Vec<f32> = (0..count * cols).map(|_| rng.normalish() * 2.0).collect();
    let (dw, dx) = (s.clone_htod(&w)?, s.clone_htod(&x)?);
    let act = gpu.quantize_q8_0_act(&dx)?;
    let (qs, scales) = (gpu.ptr(&act.qs), gpu.ptr(&act.scales));
    let w_stride = w.len() / groups;
    let tiles = s.alloc_zeros::<f32>(count * rows)?;
    let (yt, wp) = (gpu.ptr(&tiles), gpu.ptr(&dw));
    for g in 0..groups {
        let (qo, so, yo) = (g * cols, g * cols / 32, g * rows);
        gpu.k_mm_q8_0_tiles(
            wp.at(g * w_stride, w_stride),
            rows,
            cols,
            qs.at(qo, qs.len() - qo),
            scales.at(so, scales.len() - so),
            tokens,
            (groups * cols, groups * rows),
            yt.at(yo, yt.len() - yo),
        )?;
    }
    let slots = s.alloc_zeros::<f32>(count * rows)?;
    let grouped = Slots {
        count,
        ids: None,
        w_mod: groups,
        w_stride,
        act_div: 1,
        act_stride: cols,
    };
    let a = Act::Q8_0 { qs, scales };
    gpu.k_mm(MatKernel::Q8_0, wp, rows, cols, a, grouped, gpu.ptr(&slots))?;
    Ok(exact(
        format!("mm_q8_0_tiles per output group ({groups} x {rows}x{cols}, {tokens} tokens) = slot kernel (bit-exact)"),
        same_bits(&s.clone_dtoh(&tiles)?, &s.clone_dtoh(&slots)?),
    ))
}

/// Expert-grouped IQ2_XXS / Q2_K against the per-slot kernel, bit for bit.
fn grouped(gpu: &Gpu, rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize) -> Result<Check> {
    let s = &gpu.stream;
    let (n_expert, tokens, k) = (16, 21, 6);
    let per = random_kquant(rng, ty, rows, cols).len();
    let w: Vec<u8> = (0..n_expert)
        .flat_map(|_| random_kquant(rng, ty, rows, cols))
        .collect();
    let ids: Vec<i32> = (0..tokens * k)
        .map(|_| (rng.next() % n_expert as u64) as i32)
        .collect();
    let x: Vec<f32> = (0..tokens * cols).map(|_| rng.normalish()).collect();
    let (dw, dx, dids) = (s.clone_htod(&w)?, s.clone_htod(&x)?, s.clone_htod(&ids)?);
    let act = gpu.quantize_q8_k(&dx)?;
    let kind = if ty == GgmlType::Q2K {
        MatKernel::Q2K
    } else {
        MatKernel::Iq2Xxs
    };
    let slots = Slots {
        count: tokens * k,
        ids: Some(gpu.ptr(&dids)),
        w_mod: 1,
        w_stride: per,
        act_div: k,
        act_stride: cols,
    };
    let y1 = s.alloc_zeros::<f32>(tokens * k * rows)?;
    gpu.k_mm(
        kind,
        gpu.ptr(&dw),
        rows,
        cols,
        Act::Q8K(gpu.ptr(&act.data)),
        slots,
        gpu.ptr(&y1),
    )?;
    let offsets = s.alloc_zeros::<i32>(n_expert + 1)?;
    let order = s.alloc_zeros::<i32>(tokens * k)?;
    let groups = (gpu.ptr(&offsets), gpu.ptr(&order));
    gpu.k_moe_group(gpu.ptr(&dids), n_expert, groups.0, groups.1)?;
    let y2 = s.alloc_zeros::<f32>(tokens * k * rows)?;
    gpu.k_mm_grouped(
        kind,
        gpu.ptr(&dw),
        per,
        n_expert,
        groups,
        rows,
        cols,
        gpu.ptr(&act.data),
        k,
        cols,
        gpu.ptr(&y2),
    )?;
    let same = same_bits(&s.clone_dtoh(&y1)?, &s.clone_dtoh(&y2)?);
    Ok(exact(
        format!("mm_{}_grouped {rows}x{cols}, {tokens} tokens x {k} of {n_expert} experts = per-slot (bit-exact)", ty.name().to_lowercase()),
        same,
    ))
}

/// Device top-k against `model::indexer::top_k` on scores with many ties.
fn top_k(gpu: &Gpu, rng: &mut Rng, n: usize, k: usize) -> Result<Check> {
    let s = &gpu.stream;
    let scores: Vec<f32> = (0..n)
        .map(|_| ((rng.next() % 64) as f32 - 20.0) * 0.25)
        .collect();
    let want = model::indexer::top_k(&scores, k);
    let ds = s.clone_htod(&scores)?;
    let sel = s.alloc_zeros::<i32>(k)?;
    let n_sel = s.alloc_zeros::<i32>(1)?;
    gpu.k_top_k(
        gpu.ptr(&ds),
        1,
        n - 1,
        1,
        n,
        k,
        gpu.ptr(&sel),
        gpu.ptr(&n_sel),
    )?;
    let got_n = s.clone_dtoh(&n_sel)?[0] as usize;
    let got: Vec<usize> = s.clone_dtoh(&sel)?[..got_n.min(k)]
        .iter()
        .map(|&c| c as usize)
        .collect();
    Ok(exact(
        format!("top_k {k} of {n} with ties (same rows as the CPU)"),
        got == want,
    ))
}

/// Chunk attention (3 tokens, raw ring + this chunk's rows + selected
/// compressed rows) against the CPU's sink attention.
fn attention(gpu: &Gpu, rng: &mut Rng, heads: usize, hd: usize, with_sel: bool) -> Result<Check> {
    let s = &gpu.stream;
    let (window, ratio, pos0, t, sel_k) = (16usize, 4usize, 60usize, 3usize, 5usize);
    let ring: Vec<f32> = (0..window * hd).map(|_| rng.normalish()).collect();
    let cur: Vec<f32> = (0..t * hd).map(|_| rng.normalish()).collect();
    let n_comp_max = (pos0 + t) / ratio;
    let comp: Vec<f32> = (0..n_comp_max * hd).map(|_| rng.normalish()).collect();
    let q: Vec<f32> = (0..t * heads * hd).map(|_| rng.normalish()).collect();
    let sinks: Vec<f32> = (0..heads).map(|_| rng.normalish()).collect();
    let mut sel = vec![0i32; t * sel_k];
    let mut n_sel = vec![0i32; t];
    for i in 0..t {
        let n = (pos0 + i + 1) / ratio;
        let mut pick: Vec<usize> = (0..n)
            .filter(|_| rng.next().is_multiple_of(3))
            .take(sel_k)
            .collect();
        pick.sort_unstable();
        n_sel[i] = pick.len() as i32;
        for (j, &c) in pick.iter().enumerate() {
            sel[i * sel_k + j] = c as i32;
        }
    }
    let scale = 1.0 / (hd as f32).sqrt();
    let mut cpu = vec![0f32; t * heads * hd];
    for i in 0..t {
        let pos = pos0 + i;
        let mut keys: Vec<&[f32]> = ((pos + 1).saturating_sub(window)..=pos)
            .map(|p| {
                if p >= pos0 {
                    &cur[(p - pos0) * hd..(p - pos0 + 1) * hd]
                } else {
                    &ring[(p % window) * hd..(p % window + 1) * hd]
                }
            })
            .collect();
        let rows: Vec<usize> = if with_sel {
            sel[i * sel_k..i * sel_k + n_sel[i] as usize]
                .iter()
                .map(|&c| c as usize)
                .collect()
        } else {
            (0..(pos + 1) / ratio).collect()
        };
        keys.extend(rows.iter().map(|&c| &comp[c * hd..(c + 1) * hd]));
        for h in 0..heads {
            let o = &mut cpu[(i * heads + h) * hd..(i * heads + h + 1) * hd];
            model::attention::sink_attention(
                &q[(i * heads + h) * hd..(i * heads + h + 1) * hd],
                &keys,
                sinks[h],
                scale,
                o,
            );
        }
    }
    let (dq, dc, dr, dp, dk) = (
        s.clone_htod(&q)?,
        s.clone_htod(&cur)?,
        s.clone_htod(&ring)?,
        s.clone_htod(&comp)?,
        s.clone_htod(&sinks)?,
    );
    let (dsel, dn) = (s.clone_htod(&sel)?, s.clone_htod(&n_sel)?);
    let out = s.alloc_zeros::<f32>(t * heads * hd)?;
    gpu.k_attention(&AttnArgs {
        q: gpu.ptr(&dq),
        cur: gpu.ptr(&dc),
        ring: gpu.ptr(&dr),
        window,
        comp: gpu.ptr(&dp),
        ratio,
        sel: with_sel.then(|| (gpu.ptr(&dsel), gpu.ptr(&dn))),
        sel_k,
        pos0,
        tokens: t,
        hd,
        sinks: gpu.ptr(&dk),
        scale,
        max_keys: window + n_comp_max,
        out: gpu.ptr(&out),
    })?;
    let got = s.clone_dtoh(&out)?;
    let m = cpu.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = worst_ratio(&got, &cpu, &vec![f64::from(m) * 1e-5 + 1e-30; cpu.len()]);
    Ok(Check {
        name: format!(
            "attention {heads}x{hd}, 3 tokens over ring + chunk + {} compressed rows",
            if with_sel { "selected" } else { "all visible" }
        ),
        worst,
        pass: worst <= 1.0,
    })
}

pub(crate) fn run(gpu: &Gpu, rng: &mut Rng) -> Result<Vec<Check>> {
    let mut out = Vec::new();
    for (rows, cols, count) in [(1024, 4096, 37), (7, 96, 3), (4096, 1024, 16)] {
        out.extend(q8_0_tiles(gpu, rng, rows, cols, count)?);
    }
    out.push(q8_0_group_tiles(gpu, rng, (8, 1024, 4096), 37)?);
    out.push(q8_0_group_tiles(gpu, rng, (3, 40, 96), 5)?);
    for ty in [GgmlType::Iq2Xxs, GgmlType::Q2K] {
        out.push(grouped(gpu, rng, ty, 256, 4096)?);
        out.push(grouped(gpu, rng, ty, 33, 512)?);
    }
    for (n, k) in [(8192, 512), (600, 512), (300, 512), (77, 8), (1, 1)] {
        out.push(top_k(gpu, rng, n, k)?);
    }
    for with_sel in [true, false] {
        out.push(attention(gpu, rng, 8, 512, with_sel)?);
        out.push(attention(gpu, rng, 3, 128, with_sel)?);
    }
    Ok(out)
}
