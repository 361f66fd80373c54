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
        // A POD column only where some cgroup is a pod's (a Kubernetes node).
        let rows: Vec<_> = s.cgroups.iter().take(top).collect();
        let pods: Vec<Option<String>> = rows
            .iter()
            .map(|c| c.pod.as_ref().map(|p| p.display()))
            .collect();
        let pw = pods.iter().flatten().map(String::len).max();
        let pod_head = pw.map_or(String::new(), |w| format!("{:<w$}  ", "POD", w = w.max(3)));
        let _ = writeln!(
            o,
            "  {:>9} {:>9}  {:<24}  {pod_head}CGROUP",
            "EVENTS", "FAILURES", "UNIT"
        );
        for (c, pod) in rows.iter().zip(&pods) {
            let pod = pw.map_or(String::new(), |w| {
                format!("{:<w$}  ", pod.as_deref().unwrap_or("-"), w = w.max(3))
            });
            let _ = writeln!(
                o,
                "  {:>9} {:>9}  {:<24}  {pod}{}",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        aggregate::Aggregate, event::Event, filters::Filters, kernel_info::KernelInfo,
        pods::PodName, results::ResultTable,
    };
    use collapse_trace_common::RecordKind;

    fn snapshot(paths: &[(u64, &str)], named: Option<&str>) -> Snapshot {
        let mut agg = Aggregate::new(ResultTable::builtin());
        for (id, path) in paths {
            let mut e = Event::empty();
            e.tracepoint = RecordKind::ScanFile;
            e.result = 1;
            e.tgid = 9;
            e.owner_tgid = 9;
            e.owner_cgroup_id = *id;
            e.filename = b"f".to_vec();
            agg.add(&e);
            agg.set_cgroup_path(*id, path.to_string());
        }
        if let Some(uid) = named {
            agg.set_pod_name(
                uid.into(),
                PodName {
                    namespace: "prod".into(),
                    name: "web-0".into(),
                },
            );
        }
        let info = KernelInfo::offline("x".into(), ResultTable::builtin(), &[]);
        Snapshot::build(&agg, &info, Filters::default(), true, 1.0)
    }

    #[test]
    fn the_cgroups_table_has_a_pod_column_only_on_a_kubernetes_node() {
        let uid = "0b6f4c9a-7d3e-4f21-9a8b-1c2d3e4f5a6b";
        let pod = format!("/kubepods/besteffort/pod{uid}");
        let text = render_text(
            &snapshot(&[(7, &pod), (8, "/system.slice/db.service")], Some(uid)),
            10,
        );
        // In the cgroups table (the owners table shows the paths too).
        let table = text.split("Top cgroups").nth(1).expect("a cgroups table");
        let line = |needle: &str| {
            table
                .lines()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no {needle:?} in\n{text}"))
                .to_string()
        };
        assert!(line("UNIT").contains("POD"), "{text}");
        assert!(line(&pod).contains("prod/web-0"), "{text}");
        assert!(line("db.service").contains(" - "), "{text}");
        // Without a name, the UID.
        let text = render_text(&snapshot(&[(7, &pod)], None), 10);
        assert!(
            text.lines().any(|l| l.contains(&format!("{uid}  {pod}"))),
            "{text}"
        );
        // No pod anywhere: no column.
        let text = render_text(&snapshot(&[(8, "/system.slice/db.service")], None), 10);
        assert!(!text.contains("POD"), "{text}");
    }
}
