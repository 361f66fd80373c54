//! `collapse-trace stat`: attach, collect for a while (or until Ctrl-C), print counts.

use std::{
    io::Write as _,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use clap::Args;

use super::{CollectArgs, Stop};
use crate::{
    export::json::{Filters, Snapshot},
    kernel::stream::Collector,
    model::{aggregate::Aggregate, results::meaning},
};

/// Options of `stat`.
#[derive(Debug, Args)]
pub struct StatArgs {
    #[command(flatten)]
    collect: CollectArgs,
    /// Stop after this long (e.g. `10s`, `2m`); default: until Ctrl-C or SIGTERM.
    #[arg(long, short = 'd', value_parser = super::parse_positive_duration)]
    duration: Option<Duration>,
    /// Print one JSON document (schema `collapse-trace.stat/1`, docs/json-schema.md).
    #[arg(long)]
    json: bool,
    /// With --json: keep collecting and print one compact snapshot per interval, one per line
    /// (NDJSON, same schema), plus a last one when stopped.
    #[arg(long, requires = "json")]
    follow: bool,
    /// Time between snapshots with --follow (e.g. `1s`, `500ms`).
    #[arg(long, default_value = "1s", requires = "follow", value_parser = super::parse_positive_duration)]
    interval: Duration,
    /// With --follow: print every event as one JSON line (schema `collapse-trace.event/1`)
    /// instead of the periodic snapshots; one snapshot line still ends the stream.
    #[arg(long, requires = "follow", conflicts_with = "no_events")]
    events: bool,
    /// Rows in the process and file tables (text output).
    #[arg(long, default_value_t = 10)]
    top: usize,
}

/// Runs `stat`.
pub async fn run(args: StatArgs) -> Result<()> {
    // Signals first: one that arrives while attaching ends the run cleanly, never kills it.
    let mut stop = Stop::new(None)?.on_hangup()?;
    let probes = args.collect.attach()?;
    let events = !args.collect.no_events;
    let mut collector = Collector::new(probes, events)?;
    let mut agg = Aggregate::new(collector.probes().info.results.clone());
    agg.set_baseline(collector.counters()?);
    announce(&collector, args.duration);

    let start = Instant::now();
    stop.set_duration(args.duration);
    if args.follow {
        return follow(&args, collector, agg, stop, start).await;
    }
    loop {
        tokio::select! {
            _ = stop.wait() => break,
            _ = collector.wait(args.collect.drain_tick()) => {}
        }
        collector.drain(|e| agg.add(e));
    }
    // Detach first: then the last drain plus the drops account for every counted event.
    collector.detach();
    collector.drain(|e| agg.add(e));
    agg.set_kernel(collector.counters()?);
    let elapsed = start.elapsed().as_secs_f64();

    let filters = Filters {
        pid: args.collect.pid,
        comm: args.collect.comm.clone(),
    };
    let snap = Snapshot::build(&agg, &collector.probes().info, filters, events, elapsed);
    warn_unknown(&snap);
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &snap).context("writing JSON")?;
        writeln!(out)?;
    } else {
        write!(out, "{}", render_text(&snap, args.top)).context("writing to stdout")?;
    }
    if collector.decode_errors > 0 {
        anyhow::bail!(
            "{} ring records did not decode: the embedded object and the binary disagree; rebuild",
            collector.decode_errors
        );
    }
    Ok(())
}

/// What an `unknown(N)` result means, for the MEANING column and the warning.
const UNKNOWN_MEANING: &str = "a number the kernel's own result table does not name";

/// Says on stderr why some results read `unknown(N)`: the kernel reported numbers its table
/// (tracepoint format, BTF, or the built-in copy) does not name, e.g. a newer kernel.
fn warn_unknown(s: &Snapshot) {
    let mut unknown: Vec<(String, i64)> = s
        .tracepoints
        .iter()
        .flat_map(|t| t.results.iter())
        .filter(|r| r.result.starts_with("unknown("))
        .map(|r| (r.result.clone(), r.number))
        .collect();
    unknown.sort_by_key(|(_, n)| *n);
    unknown.dedup();
    if unknown.is_empty() {
        return;
    }
    let names: Vec<String> = unknown.into_iter().map(|(n, _)| n).collect();
    eprintln!(
        "collapse-trace: warning: the kernel reported result numbers that the result names {} \
         do not include: shown as {}. The kernel may be newer than its table says, or its \
         format was edited; `collapse-trace doctor` lists the names it has",
        s.result_names.describe(),
        names.join(", ")
    );
}

