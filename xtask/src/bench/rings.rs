//! Ring memory at a big machine's CPU count (issue 17): `stat` sized for a simulated 256
//! possible CPUs (the hidden `--possible-cpus`, which allocates and maps one ring per CPU and
//! makes the reader drain and merge all of them) under storms at rising rates, for several
//! ring sizes, beside the machine's own CPU count with the default rings: drops, the reader's
//! CPU and its peak RSS. The figures the default ring policy (`--ring-size` unset) is chosen
//! from.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use super::{Bench, Range, clock_ticks, cpu_ticks, parse, procs::Proc, report::Goal};

/// One storm under one ring layout.
#[derive(Debug, Clone, Serialize)]
pub struct RingRow {
    /// Possible CPUs the rings were sized for (`--possible-cpus`, or the machine's).
    pub possible_cpus: u32,
    /// The `--ring-size` given (`None`: the default policy).
    pub ring_size: Option<u64>,
    /// What stat reported of its rings.
    pub rings: Option<parse::Rings>,
    pub target_events_per_s: Option<u64>,
    pub achieved_events_per_s: f64,
    pub totals: parse::StatTotals,
    /// dropped + delivered == events + calls.
    pub exact: bool,
    pub cpu_pct_of_one_core: f64,
    pub peak_rss_kib: u64,
}

/// Simulated CPUs of a big machine.
pub const BIG: u32 = 256;

impl Bench<'_> {
    /// The rings part: the default rings on this machine, and at [`BIG`] CPUs the default
    /// and fixed totals from the old default (8 MiB: 60 records a CPU there) up.
    pub(super) fn rings(&self) -> Result<Vec<RingRow>> {
        let real = std::thread::available_parallelism().map_or(2, |n| n.get()) as u32;
        println!(
            "\n== event rings: drops, CPU and peak RSS of stat (full events) by ring size, at {real} (this machine) and {BIG} simulated CPUs"
        );
        let rates = [Some(100_000), Some(200_000), Some(400_000), None];
        let mut layouts: Vec<(u32, Option<u64>)> = vec![(real, None), (BIG, None)];
        if !self.args.quick {
            layouts.extend([
                (BIG, Some(8 << 20)),
                (BIG, Some(32 << 20)),
                (BIG, Some(128 << 20)),
            ]);
        }
        let mut rows = Vec::new();
        for (cpus, size) in layouts {
            for rate in rates {
                let row = self.ring_row(cpus, size, rate)?;
                println!(
                    "  {cpus:>3} CPUs, {}: {} a CPU ({} records); storm {}: achieved {:.0} events/s, {} events, {} dropped ({:.3}%){}; {:.1}% of one core, peak RSS {:.1} MiB",
                    size.map_or("default rings".into(), |b| format!(
                        "--ring-size {} MiB",
                        b >> 20
                    )),
                    row.rings
                        .map_or("-".into(), |r| format!("{} KiB", r.bytes_per_cpu / 1024)),
                    row.rings.map_or(0, |r| r.records_per_cpu),
                    rate.map_or("unpaced".into(), |r| format!("at {r}/s")),
                    row.achieved_events_per_s,
                    row.totals.events,
                    row.totals.dropped,
                    row.totals.dropped as f64 * 100.0 / row.totals.events.max(1) as f64,
                    if row.exact { "" } else { " NOT EXACT" },
                    row.cpu_pct_of_one_core,
                    row.peak_rss_kib as f64 / 1024.0
                );
                rows.push(row);
            }
        }
        Ok(rows)
    }

    fn ring_row(&self, cpus: u32, size: Option<u64>, rate: Option<u64>) -> Result<RingRow> {
        let secs = self.args.load_secs;
        let comm = format!("ct-ring{}", std::process::id() % 10_000);
        let mut storm = self.storm_named(Range::Collapsed, secs, rate, Some(&comm))?;
        let mut cmd = std::process::Command::new(&self.bin);
        cmd.args(["stat", "--json", "--no-calls", "--comm", &comm])
            .args(["--possible-cpus", &cpus.to_string()]);
        if let Some(b) = size {
            cmd.args(["--ring-size", &b.to_string()]);
        }
        let mut p = Proc::spawn("collapse-trace stat", cmd)?;
        p.wait_stderr("attached to", Duration::from_secs(30))?;
        let c0 = cpu_ticks(p.pid())?;
        let w0 = std::time::Instant::now();
        storm.release()?;
        let tally = parse::storm_tally(&storm.wait(Duration::from_secs(120))?)?;
        let wall = w0.elapsed().as_secs_f64();
        let c1 = cpu_ticks(p.pid())?;
        let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid()))?;
        let peak = parse::status_kib(&status, "VmHWM").unwrap_or(0);
        let out = p.stop()?;
        let totals = parse::stat_totals(&out)?;
        let rings = parse::stat_rings(&out)?;
        let cpu = ((c1.0 - c0.0) + (c1.1 - c0.1)) as f64 / clock_ticks();
        Ok(RingRow {
            possible_cpus: cpus,
            ring_size: size,
            rings,
            target_events_per_s: rate,
            achieved_events_per_s: totals.events as f64 / (tally.loop_us.max(1) as f64 / 1e6),
            exact: totals.dropped + totals.delivered == totals.events + totals.calls
                && totals.events == tally.calls + 1,
            totals,
            cpu_pct_of_one_core: cpu / wall * 100.0,
            peak_rss_kib: peak,
        })
    }
}

/// The ring goals, with the default rings at [`BIG`] simulated CPUs: every step's drops
/// accounted exactly; no drop at 100,000 events/s from one CPU (a MADV_COLLAPSE every 10 us
/// on that CPU, where a real collapse copies 2 MiB in tens of microseconds); and stat at
/// 200,000 events/s under 10% of a core and within 30 MiB plus its rings.
pub fn goals(rows: &[RingRow]) -> Vec<Goal> {
    let at = |rate: u64| {
        rows.iter().find(|r| {
            r.possible_cpus == BIG && r.ring_size.is_none() && r.target_events_per_s == Some(rate)
        })
    };
    let mut g = vec![Goal::new(
        "every ring step: delivered + dropped = events + calls, exactly",
        format!(
            "{} of {} steps exact",
            rows.iter().filter(|r| r.exact).count(),
            rows.len()
        ),
        (!rows.is_empty()).then(|| rows.iter().all(|r| r.exact)),
    )];
    if let Some(r) = at(100_000) {
        g.push(Goal::new(
            &format!(
                "default rings at {BIG} simulated CPUs: 0 drops at 100,000 events/s on one CPU"
            ),
            format!(
                "{} of {} dropped ({} records a CPU)",
                r.totals.dropped,
                r.totals.events,
                r.rings.map_or(0, |x| x.records_per_cpu)
            ),
            Some(r.totals.dropped == 0 && r.exact),
        ));
    }
    if let Some(r) = at(200_000) {
        let ring_mib = r.rings.map_or(0.0, |x| x.bytes as f64 / (1 << 20) as f64);
        g.push(Goal::new(
            &format!(
                "stat at {BIG} simulated CPUs, 200,000 events/s: under 10% of one core and 30 MiB RSS plus its rings"
            ),
            format!(
                "{:.1}% of one core, peak RSS {:.1} MiB ({ring_mib:.0} MiB of it rings)",
                r.cpu_pct_of_one_core,
                r.peak_rss_kib as f64 / 1024.0
            ),
            Some(
                r.cpu_pct_of_one_core < 10.0
                    && (r.peak_rss_kib as f64 / 1024.0) < 30.0 + ring_mib,
            ),
        ));
    }
    g
}
