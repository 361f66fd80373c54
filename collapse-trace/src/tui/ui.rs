//! Drawing `top`: header, the panes [`super::layout::plan`] kept, footer, help overlay.
//! Reads only [`App`] and its [`super::app::View`].

use ratatui::{
    Frame,
    layout::{Constraint, Rect},
    style::{Color, Modifier, Style},
    symbols::Marker,
    text::{Line, Span},
    widgets::{
        Axis, Block, Borders, Cell, Chart, Clear, Dataset, GraphType, Paragraph, Row, Table, Wrap,
    },
};

use super::{
    app::{App, KEYS, Offender, Pane, ViewMode, is_seed_result},
    layout::{self, Col, Region, SEED_MARK},
};
use crate::model::outcome::Outcome;

const SEED: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
const HEAD: Style = Style::new().add_modifier(Modifier::BOLD);
const DIM: Style = Style::new().fg(Color::DarkGray);

/// Draws one frame.
pub fn draw(f: &mut Frame, app: &App) {
    let area = f.area();
    let plan = layout::plan(area, app);
    draw_header(f, app, plan.header);
    if let Some(r) = plan.rule {
        f.render_widget(Block::default().borders(Borders::TOP), r);
    }
    for (region, rect) in &plan.regions {
        let rect = *rect;
        match region {
            Region::Results => draw_results(f, app, rect),
            Region::Chart => draw_chart(f, app, rect),
            Region::Files => {
                draw_offenders(f, app, rect, &app.view().files, "Files by failures", false)
            }
            Region::Processes => draw_offenders(
                f,
                app,
                rect,
                &app.view().processes,
                "Processes by failures",
                false,
            ),
            Region::Owners => draw_offenders(
                f,
                app,
                rect,
                &app.view().owners,
                if app.mode == ViewMode::Owners {
                    "Owners of the memory (mm->owner: whose memory it was), by failures"
                } else {
                    "Owners (whose memory)"
                },
                true,
            ),
            Region::Recent => draw_recent(f, app, rect),
            Region::System => draw_system(f, app, rect),
            Region::Outcomes => draw_outcomes(f, app, rect),
            Region::Latency => draw_latency(f, app, rect),
            Region::Attempts => draw_attempts(f, app, rect),
            Region::Advice => draw_advice(f, app, rect),
        }
    }
    if let Some(r) = plan.footer {
        draw_footer(f, app, r);
    }
    if app.help {
        draw_help(f, area);
    }
}

/// A bordered pane whose title is the longest of `titles` that fits.
fn block<'a>(titles: &[&'a str], width: u16, focused: bool) -> Block<'a> {
    let room = usize::from(width.saturating_sub(2));
    let title = titles
        .iter()
        .find(|t| t.chars().count() <= room)
        .or(titles.last())
        .copied()
        .unwrap_or("");
    let b = Block::default().borders(Borders::ALL).title(title);
    if focused {
        b.border_style(Style::new().fg(Color::Cyan))
    } else {
        b
    }
}

/// `s` cut to `w` characters, ending in `…` when cut.
fn cut(s: &str, w: u16) -> String {
    let w = usize::from(w);
    if s.chars().count() <= w {
        s.to_string()
    } else if w == 0 {
        String::new()
    } else {
        let mut out: String = s.chars().take(w - 1).collect();
        out.push('…');
        out
    }
}

/// `s` cut to its last `w` characters, starting with `…` when cut (a path's tail is what
/// tells it apart).
fn cut_left(s: &str, w: u16) -> String {
    let (n, w) = (s.chars().count(), usize::from(w));
    if n <= w {
        s.to_string()
    } else if w == 0 {
        String::new()
    } else {
        let mut out = String::from("…");
        out.extend(s.chars().skip(n - (w - 1)));
        out
    }
}

/// One line of spans from `items` (priority, variants longest first, style), the ones that
/// fit in `width` (see [`layout::fit`]).
fn fitted(width: u16, items: Vec<(u8, Vec<String>, Style)>) -> Line<'static> {
    let pick = layout::fit(
        width,
        &items
            .iter()
            .map(|(p, v, _)| (*p, v.clone()))
            .collect::<Vec<_>>(),
    );
    let mut spans = Vec::new();
    for ((_, variants, style), p) in items.into_iter().zip(pick) {
        if let Some(i) = p {
            if !spans.is_empty() {
                spans.push(Span::raw("  "));
            }
            spans.push(Span::styled(variants[i].clone(), style));
        }
    }
    Line::from(spans)
}

