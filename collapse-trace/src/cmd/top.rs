//! `collapse-trace top`: the live terminal UI.

use std::{io::IsTerminal as _, process::Stdio, time::Duration};

use anyhow::{Result, bail};
use clap::Args;
use tokio::{process::Command, sync::watch, task::JoinHandle};

use ratatui::{DefaultTerminal, crossterm::event::Event as TermEvent};

use super::CollectArgs;
use crate::{
    session::{Session, Stop, Wake, monotonic_ns},
    tui::{
        self,
        app::{Action, App, Header},
    },
};

/// Options of `top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    #[command(flatten)]
    collect: CollectArgs,
    /// Refresh and rate interval (e.g. `1s`, `500ms`).
    #[arg(long, short = 'i', default_value = "1s", value_parser = parse_interval)]
    interval: Duration,
    /// Run the built-in `provoke` scenarios in the background, so every case shows up at once
    /// on an idle machine (stopped cleanly on quit).
    #[arg(long)]
    demo: bool,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (try 1s or 500ms)"))?;
    if d < Duration::from_millis(100) {
        return Err(format!("{s:?} is shorter than 100ms"));
    }
    Ok(d)
}

/// A `top` that cannot start because stdout is no terminal.
#[derive(Debug, thiserror::Error)]
#[error(
    "top needs a terminal, and stdout is not one; use `collapse-trace stat` for a report or \
     `collapse-trace stat --json` for machines"
)]
pub struct NotATerminal;

/// Runs `top`.
pub async fn run(args: TopArgs) -> Result<()> {
    if !std::io::stdout().is_terminal() {
        bail!(NotATerminal);
    }
    // Signals first: SIGINT/SIGTERM/SIGHUP while attaching or drawing end `top` cleanly.
    let stop = Stop::new(None)?.on_hangup()?;
    let mut session = args.collect.start(true, stop)?;
    let info = session.info();
    let header = Header {
        release: info.release.clone(),
        attached: info
            .attached_names()
            .into_iter()
            .map(String::from)
            .collect(),
        missing: info.missing_names().into_iter().map(String::from).collect(),
        gaps: info.gaps(),
        filters: match (&args.collect.pid, &args.collect.comm) {
            (None, None) => "none".to_string(),
            (pid, comm) => format!(
                "pid={} comm={}",
                pid.map_or("any".into(), |p| p.to_string()),
                comm.as_deref().unwrap_or("any")
            ),
        },
        demo: args.demo,
    };
    let table = info.results.clone();
    let mut app = App::new(
        table,
        header,
        args.interval,
        session.counters()?,
        monotonic_ns(),
    );
    super::sysfs::prime(&mut app.agg, args.collect.precise_time);
    app.on_system(super::sysfs::system_context());
    let demo = args.demo.then(Demo::start);

    let mut terminal = ratatui::try_init()?;
    let result = run_ui(&mut terminal, &mut app, &mut session).await;
    ratatui::restore();
    let _ = session.finish(|_| {});
    if let Some(d) = demo {
        d.stop().await;
    }
    result
}

/// Runs the UI until the operator quits or SIGTERM/SIGINT/SIGHUP arrives. The caller
/// restores the terminal.
async fn run_ui(
    terminal: &mut DefaultTerminal,
    app: &mut App,
    session: &mut Session,
) -> Result<()> {
    let mut input = tui::spawn_input();
    let mut tick = tokio::time::interval(app.interval);
    let mut cgroups = crate::kernel::cgroups::CgroupResolver::new();
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            w = session.wait() => {
                if w == Wake::Stop {
                    return Ok(());
                }
                session.drain(|e| app.on_event(e));
            }
            _ = tick.tick() => {
                session.drain(|e| app.on_event(e));
                super::name_cgroups(&mut app.agg, &mut cgroups);
                // The views never read a file: the system context comes in from here.
                app.on_system(super::sysfs::system_context());
                // One read of the counters for the whole interval.
                app.on_tick(session.counters()?, session.elapsed());
                tui::draw(terminal, app)?;
            }
            ev = input.recv() => match ev {
                Some(TermEvent::Key(k)) => {
                    match app.on_key(k) {
                        Action::Quit => return Ok(()),
                        Action::Reset => {
                            session.drain(|e| app.on_event(e));
                            app.reset(session.counters()?, monotonic_ns());
                        }
                        Action::None => {}
                    }
                    tui::draw(terminal, app)?;
                }
                Some(TermEvent::Resize(..)) => tui::draw(terminal, app)?,
                Some(_) => {}
                None => return Ok(()),
            },
        }
    }
}

/// The `--demo` workload: `provoke all` runs, one after the other, as child processes.
struct Demo {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Demo {
    fn start() -> Demo {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let Ok(exe) = std::env::current_exe() else {
                return;
            };
            while !*stopped.borrow() {
                // Short runs, so that quitting waits at most one of them and the last tally
                // is complete rather than killed half-way.
                let child = Command::new(&exe)
                    .args(["provoke", "all", "--iterations", "20"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(false)
                    .spawn();
                let Ok(mut child) = child else { return };
                let _ = child.wait().await;
                tokio::select! {
                    _ = stopped.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                }
            }
        });
        Demo { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .is_err()
        {
            log::warn!("the demo workload did not stop within 20 s");
        }
    }
}
