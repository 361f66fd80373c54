//! Where each pane of `top` goes, and which columns its table keeps, by the space there is.
//! Pure: a size and the [`App`] in, rectangles and columns out, so tests can ask "at 80x24,
//! what is kept?" without drawing.
//!
//! The rule: what matters most (the drop count, every result name and count, the seed cases
//! `page_filled` / `exceed_none_pte`) is placed first and whole; lower-value panes and columns
//! are dropped first when space is short; a column that holds a name is as wide as its
//! widest name, never cut.

use ratatui::layout::{Constraint, Rect};

use super::app::{App, Offender, View, ViewMode, is_seed_result};

/// Every region a frame can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// Results by tracepoint (events view).
    Results,
    /// Attempts per interval, successes against failures.
    Chart,
    /// Files by failures.
    Files,
    /// Processes by failures.
    Processes,
    /// Owners of the memory.
    Owners,
    /// Latest failure events.
    Recent,
    /// khugepaged's progress and /proc/vmstat's thp_* counters.
    System,
    /// Attempts by outcome (attempts view).
    Outcomes,
    /// Latency histograms, summarised (attempts view).
    Latency,
    /// Attempts by (origin, outcome, result) (attempts view).
    Attempts,
    /// What to change, for the attempts where something can (attempts view).
    Advice,
}

/// Where everything goes in one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The header's lines (stats, then what is attached, then the kernel's gaps).
    pub header: Rect,
    /// A rule under the header (tall terminals only).
    pub rule: Option<Rect>,
    /// The panes kept, top to bottom and left to right.
    pub regions: Vec<(Region, Rect)>,
    /// The footer line (view tabs and keys), when there is a line for it.
    pub footer: Option<Rect>,
}

// The drawing walks `regions` itself; these are the questions the layout tests ask.
#[cfg(test)]
impl Plan {
    /// Where `r` goes, when kept.
    pub fn get(&self, r: Region) -> Option<Rect> {
        self.regions.iter().find(|(x, _)| *x == r).map(|(_, a)| *a)
    }

    /// Whether `r` is kept.
    pub fn has(&self, r: Region) -> bool {
        self.get(r).is_some()
    }
}

/// Widths at or above which the chart, and the system pane beside the recent failures, fit
/// next to everything else.
const WIDE: u16 = 160;

/// Rows a table needs besides its data rows: two borders and the column heads.
const CHROME: u16 = 3;

/// The plan of one frame of `app` in `area`.
pub fn plan(area: Rect, app: &App) -> Plan {
    let v = app.view();
    let h = area.height;
    // The first header line carries the drop count: always there. The rest only when the
    // terminal is tall enough that panes still fit beneath.
    let mut header_h = 1;
    if h >= 10 {
        header_h += 1;
    }
    if h >= 16 && !app.header.gaps.is_empty() {
        header_h += 1;
    }
    let rule_h = u16::from(h >= 30);
    let footer_h = u16::from(h >= 6);
    let header = Rect {
        height: header_h.min(h),
        ..area
    };
    let rule = (rule_h > 0).then(|| Rect {
        y: area.y + header_h,
        height: 1,
        ..area
    });
    let footer = (footer_h > 0).then(|| Rect {
        y: area.y + h - 1,
        height: 1,
        ..area
    });
    let body = Rect {
        y: area.y + header.height + rule_h,
        height: h.saturating_sub(header.height + rule_h + footer_h),
        ..area
    };
    let bands = match app.mode {
        ViewMode::Events => events_bands(body.width, v),
        ViewMode::Attempts => attempts_bands(body.width, v),
        ViewMode::Owners => owners_bands(body.width, v),
    };
    Plan {
        header,
        rule,
        regions: place(body, &bands),
        footer,
    }
}

/// A horizontal strip of panes: its heights, and the panes that share its width.
#[derive(Debug, Clone)]
struct Band {
    /// Fewest lines worth showing; a band that cannot have them is dropped.
    min: u16,
    /// Lines it can use.
    want: u16,
    /// When to grant it: lower first. `min` is granted in this order, then `want`.
    prio: u8,
    /// The first band (by prio) takes what it can get even below `min`.
    essential: bool,
    /// Lines left when every band has what it wants go to the last band kept that fills.
    fill: bool,
    /// The panes, left to right.
    row: Vec<Cell>,
}

