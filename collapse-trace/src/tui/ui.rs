//! Drawing `top`: header, results table, chart, offenders, recent failures, help overlay.
//! Reads only [`App`] and its [`super::app::View`].

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    symbols::Marker,
    text::{Line, Span},
    widgets::{
        Axis, Block, Borders, Cell, Chart, Clear, Dataset, GraphType, Paragraph, Row, Table, Wrap,
    },
};

use super::app::{App, KEYS, Pane, is_seed_result};

const SEED: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);

/// Draws one frame.
pub fn draw(f: &mut Frame, app: &App) {
    let area = f.area();
    let [header, results, middle, recent, footer] = Layout::vertical([
        Constraint::Length(if app.header.gaps.is_empty() { 3 } else { 4 }),
        Constraint::Min(6),
        Constraint::Length(if area.height >= 40 { 12 } else { 7 }),
        Constraint::Min(4),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(f, app, header);
    draw_results(f, app, results);
    let chart_share = match area.width {
        w if w >= 160 => 40,
        w if w >= 100 => 30,
        _ => 24,
    };
    let [chart, offenders] = Layout::horizontal([
        Constraint::Percentage(chart_share),
        Constraint::Percentage(100 - chart_share),
    ])
    .areas(middle);
    draw_chart(f, app, chart);
    draw_offenders(f, app, offenders);
    draw_recent(f, app, recent);
    draw_footer(f, app, footer);
    if app.help {
        draw_help(f, area);
    }
}

fn block(title: &str, focused: bool) -> Block<'_> {
    let b = Block::default().borders(Borders::ALL).title(title);
    if focused {
        b.border_style(Style::new().fg(Color::Cyan))
    } else {
        b
    }
}

fn draw_header(f: &mut Frame, app: &App, area: Rect) {
    let v = app.view();
    let h = &app.header;
    let drops = if v.dropped > 0 {
        Span::styled(
            format!("drops {}", v.dropped),
            Style::new().fg(Color::White).bg(Color::Red).bold(),
        )
    } else {
        Span::raw("drops 0")
    };
    let mut line1 = vec![
        Span::styled("collapse-trace top", Style::new().bold()),
        Span::raw(format!("  kernel {}  up {:.0}s  ", h.release, v.uptime_s)),
        Span::raw(format!(
            "{:.0} events/s  {} events  ",
            v.events_per_s, v.events
        )),
        drops,
    ];
    if app.paused {
        line1.push(Span::styled(
            "  PAUSED",
            Style::new().fg(Color::Black).bg(Color::Yellow),
        ));
    }
    let mut line2 = vec![Span::raw(format!("attached: {}", h.attached.join(", ")))];
    if !h.missing.is_empty() {
        line2.push(Span::styled(
            format!("  missing: {}", h.missing.join(", ")),
            Style::new().fg(Color::Red),
        ));
    }
    line2.push(Span::raw(format!("  filters: {}", h.filters)));
    if !app.filter.is_empty() || app.editing {
        line2.push(Span::styled(
            format!(
                "  view filter: /{}{}",
                app.filter,
                if app.editing { "_" } else { "" }
            ),
            Style::new().fg(Color::Cyan),
        ));
    }
    if h.demo {
        line2.push(Span::styled(
            "  demo workload running",
            Style::new().fg(Color::Green),
        ));
    }
    let mut lines = vec![Line::from(line1), Line::from(line2)];
    if !h.gaps.is_empty() {
        // Each gap's sentence up to its colon: what is missing, not the whole explanation
        // (`doctor` has that).
        let short: Vec<&str> = h
            .gaps
            .iter()
            .map(|g| g.split(':').next().unwrap_or(g))
            .collect();
        lines.push(Line::from(Span::styled(
            format!("not observable on this kernel: {}", short.join("; ")),
            Style::new().fg(Color::Yellow),
        )));
    }
    let p = Paragraph::new(lines).block(Block::default().borders(Borders::BOTTOM));
    f.render_widget(p, area);
}

fn draw_results(f: &mut Frame, app: &App, area: Rect) {
    let v = app.view();
    let arrow = if app.descending { "v" } else { "^" };
    let head = Row::new(vec![
        Cell::from("TRACEPOINT"),
        Cell::from("RESULT"),
        Cell::from(format!(
            "COUNT{}",
            if app.sort.label() == "count" {
                arrow
            } else {
                ""
            }
        )),
        Cell::from(format!(
            "RATE/s{}",
            if app.sort.label() == "rate" {
                arrow
            } else {
                ""
            }
        )),
        Cell::from("SHARE"),
        Cell::from("MEANING"),
    ])
    .style(Style::new().bold());
    let skip = app.scroll[Pane::Results as usize].min(v.results.len().saturating_sub(1));
    let rows = v.results.iter().skip(skip).map(|r| {
        let style = if is_seed_result(&r.result) {
            SEED
        } else if r.success {
            Style::new().fg(Color::Green)
        } else {
            Style::new()
        };
        let mark = if is_seed_result(&r.result) {
            "> "
        } else {
            "  "
        };
        Row::new(vec![
            Cell::from(r.tracepoint),
            Cell::from(format!("{mark}{}", r.result)),
            Cell::from(r.count.to_string()),
            Cell::from(format!("{:.1}", r.rate)),
            Cell::from(format!("{:.1}%", r.share * 100.0)),
            Cell::from(r.meaning),
        ])
        .style(style)
    });
    let title = format!(
        "Results ({} rows; s sort by {}, S reverse)",
        v.results.len(),
        app.sort.label()
    );
    let t = Table::new(
        rows,
        [
            Constraint::Length(13),
            Constraint::Length(33),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Fill(1),
        ],
    )
    .header(head)
    .block(block(&title, app.focus == Pane::Results));
    if v.results.is_empty() {
        let p = Paragraph::new("no collapse events yet: khugepaged is idle and nobody called MADV_COLLAPSE (try `top --demo`, or `collapse-trace provoke` elsewhere)")
            .wrap(Wrap { trim: true })
            .block(block(&title, app.focus == Pane::Results));
        f.render_widget(p, area);
    } else {
        f.render_widget(t, area);
    }
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
    .block(block("Attempts per interval", false))
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

fn draw_offenders(f: &mut Frame, app: &App, area: Rect) {
    let v = app.view();
    let focused = app.focus == Pane::Offenders;
    let skip = app.scroll[Pane::Offenders as usize];
    // The owners pane (whose memory it was) when there is room for three wide panes.
    let panes: Vec<(&Vec<_>, &str, Rect)> = if area.width >= 132 {
        let [files, procs, owners] = Layout::horizontal([
            Constraint::Percentage(34),
            Constraint::Percentage(33),
            Constraint::Percentage(33),
        ])
        .areas(area);
        vec![
            (&v.files, "Top files by failures", files),
            (&v.processes, "Top processes by failures", procs),
            (&v.owners, "Top owners (whose memory)", owners),
        ]
    } else {
        let [files, procs] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(area);
        vec![
            (&v.files, "Top files by failures", files),
            (&v.processes, "Top processes by failures", procs),
        ]
    };
    for (list, title, rect) in panes {
        // A narrow pane keeps the name and drops the dominant result.
        let wide = rect.width >= 44;
        let rows = list
            .iter()
            .skip(skip.min(list.len().saturating_sub(1)))
            .map(|o| {
                let style = if is_seed_result(&o.dominant) {
                    SEED
                } else {
                    Style::new()
                };
                let mut cells = vec![
                    Cell::from(o.failures.to_string()),
                    Cell::from(o.name.clone()),
                ];
                if wide {
                    cells.push(Cell::from(o.dominant.clone()));
                }
                Row::new(cells).style(style)
            });
        let (widths, head) = if wide {
            (
                vec![
                    Constraint::Length(6),
                    Constraint::Fill(1),
                    Constraint::Length(16),
                ],
                vec!["FAILS", "NAME", "MOSTLY"],
            )
        } else {
            (
                vec![Constraint::Length(6), Constraint::Fill(1)],
                vec!["FAILS", "NAME"],
            )
        };
        let t = Table::new(rows, widths)
            .header(Row::new(head).style(Style::new().bold()))
            .block(block(title, focused));
        f.render_widget(t, rect);
    }
}

fn draw_recent(f: &mut Frame, app: &App, area: Rect) {
    let v = app.view();
    let skip = app.scroll[Pane::Recent as usize].min(v.recent.len().saturating_sub(1));
    // Narrow terminals drop the detail column first: the file matters more.
    let wide = area.width >= 110;
    let rows = v.recent.iter().skip(skip).map(|r| {
        let style = if is_seed_result(&r.result) {
            SEED
        } else {
            Style::new()
        };
        let mut cells = vec![
            Cell::from(format!("{:.3}", r.at)),
            Cell::from(r.result.clone()),
            Cell::from(r.comm.clone()),
            Cell::from(r.pid.to_string()),
            Cell::from(r.file.clone()),
        ];
        if wide {
            cells.push(Cell::from(r.detail.clone()));
        }
        Row::new(cells).style(style)
    });
    let mut widths = vec![
        Constraint::Length(9),
        Constraint::Length(if wide { 31 } else { 22 }),
        Constraint::Length(15),
        Constraint::Length(7),
        Constraint::Fill(1),
    ];
    let mut head = vec!["TIME s", "RESULT", "COMM", "PID", "FILE"];
    if wide {
        widths.push(Constraint::Length(20));
        head.push("DETAIL");
    }
    let t = Table::new(rows, widths)
        .header(Row::new(head).style(Style::new().bold()))
        .block(block(
            "Recent failures (newest first)",
            app.focus == Pane::Recent,
        ));
    f.render_widget(t, area);
}

fn draw_footer(f: &mut Frame, app: &App, area: Rect) {
    let text = if app.editing {
        "type a comm or file substring, Enter keep, Esc clear".to_string()
    } else {
        "q quit  p pause  r reset  s/S sort  Tab pane  / filter  ? help".to_string()
    };
    f.render_widget(
        Paragraph::new(text).style(Style::new().fg(Color::DarkGray)),
        area,
    );
}

fn draw_help(f: &mut Frame, area: Rect) {
    let w = area.width.min(76);
    let h = (KEYS.len() as u16 + 8).min(area.height);
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
    lines.push(Line::raw("any key closes this help"));
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
        model::{aggregate::KernelCounters, event::Event, results::ResultTable},
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

    fn sample() -> App {
        scripted(&[
            (SF, 10, 30, b"prov", b"shm-a"),
            (CF, 10, 30, b"prov", b"shm-a"),
            (SF, 10, 30, b"prov", b"shm-a"),
            (CF, 10, 30, b"prov", b"shm-a"),
            (SF, 11, 5, b"uffd", b"shm-b"),
            (CF, 11, 5, b"uffd", b"shm-b"),
            (SF, 12, 10, b"ok", b"shm-c"),
        ])
    }

    #[test]
    fn results_table_counts_and_highlights_page_filled() {
        let app = sample();
        let text = render(&app, 160, 40);
        let line = text
            .lines()
            .find(|l| l.contains("collapse_file > page_filled"))
            .unwrap();
        assert!(line.contains(" 2 ") && line.contains("66.7%"), "{line}");
        assert!(text.contains("scan_file     > exceed_none_pte"), "{text}");
        assert!(text.contains("pte_mapped_hugepage"), "{text}");
        assert_eq!(
            style_of(&app, 160, 40, "> page_filled").fg,
            Some(Color::Yellow)
        );
        assert_ne!(
            style_of(&app, 160, 40, "pte_mapped_hugepage").fg,
            Some(Color::Yellow)
        );
        // Offenders: shm-a leads with 4 failures, mostly page_filled.
        let off = text.lines().find(|l| l.contains("shm-a")).unwrap();
        assert!(off.contains("4") && off.contains("page_filled"), "{off}");
        // A wide terminal has room for the owners pane too.
        let wide = render(&app, 240, 40);
        assert!(wide.contains("Top owners (whose memory)"), "{wide}");
        assert!(wide.contains("owner (15) cgroup:14"), "{wide}");
        assert!(!text.contains("Top owners"), "{text}");
    }

    #[test]
    fn fits_80x24() {
        let app = sample();
        let text = render(&app, 80, 24);
        eprintln!("{text}");
        assert!(text.contains("collapse-trace top"));
        assert!(text.contains("page_filled"));
        assert!(text.contains("Recent failures"));
        assert!(text.contains("q quit"));
        // And survives a tiny terminal without panicking.
        render(&app, 20, 5);
    }

    #[test]
    fn help_overlay_lists_every_key() {
        let mut app = sample();
        assert_eq!(
            app.on_key(KeyEvent::new(KeyCode::Char('?'), KeyModifiers::NONE)),
            Action::None
        );
        let text = render(&app, 100, 40);
        for (k, _) in crate::tui::app::KEYS {
            assert!(text.contains(k), "help lacks {k}:\n{text}");
        }
        app.on_key(KeyEvent::new(KeyCode::Char('x'), KeyModifiers::NONE));
        assert!(!render(&app, 100, 40).contains("this help"));
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
