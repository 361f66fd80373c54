//! The attempts view: one attempt per range tried (scan -> collapse -> MADV_COLLAPSE return,
//! joined by [`crate::model::attempts`]), with its outcome, meaning, what to change, and
//! latency histograms. A section of the JSON snapshot (`attempts`), a block of the text
//! report, and three Prometheus metrics:
//!
//! | metric | labels | |
//! |---|---|---|
//! | `collapse_trace_attempts_total` | origin, outcome, result | attempts by final result |
//! | `collapse_trace_attempt_latency_seconds` | origin, outcome | histogram; MADV_COLLAPSE attempts only (khugepaged's have no start mark) |
//! | `collapse_trace_madvise_call_latency_seconds` | outcome | histogram of whole MADV_COLLAPSE calls, entry to return, by the outcome of their last range |

use std::sync::{Arc, Mutex};

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet},
    metrics::{MetricType, TypedMetric, counter::Counter, family::Family},
    registry::Registry,
};
use serde::{Deserialize, Serialize};

use crate::model::{
    aggregate::Aggregate,
    attempts::{Clock, Histogram, LATENCY_BOUNDS_S},
    event::{escape, origin_name},
    outcome::Outcome,
};

/// Rows of [`AttemptsSection::rows`] kept (most attempts first).
pub const ATTEMPT_ROWS: usize = 200;

/// `attempts` in the JSON snapshot.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AttemptsSection {
    /// Which clock the latencies came from.
    pub clock: Clock,
    /// Attempts in all (ranges tried, plus MADV_COLLAPSE calls that produced no event).
    pub total: u64,
    /// Collapsed / attempts that tried to collapse something (already-huge and empty ranges
    /// left out); `None` when there were none.
    pub success_ratio: Option<f64>,
    /// By outcome, every outcome listed (zeros included).
    pub by_outcome: Vec<OutcomeCount>,
    /// By (origin, outcome, result), most first.
    pub rows: Vec<AttemptRow>,
    /// Latency of MADV_COLLAPSE attempts by (origin, outcome).
    pub latency: Vec<LatencyRow>,
    /// Latency of whole MADV_COLLAPSE calls (entry to return) by the outcome of their last
    /// range.
    pub call_latency: Vec<LatencyRow>,
    /// Collapse events that never got their scan (not attempts).
    pub unjoined_events: u64,
    /// Ranges still in progress at the snapshot (their call had not returned).
    pub in_progress: u64,
}

/// Attempts of one outcome.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutcomeCount {
    /// `collapsed`, `already_huge`, `nothing_to_collapse`, `transient`, `refused`, `error`.
    pub outcome: Outcome,
    /// Attempts.
    pub count: u64,
}

/// Attempts of one (origin, outcome, result).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttemptRow {
    /// `khugepaged`, `madvise` or `unknown`.
    pub origin: String,
    /// The outcome.
    pub outcome: Outcome,
    /// The final result (a `scan_result` name, or an errno for a call without events).
    pub result: String,
    /// Attempts.
    pub count: u64,
    /// One line: what it means.
    pub meaning: String,
    /// What to change, when something can.
    pub advice: Option<String>,
}

/// One latency histogram.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LatencyRow {
    /// `madvise` (or `khugepaged` if it ever has a start mark).
    pub origin: String,
    /// The outcome.
    pub outcome: Outcome,
    /// Samples.
    pub count: u64,
    /// Sum, seconds.
    pub sum_s: f64,
    /// Largest, seconds.
    pub max_s: f64,
    /// Bucket bound under which half the samples lie (seconds; `null`: above the last bound).
    pub p50_le_s: Option<f64>,
    /// Same for 99%.
    pub p99_le_s: Option<f64>,
    /// Samples per bucket (not cumulative), by upper bound in seconds (`null`: +Inf).
    pub buckets: Vec<BucketRow>,
}

/// One bucket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BucketRow {
    /// Upper bound, seconds; `null` for +Inf.
    pub le_s: Option<f64>,
    /// Samples in the bucket (not cumulative).
    pub count: u64,
}

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite())
}

fn latency_row(origin: &str, outcome: Outcome, h: &Histogram) -> LatencyRow {
    LatencyRow {
        origin: origin.to_string(),
        outcome,
        count: h.count,
        sum_s: h.sum_ns as f64 / 1e9,
        max_s: h.max_ns as f64 / 1e9,
        p50_le_s: finite(h.quantile_bound(0.5)),
        p99_le_s: finite(h.quantile_bound(0.99)),
        buckets: h
            .buckets
            .iter()
            .enumerate()
            .map(|(i, n)| BucketRow {
                le_s: LATENCY_BOUNDS_S.get(i).copied(),
                count: *n,
            })
            .collect(),
    }
}

