//! The command line: parse, dispatch to `cmd::*`, map errors to documented exit codes.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::{cmd, kernel::KernelError};

mod generate;

/// Shows why transparent-huge-page collapses (khugepaged, MADV_COLLAPSE) succeed or fail.
#[derive(Debug, Parser)]
#[command(
    name = "collapse-trace",
    version = env!("COLLAPSE_TRACE_LONG_VERSION"),
    about,
    long_about = None
)]
pub(crate) struct Cli {
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Live terminal UI: results, rates, top offenders and recent failures, as they happen.
    Top(cmd::top::TopArgs),
    /// Attach, collect, and print counts per tracepoint and result, drops, top processes and files.
    Stat(cmd::stat::StatArgs),
    /// Record every event to a file (NDJSON, .zst compressed) for `report` later.
    Record(cmd::record::RecordArgs),
    /// Post-mortem of a capture: a `record` file, or ftrace / trace-cmd / perf script text.
    Report(cmd::report::ReportArgs),
    /// Why a process does (not) get huge pages: settings, mappings, userfaultfds, collapses
    /// seen, and the changes most likely to help.
    Explain(cmd::explain::ExplainArgs),
    /// Daemon: serve Prometheus metrics (/metrics), the stat JSON snapshot (/json), /healthz.
    Serve(cmd::serve::ServeArgs),
    /// Check what this kernel supports (tracepoints, result names, BTF, privileges, tracefs).
    Doctor(cmd::doctor::DoctorArgs),
    /// Make the kernel produce each collapse case for real (a private tmpfs, real MADV_COLLAPSE).
    Provoke(cmd::provoke::ProvokeArgs),
    /// Print a shell completion script (bash, zsh or fish) to stdout.
    Completions(generate::CompletionsArgs),
    /// Print the manual page (roff) to stdout, or write one page per command to a directory.
    Man(generate::ManArgs),
}

/// Exit codes, documented in the README.
pub(crate) mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Any other failure.
    pub const FAILURE: u8 = 1;
    /// Bad command line or bad value.
    pub const USAGE: u8 = 2;
    /// Not enough privilege (root, or the capabilities the README lists).
    pub const PRIVILEGE: u8 = 3;
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default = match cli.verbose {
        // A daemon logs its start, stop and trouble by default.
        0 if matches!(cli.command, Command::Serve(_)) => "info",
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .format_timestamp(None)
        .init();

    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("collapse-trace: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Top(a) => cmd::top::run(a).await,
            Command::Stat(a) => cmd::stat::run(a).await,
            Command::Record(a) => cmd::record::run(a).await,
            Command::Report(a) => cmd::report::run(a),
            Command::Explain(a) => cmd::explain::run(a).await,
            Command::Serve(a) => cmd::serve::run(a).await,
            Command::Doctor(a) => cmd::doctor::run(a),
            Command::Provoke(a) => cmd::provoke::run(a),
            Command::Completions(a) => generate::completions(&a),
            Command::Man(a) => generate::man(&a),
        }
    });
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            if let Some(i) = e.downcast_ref::<cmd::provoke::Interrupted>() {
                // Not an error: the tally is printed; the code says the run was cut short.
                eprintln!("collapse-trace: {i}");
                return ExitCode::from(i.exit_code());
            }
            eprintln!("collapse-trace: error: {e:#}");
            let code = if e.is::<cmd::top::NotATerminal>() || e.is::<UsageError>() {
                exit::USAGE
            } else if e.is::<crate::provoke::NeedsPrivilege>() {
                exit::PRIVILEGE
            } else {
                e.downcast_ref::<KernelError>()
                    .map_or(exit::FAILURE, KernelError::exit_code)
            };
            ExitCode::from(code)
        }
    }
}

use crate::values::UsageError;
