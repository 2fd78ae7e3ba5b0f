//! Tests of the int8 matrices and their kernels.

use super::*;

fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n).map(|_| lcg(&mut s)).collect()
}

fn exact(w: &[f32], x: &[f32], rows: usize, cols: usize, m: usize) -> Vec<f32> {
    let mut out = vec![0.0; m * rows];
    for t in 0..m {
        for r in 0..rows {
            out[t * rows + r] = (0..cols)
                .map(|c| f64::from(w[r * cols + c]) * f64::from(x[t * cols + c]))
                .sum::<f64>() as f32;
        }
    }
    out
}

#[test]
fn matmul_is_close_to_f32_for_one_and_many_rows() {
    let (rows, cols) = (300, 640);
    let w = random(rows * cols, 1);
    let q = Q8Matrix::quantize(&w, rows, cols).expect("quantise");
    for m in [1, 3, 7] {
        let x = random(m * cols, 2 + m as u64);
        let mut out = vec![0.0; m * rows];
        q.matmul(&x, m, &mut out).expect("matmul");
        let want = exact(&w, &x, rows, cols, m);
        // Two int8 roundings per product, each at most half a step (1/254 of a block's
        // max): over 640 products the error's standard deviation is ~0.05 here.
        let mut total = 0.0f32;
        for (a, b) in out.iter().zip(&want) {
            assert!((a - b).abs() < 0.3, "{a} vs {b} (m={m})");
            total += (a - b).abs();
        }
        assert!(
            total / (out.len() as f32) < 0.06,
            "mean error {}",
            total / out.len() as f32
        );
    }
}

#[test]
fn avx2_and_portable_kernels_agree_exactly_on_integer_sums() {
    let (rows, cols) = (17, 96);
    let w = random(rows * cols, 5);
    let x = random(cols, 6);
    let q = Q8Matrix::quantize(&w, rows, cols).expect("quantise");
    let xm = Q8Matrix::quantize(&x, 1, cols).expect("quantise input");
    for r in 0..rows {
        let wc = &q.codes()[r * cols..(r + 1) * cols];
        let (q_scales, x_scales) = (q.scales(), xm.scales());
        let ws = &q_scales[r * 3..(r + 1) * 3];
        let a = portable_row_dot(wc, ws, xm.codes(), &x_scales);
        let b = row_dot(
            wc,
            ws,
            xm.codes(),
            &x_scales,
            simd_level() == SimdLevel::Avx2,
        );
        assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{a} vs {b}");
    }
}

