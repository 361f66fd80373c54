//! The post-mortem report of a capture: its document (schema `collapse-trace.report/1`),
//! the findings in plain words, the text rendering and the plot.

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use collapse_trace_common::RecordKind;

use super::json::{Finding, REPORT_SCHEMA, Report, Snapshot, TimelineRow};
use crate::model::{
    aggregate::Aggregate,
    capture::{Format, Loaded},
    outcome::Outcome,
};

/// The report document of a loaded capture.
pub fn build(l: &Loaded) -> Report {
    let snapshot = Snapshot::build(&l.agg, &l.info, l.filters.clone(), true, l.duration_s);
    Report {
        schema: REPORT_SCHEMA.to_string(),
        capture: l.capture.clone(),
        timeline: timeline(&l.agg),
        findings: findings(&snapshot),
        snapshot,
    }
}

fn timeline(agg: &Aggregate) -> Vec<TimelineRow> {
    let Some(first) = agg.timeline.keys().next().copied() else {
        return Vec::new();
    };
    let last = agg.timeline.keys().next_back().copied().unwrap_or(first);
    // Every second from the first to the last, quiet ones too (capped at a day of rows).
    let end = last.min(first + 86_400);
    (first..=end)
        .map(|s| {
            let t = agg.timeline.get(&s).copied().unwrap_or_default();
            TimelineRow {
                t_s: s - first,
                attempts: t.attempts,
                failures: t.failures,
                failed_calls: t.failed_calls,
            }
        })
        .collect()
}

fn count_of(s: &Snapshot, tp: RecordKind, result: &str) -> u64 {
    s.tracepoints
        .iter()
        .filter(|t| t.name == tp.name())
        .flat_map(|t| &t.results)
        .filter(|r| r.result == result)
        .map(|r| r.count)
        .sum()
}

/// The seed patch's cases, in plain words.
pub fn findings(s: &Snapshot) -> Vec<Finding> {
    let mut out = Vec::new();
    // A scan event carries each attempt's final result; collapse_file when scans are absent.
    let scans = count_of(s, RecordKind::ScanFile, "page_filled");
    let filled = if scans > 0 {
        scans
    } else {
        count_of(s, RecordKind::CollapseFile, "page_filled")
    };
    if filled > 0 {
        let mut who = Vec::new();
        for c in &s.callers {
            for e in c.errnos.iter().filter(|e| e.errno == "EAGAIN") {
                let n: u64 = e
                    .results
                    .iter()
                    .filter(|r| r.result == "page_filled" && r.tracepoint.contains("scan"))
                    .map(|r| r.count)
                    .sum();
                if n > 0 {
                    who.push(format!("{} ({}): {n} of its EAGAIN calls", c.comm, c.tgid));
                }
            }
        }
        out.push(Finding {
            kind: "page_filled".into(),
            count: filled,
            text: format!(
                "{filled} collapse attempts ended in page_filled: a page fault filled a hole in \
                 the range while the collapse ran, so the kernel rolled the collapse back \
                 (MADV_COLLAPSE returns EAGAIN). It is a race, not a property of the range: a \
                 retry is expected to succeed.{}",
                if who.is_empty() {
                    String::new()
                } else {
                    format!(" Callers: {}.", who.join("; "))
                }
            ),
        });
    }
    let mut uffd = Vec::new();
    let mut uffd_calls = 0;
    for c in &s.callers {
        for e in c.errnos.iter().filter(|e| e.errno == "EBUSY") {
            let n: u64 = e
                .results
                .iter()
                .filter(|r| r.result == "exceed_none_pte" && r.tracepoint.contains("scan"))
                .map(|r| r.count)
                .sum();
            if n > 0 {
                uffd_calls += n;
                uffd.push(format!("{} ({}): {n} calls", c.comm, c.tgid));
            }
        }
    }
    if uffd_calls > 0 {
        out.push(Finding {
            kind: "uffd_missing_pages".into(),
            count: uffd_calls,
            text: format!(
                "{uffd_calls} MADV_COLLAPSE calls returned EBUSY with exceed_none_pte: the range \
                 has missing pages (holes), and on shmem with a userfaultfd armed in MISSING \
                 mode the kernel refuses to fill them behind the userfaultfd owner's back. The \
                 collapse is refused while pages are missing: the uffd owner must populate the \
                 range first (UFFDIO_COPY / UFFDIO_ZEROPAGE, or touch every page), then retry. \
                 Callers: {}.",
                uffd.join("; ")
            ),
        });
    } else {
        let n = count_of(s, RecordKind::CollapseFile, "exceed_none_pte");
        if n > 0 {
            out.push(Finding {
                kind: "exceed_none_pte".into(),
                count: n,
                text: format!(
                    "{n} file collapses ended in exceed_none_pte: too many holes in the range \
                     (with a userfaultfd armed in MISSING mode on shmem, any hole refuses the \
                     collapse). The capture has no MADV_COLLAPSE calls to tell which; populate \
                     the range before collapsing it."
                ),
            });
        }
    }
    out
}

