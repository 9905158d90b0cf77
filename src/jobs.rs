//! Running independent work on a bounded number of threads, with results in input order.
//!
//! Owns: `map` and `join`, the ways the tool runs work in parallel (istioctl renders, the plans
//! of a fleet, a plan's rollbacks and injection tables, layout's directories, emit's digests,
//! write's read-back; `join` for two different tasks): at most `jobs` threads of
//! `std::thread::scope`, each taking the next item, every result put back at its item's index,
//! so what the caller sees does not depend on scheduling. Must not: know what the work is,
//! start processes, or print.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// The default `--jobs`: the cores this process may use (1 when that cannot be told).
pub fn available() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

/// `f` applied to every item on at most `jobs` threads; the results in the items' order. With
/// one job, or one item, everything runs on the calling thread.
pub fn map<T: Sync, R: Send>(
    items: &[T],
    jobs: NonZeroUsize,
    f: impl Fn(usize, &T) -> R + Sync,
) -> Vec<R> {
    let threads = jobs.get().min(items.len());
    if threads <= 1 {
        return items.iter().enumerate().map(|(i, t)| f(i, t)).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new(items.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(item) = items.get(i) else { break };
                let r = f(i, item);
                results.lock().unwrap_or_else(PoisonError::into_inner)[i] = Some(r);
            });
        }
    });
    // A thread that panicked re-raises its panic when the scope ends, so every slot is filled.
    results
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .into_iter()
        .flatten()
        .collect()
}

/// `a()` and `b()`, `b` on a thread of its own when `jobs` allows two; with one job both run on
/// the calling thread, `a` first. A panic in either is re-raised.
pub fn join<A: Send, B: Send>(
    jobs: NonZeroUsize,
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    if jobs.get() < 2 {
        let a = a();
        return (a, b());
    }
    std::thread::scope(|scope| {
        let other = scope.spawn(b);
        let a = a();
        match other.join() {
            Ok(b) => (a, b),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_item_order_whatever_the_number_of_jobs() {
        let items: Vec<u64> = (0..50).collect();
        for jobs in [1, 2, 7, 100] {
            let jobs = NonZeroUsize::new(jobs).unwrap();
            let out = map(&items, jobs, |i, x| {
                // Uneven work, so threads finish out of order.
                std::thread::sleep(std::time::Duration::from_micros((50 - x) * 20));
                (i as u64, x * 2)
            });
            let expected: Vec<(u64, u64)> = items.iter().map(|x| (*x, x * 2)).collect();
            assert_eq!(out, expected, "jobs {jobs}");
        }
    }

    #[test]
    fn never_runs_more_than_jobs_items_at_once() {
        let items = vec![(); 20];
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        map(&items, NonZeroUsize::new(3).unwrap(), |_, ()| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(2));
            running.fetch_sub(1, Ordering::SeqCst);
        });
        assert!(most.load(Ordering::SeqCst) <= 3);
    }

    #[test]
    fn join_runs_both_tasks_on_two_threads_only_when_jobs_allow_two() {
        let me = std::thread::current().id();
        for (jobs, apart) in [(1, false), (2, true), (8, true)] {
            let jobs = NonZeroUsize::new(jobs).unwrap();
            let (a, b) = join(
                jobs,
                || (std::thread::current().id(), "a"),
                || (std::thread::current().id(), "b"),
            );
            assert_eq!((a.1, b.1), ("a", "b"));
            assert_eq!(a.0, me, "`a` runs on the calling thread");
            assert_eq!(b.0 != me, apart, "jobs {jobs}");
        }
    }

    #[test]
    fn a_panic_in_the_joined_task_reaches_the_caller() {
        let caught = std::panic::catch_unwind(|| {
            join(
                NonZeroUsize::new(2).unwrap(),
                || 1,
                || -> u8 { panic!("b failed") },
            )
        });
        let panic = caught.expect_err("the panic is re-raised");
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"b failed"));
    }
}
