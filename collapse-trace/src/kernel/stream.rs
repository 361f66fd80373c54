//! Ring buffer -> [`Event`] values, and kernel counters, for the aggregation core.
//!
//! The kernel side asks for a wakeup only when the ring passes a fill threshold, so the reader
//! also drains on a timer: records below the threshold wait at most one tick.

use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;

use super::{KernelError, probes::Probes};
use crate::model::{aggregate::KernelCounters, event::Event};

/// How often the ring is drained when the kernel has not woken us. Short enough for a live
/// view, long enough to cost nothing when idle.
pub const DRAIN_TICK: Duration = Duration::from_millis(50);

/// The attached probes plus the ring-buffer reader.
pub struct Collector {
    probes: Probes,
    ring: Option<AsyncFd<RingBuf<MapData>>>,
    /// Records that did not decode (a build mismatch; counted, never silently lost).
    pub decode_errors: u64,
    /// Every record is decoded into this one event: no allocation per record.
    scratch: Event,
}

impl Collector {
    /// Takes over attached probes. Must run inside a tokio runtime.
    pub fn new(mut probes: Probes, events: bool) -> Result<Collector, KernelError> {
        let ring = if events {
            let ring = probes.take_ring()?;
            // SAFETY: the ring buffer owns its map fd and keeps it open, unchanged, for as
            // long as the AsyncFd owns the ring buffer.
            let fd =
                unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) };
            Some(fd.map_err(|e| {
                KernelError::Io("registering the ring buffer with epoll", e.into_parts().1)
            })?)
        } else {
            None
        };
        Ok(Collector {
            probes,
            ring,
            decode_errors: 0,
            scratch: Event::empty(),
        })
    }

    /// What was attached.
    pub fn probes(&self) -> &Probes {
        &self.probes
    }

    /// Hands every record now in the ring to `sink`; returns how many.
    pub fn drain(&mut self, mut sink: impl FnMut(&Event)) -> u64 {
        let Some(ring) = self.ring.as_mut() else {
            return 0;
        };
        let mut n = 0;
        let ring = ring.get_mut();
        while let Some(item) = ring.next() {
            match self.scratch.decode_into(&item) {
                Ok(()) => {
                    n += 1;
                    sink(&self.scratch);
                }
                Err(err) => {
                    if self.decode_errors == 0 {
                        log::error!("{err}");
                    }
                    self.decode_errors += 1;
                }
            }
        }
        n
    }

    /// Waits for the kernel's wakeup or `tick`, whichever comes first (returns at once when
    /// counting only: then there is nothing to wait for but the tick).
    pub async fn wait(&mut self, tick: Duration) {
        match self.ring.as_mut() {
            Some(ring) => {
                tokio::select! {
                    guard = ring.readable_mut() => {
                        if let Ok(mut g) = guard { g.clear_ready(); }
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

    /// Detaches every program, so that after one more [`Collector::drain`] the delivered
    /// events plus the drops equal the counters exactly.
    pub fn detach(&mut self) {
        self.probes.detach();
    }
}