fn draw_header(f: &mut Frame, app: &App, area: Rect) {
    let v = app.view();
    let h = &app.header;
    let a = &v.attempts;
    let drops = if v.dropped > 0 {
        Style::new().fg(Color::White).bg(Color::Red).bold()
    } else {
        Style::new()
    };
    let mut attempts = vec![format!("{} attempts", a.total)];
    if a.tried > 0 {
        attempts.insert(
            0,
            format!(
                "{} attempts, {} of {} collapsed ({:.0}%)",
                a.total,
                a.collapsed,
                a.tried,
                a.collapsed as f64 * 100.0 / a.tried as f64
            ),
        );
    }
    let mut line1 = vec![
        (
            9,
            vec!["collapse-trace top".to_string()],
            Style::new().bold(),
        ),
        (
            10,
            if app.paused {
                vec!["PAUSED".to_string()]
            } else {
                vec![]
            },
            Style::new().fg(Color::Black).bg(Color::Yellow),
        ),
        (10, vec![format!("drops {}", v.dropped)], drops),
        (8, vec![format!("{} events", v.events)], Style::new()),
        (
            5,
            vec![format!("{:.0} events/s", v.events_per_s)],
            Style::new(),
        ),
        (6, attempts, Style::new()),
        (4, vec![format!("up {:.0}s", v.uptime_s)], Style::new()),
        (2, vec![format!("kernel {}", h.release)], Style::new()),
    ];
    line1.retain(|(_, v, _)| !v.is_empty());
    let short: Vec<&str> = h
        .attached
        .iter()
        .map(|n| {
            n.trim_start_matches("mm_khugepaged_")
                .trim_start_matches("mm_")
        })
        .collect();
    let mut line2 = vec![(
        1,
        vec![
            format!("attached: {}", h.attached.join(", ")),
            format!("attached: {}", short.join(" ")),
            format!("{} attached", h.attached.len()),
        ],
        Style::new(),
    )];
    if !h.missing.is_empty() {
        line2.push((
            9,
            vec![format!("missing: {}", h.missing.join(", "))],
            Style::new().fg(Color::Red),
        ));
    }
    line2.push((7, vec![format!("filters: {}", h.filters)], Style::new()));
    if let Some(cg) = app.cgroup_filter_name() {
        line2.push((
            9,
            vec![format!("cgroup: {cg}"), "cgroup".into()],
            Style::new().fg(Color::Cyan),
        ));
    }
    if !app.filter.is_empty() || app.editing {
        line2.push((
            9,
            vec![format!(
                "view filter: /{}{}",
                app.filter,
                if app.editing { "_" } else { "" }
            )],
            Style::new().fg(Color::Cyan),
        ));
    }
    if h.demo {
        line2.push((
            3,
            vec!["demo workload running".into(), "demo".into()],
            Style::new().fg(Color::Green),
        ));
    }
    let mut lines = vec![fitted(area.width, line1), fitted(area.width, line2)];
    if !h.gaps.is_empty() {
        // Each gap's sentence up to its colon: what is missing, not the whole explanation
        // (`doctor` has that).
        let short: Vec<&str> = h
            .gaps
            .iter()
            .map(|g| g.split(':').next().unwrap_or(g))
            .collect();
        lines.push(Line::from(Span::styled(
            cut(
                &format!("not observable on this kernel: {}", short.join("; ")),
                area.width,
            ),
            Style::new().fg(Color::Yellow),
        )));
    }
    lines.truncate(usize::from(area.height));
    f.render_widget(Paragraph::new(lines), area);
}

/// Cells of `cols` from a function of the column, cut to the width each column got.
fn cells<'a>(
    inner: u16,
    cols: &[(Col, Constraint)],
    mut cell: impl FnMut(Col) -> String,
) -> Vec<Cell<'a>> {
    let widths = layout::col_widths(inner, cols);
    cols.iter()
        .zip(widths)
        .map(|((c, _), w)| {
            let text = cell(*c);
            Cell::from(if *c == Col::Cgroup {
                cut_left(&text, w)
            } else {
                cut(&text, w)
            })
        })
        .collect()
}

fn head(cols: &[(Col, Constraint)], name: impl Fn(Col) -> String) -> Row<'static> {
    Row::new(cols.iter().map(|(c, _)| Cell::from(name(*c)))).style(HEAD)
}

fn draw_results(f: &mut Frame, app: &App, area: Rect) {
    let v = app.view();
    let focused = app.focus == Pane::Results && app.mode == ViewMode::Events;
    if v.results.is_empty() {
        let p = Paragraph::new(
            "no collapse events yet: khugepaged is idle and nobody called MADV_COLLAPSE (try \
             `top --demo`, or `collapse-trace provoke` elsewhere)",
        )
        .wrap(Wrap { trim: true })
        .block(block(&["Results"], area.width, focused));
        f.render_widget(p, area);
        return;
    }
    let inner = area.width.saturating_sub(2);
    let cols = layout::results_columns(inner, v);
    let arrow = if app.descending { "v" } else { "^" };
    let sorted = |label: &str| {
        if app.sort.label() == label { arrow } else { "" }
    };
    let header = head(&cols, |c| match c {
        Col::Tracepoint => "TRACEPOINT".into(),
        Col::Result => "RESULT".into(),
        Col::Count => format!("COUNT{}", sorted("count")),
        Col::Rate => format!("RATE/s{}", sorted("rate")),
        Col::Share => "SHARE".into(),
        _ => "MEANING".into(),
    });
    let capacity = usize::from(area.height.saturating_sub(3));
    let shown = layout::visible(
        v.results.len(),
        capacity,
        app.scroll[Pane::Results as usize],
        |i| layout::results_seed(v, i),
    );
    let rows = shown.iter().map(|&i| {
        let r = &v.results[i];
        let seed = is_seed_result(&r.result);
        let style = if seed {
            SEED
        } else if r.success {
            Style::new().fg(Color::Green)
        } else {
            Style::new()
        };
        Row::new(cells(inner, &cols, |c| match c {
            Col::Tracepoint => r.tracepoint.to_string(),
            Col::Result => format!("{}{}", if seed { SEED_MARK } else { "  " }, r.result),
            Col::Count => r.count.to_string(),
            Col::Rate => format!("{:.1}", r.rate),
            Col::Share => format!("{:.1}%", r.share * 100.0),
            _ => r.meaning.to_string(),
        }))
        .style(style)
    });
    let n = v.results.len();
    let more = if shown.len() < n {
        format!(", {} more: Tab here, j/k scroll", n - shown.len())
    } else {
        String::new()
    };
    let long = format!(
        "Results ({n} rows{more}; s sort by {}, S reverse)",
        app.sort.label()
    );
    let mid = format!("Results ({n} rows{more})");
    let short = format!("Results ({n})");
    let widths: Vec<Constraint> = cols.iter().map(|(_, c)| *c).collect();
    let t = Table::new(rows, widths).header(header).block(block(
        &[&long, &mid, &short],
        area.width,
        focused,
    ));
    f.render_widget(t, area);
}

