//! The threads that run a training step's parallel regions: a fixed [`Team`] whose idle
//! workers wait for the next region by spinning for a while before they park.
//!
//! A step of a two-thread network is a dozen short parallel regions (each product, element-wise
//! pass and gather) separated by a few microseconds of work on one thread. Rayon's idle
//! workers yield to the OS 32 times and then sleep on a futex; on a virtual machine waking one
//! costs the waker 10-20 µs and the sleeper more. A step of 2x512 (under 0.4 ms) paid that
//! about nine times (`docs/performance.md`). A team's worker sees the next region by polling
//! one counter, within a cache-line transfer, and parks only after [`SPIN`] without work.
//!
//! Regions are broadcasts: every thread of the team runs the region's job with its own index,
//! the calling thread (the leader) as thread 0, and the call returns when all have finished.
//! [`for_each`] hands out the items of an iterator to the threads in runs of neighbours, so
//! they share uneven work as it comes. Which thread runs an item never changes a result (the
//! kernels fix every element's operations), so outputs are identical for any thread count.
//!
//! Kernels find the team through [`Team::install`], as rayon's `ThreadPool::install`; without
//! one they fall back to the current rayon pool.
//!
//! # Safety
//! The one unsafe operation: a region's job, a `&(dyn Fn(usize) + Sync)` borrowed for the
//! region, is handed to the workers through a raw pointer with its lifetime erased. The
//! leader writes the pointer before it publishes the region (a release increment of the
//! generation, which workers acquire) and clears it only after every worker has reported the
//! region done (a release decrement it acquires); a worker calls the job only between the two.
//! The leader does not return, nor unwind, before that report, so no worker can call a job
//! whose borrow has ended. Only the leader holding `busy` writes the pointer.
#![allow(unsafe_code)]

use std::any::Any;
use std::cell::{RefCell, UnsafeCell};
use std::hint::spin_loop;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long an idle worker polls for the next region before it parks. Longer than any gap
/// between a training step's regions (the longest, a step's sequential output layer and
/// loss, is a few tens of µs), short enough that a worker left idle (between runs, while
/// a report is written) gives its core back at once.
const SPIN: Duration = Duration::from_millis(1);

