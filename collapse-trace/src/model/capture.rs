//! What a capture is and what reading it found (plain data shared by the readers in
//! of the capture layer and the views of the export layer).

use serde::{Deserialize, Serialize};

use super::{aggregate::Aggregate, filters::Filters, kernel_info::KernelInfo};

/// What kind of capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// `collapse-trace record` NDJSON (plain or zstd).
    Record,
    /// tracefs `trace` / `trace_pipe` text.
    Ftrace,
    /// `trace-cmd report` text.
    TraceCmd,
    /// `perf script` text.
    Perf,
}

impl Format {
    /// The name used in outputs.
    pub fn name(self) -> &'static str {
        match self {
            Format::Record => "record",
            Format::Ftrace => "ftrace",
            Format::TraceCmd => "trace-cmd",
            Format::Perf => "perf",
        }
    }
}

/// A skipped line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Skipped {
    /// 1-based line number.
    pub line: u64,
    /// Why.
    pub why: String,
}

/// What reading the capture found, besides the events.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CaptureInfo {
    /// The format read.
    pub format: Format,
    /// zstd-compressed.
    pub compressed: bool,
    /// The capture ends before its recorder stopped cleanly (a record without trailer, or
    /// a compressed stream that ends early).
    pub cut_short: bool,
    /// Why it counts as cut short.
    pub cut_reason: Option<String>,
    /// Lines read.
    pub lines: u64,
    /// Events (and MADV_COLLAPSE calls) read.
    pub events: u64,
    /// Whether the per-kind counts are the kernel's own counters (a complete record) or
    /// counts of the events read (text captures, cut records: drops unknown).
    pub kernel_counts: bool,
    /// Text captures: lines not understood, skipped.
    pub skipped_lines: u64,
    /// The first of them.
    pub first_skipped: Option<Skipped>,
    /// Text captures: events of other tracepoints, syscalls other than MADV_COLLAPSE.
    pub other_events: u64,
    /// Start of the capture, wall clock ns (records only).
    pub start_wall_ns: Option<u64>,
}

/// A capture, read.
pub struct Loaded {
    /// The aggregation core, fed with every event.
    pub agg: Aggregate,
    /// The kernel it was taken on, as far as the capture says.
    pub info: KernelInfo,
    /// Filters of the recorder (records only).
    pub filters: Filters,
    /// Seconds covered.
    pub duration_s: f64,
    /// What reading found.
    pub capture: CaptureInfo,
}
