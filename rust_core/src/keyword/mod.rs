//! Keyword search: Unicode word analyzers and an in-memory BM25 index.

pub mod bm25;
pub mod stem;
pub mod tokenizer;

pub use bm25::Bm25Index;
pub use tokenizer::{tokenize, Analyzer};
