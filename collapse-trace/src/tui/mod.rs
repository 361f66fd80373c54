//! The live terminal UI of `collapse-trace top` (ratatui, crossterm backend).
//!
//! [`app`] holds the state and reads only the aggregation core; [`ui`] draws it; [`run`]
//! wires the collector, the keyboard and the clock together.

pub mod app;
pub mod ui;

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use ratatui::{
    DefaultTerminal,
    crossterm::event::{self, Event as TermEvent},
};
use tokio::sync::mpsc;

use crate::{
    cmd::Stop,
    kernel::stream::{Collector, monotonic_ns},
};
use app::{Action, App};

/// Reads terminal input on a thread of its own (crossterm's reader blocks) and forwards it.
fn spawn_input() -> mpsc::UnboundedReceiver<TermEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        loop {
            match event::poll(Duration::from_millis(200)) {
                Ok(true) => match event::read() {
                    Ok(ev) => {
                        if tx.send(ev).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                },
                Ok(false) => {
                    if tx.is_closed() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    rx
}

/// Runs the UI until the operator quits or SIGTERM/SIGINT arrives. The caller restores the
/// terminal.
pub async fn run(
    terminal: &mut DefaultTerminal,
    app: &mut App,
    collector: &mut Collector,
    mut stop: Stop,
) -> Result<()> {
    let mut input = spawn_input();
    let start = Instant::now();
    let mut tick = tokio::time::interval(app.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let draw = |terminal: &mut DefaultTerminal, app: &App| -> Result<()> {
        terminal
            .draw(|f| ui::draw(f, app))
            .context("drawing the terminal")?;
        Ok(())
    };
    loop {
        tokio::select! {
            _ = stop.wait() => return Ok(()),
            _ = collector.wait(crate::kernel::stream::DRAIN_TICK) => {
                collector.drain(|e| app.on_event(e));
            }
            _ = tick.tick() => {
                collector.drain(|e| app.on_event(e));
                app.on_tick(collector.counters()?, start.elapsed());
                draw(terminal, app)?;
            }
            ev = input.recv() => match ev {
                Some(TermEvent::Key(k)) => {
                    match app.on_key(k) {
                        Action::Quit => return Ok(()),
                        Action::Reset => {
                            collector.drain(|e| app.on_event(e));
                            app.reset(collector.counters()?, monotonic_ns());
                        }
                        Action::None => {}
                    }
                    draw(terminal, app)?;
                }
                Some(TermEvent::Resize(..)) => draw(terminal, app)?,
                Some(_) => {}
                None => return Ok(()),
            },
        }
    }
}
