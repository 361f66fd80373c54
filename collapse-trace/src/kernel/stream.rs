//! Event rings -> [`Event`] values, and kernel counters, for the aggregation core.
//!
//! The reader paces itself: after each drain it sleeps until the busiest CPU would, at the
//! rate just seen, have filled a quarter of its ring (between [`MIN_DRAIN_GAP`] and the
//! caller's tick). The kernel wakes it only when a CPU finds its ring half full anyway (a
//! burst after a quiet spell), since a wakeup is an interrupt that costs more than a
//! thousand records here.
//!
//! Order: records are handed on in time order across CPUs (the rings are merged), and only
//! once they are [`reorder_window`] old: a record still being written on another CPU carries
//! a time at most one tick old (the tick-cached clock), so nothing older can arrive later.
//! The errno join relies on it: a call record never comes before the events of its call,
//! nor after the events of the thread's next call, whichever CPUs the thread ran on.

use std::{
    os::fd::{AsRawFd, RawFd},
    time::{Duration, Instant},
};

use tokio::io::unix::AsyncFd;

use super::{KernelError, probes::Probes, rings::Rings};
use crate::model::{aggregate::KernelCounters, event::Event};

impl AsRawFd for Rings {
    fn as_raw_fd(&self) -> RawFd {
        self.wakeups.as_raw_fd()
    }
}

/// How often the ring is drained when the kernel has not woken us. Short enough for a live
/// view, long enough to cost nothing when idle.
pub const DRAIN_TICK: Duration = Duration::from_millis(50);

/// The shortest sleep between two paced drains.
pub const MIN_DRAIN_GAP: Duration = Duration::from_millis(1);

/// Slack for a program between its clock read and its publication, in the reorder window.
const REORDER_SLACK: Duration = Duration::from_millis(1);

/// How old a record must be before it is handed on: with the tick-cached clock, one kernel
/// tick (the resolution of CLOCK_MONOTONIC_COARSE) plus slack; with a clock read per record,
/// the slack alone.
pub fn reorder_window(precise_time: bool) -> Duration {
    if precise_time {
        return REORDER_SLACK;
    }
    let mut res = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_getres writes the timespec we own.
    let tick = if unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut res) } == 0 {
        Duration::new(res.tv_sec as u64, res.tv_nsec as u32)
    } else {
        Duration::from_millis(10) // HZ=100, the coarsest tick Linux has
    };
    tick.min(Duration::from_millis(10)) + REORDER_SLACK
}

/// The attached probes plus the ring-buffer reader.
pub struct Collector {
    probes: Probes,
    ring: Option<AsyncFd<Rings>>,
    /// Records that did not decode (a build mismatch; counted, never silently lost).
    pub decode_errors: u64,
    /// Every record is decoded into this one event: no allocation per record.
    scratch: Event,
    /// Set once the programs are detached: nothing more can arrive, nothing is held back.
    detached: bool,
    /// When the last drain read the rings.
    last_drain: Instant,
    /// How long to sleep before the next drain, by the rate the last ones saw.
    pace: Duration,
    /// Records per second of the busiest CPU: the highest rate seen, decaying by half per
    /// drain that saw less (a drain right after another sees next to nothing, and must not
    /// make the reader sleep a whole tick while a storm goes on).
    rate: f64,
    /// How old a record must be before it is handed on.
    window: Duration,
}

