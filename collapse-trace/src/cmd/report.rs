//! `collapse-trace report FILE`: the post-mortem of a capture (a `record` file, or ftrace,
//! trace-cmd or perf text). Never talks to the kernel: the capture is fed to the aggregation
//! core and the views read that.

use std::{
    io::{IsTerminal as _, Write as _},
    path::PathBuf,
};

use anyhow::{Context as _, Result};
use clap::Args;

use crate::{
    capture,
    export::report::{build, draw, render},
    model::capture::Format,
};

/// Options of `report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The capture: a `record` file (plain or .zst), or tracefs `trace`/`trace_pipe`,
    /// `trace-cmd report` or `perf script` text.
    file: PathBuf,
    /// Print one JSON document (schema `collapse-trace.report/1`, docs/json-schema.md).
    #[arg(long)]
    json: bool,
    /// Also draw failures per second to this file (`.svg` or `.png`).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// The capture's format, when guessing it from the first lines is not enough.
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Rows in the process, file and range tables (text output).
    #[arg(long, default_value_t = 10)]
    top: usize,
}

/// Inputs at least this big get a progress bar (when stderr is a terminal).
const PROGRESS_BYTES: u64 = 32 << 20;

/// Runs `report`.
pub fn run(args: ReportArgs) -> Result<()> {
    let size = std::fs::metadata(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?
        .len();
    let bar = if std::io::stderr().is_terminal() && size >= PROGRESS_BYTES {
        let b = indicatif::ProgressBar::new(size);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b.set_message("reading");
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let names = crate::kernel::probes::local_result_table();
    let loaded = capture::load(&args.file, args.format, &names, &mut |n| {
        bar.set_position(n)
    })?;
    bar.finish_and_clear();

    let mut loaded = loaded;
    // A capture does not say which clock its times came from; the knobs advice quotes are
    // this machine's only when the capture was taken here.
    loaded.agg.attempts.clock = crate::model::attempts::Clock::Unknown;
    if loaded.info.release == super::sysfs::release() {
        loaded.agg.attempts.knobs = super::sysfs::knobs();
    }
    let report = build(&loaded);
    if let Some(reason) = &report.capture.cut_reason {
        eprintln!(
            "collapse-trace: warning: {} was cut short ({reason}); the report covers the {} \
             events read{}",
            args.file.display(),
            report.capture.events,
            if report.capture.format == Format::Record {
                "; kernel counts and drops are unknown, counts are of the events read"
            } else {
                ""
            }
        );
    }
    if let Some(plot) = &args.plot {
        draw(plot, &report.timeline)?;
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report).context("writing JSON")?;
        writeln!(out)?;
    } else {
        write!(out, "{}", render(&report, &args.file, args.top)).context("writing to stdout")?;
    }
    Ok(())
}
