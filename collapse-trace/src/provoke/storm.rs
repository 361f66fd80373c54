//! `storm`: MADV_COLLAPSE in a tight (or paced) loop on one range, for benchmarks.
//!
//! Two ranges (measured on 6.18, 2 vCPUs):
//! - [`StormRange::Collapsed`]: a 2 MiB tmpfs file collapsed once up front; every further call
//!   finds it already huge and returns 0 at once. One event per call (`scan_file`,
//!   `pte_mapped_hugepage`), about 800k calls/s on one CPU.
//! - [`StormRange::Empty`]: the same mapping with the file truncated to 0 bytes; every call
//!   reaches collapse_file, finds the range past EOF and returns EINVAL. Two events per call
//!   (`scan_file` and `collapse_file`, `truncated`), about 100k calls/s.
//!
//! Every call is counted in the tally (exact, like every scenario). The loop stops after
//! `iterations` calls or `duration`, whichever comes first, or at SIGINT/SIGTERM; `rate` paces it (calls per second,
//! issued in 1 ms batches against absolute deadlines, so a late batch is caught up).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::scenarios::HugeFile;
use super::tmpfs::TmpfsMount;
use super::{ScenarioTally, StormRange};

/// Calls made when neither a count nor a duration bounds the storm.
pub(super) const DEFAULT_CALLS: u32 = 1_000_000;

/// Bounds and pace of one storm.
#[derive(Clone, Copy, Debug)]
pub(super) struct Storm {
    pub range: StormRange,
    /// Stop after this many calls (0: no count bound).
    pub calls: u32,
    pub duration: Option<Duration>,
    /// Calls per second; `None`: as fast as possible.
    pub rate: Option<u64>,
    /// Make calls in steps asked for on stdin (see [`steps`]) instead of one loop.
    pub steps: bool,
}

/// Sub-batches a step is timed in: a step's figure is their median, which leaves out the
/// host's occasional long interruption of a guest vCPU instead of averaging it in.
const STEP_PARTS: u64 = 16;

/// Runs the storm, counting every call in `st`; `st.loop_us` gets the loop's wall time and
/// `st.loop_cpu_ns` the thread's CPU time in it.
pub(super) fn storm(mount: &TmpfsMount, s: Storm, st: &mut ScenarioTally) -> Result<()> {
    if s.rate == Some(0) {
        bail!("--rate must be more than zero");
    }
    let f = HugeFile::create(mount, "storm")?;
    match s.range {
        StormRange::Collapsed => {
            f.touch(|_| true);
            // The collapse that makes the range huge is a call like every other: counted.
            let first = f.collapse();
            st.record(first);
            if let Err(errno) = first {
                st.skipped = Some(if errno == libc::EINVAL {
                    super::scenarios::einval_reason()
                } else {
                    format!(
                        "the first MADV_COLLAPSE of the storm range failed ({}): no collapsed \
                         range to hammer",
                        super::errno_name(errno.into())
                    )
                });
                return Ok(());
            }
        }
        StormRange::Empty => f.set_len(0)?,
    }
    if s.steps {
        return steps(&f, st);
    }
    let limit = if s.calls == 0 && s.duration.is_none() {
        DEFAULT_CALLS as u64
    } else if s.calls == 0 {
        u64::MAX
    } else {
        s.calls as u64
    };
    let start = Instant::now();
    let cpu_start = thread_cpu_ns();
    let deadline = s.duration.map(|d| start + d);
    // Calls per 1 ms batch when paced; unpaced: check the clock every 256 calls.
    let batch_ms = Duration::from_millis(1);
    let mut made: u64 = 0;
    'outer: loop {
        let now = Instant::now();
        // A signal asked to stop: checked once per batch (at most 1 ms or 256 calls), so
        // SIGINT/SIGTERM end even an unbounded storm at once, with an exact tally.
        if made >= limit || deadline.is_some_and(|d| now >= d) || super::stop_requested().is_some()
        {
            break;
        }
        let batch = match s.rate {
            Some(rate) => {
                // Where the schedule says we should be by the end of the current millisecond.
                let elapsed_ms = (now - start).as_millis() as u64 + 1;
                let due = (rate.saturating_mul(elapsed_ms) / 1000).min(limit);
                if due <= made {
                    let next = start + batch_ms * (elapsed_ms as u32);
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                    continue;
                }
                due - made
            }
            None => 256.min(limit - made),
        };
        for _ in 0..batch {
            st.record(f.collapse());
            made += 1;
            if made >= limit {
                break 'outer;
            }
        }
    }
    st.loop_us = Some(start.elapsed().as_micros() as u64);
    st.loop_cpu_ns = Some(thread_cpu_ns().saturating_sub(cpu_start));
    Ok(())
}

