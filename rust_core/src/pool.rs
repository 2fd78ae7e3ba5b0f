//! Fixed-size rayon pools for callers that must not use every core (`gemma.threads`), and
//! [`share`], the fork-join in which the calling thread does its part.
//!
//! Building a pool spawns its threads, so pools are made once per size and kept for the life of the
//! process; the number of distinct sizes a process asks for is tiny (one per setting).

use std::sync::atomic::{AtomicUsize, Ordering};
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

/// Runs tasks `0..tasks` on the calling thread and up to `helpers` workers of the current rayon
/// pool, each participant claiming the next task from one counter until none is left; returns each
/// participant's state (made by `state`, passed to every task it runs), the caller's first.
///
/// Why not a parallel iterator: called from a thread outside the pool (Python's), a parallel
/// iterator hands everything to the workers and waits, and after the pool sat idle for a few hundred
/// milliseconds the kernel often woke both workers onto one CPU (on the 2-vCPU VMs this runs on, an
/// idle vCPU looks busy to the scheduler), so the work ran at one core's speed or worse: a 100k-row
/// scan 10-11 ms instead of 5, a query's embedding 12 ms against 8.5 ms on one thread. Here the
/// caller starts at once on its own CPU, a helper that is late finds less (or nothing) left, and the
/// work takes at most about what the caller alone would take.
///
/// Each participant claims tasks in increasing order. On a pool of one thread the caller works
/// alone, as the pool's one thread would have: a thread limit (`RAYON_NUM_THREADS=1`, a pool from
/// [`pool_for`]) still bounds the threads at work.
pub fn share<S: Send>(
    tasks: usize,
    helpers: usize,
    state: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, usize) + Sync,
) -> Vec<S> {
    let next = AtomicUsize::new(0);
    let run = || {
        let mut own = state();
        loop {
            let task = next.fetch_add(1, Ordering::Relaxed);
            if task >= tasks {
                return own;
            }
            work(&mut own, task);
        }
    };
    let helpers = if rayon::current_num_threads() < 2 {
        0
    } else {
        helpers.min(tasks.saturating_sub(1))
    };
    if helpers == 0 {
        return vec![run()];
    }
    let done = Mutex::new(Vec::with_capacity(helpers));
    let mut mine = None;
    rayon::in_place_scope(|s| {
        for _ in 0..helpers {
            s.spawn(|_| {
                let theirs = run();
                done.lock().unwrap_or_else(|e| e.into_inner()).push(theirs);
            });
        }
        mine = Some(run());
    });
    let mut all: Vec<S> = mine.into_iter().collect();
    all.extend(done.into_inner().unwrap_or_else(|e| e.into_inner()));
    all
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

    #[test]
    fn share_runs_every_task_once_in_increasing_order_per_participant() {
        for threads in [1, 2, 4] {
            for (tasks, helpers) in [(0, 3), (1, 3), (2, 0), (7, 1), (1000, 3), (1000, 64)] {
                let seen = pool_for(threads).expect("pool").install(|| {
                    share(tasks, helpers, Vec::new, |own: &mut Vec<usize>, t| {
                        own.push(t)
                    })
                });
                assert!(!seen.is_empty() && seen.len() <= helpers.min(tasks.max(1) - 1) + 1);
                if threads == 1 {
                    assert_eq!(seen.len(), 1, "a one-thread pool: the caller alone");
                }
                for own in &seen {
                    assert!(own.windows(2).all(|w| w[0] < w[1]), "{own:?}");
                }
                let mut all: Vec<usize> = seen.concat();
                all.sort_unstable();
                assert_eq!(
                    all,
                    (0..tasks).collect::<Vec<_>>(),
                    "{threads} threads, {helpers} helpers"
                );
            }
        }
    }
}
