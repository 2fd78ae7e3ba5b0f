//! Approximate nearest-neighbour search for corpora too large to scan: [`HnswIndex`], an HNSW graph
//! walked on int8 codes with an exact f32 re-rank of the final candidates.

mod dist;
mod graph;
pub mod hnsw;

pub use hnsw::{HnswIndex, HnswParams, MAX_M};

#[cfg(test)]
mod tests;