/// One line on stderr once attached, so a person (or a test) knows collection has begun.
pub fn announce(c: &Collector, duration: Option<Duration>) {
    let info = &c.probes().info;
    let attached = info.attached_names();
    let until = match duration {
        Some(d) => format!("for {}", humantime::format_duration(d)),
        None => "until Ctrl-C".to_string(),
    };
    let calls = match (info.calls_by_fexit, attached.contains(&"madvise_collapse")) {
        (true, _) => "; MADV_COLLAPSE calls by the fexit on madvise_collapse",
        (false, true) => "; MADV_COLLAPSE calls by the syscall hooks",
        (false, false) => "",
    };
    eprintln!(
        "collapse-trace: attached to {} on {}{calls}; collecting {until}",
        attached.join(", "),
        info.release
    );
    for g in info.gaps() {
        eprintln!("collapse-trace: not observable on this kernel: {g}");
    }
}

/// The human-readable report.
pub fn render_text(s: &Snapshot, top: usize) -> String {
    format!(
        "collapse-trace stat: {:.1} s on kernel {}; result names {}\n{}",
        s.duration_s,
        s.kernel_release,
        s.result_names.describe(),
        render_body(s, top)
    )
}

/// Everything of [`render_text`] but its first line (`report` has its own).
pub fn render_body(s: &Snapshot, top: usize) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    if s.filters.pid.is_some() || s.filters.comm.is_some() {
        let _ = writeln!(
            o,
            "filters (applied in the kernel): pid={} comm={}",
            s.filters.pid.map_or("any".into(), |p| p.to_string()),
            s.filters.comm.as_deref().unwrap_or("any")
        );
    }
    let _ = writeln!(
        o,
        "{} collapse events: {} successes, {} failures; {} MADV_COLLAPSE calls, {} failed; \
         {} records delivered, {} dropped\n",
        s.totals.events,
        s.totals.successes,
        s.totals.failures,
        s.totals.calls,
        s.totals.failed_calls,
        s.totals.delivered,
        s.totals.dropped
    );
    if s.totals.untracked_calls > 0 {
        let _ = writeln!(
            o,
            "{} MADV_COLLAPSE calls were not tracked (another thread's call held their slot)\n",
            s.totals.untracked_calls
        );
    }
    for t in &s.tracepoints {
        if !t.attached && t.events == 0 {
            let _ = writeln!(
                o,
                "{}: not attached (turned off, or missing from this kernel)\n",
                t.name
            );
            continue;
        }
        let _ = writeln!(o, "{}: {} events, {} dropped", t.name, t.events, t.dropped);
        if t.results.is_empty() {
            let _ = writeln!(o, "  (no events)\n");
            continue;
        }
        let _ = writeln!(
            o,
            "  {:<32} {:>4} {:>10} {:>7}  MEANING",
            "RESULT", "NUM", "COUNT", "SHARE"
        );
        for r in &t.results {
            let _ = writeln!(
                o,
                "  {:<32} {:>4} {:>10} {:>6.1}%  {}",
                r.result,
                r.number,
                r.count,
                r.share * 100.0,
                if r.result.starts_with("unknown(") {
                    UNKNOWN_MEANING
                } else {
                    meaning(&r.result)
                }
            );
        }
        let _ = writeln!(o);
    }
    if !s.events {
        let _ = writeln!(o, "(counting only: no per-process or per-file detail)");
        return o;
    }
    if !s.processes.is_empty() {
        let _ = writeln!(o, "Top processes by events");
        // An escaped comm (`\xNN` per control byte) can be up to 60 characters: size the
        // column to the widest one shown, so the columns after it stay aligned.
        let w = s
            .processes
            .iter()
            .take(top)
            .map(|p| p.comm.chars().count())
            .max()
            .unwrap_or(0)
            .max(16);
        let _ = writeln!(
            o,
            "  {:>8} {:<w$} {:<10} {:>9} {:>9}  TOP FAILURE",
            "PID", "COMM", "ORIGIN", "EVENTS", "FAILURES"
        );
        for p in s.processes.iter().take(top) {
            let _ = writeln!(
                o,
                "  {:>8} {:<w$} {:<10} {:>9} {:>9}  {}",
                p.tgid,
                p.comm,
                p.origin,
                p.events,
                p.failures,
                p.top_failure.as_deref().unwrap_or("-")
            );
        }
        let _ = writeln!(o);
    }
    if !s.callers.is_empty() {
        let _ = writeln!(
            o,
            "MADV_COLLAPSE callers: what each errno came from (ranges by final result)"
        );
        for c in s.callers.iter().take(top) {
            let _ = writeln!(o, "  {} ({}): {} calls", c.comm, c.tgid, c.calls);
            for e in &c.errnos {
                // A scan event carries each range's final result: one per range tried.
                let behind: Vec<String> = e
                    .results
                    .iter()
                    .filter(|r| {
                        collapse_trace_common::RecordKind::from_name(&r.tracepoint)
                            .is_some_and(|t| t.is_scan())
                    })
                    .map(|r| format!("{} {}", r.result, r.count))
                    .collect();
                let _ = writeln!(
                    o,
                    "    {:<7} {:>7} calls  <- {}",
                    e.errno,
                    e.calls,
                    if behind.is_empty() {
                        "no collapse event".to_string()
                    } else {
                        behind.join(", ")
                    }
                );
            }
        }
        let _ = writeln!(o);
    }
    if !s.files.is_empty() {
        let _ = writeln!(o, "Top files by failures");
        let _ = writeln!(
            o,
            "  {:>9} {:>9}  {:<32}  FILE",
            "EVENTS", "FAILURES", "TOP FAILURE"
        );
        for f in s.files.iter().take(top) {
            let _ = writeln!(
                o,
                "  {:>9} {:>9}  {:<32}  {}",
                f.events,
                f.failures,
                f.top_failure.as_deref().unwrap_or("-"),
                f.name
            );
        }
        let _ = writeln!(
            o,
            "  (file names come from the tracepoint, which on some kernels shows a stale name \
             for names longer than about 40 bytes)"
        );
    }
    o
}