/// A pane in a band's row.
#[derive(Debug, Clone, Copy)]
struct Cell {
    region: Region,
    /// Fewest columns.
    min: u16,
    /// Lower is kept first.
    prio: u8,
    /// Its share of the columns left over (0: stays at `min`).
    grow: u16,
}

fn cell(region: Region, min: u16, prio: u8) -> Cell {
    Cell {
        region,
        min,
        prio,
        grow: 1,
    }
}

/// Heights of `bands` in `total` lines: each band's `min` in priority order (dropping a
/// band whose min does not fit), then each band's `want`, then what is left to the last band
/// kept, so that the frame is filled.
fn heights(total: u16, bands: &[Band]) -> Vec<u16> {
    let mut got = vec![0u16; bands.len()];
    let mut left = total;
    let mut order: Vec<usize> = (0..bands.len()).collect();
    order.sort_by_key(|i| bands[*i].prio);
    for &i in &order {
        let b = &bands[i];
        let g = if b.essential {
            b.min.min(left)
        } else if b.min <= left {
            b.min
        } else {
            0
        };
        got[i] = g;
        left -= g;
    }
    for &i in &order {
        if got[i] > 0 {
            let more = bands[i].want.saturating_sub(got[i]).min(left);
            got[i] += more;
            left -= more;
        }
    }
    let kept = |i: &usize| got[*i] > 0;
    if let Some(last) = (0..bands.len())
        .rev()
        .find(|i| kept(i) && bands[*i].fill)
        .or_else(|| (0..bands.len()).rev().find(kept))
    {
        got[last] += left;
    }
    got
}

/// The panes of one band's row that fit in `width` (by prio), with their widths: each its
/// minimum, the rest shared by their `grow` weights.
fn widths(width: u16, row: &[Cell]) -> Vec<(Region, u16)> {
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by_key(|i| row[*i].prio);
    let mut keep = vec![false; row.len()];
    let mut used = 0u16;
    for i in order {
        if used + row[i].min <= width || used == 0 {
            keep[i] = true;
            used = used.saturating_add(row[i].min);
        }
    }
    let kept: Vec<Cell> = row
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(c, _)| *c)
        .collect();
    let weights: u32 = kept.iter().map(|c| u32::from(c.grow)).sum();
    let extra = u32::from(width.saturating_sub(used));
    let mut out: Vec<(Region, u16)> = kept
        .iter()
        .map(|c| {
            let share = extra * u32::from(c.grow) / weights.max(1);
            (c.region, (u32::from(c.min) + share) as u16)
        })
        .collect();
    // Rounding (or no pane that grows) leaves columns over: the last growing pane takes them.
    let sum: u16 = out.iter().map(|(_, w)| *w).sum();
    let last = kept
        .iter()
        .rposition(|c| c.grow > 0)
        .unwrap_or(kept.len().saturating_sub(1));
    if let Some(o) = out.get_mut(last) {
        o.1 = (o.1 + width.saturating_sub(sum)).min(width);
    }
    out
}

fn place(body: Rect, bands: &[Band]) -> Vec<(Region, Rect)> {
    let hs = heights(body.height, bands);
    let mut y = body.y;
    let mut out = Vec::new();
    for (b, h) in bands.iter().zip(hs) {
        if h == 0 {
            continue;
        }
        let mut x = body.x;
        for (r, w) in widths(body.width, &b.row) {
            out.push((
                r,
                Rect {
                    x,
                    y,
                    width: w,
                    height: h,
                },
            ));
            x += w;
        }
        y += h;
    }
    out
}

