//! Attempts: one per range a collapse was tried on, joined from the raw events.
//!
//! The kernel traces a range's attempt at its end: `collapse_file` / `collapse_huge_page`
//! (when the scan went on to collapse) and then the scan event (`scan_file` / `scan_pmd`)
//! carrying the attempt's final result, on the same thread. A MADV_COLLAPSE call tries each
//! 2 MiB range of its span in turn, and its call record (the errno) comes after the last.
//! So: a collapse event opens an attempt on its thread, the next scan event on that thread
//! closes it (one attempt, one outcome, from the scan's result), and a call's attempts are
//! filed when its call record arrives. A call that produced no event at all (EINVAL on a
//! range that is not eligible, say) is one attempt whose result is the errno.
//!
//! Latency: a MADV_COLLAPSE attempt runs from the call's entry (the first range) or the end
//! of the call's previous range, to the end of its scan (the last range: to the call's
//! return). khugepaged's attempts have no start mark (no tracepoint fires when a scan
//! begins), so they carry no latency. Times are the events' `ts_ns`: with the default
//! tick-cached clock they are exact to one kernel tick only (see [`Clock`]).

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
};

use foldhash::{HashMap, HashMapExt as _};
use serde::{Deserialize, Serialize};

use collapse_trace_common::{Origin, RecordKind};

use super::{
    event::{Event, escape, origin_name},
    indexed::{Table, Threads, find},
    outcome::{Knobs, Outcome, advice, classify, classify_errno, describe},
    results::{ResultTable, meaning},
};

/// Attempts of one (origin, outcome, result), with what the result means and what to
/// change: the rows `stat`, `/json` and `top`'s attempts view show.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptSummary {
    /// `khugepaged`, `madvise` or `unknown`.
    pub origin: &'static str,
    /// The outcome.
    pub outcome: Outcome,
    /// Final result (a `scan_result` name, or an errno for a call without events), escaped.
    pub result: String,
    /// Attempts.
    pub count: u64,
    /// One line: what it means.
    pub meaning: &'static str,
    /// What to change, when something can (quoting `knobs` where known).
    pub advice: Option<String>,
}

/// Which clock the events' times came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Clock {
    /// Read once per kernel tick and shared: times lag by up to one tick (4 ms at HZ=250),
    /// so short latencies read as 0.
    #[default]
    Tick,
    /// `--precise-time`: read for every record, ns-exact.
    Precise,
    /// Not known (a capture that does not say).
    Unknown,
}

impl Clock {
    /// Words for a person.
    pub fn describe(self) -> &'static str {
        match self {
            Clock::Tick => {
                "tick-cached clock: times exact to one kernel tick (4 ms at HZ=250), shorter \
                 latencies read as 0; --precise-time gives exact times"
            }
            Clock::Precise => "precise clock (--precise-time): ns-exact times",
            Clock::Unknown => "clock not known (the capture does not say)",
        }
    }
}

/// Upper bounds of the latency buckets, in seconds (the last bucket is +Inf).
pub const LATENCY_BOUNDS_S: [f64; 16] = [
    0.000_01, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 5.0,
];

/// [`LATENCY_BOUNDS_S`] in ns (compared per sample without a division).
const LATENCY_BOUNDS_NS: [u64; LATENCY_BOUNDS_S.len()] = {
    let mut ns = [0; LATENCY_BOUNDS_S.len()];
    let mut i = 0;
    while i < ns.len() {
        ns[i] = (LATENCY_BOUNDS_S[i] * 1e9 + 0.5) as u64;
        i += 1;
    }
    ns
};

/// A latency histogram with the fixed [`LATENCY_BOUNDS_S`] buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// Samples per bucket (not cumulative); one more than [`LATENCY_BOUNDS_S`] (+Inf).
    pub buckets: Vec<u64>,
    /// Samples.
    pub count: u64,
    /// Sum of the samples, ns.
    pub sum_ns: u64,
    /// Largest sample, ns.
    pub max_ns: u64,
}