/// `stat --json --follow`: NDJSON on stdout until the duration ends, Ctrl-C, SIGTERM or a
/// closed pipe (all of them a normal end).
async fn follow(
    args: &StatArgs,
    mut collector: Collector,
    mut agg: Aggregate,
    mut stop: Stop,
    start: Instant,
) -> Result<()> {
    use crate::export::ndjson::{EventLine, write_line};

    let filters = Filters {
        pid: args.collect.pid,
        comm: args.collect.comm.clone(),
    };
    let events = !args.collect.no_events;
    let mut out = std::io::stdout().lock();
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + args.interval, args.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failed: Option<std::io::Error> = None;
    loop {
        let mut due = false;
        tokio::select! {
            _ = stop.wait() => break,
            _ = ticks.tick() => due = true,
            _ = collector.wait(args.collect.drain_tick()) => {}
        }
        collector.drain(|e| {
            agg.add(e);
            if args.events && failed.is_none() {
                failed = write_line(&mut out, &EventLine::new(e, &agg.table)).err();
            }
        });
        if due && !args.events && failed.is_none() {
            agg.set_kernel(collector.counters()?);
            let snap = Snapshot::build(
                &agg,
                &collector.probes().info,
                filters.clone(),
                events,
                start.elapsed().as_secs_f64(),
            );
            failed = write_line(&mut out, &snap).err();
        }
        if failed.is_some() {
            break;
        }
    }
    collector.detach();
    collector.drain(|e| {
        agg.add(e);
        if args.events && failed.is_none() {
            failed = write_line(&mut out, &EventLine::new(e, &agg.table)).err();
        }
    });
    agg.set_kernel(collector.counters()?);
    if failed.is_none() {
        let snap = Snapshot::build(
            &agg,
            &collector.probes().info,
            filters,
            events,
            start.elapsed().as_secs_f64(),
        );
        failed = write_line(&mut out, &snap).err();
    }
    match failed {
        Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("writing to stdout"))
        }
        _ => Ok(()),
    }
}
