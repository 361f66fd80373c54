//! Developer tasks for collapse-trace: `cargo xtask setup | build | test | run | install | bench`.

mod bench;
mod env;
mod install;
mod matrix;
mod setup;

use std::{ffi::OsString, os::unix::process::CommandExt as _, path::Path};

use anyhow::{Context as _, Result, bail, ensure};
use clap::{Parser, Subcommand};

use crate::env::{Env, command_line, run};

/// Developer tasks for collapse-trace.
#[derive(Debug, Parser)]
#[command(bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install what building the eBPF program needs.
    ///
    /// Checks the nightly toolchain, its rust-src component and a bpf-linker built against the
    /// nightly's own LLVM, and installs or repairs what is missing. Idempotent; fast when
    /// everything is already in place.
    Setup,
    /// Run `setup`, then build collapse-trace (which builds the eBPF program too).
    Build {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Run `setup`, then format check, clippy, release build, all tests and the kernel matrix.
    ///
    /// The tests include the ones that need root and a real kernel; the matrix (`matrix` with
    /// its defaults: Debian 6.1 and 6.12 under QEMU, and this host's kernel) runs the release
    /// binary on each. Stops at the first failure.
    Test {
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(last = true)]
        args: Vec<OsString>,
    },
    /// Run `setup`, build collapse-trace in release mode and run it.
    ///
    /// Runs it via sudo when not root. Exits with collapse-trace's exit code.
    Run {
        /// Arguments for collapse-trace (after `--`).
        #[arg(last = true)]
        args: Vec<OsString>,
    },
    /// Benchmark collapse-trace against bpftrace on real MADV_COLLAPSE storms (needs root).
    ///
    /// The traced workload's overhead first (time per call against no tracer and bpftrace,
    /// and the empty program of each attach kind), then kernel ns/event, start-up to
    /// attached, CPU and RSS of serve and stat, drops at rising rates. Installs bpftrace,
    /// bpftool and linux-perf if missing; turns kernel.bpf_stats_enabled off for the overhead
    /// and on for the rest, and restores it. Prints a table and writes JSON to target/bench/.
    /// About 10-15 minutes; `--quick` about one. Not a test: not run by `test` or CI.
    Bench(bench::BenchArgs),
    /// Run `setup`, build the release binary and install it with its manual pages, shell
    /// completions, systemd unit and documentation.
    ///
    /// Into PREFIX/bin, PREFIX/share/man/man1, PREFIX/share/{bash-completion/completions,
    /// zsh/site-functions, fish/vendor_completions.d}, PREFIX/lib/systemd/system and
    /// PREFIX/share/doc/collapse-trace. Enables and starts nothing.
    Install(install::InstallArgs),
    /// Check the release binary on the kernels users run: Debian's 6.1 and 6.12 under QEMU
    /// (virtme-ng, the host's / shared) and this machine's own kernel (needs root).
    ///
    /// Installs what it needs when missing (kernel packages, qemu-system-x86 from
    /// bookworm-backports, busybox-static, virtme-ng in a venv), then per kernel: doctor,
    /// `provoke all` under stat + record + a private ftrace instance, report, serve +
    /// promtool. One summary line per kernel and check; fails if any check fails.
    Matrix(matrix::MatrixArgs),
}

fn main() -> Result<()> {
    let env = Env::new()?;
    match Cli::parse().command {
        Command::Setup => setup::setup(&env),
        Command::Build { release } => {
            setup::setup(&env)?;
            let mut cmd = env.cargo();
            cmd.args(["build", "-p", "collapse-trace"]);
            if release {
                cmd.arg("--release");
            }
            run(&mut cmd)
        }
        Command::Test { args } => {
            setup::setup(&env)?;
            setup::ensure_debian_packages(&env, setup::TEST_PACKAGES)?;
            setup::ensure_python_tools(&env)?;
            setup::ensure_node_tools(&env)?;
            let mut totals = test(&env, &args)?;
            println!("\n==> matrix: `cargo xtask matrix` (the release binary on each kernel)");
            let outcome = matrix::matrix(&env, matrix::MatrixArgs::from_env());
            let (passed, failed) = matrix::last_counts();
            totals.passed += passed;
            totals.failed += failed;
            println!(
                "\ntests: {} passed, {} failed, {} skipped (cargo test and the kernel matrix)",
                totals.passed, totals.failed, totals.ignored
            );
            outcome.context("test step `matrix` failed: see the FAIL lines above")
        }
        Command::Run { args } => {
            setup::setup(&env)?;
            run_collapse_trace(&env, &args)
        }
        Command::Bench(args) => bench::bench(&env, args),
        Command::Install(args) => {
            setup::setup(&env)?;
            install::install(&env, &args)
        }
        Command::Matrix(args) => matrix::matrix(&env, args),
    }
}

