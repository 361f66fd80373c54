//! The human-readable text of a snapshot: `stat`'s report, and the body `report` shares.

use super::json::Snapshot;
use crate::model::{outcome::Outcome, results::meaning};

/// What an `unknown(N)` result means, for the MEANING column and the warning.
const UNKNOWN_MEANING: &str = "a number the kernel's own result table does not name";

/// The human-readable report.
pub fn render_text(s: &Snapshot, top: usize) -> String {
    format!(
        "collapse-trace stat: {:.1} s on kernel {}; result names {}\n{}",
        s.duration_s,
        s.kernel_release,
        s.result_names.describe(),
        render_body(s, top, true)
    )
}

/// Everything of [`render_text`] but its first line (`report` has its own). Without
/// `drops_known` (a capture without kernel counters) no drop count is printed: it is unknown.
pub fn render_body(s: &Snapshot, top: usize, drops_known: bool) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    if s.filters.pid.is_some() || s.filters.comm.is_some() || s.filters.cgroup.is_some() {
        let _ = writeln!(
            o,
            "filters (applied in the kernel, matching the task or the memory's owner): pid={} \
             comm={} cgroup={}",
            s.filters.pid.map_or("any".into(), |p| p.to_string()),
            s.filters.comm.as_deref().unwrap_or("any"),
            s.filters.cgroup.as_deref().unwrap_or("any")
        );
    }
    let dropped = |n: u64| match drops_known {
        true => n.to_string(),
        false => "unknown".to_string(),
    };
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
        dropped(s.totals.dropped)
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
        let _ = writeln!(
            o,
            "{}: {} events, {} dropped",
            t.name,
            t.events,
            dropped(t.dropped)
        );
        if t.results.is_empty() {
            let _ = writeln!(o, "  (no events)\n");
            continue;
        }
        let _ = writeln!(
            o,
            "  {:<32} {:>4} {:>10} {:>7}  {:<19} MEANING",
            "RESULT", "NUM", "COUNT", "SHARE", "OUTCOME"
        );
        for r in &t.results {
            let _ = writeln!(
                o,
                "  {:<32} {:>4} {:>10} {:>6.1}%  {:<19} {}",
                r.result,
                r.number,
                r.count,
                r.share * 100.0,
                r.outcome.map_or("-", Outcome::name),
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
    o.push_str(&super::attempts::render_text(&s.attempts, top.max(10)));
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
    if !s.owners.is_empty() {
        let _ = writeln!(
            o,
            "Top owners of the memory by events (whose memory it was, whoever did the work)"
        );
        let w = s
            .owners
            .iter()
            .take(top)
            .map(|p| p.comm.chars().count())
            .max()
            .unwrap_or(0)
            .max(16);
        let _ = writeln!(
            o,
            "  {:>8} {:<w$} {:>9} {:>9}  CGROUP",
            "PID", "COMM", "EVENTS", "FAILURES"
        );
        for p in s.owners.iter().take(top) {
            let _ = writeln!(
                o,
                "  {:>8} {:<w$} {:>9} {:>9}  {}",
                p.tgid, p.comm, p.events, p.failures, p.cgroup
            );
        }
        let _ = writeln!(o);
    }
    if !s.cgroups.is_empty() {
        let _ = writeln!(o, "Top cgroups by events (the owner's cgroup)");
        let _ = writeln!(
            o,
            "  {:>9} {:>9}  {:<24}  CGROUP",
            "EVENTS", "FAILURES", "UNIT"
        );
        for c in s.cgroups.iter().take(top) {
            let _ = writeln!(
                o,
                "  {:>9} {:>9}  {:<24}  {}",
                c.events,
                c.failures,
                c.unit.as_deref().unwrap_or("-"),
                c.path
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
                f.path.as_deref().unwrap_or(&f.name)
            );
        }
        if s.files.iter().any(|f| !f.real_name) {
            let _ = writeln!(
                o,
                "  (file names read by the classic tracepoint programs come from the \
                 tracepoint's record, which shows a stale name for names longer than about 40 \
                 bytes; `--attach btf` reads the real ones where the kernel allows)"
            );
        }
    }
    o
}
