//! Loading a text capture: each line through the [`parse_line`](super::parse_line) of its
//! dialect and the [`TextDecoder`](super::TextDecoder), with the text error policy (lines not
//! understood are skipped and counted, the first one named).

use std::io::BufRead;

use anyhow::{Context as _, Result, bail};
use collapse_trace_common::RecordKind;

use crate::{
    capture::{
        Progress,
        lines::{Line, LineReader},
        text,
    },
    model::{
        aggregate::Aggregate,
        capture::{CaptureInfo, Format, Loaded, Skipped},
        filters::Filters,
        kernel_info::KernelInfo,
        results::{ResultSource, ResultTable},
    },
};

/// `rest` of `<name>:   rest` (a trace-cmd buffer prefix), if the line has one.
fn strip_buffer_prefix(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let end = t.find(|c: char| c.is_whitespace())?;
    let (word, rest) = t.split_at(end);
    (word.len() > 1 && word.ends_with(':')).then_some(rest)
}

/// Reads a text capture in `format`, numbering results with `names`.
pub(crate) fn load_text<R: BufRead>(
    mut lines: LineReader<R>,
    format: Format,
    compressed: bool,
    bytes_read: &mut dyn FnMut() -> u64,
    progress: Progress<'_>,
    what: &str,
    names: &ResultTable,
) -> Result<Loaded> {
    let mut table = names.clone();
    table.source = ResultSource::Capture;
    let mut agg = Aggregate::new(table);
    let mut decoder = text::TextDecoder::new();
    let mut buf = Vec::with_capacity(4096);
    let (mut events, mut other, mut skipped) = (0u64, 0u64, 0u64);
    let mut first_skipped: Option<Skipped> = None;
    let mut cut = None;
    let mut seen = [false; collapse_trace_common::NUM_KINDS];
    let mut skip = |n: u64, why: String, skipped: &mut u64| {
        *skipped += 1;
        if first_skipped.is_none() {
            first_skipped = Some(Skipped { line: n, why });
        }
    };
    loop {
        let kind = match lines.next(&mut buf) {
            Ok(k) => k,
            Err(e) if compressed => {
                cut = Some(format!(
                    "the compressed stream ends early after line {} ({e})",
                    lines.number
                ));
                break;
            }
            Err(e) => return Err(e).with_context(|| format!("reading {what}")),
        };
        let n = lines.number;
        match kind {
            Line::Eof => break,
            Line::TooLong => {
                skip(n, "longer than 1 MiB".into(), &mut skipped);
                continue;
            }
            Line::Complete | Line::Partial => {}
        }
        let text = String::from_utf8_lossy(&buf);
        let trimmed = text.trim();
        let header = format == Format::TraceCmd
            && ["cpus=", "version = ", "Buffer: ", "CPU "]
                .iter()
                .any(|h| trimmed.starts_with(h));
        if trimmed.is_empty() || trimmed.starts_with('#') || header {
            continue;
        }
        let parsed = match format {
            Format::Perf => text::parse_perf_line(&text),
            // trace-cmd prefixes lines of an instance's buffer with `<instance>: `.
            Format::TraceCmd => strip_buffer_prefix(&text)
                .and_then(text::parse_line)
                .or_else(|| text::parse_line(&text)),
            _ => text::parse_line(&text),
        };
        let Some(l) = parsed else {
            skip(
                n,
                format!("not a {} event line", format.name()),
                &mut skipped,
            );
            continue;
        };
        match decoder.decode(l, &mut agg.table) {
            text::Decoded::Event(e) => {
                events += 1;
                seen[e.tracepoint as usize] = true;
                agg.add(&e);
                if events.is_multiple_of(65536) {
                    progress(bytes_read());
                }
            }
            text::Decoded::Other => other += 1,
            text::Decoded::Bad(why) => skip(n, why.to_string(), &mut skipped),
        }
    }
    progress(bytes_read());
    if events == 0 && skipped > 0 {
        let f = first_skipped
            .as_ref()
            .map_or(String::new(), |s| format!(": line {}: {}", s.line, s.why));
        bail!(
            "{what}: no collapse event understood as {} text ({skipped} lines skipped){f}",
            format.name()
        );
    }
    agg.set_kernel(agg.counters_from_delivered());
    let attached: Vec<(RecordKind, bool)> = RecordKind::ALL
        .into_iter()
        .map(|t| (t, seen[t as usize]))
        .collect();
    let duration_s = agg
        .span_ns
        .map_or(0.0, |(a, b)| b.saturating_sub(a) as f64 / 1e9);
    let info = KernelInfo::offline(
        "unknown (text capture)".to_string(),
        agg.table.clone(),
        &attached,
    );
    Ok(Loaded {
        agg,
        info,
        filters: Filters::default(),
        duration_s,
        capture: CaptureInfo {
            format,
            compressed,
            cut_short: cut.is_some(),
            cut_reason: cut,
            lines: lines.number,
            events,
            kernel_counts: false,
            skipped_lines: skipped,
            first_skipped,
            other_events: other,
            start_wall_ns: None,
        },
    })
}
