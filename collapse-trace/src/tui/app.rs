//! The state of `top`: the aggregation core plus what the operator chose (view, sort, focus,
//! filter, pause). Pure: no terminal, no kernel, no file (the caller passes the kernel
//! counters and the system context in). [`App::view`] turns it into the plain data that
//! [`super::ui`] draws, so tests can script events and keys and look at the result.

use std::{
    collections::{BTreeMap, VecDeque},
    time::Duration,
};

use collapse_trace_common::RecordKind;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::model::{
    aggregate::{Aggregate, KernelCounters, ResultCounts, dominant, failures},
    attempts::{Clock, Histogram},
    event::{Event, escape, origin_name},
    outcome::Outcome,
    results::{ResultTable, is_success, meaning},
    system::{KHUGEPAGED_COUNTERS, SystemContext},
};

/// Seconds of history in the chart (one point per interval).
pub const HISTORY: usize = 300;
/// Rows kept in the recent-failures pane.
pub const RECENT_ROWS: usize = 100;

/// The results the seed patch is about: they stand out.
pub fn is_seed_result(name: &str) -> bool {
    matches!(name, "page_filled" | "exceed_none_pte")
}

/// Columns the results table can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    /// Events since start (or reset).
    Count,
    /// Events per second over the last interval.
    Rate,
    /// Record kind (tracepoint or call), then result name.
    Name,
}

impl SortBy {
    fn next(self) -> SortBy {
        match self {
            SortBy::Count => SortBy::Rate,
            SortBy::Rate => SortBy::Name,
            SortBy::Name => SortBy::Count,
        }
    }

    /// Column label.
    pub fn label(self) -> &'static str {
        match self {
            SortBy::Count => "count",
            SortBy::Rate => "rate",
            SortBy::Name => "name",
        }
    }
}

/// The three views `v` cycles through (`1` `2` `3` pick one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewMode {
    /// What each tracepoint said: results, offenders, recent failures.
    Events,
    /// One attempt per range tried, by outcome and final result, with latency.
    Attempts,
    /// Whose memory it was (`mm->owner`), the processes that did the work, the files.
    Owners,
}

impl ViewMode {
    /// Every view, in the order `v` cycles and `1` `2` `3` pick.
    pub const ALL: [ViewMode; 3] = [ViewMode::Events, ViewMode::Attempts, ViewMode::Owners];

    fn next(self) -> ViewMode {
        match self {
            ViewMode::Events => ViewMode::Attempts,
            ViewMode::Attempts => ViewMode::Owners,
            ViewMode::Owners => ViewMode::Events,
        }
    }

    /// Name in the footer's tabs.
    pub fn label(self) -> &'static str {
        match self {
            ViewMode::Events => "events",
            ViewMode::Attempts => "attempts",
            ViewMode::Owners => "owners",
        }
    }

    /// The panes Tab cycles through in this view, the first focused on entry.
    pub fn panes(self) -> &'static [Pane] {
        match self {
            ViewMode::Events => &[Pane::Results, Pane::Offenders, Pane::Recent],
            ViewMode::Attempts => &[Pane::Attempts],
            ViewMode::Owners => &[Pane::Owners, Pane::Offenders],
        }
    }
}

/// Panes that Tab focuses and the arrow keys scroll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    /// Results by tracepoint.
    Results,
    /// Files and processes (and, in the events view, owners) by failures.
    Offenders,
    /// Latest failure events.
    Recent,
    /// Attempts by (origin, outcome, result).
    Attempts,
    /// The owners table of the owners view.
    Owners,
}

/// Number of [`Pane`]s (the length of [`App::scroll`]).
pub const PANES: usize = 5;

/// Fixed facts shown in the header.
#[derive(Debug, Clone, Default)]
pub struct Header {
    /// `uname -r`.
    pub release: String,
    /// Attached tracepoint names.
    pub attached: Vec<String>,
    /// Tracepoints this kernel lacks.
    pub missing: Vec<String>,
    /// What this kernel cannot show (`KernelInfo::gaps`), one sentence each.
    pub gaps: Vec<String>,
    /// Kernel-side filters, in words.
    pub filters: String,
    /// Whether the demo workload runs.
    pub demo: bool,
}

