//! The system context on `/metrics`: /proc/vmstat's `thp_*` counters and khugepaged's
//! progress, named by Prometheus conventions (base units, `_total` for counters):
//!
//! | metric | type | source |
//! |---|---|---|
//! | `collapse_trace_vmstat_<name>_total` | counter | each `thp_<name>` line of /proc/vmstat (e.g. `collapse_trace_vmstat_thp_collapse_alloc_total`), since boot |
//! | `collapse_trace_khugepaged_full_scans_total`, `collapse_trace_khugepaged_pages_collapsed_total` | counter | `khugepaged/full_scans`, `pages_collapsed`, since boot |
//! | `collapse_trace_khugepaged_scan_sleep_seconds`, `collapse_trace_khugepaged_alloc_sleep_seconds` | gauge | `scan_sleep_millisecs`, `alloc_sleep_millisecs`, in seconds |
//! | `collapse_trace_khugepaged_<knob>` | gauge | the other numeric files: `pages_to_scan`, `max_ptes_none`, `max_ptes_swap`, `max_ptes_shared`, `defrag` |

use prometheus_client::{
    encoding::prometheus_text,
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

use crate::model::system::{KHUGEPAGED_COUNTERS, SystemContext};

/// The metrics body of the system context (Prometheus text format 0.0.4, appendable to
/// another body of the same format).
pub fn render(ctx: &SystemContext) -> String {
    let mut reg = Registry::default();
    for (name, v) in &ctx.vmstat_thp {
        let c = Counter::<u64>::default();
        c.inc_by(*v);
        reg.register(
            format!("collapse_trace_vmstat_{name}"),
            format!("/proc/vmstat {name}: since boot"),
            c,
        );
    }
    for (name, v) in &ctx.khugepaged {
        let file = format!("transparent_hugepage/khugepaged/{name}");
        if KHUGEPAGED_COUNTERS.contains(&name.as_str()) {
            let c = Counter::<u64>::default();
            c.inc_by(*v);
            reg.register(
                format!("collapse_trace_khugepaged_{name}"),
                format!("{file}: since boot"),
                c,
            );
        } else if let Some(base) = name.strip_suffix("_millisecs") {
            let g = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
            g.set(*v as f64 / 1000.0);
            reg.register(
                format!("collapse_trace_khugepaged_{base}_seconds"),
                format!("{file}, in seconds"),
                g,
            );
        } else {
            let g = Gauge::<i64>::default();
            g.set(i64::try_from(*v).unwrap_or(i64::MAX));
            reg.register(
                format!("collapse_trace_khugepaged_{name}"),
                format!("{file} (a setting)"),
                g,
            );
        }
    }
    let mut out = String::new();
    let _ = prometheus_text::encode(&mut out, &reg);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions() {
        let body = render(&SystemContext {
            vmstat_thp: vec![("thp_collapse_alloc".into(), 7)],
            khugepaged: vec![
                ("full_scans".into(), 3),
                ("scan_sleep_millisecs".into(), 10_000),
                ("pages_to_scan".into(), 4096),
            ],
        });
        for l in [
            "# TYPE collapse_trace_vmstat_thp_collapse_alloc_total counter",
            "collapse_trace_vmstat_thp_collapse_alloc_total 7",
            "collapse_trace_khugepaged_full_scans_total 3",
            "collapse_trace_khugepaged_scan_sleep_seconds 10.0",
            "collapse_trace_khugepaged_pages_to_scan 4096",
        ] {
            assert!(body.lines().any(|x| x == l), "no {l:?} in\n{body}");
        }
    }
}