fn rows(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// Events view: results (all rows, whole), then files / processes (and the system context
/// or, on wide terminals, the chart and owners), then recent failures.
fn events_bands(width: u16, v: &View) -> Vec<Band> {
    let results = if v.results.is_empty() {
        4
    } else {
        rows(v.results.len()) + CHROME
    };
    let wide = width >= WIDE;
    let mut middle = vec![
        cell(Region::Chart, 30, 4),
        cell(Region::Files, 30, 1),
        cell(Region::Processes, 30, 0),
        cell(Region::Owners, 36, if wide { 2 } else { 3 }),
    ];
    if !wide {
        middle.push(cell(Region::System, 34, 2));
    }
    let system_lines = |w: u16| rows(pack(&system_texts(v), w.saturating_sub(2)).len());
    let offenders = v.files.len().max(v.processes.len()).max(v.owners.len());
    let mut middle_want = rows(offenders) + CHROME;
    if !wide
        && widths(width, &middle)
            .iter()
            .any(|(r, _)| *r == Region::System)
    {
        middle_want = middle_want.max(system_lines(34) + 2);
    }
    let mut recent_row = vec![cell(Region::Recent, 60, 0)];
    if wide {
        recent_row.push(Cell {
            grow: 0,
            ..cell(Region::System, 56, 1)
        });
    }
    vec![
        Band {
            min: results,
            want: results,
            prio: 0,
            essential: true,
            fill: false,
            row: vec![cell(Region::Results, width, 0)],
        },
        Band {
            // Two borders, the heads and one row: the worst offender is worth a line.
            min: 4,
            want: middle_want.clamp(4, 12),
            prio: 1,
            essential: false,
            fill: false,
            row: middle,
        },
        Band {
            min: 5,
            want: (rows(v.recent.len()) + CHROME).clamp(5, 14),
            prio: 2,
            essential: false,
            fill: true,
            row: recent_row,
        },
    ]
}

/// Attempts view: outcomes (with latency and the system context beside them where they fit),
/// then every attempt row, then what to change (whole: it is too long for a column).
fn attempts_bands(width: u16, v: &View) -> Vec<Band> {
    let a = &v.attempts;
    let table = rows(a.rows.len().max(1)) + CHROME;
    let mut top_row = vec![
        // Grows faster than the system context: room for what each outcome asks.
        Cell {
            grow: 2,
            ..cell(Region::Outcomes, OUTCOMES_MIN, 0)
        },
        Cell {
            grow: 0,
            ..cell(Region::Latency, LATENCY_MIN, 1)
        },
    ];
    // The system context only beside both: on a narrower terminal the lines are worth
    // more to what to change.
    if width >= OUTCOMES_MIN + LATENCY_MIN + 36 {
        top_row.push(cell(Region::System, 36, 2));
    }
    let alone = widths(width, &top_row).len() == 1;
    // Alone, the outcomes go in two columns of three rows.
    let outcomes = if alone { 5 } else { 8 };
    let latency = rows(a.latency.len()) + CHROME;
    let mut bands = vec![
        Band {
            min: outcomes,
            want: if alone {
                outcomes
            } else {
                latency.clamp(outcomes, 12)
            },
            prio: 1,
            essential: false,
            fill: false,
            row: top_row,
        },
        Band {
            min: table.min(CHROME + 4),
            want: table,
            prio: 0,
            essential: true,
            fill: false,
            row: vec![cell(Region::Attempts, width, 0)],
        },
    ];
    let advice = advice_lines(v, width.saturating_sub(2));
    if advice > 0 {
        bands.push(Band {
            min: 3,
            want: advice + 2,
            prio: 2,
            essential: false,
            // What is left goes below the advice, not between the rows and it.
            fill: true,
            row: vec![cell(Region::Advice, width, 0)],
        });
    }
    bands
}

/// Owners view: every owner (comm, pid, cgroup), then the processes that did the work and
/// the files, with the system context beside them where it fits.
fn owners_bands(width: u16, v: &View) -> Vec<Band> {
    let owners = rows(v.owners.len().max(1)) + CHROME;
    let lower = rows(v.processes.len().max(v.files.len())) + CHROME;
    vec![
        Band {
            min: owners.min(CHROME + 4),
            want: owners,
            prio: 0,
            essential: true,
            fill: false,
            row: vec![cell(Region::Owners, width, 0)],
        },
        Band {
            min: 6,
            want: lower
                .max(system_texts(v).len().min(12) as u16 + 2)
                .clamp(6, 14),
            prio: 1,
            essential: false,
            fill: true,
            row: vec![
                cell(Region::Processes, 36, 0),
                cell(Region::Files, 36, 1),
                cell(Region::System, 36, 2),
            ],
        },
    ]
}

/// Fewest columns of the outcomes pane: `nothing_to_collapse`, a count, a share.
pub const OUTCOMES_MIN: u16 = 36;
/// Fewest columns of the latency pane: every column whole.
pub const LATENCY_MIN: u16 = 84;

/// The system context's items as text (`full_scans 78 (+2)`).
pub fn system_texts(v: &View) -> Vec<String> {
    v.system
        .iter()
        .map(|i| match i.delta {
            Some(d) => format!("{} {} (+{d})", i.name, i.value),
            None => format!("{} {}", i.name, i.value),
        })
        .collect()
}

/// `items` packed into lines of at most `width` characters, two spaces apart, in order; an
/// item is never split across lines.
pub fn pack(items: &[String], width: u16) -> Vec<String> {
    let width = usize::from(width.max(1));
    let mut lines: Vec<String> = Vec::new();
    for it in items {
        match lines.last_mut() {
            Some(l) if l.chars().count() + 2 + it.chars().count() <= width => {
                l.push_str("  ");
                l.push_str(it);
            }
            _ => lines.push(it.clone()),
        }
    }
    lines
}

/// One "what to change" of the attempts view: the results it is for, and the advice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdviceLine {
    /// The results (and their origin, when they share one): `exceed_none_pte (madvise)`.
    pub results: String,
    /// Whether a seed case is among them.
    pub seed: bool,
    /// What to change.
    pub advice: String,
}

