//! Runs the provoke scenarios once and prints the tally as JSON (as root).
//!
//! `cargo run -p collapse-trace --example provoke_smoke -- [SCENARIO] [ITERATIONS]`

use clap::ValueEnum;
use collapse_trace::provoke;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let scenario = match args.next() {
        Some(s) => provoke::Scenario::from_str(&s, true).map_err(anyhow::Error::msg)?,
        None => provoke::Scenario::All,
    };
    let iterations = args.next().map(|s| s.parse()).transpose()?.unwrap_or(0);
    let start = std::time::Instant::now();
    let tally = provoke::run(&provoke::Options {
        scenario,
        iterations,
        dir: None,
        ..Default::default()
    })?;
    let secs = start.elapsed().as_secs_f64();
    println!("{}", serde_json::to_string_pretty(&tally)?);
    eprintln!("took {secs:.3} s");
    Ok(())
}