/// The stepped storm, for benchmarks that attach a tracer between steps of one process
/// (the same pages, caches and scheduling for every configuration, where a new process per
/// configuration moved the time per call by a third): prints `{"ready":true}`, then for each
/// line `N` read from stdin makes N calls and prints one JSON line with the step's CPU and
/// wall time and each sub-batch's CPU time per call; ends at end of input.
fn steps(f: &HugeFile, st: &mut ScenarioTally) -> Result<()> {
    use std::io::{BufRead as _, Write as _};
    let mut out = std::io::stdout().lock();
    writeln!(out, "{{\"ready\":true}}")?;
    out.flush()?;
    let (mut wall_total, mut cpu_total) = (Duration::ZERO, 0u64);
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let Ok(n) = line.trim().parse::<u64>() else {
            bail!("storm steps: {line:?} is not a number of calls; give one number per line");
        };
        let part = (n / STEP_PARTS).max(1);
        let mut parts = Vec::with_capacity(STEP_PARTS as usize + 1);
        let mut calib = Vec::with_capacity(STEP_PARTS as usize + 1);
        let (start, cpu_start) = (Instant::now(), thread_cpu_ns());
        let mut made = 0;
        while made < n {
            let k = part.min(n - made);
            let c0 = thread_cpu_ns();
            for _ in 0..k {
                st.record(f.collapse());
            }
            parts.push((thread_cpu_ns() - c0) as f64 / k as f64);
            made += k;
            let c1 = thread_cpu_ns();
            std::hint::black_box(calibration_work());
            calib.push((thread_cpu_ns() - c1) as f64);
        }
        let (wall, cpu) = (start.elapsed(), thread_cpu_ns() - cpu_start);
        wall_total += wall;
        cpu_total += cpu;
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({
                "calls": n,
                "cpu_ns": cpu,
                "wall_ns": wall.as_nanos() as u64,
                "part_cpu_ns_per_call": parts,
                "part_calibration_ns": calib,
            }),
        )?;
        writeln!(out)?;
        out.flush()?;
        if super::stop_requested().is_some() {
            break;
        }
    }
    st.loop_us = Some(wall_total.as_micros() as u64);
    st.loop_cpu_ns = Some(cpu_total);
    Ok(())
}

/// A fixed piece of work with no system call, timed after every sub-batch of a step: how
/// fast the CPU runs the storm at that moment. Both kinds of work the storm's calls do:
/// dependent loads through a buffer larger than the caches (the page-table and VMA walks)
/// and arithmetic.
fn calibration_work() -> u64 {
    use std::sync::OnceLock;
    const SLOTS: usize = 1 << 20; // 8 MiB of u64
    static CYCLE: OnceLock<Vec<u64>> = OnceLock::new();
    let cycle = CYCLE.get_or_init(|| {
        // One random cycle through every slot (Sattolo), so each load depends on the last.
        let mut v: Vec<u64> = (0..SLOTS as u64).collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in (1..SLOTS).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.swap(i, (x % i as u64) as usize);
        }
        let mut next = vec![0u64; SLOTS];
        for i in 0..SLOTS {
            next[v[i] as usize] = v[(i + 1) % SLOTS];
        }
        next
    });
    let mut at = 0usize;
    let mut sum = 0u64;
    for _ in 0..4096 {
        at = cycle[at] as usize;
        sum = sum.wrapping_mul(31).wrapping_add(at as u64);
    }
    sum
}

/// This thread's CPU time in nanoseconds (user and system, interrupts that land on it
/// included unless the kernel accounts IRQ time apart).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer; this clock always
    // exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