/// The attempts view's advice, one line per distinct advice (the results that share it
/// named together): refusals first (something must change), then errors, then the rest.
pub fn advice_texts(v: &View) -> Vec<AdviceLine> {
    use crate::model::outcome::Outcome;
    let rank = |o: Outcome| match o {
        Outcome::Refused => 0,
        Outcome::Error => 1,
        _ => 2,
    };
    /// (rank, advice, the (result, origin)s it is for).
    type Group<'a> = (u8, &'a str, Vec<(&'a str, &'a str)>);
    let mut groups: Vec<Group> = Vec::new();
    for r in &v.attempts.rows {
        let Some(a) = &r.advice else { continue };
        let k = rank(r.outcome);
        match groups.iter_mut().find(|g| g.1 == a) {
            Some(g) => {
                g.0 = g.0.min(k);
                if !g.2.contains(&(r.result.as_str(), r.origin)) {
                    g.2.push((r.result.as_str(), r.origin));
                }
            }
            None => groups.push((k, a, vec![(r.result.as_str(), r.origin)])),
        }
    }
    groups.sort_by_key(|g| g.0);
    groups
        .into_iter()
        .map(|(_, advice, rs)| {
            let mut names: Vec<&str> = Vec::new();
            for (n, _) in &rs {
                if !names.contains(n) {
                    names.push(n);
                }
            }
            let origin = if rs.iter().all(|(_, o)| *o == rs[0].1) {
                format!(" ({})", rs[0].1)
            } else {
                String::new()
            };
            AdviceLine {
                results: format!("{}{origin}", names.join(", ")),
                seed: names.iter().any(|n| is_seed_result(n)),
                advice: advice.to_string(),
            }
        })
        .collect()
}

fn advice_lines(v: &View, width: u16) -> u16 {
    let w = usize::from(width.max(1));
    advice_texts(v)
        .iter()
        .map(|t| rows((t.results.chars().count() + 2 + t.advice.chars().count()).div_ceil(w)))
        .sum()
}

/// Every column of every table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    /// Tracepoint, short name (`scan_file`, `collapse_huge_page`, `madvise_collapse`).
    Tracepoint,
    /// Result name (a seed case marked `> `).
    Result,
    /// Events or attempts.
    Count,
    /// Events per second over the last interval.
    Rate,
    /// Of the tracepoint's events.
    Share,
    /// What the result means (and, for attempts, what to change).
    Meaning,
    /// Seconds since start.
    Time,
    /// Task name.
    Comm,
    /// Process id.
    Pid,
    /// File name.
    File,
    /// `nr=` / `present=` detail.
    Detail,
    /// Failure events.
    Fails,
    /// All events.
    Events,
    /// File name, `comm (pid)`.
    Name,
    /// Most frequent failure.
    Mostly,
    /// The owner's cgroup.
    Cgroup,
    /// `khugepaged`, `madvise`.
    Origin,
    /// The attempt's outcome.
    Outcome,
}

/// How a column is kept.
#[derive(Debug, Clone, Copy)]
enum Keep {
    /// Always, this wide.
    Always(u16),
    /// When there is room, this wide; lower prio first.
    Fixed(u16, u8),
    /// When there are at least `min` columns for it, taking the rest of the width.
    Fill(u16, u8),
    /// Always, taking the rest of the width (at least `min`).
    FillAlways(u16),
}

