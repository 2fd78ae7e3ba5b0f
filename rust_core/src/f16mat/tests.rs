use super::*;

/// Binary16 bits of small integers and halves, for exact expectations.
fn bits_of(v: f32) -> u16 {
    // exact for the values used here (integers and halves within binary16's 11-bit significand)
    let b = v.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    if v == 0.0 {
        return sign;
    }
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    let man = ((b >> 13) & 0x3ff) as u16;
    sign | ((exp as u16) << 10) | man
}

#[test]
fn widening_is_exact_for_every_finite_pattern() {
    assert_eq!(f16_to_f32(0x3c00), 1.0);
    assert_eq!(f16_to_f32(0xc000), -2.0);
    assert_eq!(f16_to_f32(0x7bff), 65504.0);
    assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24)); // smallest subnormal
    assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24)); // largest subnormal
    assert_eq!(f16_to_f32(0x0400), 2f32.powi(-14)); // smallest normal
    assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
    assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
    assert!(f16_to_f32(0x7c00).is_infinite());
    // the kernel's F16C widening agrees with the portable one on every finite pattern: one column
    // times 1.0 is each weight exactly, bit for bit, except that the sum starts at +0, so a -0
    // weight gives +0 (+0 + -0 · 1 = +0)
    let all: Vec<u16> = (0..=u16::MAX).filter(|b| b & 0x7c00 != 0x7c00).collect();
    let mut simd = vec![0f32; all.len()];
    let m = F16Matrix::from_bits(all.clone(), all.len(), 1).expect("finite");
    m.matmul(&[1.0], 1, &mut simd, false).expect("product");
    for (b, v) in all.iter().zip(&simd) {
        let want = if *b == 0x8000 { 0.0f32 } else { f16_to_f32(*b) };
        assert_eq!(v.to_bits(), want.to_bits(), "pattern {b:#06x}");
    }
}

fn reference(w: &[f32], x: &[f32], rows: usize, cols: usize, m: usize) -> Vec<f64> {
    let mut out = vec![0f64; m * rows];
    for t in 0..m {
        for r in 0..rows {
            out[t * rows + r] = (0..cols)
                .map(|c| f64::from(x[t * cols + c]) * f64::from(w[r * cols + c]))
                .sum();
        }
    }
    out
}

#[test]
fn products_match_a_float64_reference() {
    // odd shapes: a tail of rows (< 4) and of columns (< 8 and < 16)
    for &(rows, cols, m) in &[
        (7usize, 45usize, 3usize),
        (8, 384, 1),
        (13, 64, 5),
        (4, 8, 2),
    ] {
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37 % 29) as f32 - 14.0) * 0.5)
            .collect();
        let x: Vec<f32> = (0..m * cols)
            .map(|i| ((i * 11 % 17) as f32 - 8.0) * 0.25)
            .collect();
        let mat = F16Matrix::from_bits(w.iter().map(|&v| bits_of(v)).collect(), rows, cols)
            .expect("matrix");
        let want = reference(&w, &x, rows, cols, m);
        for parallel in [false, true] {
            let mut got = vec![0f32; m * rows];
            mat.matmul(&x, m, &mut got, parallel).expect("product");
            for (g, e) in got.iter().zip(&want) {
                // halves times quarters: every product and partial sum is exact in f32
                assert_eq!(f64::from(*g), *e, "{rows}×{cols}, m={m}");
            }
        }
    }
}

#[test]
fn a_large_product_splits_over_threads_with_the_same_result() {
    let (rows, cols, m) = (96usize, 1536usize, 32usize);
    let w: Vec<f32> = (0..rows * cols)
        .map(|i| ((i % 7) as f32 - 3.0) * 0.5)
        .collect();
    let x: Vec<f32> = (0..m * cols)
        .map(|i| ((i % 5) as f32 - 2.0) * 0.5)
        .collect();
    let mat =
        F16Matrix::from_bits(w.iter().map(|&v| bits_of(v)).collect(), rows, cols).expect("matrix");
    let mut serial = vec![0f32; m * rows];
    let mut split = vec![0f32; m * rows];
    mat.matmul(&x, m, &mut serial, false).expect("serial");
    crate::pool::run_in(Some(3), || mat.matmul(&x, m, &mut split, true))
        .expect("pool")
        .expect("split");
    assert_eq!(serial, split);
    assert_eq!(
        serial.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
        reference(&w, &x, rows, cols, m)
    );
}

