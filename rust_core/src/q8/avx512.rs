//! The AVX-512 VNNI kernel of the int8 products for several input rows (prompt processing):
//! sixteen weight rows, one per 32-bit lane, by up to eight input rows per pass.
//!
//! The weight rows of a group are first packed column-major in groups of four codes ([`pack`]):
//! the 64 bytes at `64k` hold code group k (codes `4k..4k + 4`) of each of the sixteen rows, so
//! one `vpdpbusd` with an input's four codes broadcast adds four products to each row's lane, and
//! eight of them give each row's exact integer sum of a block, with no horizontal sums. The
//! packing costs one pass over the group's codes and serves every input of the product.
//!
//! `vpdpbusd` multiplies unsigned by signed bytes, and only its signed operand can be a broadcast
//! from memory, so the packed weights are offset to `w + 128` (unsigned) and the inputs stay
//! signed: `Σ (w + 128)·x = Σ w·x + 128 Σ x`. Each block's sums start from `-128 Σ x` over the
//! input's block ([`corrections`], once per product). Each exact block sum is then converted and
//! multiply-added with the block's scale product `s_w · s_x` (one multiply of the group's sixteen
//! weight scales by the input's) into one accumulator per row, block after block: the prompt
//! products' contract ([`super::kernels::portable_block_fma`]), so the results are the portable
//! and AVX2 kernels' bits and a greedy decode takes the same path on every CPU.
//!
//! Built only where the compiler has these intrinsics as stable API (see `build.rs`), run only
//! where the CPU reports AVX-512 F, BW, VL and VNNI.

// These intrinsics are stable from Rust 1.89, above the crate's rust-version: `build.rs` compiles
// this module only with such a compiler.
#![allow(clippy::incompatible_msrv)]

use super::BLOCK;
use std::arch::x86_64::*;

/// Weight rows per packed group: one per 32-bit lane of a 512-bit vector.
pub const GROUP: usize = 16;

/// Bytes of a packed block: 32 codes of each of the group's rows.
const PACKED_BLOCK: usize = BLOCK * GROUP;

/// `-128 Σ x` over each block of `xq` into `out` (one per block): where an input's block sums
/// start (see the module's doc).
pub fn corrections(xq: &[i8], out: &mut [i32]) {
    for (x, o) in xq.chunks_exact(BLOCK).zip(out.iter_mut()) {
        *o = -128 * x.iter().map(|&v| i32::from(v)).sum::<i32>();
    }
}

/// Pack sixteen weight rows for [`tile`]: row i's codes start `offsets[i]` bytes after `base`
/// (rows may repeat, to pad a short group); `cols` codes each. `out` gets `16 · cols` bytes.
///
/// # Safety
/// AVX-512 F, BW, VL and VNNI available; every `base + offsets[i]` points to `cols` readable
/// codes, `cols` is a multiple of 32 and `out` holds `16 · cols` bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn pack(base: *const i8, offsets: &[i32; GROUP], cols: usize, out: &mut [u8]) {
    debug_assert!(cols % BLOCK == 0 && out.len() == GROUP * cols);
    let flip = _mm512_set1_epi8(-128);
    // SAFETY: the offsets and `base` are the caller's; group k of every row lies inside its
    // `cols` codes, and slot k of `out` inside its `16 · cols` bytes.
    unsafe {
        let idx = _mm512_loadu_si512(offsets.as_ptr().cast());
        for k in 0..cols / 4 {
            let v = _mm512_i32gather_epi32::<1>(idx, base.add(4 * k).cast());
            _mm512_storeu_si512(
                out.as_mut_ptr().add(64 * k).cast(),
                _mm512_xor_si512(v, flip),
            );
        }
    }
}

/// The packed group (`pw`: [`pack`]ed codes, `sw`: its scales block-major, `16 · nb`) by `N`
/// inputs: input n's codes start at `xq + n · cols`, its scales at `xs + n · nb`, its
/// [`corrections`] at `xc + n · nb`; row i's result for input n goes to `out + n · stride + i`
/// for the rows `mask` selects.
///
/// # Safety
/// AVX-512 F, BW, VL and VNNI and FMA available; the pointers cover what is described above for
/// `nb` blocks (`cols = 32 · nb`), and the masked outputs are writable.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn tile<const N: usize>(
    pw: &[u8],
    sw: &[f32],
    nb: usize,
    xq: *const i8,
    xs: *const f32,
    xc: *const i32,
    out: *mut f32,
    stride: usize,
    mask: __mmask16,
) {
    debug_assert!(pw.len() >= nb * PACKED_BLOCK && sw.len() >= nb * GROUP);
    let cols = nb * BLOCK;
    let mut acc = [_mm512_setzero_ps(); N];
    // SAFETY: block b of input n is codes [n · cols + 32b, + 32), scale and correction n · nb + b,
    // all inside what the caller described; packed block b is bytes [512b, 512b + 512) of `pw`.
    unsafe {
        for b in 0..nb {
            let mut sums: [__m512i; N] =
                std::array::from_fn(|n| _mm512_set1_epi32(*xc.add(n * nb + b)));
            let wp = pw.as_ptr().add(b * PACKED_BLOCK);
            for g in 0..BLOCK / 4 {
                let w = _mm512_loadu_si512(wp.add(64 * g).cast());
                for (n, s) in sums.iter_mut().enumerate() {
                    let x = xq
                        .add(n * cols + b * BLOCK + 4 * g)
                        .cast::<i32>()
                        .read_unaligned();
                    *s = _mm512_dpbusd_epi32(*s, w, _mm512_set1_epi32(x));
                }
            }
            let swv = _mm512_loadu_ps(sw.as_ptr().add(b * GROUP));
            for (n, (a, s)) in acc.iter_mut().zip(sums).enumerate() {
                let d = _mm512_mul_ps(swv, _mm512_set1_ps(*xs.add(n * nb + b)));
                *a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), d, *a);
            }
        }
        for (n, a) in acc.into_iter().enumerate() {
            _mm512_mask_storeu_ps(out.add(n * stride), mask, a);
        }
    }
}
