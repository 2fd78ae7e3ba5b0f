//! mcp-gemma's Rust core: pure kernels (`vector`, `keyword`, `chunk`, `cache`, `fusion`, `q8`,
//! `f16mat`, `bert`) usable and
//! tested without Python, and, behind the default `python` feature, the `mcp_gemma._rust_core` module.
//! This file only declares modules and registers what Python sees.

pub mod ann;
pub mod bert;
pub mod bpe;
pub mod cache;
pub mod chunk;
pub mod codec;
pub mod errors;
pub mod f16mat;
pub mod fusion;
pub mod keyword;
pub mod pool;
pub mod q8;
pub mod vector;

#[cfg(feature = "python")]
mod py;

#[cfg(feature = "python")]
#[pyo3::pymodule]
mod _rust_core {
    use pyo3::prelude::*;

    #[pymodule_export]
    use crate::errors::RustCoreError;
    #[pymodule_export]
    use crate::py::ann::PyHnswIndex;
    #[pymodule_export]
    use crate::py::bert::{add_layer_norm, bert_attention, bias_gelu};
    #[pymodule_export]
    use crate::py::bpe::PyBpeTokenizer;
    #[pymodule_export]
    use crate::py::cache::PyTtlCache;
    #[pymodule_export]
    use crate::py::chunk::chunk_text;
    #[pymodule_export]
    use crate::py::f16mat::PyF16Matrix;
    #[pymodule_export]
    use crate::py::fusion::{fuse_rrf, fuse_weighted};
    #[pymodule_export]
    use crate::py::keyword::{tokenize, PyBm25Index};
    #[pymodule_export]
    use crate::py::q8::{
        add_rms_norm, gelu_times, gqa_attention, q8_kernel_level, q8_matmul_stacked, qk_norm_rope,
        rms_norm, PyQ8Matrix,
    };
    #[pymodule_export]
    use crate::py::vector::{simd_level, topk, topk_batch, PyVectorIndex};

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add(
            "build_profile",
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        )?;
        m.add("q8_avx512_built", cfg!(q8_avx512))?;
        Ok(())
    }
}