impl Histogram {
    /// Takes one sample.
    pub fn observe(&mut self, ns: u64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; LATENCY_BOUNDS_S.len() + 1];
        }
        let i = LATENCY_BOUNDS_NS
            .iter()
            .position(|b| ns <= *b)
            .unwrap_or(LATENCY_BOUNDS_NS.len());
        self.buckets[i] += 1;
        self.count += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    /// The smallest bucket bound (seconds; `f64::INFINITY` for the last) at or below which
    /// at least `q` of the samples lie; `None` when empty.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let want = (q * self.count as f64).ceil() as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= want.max(1) {
                return Some(LATENCY_BOUNDS_S.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        Some(f64::INFINITY)
    }
}

/// One finished attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Process id.
    pub tgid: u32,
    /// Thread id.
    pub pid: u32,
    /// Who tried.
    pub origin: Origin,
    /// The final result's name (a `scan_result` name, or a call's errno when the call
    /// produced no event), shared with the counts' keys.
    pub result: Arc<str>,
    /// What it means.
    pub outcome: Outcome,
    /// Start of the range when known (a collapse_file address, or a MADV_COLLAPSE call's
    /// start plus 2 MiB per earlier range).
    pub addr: Option<u64>,
    /// The errno of the MADV_COLLAPSE call it was part of.
    pub errno: Option<i64>,
    /// Whether the scan went on to a collapse (a collapse event came first).
    pub collapsed_step: bool,
    /// How long it took, when known.
    pub latency_ns: Option<u64>,
    /// When it ended (`ts_ns`).
    pub end_ns: u64,
}

/// Key of the attempt counts: (origin, outcome, result name). The origin is the enum, not
/// its name: the key is compared for every attempt.
pub type AttemptKey = (Origin, Outcome, Arc<str>);

/// Key of the names cache: (an errno, not a `scan_result`; the number; who tried).
type NameKey = (bool, i64, Option<Origin>);

/// Recent attempts kept for views.
pub const RECENT_ATTEMPTS: usize = 256;

/// One process's attempts by (outcome, result), in the order first seen.
pub type ProcessAttempts = Vec<((Outcome, Arc<str>), u64)>;

/// Threads or calls with an attempt in progress that are tracked at once.
pub const OPEN_CAP: usize = 16384;

/// Ranges (process, 2 MiB start) whose attempts are counted one by one.
pub const RANGE_CAP: usize = 4096;

/// The 2 MiB range size.
const PMD: u64 = 2 << 20;

/// What one thread has in progress.
#[derive(Debug, Default)]
struct InProgress {
    /// A collapse event waiting for the scan that ends its attempt.
    open: Option<Step>,
    /// The MADV_COLLAPSE call in flight (its entry time; 0: none) and its finished ranges.
    call_ns: u64,
    steps: Vec<Step>,
}

impl InProgress {
    fn idle(&self) -> bool {
        self.open.is_none() && self.steps.is_empty()
    }
}

#[derive(Debug, Clone, Default)]
struct Step {
    collapse: bool,
    result: i64,
    end_ns: u64,
    addr: Option<u64>,
}

/// The attempts of everything the core saw.
#[derive(Debug, Default)]
pub struct Attempts {
    /// Which clock the times came from (set by the command that collects).
    pub clock: Clock,
    /// The khugepaged knobs advice quotes (read by the command that collects).
    pub knobs: Knobs,
    /// Attempts by (origin, outcome, result), in the order first seen (a storm's attempts
    /// all have one key: found again by the last index, no string compared).
    pub counts: Table<AttemptKey, u64>,
    /// Where the last attempt's key is in `counts`.
    last_count: usize,
    /// Latency by (origin, outcome), for the attempts whose start is known.
    /// (Keyed by the origin's enum: a string key costs a comparison of bytes per attempt.)
    pub latency: BTreeMap<(Origin, Outcome), Histogram>,
    /// Whole MADV_COLLAPSE calls, entry to return, by the outcome of their last attempt.
    pub call_latency: BTreeMap<Outcome, Histogram>,
    /// The newest attempts, oldest first.
    pub recent: VecDeque<Attempt>,
    /// By (tgid, 2 MiB range start): attempts by outcome.
    pub ranges: HashMap<(u32, u64), BTreeMap<Outcome, u64>>,
    /// By process (tgid): attempts by (outcome, result), for at most [`RANGE_CAP`] processes
    /// (a short list each, searched: a process's attempts have few distinct results).
    pub by_tgid: HashMap<u32, ProcessAttempts>,
    /// Collapse events whose scan never came, ranges of a call whose record never came (the
    /// thread's next call began first), or that did not fit the caps.
    pub unjoined: u64,
    /// By thread: what it has in progress (its entry stays between calls).
    threads: Threads<InProgress, OPEN_CAP>,
    /// Each (errno or not, result number, origin) seen, named and classified once: an
    /// attempt then costs a reference count, not a name copy and a string match.
    named: Table<NameKey, (Arc<str>, Outcome)>,
    /// Where the last name looked up is in `named` (a storm's attempts share one).
    last_name: usize,
}