fn draw_chart(f: &mut Frame, app: &App, area: Rect) {
    let v = app.view();
    let n = v.history.len();
    let ok: Vec<(f64, f64)> = v
        .history
        .iter()
        .enumerate()
        .map(|(i, (s, _))| (i as f64, *s as f64))
        .collect();
    let bad: Vec<(f64, f64)> = v
        .history
        .iter()
        .enumerate()
        .map(|(i, (_, b))| (i as f64, *b as f64))
        .collect();
    let max = v
        .history
        .iter()
        .map(|(s, b)| (*s).max(*b))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let secs = app.interval.as_secs_f64() * n.max(1) as f64;
    let chart = Chart::new(vec![
        Dataset::default()
            .name("ok")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().fg(Color::Green))
            .data(&ok),
        Dataset::default()
            .name("failed")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().fg(Color::Red))
            .data(&bad),
    ])
    .block(block(
        &["Scans per interval (ok, failed)", "Scans per interval"],
        area.width,
        false,
    ))
    .x_axis(
        Axis::default()
            .bounds([0.0, n.max(2) as f64 - 1.0])
            .labels([Line::from(format!("-{secs:.0}s")), Line::from("now")]),
    )
    .y_axis(
        Axis::default()
            .bounds([0.0, max])
            .labels([Line::from("0"), Line::from(format!("{max:.0}"))]),
    );
    f.render_widget(chart, area);
}

fn draw_offenders(
    f: &mut Frame,
    app: &App,
    area: Rect,
    list: &[Offender],
    title: &str,
    owners: bool,
) {
    let pane = if owners && app.mode == ViewMode::Owners {
        Pane::Owners
    } else {
        Pane::Offenders
    };
    let focused = app.focus == pane;
    let inner = area.width.saturating_sub(2);
    let cols = layout::offender_columns(inner, list, owners);
    let header = head(&cols, |c| {
        match c {
            Col::Fails => "FAILS",
            Col::Events => "EVENTS",
            Col::Name if owners => "OWNER",
            Col::Name => "NAME",
            Col::Mostly => "MOSTLY",
            _ => "CGROUP",
        }
        .into()
    });
    let capacity = usize::from(area.height.saturating_sub(3));
    let skip = app.scroll[pane as usize].min(list.len().saturating_sub(capacity));
    let rows = list.iter().skip(skip).take(capacity).map(|o| {
        let style = if is_seed_result(&o.dominant) {
            SEED
        } else {
            Style::new()
        };
        Row::new(cells(inner, &cols, |c| match c {
            Col::Fails => o.failures.to_string(),
            Col::Events => o.events.to_string(),
            Col::Name => o.name.clone(),
            Col::Mostly => o.dominant.clone(),
            _ => o.cgroup.clone(),
        }))
        .style(style)
    });
    let short = title.split(" (").next().unwrap_or(title);
    let widths: Vec<Constraint> = cols.iter().map(|(_, c)| *c).collect();
    let t =
        Table::new(rows, widths)
            .header(header)
            .block(block(&[title, short], area.width, focused));
    f.render_widget(t, area);
}

fn draw_recent(f: &mut Frame, app: &App, area: Rect) {
    let v = app.view();
    let inner = area.width.saturating_sub(2);
    let cols = layout::recent_columns(inner, v);
    let header = head(&cols, |c| {
        match c {
            Col::Time => "TIME s",
            Col::Result => "RESULT",
            Col::Comm => "COMM",
            Col::Pid => "PID",
            Col::File => "FILE",
            _ => "DETAIL",
        }
        .into()
    });
    let capacity = usize::from(area.height.saturating_sub(3));
    let skip = app.scroll[Pane::Recent as usize].min(v.recent.len().saturating_sub(capacity));
    let rows = v.recent.iter().skip(skip).take(capacity).map(|r| {
        let style = if is_seed_result(&r.result) {
            SEED
        } else {
            Style::new()
        };
        Row::new(cells(inner, &cols, |c| match c {
            Col::Time => format!("{:.3}", r.at),
            Col::Result => r.result.clone(),
            Col::Comm => r.comm.clone(),
            Col::Pid => r.pid.to_string(),
            Col::File => r.file.clone(),
            _ => r.detail.clone(),
        }))
        .style(style)
    });
    let widths: Vec<Constraint> = cols.iter().map(|(_, c)| *c).collect();
    let t = Table::new(rows, widths).header(header).block(block(
        &["Recent failures (newest first)", "Recent failures"],
        area.width,
        app.focus == Pane::Recent,
    ));
    f.render_widget(t, area);
}

fn draw_system(f: &mut Frame, app: &App, area: Rect) {
    let v = app.view();
    let items = layout::system_texts(v);
    let lines: Vec<Line> = if items.is_empty() {
        vec![Line::styled(
            "no /proc/vmstat or khugepaged sysfs here",
            DIM,
        )]
    } else {
        layout::pack(&items, area.width.saturating_sub(2))
            .into_iter()
            .map(Line::raw)
            .collect()
    };
    f.render_widget(
        Paragraph::new(lines).block(block(
            &[
                "System: khugepaged, /proc/vmstat (+ since start)",
                "System (+ since start)",
                "System",
            ],
            area.width,
            false,
        )),
        area,
    );
}