impl AttemptsSection {
    /// The section from the aggregation core.
    pub fn build(agg: &Aggregate) -> AttemptsSection {
        let a = &agg.attempts;
        let by = a.by_outcome();
        let tried = a.tried();
        let collapsed = by.get(&Outcome::Collapsed).copied().unwrap_or(0);
        let mut rows: Vec<AttemptRow> = a
            .summary()
            .into_iter()
            .map(|r| AttemptRow {
                origin: r.origin.to_string(),
                outcome: r.outcome,
                result: r.result,
                count: r.count,
                meaning: r.meaning.to_string(),
                advice: r.advice,
            })
            .collect();
        rows.truncate(ATTEMPT_ROWS);
        AttemptsSection {
            clock: a.clock,
            total: a.total(),
            success_ratio: (tried > 0).then(|| collapsed as f64 / tried as f64),
            by_outcome: Outcome::ALL
                .iter()
                .map(|o| OutcomeCount {
                    outcome: *o,
                    count: by.get(o).copied().unwrap_or(0),
                })
                .collect(),
            rows,
            latency: a
                .latency
                .iter()
                .map(|((origin, o), h)| latency_row(origin_name(*origin), *o, h))
                .collect(),
            call_latency: a
                .call_latency
                .iter()
                .map(|(o, h)| latency_row("madvise", *o, h))
                .collect(),
            unjoined_events: a.unjoined,
            in_progress: a.in_progress(),
        }
    }
}

fn secs(s: f64) -> String {
    if s < 1e-3 {
        format!("{:.0}us", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1}ms", s * 1e3)
    } else {
        format!("{s:.2}s")
    }
}

fn bound(v: Option<f64>) -> String {
    v.map_or(">5s".to_string(), |b| format!("<={}", secs(b)))
}

