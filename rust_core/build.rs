//! Build script: sets `cfg(q8_avx512)` when the compiler has the AVX-512 intrinsics as stable API
//! (Rust 1.89 and later), so the int8 AVX-512 VNNI kernels build there and older compilers (the
//! crate's `rust-version` is 1.85; Debian's packaged rustc may be that old) leave them out and keep
//! the AVX2 kernels. Which kernel runs is still decided at run time from the CPU's features.

use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(q8_avx512)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=RUSTC");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| minor_version(&text));
    if version.is_some_and(|minor| minor >= 89) {
        println!("cargo::rustc-cfg=q8_avx512");
    }
}

/// The minor version of `rustc 1.MINOR.PATCH (...)`, for a 1.x compiler.
fn minor_version(text: &str) -> Option<u32> {
    let release = text.split_whitespace().nth(1)?;
    let mut parts = release.split('.');
    if parts.next()? != "1" {
        return None;
    }
    parts.next()?.parse().ok()
}
