//! `collapse-trace provoke`: make the kernel produce each case for real.

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
    /// storm: the range to hammer (collapsed: success; empty: EINVAL).
    #[arg(long, value_enum, default_value = "collapsed")]
    range: StormRange,
    /// storm: stop after this long (e.g. `5s`); `-n` still bounds the calls when given.
    #[arg(long, short = 'd', value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// storm: MADV_COLLAPSE calls per second (default: as fast as possible).
    #[arg(long)]
    rate: Option<u64>,
}

/// Runs `provoke`.
pub fn run(args: ProvokeArgs) -> Result<()> {
    let scenario = args.scenario.or(args.scenario_pos).unwrap_or(Scenario::All);
    let tally = provoke::run(&Options {
        scenario,
        iterations: args.iterations,
        dir: None,
        storm_range: args.range,
        duration: args.duration,
        rate: args.rate,
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
            let rate = s.loop_us.filter(|&us| us > 0).map_or(String::new(), |us| {
                format!(" ({:.0} calls/s)", s.calls as f64 / (us as f64 / 1e6))
            });
            println!(
                "  {:<12} {} calls: ok {}{}{}{rate}",
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