fn bar(n: u64, max: u64, width: usize) -> String {
    if max == 0 || n == 0 {
        return String::new();
    }
    let w = ((n as f64 / max as f64) * width as f64).ceil() as usize;
    "#".repeat(w.clamp(1, width))
}

/// The text report.
pub fn render(r: &Report, file: &Path, top: usize) -> String {
    use std::fmt::Write as _;
    let s = &r.snapshot;
    let c = &r.capture;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "collapse-trace report: {} ({}{}), {:.1} s, kernel {}; result names {}",
        file.display(),
        c.format.name(),
        if c.compressed { ", zstd" } else { "" },
        s.duration_s,
        s.kernel_release,
        s.result_names.describe()
    );
    match &c.cut_reason {
        Some(why) => {
            let _ = writeln!(o, "CUT SHORT: {why}; {} events read", c.events);
        }
        None if c.format == Format::Record => {
            let _ = writeln!(o, "complete: {} events, trailer present", c.events);
        }
        None => {}
    }
    if !c.kernel_counts {
        let _ = writeln!(
            o,
            "counts are of the events in the capture (no kernel counters: drops unknown)"
        );
    }
    if c.skipped_lines > 0 {
        let first = c.first_skipped.as_ref().map_or(String::new(), |f| {
            format!(" (first: line {}: {})", f.line, f.why)
        });
        let _ = writeln!(
            o,
            "{} lines not understood, skipped{first}",
            c.skipped_lines
        );
    }
    // Success ratios count attempts only (one per range tried, joined from scan, collapse and
    // MADV_COLLAPSE return): a range that was huge already, or had nothing to collapse, is
    // neither a success nor a failure.
    let by = |x: Outcome| {
        s.attempts
            .by_outcome
            .iter()
            .find(|c| c.outcome == x)
            .map_or(0, |c| c.count)
    };
    let skipped = by(Outcome::AlreadyHuge) + by(Outcome::NothingToCollapse);
    let attempts = s.attempts.total - skipped;
    if s.attempts.total > 0 {
        let _ = writeln!(
            o,
            "success ratio: {} of {attempts} collapse attempts ({:.1}%); {skipped} ranges \
             were already huge or had nothing to collapse (not attempts)",
            by(Outcome::Collapsed),
            100.0 * by(Outcome::Collapsed) as f64 / attempts.max(1) as f64
        );
    }

    let mut sorted = s.clone();
    sorted.processes.sort_by(|a, b| {
        b.failures
            .cmp(&a.failures)
            .then(b.events.cmp(&a.events))
            .then(a.tgid.cmp(&b.tgid))
    });
    o.push_str(
        &super::text::render_body(&sorted, top, c.kernel_counts)
            .replace("Top processes by events", "Top processes by failures"),
    );

    if !s.ranges.is_empty() {
        let _ = writeln!(o, "\nTop address ranges by failures");
        let _ = writeln!(
            o,
            "  {:>8} {:>18} {:>9} {:>7} {:>7} {:>6} {:>6}  TOP FAILURE",
            "PID", "START", "LEN", "EVENTS", "FAILS", "CALLS", "FAILED"
        );
        for g in s.ranges.iter().take(top) {
            let _ = writeln!(
                o,
                "  {:>8} {:>#18x} {:>#9x} {:>7} {:>7} {:>6} {:>6}  {}",
                g.tgid,
                g.start,
                g.len,
                g.events,
                g.failures,
                g.calls,
                g.failed_calls,
                g.top_failure.as_deref().unwrap_or("-")
            );
        }
    }

    if !r.timeline.is_empty() {
        let _ = writeln!(
            o,
            "\nFailed collapse attempts per second (# failed; total attempts and failed calls \
             at the right)"
        );
        // At most 60 rows: seconds are grouped when the capture is longer.
        let per = r.timeline.len().div_ceil(60).max(1);
        let rows: Vec<(u64, u64, u64, u64)> = r
            .timeline
            .chunks(per)
            .map(|c| {
                (
                    c[0].t_s,
                    c.iter().map(|t| t.failures).sum(),
                    c.iter().map(|t| t.attempts).sum(),
                    c.iter().map(|t| t.failed_calls).sum(),
                )
            })
            .collect();
        let max = rows.iter().map(|r| r.1).max().unwrap_or(0);
        for (t, f, a, fc) in rows {
            let _ = writeln!(
                o,
                "  {:>6}s {:<40} {f:>7} failed / {a:>7} attempts, {fc} failed calls",
                format!("+{t}"),
                bar(f, max, 40)
            );
        }
    }

    if !r.findings.is_empty() {
        let _ = writeln!(o, "\nFindings");
        for f in &r.findings {
            let _ = writeln!(o, "  - [{}] {}", f.kind, f.text);
        }
    }
    o
}