/// A region's job, its lifetime erased (see the module's safety contract).
type Job = *const (dyn Fn(usize) + Sync + 'static);

/// The state the leader and the workers share.
struct Shared {
    /// Threads in the team, the leader included.
    threads: usize,
    /// Incremented (release) by the leader to start a region, and once more to shut down.
    generation: AtomicU64,
    /// The current region's job, between its start and the last worker's report.
    job: UnsafeCell<Option<Job>>,
    /// Workers that have not finished the current region.
    pending: AtomicUsize,
    /// Held by the leader of a region: a second leader (a job using the team, or another
    /// thread) runs its region alone instead.
    busy: AtomicBool,
    /// The first panic of a worker in the current region, resumed on the leader.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    shutdown: AtomicBool,
    /// Workers parked (or about to park) on `wake`.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written only by the leader holding `busy` while no worker reads it, and read
// by workers only while the leader waits (the module's contract); every other field is `Sync`.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw pointer in `job` is only a borrowed `Sync` closure.
unsafe impl Send for Shared {}

/// A team of threads for relumax's parallel kernels: the calling thread and `threads - 1`
/// workers, alive until the team is dropped.
///
/// ```
/// let team = relumax::kernels::Team::new(2).unwrap();
/// let threads = team.install(relumax::kernels::current_threads);
/// assert_eq!(threads, 2);
/// ```
pub struct Team {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Team {
    /// Starts `threads - 1` workers (none for 0 or 1).
    ///
    /// # Errors
    /// When the OS refuses a thread; the workers already started are stopped.
    pub fn new(threads: usize) -> std::io::Result<Team> {
        let threads = threads.max(1);
        let mut team = Team {
            shared: Arc::new(Shared {
                threads,
                generation: AtomicU64::new(0),
                job: UnsafeCell::new(None),
                pending: AtomicUsize::new(0),
                busy: AtomicBool::new(false),
                panic: Mutex::new(None),
                shutdown: AtomicBool::new(false),
                sleepers: AtomicUsize::new(0),
                lock: Mutex::new(()),
                wake: Condvar::new(),
            }),
            workers: Vec::with_capacity(threads - 1),
        };
        for index in 1..threads {
            let shared = Arc::clone(&team.shared);
            let worker = thread::Builder::new()
                .name(format!("relumax-{index}"))
                .spawn(move || shared.work(index))?;
            team.workers.push(worker);
        }
        Ok(team)
    }

    /// Threads in the team, the calling thread included.
    pub fn threads(&self) -> usize {
        self.shared.threads
    }

    /// Runs `f` with this team as the one relumax's kernels use on this thread, as rayon's
    /// `ThreadPool::install` (but `f` runs on the calling thread, which leads each region).
    pub fn install<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Restore(Option<Arc<Shared>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                CURRENT.with(|c| *c.borrow_mut() = previous);
            }
        }
        let previous = CURRENT.with(|c| c.replace(Some(Arc::clone(&self.shared))));
        let _restore = Restore(previous);
        f()
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        self.shared.notify();
        for worker in self.workers.drain(..) {
            // A worker catches its jobs' panics, so it only ends by returning.
            let _ = worker.join();
        }
    }
}

thread_local! {
    /// The team installed on this thread.
    static CURRENT: RefCell<Option<Arc<Shared>>> = const { RefCell::new(None) };
}

fn current() -> Option<Arc<Shared>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// The threads the kernels called on this thread run on: the installed team, else (`None`)
/// the current rayon pool. Looked up once per region.
struct Here(Option<Arc<Shared>>);

impl Here {
    fn now() -> Here {
        Here(current())
    }

    fn threads(&self) -> usize {
        self.0
            .as_ref()
            .map_or_else(rayon::current_num_threads, |team| team.threads)
    }

    /// Runs `job(t)` once for every thread index `t` of the team, each on its own thread,
    /// and returns when all have finished; a panic in any is resumed here. Without a team,
    /// for every `t` below the rayon pool's thread count, in parallel as its threads steal
    /// them (nested `rayon::join`, which allocates nothing).
    fn broadcast(&self, job: &(dyn Fn(usize) + Sync)) {
        fn spread(job: &(dyn Fn(usize) + Sync), threads: std::ops::Range<usize>) {
            if threads.len() <= 1 {
                return threads.for_each(job);
            }
            let mid = threads.start + threads.len() / 2;
            rayon::join(
                || spread(job, threads.start..mid),
                || spread(job, mid..threads.end),
            );
        }
        match &self.0 {
            Some(team) => team.broadcast(job),
            None => spread(job, 0..self.threads()),
        }
    }
}

/// Threads the kernels called on this thread run on: the installed [`Team`]'s, else the
/// current rayon pool's.
pub fn current_threads() -> usize {
    Here::now().threads()
}

/// Items a thread takes at once from [`for_each`]'s iterator, at most.
const TAKE_MAX: usize = 16;

/// Runs `f` on every item of `items`, on the current threads when `parallel`, else in order on
/// the calling thread.
///
/// Threads take consecutive items in runs, each a share of what is left (guided scheduling):
/// long runs keep a thread streaming through neighbouring blocks of memory, the short runs at
/// the end balance the threads.
pub(crate) fn for_each<I, F>(parallel: bool, items: I, f: F)
where
    I: Iterator + Send,
    I::Item: Send,
    F: Fn(I::Item) + Sync,
{
    let here = Here::now();
    let threads = here.threads();
    if !parallel || threads < 2 {
        return items.for_each(f);
    }
    let items = Mutex::new(items);
    here.broadcast(&|_| {
        let mut run: [Option<I::Item>; TAKE_MAX] = std::array::from_fn(|_| None);
        loop {
            let taken = {
                let mut items = lock(&items);
                let take = (items.size_hint().0 / (2 * threads)).clamp(1, TAKE_MAX);
                run.iter_mut()
                    .take(take)
                    .map_while(|slot| items.next().map(|item| *slot = Some(item)))
                    .count()
            };
            if taken == 0 {
                break;
            }
            run[..taken]
                .iter_mut()
                .filter_map(Option::take)
                .for_each(&f);
        }
    });
}

/// Runs `a` and `b`, on two threads when there are two.
pub(crate) fn join(a: impl FnOnce() + Send, b: impl FnOnce() + Send) {
    let here = Here::now();
    if here.threads() < 2 {
        a();
        return b();
    }
    let (a, b) = (Mutex::new(Some(a)), Mutex::new(Some(b)));
    here.broadcast(&|t| match t {
        0 => lock(&a).take().into_iter().for_each(|a| a()),
        _ => lock(&b).take().into_iter().for_each(|b| b()),
    });
}

/// A lock whose holder cannot have panicked in a way that matters: the guarded values are
/// iterators and closures taken whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn broadcast(&self, job: &(dyn Fn(usize) + Sync)) {
        let workers = self.threads - 1;
        if workers == 0
            || self
                .busy
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return (0..self.threads).for_each(job);
        }
        // SAFETY: the module's contract: the borrow outlives every worker's use, since this
        // function returns only after all have reported the region done.
        let erased: &'static (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(job) };
        // SAFETY: this thread holds `busy` and every worker has reported the previous region.
        unsafe { *self.job.get() = Some(erased as Job) };
        self.pending.store(workers, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            self.notify();
        }
        let own = panic::catch_unwind(AssertUnwindSafe(|| job(0)));
        let mut spins = 0u32;
        while self.pending.load(Ordering::Acquire) != 0 {
            if spins < 1 << 16 {
                spins += 1;
                spin_loop();
            } else {
                thread::yield_now();
            }
        }
        // SAFETY: every worker has reported the region done.
        unsafe { *self.job.get() = None };
        let theirs = lock(&self.panic).take();
        self.busy.store(false, Ordering::Release);
        if let Err(payload) = own {
            panic::resume_unwind(payload);
        }
        if let Some(payload) = theirs {
            panic::resume_unwind(payload);
        }
    }

    fn notify(&self) {
        let _guard = lock(&self.lock);
        self.wake.notify_all();
    }

    /// A worker's life: each region's job, until shutdown.
    fn work(&self, index: usize) {
        let mut seen = 0;
        loop {
            seen = self.wait(seen);
            if self.shutdown.load(Ordering::Acquire) {
                return;
            }
            // SAFETY: the leader set the job before publishing generation `seen` (acquired by
            // `wait`) and keeps it until this worker's report below.
            let job = unsafe { (*self.job.get()).expect("a published region has a job") };
            // SAFETY: as above: the borrow behind `job` lasts until the report.
            let result = panic::catch_unwind(AssertUnwindSafe(|| unsafe { (*job)(index) }));
            if let Err(payload) = result {
                lock(&self.panic).get_or_insert(payload);
            }
            self.pending.fetch_sub(1, Ordering::Release);
        }
    }

    /// Waits for a generation other than `seen`: polls for [`SPIN`], then parks.
    fn wait(&self, seen: u64) -> u64 {
        let start = Instant::now();
        let mut polls = 0u32;
        loop {
            let generation = self.generation.load(Ordering::Acquire);
            if generation != seen {
                return generation;
            }
            spin_loop();
            polls = polls.wrapping_add(1);
            if polls.is_multiple_of(256) && start.elapsed() >= SPIN {
                break;
            }
        }
        let mut guard = lock(&self.lock);
        // Announced before the check, and the leader checks for sleepers after it publishes a
        // region (both sequentially consistent): one of the two sees the other.
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let generation = loop {
            let generation = self.generation.load(Ordering::SeqCst);
            if generation != seen {
                break generation;
            }
            guard = self
                .wake
                .wait(guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        };
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A region on this thread's threads.
    fn broadcast(job: &(dyn Fn(usize) + Sync)) {
        Here::now().broadcast(job);
    }

    #[test]
    fn every_thread_runs_each_region_once() {
        for threads in [1, 2, 3] {
            let team = Team::new(threads).unwrap();
            team.install(|| {
                for _ in 0..1000 {
                    let ran: Vec<AtomicUsize> = (0..threads).map(|_| AtomicUsize::new(0)).collect();
                    broadcast(&|t| {
                        ran[t].fetch_add(1, Ordering::Relaxed);
                    });
                    assert!(ran.iter().all(|r| r.load(Ordering::Relaxed) == 1));
                }
            });
        }
    }

    #[test]
    fn for_each_visits_every_item_once_on_every_thread() {
        let team = Team::new(2).unwrap();
        let threads_seen = Mutex::new(std::collections::HashSet::new());
        let hits: Vec<AtomicUsize> = (0..4000).map(|_| AtomicUsize::new(0)).collect();
        team.install(|| {
            for_each(true, hits.iter(), |h| {
                h.fetch_add(1, Ordering::Relaxed);
                lock(&threads_seen).insert(thread::current().id());
                // Long enough that the worker takes some items too.
                let until = Instant::now() + Duration::from_micros(5);
                while Instant::now() < until {}
            });
        });
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        assert_eq!(lock(&threads_seen).len(), 2);
    }

    #[test]
    fn parked_workers_wake_for_the_next_region() {
        let team = Team::new(2).unwrap();
        team.install(|| {
            for _ in 0..3 {
                thread::sleep(SPIN * 3);
                let ran = AtomicUsize::new(0);
                broadcast(&|_| {
                    ran.fetch_add(1, Ordering::Relaxed);
                });
                assert_eq!(ran.load(Ordering::Relaxed), 2);
            }
        });
    }

    #[test]
    fn panics_reach_the_leader_and_the_team_goes_on() {
        let team = Team::new(2).unwrap();
        team.install(|| {
            for culprit in [0, 1] {
                let result = panic::catch_unwind(|| {
                    broadcast(&|t| assert!(t != culprit, "thread {t} fails"));
                });
                let payload = result.expect_err("the region's panic is resumed");
                let message = payload.downcast_ref::<String>().unwrap();
                assert_eq!(message, &format!("thread {culprit} fails"));
            }
            let ran = AtomicUsize::new(0);
            broadcast(&|_| {
                ran.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(ran.load(Ordering::Relaxed), 2);
        });
    }

    #[test]
    fn a_region_inside_a_region_runs_on_its_own_thread() {
        let team = Team::new(2).unwrap();
        let inner = AtomicUsize::new(0);
        team.install(|| {
            broadcast(&|t| {
                if t == 0 {
                    // The leader's own region is in flight: this one runs here, whole.
                    for_each(true, 0..10, |_| {
                        inner.fetch_add(1, Ordering::Relaxed);
                    });
                }
            });
        });
        assert_eq!(inner.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn join_runs_both_and_install_restores_the_previous_team() {
        let (a, b) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let outer = Team::new(3).unwrap();
        outer.install(|| {
            Team::new(2).unwrap().install(|| {
                assert_eq!(current_threads(), 2);
                join(
                    || {
                        a.fetch_add(1, Ordering::Relaxed);
                    },
                    || {
                        b.fetch_add(1, Ordering::Relaxed);
                    },
                );
            });
            assert_eq!(current_threads(), 3);
        });
        assert_eq!((a.into_inner(), b.into_inner()), (1, 1));
        assert!(current().is_none());
    }
}