impl Collector {
    /// Takes over attached probes. Must run inside a tokio runtime.
    pub fn new(mut probes: Probes, events: bool) -> Result<Collector, KernelError> {
        let precise_time = probes.precise_time;
        let ring = if events {
            let ring = Rings::new(probes.take_rings()?)?;
            // SAFETY: the rings own the doorbell's map fd and keep it open, unchanged, for as
            // long as the AsyncFd owns them.
            let fd =
                unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) };
            Some(fd.map_err(|e| {
                KernelError::Io("registering the event rings with epoll", e.into_parts().1)
            })?)
        } else {
            None
        };
        Ok(Collector {
            probes,
            ring,
            decode_errors: 0,
            scratch: Event::empty(),
            detached: false,
            last_drain: Instant::now(),
            pace: MIN_DRAIN_GAP,
            rate: 0.0,
            window: reorder_window(precise_time),
        })
    }

    /// What was attached.
    pub fn probes(&self) -> &Probes {
        &self.probes
    }

    /// Hands every record in the rings that is old enough to `sink`, in time order (all of
    /// them once detached, see the module doc); returns how many.
    pub fn drain(&mut self, mut sink: impl FnMut(&Event)) -> u64 {
        let Some(ring) = self.ring.as_mut() else {
            return 0;
        };
        let rings = ring.get_mut();
        let watermark = if self.detached {
            u64::MAX
        } else {
            monotonic_ns().saturating_sub(self.window.as_nanos() as u64)
        };
        let (scratch, errors) = (&mut self.scratch, &mut self.decode_errors);
        let mut corrupt = 0;
        let n = rings.drain(
            watermark,
            |bytes| decode(scratch, bytes, errors, &mut sink),
            &mut corrupt,
        );
        if corrupt > 0 {
            log::error!("{corrupt} event records lost to an impossible ring position");
            self.decode_errors += corrupt;
        }
        let now = Instant::now();
        let gap = now.duration_since(self.last_drain).as_secs_f64();
        self.last_drain = now;
        // Sleep until the busiest CPU would have filled a quarter of its ring.
        let quarter = (rings.slots() / 4).max(1) as f64;
        let seen = rings.last_new_max as f64 / gap.max(1e-6);
        self.rate = if seen >= self.rate {
            seen
        } else {
            (self.rate + seen) / 2.0
        };
        self.pace = if self.rate >= 1.0 {
            Duration::from_secs_f64(quarter / self.rate).max(MIN_DRAIN_GAP)
        } else {
            Duration::MAX
        };
        if rings.unread > 0 {
            // Come back for what was held, once it is old enough.
            self.pace = self.pace.min(self.window);
        }
        n
    }

    /// Waits for the kernel's wakeup or `tick`, whichever comes first (returns at once when
    /// counting only: then there is nothing to wait for but the tick).
    pub async fn wait(&mut self, tick: Duration) {
        match self.ring.as_mut() {
            Some(ring) => {
                let tick = if ring.get_ref().paced {
                    tick.min(self.pace)
                } else {
                    tick
                };
                tokio::select! {
                    guard = ring.readable_mut() => {
                        if let Ok(mut g) = guard {
                            g.get_inner_mut().clear_wakeups();
                            g.clear_ready();
                        }
                    }
                    _ = tokio::time::sleep(tick) => {}
                }
            }
            None => tokio::time::sleep(tick).await,
        }
    }

    /// Current kernel counters.
    pub fn counters(&self) -> Result<KernelCounters, KernelError> {
        self.probes.counters()
    }

    /// Opens the counting window (see [`Probes::open_window`]).
    pub fn open_window(&mut self) -> Result<(), KernelError> {
        self.probes.open_window()
    }

    /// Closes the counting window, then detaches every program (detaching waits for programs
    /// still running), so that after one more [`Collector::drain`] the delivered events plus
    /// the drops equal the counters exactly, and no count comes from outside the window.
    pub fn detach(&mut self) {
        if let Err(e) = self.probes.close_window() {
            // Detaching stops the programs all the same; the window's end is then that of
            // the last program detached.
            log::warn!("closing the counting window: {e}");
        }
        self.probes.detach();
        self.detached = true;
    }
}

/// CLOCK_MONOTONIC in ns, the clock of the records (`bpf_ktime_get_ns`).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Decodes one record into `scratch` and hands it on; a record that does not decode is counted
/// (and the first one logged), never silently lost.
fn decode(scratch: &mut Event, bytes: &[u8], errors: &mut u64, sink: &mut impl FnMut(&Event)) {
    match scratch.decode_into(bytes) {
        Ok(()) => sink(scratch),
        Err(err) => {
            if *errors == 0 {
                log::error!("{err}");
            }
            *errors += 1;
        }
    }
}