/// What an outcome asks of a person, in a few words.
fn outcome_hint(o: Outcome) -> &'static str {
    match o {
        Outcome::Collapsed => "huge now",
        Outcome::AlreadyHuge => "was huge already",
        Outcome::NothingToCollapse => "nothing mapped there",
        Outcome::Transient => "a retry may work",
        Outcome::Refused => "something must change first",
        Outcome::Error => "the kernel could not",
    }
}

fn outcome_style(o: Outcome) -> Style {
    match o {
        Outcome::Collapsed | Outcome::AlreadyHuge => Style::new().fg(Color::Green),
        Outcome::Transient | Outcome::Refused => SEED,
        Outcome::NothingToCollapse => Style::new(),
        Outcome::Error => Style::new().fg(Color::Red),
    }
}

fn draw_outcomes(f: &mut Frame, app: &App, area: Rect) {
    let a = &app.view().attempts;
    let count_w = a
        .by_outcome
        .iter()
        .map(|(_, n)| n.to_string().len())
        .max()
        .unwrap_or(1)
        .max(5) as u16;
    let share = |n: u64| format!("{:.1}%", n as f64 * 100.0 / a.total.max(1) as f64);
    let title_long = if a.tried > 0 {
        format!(
            "Outcomes: {} of {} tried collapsed ({:.1}%)",
            a.collapsed,
            a.tried,
            a.collapsed as f64 * 100.0 / a.tried as f64
        )
    } else {
        "Outcomes of the attempts".to_string()
    };
    let title_mid = format!("Outcomes: {}/{} tried collapsed", a.collapsed, a.tried);
    let b = block(&[&title_long, &title_mid, "Outcomes"], area.width, false);
    let inner = area.width.saturating_sub(2);
    if area.height >= 8 {
        // One outcome a line, with what it asks of a person when there is room.
        let hint = inner >= 19 + 1 + count_w + 1 + 6 + 1 + 27;
        let rows = a.by_outcome.iter().map(|(o, n)| {
            let mut c = vec![
                Cell::from(o.name()),
                Cell::from(n.to_string()),
                Cell::from(share(*n)),
            ];
            if hint {
                c.push(Cell::from(outcome_hint(*o)));
            }
            Row::new(c).style(if *n > 0 { outcome_style(*o) } else { DIM })
        });
        let mut widths = vec![
            Constraint::Length(19),
            Constraint::Length(count_w),
            Constraint::Length(6),
        ];
        if hint {
            widths.push(Constraint::Fill(1));
        }
        f.render_widget(Table::new(rows, widths).block(b), area);
    } else {
        // Two columns of three.
        let rows = (0..3).map(|i| {
            let mut c = Vec::new();
            for (o, n) in [a.by_outcome.get(i), a.by_outcome.get(i + 3)]
                .into_iter()
                .flatten()
            {
                let st = if *n > 0 { outcome_style(*o) } else { DIM };
                c.push(Cell::from(o.name()).style(st));
                c.push(Cell::from(n.to_string()).style(st));
                c.push(Cell::from(share(*n)).style(st));
            }
            Row::new(c)
        });
        let w = [
            Constraint::Length(19),
            Constraint::Length(count_w),
            Constraint::Length(7),
        ];
        let widths: Vec<Constraint> = w.iter().chain(&w).copied().collect();
        f.render_widget(Table::new(rows, widths).block(b), area);
    }
}

/// A duration for a person: `12us`, `3.4ms`, `1.20s`.
fn dur(s: f64) -> String {
    if !s.is_finite() {
        ">5s".into()
    } else if s < 1e-3 {
        format!("{:.0}us", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1}ms", s * 1e3)
    } else {
        format!("{s:.2}s")
    }
}

fn draw_latency(f: &mut Frame, app: &App, area: Rect) {
    let a = &app.view().attempts;
    let clock = match a.clock {
        crate::model::attempts::Clock::Precise => "precise clock",
        // The tick-cached clock reads short attempts as 0.
        _ => "tick clock: < 1 tick reads 0",
    };
    let long = format!("Latency of MADV_COLLAPSE ({clock}; khugepaged has no start mark)");
    let mid = format!("Latency of MADV_COLLAPSE ({clock})");
    let b = block(&[&long, &mid, "Latency"], area.width, false);
    if a.latency.is_empty() {
        f.render_widget(
            Paragraph::new(
                "no MADV_COLLAPSE attempt yet (khugepaged's attempts have no start mark)",
            )
            .style(DIM)
            .wrap(Wrap { trim: true })
            .block(b),
            area,
        );
        return;
    }
    let header =
        Row::new(["WHAT", "OUTCOME", "COUNT", "MEAN", "MAX", "P50<=", "P99<="]).style(HEAD);
    let rows = a.latency.iter().map(|l| {
        Row::new(vec![
            Cell::from(l.what.clone()),
            Cell::from(l.outcome.name()),
            Cell::from(l.count.to_string()),
            Cell::from(dur(l.mean_ns as f64 / 1e9)),
            Cell::from(dur(l.max_ns as f64 / 1e9)),
            Cell::from(dur(l.p50_s)),
            Cell::from(dur(l.p99_s)),
        ])
        .style(outcome_style(l.outcome))
    });
    let widths = [
        Constraint::Length(18),
        Constraint::Length(19),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(8),
    ];
    f.render_widget(Table::new(rows, widths).header(header).block(b), area);
}

