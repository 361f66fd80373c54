//! The state of `top`: the aggregation core plus what the operator chose (sort, focus,
//! filter, pause). Pure: no terminal, no kernel. [`App::view`] turns it into the plain data
//! that [`super::ui`] draws, so tests can script events and keys and look at the result.

use std::{
    collections::{BTreeMap, VecDeque},
    time::Duration,
};

use collapse_trace_common::RecordKind;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::model::{
    aggregate::{Aggregate, KernelCounters, ResultCounts, dominant, failures},
    event::{Event, escape},
    results::{ResultTable, is_success, meaning},
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

/// Panes that Tab cycles through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    /// Results by tracepoint.
    Results,
    /// Files and processes by failures.
    Offenders,
    /// Latest failure events.
    Recent,
}

impl Pane {
    fn next(self) -> Pane {
        match self {
            Pane::Results => Pane::Offenders,
            Pane::Offenders => Pane::Recent,
            Pane::Recent => Pane::Results,
        }
    }
}

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
    /// Short tracepoint name (`scan_file`, `collapse_file`).
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
}

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
    /// Focused pane.
    pub focus: Pane,
    /// Scroll offset of each pane.
    pub scroll: [usize; 3],
    /// The `/` view filter (comm or file substring); applies to offenders and recent.
    pub filter: String,
    /// Typing a filter.
    pub editing: bool,
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
            focus: Pane::Results,
            scroll: [0; 3],
            filter: String::new(),
            editing: false,
            help: false,
            paused: false,
            start_ns,
            elapsed: Duration::ZERO,
            prev: ResultCounts::new(),
            rates: BTreeMap::new(),
            events_per_s: 0.0,
            history: VecDeque::new(),
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

    /// Zeroes everything: counts restart from `kernel`.
    pub fn reset(&mut self, kernel: KernelCounters, now_ns: u64) {
        let table = self.agg.table.clone();
        self.agg = Aggregate::new(table);
        self.agg.set_baseline(kernel);
        self.prev.clear();
        self.rates.clear();
        self.history.clear();
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
                    tracepoint: tp.name().trim_start_matches("mm_khugepaged_"),
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
        let mut owners: Vec<Offender> = self
            .agg
            .owners
            .iter()
            .map(|(pid, o)| {
                let cgroup = self.agg.cgroup_name(o.cgroup_id);
                (format!("{} ({pid}) {cgroup}", escape(&o.comm)), &o.results)
            })
            .filter(|(name, _)| self.matches(name))
            .map(|(name, r)| offender(name, r, table))
            .filter(|o| o.failures > 0)
            .collect();
        owners.sort_by(|a, b| {
            b.failures
                .cmp(&a.failures)
                .then_with(|| a.name.cmp(&b.name))
        });

        let recent = self
            .agg
            .recent_failures
            .iter()
            .rev()
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
        }
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
            KeyCode::Tab => self.focus = self.focus.next(),
            KeyCode::BackTab => self.focus = self.focus.next().next(),
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

fn offender(name: String, results: &ResultCounts, table: &ResultTable) -> Offender {
    Offender {
        name,
        failures: failures(results, table),
        events: results.values().sum(),
        dominant: dominant(results, true, table).map_or("-".into(), |r| table.name(r)),
    }
}

/// Every key, for the help overlay (and the README).
pub const KEYS: [(&str, &str); 11] = [
    ("q  Esc  Ctrl-C", "quit (the terminal is restored)"),
    ("p  Space", "pause the display (collection goes on)"),
    ("r", "reset counters to zero"),
    ("s", "cycle the results sort column (count, rate, name)"),
    ("S", "reverse the sort direction"),
    ("Tab  Shift-Tab", "focus the next / previous pane"),
    ("Up Down  j k", "scroll the focused pane"),
    ("Home  g", "scroll the focused pane to the top"),
    (
        "/",
        "filter offenders and recent failures by comm or file substring",
    ),
    ("Enter  Esc", "keep / clear the filter while typing it"),
    ("?  h  F1", "this help"),
];
