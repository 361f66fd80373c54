//! The live terminal UI of `collapse-trace top` (ratatui, crossterm backend).
//!
//! [`app`] holds the state and reads only the aggregation core; [`layout`] decides what fits
//! where; [`ui`] draws it;
//! [`spawn_input`] reads the keyboard. `cmd::top` wires a counting session, the keyboard and
//! the clock together: nothing here talks to the kernel.

pub mod app;
pub(crate) mod layout;
pub(crate) mod ui;

use std::time::Duration;

use anyhow::{Context as _, Result};
use ratatui::{
    DefaultTerminal,
    crossterm::event::{self, Event as TermEvent},
};
use tokio::sync::mpsc;

use app::App;

/// Reads terminal input on a thread of its own (crossterm's reader blocks) and forwards it.
pub fn spawn_input() -> mpsc::UnboundedReceiver<TermEvent> {
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

/// Draws one frame of `app`.
pub fn draw(terminal: &mut DefaultTerminal, app: &App) -> Result<()> {
    terminal
        .draw(|f| ui::draw(f, app))
        .context("drawing the terminal")?;
    Ok(())
}
