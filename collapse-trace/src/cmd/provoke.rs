//! `collapse-trace provoke`: make the kernel produce each case for real.
//!
//! SIGINT or SIGTERM stops the workload after the current try: the tally of the tries made is
//! printed as usual (with `"interrupted"` set in JSON) and the exit code is 128 + the signal
//! number (130, 143), so a script can tell a whole run from a cut one. The private tmpfs is
//! detached right after mounting, so nothing is left behind either way.

use std::time::Duration;

use anyhow::Result;
use clap::Args;

use crate::provoke::{self, Options, Scenario, StormRange};

/// Options of `provoke`.
#[derive(Debug, Args)]
pub struct ProvokeArgs {
    /// Which case to provoke.
    #[arg(value_enum, default_value = "all")]
    scenario_pos: Option<Scenario>,
    /// Same as the positional argument.
    #[arg(long, short = 's', value_enum, conflicts_with = "scenario_pos")]
    scenario: Option<Scenario>,
    /// Tries per scenario (0: each scenario's default).
    #[arg(long, short = 'n', default_value_t = 0)]
    iterations: u32,
    /// Print the tally as JSON.
    #[arg(long)]
    json: bool,
    /// Run under this task name (comm, at most 15 bytes), so that a tracer can filter the
    /// workload exactly with `--comm NAME`.
    #[arg(long, value_parser = parse_comm)]
    comm: Option<std::ffi::CString>,
    /// storm: the range to hammer (collapsed: success; empty: EINVAL).
    #[arg(long, value_enum, default_value = "collapsed")]
    range: StormRange,
    /// khugepaged: the file's name (default: a 62-byte name).
    #[arg(long)]
    file_name: Option<String>,
    /// storm: stop after this long (e.g. `5s`); `-n` still bounds the calls when given.
    /// khugepaged: how long to wait for the collapse (default 90 s).
    #[arg(long, short = 'd', value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// storm: MADV_COLLAPSE calls per second (default: as fast as possible).
    #[arg(long)]
    rate: Option<u64>,
    /// storm: make calls in steps asked for on stdin, one number of calls per line, and
    /// print each step's times as a JSON line (benchmarks attach tracers between steps).
    #[arg(long, hide = true)]
    steps: bool,
    /// Keep the last try's mapping alive this long after its MADV_COLLAPSE (for `explain`
    /// tests; collapse, uffd-holes and anon).
    #[arg(long, hide = true, value_parser = humantime::parse_duration)]
    hold: Option<Duration>,
}

fn parse_comm(s: &str) -> Result<std::ffi::CString, String> {
    if s.is_empty() || s.len() > 15 {
        return Err(format!("{s:?}: a comm is 1 to 15 bytes"));
    }
    std::ffi::CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"))
}

/// `provoke` was stopped by a signal after printing its (partial, exact) tally.
#[derive(Debug, thiserror::Error)]
#[error("provoke stopped by {name} after {calls} MADV_COLLAPSE calls; the tally above covers them")]
pub struct Interrupted {
    /// The signal number.
    pub signal: i32,
    /// Its name.
    pub name: String,
    /// Calls made before stopping.
    pub calls: u64,
}

impl Interrupted {
    /// The documented exit code: 128 + the signal number.
    pub fn exit_code(&self) -> u8 {
        u8::try_from(128 + self.signal).unwrap_or(1)
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    provoke::request_stop(sig);
}

/// Catches SIGINT and SIGTERM: each asks the workload to stop after the current try.
fn catch_signals() -> Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with a handler that only does an atomic store (async-signal
        // safe); SA_RESTART so that interrupted system calls other than MADV_COLLAPSE go on.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .map_err(|e| anyhow::anyhow!("installing the handler for signal {sig}: {e}"));
        }
    }
    Ok(())
}

/// Runs `provoke`.
pub fn run(args: ProvokeArgs) -> Result<()> {
    if let Some(comm) = &args.comm {
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
        if unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr()) } != 0 {
            anyhow::bail!("prctl(PR_SET_NAME): {}", std::io::Error::last_os_error());
        }
    }
    let scenario = args.scenario.or(args.scenario_pos).unwrap_or(Scenario::All);
    catch_signals()?;
    if let Some(d) = args.hold {
        provoke::set_hold(d);
    }
    let tally = provoke::run(&Options {
        scenario,
        iterations: args.iterations,
        dir: None,
        storm_range: args.range,
        duration: args.duration,
        rate: args.rate,
        file_name: args.file_name.clone(),
        storm_steps: args.steps,
    })?;
    match print_tally(&tally, args.json) {
        // A reader that went away (`| head`) is a normal end; the tally was made whole.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        r => anyhow::Context::context(r, "writing the tally to stdout")?,
    }
    if let (Some(name), Some(signal)) = (tally.interrupted.clone(), provoke::stop_requested()) {
        return Err(Interrupted {
            signal,
            name,
            calls: tally.scenarios.iter().map(|s| s.calls).sum(),
        }
        .into());
    }
    Ok(())
}

/// The tally on stdout, as text or JSON.
fn print_tally(tally: &provoke::Tally, json: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(tally)?)?;
    } else {
        writeln!(
            out,
            "provoke (pid {}): what each MADV_COLLAPSE returned",
            tally.pid
        )?;
        for s in &tally.scenarios {
            if let Some(why) = &s.skipped {
                writeln!(out, "  {:<12} skipped: {why}", s.scenario)?;
                continue;
            }
            let errs: Vec<String> = s.errnos.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let rate = s.loop_us.filter(|&us| us > 0).map_or(String::new(), |us| {
                format!(" ({:.0} calls/s)", s.calls as f64 / (us as f64 / 1e6))
            });
            writeln!(
                out,
                "  {:<12} {} calls: ok {}{}{}{rate}",
                s.scenario,
                s.calls,
                s.ok,
                if errs.is_empty() { "" } else { ", " },
                errs.join(", ")
            )?;
            if let Some(what) = &s.unexpected {
                writeln!(out, "    unexpected on this kernel: {what}")?;
            }
        }
        if let Some(sig) = &tally.interrupted {
            writeln!(out, "  (stopped early by {sig})")?;
        }
    }
    out.flush()
}