/// The text block (empty when there were no attempts).
pub fn render_text(s: &AttemptsSection, top: usize) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    if s.total == 0 && s.in_progress == 0 {
        return o;
    }
    let count = |x: Outcome| {
        s.by_outcome
            .iter()
            .find(|c| c.outcome == x)
            .map_or(0, |c| c.count)
    };
    let tried = s.total - count(Outcome::AlreadyHuge) - count(Outcome::NothingToCollapse);
    let _ = writeln!(
        o,
        "Attempts (one per range tried: scan -> collapse -> MADV_COLLAPSE return): {}; \
         success ratio {} of {tried} tried{}",
        s.total,
        count(Outcome::Collapsed),
        s.success_ratio
            .map_or(String::new(), |r| format!(" ({:.1}%)", r * 100.0))
    );
    let _ = writeln!(
        o,
        "  {}",
        s.by_outcome
            .iter()
            .map(|c| format!("{} {}", c.outcome.name(), c.count))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let w = s
        .rows
        .iter()
        .take(top)
        .map(|r| r.result.chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    let _ = writeln!(
        o,
        "  {:<10} {:<19} {:<w$} {:>9}  MEANING; WHAT TO CHANGE",
        "ORIGIN", "OUTCOME", "RESULT", "ATTEMPTS"
    );
    for r in s.rows.iter().take(top) {
        let _ = writeln!(
            o,
            "  {:<10} {:<19} {:<w$} {:>9}  {}{}",
            r.origin,
            r.outcome.name(),
            r.result,
            r.count,
            r.meaning,
            r.advice
                .as_deref()
                .map_or(String::new(), |a| format!("; {a}"))
        );
    }
    if s.unjoined_events > 0 || s.in_progress > 0 {
        let _ = writeln!(
            o,
            "  ({} collapse events never got their scan; {} ranges still in progress)",
            s.unjoined_events, s.in_progress
        );
    }
    let _ = writeln!(o);
    if !s.latency.is_empty() || !s.call_latency.is_empty() {
        let _ = writeln!(
            o,
            "Latency (MADV_COLLAPSE: call entry or previous range's end to this range's end; \
             khugepaged's attempts have no start mark); {}",
            s.clock_text()
        );
        let _ = writeln!(
            o,
            "  {:<24} {:<19} {:>8} {:>9} {:>9} {:>9} {:>9}",
            "WHAT", "OUTCOME", "COUNT", "MEAN", "MAX", "P50", "P99"
        );
        let rows = s
            .latency
            .iter()
            .map(|r| (format!("{} attempt", r.origin), r))
            .chain(
                s.call_latency
                    .iter()
                    .map(|r| ("MADV_COLLAPSE call".into(), r)),
            );
        for (what, r) in rows {
            let _ = writeln!(
                o,
                "  {:<24} {:<19} {:>8} {:>9} {:>9} {:>9} {:>9}",
                what,
                r.outcome.name(),
                r.count,
                secs(r.sum_s / r.count.max(1) as f64),
                secs(r.max_s),
                bound(r.p50_le_s),
                bound(r.p99_le_s)
            );
        }
        let _ = writeln!(o);
    }
    o
}

impl AttemptsSection {
    fn clock_text(&self) -> &'static str {
        self.clock.describe()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    origin: String,
    outcome: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    origin: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLatencyLabels {
    outcome: String,
}

/// A classic histogram whose buckets are set from the aggregation core on each scrape (the
/// crate's own `Histogram` can only be fed one observation at a time).
#[derive(Debug, Clone, Default)]
struct FixedHistogram(Arc<Mutex<Histogram>>);

impl FixedHistogram {
    fn set(&self, h: &Histogram) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = h.clone();
    }
}

impl TypedMetric for FixedHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for FixedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let h = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS_S
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .enumerate()
            .map(|(i, b)| (b, h.buckets.get(i).copied().unwrap_or(0)))
            .collect();
        encoder.encode_histogram::<NoLabelSet>(h.sum_ns as f64 / 1e9, h.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Registers the attempt metrics of the aggregation core in `reg`.
pub fn register_metrics(reg: &mut Registry, agg: &Aggregate) {
    let a = &agg.attempts;
    let attempts = Family::<AttemptLabels, Counter>::default();
    reg.register(
        "collapse_trace_attempts",
        "Collapse attempts, one per range tried (scan, collapse and MADV_COLLAPSE return \
         joined), by origin, outcome (collapsed, already_huge, nothing_to_collapse, transient, \
         refused, error) and final result",
        attempts.clone(),
    );
    for ((origin, outcome, result), n) in &a.counts {
        attempts
            .get_or_create(&AttemptLabels {
                origin: origin_name(*origin).to_string(),
                outcome: outcome.name().to_string(),
                result: escape(result.as_bytes()),
            })
            .inc_by(*n);
    }
    let latency = Family::<LatencyLabels, FixedHistogram>::default();
    reg.register_with_unit(
        "collapse_trace_attempt_latency",
        "Time one MADV_COLLAPSE attempt took (call entry or the previous range's end to the \
         range's end), by origin and outcome; with the default tick-cached clock exact to one \
         kernel tick only",
        prometheus_client::registry::Unit::Seconds,
        latency.clone(),
    );
    for ((origin, outcome), h) in &a.latency {
        latency
            .get_or_create(&LatencyLabels {
                origin: origin_name(*origin).to_string(),
                outcome: outcome.name().to_string(),
            })
            .set(h);
    }
    let calls = Family::<CallLatencyLabels, FixedHistogram>::default();
    reg.register_with_unit(
        "collapse_trace_madvise_call_latency",
        "Time whole MADV_COLLAPSE calls took (entry to return), by the outcome of their last range",
        prometheus_client::registry::Unit::Seconds,
        calls.clone(),
    );
    for (outcome, h) in &a.call_latency {
        calls
            .get_or_create(&CallLatencyLabels {
                outcome: outcome.name().to_string(),
            })
            .set(h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{event::Event, event::tests::record, results::ResultTable};
    use collapse_trace_common::RecordKind;

    #[test]
    fn attempts_and_latency_reach_json_text_and_metrics() {
        let mut agg = Aggregate::new(ResultTable::builtin());
        let ev = |tp: RecordKind, result: i32, ts: u64| {
            let mut e = Event::decode(&record(tp, 7, result, b"w", b"f")).unwrap();
            e.ts_ns = ts;
            e.call_ns = 1_000_000;
            e
        };
        // page_filled, then EAGAIN 3 ms after the call's entry.
        agg.add(&ev(RecordKind::CollapseFile, 30, 3_000_000));
        agg.add(&ev(RecordKind::ScanFile, 30, 3_000_000));
        agg.add(&ev(RecordKind::MadviseCall, 11, 4_000_000));
        let s = AttemptsSection::build(&agg);
        assert_eq!(s.total, 1);
        assert_eq!(s.success_ratio, Some(0.0));
        assert_eq!(s.rows[0].outcome, Outcome::Transient);
        assert!(s.rows[0].advice.as_deref().unwrap().contains("retry"));
        assert_eq!(s.latency[0].count, 1);
        assert_eq!(s.latency[0].p50_le_s, Some(0.005));
        let text = render_text(&s, 10);
        assert!(
            text.contains("transient") && text.contains("page_filled"),
            "{text}"
        );
        assert!(text.contains("tick-cached clock"), "{text}");

        let mut reg = Registry::default();
        register_metrics(&mut reg, &agg);
        let mut body = String::new();
        prometheus_client::encoding::text::encode(&mut body, &reg).unwrap();
        let has = |l: &str| assert!(body.lines().any(|x| x == l), "no line {l:?} in\n{body}");
        has(
            "collapse_trace_attempts_total{origin=\"madvise\",outcome=\"transient\",result=\"page_filled\"} 1",
        );
        has("# TYPE collapse_trace_attempt_latency_seconds histogram");
        has(
            "collapse_trace_attempt_latency_seconds_count{origin=\"madvise\",outcome=\"transient\"} 1",
        );
        has(
            "collapse_trace_attempt_latency_seconds_bucket{le=\"0.0025\",origin=\"madvise\",outcome=\"transient\"} 0",
        );
        has(
            "collapse_trace_attempt_latency_seconds_bucket{le=\"0.005\",origin=\"madvise\",outcome=\"transient\"} 1",
        );
        has(
            "collapse_trace_attempt_latency_seconds_bucket{le=\"+Inf\",origin=\"madvise\",outcome=\"transient\"} 1",
        );
        has("collapse_trace_madvise_call_latency_seconds_sum{outcome=\"transient\"} 0.003");
    }
}