/// One row of the results table.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultLine {
    /// Short tracepoint name (`scan_file`, `collapse_huge_page`, `madvise_collapse`).
    pub tracepoint: &'static str,
    /// Result name.
    pub result: String,
    /// Kernel number.
    pub number: i64,
    /// Events.
    pub count: u64,
    /// Events per second over the last interval.
    pub rate: f64,
    /// Of the tracepoint's events.
    pub share: f64,
    /// Plain words.
    pub meaning: &'static str,
    /// Success result.
    pub success: bool,
}

/// One row of an offenders table.
#[derive(Debug, Clone, PartialEq)]
pub struct Offender {
    /// File name or `comm (pid)`, escaped.
    pub name: String,
    /// The owner's cgroup path (owners only; empty otherwise).
    pub cgroup: String,
    /// Failure events.
    pub failures: u64,
    /// All events.
    pub events: u64,
    /// Most frequent failure.
    pub dominant: String,
}

/// One row of the recent-failures table.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentLine {
    /// Seconds since start.
    pub at: f64,
    /// comm, escaped.
    pub comm: String,
    /// Process id.
    pub pid: u32,
    /// File, escaped.
    pub file: String,
    /// Result name.
    pub result: String,
    /// `nr=` / `present=` detail.
    pub detail: String,
}

/// Everything the screen shows, computed once per interval.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Seconds since start.
    pub uptime_s: f64,
    /// All events per second over the last interval.
    pub events_per_s: f64,
    /// Events counted in the kernel since start (or reset).
    pub events: u64,
    /// Ring-buffer drops since start (or reset).
    pub dropped: u64,
    /// Results table rows, sorted.
    pub results: Vec<ResultLine>,
    /// (successes, failures) per interval, oldest first.
    pub history: Vec<(u64, u64)>,
    /// Files by failures.
    pub files: Vec<Offender>,
    /// Processes by failures.
    pub processes: Vec<Offender>,
    /// Owners of the memory (`mm->owner`: whose memory khugepaged worked on) by failures.
    pub owners: Vec<Offender>,
    /// Newest first.
    pub recent: Vec<RecentLine>,
    /// The attempts view's data.
    pub attempts: AttemptsView,
    /// khugepaged's progress and /proc/vmstat's thp_* counters, most telling first.
    pub system: Vec<SystemItem>,
}

/// The attempts view: one attempt per range tried, as `stat` shows them.
#[derive(Debug, Clone, Default)]
pub struct AttemptsView {
    /// Attempts in all.
    pub total: u64,
    /// Attempts that tried to collapse something (already-huge and empty ranges left out).
    pub tried: u64,
    /// Attempts that collapsed their range.
    pub collapsed: u64,
    /// Attempts by outcome, every outcome (zeros included), in [`Outcome::ALL`] order.
    pub by_outcome: Vec<(Outcome, u64)>,
    /// By (origin, outcome, result), most first.
    pub rows: Vec<AttemptLine>,
    /// Latency of MADV_COLLAPSE attempts and whole calls.
    pub latency: Vec<LatencyLine>,
    /// Ranges whose call had not returned yet.
    pub in_progress: u64,
    /// Collapse events that never got their scan.
    pub unjoined: u64,
    /// Which clock the latencies came from.
    pub clock: Clock,
}

/// Attempts of one (origin, outcome, result), as every view shows them.
pub use crate::model::attempts::AttemptSummary as AttemptLine;

/// One latency histogram, summarised.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyLine {
    /// `madvise attempt`, `MADV_COLLAPSE call`.
    pub what: String,
    /// The outcome.
    pub outcome: Outcome,
    /// Samples.
    pub count: u64,
    /// Mean, ns.
    pub mean_ns: u64,
    /// Largest, ns.
    pub max_ns: u64,
    /// Bucket bound under which half the samples lie (seconds; infinite above the last).
    pub p50_s: f64,
    /// Same for 99%.
    pub p99_s: f64,
}

/// One figure of the system context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemItem {
    /// The file's own name (`full_scans`, `thp_collapse_alloc`), so a person can find it.
    pub name: String,
    /// Its value now.
    pub value: u64,
    /// For counters: how much it grew since `top` started (or was reset).
    pub delta: Option<u64>,
}

