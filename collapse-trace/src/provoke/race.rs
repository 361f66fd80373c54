//! `page-filled`: fault a hole in while MADV_COLLAPSE works on the range.
//!
//! collapse_file() leaves holes empty while it copies the present pages and checks them again
//! before committing; a page that appeared meanwhile makes it roll back with `page_filled`
//! (EAGAIN). A second thread, spawned once and driven per try through atomics (spinning: a
//! sleeping wake-up is far coarser than the window), writes to one hole after a random delay.

use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::ScenarioTally;
use super::scenarios::{HugeFile, NR_PAGES, PAGE, record_first_aware};
use super::tmpfs::TmpfsMount;

/// Where the toucher's delay is drawn from: uniformly in 0..window, window being the shortest
/// successful MADV_COLLAPSE seen so far in this run.
///
/// Measured on 6.18 (2 vCPUs, idle): a successful collapse of the 1-in-4 file takes ~190-300 us;
/// a touch 60-150 us after the call starts gives `page_filled` nearly every time, earlier ones
/// `page_not_in_lru` / `could_not_delete_page_from_lru`, later ones a success. Drawing over the
/// whole call gives every outcome, about 40% `page_filled`, and scales with the machine. The
/// minimum (not an average) keeps tries stretched by preemption from widening the window, which
/// would make most tries succeed, feeding more long samples (seen under CPU load).
const INITIAL_WINDOW_NS: u64 = 300_000;
/// Bounds for the window.
const WINDOW_NS_BOUNDS: (u64, u64) = (20_000, 5_000_000);
/// After this many tries in a row without a success, the window is presumably too short for
/// this machine (every touch lands too early): widen it by half.
const WIDEN_AFTER: u32 = 16;

/// How long the main thread waits for the toucher before giving up.
const TOUCH_TIMEOUT: Duration = Duration::from_secs(10);

/// One try's orders for the toucher thread, published before `go` is bumped.
#[derive(Default)]
struct Shared {
    /// Try number; the toucher acknowledges it, then waits for `started`.
    go: AtomicU64,
    /// Try number the toucher has seen (so it is on a CPU right now).
    ack: AtomicU64,
    /// Try number whose `start_ns` is set: the collapse call is about to be made.
    started: AtomicU64,
    /// Try number the toucher has finished (its write is done).
    done: AtomicU64,
    /// Address of the hole page to write.
    target: AtomicUsize,
    /// When the try starts, in ns since the shared base instant.
    start_ns: AtomicU64,
    /// How long after the start to write.
    delay_ns: AtomicU64,
    /// Tells the toucher to exit.
    stop: AtomicBool,
}

/// Sets `stop` when dropped, so the toucher exits (and the scope can join it) on every path,
/// panics included.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// xorshift64*: a tiny PRNG; the delay only needs to vary, not be unpredictable.
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

    /// Uniform-ish in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The toucher's delay window, adapted from successful collapse durations.
struct Window {
    ns: u64,
    seen_ok: bool,
    tries_since_ok: u32,
}

impl Window {
    fn new() -> Self {
        Window {
            ns: INITIAL_WINDOW_NS,
            seen_ok: false,
            tries_since_ok: 0,
        }
    }

    fn update(&mut self, ok: bool, took_ns: u64) {
        if ok {
            self.ns = if self.seen_ok {
                self.ns.min(took_ns)
            } else {
                took_ns
            };
            self.seen_ok = true;
            self.tries_since_ok = 0;
        } else {
            self.tries_since_ok += 1;
            if self.tries_since_ok >= WIDEN_AFTER {
                self.ns += self.ns / 2;
                self.tries_since_ok = 0;
            }
        }
        self.ns = self.ns.clamp(WINDOW_NS_BOUNDS.0, WINDOW_NS_BOUNDS.1);
    }
}

/// Runs the race `iterations` times; each try starts from a fresh file with pages 0, 4, 8, …
/// present and the rest holes.
pub(super) fn page_filled(
    mount: &TmpfsMount,
    iterations: u32,
    st: &mut ScenarioTally,
) -> Result<()> {
    let shared = Shared::default();
    let base = Instant::now();
    let mut window = Window::new();
    let mut rng = Rng::seeded();
    std::thread::scope(|s| -> Result<()> {
        let _stop = StopOnDrop(&shared.stop);
        s.spawn(|| toucher(&shared, base));
        for i in 0..iterations {
            let f = HugeFile::create(mount, &format!("page-filled-{i}"))?;
            f.touch(|p| p.is_multiple_of(4));
            // A hole page: any index not a multiple of 4.
            let hole = loop {
                let p = rng.below(NR_PAGES as u64) as usize;
                if !p.is_multiple_of(4) {
                    break p;
                }
            };
            let try_no = u64::from(i) + 1;
            shared
                .target
                .store(f.addr() as usize + hole * PAGE, Ordering::Relaxed);
            shared
                .delay_ns
                .store(rng.below(window.ns), Ordering::Relaxed);
            shared.go.store(try_no, Ordering::Release);
            // Start only once the toucher is known to be running: under CPU load a descheduled
            // toucher would otherwise touch long after the collapse is over.
            wait_for(&shared.ack, try_no)?;
            shared.start_ns.store(elapsed_ns(base), Ordering::Relaxed);
            shared.started.store(try_no, Ordering::Release);
            let t0 = Instant::now();
            let outcome = f.collapse();
            let took_ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
            window.update(outcome.is_ok(), took_ns);
            // The toucher must be done with the page before the file is unmapped.
            if let Err(e) = wait_for(&shared.done, try_no) {
                // It may still write into the mapping: leak it rather than risk a SIGSEGV.
                std::mem::forget(f);
                return Err(e);
            }
            if !record_first_aware(st, outcome) {
                break;
            }
        }
        log::debug!("page-filled: delay window ended at {} us", window.ns / 1000);
        Ok(())
    })
}

fn elapsed_ns(base: Instant) -> u64 {
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Spins until `flag` reaches `value`, or gives up after [`TOUCH_TIMEOUT`].
fn wait_for(flag: &AtomicU64, value: u64) -> Result<()> {
    let start = Instant::now();
    while flag.load(Ordering::Acquire) != value {
        if start.elapsed() > TOUCH_TIMEOUT {
            bail!("page-filled toucher thread did not answer for try {value} in time");
        }
        std::hint::spin_loop();
    }
    Ok(())
}

/// The second thread: per try, acknowledge, wait for the start, spin until start + delay, then
/// write one byte into the hole page.
fn toucher(shared: &Shared, base: Instant) {
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
        shared.ack.store(try_no, Ordering::Release);
        while shared.started.load(Ordering::Acquire) != try_no {
            if shared.stop.load(Ordering::Acquire) {
                return;
            }
            std::hint::spin_loop();
        }
        let target = shared.target.load(Ordering::Relaxed) as *mut u8;
        // Measured from the main thread's start stamp, so our own wake-up lag does not count.
        let deadline =
            shared.start_ns.load(Ordering::Relaxed) + shared.delay_ns.load(Ordering::Relaxed);
        while elapsed_ns(base) < deadline {
            std::hint::spin_loop();
        }
        // SAFETY: `target` is a page inside the current try's live MAP_SHARED mapping; the main
        // thread does not unmap it until we publish `done` below.
        unsafe { ptr::write_volatile(target, 1u8) };
        shared.done.store(try_no, Ordering::Release);
    }
}
