//! `completions` and `man`: shell completion scripts and manual pages, generated from the clap
//! definitions in [`super::Cli`] so that they never disagree with `--help`.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use clap::{CommandFactory as _, ValueEnum};

use super::Cli;

/// The binary's name, as completions and manual pages call it.
const NAME: &str = "collapse-trace";

/// Arguments of `collapse-trace completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

/// The shells `completions` writes scripts for.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Shell {
    /// bash (bash-completion): install as share/bash-completion/completions/collapse-trace.
    Bash,
    /// zsh: install as share/zsh/site-functions/_collapse-trace.
    Zsh,
    /// fish: install as share/fish/vendor_completions.d/collapse-trace.fish.
    Fish,
}

/// Arguments of `collapse-trace man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write collapse-trace.1 and one collapse-trace-COMMAND.1 per command into DIR (created if
    /// missing) instead of printing collapse-trace(1).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Prints the completion script for the chosen shell.
pub fn completions(args: &CompletionsArgs) -> anyhow::Result<()> {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), NAME, &mut out);
    write_stdout(&out)
}

/// Prints collapse-trace(1), or writes every page into `--dir`.
pub fn man(args: &ManArgs) -> anyhow::Result<()> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    match &args.dir {
        None => write_stdout(&main_page(&cmd)?),
        Some(dir) => write_pages(&cmd, dir),
    }
}

/// collapse-trace(1): clap's page plus the exit status and where the rest is documented.
fn main_page(cmd: &clap::Command) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    out.extend_from_slice(EXIT_STATUS.as_bytes());
    let pages: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| format!("{}\\-{}(1)", NAME.replace('-', "\\-"), s.get_name()))
        .collect();
    writeln!(
        out,
        ".SH \"SEE ALSO\"\n{}; the README and docs/ of the source tree.",
        pages.join(", ")
    )?;
    Ok(out)
}

/// Writes collapse-trace.1 and collapse-trace-COMMAND.1 for every command into `dir`.
fn write_pages(cmd: &clap::Command, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let write = |name: String, page: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))
    };
    write(format!("{NAME}.1"), &main_page(cmd)?)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = clap_mangen::Man::new(sub.clone());
        let mut page = Vec::new();
        man.render(&mut page)?;
        write(man.get_filename(), &page)?;
    }
    Ok(())
}

/// Writes `bytes` to stdout in one go.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")
}

/// The EXIT STATUS section: the codes of `crate::cli::main`, as the README lists them.
const EXIT_STATUS: &str = r#".SH "EXIT STATUS"
.TP
0
Success; for stat and record also when stopped by Ctrl\-C or SIGTERM; for report also for a capture that was cut short (with a warning).
.TP
1
Any other failure; the message says what.
.TP
2
Bad command line or value, said before anything is loaded; or top without a terminal.
.TP
3
Not enough privilege: needs root, or CAP_BPF and CAP_PERFMON (plus CAP_DAC_READ_SEARCH to read tracefs, CAP_SYS_ADMIN to mount it).
.TP
4
The kernel cannot be traced: tracefs missing and not mountable, or no collapse tracepoint.
.TP
5
The kernel's verifier rejected a program.
.TP
130, 143
provoke stopped by SIGINT or SIGTERM; the tally of the tries made is still printed.
"#;