/// The order the system context is shown in (and cut from the end when space is short):
/// whether khugepaged gets round at all, then what the kernel counted about collapses, then
/// the knobs that decide them. Other non-zero thp_* counters follow.
const SYSTEM_ORDER: [&str; 15] = [
    "full_scans",
    "pages_collapsed",
    "thp_collapse_alloc",
    "thp_collapse_alloc_failed",
    "thp_scan_exceed_none_pte",
    "thp_scan_exceed_swap_pte",
    "thp_scan_exceed_share_pte",
    "pages_to_scan",
    "scan_sleep_millisecs",
    "max_ptes_none",
    "max_ptes_swap",
    "max_ptes_shared",
    "thp_split_pmd",
    "thp_fault_alloc",
    "thp_fault_fallback",
];

/// What a key asks the caller to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing beyond redrawing.
    None,
    /// Leave.
    Quit,
    /// Zero the counters (the caller passes the current kernel counters to [`App::reset`]).
    Reset,
}

/// The `top` state.
#[derive(Debug)]
pub struct App {
    /// The aggregation core.
    pub agg: Aggregate,
    /// Header facts.
    pub header: Header,
    /// Rate interval.
    pub interval: Duration,
    /// Sort column of the results table.
    pub sort: SortBy,
    /// Descending sort.
    pub descending: bool,
    /// The view shown.
    pub mode: ViewMode,
    /// Focused pane.
    pub focus: Pane,
    /// Scroll offset of each pane.
    pub scroll: [usize; PANES],
    /// The `/` view filter (comm or file substring); applies to offenders and recent.
    pub filter: String,
    /// Typing a filter.
    pub editing: bool,
    /// The `c` filter: only the memory of this cgroup (its id), in the owners and the
    /// recent failures; `None`: every cgroup.
    pub cgroup_filter: Option<u64>,
    /// Help overlay shown.
    pub help: bool,
    /// Display frozen (collection goes on).
    pub paused: bool,
    /// Monotonic ns at start (or reset), for event times.
    pub start_ns: u64,
    elapsed: Duration,
    prev: ResultCounts,
    rates: BTreeMap<(RecordKind, i64), f64>,
    events_per_s: f64,
    history: VecDeque<(u64, u64)>,
    system: SystemContext,
    system_base: Option<SystemContext>,
    view: View,
}

impl App {
    /// A new state over a fresh core whose counters start at `baseline`.
    pub fn new(
        table: ResultTable,
        header: Header,
        interval: Duration,
        baseline: KernelCounters,
        start_ns: u64,
    ) -> App {
        let mut agg = Aggregate::new(table);
        agg.set_baseline(baseline);
        App {
            agg,
            header,
            interval,
            sort: SortBy::Count,
            descending: true,
            mode: ViewMode::Events,
            focus: Pane::Results,
            scroll: [0; PANES],
            filter: String::new(),
            editing: false,
            cgroup_filter: None,
            help: false,
            paused: false,
            start_ns,
            elapsed: Duration::ZERO,
            prev: ResultCounts::new(),
            rates: BTreeMap::new(),
            events_per_s: 0.0,
            history: VecDeque::new(),
            system: SystemContext::default(),
            system_base: None,
            view: View::default(),
        }
    }

    /// Takes one event into the core.
    pub fn on_event(&mut self, e: &Event) {
        self.agg.add(e);
    }

    /// Once per interval: new kernel counters; computes rates and the chart point, and
    /// refreshes the view unless paused.
    pub fn on_tick(&mut self, kernel: KernelCounters, elapsed: Duration) {
        self.agg.set_kernel(kernel);
        let dt = elapsed.saturating_sub(self.elapsed).as_secs_f64().max(1e-3);
        self.elapsed = elapsed;
        let now = self.agg.kernel_results();
        self.rates.clear();
        let (mut ok, mut bad, mut all) = (0, 0, 0);
        for (k, n) in &now {
            let d = n - self.prev.get(k).copied().unwrap_or(0).min(*n);
            self.rates.insert(*k, d as f64 / dt);
            all += d;
            // An attempt emits a scan event carrying its final result (and maybe a collapse
            // event): the chart counts scan events only, i.e. one point per attempt.
            if k.0.is_scan() {
                if is_success(&self.agg.table.name(k.1)) {
                    ok += d;
                } else {
                    bad += d;
                }
            }
        }
        self.events_per_s = all as f64 / dt;
        self.prev = now;
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back((ok, bad));
        if !self.paused {
            self.view = self.build_view();
        }
    }

