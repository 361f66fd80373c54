//! Processes the bench starts, and the system setting it changes: each is undone on drop, so a
//! failure, a panic or Ctrl-C (which sets [`interrupted`] and makes the next wait fail) leaves
//! no tool attached, no storm running and `kernel.bpf_stats_enabled` as it was.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

static INTERRUPTED: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();

/// Installs SIGINT/SIGTERM handlers that only set a flag; every wait below checks it.
pub fn install_signal_flag() -> Result<()> {
    let flag = INTERRUPTED.get_or_init(|| Arc::new(AtomicBool::new(false)));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone()).context("installing a signal handler")?;
    }
    Ok(())
}

/// Fails once SIGINT or SIGTERM arrived (the caller's `?` then unwinds through the guards).
pub fn check_interrupted() -> Result<()> {
    if INTERRUPTED.get().is_some_and(|f| f.load(Ordering::Relaxed)) {
        bail!("interrupted: stopped the tools and the storm, restored the settings");
    }
    Ok(())
}

/// Sleeps `d` in short steps, failing early on Ctrl-C.
pub fn sleep(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        check_interrupted()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

/// A sysctl set for the run and restored on drop.
pub struct SysctlGuard {
    path: &'static str,
    old: String,
}

impl SysctlGuard {
    pub fn set(path: &'static str, value: &str) -> Result<Self> {
        let old = std::fs::read_to_string(path)
            .with_context(|| format!("reading {path}"))?
            .trim()
            .to_string();
        std::fs::write(path, value).with_context(|| format!("writing {value} to {path}"))?;
        println!("{path}: {old} -> {value} for the run (restored afterwards)");
        Ok(SysctlGuard { path, old })
    }
}

impl Drop for SysctlGuard {
    fn drop(&mut self) {
        match std::fs::write(self.path, &self.old) {
            Ok(()) => println!("{}: restored to {}", self.path, self.old),
            Err(e) => eprintln!(
                "WARNING: could not restore {} to {}: {e}; do it by hand",
                self.path, self.old
            ),
        }
    }
}

/// A child process with captured output; stopped (SIGINT, then SIGKILL) on drop.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub spawned: Instant,
    stdout: Option<thread::JoinHandle<String>>,
    /// stderr lines with the time each arrived.
    stderr: Arc<Mutex<Vec<(Instant, String)>>>,
    stderr_thread: Option<thread::JoinHandle<()>>,
    /// The held shell's stdin (see [`Proc::spawn_gated`]).
    gate: Option<std::process::ChildStdin>,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr captured.
    pub fn spawn(name: &str, cmd: Command) -> Result<Proc> {
        Self::spawn_inner(name, cmd, false)
    }

    /// Starts `cmd`, but held: a shell reads one line from its stdin, then `exec`s `cmd` (same
    /// pid), so the pid is known (and can be handed to tracers as a filter) before the program
    /// makes any event. [`Proc::release`] writes that line; dropping the Proc unreleased
    /// closes stdin and the shell exits without running `cmd`.
    pub fn spawn_gated(name: &str, cmd: Command) -> Result<Proc> {
        let mut sh = Command::new("/bin/sh");
        sh.arg("-c")
            .arg("read -r _go || exit 125; exec \"$@\"")
            .arg("gate")
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => sh.env(k, v),
                None => sh.env_remove(k),
            };
        }
        Self::spawn_inner(name, sh, true)
    }

    fn spawn_inner(name: &str, mut cmd: Command, gated: bool) -> Result<Proc> {
        cmd.stdin(if gated { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawned = Instant::now();
        let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        let gate = child.stdin.take();
        let mut out = child.stdout.take().context("stdout")?;
        let stdout = thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let err = child.stderr.take().context("stderr")?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let stderr_thread = thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push((Instant::now(), line));
            }
        });
        Ok(Proc {
            name: name.to_string(),
            child: Some(child),
            spawned,
            stdout: Some(stdout),
            stderr,
            stderr_thread: Some(stderr_thread),
            gate,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Lets a gated child exec.
    pub fn release(&mut self) -> Result<()> {
        use std::io::Write as _;
        let mut gate = self.gate.take().context("not a gated process")?;
        gate.write_all(b"go\n")
            .with_context(|| format!("releasing {}", self.name))
    }

    /// When a stderr line containing `needle` arrived, if it did.
    pub fn stderr_line_at(&self, needle: &str) -> Option<Instant> {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .find(|(_, l)| l.contains(needle))
            .map(|(t, _)| *t)
    }

    pub fn stderr_text(&self) -> String {
        let lines = self.stderr.lock().unwrap();
        lines
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Fails if the process has exited (with its stderr).
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(c) = self.child.as_mut()
            && let Some(status) = c.try_wait()?
        {
            thread::sleep(Duration::from_millis(50));
            bail!(
                "{} exited early ({status}):\n{}",
                self.name,
                self.stderr_text()
            );
        }
        Ok(())
    }

    /// Waits until a stderr line contains `needle`; returns when it arrived.
    pub fn wait_stderr(&mut self, needle: &str, timeout: Duration) -> Result<Instant> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(t) = self.stderr_line_at(needle) {
                return Ok(t);
            }
            self.check_running()?;
            check_interrupted()?;
            if Instant::now() > end {
                bail!(
                    "{} did not print {needle:?} within {timeout:?}:\n{}",
                    self.name,
                    self.stderr_text()
                );
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Sends `sig`.
    pub fn signal(&self, sig: i32) {
        if let Some(c) = self.child.as_ref() {
            // SAFETY: kill on our own child's pid, which it keeps until we reap it.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// Waits up to `timeout` for the exit (Ctrl-C aware); `None` if it is still running.
    fn wait_exit(&mut self, timeout: Duration) -> Result<Option<std::process::ExitStatus>> {
        let child = self.child.as_mut().context("already waited")?;
        let end = Instant::now() + timeout;
        loop {
            if let Some(s) = child.try_wait()? {
                return Ok(Some(s));
            }
            check_interrupted()?;
            if Instant::now() > end {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stdout once the child has exited; fails unless it exited 0.
    fn finish(mut self, status: std::process::ExitStatus) -> Result<String> {
        self.child = None;
        let out = self
            .stdout
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        if let Some(h) = self.stderr_thread.take() {
            let _ = h.join();
        }
        if !status.success() {
            bail!("{} failed ({status}):\n{}", self.name, self.stderr_text());
        }
        Ok(out)
    }

    /// Waits for the exit (Ctrl-C aware, bounded) and returns stdout; fails unless it exited 0.
    pub fn wait(mut self, timeout: Duration) -> Result<String> {
        match self.wait_exit(timeout)? {
            Some(status) => self.finish(status),
            None => {
                if let Some(mut c) = self.child.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                bail!("{} did not finish within {timeout:?}", self.name)
            }
        }
    }

    /// SIGINT, then waits and returns stdout. bpftrace prints its maps and detaches, which a
    /// loaded machine can stretch past a minute (every detach waits for RCU grace periods):
    /// after [`STOP_BOUND`] the bound is stretched by the load ([`stretched_bound`]), the wait
    /// is reported on the spot and kept in [`slow_stops`], and only a tool that outlasts the
    /// stretched bound fails the run.
    pub fn stop(mut self) -> Result<String> {
        self.signal(libc::SIGINT);
        if let Some(status) = self.wait_exit(STOP_BOUND)? {
            return self.finish(status);
        }
        let (load, vcpus) = load_average();
        let more = stretched_bound(load, vcpus);
        println!(
            "  {} still stopping after {} s (load average {load:.1} on {vcpus} vCPUs): waiting up to {} s more",
            self.name,
            STOP_BOUND.as_secs(),
            more.as_secs()
        );
        let t = Instant::now();
        let status = self.wait_exit(more)?;
        let slow = SlowStop {
            tool: self.name.clone(),
            seconds: STOP_BOUND.as_secs_f64() + t.elapsed().as_secs_f64(),
            load_average: load,
            vcpus,
            bound_s: (STOP_BOUND + more).as_secs_f64(),
            finished: status.is_some(),
        };
        println!(
            "  {} {} after {:.0} s",
            slow.tool,
            if slow.finished {
                "stopped"
            } else {
                "did NOT stop"
            },
            slow.seconds
        );
        SLOW_STOPS.lock().unwrap().push(slow);
        match status {
            Some(status) => self.finish(status),
            None => bail!(
                "{} did not stop within {} s, stretched for a load average of {load:.1} on {vcpus} vCPUs",
                self.name,
                (STOP_BOUND + more).as_secs()
            ),
        }
    }
}

/// How long [`Proc::stop`] waits before it stretches the bound.
pub const STOP_BOUND: Duration = Duration::from_secs(60);

/// The extra time a tool slow to stop gets: the first bound again per unit of load per vCPU,
/// at least twice it, at most 10 minutes.
pub fn stretched_bound(load_average: f64, vcpus: usize) -> Duration {
    let per_cpu = load_average / vcpus.max(1) as f64;
    let factor = per_cpu.clamp(2.0, 10.0);
    Duration::from_secs_f64(STOP_BOUND.as_secs_f64() * factor).min(Duration::from_secs(600))
}

/// The 1-minute load average and the vCPUs.
pub fn load_average() -> (f64, usize) {
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let vcpus = thread::available_parallelism().map_or(1, |n| n.get());
    (load, vcpus)
}

/// A tool that took longer than [`STOP_BOUND`] to stop.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SlowStop {
    pub tool: String,
    pub seconds: f64,
    pub load_average: f64,
    pub vcpus: usize,
    /// The stretched bound it had.
    pub bound_s: f64,
    pub finished: bool,
}

static SLOW_STOPS: Mutex<Vec<SlowStop>> = Mutex::new(Vec::new());

/// Every slow stop of the run so far, for the report.
pub fn slow_stops() -> Vec<SlowStop> {
    SLOW_STOPS.lock().unwrap().clone()
}

impl Drop for Proc {
    fn drop(&mut self) {
        // An unreleased gated shell sees EOF and exits without running its command.
        drop(self.gate.take());
        if let Some(mut c) = self.child.take() {
            if matches!(c.try_wait(), Ok(None)) {
                // SAFETY: kill on our own unreaped child.
                unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
                let end = Instant::now() + Duration::from_secs(3);
                while matches!(c.try_wait(), Ok(None)) && Instant::now() < end {
                    thread::sleep(Duration::from_millis(10));
                }
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_stop_gets_more_time_on_a_loaded_machine() {
        // Idle or lightly loaded: twice the first bound.
        assert_eq!(stretched_bound(0.3, 2), Duration::from_secs(120));
        // Load 8 on 2 vCPUs: four times.
        assert_eq!(stretched_bound(8.0, 2), Duration::from_secs(240));
        // Never more than 10 minutes, and no division by zero vCPUs.
        assert_eq!(stretched_bound(100.0, 1), Duration::from_secs(600));
        assert_eq!(stretched_bound(1.0, 0), Duration::from_secs(120));
    }
}
