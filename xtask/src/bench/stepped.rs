//! A stepped storm (`provoke storm --steps`): one process whose MADV_COLLAPSE calls come in
//! steps asked for on its stdin, so that the overhead part attaches each tracer between two
//! steps of the same process. A new storm process per configuration moved the no-tracer time
//! per call by a third between processes here (465-847 ns on the collapsed range, with
//! nothing attached), more than the effects being measured; within one process its steps
//! agree to a few percent.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc::{Receiver, RecvTimeoutError, channel},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

use super::{Range, parse, procs::check_interrupted};

/// One step's times, as the storm prints them.
#[derive(Debug, Clone, Deserialize)]
pub struct Step {
    pub calls: u64,
    pub cpu_ns: u64,
    pub wall_ns: u64,
    /// The storm thread's CPU time per call in each of the step's sub-batches.
    pub part_cpu_ns_per_call: Vec<f64>,
    /// The CPU time of the storm's calibration loop after each sub-batch.
    pub part_calibration_ns: Vec<f64>,
}

impl Step {
    /// The step's CPU time per call: the median of its sub-batches (a sub-batch the host
    /// interrupted for long does not move it).
    pub fn ns_per_call(&self) -> f64 {
        median(&self.part_cpu_ns_per_call).unwrap_or(self.cpu_ns as f64 / self.calls.max(1) as f64)
    }
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// A running stepped storm: `SCHED_FIFO` on the last CPU, killed on drop.
pub struct Stepped {
    pub range: Range,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

/// How long one step may take (a loaded machine stretches a ~1 s step a lot).
const STEP_BOUND: Duration = Duration::from_secs(300);

impl Stepped {
    /// Starts the storm on `range` and waits until its range is ready.
    pub fn spawn(mut cmd: Command, range: Range) -> Result<Stepped> {
        cmd.args([
            "provoke",
            "storm",
            "--steps",
            "--json",
            "--range",
            range.arg(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        let mut child = cmd.spawn().context("starting the stepped storm")?;
        let stdin = child.stdin.take();
        let out = child.stdout.take().context("the storm's stdout")?;
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(out);
            loop {
                let mut line = String::new();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let mut s = Stepped {
            range,
            child,
            stdin,
            lines,
        };
        let first = s.line(Duration::from_secs(60))?;
        if !first.contains("\"ready\"") {
            bail!("the stepped storm did not start: it printed {first:?}");
        }
        Ok(s)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line of the storm's stdout, Ctrl-C aware.
    fn line(&mut self, bound: Duration) -> Result<String> {
        let end = std::time::Instant::now() + bound;
        loop {
            check_interrupted()?;
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(l) => return Ok(l),
                Err(RecvTimeoutError::Timeout) if std::time::Instant::now() < end => {}
                Err(RecvTimeoutError::Timeout) => {
                    bail!("the stepped storm did not answer within {bound:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait()?;
                    bail!("the stepped storm ended ({status}) before answering");
                }
            }
        }
    }

    /// Makes `calls` calls and returns their times.
    pub fn step(&mut self, calls: u64) -> Result<Step> {
        let stdin = self.stdin.as_mut().context("the storm's stdin is closed")?;
        writeln!(stdin, "{calls}").context("asking the storm for a step")?;
        stdin.flush()?;
        let line = self.line(STEP_BOUND)?;
        serde_json::from_str(&line).with_context(|| format!("the storm's step line {line:?}"))
    }

    /// Ends the storm and returns its tally (every call of every step).
    pub fn finish(mut self) -> Result<parse::StormTally> {
        drop(self.stdin.take());
        let mut rest = String::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(30)) {
            rest.push_str(&l);
        }
        let status = self.child.wait()?;
        if !status.success() {
            bail!("the stepped storm exited with {status}");
        }
        parse::storm_tally(&rest)
    }
}

impl Drop for Stepped {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_is_the_median_of_its_parts() {
        let s = |parts: Vec<f64>| Step {
            calls: 100,
            cpu_ns: 100_000,
            wall_ns: 0,
            part_cpu_ns_per_call: parts,
            part_calibration_ns: vec![1.0, 3.0, 2.0],
        };
        assert_eq!(s(vec![500.0, 2000.0, 510.0]).ns_per_call(), 510.0);
        assert_eq!(s(vec![500.0, 520.0]).ns_per_call(), 510.0);
        assert_eq!(s(vec![]).ns_per_call(), 1000.0);
    }
}
