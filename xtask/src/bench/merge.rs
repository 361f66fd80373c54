//! The ring reader's merge alone (the `merge_speed` example: rings filled in memory, no
//! kernel) at 2, 64 and 256 CPUs, the heap merge against the linear scan it replaced in the
//! same run, and the default ring memory per CPU; and the reader's work per record after
//! the merge (the `aggregate_speed` example: decoding, and the aggregation core).

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use super::report::Goal;
use crate::env::{Env, output, run};

/// Records merged per figure.
const RECORDS: u64 = 8_000_000;

/// One CPU count and clock mode.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MergeRow {
    pub cpus: u32,
    /// `tick` (the default, tick-cached clock: runs of equal times) or `precise`.
    pub clock: String,
    pub records: u64,
    pub heap_records_per_s: f64,
    pub linear_records_per_s: f64,
    pub ring_slots_per_cpu: u64,
    pub ring_kib_per_cpu: u64,
}

/// Builds collapse-trace's example `name` (release) and returns its path.
fn example(env: &Env, name: &str) -> Result<std::path::PathBuf> {
    run(env.cargo().args([
        "build",
        "--release",
        "-p",
        "collapse-trace",
        "--example",
        name,
    ]))?;
    Ok(env.root.join("target/release/examples").join(name))
}

/// Builds and runs the example; one row per CPU count and clock.
pub fn merge_speed(env: &Env) -> Result<Vec<MergeRow>> {
    println!("\n== reader merge: rings filled in memory at 2, 64 and 256 CPUs");
    let bin = example(env, "merge_speed")?;
    let out = output(std::process::Command::new(&bin).arg(RECORDS.to_string()))?;
    let rows: Vec<MergeRow> = out
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("merge_speed printed {l:?}")))
        .collect::<Result<_>>()?;
    for r in &rows {
        println!(
            "  {:>3} CPUs, {} clock: {:.2} M records/s (linear scan {:.2}, {:.1}x); \
             {} records ({} KiB) of ring per CPU",
            r.cpus,
            r.clock,
            r.heap_records_per_s / 1e6,
            r.linear_records_per_s / 1e6,
            r.heap_records_per_s / r.linear_records_per_s,
            r.ring_slots_per_cpu,
            r.ring_kib_per_cpu
        );
    }
    Ok(rows)
}

/// The reader's work per record on a storm's records, no kernel (best of five runs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AggregateSpeed {
    pub records: u64,
    /// Merge and decode.
    pub decode_ns: f64,
    /// Merge, decode and the aggregation core (what `stat`, `serve` and `top` run).
    pub aggregate_ns: f64,
    pub records_per_s: f64,
}

/// Builds and runs the `aggregate_speed` example.
pub fn aggregate_speed(env: &Env) -> Result<AggregateSpeed> {
    println!("\n== reader per record: decode and aggregation on a storm's records, no kernel");
    let bin = example(env, "aggregate_speed")?;
    let out = output(&mut std::process::Command::new(&bin))?;
    let line = out
        .lines()
        .last()
        .context("aggregate_speed printed nothing")?;
    let a: AggregateSpeed =
        serde_json::from_str(line).with_context(|| format!("aggregate_speed printed {line:?}"))?;
    println!(
        "  decode {:.0} ns/record, decode + aggregate {:.0} ns/record ({:.2} M records/s)",
        a.decode_ns,
        a.aggregate_ns,
        a.records_per_s / 1e6
    );
    Ok(a)
}

/// The scale goal: >= 3 M records/s merged at 256 CPUs with the default clock.
pub fn goal(rows: &[MergeRow]) -> Goal {
    let at = |clock: &str| rows.iter().find(|r| r.cpus == 256 && r.clock == clock);
    let measured = match (at("tick"), at("precise")) {
        (Some(t), Some(p)) => format!(
            "{:.2} M records/s (tick clock); {:.2} M with --precise-time; linear scan {:.2} M",
            t.heap_records_per_s / 1e6,
            p.heap_records_per_s / 1e6,
            t.linear_records_per_s / 1e6
        ),
        _ => "-".to_string(),
    };
    Goal::new(
        "reader merge >= 3 M records/s at 256 CPUs (default clock and rings)",
        measured,
        at("tick").map(|t| t.heap_records_per_s >= 3e6),
    )
}
