//! Workload scenarios that make the kernel produce each collapse result for real.
//!
//! Everything happens on a private tmpfs mounted with `huge=advise` (so the global THP sysfs
//! settings are never touched), and every MADV_COLLAPSE issued is counted in the returned
//! [`Tally`], so a tracer's view can be compared with it call for call.

mod khugepaged;
mod race;
mod scenarios;
mod storm;
mod tmpfs;

pub(crate) use tmpfs::NeedsPrivilege;
mod uffd;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use anyhow::Result;

use crate::model::results::errno_name;

/// A workload that provokes one kind of collapse outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Fully populated, aligned 2 MiB tmpfs mappings: MADV_COLLAPSE succeeds.
    Collapse,
    /// 7 of 8 pages present and a userfaultfd armed in MISSING mode: EBUSY (`exceed_none_pte`).
    UffdHoles,
    /// 1 page in 4 present while a second thread faults a hole in mid-collapse: some EAGAIN
    /// (`page_filled`).
    PageFilled,
    /// Fully touched, aligned 2 MiB private anonymous mappings: the anonymous path succeeds.
    Anon,
    /// `collapse`, `uffd-holes`, `page-filled` and `anon` in turn.
    #[default]
    All,
    /// Not part of `all`: an 8 MiB tmpfs file (a long name, `--file-name`) touched and
    /// MADV_HUGEPAGE'd, left for the khugepaged kernel thread to collapse; waits up to
    /// `--duration` (default 90 s) for it. One MADV_COLLAPSE on an anonymous range first.
    Khugepaged,
    /// A benchmark load, not part of `all`: MADV_COLLAPSE in a loop on one range
    /// (`--range collapsed`: success, ~800k events/s; `--range empty`: EINVAL, ~200k events/s),
    /// bounded by `-n` calls and/or `--duration`, optionally paced by `--rate` calls/s.
    Storm,
}

/// The range a [`Scenario::Storm`] hammers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StormRange {
    /// Already collapsed: every call returns 0 (`pte_mapped_hugepage`, scan_file only).
    #[default]
    Collapsed,
    /// A 2 MiB mapping of an empty file: every call returns EINVAL (`truncated`, both
    /// tracepoints).
    Empty,
}

impl Scenario {
    /// The single scenarios this one stands for, in the order they run.
    fn expand(self) -> &'static [Scenario] {
        match self {
            Scenario::Collapse => &[Scenario::Collapse],
            Scenario::UffdHoles => &[Scenario::UffdHoles],
            Scenario::PageFilled => &[Scenario::PageFilled],
            Scenario::Anon => &[Scenario::Anon],
            Scenario::All => &[
                Scenario::Collapse,
                Scenario::UffdHoles,
                Scenario::PageFilled,
                Scenario::Anon,
            ],
            Scenario::Storm => &[Scenario::Storm],
            Scenario::Khugepaged => &[Scenario::Khugepaged],
        }
    }

    /// The kebab-case name used in [`ScenarioTally::scenario`].
    fn name(self) -> &'static str {
        match self {
            Scenario::Collapse => "collapse",
            Scenario::UffdHoles => "uffd-holes",
            Scenario::PageFilled => "page-filled",
            Scenario::Anon => "anon",
            Scenario::All => "all",
            Scenario::Storm => "storm",
            Scenario::Khugepaged => "khugepaged",
        }
    }

    /// Iterations used when [`Options::iterations`] is 0.
    fn default_iterations(self) -> u32 {
        match self {
            Scenario::Collapse | Scenario::UffdHoles | Scenario::Anon => 20,
            // Measured here: 400 tries take ~0.3 s and give ~40% `page_filled` on an idle machine,
            // still ~10-25% with the CPUs busy.
            Scenario::PageFilled => 400,
            // The storm has its own bounds (calls, duration, or storm::DEFAULT_CALLS).
            Scenario::All | Scenario::Storm | Scenario::Khugepaged => 0,
        }
    }
}