fn draw_attempts(f: &mut Frame, app: &App, area: Rect) {
    let v = app.view();
    let a = &v.attempts;
    let focused = app.focus == Pane::Attempts;
    let inner = area.width.saturating_sub(2);
    let cols = layout::attempts_columns(inner, v);
    let header = head(&cols, |c| {
        match c {
            Col::Origin => "ORIGIN",
            Col::Outcome => "OUTCOME",
            Col::Result => "RESULT",
            Col::Count => "ATTEMPTS",
            _ => "MEANING",
        }
        .into()
    });
    let capacity = usize::from(area.height.saturating_sub(3));
    let shown = layout::visible(
        a.rows.len(),
        capacity,
        app.scroll[Pane::Attempts as usize],
        |i| is_seed_result(&a.rows[i].result),
    );
    let rows = shown.iter().map(|&i| {
        let r = &a.rows[i];
        let seed = is_seed_result(&r.result);
        let style = if seed { SEED } else { outcome_style(r.outcome) };
        Row::new(cells(inner, &cols, |c| match c {
            Col::Origin => r.origin.to_string(),
            Col::Outcome => r.outcome.name().to_string(),
            Col::Result => format!("{}{}", if seed { SEED_MARK } else { "  " }, r.result),
            Col::Count => r.count.to_string(),
            // What to change is in the pane below, whole.
            _ => r.meaning.to_string(),
        }))
        .style(style)
    });
    let n = a.rows.len();
    let more = if shown.len() < n {
        format!(", {} more: j/k scroll", n - shown.len())
    } else {
        String::new()
    };
    let pending = if a.in_progress > 0 || a.unjoined > 0 {
        format!("; {} in progress, {} unjoined", a.in_progress, a.unjoined)
    } else {
        String::new()
    };
    let long = format!(
        "Attempts by final result ({} attempts: scan -> collapse -> MADV_COLLAPSE return{more}{pending})",
        a.total
    );
    let mid = format!("Attempts by final result ({}{more})", a.total);
    let short = format!("Attempts ({})", a.total);
    let b = block(&[&long, &mid, &short], area.width, focused);
    if a.rows.is_empty() {
        f.render_widget(
            Paragraph::new("no attempt yet: one is filed when a range's scan ends (and its MADV_COLLAPSE call returns)")
                .style(DIM)
                .wrap(Wrap { trim: true })
                .block(b),
            area,
        );
        return;
    }
    let widths: Vec<Constraint> = cols.iter().map(|(_, c)| *c).collect();
    f.render_widget(Table::new(rows, widths).header(header).block(b), area);
}

fn draw_advice(f: &mut Frame, app: &App, area: Rect) {
    let lines: Vec<Line> = layout::advice_texts(app.view())
        .into_iter()
        .map(|t| {
            Line::from(vec![
                Span::styled(t.results, if t.seed { SEED } else { HEAD }),
                Span::raw(format!(": {}", t.advice)),
            ])
        })
        .collect();
    f.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: true }).block(block(
            &["What to change"],
            area.width,
            false,
        )),
        area,
    );
}