    /// The system context read now (call before [`App::on_tick`]); the first one is the
    /// baseline the counters' growth is shown against.
    pub fn on_system(&mut self, ctx: SystemContext) {
        if self.system_base.is_none() {
            self.system_base = Some(ctx.clone());
        }
        self.system = ctx;
    }

    /// Zeroes everything: counts restart from `kernel`.
    pub fn reset(&mut self, kernel: KernelCounters, now_ns: u64) {
        let table = self.agg.table.clone();
        let (clock, knobs) = (self.agg.attempts.clock, self.agg.attempts.knobs);
        self.agg = Aggregate::new(table);
        // What the caller primed the core with (the clock, the knobs advice quotes) stays.
        self.agg.attempts.clock = clock;
        self.agg.attempts.knobs = knobs;
        self.agg.set_baseline(kernel);
        self.prev.clear();
        self.rates.clear();
        self.history.clear();
        self.system_base = Some(self.system.clone());
        self.start_ns = now_ns;
        self.view = self.build_view();
    }

    /// The view to draw.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// Rebuilds the view now (after a key that changes sorting or filtering).
    pub fn refresh(&mut self) {
        if !self.paused {
            self.view = self.build_view();
        }
    }

    /// The cgroup after the current `c` filter, in order of the owners' events there (most
    /// first), then none again.
    fn next_cgroup(&self) -> Option<u64> {
        let mut by_events: BTreeMap<u64, u64> = BTreeMap::new();
        for o in self.agg.owners.values() {
            *by_events.entry(o.cgroup_id).or_default() += o.results.values().copied().sum::<u64>();
        }
        let mut ids: Vec<(u64, u64)> = by_events.into_iter().collect();
        ids.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let ids: Vec<u64> = ids.into_iter().map(|(id, _)| id).collect();
        match self.cgroup_filter {
            None => ids.first().copied(),
            Some(cur) => ids
                .iter()
                .position(|&id| id == cur)
                .and_then(|i| ids.get(i + 1).copied()),
        }
    }

    /// The `c` filter's cgroup path, for the header.
    pub fn cgroup_filter_name(&self) -> Option<String> {
        self.cgroup_filter.map(|id| self.agg.cgroup_name(id))
    }

    fn matches(&self, s: &str) -> bool {
        self.filter.is_empty() || s.contains(&self.filter)
    }

