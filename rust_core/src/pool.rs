//! Fixed-size rayon pools for callers that must not use every core (`gemma.threads`).
//!
//! Building a pool spawns its threads, so pools are made once per size and kept for the life of the
//! process; the number of distinct sizes a process asks for is tiny (one per setting).

use std::sync::{Mutex, OnceLock};

use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::errors::{CoreError, CoreResult};

/// Largest pool a caller may ask for.
pub const MAX_THREADS: usize = 256;

static POOLS: OnceLock<Mutex<Vec<(usize, &'static ThreadPool)>>> = OnceLock::new();

/// The process-wide pool of exactly `threads` workers, built on first request.
pub fn pool_for(threads: usize) -> CoreResult<&'static ThreadPool> {
    if threads == 0 || threads > MAX_THREADS {
        return Err(CoreError::invalid(format!(
            "threads must lie in 1..={MAX_THREADS}, got {threads}"
        )));
    }
    let pools = POOLS.get_or_init(|| Mutex::new(Vec::new()));
    let mut pools = pools
        .lock()
        .map_err(|_| CoreError::internal("thread pool registry poisoned"))?;
    if let Some((_, pool)) = pools.iter().find(|(n, _)| *n == threads) {
        return Ok(pool);
    }
    let pool = ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(move |i| format!("mcp-gemma-{threads}-{i}"))
        .build()
        .map_err(|e| CoreError::internal(format!("could not start {threads} threads: {e}")))?;
    // Kept for the process's life: pools are few (one per distinct size) and reused.
    let pool: &'static ThreadPool = Box::leak(Box::new(pool));
    pools.push((threads, pool));
    Ok(pool)
}

/// Run `f` on the pool of `threads` workers, or on rayon's global pool for `None`.
pub fn run_in<T: Send>(threads: Option<usize>, f: impl FnOnce() -> T + Send) -> CoreResult<T> {
    match threads {
        None => Ok(f()),
        Some(n) => Ok(pool_for(n)?.install(f)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_have_the_asked_size_and_are_reused() {
        let a = pool_for(3).expect("pool");
        assert_eq!(a.current_num_threads(), 3);
        assert!(std::ptr::eq(a, pool_for(3).expect("pool")));
        assert_eq!(run_in(Some(2), rayon::current_num_threads).expect("run"), 2);
        assert!(pool_for(0).is_err());
        assert!(pool_for(MAX_THREADS + 1).is_err());
    }
}