/// The columns of `specs` kept in `avail` columns (1 between columns), in their order, each
/// with its width constraint: the `Always` ones, then the optional ones by prio while they
/// fit.
fn choose(avail: u16, specs: &[(Col, Keep)]) -> Vec<(Col, Constraint)> {
    let base = |k: &Keep| match *k {
        Keep::Always(w) | Keep::FillAlways(w) => Some(w),
        _ => None,
    };
    let mut keep: Vec<bool> = specs.iter().map(|(_, k)| base(k).is_some()).collect();
    let mut used: u16 = specs.iter().filter_map(|(_, k)| base(k)).sum::<u16>()
        + rows(keep.iter().filter(|k| **k).count().saturating_sub(1));
    let mut optional: Vec<(u8, usize, u16)> = specs
        .iter()
        .enumerate()
        .filter_map(|(i, (_, k))| match *k {
            Keep::Fixed(w, p) | Keep::Fill(w, p) => Some((p, i, w)),
            _ => None,
        })
        .collect();
    optional.sort();
    for (_, i, w) in optional {
        if used + 1 + w <= avail {
            keep[i] = true;
            used += 1 + w;
        }
    }
    specs
        .iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|((c, k), _)| {
            (
                *c,
                match *k {
                    Keep::Always(w) | Keep::Fixed(w, _) => Constraint::Length(w),
                    // `choose` made sure it has its minimum; Fill takes the rest.
                    Keep::Fill(..) | Keep::FillAlways(_) => Constraint::Fill(1),
                },
            )
        })
        .collect()
}

fn width_of<'a>(texts: impl Iterator<Item = &'a str>, head: &str) -> u16 {
    rows(
        texts
            .map(|t| t.chars().count())
            .max()
            .unwrap_or(0)
            .max(head.chars().count()),
    )
}

/// The marker of a seed-case row: `> `.
pub const SEED_MARK: &str = "> ";

/// The results table's columns in `avail` columns: tracepoint, result and count always, as
/// wide as their widest entry; then rate, share and meaning as they fit.
pub fn results_columns(avail: u16, v: &View) -> Vec<(Col, Constraint)> {
    let r = &v.results;
    let count = width_of(
        r.iter()
            .map(|x| x.count.to_string())
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str),
        "COUNTv",
    );
    let rate = width_of(
        r.iter()
            .map(|x| format!("{:.1}", x.rate))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str),
        "RATE/sv",
    );
    choose(
        avail,
        &[
            (
                Col::Tracepoint,
                Keep::Always(width_of(r.iter().map(|x| x.tracepoint), "TRACEPOINT")),
            ),
            (
                Col::Result,
                Keep::Always(width_of(r.iter().map(|x| x.result.as_str()), "RESULT") + 2),
            ),
            (Col::Count, Keep::Always(count)),
            (Col::Rate, Keep::Fixed(rate, 0)),
            (Col::Share, Keep::Fixed(6, 1)),
            (Col::Meaning, Keep::Fill(20, 2)),
        ],
    )
}

/// The recent failures' columns: result, comm and pid always; then the file, the time and
/// the detail as they fit.
pub fn recent_columns(avail: u16, v: &View) -> Vec<(Col, Constraint)> {
    let r = &v.recent;
    let file = width_of(r.iter().map(|x| x.file.as_str()), "FILE").min(24);
    choose(
        avail,
        &[
            (Col::Time, Keep::Fixed(9, 1)),
            (
                Col::Result,
                Keep::Always(width_of(r.iter().map(|x| x.result.as_str()), "RESULT")),
            ),
            // An escaped comm can be 60 characters: still whole.
            (
                Col::Comm,
                Keep::Always(width_of(r.iter().map(|x| x.comm.as_str()), "COMM")),
            ),
            (Col::Pid, Keep::Always(7)),
            (Col::File, Keep::Fill(file, 0)),
            (
                Col::Detail,
                Keep::Fixed(width_of(r.iter().map(|x| x.detail.as_str()), "DETAIL"), 2),
            ),
        ],
    )
}

/// An offenders table's columns (files, processes, owners): failures and name always, the
/// name as wide as the widest (up to 28, then it takes the rest); then the dominant failure,
/// the event count and (owners) the cgroup as they fit.
pub fn offender_columns(avail: u16, list: &[Offender], owners: bool) -> Vec<(Col, Constraint)> {
    let name = width_of(list.iter().map(|o| o.name.as_str()), "NAME").min(28);
    let mostly = width_of(list.iter().map(|o| o.dominant.as_str()), "MOSTLY");
    let mut specs = vec![
        (Col::Fails, Keep::Always(5)),
        (Col::Events, Keep::Fixed(6, 1)),
        (
            Col::Name,
            if owners {
                Keep::Always(name)
            } else {
                Keep::FillAlways(name)
            },
        ),
        (Col::Mostly, Keep::Fixed(mostly, 0)),
    ];
    if owners {
        specs.push((
            Col::Cgroup,
            Keep::Fill(
                width_of(list.iter().map(|o| o.cgroup.as_str()), "CGROUP").min(16),
                2,
            ),
        ));
    }
    choose(avail, &specs)
}

