//! Jobs run side by side while their threads fit the cores: `relumax paper`'s small networks,
//! which train on one thread each, share a two-core machine two at a time instead of leaving a
//! core idle.

use std::any::Any;
use std::ops::ControlFlow;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::thread;

/// How many jobs may run at once, and on how many threads together.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Jobs at once.
    pub jobs: usize,
    /// Threads of the jobs running at once (a job wider than this runs alone).
    pub cores: usize,
}

/// Runs `run(j)` for every job `j` below `count`, each on a thread of its own. Whenever a job
/// ends, the waiting jobs are started in order, each one whose `threads(j)` fit the cores the
/// running ones leave and that `fits(running, j)` allows (the memory), while `limits.jobs`
/// allows. `finished(j, result)` sees each result on the calling thread, in the order the jobs
/// end; after a `Break` no job starts, and the running ones are awaited. A job's panic is
/// resumed here once the others have ended.
pub fn run<R: Send>(
    count: usize,
    limits: Limits,
    threads: impl Fn(usize) -> usize,
    fits: impl Fn(&[usize], usize) -> bool,
    run: impl Fn(usize) -> R + Sync,
    mut finished: impl FnMut(usize, R) -> ControlFlow<()>,
) {
    let run = &run;
    let mut panicked: Option<Box<dyn Any + Send>> = None;
    thread::scope(|scope| {
        let (tx, rx) = mpsc::channel();
        let mut waiting: Vec<usize> = (0..count).collect();
        let mut running: Vec<usize> = Vec::new();
        let mut stop = false;
        loop {
            let mut k = 0;
            while !stop && k < waiting.len() && running.len() < limits.jobs.max(1) {
                let j = waiting[k];
                let busy: usize = running.iter().map(|&r| threads(r)).sum();
                let room = running.is_empty() || busy + threads(j) <= limits.cores;
                if !(room && fits(&running, j)) {
                    k += 1;
                    continue;
                }
                waiting.remove(k);
                running.push(j);
                let tx = tx.clone();
                scope.spawn(move || {
                    let result = panic::catch_unwind(AssertUnwindSafe(|| run(j)));
                    // The receiver outlives every job (it waits for all that started).
                    let _ = tx.send((j, result));
                });
            }
            if running.is_empty() {
                break;
            }
            let (j, result) = rx.recv().expect("a started job reports its end");
            running.retain(|&r| r != j);
            match result {
                Ok(result) => stop |= finished(j, result).is_break(),
                Err(payload) => {
                    stop = true;
                    panicked.get_or_insert(payload);
                }
            }
        }
    });
    if let Some(payload) = panicked {
        panic::resume_unwind(payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Runs jobs of the given thread counts; returns the most threads busy at once and the
    /// order in which they ended.
    fn schedule(widths: &[usize], limits: Limits) -> (usize, Vec<usize>) {
        let (busy, peak) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let mut ended = Vec::new();
        run(
            widths.len(),
            limits,
            |j| widths[j],
            |_, _| true,
            |j| {
                let now = busy.fetch_add(widths[j], Ordering::SeqCst) + widths[j];
                peak.fetch_max(now, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(20));
                busy.fetch_sub(widths[j], Ordering::SeqCst);
                j
            },
            |j, r| {
                assert_eq!(j, r);
                ended.push(j);
                ControlFlow::Continue(())
            },
        );
        (peak.into_inner(), ended)
    }

    #[test]
    fn one_thread_jobs_pair_up_and_wide_ones_run_alone() {
        let two = Limits { jobs: 8, cores: 2 };
        let (peak, ended) = schedule(&[1, 1, 2, 1, 1, 2], two);
        assert_eq!(peak, 2);
        let mut sorted = ended.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 2, 3, 4, 5], "every job ran once");
        // A job wider than the machine still runs, alone.
        assert_eq!(schedule(&[4, 1], two).0, 4);
        // One job at a time: in order.
        let one = Limits { jobs: 1, cores: 2 };
        assert_eq!(schedule(&[1, 1, 2, 1], one), (2, vec![0, 1, 2, 3]));
    }

    #[test]
    fn a_break_starts_nothing_more_and_a_panic_is_resumed() {
        let started = Mutex::new(Vec::new());
        let limits = Limits { jobs: 2, cores: 2 };
        run(
            5,
            limits,
            |_| 1,
            |_, _| true,
            |j| started.lock().unwrap().push(j),
            |_, ()| ControlFlow::Break(()),
        );
        assert!(started.lock().unwrap().len() <= 2);
        let result = panic::catch_unwind(|| {
            run(
                3,
                limits,
                |_| 1,
                |_, _| true,
                |j| assert!(j != 1, "job 1"),
                |_, ()| ControlFlow::Continue(()),
            )
        });
        let payload = result.expect_err("job 1's panic reaches the caller");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"job 1"));
    }

    #[test]
    fn a_job_that_does_not_fit_beside_others_runs_alone() {
        let log = Mutex::new(Vec::new());
        let limits = Limits { jobs: 2, cores: 2 };
        // Job 1 fits beside nothing, and nothing beside it.
        run(
            3,
            limits,
            |_| 1,
            |running, j| running.is_empty() || j != 1 && !running.contains(&1),
            |j| {
                log.lock().unwrap().push((j, true));
                thread::sleep(Duration::from_millis(20));
                log.lock().unwrap().push((j, false));
            },
            |_, ()| ControlFlow::Continue(()),
        );
        let log = log.into_inner().unwrap();
        let start = log.iter().position(|&e| e == (1, true)).unwrap();
        assert_eq!(
            log[start + 1],
            (1, false),
            "nothing started or ended beside job 1: {log:?}"
        );
        // Jobs 0 and 2 ran side by side (started before either ended), before or after it.
        assert_eq!(log.len(), 6);
        let others: Vec<_> = log.iter().filter(|e| e.0 != 1).map(|e| e.1).collect();
        assert_eq!(others, [true, true, false, false], "{log:?}");
    }
}