fn draw_footer(f: &mut Frame, app: &App, area: Rect) {
    let mut spans = Vec::new();
    for (i, m) in ViewMode::ALL.iter().enumerate() {
        let text = format!(" {} {} ", i + 1, m.label());
        spans.push(if *m == app.mode {
            Span::styled(text, Style::new().fg(Color::Black).bg(Color::Cyan).bold())
        } else {
            Span::styled(text, DIM)
        });
    }
    let used: u16 = spans.iter().map(|s| s.width() as u16).sum::<u16>() + 2;
    let hints = if app.editing {
        vec![(
            9,
            vec!["type a substring, Enter keep, Esc clear".to_string()],
            DIM,
        )]
    } else {
        [
            (9, "? help"),
            (8, "q quit"),
            (7, "v view"),
            (5, "Tab pane"),
            (4, "/ filter"),
            (3, "p pause"),
            (2, "s/S sort"),
            (1, "r reset"),
        ]
        .iter()
        .map(|(p, t)| (*p, vec![t.to_string()], DIM))
        .collect()
    };
    spans.push(Span::raw("  "));
    spans.extend(fitted(area.width.saturating_sub(used), hints).spans);
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_help(f: &mut Frame, area: Rect) {
    let w = area.width.min(78);
    let h = (KEYS.len() as u16 + 6).min(area.height);
    let rect = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    let mut lines: Vec<Line> = KEYS
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:<16}"), Style::new().bold()),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::raw(""));
    lines.push(Line::from(Span::styled(
        "page_filled: a hole was faulted in during collapse -> EAGAIN, retry",
        SEED,
    )));
    lines.push(Line::from(Span::styled(
        "exceed_none_pte: holes; with userfaultfd MISSING armed -> EBUSY",
        SEED,
    )));
    lines.push(Line::styled("any key closes this help", DIM));
    f.render_widget(Clear, rect);
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title("Keys")),
        rect,
    );
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use collapse_trace_common::RecordKind;
    use ratatui::{
        Terminal,
        backend::TestBackend,
        crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
    };

    use super::*;
    use crate::{
        model::event::tests::record,
        model::{
            aggregate::KernelCounters, event::Event, results::ResultTable, system::SystemContext,
        },
        tui::app::{Action, App, Header},
    };

    /// A scripted run: events go to the core and the kernel counters agree with them.
    /// (tracepoint, pid, result, comm, file name)
    type Scripted<'a> = (RecordKind, u32, i32, &'a [u8], &'a [u8]);

    fn scripted(events: &[Scripted]) -> App {
        let mut app = App::new(
            ResultTable::builtin(),
            Header {
                release: "6.18-test".into(),
                attached: vec![
                    "mm_khugepaged_scan_file".into(),
                    "mm_khugepaged_collapse_file".into(),
                ],
                missing: vec![],
                gaps: vec![],
                filters: "none".into(),
                demo: false,
            },
            Duration::from_secs(1),
            KernelCounters::default(),
            0,
        );
        let mut k = KernelCounters::default();
        for (tp, pid, result, comm, name) in events {
            let e = Event::decode(&record(*tp, *pid, *result, comm, name)).unwrap();
            app.on_event(&e);
            k.counts[*tp as usize][*result as usize] += 1;
        }
        app.on_tick(k, Duration::from_secs(1));
        app
    }

    fn render(app: &App, w: u16, h: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| draw(f, app)).unwrap();
        let buf = t.backend().buffer().clone();
        let mut s = String::new();
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                s.push_str(buf[(x, y)].symbol());
            }
            s.push('\n');
        }
        s
    }

    fn style_of(app: &App, w: u16, h: u16, needle: &str) -> Style {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| draw(f, app)).unwrap();
        let buf = t.backend().buffer().clone();
        let text = render(app, w, h);
        let (row, line) = text
            .lines()
            .enumerate()
            .find(|(_, l)| l.contains(needle))
            .unwrap();
        let col = line[..line.find(needle).unwrap()].chars().count() as u16;
        buf[(col, row as u16)].style()
    }

    const CF: RecordKind = RecordKind::CollapseFile;
    const SF: RecordKind = RecordKind::ScanFile;

    const SAMPLE: &[Scripted] = &[
        (SF, 10, 30, b"prov", b"shm-a"),
        (CF, 10, 30, b"prov", b"shm-a"),
        (SF, 10, 30, b"prov", b"shm-a"),
        (CF, 10, 30, b"prov", b"shm-a"),
        (SF, 11, 5, b"uffd", b"shm-b"),
        (CF, 11, 5, b"uffd", b"shm-b"),
        (SF, 12, 10, b"ok", b"shm-c"),
    ];

    fn sample() -> App {
        scripted(SAMPLE)
    }

    #[test]
    fn results_table_counts_and_highlights_page_filled() {
        let app = sample();
        let text = render(&app, 120, 40);
        let line = text
            .lines()
            .find(|l| l.contains("collapse_file > page_filled"))
            .unwrap();
        assert!(line.contains(" 2 ") && line.contains("66.7%"), "{line}");
        assert!(text.contains("scan_file     > exceed_none_pte"), "{text}");
        assert!(text.contains("pte_mapped_hugepage"), "{text}");
        assert_eq!(
            style_of(&app, 120, 40, "> page_filled").fg,
            Some(Color::Yellow)
        );
        assert_ne!(
            style_of(&app, 120, 40, "pte_mapped_hugepage").fg,
            Some(Color::Yellow)
        );
        // Offenders: shm-a leads with 4 failures, mostly page_filled.
        let off = text.lines().find(|l| l.contains("shm-a")).unwrap();
        assert!(off.contains("4") && off.contains("page_filled"), "{off}");
        // A wide terminal has room for the owners pane too.
        let wide = render(&app, 240, 40);
        assert!(wide.contains("Owners (whose memory)"), "{wide}");
        let owner = wide.lines().find(|l| l.contains("owner (15)")).unwrap();
        assert!(owner.contains("cgroup:14"), "{owner}");
        assert!(!text.contains("Owners (whose memory)"), "{text}");
    }

    /// Every (tracepoint, result, count) of the view, as the row a person reads.
    fn rows_whole(app: &App, text: &str) {
        for r in &app.view().results {
            let line = text.lines().find(|l| {
                let w: Vec<&str> = l.split([' ', '│', '>']).filter(|w| !w.is_empty()).collect();
                w.windows(3).any(|x| {
                    x[0] == r.tracepoint && x[1] == r.result && x[2] == r.count.to_string()
                })
            });
            assert!(
                line.is_some(),
                "{} {} {} not whole:\n{text}",
                r.tracepoint,
                r.result,
                r.count
            );
        }
    }

    /// Many results, from every tracepoint, with the longest names: more rows than an
    /// 80x24 terminal has.
    fn crowded() -> App {
        let mut ev: Vec<Scripted> = Vec::new();
        for r in 0..22 {
            for _ in 0..(30 - r) {
                ev.push((SF, 20, r, b"many", b"f"));
            }
        }
        // The seed cases, rare: sorted by count they come last.
        ev.push((CF, 21, 30, b"seed", b"s"));
        ev.push((CF, 21, 5, b"seed", b"s"));
        ev.push((RecordKind::CollapseHugePage, 22, 14, b"anon", b""));
        ev.push((RecordKind::MadviseCall, 22, 11, b"anon", b""));
        scripted(&ev)
    }

    #[test]
    fn layout_at_80x24_keeps_drops_and_every_result_whole() {
        let app = sample();
        let area = Rect::new(0, 0, 80, 24);
        let plan = layout::plan(area, &app);
        let text = render(&app, 80, 24);
        eprintln!("{text}");
        assert!(text.lines().next().unwrap().contains("drops 0"), "{text}");
        rows_whole(&app, &text);
        // Rows first: the results pane has a line per result (plus chrome).
        let results = plan.get(Region::Results).unwrap();
        assert!(results.height as usize >= app.view().results.len() + 3);
        // Short names leave room for a (cut) meaning at 80 columns; the longest names of
        // every tracepoint do not, and rate and share still fit.
        let cols = layout::results_columns(78, app.view());
        assert!(layout::has(&cols, Col::Meaning), "{cols:?}");
        let cols = layout::results_columns(78, crowded().view());
        assert!(!layout::has(&cols, Col::Meaning), "{cols:?}");
        assert!(layout::has(&cols, Col::Rate) && layout::has(&cols, Col::Share));
        // Lower-value panes go first: no chart, no system context; offenders stay.
        assert!(
            !plan.has(Region::Chart) && !plan.has(Region::System),
            "{plan:?}"
        );
        assert!(
            plan.has(Region::Processes) && plan.has(Region::Files),
            "{plan:?}"
        );
        assert!(
            text.contains("? help") && text.contains("1 events"),
            "{text}"
        );
        // And a tiny terminal does not panic.
        render(&app, 20, 5);
        render(&app, 1, 1);
    }

    #[test]
    fn layout_at_120x40_and_200x60_adds_panes_by_value() {
        let mut app = sample();
        app.on_system(SystemContext {
            vmstat_thp: vec![("thp_collapse_alloc".into(), 7)],
            khugepaged: vec![("full_scans".into(), 3), ("pages_to_scan".into(), 4096)],
        });
        let mut k = KernelCounters::default();
        for (tp, _, r, _, _) in SAMPLE {
            k.counts[*tp as usize][*r as usize] += 1;
        }
        app.on_tick(k, Duration::from_secs(2));
        let mid = layout::plan(Rect::new(0, 0, 120, 40), &app);
        assert!(
            mid.has(Region::System) && !mid.has(Region::Chart),
            "{mid:?}"
        );
        assert!(mid.has(Region::Recent), "{mid:?}");
        assert!(layout::has(
            &layout::results_columns(118, app.view()),
            Col::Meaning
        ));
        let text = render(&app, 120, 40);
        rows_whole(&app, &text);
        assert!(text.contains("full_scans 3 (+0)"), "{text}");
        assert!(text.contains("pages_to_scan 4096"), "{text}");

        let wide = layout::plan(Rect::new(0, 0, 200, 60), &app);
        for r in [
            Region::Results,
            Region::Chart,
            Region::Files,
            Region::Processes,
            Region::Owners,
            Region::Recent,
            Region::System,
        ] {
            assert!(wide.has(r), "{r:?} missing at 200x60: {wide:?}");
        }
        assert!(layout::has(
            &layout::recent_columns(140, app.view()),
            Col::Detail
        ));
        let text = render(&app, 200, 60);
        rows_whole(&app, &text);
        assert!(text.contains("kernel 6.18-test"), "{text}");
    }

    #[test]
    fn seed_rows_stay_in_view_when_results_do_not_fit() {
        let app = crowded();
        let n = app.view().results.len();
        assert!(n > 20, "{n}");
        let text = render(&app, 80, 24);
        eprintln!("{text}");
        for name in ["page_filled", "exceed_none_pte"] {
            assert!(
                text.lines()
                    .any(|l| l.contains(&format!("collapse_file      > {name}"))
                        && l.contains(" 1 ")),
                "{name}:\n{text}"
            );
        }
        assert!(text.contains("more: Tab here, j/k scroll"), "{text}");
        // Taller, every row fits, each whole however long, at 80 columns still.
        let tall = render(&app, 80, 40);
        rows_whole(&app, &tall);
        for tp in ["collapse_huge_page", "madvise_collapse"] {
            assert!(tall.contains(&format!("│{tp} ")), "{tall}");
        }
    }

    #[test]
    fn visible_pins_seeds_and_fit_drops_lowest_priority_first() {
        // 10 rows, 4 lines, seeds at 7 and 9: the first two, then the seeds.
        assert_eq!(
            layout::visible(10, 4, 0, |i| i == 7 || i == 9),
            [0, 1, 7, 9]
        );
        assert_eq!(layout::visible(3, 4, 2, |_| false), [0, 1, 2]);
        assert_eq!(layout::visible(10, 3, 8, |i| i == 0), [0, 7, 8]);
        let items = vec![
            (1, vec!["aaaaaaaaaa".to_string(), "a".to_string()]),
            (9, vec!["drops 0".to_string()]),
            (5, vec!["bbbbbbbbbb".to_string()]),
        ];
        assert_eq!(layout::fit(40, &items), [Some(0), Some(0), Some(0)]);
        assert_eq!(layout::fit(22, &items), [Some(1), Some(0), Some(0)]);
        assert_eq!(layout::fit(12, &items), [None, Some(0), None]);
        assert_eq!(layout::fit(3, &items), [None, None, None]);
        assert_eq!(
            layout::pack(&["ab".into(), "cd".into(), "efgh".into()], 7),
            ["ab  cd", "efgh"]
        );
    }

    #[test]
    fn view_key_switches_to_attempts_and_owners() {
        let mut app = sample();
        let key = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
        app.on_key(key('v'));
        assert_eq!(app.mode, ViewMode::Attempts);
        assert_eq!(app.focus, Pane::Attempts);
        let plan = layout::plan(Rect::new(0, 0, 80, 24), &app);
        assert!(
            plan.has(Region::Attempts) && plan.has(Region::Outcomes),
            "{plan:?}"
        );
        assert!(!plan.has(Region::Results), "{plan:?}");
        let text = render(&app, 80, 24);
        eprintln!("{text}");
        // page_filled: 2 attempts (pid 10), transient; exceed_none_pte: 1, refused.
        let row = text.lines().find(|l| l.contains("> page_filled")).unwrap();
        assert!(row.contains("transient") && row.contains(" 2 "), "{row}");
        let row = text
            .lines()
            .find(|l| l.contains("> exceed_none_pte"))
            .unwrap();
        assert!(row.contains("refused") && row.contains(" 1 "), "{row}");
        // What to change gets a pane of its own, whole.
        assert!(plan.has(Region::Advice), "{plan:?}");
        assert!(text.contains("What to change"), "{text}");
        assert!(text.contains("the uffd owner must populate"), "{text}");
        assert!(text.contains("transient"), "{text}");
        let wide = render(&app, 200, 60);
        assert!(wide.contains("a retry may work"), "{wide}");
        assert!(wide.contains("Latency of MADV_COLLAPSE"), "{wide}");

        app.on_key(key('v'));
        assert_eq!(app.mode, ViewMode::Owners);
        let text = render(&app, 80, 24);
        eprintln!("{text}");
        assert!(text.contains("Owners of the memory"), "{text}");
        let owner = text.lines().find(|l| l.contains("owner (15)")).unwrap();
        assert!(
            owner.contains("│6     7 "),
            "6 failures of 7 events: {owner}"
        );
        app.on_key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE));
        assert_eq!(app.focus, Pane::Offenders);
        app.on_key(key('1'));
        assert_eq!((app.mode, app.focus), (ViewMode::Events, Pane::Results));
        app.on_key(key('2'));
        assert_eq!(app.mode, ViewMode::Attempts);
    }

    #[test]
    fn the_cgroup_key_cycles_through_the_owners_cgroups() {
        let mut app = scripted(&[]);
        // Two owners in two cgroups: the busier cgroup comes first.
        for (owner, cgroup, n) in [(21u32, 100u64, 1), (22, 200, 3)] {
            for _ in 0..n {
                let mut e = Event::decode(&record(SF, 9, 30, b"khugepaged", b"f")).unwrap();
                e.owner_tgid = owner;
                e.owner_comm = format!("db{owner}").into_bytes();
                e.owner_cgroup_id = cgroup;
                app.on_event(&e);
            }
        }
        app.on_tick(KernelCounters::default(), Duration::from_secs(1));
        let key = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
        app.on_key(key('3'));
        let owners = |app: &App| -> Vec<String> {
            app.view().owners.iter().map(|o| o.name.clone()).collect()
        };
        assert_eq!(owners(&app).len(), 2);
        app.on_key(key('c'));
        assert_eq!(app.cgroup_filter, Some(200));
        assert_eq!(owners(&app), vec!["db22 (22)".to_string()]);
        let screen = render(&app, 200, 60);
        assert!(
            screen.contains("cgroup: cgroup:200"),
            "the header says so:\n{screen}"
        );
        app.on_key(key('c'));
        assert_eq!(app.cgroup_filter, Some(100));
        assert_eq!(owners(&app), vec!["db21 (21)".to_string()]);
        app.on_key(key('c'));
        assert_eq!(app.cgroup_filter, None);
        assert_eq!(owners(&app).len(), 2);
    }

    #[test]
    fn help_overlay_lists_every_key() {
        let mut app = sample();
        assert_eq!(
            app.on_key(KeyEvent::new(KeyCode::Char('?'), KeyModifiers::NONE)),
            Action::None
        );
        // Whole even at 80x24.
        let text = render(&app, 80, 24);
        eprintln!("{text}");
        for (k, what) in crate::tui::app::KEYS {
            assert!(
                text.lines().any(|l| l.contains(k) && l.contains(what)),
                "help lacks {k}:\n{text}"
            );
        }
        app.on_key(KeyEvent::new(KeyCode::Char('x'), KeyModifiers::NONE));
        assert!(!render(&app, 80, 24).contains("this help"));
    }

    #[test]
    fn hostile_names_are_escaped() {
        let app = scripted(&[(CF, 13, 30, b"ev\x1b[2Jil", b"a\nb\x1b]0;pwned\x07\xff")]);
        let text = render(&app, 140, 40);
        assert!(
            !text.contains('\x1b') && !text.contains('\x07'),
            "raw control bytes reached the screen"
        );
        assert!(text.contains("a\\x0ab\\x1b]0;pwned\\x07\\xff"), "{text}");
        assert!(text.contains("ev\\x1b[2Jil"), "{text}");
    }

    #[test]
    fn keys_sort_filter_pause_and_quit() {
        let mut app = sample();
        let key = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
        app.on_key(key('S')); // ascending count
        assert!(
            app.view().results.first().unwrap().count <= app.view().results.last().unwrap().count
        );
        app.on_key(key('/'));
        for c in "uffd".chars() {
            app.on_key(key(c));
        }
        app.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
        assert_eq!(app.view().processes.len(), 1);
        assert!(app.view().processes[0].name.starts_with("uffd"));
        app.on_key(key('p'));
        let frozen = app.view().events;
        let mut k = KernelCounters::default();
        k.counts[0][30] = 100;
        app.on_tick(k, Duration::from_secs(2));
        assert_eq!(app.view().events, frozen, "paused: the display is frozen");
        app.on_key(key('p'));
        assert_eq!(app.view().events, 100, "unpaused: collection went on");
        assert_eq!(app.on_key(key('r')), Action::Reset);
        assert_eq!(
            app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Action::Quit
        );
        assert_eq!(app.on_key(key('q')), Action::Quit);
    }
}