    fn build_view(&self) -> View {
        let kernel = self.agg.kernel();
        let table = &self.agg.table;
        let mut results: Vec<ResultLine> = self
            .agg
            .kernel_results()
            .into_iter()
            .map(|((tp, r), n)| {
                let name = table.name_of(tp, r);
                let total = kernel.total(tp).max(1);
                ResultLine {
                    // Short, whole names: scan_file, collapse_huge_page, madvise_collapse.
                    tracepoint: tp
                        .name()
                        .trim_start_matches("mm_khugepaged_")
                        .trim_start_matches("mm_"),
                    meaning: meaning(&name),
                    success: is_success(&name),
                    result: name,
                    number: r,
                    count: n,
                    rate: self.rates.get(&(tp, r)).copied().unwrap_or(0.0),
                    share: n as f64 / total as f64,
                }
            })
            .collect();
        results.sort_by(|a, b| {
            let o = match self.sort {
                SortBy::Count => a.count.cmp(&b.count),
                SortBy::Rate => a.rate.total_cmp(&b.rate),
                SortBy::Name => b
                    .tracepoint
                    .cmp(a.tracepoint)
                    .then_with(|| b.result.cmp(&a.result)),
            };
            let o = if self.descending { o.reverse() } else { o };
            o.then_with(|| a.tracepoint.cmp(b.tracepoint))
                .then_with(|| a.number.cmp(&b.number))
        });

        let mut files: Vec<Offender> = self
            .agg
            .files
            .iter()
            .map(|(name, f)| (escape(name), &f.results))
            .filter(|(name, _)| self.matches(name))
            .map(|(name, r)| offender(name, r, table))
            .filter(|o| o.failures > 0)
            .collect();
        files.sort_by(|a, b| {
            b.failures
                .cmp(&a.failures)
                .then_with(|| a.name.cmp(&b.name))
        });
        let mut processes: Vec<Offender> = self
            .agg
            .processes
            .iter()
            .map(|(pid, p)| (format!("{} ({pid})", escape(&p.comm)), &p.results))
            .filter(|(name, _)| self.matches(name))
            .map(|(name, r)| offender(name, r, table))
            .filter(|o| o.failures > 0)
            .collect();
        processes.sort_by(|a, b| {
            b.failures
                .cmp(&a.failures)
                .then_with(|| a.name.cmp(&b.name))
        });
        // Every owner, not only those with failures: whose memory collapsed fine is worth
        // seeing in the owners view.
        let mut owners: Vec<Offender> = self
            .agg
            .owners
            .iter()
            .filter(|(_, o)| self.cgroup_filter.is_none_or(|c| c == o.cgroup_id))
            .map(|(pid, o)| {
                let mut off = offender(format!("{} ({pid})", escape(&o.comm)), &o.results, table);
                off.cgroup = self.agg.cgroup_name(o.cgroup_id);
                off
            })
            .filter(|o| self.matches(&o.name) || self.matches(&o.cgroup))
            .collect();
        owners.sort_by(|a, b| {
            b.failures
                .cmp(&a.failures)
                .then_with(|| b.events.cmp(&a.events))
                .then_with(|| a.name.cmp(&b.name))
        });

        let recent = self
            .agg
            .recent_failures
            .iter()
            .rev()
            .filter(|e| self.cgroup_filter.is_none_or(|c| c == e.owner_cgroup_id))
            .filter(|e| {
                self.filter.is_empty()
                    || self.matches(&escape(&e.comm))
                    || self.matches(&escape(&e.filename))
            })
            .take(RECENT_ROWS)
            .map(|e| RecentLine {
                at: e.ts_ns.saturating_sub(self.start_ns) as f64 / 1e9,
                comm: escape(&e.comm),
                pid: e.pid,
                file: escape(&e.filename),
                result: table.name_of(e.tracepoint, e.result),
                detail: crate::model::event::detail(e),
            })
            .collect();

        View {
            uptime_s: self.elapsed.as_secs_f64(),
            events_per_s: self.events_per_s,
            events: RecordKind::ALL.iter().map(|t| kernel.total(*t)).sum(),
            dropped: kernel.drops.iter().sum(),
            results,
            history: self.history.iter().copied().collect(),
            files,
            processes,
            owners,
            recent,
            attempts: self.attempts_view(),
            system: self.system_items(),
        }
    }

    fn attempts_view(&self) -> AttemptsView {
        let a = &self.agg.attempts;
        let by = a.by_outcome();
        let count = |o: Outcome| by.get(&o).copied().unwrap_or(0);
        let tried = a.tried();
        let rows = a.summary();
        let line = |what: String, outcome: Outcome, h: &Histogram| LatencyLine {
            what,
            outcome,
            count: h.count,
            mean_ns: h.sum_ns / h.count.max(1),
            max_ns: h.max_ns,
            p50_s: h.quantile_bound(0.5).unwrap_or(0.0),
            p99_s: h.quantile_bound(0.99).unwrap_or(0.0),
        };
        let latency = a
            .latency
            .iter()
            .map(|((origin, o), h)| line(format!("{} attempt", origin_name(*origin)), *o, h))
            .chain(
                a.call_latency
                    .iter()
                    .map(|(o, h)| line("MADV_COLLAPSE call".into(), *o, h)),
            )
            .collect();
        AttemptsView {
            total: a.total(),
            tried,
            collapsed: count(Outcome::Collapsed),
            by_outcome: Outcome::ALL.iter().map(|o| (*o, count(*o))).collect(),
            rows,
            latency,
            in_progress: a.in_progress(),
            unjoined: a.unjoined,
            clock: a.clock,
        }
    }

    fn system_items(&self) -> Vec<SystemItem> {
        let base = self.system_base.as_ref();
        let all = self
            .system
            .khugepaged
            .iter()
            .map(|(n, v)| (n, *v, KHUGEPAGED_COUNTERS.contains(&n.as_str()), false))
            .chain(
                self.system
                    .vmstat_thp
                    .iter()
                    .map(|(n, v)| (n, *v, true, true)),
            );
        let mut items: Vec<(usize, SystemItem)> = all
            .filter_map(|(name, value, counter, vmstat)| {
                let rank = SYSTEM_ORDER.iter().position(|n| n == name);
                // The rest of the thp_* counters only when they say something.
                if rank.is_none() && (value == 0 || !vmstat) {
                    return None;
                }
                let delta = counter.then(|| {
                    let was = base
                        .and_then(|b| {
                            b.khugepaged
                                .iter()
                                .chain(&b.vmstat_thp)
                                .find(|(n, _)| n == name)
                        })
                        .map_or(value, |(_, v)| *v);
                    value.saturating_sub(was)
                });
                Some((
                    rank.unwrap_or(SYSTEM_ORDER.len()),
                    SystemItem {
                        name: name.clone(),
                        value,
                        delta,
                    },
                ))
            })
            .collect();
        items.sort_by_key(|(rank, _)| *rank);
        items.into_iter().map(|(_, i)| i).collect()
    }

