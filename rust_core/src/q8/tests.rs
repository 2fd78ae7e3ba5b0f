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

/// Product shapes `(rows, cols, m)`: rows not a multiple of 4 (VNNI remainder rows), inputs not a
/// multiple of 4, an odd number of blocks (the VNNI half-vector tail), serial and parallel sizes.
const SHAPES: [(usize, usize, usize); 6] = [
    (33, 96, 9),
    (8, 64, 4),
    (7, 32, 5),
    (301, 640, 13),
    (64, 2048, 8),
    (6, 2240, 5),
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
                // Same integer sums, scaled and added in another order: f32 roundings apart (int8
                // noise itself is ~1e-2 of these sums).
                assert!(
                    (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                    "{level:?} {rows}x{cols} m={m} at {i}: {a} vs {b}"
                );
            }
        }
    }
}

/// What the AVX2 2×4 tile computes for one weight row and one input, in its order: eight lanes,
/// each the fused multiply-add of its four-code integer sum by the block's scale product, then
/// added in pairs as its horizontal sum does.
fn avx2_tile_lanes(wc: &[i8], ws: &[f32], qc: &[i8], qs: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    for (b, (sw, sx)) in ws.iter().zip(qs).enumerate() {
        for (l, lane) in lanes.iter_mut().enumerate() {
            let at = b * BLOCK + 4 * l;
            let p: i32 = (at..at + 4)
                .map(|c| i32::from(wc[c]) * i32::from(qc[c]))
                .sum();
            *lane = (p as f32).mul_add(sw * sx, *lane);
        }
    }
    let l = lanes;
    ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
}

/// Every result of a tile (weight row i by input j) is [`avx2_tile_lanes`] of those rows, bit for bit.
fn assert_tile_is_lane_model<const R: usize>(
    got: &[[f32; 4]; R],
    wc: &[i8],
    ws: &[f32],
    xc: &[i8],
    xs: &[f32],
    nb: usize,
) {
    let cols = nb * BLOCK;
    for (i, row) in got.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            let want = avx2_tile_lanes(
                &wc[i * cols..(i + 1) * cols],
                &ws[i * nb..(i + 1) * nb],
                &xc[j * cols..(j + 1) * cols],
                &xs[j * nb..(j + 1) * nb],
            );
            assert_eq!(v.to_bits(), want.to_bits(), "nb={nb} row {i} input {j}");
        }
    }
}

#[test]
fn the_avx2_tile_is_its_lane_model_bit_for_bit() {
    if simd_level() != SimdLevel::Avx2 {
        return;
    }
    // 20 blocks (a masked tail of the scale table), 64 (one full pass) and 70 (a second pass).
    for nb in [1, 20, 64, 70] {
        let cols = nb * BLOCK;
        let w = Q8Matrix::quantize(&random(2 * cols, nb as u64), 2, cols).expect("quantise");
        let x = Q8Matrix::quantize(&random(4 * cols, 7 + nb as u64), 4, cols).expect("quantise");
        let (wc, ws) = (w.codes(), w.scales());
        let got = tile_2x4(
            [&wc[..cols], &wc[cols..]],
            [&ws[..nb], &ws[nb..]],
            x.codes(),
            &x.scales(),
            true,
        );
        assert_tile_is_lane_model(&got, wc, &ws, x.codes(), &x.scales(), nb);
    }
}