#[test]
fn bad_shapes_and_non_finite_weights_are_refused() {
    assert!(F16Matrix::from_bits(vec![], 0, 4).is_err());
    assert!(F16Matrix::from_bits(vec![0; 5], 2, 3).is_err());
    let err = F16Matrix::from_bits(vec![0, 0x7c00, 0, 0], 2, 2).expect_err("inf");
    assert!(err.to_string().contains("row 0, column 1"), "{err}");
    assert!(F16Matrix::from_bits(vec![0, 0, 0x7e00, 0], 2, 2).is_err()); // NaN
    let m = F16Matrix::from_bits(vec![0x3c00; 6], 2, 3).expect("matrix");
    let mut out = vec![0f32; 2];
    assert!(m.matmul(&[1.0; 4], 1, &mut out, false).is_err());
    let mut empty: Vec<f32> = vec![];
    m.matmul(&[], 0, &mut empty, false).expect("no rows");
}

#[test]
fn a_row_of_x_gives_the_same_bits_alone_or_with_others() {
    // inexact values, so that a different summation order would show in the last bits
    let (rows, cols, m) = (12usize, 389usize, 7usize);
    let w: Vec<f32> = (0..rows * cols)
        .map(|i| ((i as f32) * 0.618_034).sin() * 0.1)
        .collect();
    let x: Vec<f32> = (0..m * cols)
        .map(|i| ((i as f32) * 0.414_214).cos())
        .collect();
    let bits: Vec<u16> = w.iter().map(|&v| bits_of_rounded(v)).collect();
    let mat = F16Matrix::from_bits(bits, rows, cols).expect("matrix");
    let mut all = vec![0f32; m * rows];
    mat.matmul(&x, m, &mut all, false).expect("all");
    for t in 0..m {
        let mut one = vec![0f32; rows];
        mat.matmul(&x[t * cols..(t + 1) * cols], 1, &mut one, false)
            .expect("one");
        assert_eq!(one, all[t * rows..(t + 1) * rows], "row {t}");
    }
}

/// Binary16 bits of `v` truncated toward zero (any binary16 value will do here).
fn bits_of_rounded(v: f32) -> u16 {
    let b = v.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    if exp <= 0 {
        return sign;
    }
    sign | ((exp as u16) << 10) | ((b >> 13) & 0x3ff) as u16
}

#[test]
fn the_dispatched_kernel_gives_the_portable_kernels_bits() {
    // inexact values, so any difference in the order or the rounding of the sums would show
    let cols = 389usize;
    let panel: Vec<u16> = (0..cols * NR)
        .map(|i| bits_of_rounded(((i as f32) * 0.618_034).sin() * 0.1))
        .collect();
    let x: Vec<f32> = (0..MR * cols)
        .map(|i| ((i as f32) * 0.414_214).cos())
        .collect();
    let want = portable_panel::<MR>(&panel, &x, cols);
    let mut got = [[0f32; NR]; MR];
    panel_rows::<MR>(&panel, &x, cols, use_avx2(), &mut |i, row| got[i] = *row);
    assert_eq!(got, want);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
    {
        // this test compares the SIMD kernel, not the portable one with itself
        assert!(
            use_avx2(),
            "the CPU has AVX2, FMA and F16C but the portable kernel was chosen"
        );
    }
}

#[test]
fn panels_pack_every_row_and_pad_the_last() {
    let (rows, cols) = (NR + 3, 5usize);
    let bits: Vec<u16> = (0..rows * cols).map(|i| bits_of(i as f32)).collect();
    let mat = F16Matrix::from_bits(bits, rows, cols).expect("matrix");
    assert_eq!(mat.nbytes(), 2 * NR * cols * 2);
    let mut out = vec![0f32; rows];
    let x: Vec<f32> = (0..cols).map(|c| if c == 2 { 1.0 } else { 0.0 }).collect();
    mat.matmul(&x, 1, &mut out, false).expect("product");
    // x picks column 2 of every row
    let want: Vec<f32> = (0..rows).map(|r| (r * cols + 2) as f32).collect();
    assert_eq!(out, want);
}