    /// Handles a key.
    pub fn on_key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        if self.editing {
            match key.code {
                KeyCode::Enter => self.editing = false,
                KeyCode::Esc => {
                    self.editing = false;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) if !c.is_control() => self.filter.push(c),
                _ => {}
            }
            self.refresh();
            return Action::None;
        }
        if self.help {
            // Any key closes the overlay; q still quits.
            self.help = false;
            return match key.code {
                KeyCode::Char('q') => Action::Quit,
                _ => Action::None,
            };
        }
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Action::Quit,
            KeyCode::Char('r') => return Action::Reset,
            KeyCode::Char('p') | KeyCode::Char(' ') => {
                self.paused = !self.paused;
                self.refresh();
            }
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                self.refresh();
            }
            KeyCode::Char('S') => {
                self.descending = !self.descending;
                self.refresh();
            }
            KeyCode::Char('v') => self.set_mode(self.mode.next()),
            KeyCode::Char(c @ '1'..='3') => {
                self.set_mode(ViewMode::ALL[c as usize - '1' as usize]);
            }
            KeyCode::Tab => self.cycle_focus(1),
            KeyCode::BackTab => self.cycle_focus(-1),
            KeyCode::Char('c') => {
                self.cgroup_filter = self.next_cgroup();
                self.refresh();
            }
            KeyCode::Char('/') => {
                self.editing = true;
                self.filter.clear();
                self.refresh();
            }
            KeyCode::Char('?') | KeyCode::Char('h') | KeyCode::F(1) => self.help = true,
            KeyCode::Down | KeyCode::Char('j') => self.scroll[self.focus as usize] += 1,
            KeyCode::Up | KeyCode::Char('k') => {
                let s = &mut self.scroll[self.focus as usize];
                *s = s.saturating_sub(1);
            }
            KeyCode::Home | KeyCode::Char('g') => self.scroll[self.focus as usize] = 0,
            _ => {}
        }
        Action::None
    }
}

impl App {
    /// Shows `mode`, focusing its first pane.
    fn set_mode(&mut self, mode: ViewMode) {
        self.mode = mode;
        self.focus = mode.panes()[0];
    }

    /// Moves the focus `by` panes along the current view's panes.
    fn cycle_focus(&mut self, by: isize) {
        let panes = self.mode.panes();
        let at = panes.iter().position(|p| *p == self.focus).unwrap_or(0);
        self.focus = panes[(at as isize + by).rem_euclid(panes.len() as isize) as usize];
    }
}

fn offender(name: String, results: &ResultCounts, table: &ResultTable) -> Offender {
    Offender {
        name,
        cgroup: String::new(),
        failures: failures(results, table),
        events: results.values().sum(),
        dominant: dominant(results, true, table).map_or("-".into(), |r| table.name(r)),
    }
}

/// Every key, for the help overlay (and the README).
pub const KEYS: [(&str, &str); 13] = [
    ("q  Esc  Ctrl-C", "quit (the terminal is restored)"),
    ("p  Space", "pause the display (collection goes on)"),
    ("r", "reset counters to zero"),
    ("s", "cycle the results sort column (count, rate, name)"),
    ("S", "reverse the sort direction"),
    ("v  1 2 3", "next view / events, attempts, owners view"),
    ("Tab  Shift-Tab", "focus the next / previous pane"),
    ("Up Down  j k", "scroll the focused pane"),
    ("Home  g", "scroll the focused pane to the top"),
    (
        "/",
        "filter offenders, owners and recent failures by substring",
    ),
    ("Enter  Esc", "keep / clear the filter while typing it"),
    ("c", "cycle a cgroup filter (owners, recent failures)"),
    ("?  h  F1", "this help"),
];