/// The attempts table's columns: origin, outcome, result and count always; the meaning when
/// at least 24 columns are left for it.
pub fn attempts_columns(avail: u16, v: &View) -> Vec<(Col, Constraint)> {
    let r = &v.attempts.rows;
    choose(
        avail,
        &[
            (
                Col::Origin,
                Keep::Always(width_of(r.iter().map(|x| x.origin), "ORIGIN")),
            ),
            (
                Col::Outcome,
                Keep::Always(width_of(r.iter().map(|x| x.outcome.name()), "OUTCOME")),
            ),
            (
                Col::Result,
                Keep::Always(width_of(r.iter().map(|x| x.result.as_str()), "RESULT") + 2),
            ),
            (Col::Count, Keep::Always(8)),
            (Col::Meaning, Keep::Fill(24, 0)),
        ],
    )
}

/// The widths `cols` get in a table `avail` wide (as ratatui's table lays them out), so
/// that a cell can be cut where a person sees it is cut.
pub fn col_widths(avail: u16, cols: &[(Col, Constraint)]) -> Vec<u16> {
    use ratatui::layout::{Flex, Layout};
    let area = Rect::new(0, 0, avail, 1);
    Layout::horizontal(cols.iter().map(|(_, c)| *c))
        .flex(Flex::Start)
        .spacing(1)
        .split(area)
        .iter()
        .map(|r| r.width)
        .collect()
}

/// Whether `cols` kept `c` (the layout tests' question).
#[cfg(test)]
pub fn has(cols: &[(Col, Constraint)], c: Col) -> bool {
    cols.iter().any(|(x, _)| *x == c)
}

/// The rows of a table of `n` shown in `capacity` lines from `skip` on, as indices in
/// order: when not all fit, the seed cases are kept in view (in their place by the sort)
/// and the others fill the rest.
pub fn visible(n: usize, capacity: usize, skip: usize, seed: impl Fn(usize) -> bool) -> Vec<usize> {
    if n <= capacity {
        return (0..n).collect();
    }
    let skip = skip.min(n.saturating_sub(capacity));
    let window: Vec<usize> = (skip..n).collect();
    let pinned: Vec<usize> = (0..n)
        .filter(|i| seed(*i) && !window[..capacity.min(window.len())].contains(i))
        .take(capacity)
        .collect();
    let mut out: Vec<usize> = window
        .into_iter()
        .take(capacity - pinned.len())
        .chain(pinned)
        .collect();
    out.sort();
    out
}

/// Which of the header's items fit in `width`: `items` are (priority, variants longest
/// first) in display order, two spaces apart; the lowest-priority item is shortened to its
/// next variant, or dropped, until the rest fits. Returns the chosen variant per item.
pub fn fit(width: u16, items: &[(u8, Vec<String>)]) -> Vec<Option<usize>> {
    let mut pick: Vec<Option<usize>> = items
        .iter()
        .map(|(_, v)| (!v.is_empty()).then_some(0))
        .collect();
    let len = |pick: &[Option<usize>]| {
        let parts: Vec<usize> = pick
            .iter()
            .zip(items)
            .filter_map(|(p, (_, v))| p.map(|i| v[i].chars().count()))
            .collect();
        parts.iter().sum::<usize>() + 2 * parts.len().saturating_sub(1)
    };
    while len(&pick) > usize::from(width) {
        let Some(i) = (0..items.len())
            .filter(|i| pick[*i].is_some())
            .min_by_key(|i| (items[*i].0, std::cmp::Reverse(*i)))
        else {
            break;
        };
        let next = pick[i].map_or(0, |p| p + 1);
        pick[i] = (next < items[i].1.len()).then_some(next);
    }
    pick
}

/// Whether a row of the results table is a seed case.
pub fn results_seed(v: &View, i: usize) -> bool {
    is_seed_result(&v.results[i].result)
}