#[test]
fn tiled_products_match_the_reference_kernel_for_every_shape() {
    // Odd row counts and input counts that are not multiples of 4 exercise every remainder path
    // (2×4 tiles, single leftover rows, leftover inputs), serial and parallel.
    for (rows, cols, m) in [(33, 96, 9), (2, 32, 4), (5, 64, 1), (301, 640, 13)] {
        let w = random(rows * cols, rows as u64);
        let x = random(m * cols, 100 + m as u64);
        let q = Q8Matrix::quantize(&w, rows, cols).expect("quantise");
        let xq = Q8Matrix::quantize(&x, m, cols).expect("quantise input");
        let mut out = vec![0.0; m * rows];
        q.matmul(&x, m, &mut out).expect("matmul");
        let nb = cols / BLOCK;
        for t in 0..m {
            for r in 0..rows {
                let want = portable_row_dot(
                    &q.codes()[r * cols..(r + 1) * cols],
                    &q.scales()[r * nb..(r + 1) * nb],
                    &xq.codes()[t * cols..(t + 1) * cols],
                    &xq.scales()[t * nb..(t + 1) * nb],
                );
                let got = out[t * rows + r];
                assert!(
                    (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "{rows}x{cols}, m={m}, t={t}, r={r}: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn gather_dequantises_within_half_a_step() {
    let (rows, cols) = (10, 64);
    let w = random(rows * cols, 9);
    let q = Q8Matrix::quantize(&w, rows, cols).expect("quantise");
    let mut out = vec![0.0; 2 * cols];
    q.gather(&[3, 7], &mut out).expect("gather");
    for (i, &r) in [3usize, 7].iter().enumerate() {
        for c in 0..cols {
            let step = q.scales()[r * 2 + c / BLOCK];
            let got = out[i * cols + c];
            assert!((got - w[r * cols + c]).abs() <= step * 0.5 + 1e-7);
        }
    }
    assert!(q.gather(&[10], &mut vec![0.0; cols]).is_err());
}

#[test]
fn round_trip_through_parts_and_bad_shapes() {
    let w = random(4 * 32, 3);
    let q = Q8Matrix::quantize(&w, 4, 32).expect("quantise");
    let back = Q8Matrix::from_parts(q.codes().to_vec(), q.scales().to_vec(), 4, 32).expect("parts");
    assert_eq!(back.codes(), q.codes());
    assert!(Q8Matrix::quantize(&w, 4, 30).is_err());
    assert!(Q8Matrix::quantize(&[f32::NAN; 32], 1, 32).is_err());
    assert!(Q8Matrix::from_parts(vec![i8::MIN; 32], vec![1.0], 1, 32).is_err());
    let mut out = vec![0.0; 4];
    assert!(q.matmul(&[f32::INFINITY; 32], 1, &mut out).is_err());
}

#[test]
fn zero_blocks_stay_zero() {
    let q = Q8Matrix::quantize(&[0.0; 64], 2, 32).expect("quantise");
    let mut out = vec![1.0; 2];
    q.matmul(&[1.0; 32], 1, &mut out).expect("matmul");
    assert_eq!(out, vec![0.0, 0.0]);
}

/// Every level this machine runs, portable first (the reference).
fn levels_here() -> Vec<Q8Level> {
    let mut levels = vec![Q8Level::Portable];
    if simd_level() == SimdLevel::Avx2 {
        levels.push(Q8Level::Avx2);
    }
    if avx512_vnni_available() {
        levels.push(Q8Level::Avx512Vnni);
    }
    levels
}

#[test]
fn simd_quantisation_gives_the_portable_codes_and_scales_bit_for_bit() {
    // Random values plus exact halves (k + 0.5 steps of the block's scale) and values just below
    // them, where rounding half away from zero is easiest to get wrong.
    let mut v = random(32 * 64, 11);
    for (i, x) in v.iter_mut().enumerate().skip(32 * 32) {
        let block_max = 127.0f32;
        *x = match i % 4 {
            0 => block_max,
            1 => ((i % 250) as f32 - 125.0) + 0.5,
            2 => f32::from_bits((((i % 250) as f32 - 125.0) + 0.5).to_bits() - 1),
            _ => -(((i % 250) as f32) + 0.5),
        };
    }
    let nb = v.len() / BLOCK;
    let (mut c0, mut s0) = (vec![0i8; v.len()], vec![0f32; nb]);
    quantize_blocks(&v, &mut c0, &mut s0);
    for level in levels_here() {
        let (mut c1, mut s1) = (vec![0i8; v.len()], vec![0f32; nb]);
        quantize_rows(&v, &mut c1, &mut s1, level);
        assert_eq!(c0, c1, "{level:?}");
        assert_eq!(
            s0.iter().map(|s| s.to_bits()).collect::<Vec<_>>(),
            s1.iter().map(|s| s.to_bits()).collect::<Vec<_>>()
        );
    }
}

/// Product shapes `(rows, cols, m)`: rows not a multiple of 2 or 16 (short last tiles and VNNI
/// groups), inputs below, at and past the prompt contract's four and the VNNI kernel's sixteen
/// and not multiples of eight (passes of 4, 2 and 1 inputs), serial and parallel sizes.
const SHAPES: [(usize, usize, usize); 10] = [
    (33, 96, 9),
    (8, 64, 4),
    (7, 32, 5),
    (301, 640, 13),
    (64, 2048, 8),
    (6, 2240, 5),
    (33, 96, 16),
    (17, 64, 23),
    (301, 640, 27),
    (40, 2048, 3),
];

#[test]
fn every_level_matches_the_portable_products() {
    for (rows, cols, m) in SHAPES {
        let w = random(rows * cols, 40 + rows as u64);
        let x = random(m * cols, 50 + m as u64);
        let q = Q8Matrix::quantize(&w, rows, cols).expect("quantise");
        let mut want = vec![0.0; m * rows];
        q.matmul_with(&x, m, &mut want, Q8Level::Portable)
            .expect("matmul");
        for level in levels_here() {
            let mut got = vec![0.0; m * rows];
            q.matmul_with(&x, m, &mut got, level).expect("matmul");
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                // Same integer sums, scaled and added in another order for fewer than four
                // inputs: f32 roundings apart (int8 noise itself is ~1e-2 of these sums).
                assert!(
                    (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                    "{level:?} {rows}x{cols} m={m} at {i}: {a} vs {b}"
                );
            }
        }
    }
}

/// `portable_block_fma` of every (input, weight row) pair: what every kernel of a product of
/// [`PROMPT_INPUTS`] or more inputs must give, bit for bit.
fn prompt_contract(q: &Q8Matrix, x: &[f32], m: usize) -> Vec<f32> {
    let (rows, cols) = (q.rows(), q.cols());
    let nb = cols / BLOCK;
    let xm = Q8Matrix::quantize(x, m, cols).expect("quantise input");
    let (wc, ws, xc, xs) = (q.codes(), q.scales(), xm.codes(), xm.scales());
    let mut out = Vec::with_capacity(m * rows);
    for t in 0..m {
        for r in 0..rows {
            out.push(portable_block_fma(
                &wc[r * cols..(r + 1) * cols],
                &ws[r * nb..(r + 1) * nb],
                &xc[t * cols..(t + 1) * cols],
                &xs[t * nb..(t + 1) * nb],
            ));
        }
    }
    out
}

#[test]
fn prompt_products_are_the_portable_contract_bit_for_bit_on_every_level() {
    // A greedy decode must not take another path on another CPU: every product of four or more
    // inputs, with short tiles and groups, serial and parallel, gives the same bits on every
    // kernel this machine has (the contract's own per-pair loop, the AVX2 2×4 tile, the VNNI
    // packed groups), so the AVX2 and VNNI hosts' answers are the portable one's.
    for (rows, cols, m) in SHAPES {
        let q = Q8Matrix::quantize(&random(rows * cols, 80 + rows as u64), rows, cols)
            .expect("quantise");
        let x = random(m * cols, 90 + m as u64);
        let mut want = vec![0.0; m * rows];
        let reference = if levels_here().contains(&Q8Level::Avx2) {
            Q8Level::Avx2
        } else {
            Q8Level::Portable
        };
        q.matmul_with(&x, m, &mut want, reference).expect("matmul");
        if m >= PROMPT_INPUTS {
            assert_eq!(
                bits(&want),
                bits(&prompt_contract(&q, &x, m)),
                "{rows}x{cols} m={m}"
            );
        }
        for level in levels_here() {
            if m < PROMPT_INPUTS && level == Q8Level::Portable {
                continue; // the decode kernels: AVX2 and VNNI agree, the portable one need not
            }
            let mut got = vec![0.0; m * rows];
            q.matmul_with(&x, m, &mut got, level).expect("matmul");
            assert_eq!(bits(&got), bits(&want), "{level:?} {rows}x{cols} m={m}");
        }
    }
}

#[test]
fn prompt_products_are_exact_at_the_code_extremes() {
    // -127 · 127 and 127 · 127 in every position of a block: the largest integer sums (the VNNI
    // kernel's offset weights reach 255 · 127 per product), exact on every kernel.
    let (rows, cols, m) = (19, 96, 17);
    let mut w = vec![-1.0f32; rows * cols];
    for (i, v) in w.iter_mut().enumerate() {
        if (i / BLOCK) % 3 == 1 {
            *v = 1.0;
        } else if (i / BLOCK) % 3 == 2 {
            *v = ((i % 7) as f32 - 3.0) / 3.0;
        }
    }
    let x = vec![1.0f32; m * cols];
    let q = Q8Matrix::quantize(&w, rows, cols).expect("quantise");
    let want = prompt_contract(&q, &x, m);
    // Row 0 by hand: blocks of -127 and 127 codes against 127 everywhere (scales 1/127), then a
    // block of mixed codes, each exact sum fused-multiply-added in block order.
    let d = (1.0f32 / 127.0) * (1.0f32 / 127.0);
    let mixed: i32 = q.codes()[64..96].iter().map(|&c| i32::from(c) * 127).sum();
    let d2 = q.scales()[2] * (1.0f32 / 127.0);
    let row0 = (mixed as f32).mul_add(d2, 516_128f32.mul_add(d, (-516_128f32).mul_add(d, 0.0)));
    assert_eq!(want[0].to_bits(), row0.to_bits());
    for level in levels_here() {
        let mut got = vec![0.0; m * rows];
        q.matmul_with(&x, m, &mut got, level).expect("matmul");
        assert_eq!(bits(&got), bits(&want), "{level:?}");
    }
}

#[test]
fn the_best_int8_kernel_runs_where_the_cpu_has_it() {
    // The comparisons above only prove something if the fast levels are really among those tested:
    // where /proc/cpuinfo lists AVX-512 F/BW/VNNI and this build has the kernel, it must be detected.
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return;
    };
    let flags: Vec<&str> = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    let has = |f: &str| flags.contains(&f);
    let vnni = has("avx512_vnni") || has("avx512vnni");
    if cfg!(all(target_arch = "x86_64", q8_avx512))
        && has("avx512f")
        && has("avx512bw")
        && vnni
        && simd_level() == SimdLevel::Avx2
    {
        assert!(avx512_vnni_available());
        assert!(levels_here().contains(&Q8Level::Avx512Vnni));
    }
    if has("avx2") && has("fma") && std::env::var_os("MCP_GEMMA_FORCE_SCALAR").is_none() {
        assert!(levels_here().contains(&Q8Level::Avx2));
    }
}

#[test]
fn binary16_scales_convert_exactly_or_not_at_all() {
    // Every positive normal binary16 value, and zero, round-trips; the value is 2^(e-15)·(1+m/1024).
    assert_eq!(to_f16(0.0), Some(0));
    for h in 0x0400u16..0x7c00 {
        let (e, m) = (i32::from(h >> 10), f64::from(h & 0x3ff));
        let want = 2f64.powi(e - 15) * (1.0 + m / 1024.0);
        assert_eq!(f64::from(from_f16(h)), want, "{h:#06x}");
        assert_eq!(to_f16(from_f16(h)), Some(h), "{h:#06x}");
    }
    // Not exact: an 11th mantissa bit, subnormal, too large, negative zero and negative values.
    for s in [
        1.0 + 2f32.powi(-11),
        2f32.powi(-15),
        65536.0,
        -0.0,
        -1.0,
        1e-30,
    ] {
        assert_eq!(to_f16(s), None, "{s}");
    }
}

#[test]
fn half_scales_give_the_same_products_and_rows_bit_for_bit() {
    // Scales that binary16 holds exactly (as a GGUF model's own are) are stored at half the size;
    // every product and row look-up equals the same matrix with f32 scales.
    let (rows, cols) = (37, 96);
    let q = Q8Matrix::quantize(&random(rows * cols, 21), rows, cols).expect("quantise");
    let mut scales: Vec<f32> = (0..rows * cols / BLOCK)
        .map(|i| from_f16(0x1c00 + (i as u16 * 37) % 0x1000))
        .collect();
    scales[5] = 0.0;
    let half = Q8Matrix::from_parts(q.codes().to_vec(), scales.clone(), rows, cols).expect("parts");
    assert!(half.half_scales());
    assert_eq!(half.scales(), scales);
    let full = Q8Matrix {
        rows,
        cols,
        codes: q.codes().to_vec(),
        scales: Scales::F32(scales.clone()),
    };
    assert_eq!(full.nbytes() - half.nbytes(), scales.len() * 2);
    for m in [1, 3, 4, 9] {
        let x = random(m * cols, 50 + m as u64);
        for level in levels_here() {
            let (mut a, mut b) = (vec![0.0; m * rows], vec![0.0; m * rows]);
            half.matmul_with(&x, m, &mut a, level).expect("matmul");
            full.matmul_with(&x, m, &mut b, level).expect("matmul");
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b), "m={m}, {level:?}");
        }
    }
    let (mut a, mut b) = (vec![0.0; 3 * cols], vec![0.0; 3 * cols]);
    half.gather(&[0, 36, 5], &mut a).expect("gather");
    full.gather(&[0, 36, 5], &mut b).expect("gather");
    assert_eq!(a, b);
    // One scale binary16 cannot hold keeps the whole matrix in f32.
    scales[7] = 0.1;
    let kept = Q8Matrix::from_parts(q.codes().to_vec(), scales, rows, cols).expect("parts");
    assert!(!kept.half_scales());
}

#[test]
fn f16c_conversion_is_the_portable_one_for_every_stored_value() {
    // Zero and every positive normal binary16 value (all `to_f16` ever stores), at every length
    // remainder of the eight-wide loop.
    let values: Vec<u16> = std::iter::once(0).chain(0x0400u16..0x7c00).collect();
    for len in [0, 1, 7, 8, 9, 17, values.len()] {
        let mut got = vec![f32::NAN; len];
        half_to_f32(&values[..len], &mut got);
        for (h, g) in values[..len].iter().zip(&got) {
            assert_eq!(g.to_bits(), from_f16(*h).to_bits(), "{h:#06x}");
        }
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn a_stacked_product_is_each_matrix_product_side_by_side_bit_for_bit() {
    // Blocks of uneven heights (not multiples of the tiles' 2 or 4 rows), binary16 and f32 scales,
    // one and several inputs, small (one thread) and large (split across the pool) products.
    let cols = 96;
    let half_scales = |rows: usize| -> Vec<f32> {
        (0..rows * cols / BLOCK)
            .map(|i| from_f16(0x1c00 + (i as u16 * 37) % 0x1000))
            .collect()
    };
    let mut mats = Vec::new();
    for (i, rows) in [37usize, 64, 5, 3001].into_iter().enumerate() {
        let q =
            Q8Matrix::quantize(&random(rows * cols, 70 + i as u64), rows, cols).expect("quantise");
        let w = if i % 2 == 0 {
            Q8Matrix::from_parts(q.codes().to_vec(), half_scales(rows), rows, cols).expect("parts")
        } else {
            q
        };
        mats.push(w);
    }
    assert!(mats[0].half_scales() && !mats[1].half_scales());
    let refs: Vec<&Q8Matrix> = mats.iter().collect();
    let total: usize = mats.iter().map(Q8Matrix::rows).sum();
    for m in [1, 2, 4, 5, 9] {
        let x = random(m * cols, 90 + m as u64);
        for level in levels_here() {
            let mut got = vec![f32::NAN; m * total];
            matmul_stacked_with(&refs, &x, m, &mut got, level).expect("stacked");
            let mut want = vec![0.0; m * total];
            let mut offset = 0;
            for w in &mats {
                let mut one = vec![0.0; m * w.rows()];
                w.matmul_with(&x, m, &mut one, level).expect("matmul");
                for t in 0..m {
                    want[t * total + offset..t * total + offset + w.rows()]
                        .copy_from_slice(&one[t * w.rows()..(t + 1) * w.rows()]);
                }
                offset += w.rows();
            }
            assert_eq!(bits(&got), bits(&want), "m={m}, {level:?}");
        }
    }
    // Bad calls are refused with what to fix.
    let x = random(cols, 1);
    let mut out = vec![0.0; total];
    let err = matmul_stacked(&[], &x, 1, &mut out).expect_err("no matrices");
    assert!(err.to_string().contains("at least one matrix"), "{err}");
    let narrow = Q8Matrix::quantize(&random(2 * 64, 3), 2, 64).expect("quantise");
    let err = matmul_stacked(&[&mats[0], &narrow], &x, 1, &mut [0.0; 39]).expect_err("cols");
    assert!(err.to_string().contains("one column count"), "{err}");
    let err = matmul_stacked(&refs, &x[..cols - 32], 1, &mut out).expect_err("short input");
    assert!(
        err.to_string().contains("expected 1 rows of 96 columns"),
        "{err}"
    );
    let mut nan = x.clone();
    nan[40] = f32::NAN;
    let err = matmul_stacked(&refs, &nan, 1, &mut out).expect_err("nan");
    assert!(err.to_string().contains("not finite"), "{err}");
}