/// The `test` steps, in order: a step's name, its cargo arguments and what to do if it fails.
const TEST_STEPS: [(&str, &[&str], &str); 5] = [
    (
        "format",
        &["fmt", "--all", "--", "--check"],
        "run `cargo fmt --all` to fix the formatting",
    ),
    (
        "clippy",
        &[
            "clippy",
            "--workspace",
            "--exclude",
            "collapse-trace-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        "fix the warnings above",
    ),
    (
        "clippy (eBPF)",
        &[
            "+nightly",
            "clippy",
            "-p",
            "collapse-trace-ebpf",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--",
            "-D",
            "warnings",
        ],
        "fix the warnings above (the kernel programs)",
    ),
    (
        "build",
        &["build", "--release", "-p", "collapse-trace"],
        "fix the build errors above",
    ),
    (
        "test",
        &[
            "test",
            "--release",
            "--workspace",
            "--exclude",
            "collapse-trace-ebpf",
        ],
        "see the failing tests above",
    ),
];

/// Runs the [`TEST_STEPS`], passing `extra` to the last one (`cargo test`); returns cargo
/// test's totals.
fn test(env: &Env, extra: &[OsString]) -> Result<TestTotals> {
    let mut totals = TestTotals::default();
    let count = TEST_STEPS.len();
    for (i, (name, args, hint)) in TEST_STEPS.into_iter().enumerate() {
        let mut cmd = env.cargo();
        cmd.args(args);
        if i + 1 == count {
            cmd.args(extra);
        }
        println!("\n==> [{}/{count}] {name}: {}", i + 1, command_line(&cmd));
        if i + 1 == count {
            totals = run_tests(&mut cmd)
                .with_context(|| format!("test step `{name}` failed: {hint}"))?;
        } else {
            run(&mut cmd).with_context(|| format!("test step `{name}` failed: {hint}"))?;
        }
    }
    println!("\n==> all {count} steps passed");
    Ok(totals)
}

/// Runs `cargo test`, passing its output through, and ends with one line that sums up every
/// test binary's `test result:` line: `tests: N passed, M failed, K skipped`.
fn run_tests(cmd: &mut std::process::Command) -> Result<TestTotals> {
    use std::io::{BufRead as _, BufReader};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to start `{}`", command_line(cmd)))?;
    let mut totals = TestTotals::default();
    let stdout = child.stdout.take().context("no stdout pipe")?;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test's output")?;
        println!("{line}");
        totals.add_line(&line);
    }
    let status = child.wait().context("waiting for cargo test")?;
    println!(
        "\ntests: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    ensure!(
        status.success(),
        "`{}` failed ({status})",
        command_line(cmd)
    );
    ensure!(totals.passed > 0, "cargo test ran no test");
    Ok(totals)
}

/// Sums of cargo test's `test result:` lines.
#[derive(Debug, Default, PartialEq, Eq)]
struct TestTotals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl TestTotals {
    /// Adds `test result: ok. 9 passed; 0 failed; 1 ignored; ...`; other lines are ignored.
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

/// Builds collapse-trace in release mode and replaces this process with it, so that its exit code
/// and signals (Ctrl-C) are its own. Uses sudo when not root.
fn run_collapse_trace(env: &Env, args: &[OsString]) -> Result<()> {
    run(env
        .cargo()
        .args(["build", "--release", "-p", "collapse-trace"]))?;
    let binary = env.root.join("target/release/collapse-trace");
    let mut cmd = if is_root()? {
        std::process::Command::new(&binary)
    } else if let Some(sudo) = env.which("sudo") {
        let mut cmd = std::process::Command::new(sudo);
        cmd.arg("--").arg(&binary);
        cmd
    } else {
        bail!(
            "collapse-trace needs root (BPF) and sudo is not installed: run `{}` as root",
            binary.display()
        );
    };
    cmd.args(args);
    // `exec` only returns if it failed.
    let err = cmd.exec();
    Err(err).with_context(|| format!("failed to run `{}`", command_line(&cmd)))
}

/// Whether this process runs with effective user id 0 (from `/proc/self/status`).
pub(crate) fn is_root() -> Result<bool> {
    let status = Path::new("/proc/self/status");
    let text = std::fs::read_to_string(status)
        .with_context(|| format!("failed to read {} (is /proc mounted?)", status.display()))?;
    // "Uid:\t<real>\t<effective>\t<saved>\t<fs>"
    let euid = text
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .with_context(|| format!("no effective uid in {}", status.display()))?;
    Ok(euid == "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_test_result_lines() {
        let mut t = TestTotals::default();
        t.add_line("test result: ok. 39 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 3.07s");
        t.add_line(
            "test result: FAILED. 8 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out",
        );
        t.add_line("test foo ... ok");
        t.add_line("running 3 tests");
        assert_eq!(
            t,
            TestTotals {
                passed: 47,
                failed: 1,
                ignored: 1
            }
        );
    }
}
