//! One module per subcommand.

pub mod doctor;
pub mod provoke;
pub mod record;
pub mod report;
pub mod serve;
pub mod stat;
pub mod top;

use std::{path::PathBuf, time::Duration};

use anyhow::Result;
use clap::Args;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::kernel::probes::{ProbeOptions, Probes};

/// Options shared by every subcommand that attaches.
#[derive(Debug, Args)]
pub struct CollectArgs {
    /// Only this process id (filtered in the kernel, so counts stay exact).
    #[arg(long, short = 'p')]
    pub pid: Option<u32>,
    /// Only tasks with exactly this comm (filtered in the kernel).
    #[arg(long, short = 'c')]
    pub comm: Option<String>,
    /// Count only: no per-event records (cheapest; no process or file tables).
    #[arg(long)]
    pub no_events: bool,
    /// Ring buffer size in bytes: a power of two, at least 4096.
    #[arg(long, default_value_t = collapse_trace_common::DEFAULT_RING_BYTES, value_parser = parse_ring_size)]
    pub ring_size: u32,
    /// Read tracepoint formats from this directory instead of the mounted tracefs (testing).
    #[arg(long, hide = true)]
    pub tracefs: Option<PathBuf>,
    /// Kernel-side diagnostics through aya-log (costs time on every event).
    #[arg(long)]
    pub kernel_log: bool,
    /// Read fields with the probe helper even on the compiled layout (testing).
    #[arg(long, hide = true)]
    pub force_probe_read: bool,
    /// Stall the reader: no kernel wakeups, drain every 2 s (overflow tests).
    #[arg(long, hide = true)]
    pub stall_reader: bool,
}

fn parse_ring_size(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of bytes"))?;
    if n < 4096 || !n.is_power_of_two() {
        return Err(format!(
            "{n} is not a power of two of at least 4096 (try {})",
            n.max(4096).next_power_of_two()
        ));
    }
    Ok(n)
}

impl CollectArgs {
    /// Loads and attaches with these options.
    pub fn attach(&self) -> Result<Probes> {
        Ok(Probes::attach(&ProbeOptions {
            events: !self.no_events,
            pid: self.pid,
            comm: self.comm.clone(),
            ring_bytes: self.ring_size,
            kernel_log: self.kernel_log,
            tracefs: self.tracefs.clone(),
            force_probe_read: self.force_probe_read,
            no_wakeup: self.stall_reader,
        })?)
    }

    /// How long to wait for a kernel wakeup before draining anyway.
    pub fn drain_tick(&self) -> Duration {
        if self.stall_reader {
            Duration::from_secs(2)
        } else {
            crate::kernel::stream::DRAIN_TICK
        }
    }
}

/// Resolves when collection should stop: the deadline, SIGINT or SIGTERM.
pub struct Stop {
    deadline: Option<tokio::time::Instant>,
    int: Signal,
    term: Signal,
}

impl Stop {
    /// Installs the signal handlers (before attaching output, so Ctrl-C is never lost).
    pub fn new(duration: Option<Duration>) -> Result<Stop> {
        Ok(Stop {
            deadline: duration.map(|d| tokio::time::Instant::now() + d),
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the first stop reason.
    pub async fn wait(&mut self) {
        let deadline = async {
            match self.deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = deadline => {}
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_sizes_are_checked() {
        assert_eq!(parse_ring_size("8192"), Ok(8192));
        assert!(parse_ring_size("5000").unwrap_err().contains("8192"));
        assert!(parse_ring_size("1k").is_err());
    }
}