/// What to provoke and where.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The scenario (or `All`).
    pub scenario: Scenario,
    /// Tries per scenario; 0 = the scenario's default.
    pub iterations: u32,
    /// Where to make the temporary mount directory; default [`std::env::temp_dir`].
    pub dir: Option<PathBuf>,
    /// Storm only: which range to hammer.
    pub storm_range: StormRange,
    /// Storm only: stop after this long (also bounded by `iterations` when that is not 0).
    pub duration: Option<Duration>,
    /// Storm only: MADV_COLLAPSE calls per second (`None`: as fast as possible).
    pub rate: Option<u64>,
    /// khugepaged only: the file's name (default [`KHUGEPAGED_FILE_NAME`]).
    pub file_name: Option<String>,
    /// Storm only: calls in steps asked for on stdin (benchmarks).
    pub storm_steps: bool,
}

/// The default file name of the `khugepaged` scenario (62 bytes).
pub const KHUGEPAGED_FILE_NAME: &str = khugepaged::DEFAULT_FILE_NAME;

/// The signal that asked the workload to stop (0: none). Set from a signal handler, so only
/// an atomic store happens there; checked after every MADV_COLLAPSE.
static STOP: AtomicI32 = AtomicI32::new(0);

/// How long to keep the last try's mapping alive after its MADV_COLLAPSE (ms; 0: not at all),
/// so that a tool like `explain` can look at it.
static HOLD_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Keeps the last try's mapping (and its userfaultfd) alive for `d` after its MADV_COLLAPSE.
pub(crate) fn set_hold(d: Duration) {
    HOLD_MS.store(
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

/// After the last try (`last`): says so on stderr and waits the hold time (a signal ends it).
pub(crate) fn hold(last: bool, what: &str) {
    let ms = HOLD_MS.load(Ordering::Relaxed);
    if !last || ms == 0 {
        return;
    }
    eprintln!(
        "provoke: holding the last {what} mapping for {} ms (pid {})",
        ms,
        std::process::id()
    );
    let end = std::time::Instant::now() + Duration::from_millis(ms);
    while std::time::Instant::now() < end && stop_requested().is_none() {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asks a running [`run`] to stop after the current try (async-signal-safe: one atomic store).
pub(crate) fn request_stop(signal: i32) {
    STOP.store(signal, Ordering::Relaxed);
}

/// The signal that asked to stop, if any.
pub(crate) fn stop_requested() -> Option<i32> {
    match STOP.load(Ordering::Relaxed) {
        0 => None,
        s => Some(s),
    }
}

/// What each MADV_COLLAPSE returned, per scenario.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Tally {
    /// The process that issued the calls (the one a tracer must filter on).
    pub pid: u32,
    /// One entry per scenario run, in order.
    pub scenarios: Vec<ScenarioTally>,
    /// Set when a signal stopped the run early: the signal's name ("SIGINT", "SIGTERM"). The
    /// tally is still exact for the tries made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
}

/// Outcomes of one scenario's MADV_COLLAPSE calls.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ScenarioTally {
    /// "collapse" | "uffd-holes" | "page-filled".
    pub scenario: String,
    /// MADV_COLLAPSE calls made (`ok` plus the sum of `errnos`).
    pub calls: u64,
    /// Calls that returned 0.
    pub ok: u64,
    /// Failed calls by errno name ("EAGAIN" -> n; unknown numbers as "E<n>").
    pub errnos: BTreeMap<String, u64>,
    /// Set when the kernel cannot do this scenario: why (the calls made are still counted).
    pub skipped: Option<String>,
    /// Storm only: wall time of the call loop in microseconds (for the achieved rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loop_us: Option<u64>,
    /// Storm only: the looping thread's CPU time in the loop, in nanoseconds
    /// (`CLOCK_THREAD_CPUTIME_ID`): what the calls cost it, without the time the scheduler
    /// gave other tasks (a benchmark on a busy machine needs that).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loop_cpu_ns: Option<u64>,
    /// Set when the kernel did not do what a kernel with the seed patch ("mm/khugepaged:
    /// skip shmem with userfaultfd") does for this scenario: what happened, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unexpected: Option<String>,
}

impl ScenarioTally {
    fn new(scenario: Scenario) -> Self {
        ScenarioTally {
            scenario: scenario.name().to_string(),
            calls: 0,
            ok: 0,
            errnos: BTreeMap::new(),
            skipped: None,
            loop_us: None,
            loop_cpu_ns: None,
            unexpected: None,
        }
    }

    /// Compares the outcomes with what a kernel with the seed patch gives for `scenario` and
    /// says plainly how this kernel differed (`None`: as expected, or nothing to expect).
    fn judge(&self, scenario: Scenario) -> Option<String> {
        if self.skipped.is_some() || self.calls == 0 {
            return None;
        }
        let errnos = || {
            self.errnos
                .iter()
                .map(|(e, n)| format!("{e} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let count = |e: &str| self.errnos.get(e).copied().unwrap_or(0);
        match scenario {
            Scenario::Collapse | Scenario::Anon if self.ok < self.calls => Some(format!(
                "{} of {} calls failed ({}): a fully populated, aligned 2 MiB range collapses \
                 on a kernel with the seed patch",
                self.calls - self.ok,
                self.calls,
                errnos()
            )),
            Scenario::UffdHoles if self.ok > 0 => Some(format!(
                "this kernel filled the holes behind the userfaultfd: it predates \
                 'mm/khugepaged: skip shmem with userfaultfd' ({} of {} calls succeeded; with \
                 the patch every call returns EBUSY, result exceed_none_pte)",
                self.ok, self.calls
            )),
            Scenario::UffdHoles if count("EBUSY") < self.calls => Some(format!(
                "expected EBUSY (exceed_none_pte) from every call, got {}",
                errnos()
            )),
            Scenario::PageFilled if count("EAGAIN") == 0 => Some(format!(
                "no call failed with EAGAIN in {} tries (ok {}{}{}): on a kernel with the seed \
                 patch a hole faulted in mid-collapse rolls some back (page_filled)",
                self.calls,
                self.ok,
                if self.errnos.is_empty() { "" } else { ", " },
                errnos()
            )),
            _ => None,
        }
    }

    /// Counts one MADV_COLLAPSE outcome.
    fn record(&mut self, outcome: std::result::Result<(), i32>) {
        self.calls += 1;
        match outcome {
            Ok(()) => self.ok += 1,
            Err(errno) => *self.errnos.entry(errno_name(errno.into())).or_insert(0) += 1,
        }
    }
}

/// Runs the chosen scenario(s) on a private tmpfs and returns what every MADV_COLLAPSE gave.
///
/// Needs root (it mounts a tmpfs). The mount point is detached and removed right after
/// mounting (the tmpfs lives on through an fd until this returns), so nothing is left behind,
/// not even if the process is killed. Never changes the global THP sysfs settings.
///
/// A scenario the kernel cannot do is reported in [`ScenarioTally::skipped`], not as an error.
pub fn run(opts: &Options) -> Result<Tally> {
    let parent = opts.dir.clone().unwrap_or_else(std::env::temp_dir);
    let mount = tmpfs::TmpfsMount::new(&parent, "64m")?;
    let mut tally = Tally {
        pid: std::process::id(),
        scenarios: Vec::new(),
        interrupted: None,
    };
    for &scenario in opts.scenario.expand() {
        if stop_requested().is_some() {
            break;
        }
        let iterations = match opts.iterations {
            0 => scenario.default_iterations(),
            n => n,
        };
        let mut st = ScenarioTally::new(scenario);
        match scenario {
            Scenario::Collapse => scenarios::collapse(&mount, iterations, &mut st)?,
            Scenario::UffdHoles => scenarios::uffd_holes(&mount, iterations, &mut st)?,
            Scenario::PageFilled => race::page_filled(&mount, iterations, &mut st)?,
            Scenario::Anon => scenarios::anon(iterations, &mut st)?,
            Scenario::Storm => storm::storm(
                &mount,
                storm::Storm {
                    range: opts.storm_range,
                    calls: iterations,
                    duration: opts.duration,
                    rate: opts.rate,
                    steps: opts.storm_steps,
                },
                &mut st,
            )?,
            Scenario::Khugepaged => khugepaged::khugepaged(
                &mount,
                opts.file_name.as_deref().unwrap_or(KHUGEPAGED_FILE_NAME),
                opts.duration.unwrap_or(Duration::from_secs(90)),
                &mut st,
            )?,
            Scenario::All => unreachable!("expand() never yields All"),
        }
        st.unexpected = st.judge(scenario);
        tally.scenarios.push(st);
    }
    tally.interrupted = stop_requested().map(|s| match s {
        libc::SIGINT => "SIGINT".to_string(),
        libc::SIGTERM => "SIGTERM".to_string(),
        n => format!("signal {n}"),
    });
    drop(mount);
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// The scenarios spin on both cores and share one tmpfs budget: run them one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn require_root() {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(euid, 0, "provoke tests mount a tmpfs and must run as root");
    }

    fn run_one(scenario: Scenario, iterations: u32, dir: Option<PathBuf>) -> ScenarioTally {
        require_root();
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let tally = run(&Options {
            scenario,
            iterations,
            dir,
            ..Default::default()
        })
        .expect("provoke::run");
        assert_eq!(tally.pid, std::process::id());
        assert_eq!(tally.scenarios.len(), 1);
        let st = tally.scenarios.into_iter().next().unwrap();
        assert_eq!(st.scenario, scenario.name());
        assert_eq!(
            st.calls,
            st.ok + st.errnos.values().sum::<u64>(),
            "calls must add up: {st:?}"
        );
        assert_eq!(st.skipped, None, "scenario skipped: {st:?}");
        st
    }

    #[test]
    fn provoke_storm_counts_every_call() {
        let st = run_storm(StormRange::Collapsed, 5_000, None);
        // The collapse that makes the range huge, then 5000 calls on the huge range.
        assert_eq!((st.calls, st.ok), (5_001, 5_001), "{st:?}");
        let st = run_storm(StormRange::Empty, 2_000, None);
        assert_eq!(st.calls, 2_000);
        assert_eq!(st.errnos.get("EINVAL"), Some(&2_000), "{st:?}");
        assert!(st.loop_us.is_some());
        // The loop's own CPU time: never more than its wall time (one thread), and not zero.
        let cpu = st.loop_cpu_ns.unwrap();
        assert!(
            cpu > 0 && cpu <= st.loop_us.unwrap() * 1000 + 1000,
            "{st:?}"
        );
    }

    #[test]
    fn provoke_storm_is_paced_and_bounded_by_duration() {
        let st = run_storm(StormRange::Collapsed, 0, Some(20_000));
        let secs = st.loop_us.unwrap() as f64 / 1e6;
        assert!((0.45..1.0).contains(&secs), "{secs} s: {st:?}");
        let rate = (st.calls - 1) as f64 / secs;
        assert!((15_000.0..=21_000.0).contains(&rate), "{rate}/s: {st:?}");
    }

    fn run_storm(range: StormRange, iterations: u32, rate: Option<u64>) -> ScenarioTally {
        require_root();
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let tally = run(&Options {
            scenario: Scenario::Storm,
            iterations,
            storm_range: range,
            duration: rate.map(|_| Duration::from_millis(500)),
            rate,
            ..Default::default()
        })
        .expect("provoke::run");
        let st = tally.scenarios.into_iter().next().unwrap();
        assert_eq!(st.scenario, "storm");
        assert_eq!(st.skipped, None, "{st:?}");
        assert_eq!(st.calls, st.ok + st.errnos.values().sum::<u64>());
        st
    }

    #[test]
    fn provoke_errno_names() {
        assert_eq!(errno_name(libc::EAGAIN.into()), "EAGAIN");
        assert_eq!(errno_name(libc::EBUSY.into()), "EBUSY");
        assert_eq!(errno_name(4095), "E4095");
    }

    #[test]
    fn provoke_collapse_all_ok() {
        // A busy build machine keeps its memory full of page cache: compact it first, so
        // that the huge pages the collapses need can be had (a one-off action, no setting
        // changed). ENOMEM would otherwise be the machine's, not the code's.
        let _ = std::fs::write("/proc/sys/vm/compact_memory", "1");
        let st = run_one(Scenario::Collapse, 0, None);
        assert_eq!(st.calls, 20);
        assert_eq!(st.ok, 20, "{st:?}");
    }

    #[test]
    fn provoke_uffd_holes_only_ebusy() {
        let st = run_one(Scenario::UffdHoles, 0, None);
        assert_eq!(st.calls, 20);
        assert_eq!(st.ok, 0, "{st:?}");
        assert_eq!(st.errnos.get("EBUSY"), Some(&20), "{st:?}");
        assert_eq!(st.errnos.len(), 1, "{st:?}");
    }

    #[test]
    fn provoke_page_filled_gives_eagain() {
        let st = run_one(Scenario::PageFilled, 0, None);
        assert_eq!(st.calls, 400);
        let eagain = st.errnos.get("EAGAIN").copied().unwrap_or(0);
        assert!(eagain >= 1, "no EAGAIN at all: {st:?}");
    }

    /// Runs in a child process (see `provoke_skips_when_thp_is_off`): with THP disabled for
    /// this process by prctl, MADV_COLLAPSE answers EINVAL and every scenario must be skipped.
    #[test]
    #[ignore = "helper: run only as a child of provoke_skips_when_thp_is_off"]
    fn provoke_child_thp_disabled() {
        if std::env::var_os("PROVOKE_CHILD_THP_DISABLED").is_none() {
            return;
        }
        // SAFETY: plain prctl with integer arguments; affects only this (child) process.
        let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        assert_eq!(rc, 0, "prctl: {}", std::io::Error::last_os_error());
        let tally = run(&Options {
            scenario: Scenario::All,
            iterations: 5,
            dir: None,
            ..Default::default()
        })
        .expect("provoke::run");
        println!("TALLY {}", serde_json::to_string(&tally).unwrap());
    }

    #[test]
    fn provoke_skips_when_thp_is_off() {
        require_root();
        // PR_SET_THP_DISABLE holds for the whole process, so do it in a child, not here where
        // other tests collapse in parallel.
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "provoke::tests::provoke_child_thp_disabled",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("PROVOKE_CHILD_THP_DISABLED", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed: {stdout}");
        let json = stdout
            .lines()
            .find_map(|l| l.split_once("TALLY ").map(|(_, json)| json))
            .unwrap_or_else(|| panic!("no tally in child output: {stdout}"));
        let tally: Tally = serde_json::from_str(json).unwrap();
        assert_eq!(tally.scenarios.len(), 4);
        for st in &tally.scenarios {
            let why = st
                .skipped
                .as_deref()
                .unwrap_or_else(|| panic!("not skipped: {st:?}"));
            assert!(why.contains("EINVAL"), "{why}");
            // The one try that found out is still counted, as the kernel saw it.
            assert_eq!(st.calls, 1, "{st:?}");
            assert_eq!(st.errnos.get("EINVAL"), Some(&1), "{st:?}");
        }
    }

    #[test]
    fn provoke_mount_dir_is_gone_afterwards() {
        require_root();
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let parent = std::env::temp_dir().join(format!("provoke-test-{}", std::process::id()));
        std::fs::create_dir_all(&parent).unwrap();
        let tally = run(&Options {
            scenario: Scenario::All,
            iterations: 3,
            dir: Some(parent.clone()),
            ..Default::default()
        });
        let leftovers: Vec<_> = std::fs::read_dir(&parent)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        std::fs::remove_dir(&parent).unwrap();
        let tally = tally.expect("provoke::run");
        assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
        assert!(
            !mounts.contains(parent.to_str().unwrap()),
            "mount still listed"
        );
        let names: Vec<_> = tally
            .scenarios
            .iter()
            .map(|s| s.scenario.as_str())
            .collect();
        assert_eq!(names, ["collapse", "uffd-holes", "page-filled", "anon"]);
        assert!(tally.scenarios.iter().all(|s| s.calls == 3));
    }
}
