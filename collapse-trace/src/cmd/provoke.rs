//! `collapse-trace provoke`: make the kernel produce each case for real.

use anyhow::Result;
use clap::Args;

use crate::provoke::{self, Options, Scenario};

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
}

fn parse_comm(s: &str) -> Result<std::ffi::CString, String> {
    if s.is_empty() || s.len() > 15 {
        return Err(format!("{s:?}: a comm is 1 to 15 bytes"));
    }
    std::ffi::CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"))
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
    let tally = provoke::run(&Options {
        scenario,
        iterations: args.iterations,
        dir: None,
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&tally)?);
    } else {
        println!(
            "provoke (pid {}): what each MADV_COLLAPSE returned",
            tally.pid
        );
        for s in &tally.scenarios {
            if let Some(why) = &s.skipped {
                println!("  {:<12} skipped: {why}", s.scenario);
                continue;
            }
            let errs: Vec<String> = s.errnos.iter().map(|(k, v)| format!("{k} {v}")).collect();
            println!(
                "  {:<12} {} calls: ok {}{}{}",
                s.scenario,
                s.calls,
                s.ok,
                if errs.is_empty() { "" } else { ", " },
                errs.join(", ")
            );
        }
    }
    Ok(())
}