/// Whether two result names are equal. Names are interned (see `Attempts::name`): equal
/// names are nearly always one Arc, told by its address without reading the bytes.
fn same_name(a: &Arc<str>, b: &Arc<str>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

impl Attempts {
    /// Empty.
    pub fn new() -> Attempts {
        Attempts {
            ranges: HashMap::new(),
            by_tgid: HashMap::new(),
            ..Default::default()
        }
    }

    /// Takes one event, in the reader's (time) order.
    pub fn add(&mut self, e: &Event, table: &ResultTable) {
        match e.tracepoint {
            RecordKind::CollapseFile | RecordKind::CollapseHugePage => {
                let step = Step {
                    collapse: true,
                    result: e.result,
                    end_ns: e.ts_ns,
                    addr: (e.tracepoint == RecordKind::CollapseFile && e.addr != 0)
                        .then_some(e.addr & !(PMD - 1)),
                };
                match self.threads.get_or_insert(e.pid, InProgress::idle) {
                    // Two collapse events without a scan between them: the first is lost.
                    Some(t) => self.unjoined += u64::from(t.open.replace(step).is_some()),
                    None => self.unjoined += 1,
                }
            }
            RecordKind::ScanFile | RecordKind::ScanPmd => {
                let open = self.threads.get_mut(e.pid).and_then(|t| t.open.take());
                let step = Step {
                    collapse: open.is_some(),
                    result: e.result,
                    end_ns: e.ts_ns,
                    addr: open.and_then(|s| s.addr),
                };
                if e.call_ns != 0
                    && let Some(t) = self.threads.get_or_insert(e.pid, InProgress::idle)
                {
                    if t.call_ns != e.call_ns {
                        // The thread's previous call never got its record (dropped).
                        self.unjoined += t.steps.len() as u64;
                        t.steps.clear();
                        t.call_ns = e.call_ns;
                    }
                    t.steps.push(step);
                    return;
                }
                // khugepaged, or a call we cannot follow: the attempt ends here.
                let (name, outcome) = self.name(table, false, step.result, Some(e.origin));
                self.finish(Attempt {
                    tgid: e.tgid,
                    pid: e.pid,
                    origin: e.origin,
                    outcome,
                    result: name,
                    addr: step.addr,
                    errno: None,
                    collapsed_step: step.collapse,
                    latency_ns: None,
                    end_ns: e.ts_ns,
                });
            }
            RecordKind::MadviseCall => self.close_call(e, table),
        }
    }

    fn close_call(&mut self, e: &Event, table: &ResultTable) {
        // The vector goes back to the thread's entry once filed: no allocation per call.
        let mut steps = Vec::new();
        if let Some(t) = self.threads.get_mut(e.pid) {
            if t.call_ns == e.call_ns {
                t.call_ns = 0;
                steps = std::mem::take(&mut t.steps);
            }
            // A collapse event still open on this thread belongs to this call and never got
            // its scan.
            self.unjoined += u64::from(t.open.take().is_some());
        }
        let call_latency = (e.call_ns != 0).then(|| e.ts_ns.saturating_sub(e.call_ns));
        let origin = e.origin;
        let last_outcome;
        if steps.is_empty() {
            let (name, outcome) = self.name(table, true, e.result, None);
            last_outcome = outcome;
            self.finish(Attempt {
                tgid: e.tgid,
                pid: e.pid,
                origin,
                result: name,
                outcome,
                addr: (e.addr != 0).then_some(e.addr),
                errno: Some(e.result),
                collapsed_step: false,
                latency_ns: call_latency,
                end_ns: e.ts_ns,
            });
        } else {
            let n = steps.len();
            let mut start = e.call_ns;
            let mut outcome = Outcome::Error;
            for (i, s) in steps.drain(..).enumerate() {
                let end = if i + 1 == n { e.ts_ns } else { s.end_ns };
                let name;
                (name, outcome) = self.name(table, false, s.result, Some(origin));
                let addr = s.addr.or_else(|| {
                    (e.addr != 0 && (i as u64) * PMD < e.index.max(PMD))
                        .then(|| (e.addr & !(PMD - 1)) + i as u64 * PMD)
                });
                self.finish(Attempt {
                    tgid: e.tgid,
                    pid: e.pid,
                    origin,
                    result: name,
                    outcome,
                    addr,
                    errno: Some(e.result),
                    collapsed_step: s.collapse,
                    latency_ns: (e.call_ns != 0).then(|| end.saturating_sub(start)),
                    end_ns: end,
                });
                start = end;
            }
            last_outcome = outcome;
        }
        if steps.capacity() > 0
            && let Some(t) = self.threads.get_mut(e.pid)
            && t.steps.capacity() == 0
        {
            t.steps = steps;
        }
        if let Some(ns) = call_latency {
            self.call_latency
                .entry(last_outcome)
                .or_default()
                .observe(ns);
        }
    }

    /// The name and outcome of result `r` (an errno when `errno`) for `origin`, from the
    /// cache; a number the table does not name is not cached (a text capture may name it
    /// later).
    fn name(
        &mut self,
        table: &ResultTable,
        errno: bool,
        r: i64,
        origin: Option<Origin>,
    ) -> (Arc<str>, Outcome) {
        let key = (errno, r, origin);
        if let Some(i) = find(&self.named, &mut self.last_name, &key) {
            let (n, o) = &self.named[i];
            return (n.clone(), *o);
        }
        let (name, outcome) = if errno {
            let name = table.name_of(RecordKind::MadviseCall, r);
            let outcome = classify_errno(&name);
            (name, outcome)
        } else {
            let name = table.name(r);
            let outcome = classify(&name, origin);
            (name, outcome)
        };
        let name: Arc<str> = name.into();
        if errno || table.names.contains_key(&r) {
            self.last_name = self.named.insert_full(key, (name.clone(), outcome)).0;
        }
        (name, outcome)
    }

    fn finish(&mut self, a: Attempt) {
        // Keys share the attempt's name: no allocation per attempt once a key is known (this
        // runs for every attempt, hundreds of thousands a second under a storm).
        // The last key is nearly always this attempt's: tested without a reference count.
        let same =
            |(o, oc, r): &AttemptKey| *o == a.origin && *oc == a.outcome && same_name(r, &a.result);
        match self.counts.get_index_mut(self.last_count) {
            Some((k, n)) if same(k) => *n += 1,
            _ => {
                let key = (a.origin, a.outcome, a.result.clone());
                match find(&self.counts, &mut self.last_count, &key) {
                    Some(i) => self.counts[i] += 1,
                    None => self.last_count = self.counts.insert_full(key, 1).0,
                }
            }
        }
        if let Some(ns) = a.latency_ns {
            match self.latency.get_mut(&(a.origin, a.outcome)) {
                Some(h) => h.observe(ns),
                None => self
                    .latency
                    .entry((a.origin, a.outcome))
                    .or_default()
                    .observe(ns),
            }
        }
        let n = self.by_tgid.len();
        if let Some(m) = self.by_tgid.get_mut(&a.tgid) {
            match m
                .iter_mut()
                .find(|((o, r), _)| *o == a.outcome && same_name(r, &a.result))
            {
                Some((_, n)) => *n += 1,
                None => m.push(((a.outcome, a.result.clone()), 1)),
            }
        } else if n < RANGE_CAP {
            self.by_tgid
                .insert(a.tgid, vec![((a.outcome, a.result.clone()), 1)]);
        }
        if let Some(addr) = a.addr {
            let key = (a.tgid, addr & !(PMD - 1));
            let n = self.ranges.len();
            if let Some(r) = self.ranges.get_mut(&key) {
                *r.entry(a.outcome).or_default() += 1;
            } else if n < RANGE_CAP {
                self.ranges.insert(key, BTreeMap::from([(a.outcome, 1)]));
            }
        }
        if self.recent.len() == RECENT_ATTEMPTS {
            self.recent.pop_front();
        }
        self.recent.push_back(a);
    }

    /// Attempts in all.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Attempts that tried something (`already_huge` and `nothing_to_collapse` left out):
    /// what success ratios divide by.
    pub fn tried(&self) -> u64 {
        self.counts
            .iter()
            .filter(|((_, o, _), _)| o.is_attempt())
            .map(|(_, n)| n)
            .sum()
    }

    /// Every (origin, outcome, result) with its count, meaning and advice, most first (ties
    /// by origin, outcome, result).
    pub fn summary(&self) -> Vec<AttemptSummary> {
        let mut rows: Vec<AttemptSummary> = self
            .counts
            .iter()
            .map(|((origin, outcome, result), n)| {
                let o = (*origin != Origin::Unknown).then_some(*origin);
                AttemptSummary {
                    origin: origin_name(*origin),
                    outcome: *outcome,
                    result: escape(result.as_bytes()),
                    count: *n,
                    // An errno (a call without events) has the errno's meaning.
                    meaning: if result.starts_with('E') || &**result == "ok" {
                        meaning(result)
                    } else {
                        describe(result).meaning
                    },
                    advice: advice(result, o, false, &self.knobs),
                }
            })
            .collect();
        rows.sort_by(|x, y| {
            y.count
                .cmp(&x.count)
                .then((x.origin, x.outcome, &x.result).cmp(&(y.origin, y.outcome, &y.result)))
        });
        rows
    }

    /// Attempts by outcome.
    pub fn by_outcome(&self) -> BTreeMap<Outcome, u64> {
        let mut m = BTreeMap::new();
        for ((_, o, _), n) in &self.counts {
            *m.entry(*o).or_default() += n;
        }
        m
    }

    /// Attempts still in progress (collapse events waiting for their scan, calls waiting
    /// for their return).
    pub fn in_progress(&self) -> u64 {
        self.threads
            .values()
            .map(|t| u64::from(t.open.is_some()) + t.steps.len() as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::tests::record;

    fn ev(tp: RecordKind, pid: u32, result: i32, ts: u64, call_ns: u64, origin: Origin) -> Event {
        let mut e = Event::decode(&record(tp, pid, result, b"w", b"f")).unwrap();
        e.pid = pid;
        e.ts_ns = ts;
        e.call_ns = call_ns;
        e.origin = origin;
        e
    }

    #[test]
    fn scan_collapse_and_return_are_one_attempt() {
        let t = ResultTable::builtin();
        let mut a = Attempts::new();
        use RecordKind::*;
        let m = Origin::Madvise;
        // One call over two ranges: the first collapses (collapse_file then scan_file, both
        // pte_mapped_hugepage), the second is page_filled; the call returns EAGAIN.
        let mut c = ev(CollapseFile, 7, 10, 1_100, 1_000, m);
        c.addr = 0x20_0000;
        a.add(&c, &t);
        a.add(&ev(ScanFile, 7, 10, 1_200, 1_000, m), &t);
        let mut c = ev(CollapseFile, 7, 30, 1_500, 1_000, m);
        c.addr = 0x40_1000;
        a.add(&c, &t);
        a.add(&ev(ScanFile, 7, 30, 1_600, 1_000, m), &t);
        assert_eq!(a.total(), 0, "nothing is filed before the call returns");
        let mut ret = ev(MadviseCall, 7, 11, 1_700, 1_000, m);
        ret.addr = 0x20_0000;
        ret.index = 4 << 20;
        a.add(&ret, &t);
        assert_eq!(
            a.counts[&(
                Origin::Madvise,
                Outcome::Collapsed,
                "pte_mapped_hugepage".into()
            )],
            1
        );
        assert_eq!(
            a.counts[&(Origin::Madvise, Outcome::Transient, "page_filled".into())],
            1
        );
        assert_eq!(a.total(), 2);
        let lat: Vec<_> = a.recent.iter().map(|x| x.latency_ns).collect();
        assert_eq!(lat, [Some(200), Some(500)]);
        assert_eq!(a.recent[1].addr, Some(0x40_0000));
        assert_eq!(a.recent[1].errno, Some(11));
        assert_eq!(a.call_latency[&Outcome::Transient].count, 1);
        assert_eq!(a.call_latency[&Outcome::Transient].sum_ns, 700);

        // khugepaged: scan_pmd alone (pmd_none), then collapse + scan (succeeded).
        let k = Origin::Khugepaged;
        a.add(&ev(ScanPmd, 50, 3, 2_000, 0, k), &t);
        a.add(&ev(CollapseHugePage, 50, 1, 2_100, 0, k), &t);
        a.add(&ev(ScanPmd, 50, 1, 2_200, 0, k), &t);
        assert_eq!(
            a.counts[&(
                Origin::Khugepaged,
                Outcome::NothingToCollapse,
                "pmd_none".into()
            )],
            1
        );
        assert_eq!(
            a.counts[&(Origin::Khugepaged, Outcome::Collapsed, "succeeded".into())],
            1
        );
        assert!(a.recent.back().unwrap().collapsed_step);
        assert_eq!(a.recent.back().unwrap().latency_ns, None);

        // A call with no event at all: one attempt named by its errno.
        a.add(&ev(MadviseCall, 9, 22, 3_000, 2_500, m), &t);
        assert_eq!(
            a.counts[&(Origin::Madvise, Outcome::Refused, "EINVAL".into())],
            1
        );
        assert_eq!(a.total(), 5);
        assert_eq!(a.in_progress(), 0);
        assert_eq!(a.unjoined, 0);
    }

    #[test]
    fn a_call_whose_record_never_came_is_unjoined_when_the_next_call_begins() {
        let t = ResultTable::builtin();
        let mut a = Attempts::new();
        use RecordKind::*;
        let m = Origin::Madvise;
        // Call 1_000 finishes one range (page_filled); its return record was dropped.
        a.add(&ev(CollapseFile, 7, 30, 1_100, 1_000, m), &t);
        a.add(&ev(ScanFile, 7, 30, 1_200, 1_000, m), &t);
        assert_eq!((a.in_progress(), a.unjoined), (1, 0));
        // The thread's next call begins: the old range is unjoined, not filed under it.
        a.add(&ev(ScanFile, 7, 3, 2_100, 2_000, m), &t);
        assert_eq!((a.in_progress(), a.unjoined), (1, 1));
        a.add(&ev(MadviseCall, 7, 22, 2_200, 2_000, m), &t);
        assert_eq!(a.total(), 1);
        assert_eq!(
            a.counts[&(
                Origin::Madvise,
                Outcome::NothingToCollapse,
                "pmd_none".into()
            )],
            1
        );
        assert_eq!(a.recent[0].errno, Some(22));
        assert_eq!((a.in_progress(), a.unjoined), (0, 1));
    }

    #[test]
    fn histogram_buckets() {
        let mut h = Histogram::default();
        h.observe(0);
        h.observe(3_000_000); // 3 ms -> le 0.005
        h.observe(60_000_000_000);
        assert_eq!(h.count, 3);
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[7], 1);
        assert_eq!(h.buckets[LATENCY_BOUNDS_S.len()], 1);
        assert_eq!(h.quantile_bound(0.5), Some(0.005));
        assert_eq!(h.quantile_bound(1.0), Some(f64::INFINITY));
    }
}
