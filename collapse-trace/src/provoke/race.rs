//! `page-filled`: fault a hole in while MADV_COLLAPSE works on the range.
//!
//! collapse_file() leaves holes empty while it copies the present pages and checks them again
//! at the end; a page that appeared meanwhile makes it roll back with `page_filled` (EAGAIN).
//! A second thread, spawned once and driven per try through atomics (spinning, since sleeping
//! wake-ups are far coarser than the window), touches one hole after a random short spin.

use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::ScenarioTally;
use super::scenarios::{HugeFile, NR_PAGES, PAGE, record_first_aware};

/// One try's orders for the toucher thread, published before `go` is bumped.
#[derive(Default)]
struct Shared {
    /// Try number; the toucher starts when it changes.
    go: AtomicU64,
    /// Try number the toucher has finished (its write is done).
    done: AtomicU64,
    /// Address of the hole page to write.
    target: AtomicUsize,
    /// How long to spin before writing.
    delay_ns: AtomicU64,
    /// Tells the toucher to exit.
    stop: AtomicBool,
}

/// Sets `stop` when dropped, so the scoped toucher exits (and the scope can join) on every path,
/// panics included.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// xorshift64*: a tiny PRNG; the spin length only needs to vary, not be unpredictable.
struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Rng((t ^ (u64::from(std::process::id()) << 32)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `lo..hi` (hi > lo).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// The toucher's delay is drawn uniformly from 0 to the running average duration of a
/// successful MADV_COLLAPSE here. Measured on 6.18 (2 cores): a success takes ~270 us and
/// `page_filled` comes from delays of about 0.25-0.6 of that (earlier touches give
/// `page_not_in_lru` / `could_not_delete_page_from_lru`, later ones a success), so a spread over
/// the whole call gives every outcome and ~20% `page_filled`, and scales with the machine.
const INITIAL_WINDOW_NS: u64 = 300_000;
/// Bounds for the adapted window, against outliers (a slow huge-page allocation, preemption).
const WINDOW_NS_BOUNDS: (u64, u64) = (20_000, 5_000_000);

/// How long the main thread waits for the toucher before giving up on a try.
const TOUCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the race `iterations` times; each try starts from a fresh file with pages 0, 4, 8, …
/// present and the rest holes.
pub(super) fn page_filled(
    dir: &std::path::Path,
    iterations: u32,
    st: &mut ScenarioTally,
) -> Result<()> {
    let shared = Shared::default();
    let mut window_ns = INITIAL_WINDOW_NS;
    let mut rng = Rng::seeded();
    std::thread::scope(|s| -> Result<()> {
        let _stop = StopOnDrop(&shared.stop);
        s.spawn(|| toucher(&shared));
        for i in 0..iterations {
            let f = HugeFile::create(dir, &format!("page-filled-{i}"))?;
            f.touch(|p| p % 4 == 0);
            // A hole page: any index not a multiple of 4.
            let hole = loop {
                let p = rng.range(0, NR_PAGES as u64) as usize;
                if p % 4 != 0 {
                    break p;
                }
            };
            let try_no = u64::from(i) + 1;
            shared
                .target
                .store(f.addr() as usize + hole * PAGE, Ordering::Relaxed);
            shared
                .delay_ns
                .store(rng.range(0, window_ns), Ordering::Relaxed);
            shared.go.store(try_no, Ordering::Release);
            let t0 = Instant::now();
            let outcome = f.collapse();
            let took_ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
            if outcome.is_ok() {
                // Exponential average (weight 1/8) of how long a whole collapse takes.
                window_ns = (window_ns * 7 + took_ns) / 8;
                window_ns = window_ns.clamp(WINDOW_NS_BOUNDS.0, WINDOW_NS_BOUNDS.1);
            }
            // The toucher must be done with the page before the file is unmapped.
            let start = Instant::now();
            while shared.done.load(Ordering::Acquire) != try_no {
                if start.elapsed() > TOUCH_TIMEOUT {
                    // It may still write into the mapping: leak it rather than risk a SIGSEGV.
                    std::mem::forget(f);
                    bail!("page-filled toucher thread did not finish try {try_no} in time");
                }
                std::hint::spin_loop();
            }
            if !record_first_aware(st, outcome) {
                break;
            }
        }
        Ok(())
    })
}

/// The second thread: per try, spin the given delay, then write one byte into the hole page.
fn toucher(shared: &Shared) {
    let mut seen = 0;
    loop {
        let try_no = loop {
            if shared.stop.load(Ordering::Acquire) {
                return;
            }
            let g = shared.go.load(Ordering::Acquire);
            if g != seen {
                break g;
            }
            std::hint::spin_loop();
        };
        seen = try_no;
        let target = shared.target.load(Ordering::Relaxed) as *mut u8;
        let delay = Duration::from_nanos(shared.delay_ns.load(Ordering::Relaxed));
        let start = Instant::now();
        while start.elapsed() < delay {
            std::hint::spin_loop();
        }
        // SAFETY: `target` is a page inside the current try's live MAP_SHARED mapping; the main
        // thread does not unmap it until we publish `done` below.
        unsafe { ptr::write_volatile(target, 1u8) };
        shared.done.store(try_no, Ordering::Release);
    }
}
