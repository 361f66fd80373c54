//! One counting session: the loop every attaching command runs (`stat`, `record`, `serve`,
//! `top`). Signals are installed before attaching, so a stop while attaching ends the run
//! cleanly; every program is attached with the counting window closed, then the window
//! opens at one instant for all of them; collection drains the rings as records come; at the
//! end the window closes at one instant, the programs are detached, and a last drain takes
//! what is left. Within one window the kernel counters, the records delivered plus dropped,
//! and the MADV_COLLAPSE calls (up to the calls in flight at its two ends, one per thread)
//! describe the same events.

use std::time::{Duration, Instant};

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::{
    kernel::{
        KernelError,
        probes::{ProbeOptions, Probes},
        stream::Collector,
    },
    model::{aggregate::KernelCounters, event::Event, kernel_info::KernelInfo},
};

/// CLOCK_MONOTONIC in ns, the clock of the records.
pub use crate::kernel::stream::monotonic_ns;

/// An attached run with its counting window open.
pub struct Session {
    collector: Collector,
    stop: Stop,
    drain_tick: Duration,
    opened: Instant,
    finished: bool,
}

/// Why [`Session::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Records may be waiting (a kernel wakeup, or the drain pace or tick ran out).
    Drain,
    /// The deadline passed or a stop signal came: call [`Session::finish`].
    Stop,
}

impl Session {
    /// Loads and attaches with `opts` (the window closed), then opens the window.
    pub fn start(
        opts: &ProbeOptions,
        drain_tick: Duration,
        stop: Stop,
    ) -> Result<Session, KernelError> {
        // Loading parses the kernel's BTF into buffers of several MiB that grow by doubling
        // and are then freed. With glibc's adaptive threshold they come from the heap (a copy
        // on every growth, and the freed memory stays resident for the whole run). mmap'd
        // instead, they grow with mremap and go back to the system when freed: ~5 MiB less
        // peak RSS for every command that attaches.
        #[cfg(target_env = "gnu")]
        // SAFETY: mallopt only tunes the allocator.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        }
        let probes = Probes::attach(opts)?;
        let mut collector = Collector::new(probes, opts.events)?;
        collector.open_window()?;
        Ok(Session {
            collector,
            stop,
            drain_tick,
            opened: Instant::now(),
            finished: false,
        })
    }

    /// What was found and attached.
    pub fn info(&self) -> &KernelInfo {
        &self.collector.probes().info
    }

    /// Time since the window opened.
    pub fn elapsed(&self) -> Duration {
        self.opened.elapsed()
    }

    /// Stops after `duration` from now (none: only on a signal).
    pub fn set_duration(&mut self, duration: Option<Duration>) {
        self.stop.set_duration(duration);
    }

    /// Waits until records may be waiting or the run should stop.
    pub async fn wait(&mut self) -> Wake {
        tokio::select! {
            _ = self.stop.wait() => Wake::Stop,
            _ = self.collector.wait(self.drain_tick) => Wake::Drain,
        }
    }

    /// Hands every record old enough to `sink`, in time order; returns how many.
    pub fn drain(&mut self, sink: impl FnMut(&Event)) -> u64 {
        self.collector.drain(sink)
    }

    /// The window's kernel counters so far, read once (every figure of one interval comes
    /// from one such read).
    pub fn counters(&self) -> Result<KernelCounters, KernelError> {
        self.collector.counters()
    }

    /// Records that did not decode (a build mismatch).
    pub fn decode_errors(&self) -> u64 {
        self.collector.decode_errors
    }

    /// Closes the window, detaches, hands every record left to `sink`, and returns the
    /// window's final counters: now `delivered + dropped = counted` for every kind.
    pub fn finish(&mut self, sink: impl FnMut(&Event)) -> Result<KernelCounters, KernelError> {
        if !self.finished {
            self.collector.detach();
            self.finished = true;
        }
        self.collector.drain(sink);
        self.collector.counters()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // An error path that never called finish(): still close the window and detach.
        if !self.finished {
            self.collector.detach();
        }
    }
}

/// Resolves when collection should stop: the deadline, SIGINT, SIGTERM, or (when asked for)
/// SIGHUP.
pub struct Stop {
    deadline: Option<tokio::time::Instant>,
    int: Signal,
    term: Signal,
    hup: Option<Signal>,
}

impl Stop {
    /// Installs the SIGINT and SIGTERM handlers. Call it before attaching: a signal that
    /// arrives while attaching, or right after the "attached" line, is then kept, not fatal.
    pub fn new(duration: Option<Duration>) -> std::io::Result<Stop> {
        Ok(Stop {
            deadline: duration.map(|d| tokio::time::Instant::now() + d),
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: None,
        })
    }

    /// Also stops on SIGHUP (the terminal went away): `stat` still writes its whole report to
    /// wherever stdout goes, `top` restores the terminal.
    pub fn on_hangup(mut self) -> std::io::Result<Stop> {
        self.hup = Some(signal(SignalKind::hangup())?);
        Ok(self)
    }

    /// Starts the clock now (once attached, so the whole duration is collected).
    pub fn set_duration(&mut self, duration: Option<Duration>) {
        self.deadline = duration.map(|d| tokio::time::Instant::now() + d);
    }

    /// Waits for the first stop reason.
    pub async fn wait(&mut self) {
        let deadline = async {
            match self.deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let hup = async {
            match self.hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = deadline => {}
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
            _ = hup => {}
        }
    }
}
