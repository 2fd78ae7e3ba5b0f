//! `BpeTokenizer`: the Gemma tokenizer's encode / decode (see `crate::bpe`), loaded from its compact file.

use std::path::PathBuf;

use pyo3::prelude::*;

use crate::bpe::{format, AddedToken, BpeTokenizer};

/// Texts at least this long are encoded with the GIL released.
const DETACH_BYTES: usize = 4096;

/// Immutable byte-fallback BPE tokenizer; see `_rust_core.pyi`.
#[pyclass(name = "BpeTokenizer", module = "mcp_gemma._rust_core", frozen)]
pub struct PyBpeTokenizer {
    inner: BpeTokenizer,
}

#[pymethods]
impl PyBpeTokenizer {
    #[staticmethod]
    #[pyo3(signature = (vocab, merges, added, unk_token, bos_token))]
    fn build(
        py: Python<'_>,
        vocab: Vec<(String, u32)>,
        merges: Vec<(String, String)>,
        added: Vec<(u32, String, bool)>,
        unk_token: Option<String>,
        bos_token: Option<String>,
    ) -> PyResult<Self> {
        let added = added
            .into_iter()
            .map(|(id, content, special)| AddedToken {
                id,
                content,
                special,
            })
            .collect();
        let inner = py.detach(|| {
            BpeTokenizer::new(
                vocab,
                &merges,
                added,
                unk_token.as_deref(),
                bos_token.as_deref(),
            )
        })?;
        Ok(Self { inner })
    }

    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner = py.detach(|| format::load(&path))?;
        Ok(Self { inner })
    }

    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| format::save(&self.inner, &path))?;
        Ok(())
    }

    #[pyo3(signature = (text, add_special_tokens=true))]
    fn encode(&self, py: Python<'_>, text: String, add_special_tokens: bool) -> Vec<u32> {
        if text.len() >= DETACH_BYTES {
            py.detach(|| self.inner.encode(&text, add_special_tokens))
        } else {
            self.inner.encode(&text, add_special_tokens)
        }
    }

    #[pyo3(signature = (ids, skip_special_tokens=true))]
    fn decode(&self, ids: &Bound<'_, PyAny>, skip_special_tokens: bool) -> PyResult<String> {
        let ids: Vec<u32> = super::arg(ids, "ids", "a sequence of token ids (0 to 2**32 - 1)")?;
        Ok(self.inner.decode(&ids, skip_special_tokens))
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    fn pieces(&self, py: Python<'_>) -> Vec<Option<String>> {
        py.detach(|| {
            (0..self.inner.vocab_size() as u32)
                .map(|id| (!self.inner.is_special(id)).then(|| self.inner.decode(&[id], false)))
                .collect()
        })
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }
}