/// A TrueType font for chart labels, from the usual Debian/Fedora places.
fn find_font() -> Option<&'static [u8]> {
    const PATHS: [&str; 5] = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
    ];
    PATHS
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .map(|b| &*Box::leak(b.into_boxed_slice()))
}

/// Draws failures and attempts per second (plotters; SVG or PNG by the file's extension).
pub fn draw(path: &Path, timeline: &[TimelineRow]) -> Result<()> {
    use plotters::prelude::*;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if !matches!(ext.as_deref(), Some("svg" | "png")) {
        bail!(
            "--plot {}: the name must end in .svg or .png",
            path.display()
        );
    }
    let font = find_font().context(
        "no TrueType font for the chart's labels (looked for DejaVu Sans and Liberation Sans): \
         install fonts-dejavu-core",
    )?;
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| anyhow::anyhow!("the font for the chart's labels did not load"))?;

    fn chart<DB: DrawingBackend>(
        root: DrawingArea<DB, plotters::coord::Shift>,
        t: &[TimelineRow],
    ) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("drawing: {e:?}");
        root.fill(&WHITE).map_err(err)?;
        let xmax = t.last().map_or(1, |r| r.t_s.max(1));
        let ymax = t
            .iter()
            .map(|r| r.attempts.max(r.failures))
            .max()
            .unwrap_or(1)
            .max(1);
        let mut c = ChartBuilder::on(&root)
            .caption("collapse attempts per second", ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0u64..xmax, 0u64..ymax + ymax / 10 + 1)
            .map_err(err)?;
        c.configure_mesh()
            .x_desc("seconds since the first event")
            .y_desc("per second")
            .draw()
            .map_err(err)?;
        c.draw_series(LineSeries::new(
            t.iter().map(|r| (r.t_s, r.attempts)),
            BLUE.stroke_width(2),
        ))
        .map_err(err)?
        .label("attempts")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLUE.stroke_width(2)));
        c.draw_series(LineSeries::new(
            t.iter().map(|r| (r.t_s, r.failures)),
            RED.stroke_width(2),
        ))
        .map_err(err)?
        .label("failed attempts")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], RED.stroke_width(2)));
        c.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
        Ok(())
    }

    let size = (960, 480);
    if ext.as_deref() == Some("svg") {
        chart(SVGBackend::new(path, size).into_drawing_area(), timeline)
    } else {
        chart(BitMapBackend::new(path, size).into_drawing_area(), timeline)
    }
    .with_context(|| format!("drawing {}", path.display()))
}