#[cfg(all(target_arch = "x86_64", q8_avx512))]
#[test]
fn the_vnni_tile_is_the_avx2_tiles_lane_model_bit_for_bit() {
    if !avx512_vnni_available() {
        return; // `the_best_int8_kernel_runs_where_the_cpu_has_it` says whether that is right
    }
    // One block to a long row: scale-table passes of 16 blocks whole and with a masked tail, and
    // a second pass of the table past 64 blocks.
    for nb in [1, 2, 3, 16, 17, 20, 21, 64, 70] {
        let cols = nb * BLOCK;
        let w = Q8Matrix::quantize(&random(4 * cols, 60 + nb as u64), 4, cols).expect("quantise");
        let x = Q8Matrix::quantize(&random(4 * cols, 70 + nb as u64), 4, cols).expect("quantise");
        let (wc, ws, xc, xs) = (w.codes(), w.scales(), x.codes(), x.scales());
        let vnni = Vnni::prepare(Q8Level::Avx512Vnni, xc, 4).expect("VNNI inputs");
        let rows: [&[i8]; 4] = std::array::from_fn(|i| &wc[i * cols..(i + 1) * cols]);
        let mut neg = vec![0i32; cols];
        let neg = vnni.corrections(rows, &mut neg);
        let got = vnni.tile(
            rows,
            neg,
            std::array::from_fn(|i| &ws[i * nb..(i + 1) * nb]),
            &xs,
            0,
            cols,
        );
        // The VNNI tile gives each input's four sums; the lane model each weight row's.
        let by_row: [[f32; 4]; 4] = std::array::from_fn(|i| std::array::from_fn(|j| got[j][i]));
        assert_tile_is_lane_model(&by_row, wc, &ws, xc, &xs, nb);
    }
}

#[cfg(all(target_arch = "x86_64", q8_avx512))]
#[test]
fn vnni_and_avx2_products_are_the_same_bits_for_every_shape() {
    if !avx512_vnni_available() {
        return;
    }
    // A greedy decode must not take another path on an AVX-512 CPU: every product, prompt-sized or
    // not, with remainder rows and inputs, serial and parallel, gives the AVX2 kernels' bits.
    for (rows, cols, m) in SHAPES {
        let q = Q8Matrix::quantize(&random(rows * cols, 80 + rows as u64), rows, cols)
            .expect("quantise");
        let x = random(m * cols, 90 + m as u64);
        let (mut a, mut b) = (vec![0.0; m * rows], vec![0.0; m * rows]);
        q.matmul_with(&x, m, &mut a, Q8Level::Avx2).expect("matmul");
        q.matmul_with(&x, m, &mut b, Q8Level::Avx512Vnni)
            .expect("matmul");
        assert_eq!(bits(&a), bits(&b), "{rows}x{cols} m={m}");
    }
}

#[cfg(all(target_arch = "x86_64", q8_avx512))]
#[test]
fn vnni_integer_block_sums_equal_the_portable_ones_exactly() {
    if !avx512_vnni_available() {
        return; // `the_best_int8_kernel_runs_where_the_cpu_has_it` says whether that is right
    }
    let cols = 640;
    let w = random(cols, 21);
    let x = random(cols, 22);
    let (mut wc, mut ws) = (vec![0i8; cols], vec![0f32; cols / BLOCK]);
    let (mut xc, mut xs) = (vec![0i8; cols], vec![0f32; cols / BLOCK]);
    quantize_blocks(&w, &mut wc, &mut ws);
    quantize_blocks(&x, &mut xc, &mut xs);
    // The extremes too: -127 · 127 in every position of one block, 127 · 127 in another.
    wc[..32].fill(-127);
    xc[..32].fill(127);
    wc[32..64].fill(127);
    xc[32..64].fill(127);
    let xu: Vec<u8> = xc.iter().map(|&q| (q as u8) ^ 0x80).collect();
    let want: Vec<i32> = wc
        .chunks_exact(BLOCK)
        .zip(xc.chunks_exact(BLOCK))
        .map(|(a, b)| {
            a.iter()
                .zip(b)
                .map(|(&p, &q)| i32::from(p) * i32::from(q))
                .sum()
        })
        .collect();
    // SAFETY: AVX-512 F/BW/VL/VNNI detected above; 640 codes are 20 whole blocks.
    let got = unsafe { avx512::block_sums(&wc, &xu) };
    assert_eq!(got, want);
    assert_eq!(got[0], -127 * 127 * 32);
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
