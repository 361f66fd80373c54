//! `cargo xtask bench`: what collapse-trace costs, against bpftrace, on real MADV_COLLAPSE
//! storms (issue 6). A benchmark that prints figures, not a test; it needs root and a 6.x
//! kernel with the huge_memory tracepoints.
//!
//! Every kernel-facing run filters by the storm's pid (both tools), since khugepaged and other
//! people's tests make events too. The storm is started "gated": forked, but held before exec
//! until the tools are attached, so its pid is known up front.

mod empty;
mod goals;
mod merge;
mod overhead;
mod parse;
mod procs;
mod report;
mod rings;
mod stepped;
mod table;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, Result, ensure};
use serde::Serialize;

use self::{
    goals::overhead_goals,
    parse::StatTotals,
    procs::{Proc, SysctlGuard, check_interrupted, sleep},
    report::{Goal, Spread, table},
    table::print_doc,
};
use crate::{
    env::{Env, output, run},
    setup,
};

/// Debian packages the bench drives.
const BENCH_PACKAGES: &[&str] = &["bpftrace", "bpftool", "linux-perf"];

const SCAN: &str = "mm_khugepaged_scan_file";
const COLLAPSE: &str = "mm_khugepaged_collapse_file";

/// Options of `cargo xtask bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Repetitions of each paired kernel-cost and start-up measurement (at least 5).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Seconds of storm per kernel-cost repetition.
    #[arg(long, default_value_t = 2.0)]
    pub storm_secs: f64,
    /// Seconds of storm per resource and drop measurement.
    #[arg(long, default_value_t = 5.0)]
    pub load_secs: f64,
    /// Events in the generated recording that `report` reads (about 260 bytes each on disk).
    #[arg(long, default_value_t = 10_000_000)]
    pub report_events: u64,
    /// Run only these parts (all when not given); goals of parts not run are left out.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Part>,
    /// Kernel-cost modes to measure (all when not given), for quick comparisons.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub modes: Vec<Mode>,
    /// MADV_COLLAPSE calls per workload-overhead storm on the collapsed range (the empty
    /// range makes an eighth as many: each of its calls costs ~9x more).
    #[arg(long, default_value_t = 1_000_000)]
    pub overhead_calls: u64,
    /// A ~1-minute subset: the workload overhead alone (unless --only says otherwise), 3
    /// repetitions, 200,000 calls per storm, shorter storms in any other part.
    #[arg(long)]
    pub quick: bool,
}

/// The bench's parts, for `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Part {
    /// The traced workload's time per call against no tracer and bpftrace, and the empty
    /// program of each attach kind (0: the first figure).
    Overhead,
    /// Kernel ns/event against bpftrace (1).
    Kernel,
    /// Start-up to attached and ready, warm and cold (2).
    Startup,
    /// CPU and RSS of serve, stat and record under the storm, and idle (3).
    Resources,
    /// The zero-drop ladder (4).
    Drops,
    /// `report` throughput (5).
    Report,
    /// The ring reader's merge at 2, 64 and 256 CPUs, in memory (6).
    Merge,
    /// Drops, CPU and RSS by ring size at this machine's and 256 simulated CPUs (7).
    Rings,
}

impl BenchArgs {
    fn runs(&self, part: Part) -> bool {
        match self.only.is_empty() {
            true => !self.quick || part == Part::Overhead,
            false => self.only.contains(&part),
        }
    }

    /// `--quick`'s smaller settings (never larger than asked for).
    fn quickened(mut self) -> BenchArgs {
        if self.quick {
            self.reps = self.reps.min(3);
            self.storm_secs = self.storm_secs.min(0.5);
            self.load_secs = self.load_secs.min(2.0);
            self.report_events = self.report_events.min(1_000_000);
            self.overhead_calls = self.overhead_calls.min(200_000);
        }
        self
    }
}

/// The storm's two loops.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
enum Range {
    /// Success on an already collapsed range: 1 event per call (scan_file).
    Collapsed,
    /// EINVAL on an empty range: 2 events per call (scan_file + collapse_file).
    Empty,
}

impl Range {
    fn arg(self) -> &'static str {
        match self {
            Range::Collapsed => "collapsed",
            Range::Empty => "empty",
        }
    }
    /// Events a storm of `calls` calls makes: on the collapsed range the first call (the real
    /// collapse) makes two (scan_file + collapse_file), every other one; on the empty range
    /// every call makes two.
    fn events(self, calls: u64) -> u64 {
        match self {
            Range::Collapsed => calls + 1,
            Range::Empty => 2 * calls,
        }
    }
}

/// Our kernel-side modes.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// `stat --no-events --no-calls`: counters only, without the MADV_COLLAPSE call hooks
    /// (the exporter's cheapest mode).
    CountingNoCalls,
    /// `stat --no-events`: counters only.
    Counting,
    /// `stat --no-calls`: a ring-buffer record with the file name per event, without the
    /// call hooks (the same tracepoints bpftrace attaches, nothing more).
    EventsNoCalls,
    /// `stat`: counters plus a ring-buffer record with the file name per event.
    Events,
}

impl Mode {
    /// With the MADV_COLLAPSE call hooks: the bpftrace peer then counts calls by errno too.
    fn hooks(self) -> bool {
        matches!(self, Mode::Counting | Mode::Events)
    }

    fn describe(self) -> &'static str {
        match self {
            Mode::CountingNoCalls => "counting, no call hooks (--no-events --no-calls)",
            Mode::Counting => "counting with the errno join (--no-events)",
            Mode::EventsNoCalls => "full events with file names, no call hooks (--no-calls)",
            Mode::Events => "full events with file names and the errno join (default)",
        }
    }
}

#[derive(Debug, Serialize)]
struct Doc {
    schema: &'static str,
    started_utc: String,
    machine: Machine,
    versions: BTreeMap<&'static str, String>,
    settings: BenchArgs,
    method: BTreeMap<&'static str, &'static str>,
    overhead: Option<overhead::Overhead>,
    kernel_cost: Vec<CostSet>,
    startup: Vec<StartupSet>,
    resources: Vec<Resource>,
    drops: Option<Drops>,
    report: Option<ReportSpeed>,
    merge: Option<Vec<merge::MergeRow>>,
    /// The reader's decode and aggregation per record (with the merge part).
    aggregate: Option<merge::AggregateSpeed>,
    rings: Option<Vec<rings::RingRow>>,
    goals: Vec<Goal>,
    /// Tools that took longer than the first bound to stop, and how long.
    slow_stops: Vec<procs::SlowStop>,
    wall_s: f64,
}

impl Serialize for BenchArgs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut st = s.serialize_struct("BenchArgs", 6)?;
        st.serialize_field("quick", &self.quick)?;
        st.serialize_field("overhead_calls", &self.overhead_calls)?;
        st.serialize_field("reps", &self.reps)?;
        st.serialize_field("storm_secs", &self.storm_secs)?;
        st.serialize_field("load_secs", &self.load_secs)?;
        st.serialize_field("only", &self.only)?;
        st.end()
    }
}

#[derive(Debug, Serialize)]
struct Machine {
    cpu_model: String,
    vcpus: usize,
    mem_total_kib: u64,
    hypervisor: bool,
    kernel: String,
}

#[derive(Debug, Serialize)]
struct CostRep {
    ours_first: bool,
    calls: u64,
    /// Events each tool counted for the storm's pid (must both equal calls x events per call).
    ours_events: u64,
    bpftrace_events: u64,
    /// Records our reader could not take in time (full-events modes; the storm is unpaced,
    /// and a dropped record costs the program less than a written one).
    ours_dropped: u64,
    /// run_cnt seen by each tool's programs in the window (all tasks: filtered ones too).
    ours_run_cnt: u64,
    bpftrace_run_cnt: u64,
    ours_ns: f64,
    /// All the peer's programs per event (with the hooks: its call hooks too).
    bpftrace_ns: f64,
    /// Like for like: ours_ns / bpftrace_ns.
    ratio: f64,
    /// The peer's huge_memory programs alone per event: bpftrace counting by result, the
    /// issue's reference.
    bpftrace_tracepoints_ns: f64,
    /// ours_ns / bpftrace_tracepoints_ns: every program of ours against bpftrace's counter
    /// alone (the strictest reading; equals `ratio` without the hooks).
    strict_ratio: f64,
    /// An empty bpftrace program on the same tracepoints, ns per run (counting modes only):
    /// the least any program costs here.
    floor_ns: Option<f64>,
    /// floor_ns / bpftrace_tracepoints_ns.
    floor_ratio: Option<f64>,
    /// Our huge_memory tracepoint programs only (the call hooks left out), per event: the
    /// same attach points as bpftrace's program.
    ours_tracepoints_ns: f64,
    tracepoints_ratio: f64,
    /// ns/event of each of our programs.
    ours_per_program: BTreeMap<String, f64>,
    bpftrace_per_tracepoint: BTreeMap<String, f64>,
}

#[derive(Debug, Serialize)]
struct CostSet {
    mode: Mode,
    range: Range,
    /// What the bpftrace peer does.
    peer: &'static str,
    ours_ns: Option<Spread>,
    bpftrace_ns: Option<Spread>,
    ratio: Option<Spread>,
    bpftrace_tracepoints_ns: Option<Spread>,
    strict_ratio: Option<Spread>,
    floor_ns: Option<Spread>,
    floor_ratio: Option<Spread>,
    ours_tracepoints_ns: Option<Spread>,
    tracepoints_ratio: Option<Spread>,
    reps: Vec<CostRep>,
}

#[derive(Debug, Serialize)]
struct StartupSet {
    cache: &'static str,
    ours_ms: Option<Spread>,
    bpftrace_ms: Option<Spread>,
    ratio: Option<Spread>,
    /// The tools' own words: our "attached to" line; bpftrace's "Attaching N probes..." (printed
    /// before it attaches, so not "ready").
    ours_self_reported_ms: Option<Spread>,
    bpftrace_self_reported_ms: Option<Spread>,
}

#[derive(Debug, Serialize)]
struct Resource {
    tool: String,
    /// Target and achieved events/s of the storm (None: idle).
    target_events_per_s: Option<u64>,
    achieved_events_per_s: Option<f64>,
    wall_s: f64,
    cpu_s: f64,
    user_s: f64,
    sys_s: f64,
    cpu_pct_of_one_core: f64,
    peak_rss_kib: u64,
    totals: Option<StatTotals>,
    /// `record` only: what writing its file's bytes alone costs on this machine.
    write_floor: Option<WriteFloor>,
}

/// Writing a recording's bytes with nothing else to do: the page-cache copy and the syncs
/// any recorder pays for that volume (on a VM whose freed memory goes back to the host, each
/// new page-cache page is a fault on the host's side too: 0.1-1.7 s of kernel time per
/// 512 MB were seen on one machine).
#[derive(Debug, Serialize)]
struct WriteFloor {
    bytes: u64,
    /// CPU seconds of the writing thread (user + sys) in the first try: right after the
    /// recorder stopped, its file still there, the nearest to the state it wrote in (later
    /// tries reuse the pages the try before freed, which a recorder writing a new file does
    /// not get; they show the spread).
    cpu_s: f64,
    /// Each try's CPU seconds, in order.
    tries_s: Vec<f64>,
    /// The same seconds over the recorder's wall time, in % of one core.
    cpu_pct_of_one_core: f64,
}

#[derive(Debug, Serialize)]
struct DropStep {
    /// Storm processes at once (the last step runs one per vCPU, to go past what one
    /// process can make).
    storms: usize,
    target_events_per_s: Option<u64>,
    achieved_events_per_s: f64,
    calls: u64,
    totals: StatTotals,
    /// dropped + delivered == events + calls, exactly (call records share the ring).
    exact: bool,
}

#[derive(Debug, Serialize)]
struct Drops {
    ring_bytes: &'static str,
    steps: Vec<DropStep>,
    highest_zero_drop_events_per_s: Option<f64>,
    drops_beyond: Option<u64>,
}

/// Runs the whole bench.
pub fn bench(env: &Env, args: BenchArgs) -> Result<()> {
    ensure!(
        args.reps >= 5 || args.quick,
        "--reps must be at least 5 (medians over >= 5; --quick takes 3)"
    );
    ensure!(
        args.overhead_calls >= 10_000,
        "--overhead-calls must be at least 10000 (the storm's loop time is in microseconds)"
    );
    let args = args.quickened();
    ensure!(
        crate::is_root()?,
        "the bench loads BPF programs and mounts tmpfs: run it as root"
    );
    let t0 = Instant::now();
    setup::setup(env)?;
    setup::ensure_debian_packages(env, BENCH_PACKAGES)?;
    run(env
        .cargo()
        .args(["build", "--release", "-p", "collapse-trace"]))?;
    let bin = env.root.join("target/release/collapse-trace");
    let bench = Bench::new(env, bin, &args)?;

    procs::install_signal_flag()?;
    let started_utc = report::utc_stamp(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)?
            .as_secs(),
    );
    let machine = machine()?;
    let versions = versions(env, &bench.bin)?;
    println!(
        "\nmachine: {} x {}, {} MiB, kernel {}{}",
        machine.vcpus,
        machine.cpu_model,
        machine.mem_total_kib / 1024,
        machine.kernel,
        if machine.hypervisor {
            " (virtual machine)"
        } else {
            ""
        }
    );
    for (k, v) in &versions {
        println!("{k}: {v}");
    }
    // The workload overhead is measured as users run, with program statistics off (they add
    // two clock reads to every program run); the guards restore the setting on every way out
    // (error, panic, Ctrl-C).
    let overhead = match args.runs(Part::Overhead) {
        true => {
            let _off = SysctlGuard::set("/proc/sys/kernel/bpf_stats_enabled", "0")?;
            Some(bench.overhead()?)
        }
        false => None,
    };
    let _stats = SysctlGuard::set("/proc/sys/kernel/bpf_stats_enabled", "1")?;

    let mut kernel_cost = Vec::new();
    if args.runs(Part::Kernel) {
        for range in [Range::Empty, Range::Collapsed] {
            for mode in [
                Mode::CountingNoCalls,
                Mode::Counting,
                Mode::EventsNoCalls,
                Mode::Events,
            ] {
                if !args.modes.is_empty() && !args.modes.contains(&mode) {
                    continue;
                }
                kernel_cost.push(bench.cost_set(mode, range)?);
            }
        }
    }
    let mut startup = Vec::new();
    if args.runs(Part::Startup) {
        startup = vec![bench.startup_set(false)?, bench.startup_set(true)?];
    }
    let mut resources = Vec::new();
    if args.runs(Part::Resources) {
        // record-zst: `record -o FILE.zst`, which writes ~100x fewer bytes.
        for tool in ["serve", "stat", "record", "record-zst"] {
            resources.push(bench.resource(tool, Some(200_000))?);
        }
        resources.push(bench.resource("serve", None)?);
    }
    let drops = match args.runs(Part::Drops) {
        true => Some(bench.drops()?),
        false => None,
    };
    let report_speed = match args.runs(Part::Report) {
        true => Some(bench.report_speed()?),
        false => None,
    };
    let rings = match args.runs(Part::Rings) {
        true => Some(bench.rings()?),
        false => None,
    };
    let merge_speed = match args.runs(Part::Merge) {
        true => Some(merge::merge_speed(env)?),
        false => None,
    };
    let aggregate_speed = match args.runs(Part::Merge) {
        true => Some(merge::aggregate_speed(env)?),
        false => None,
    };
    let mut goals = overhead.as_ref().map(overhead_goals).unwrap_or_default();
    goals.extend(goals::goals(
        &kernel_cost,
        &startup,
        &resources,
        drops.as_ref(),
        report_speed.as_ref(),
    ));
    if let Some(m) = &merge_speed {
        goals.push(merge::goal(m));
    }
    if let Some(r) = &rings {
        goals.extend(rings::goals(r));
    }
    let doc = Doc {
        schema: "collapse-trace.bench/1",
        started_utc: started_utc.clone(),
        machine,
        versions,
        settings: args.clone(),
        method: method(),
        overhead,
        kernel_cost,
        startup,
        resources,
        drops,
        report: report_speed,
        merge: merge_speed,
        aggregate: aggregate_speed,
        rings,
        goals,
        slow_stops: procs::slow_stops(),
        wall_s: t0.elapsed().as_secs_f64(),
    };
    print_doc(&doc);
    let path = report::write_json(&env.root.join("target/bench"), &started_utc, &doc)?;
    println!(
        "\nfigures written to {} and target/bench/latest.json",
        path.display()
    );
    Ok(())
}

fn method() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        (
            "overhead",
            "the storm's own loop time per MADV_COLLAPSE call (provoke storm -n N, loop_us / \
             calls in the loop), with kernel.bpf_stats_enabled=0; one rotation runs every \
             configuration once (no tracer, ours counting / events / default, bpftrace \
             counting by result / counting plus the errno join, an empty program of each \
             attach kind this kernel allows), each rotation's order rotated by one; overhead = \
             time minus the no-tracer time of the same rotation and range, per event = per \
             call / events per call (1 collapsed, 2 empty); ratio per rotation; tools filter \
             by the storm's pid, the empty programs (r0 = 0; exit, loaded with bpf(2)) do not; \
             every tracer's counts are checked against the storm's",
        ),
        (
            "kernel_cost",
            "both tools attached at once, each filtered by the storm's pid (ours --pid, \
             bpftrace /pid == P/, counting @[args->result] per tracepoint; for our modes with \
             the call hooks bpftrace also counts MADV_COLLAPSE calls by errno through \
             sys_enter/exit_madvise and a map keyed by tid); order of start alternated; delta \
             of run_time_ns / run_cnt (bpftool -j prog show, kernel.bpf_stats_enabled=1) over \
             the storm window, summed over each tool's programs, as bpftool perf show maps \
             them to pid and tracepoint, divided by the huge_memory events; counting runs \
             also attach an empty bpftrace program to the same tracepoints (ns per run: the \
             floor)",
        ),
        (
            "startup",
            "a trigger (a copy of the binary running `provoke storm --range empty --rate 5000`) \
             makes events all along; the clock runs from just before spawn until both of the \
             tool's programs have run at least once (run_cnt > 0 in /proc/PID/fdinfo of its \
             program fds, polled every 1 ms): attached and ready, measured the same way for \
             both. Cold: echo 3 > /proc/sys/vm/drop_caches before each spawn",
        ),
        (
            "resources",
            "utime+stime from /proc/PID/stat over the storm window, VmHWM from \
             /proc/PID/status before stopping; storm = collapsed range paced to the target rate; \
             the tool filtered by the storm's pid, full events",
        ),
        (
            "drops",
            "stat --json (full events, default ring, filtered by the storms' shared comm) on collapsed-range storms at \
             rising paced rates, then one unpaced, then one unpaced per vCPU at once; events/s = kernel events / the longest storm loop time",
        ),
    ])
}

struct Bench<'a> {
    env: &'a Env,
    bin: PathBuf,
    /// A copy of the binary for the start-up trigger, so that its mapped pages do not keep
    /// ours in the page cache across drop_caches.
    trigger_bin: PathBuf,
    args: &'a BenchArgs,
}

impl Drop for Bench<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.trigger_bin);
    }
}

impl<'a> Bench<'a> {
    fn new(env: &'a Env, bin: PathBuf, args: &'a BenchArgs) -> Result<Self> {
        let trigger_bin = std::env::temp_dir().join(format!(
            "collapse-trace-bench-trigger-{}",
            std::process::id()
        ));
        std::fs::copy(&bin, &trigger_bin)
            .with_context(|| format!("copying {} to {}", bin.display(), trigger_bin.display()))?;
        Ok(Bench {
            env,
            bin,
            trigger_bin,
            args,
        })
    }

    /// A gated storm (released by the caller).
    fn storm(&self, range: Range, secs: f64, rate: Option<u64>) -> Result<Proc> {
        self.storm_named(range, secs, rate, None)
    }

    /// A storm, with `comm` as its process name when given (several storms, one filter).
    fn storm_named(
        &self,
        range: Range,
        secs: f64,
        rate: Option<u64>,
        comm: Option<&str>,
    ) -> Result<Proc> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["provoke", "storm", "--json", "--range", range.arg()])
            .arg("--duration")
            .arg(format!("{}ms", (secs * 1000.0) as u64));
        if let Some(r) = rate {
            cmd.arg("--rate").arg(r.to_string());
        }
        if let Some(c) = comm {
            cmd.arg("--comm").arg(c);
        }
        Proc::spawn_gated("provoke storm", cmd)
    }

    /// `stat --json --comm COMM`, full events.
    fn ours_comm(&self, comm: &str) -> Result<Proc> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["stat", "--json", "--comm", comm]);
        Proc::spawn("collapse-trace stat", cmd)
    }

    fn ours(&self, pid: u32, extra: &[&str]) -> Result<Proc> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["stat", "--json", "--pid", &pid.to_string()])
            .args(extra);
        Proc::spawn("collapse-trace stat", cmd)
    }

    fn bpftrace(&self, pid: u32, join: bool) -> Result<Proc> {
        self.bpftrace_program(&bpftrace_script(pid, join))
    }

    fn bpftrace_program(&self, program: &str) -> Result<Proc> {
        let mut cmd = self.env.command("bpftrace");
        cmd.arg("-e").arg(program);
        // bpftrace prints its maps at exit; keep its start-up free of the debuginfod lookups.
        cmd.env_remove("DEBUGINFOD_URLS");
        Proc::spawn("bpftrace", cmd)
    }

    /// One paired kernel-cost set: `reps` repetitions, start order alternated.
    fn cost_set(&self, mode: Mode, range: Range) -> Result<CostSet> {
        println!(
            "\n== kernel ns/event: ours {mode:?} vs bpftrace, {range:?} range, {} reps",
            self.args.reps
        );
        let mut reps = Vec::new();
        for i in 0..self.args.reps {
            let rep = self.cost_rep(mode, range, i % 2 == 0)?;
            println!(
                "  rep {}: ours {:.0} ns, bpftrace {:.0} ns, ratio {:.2} ({} started first; {} calls, events ours {} bpftrace {}; ours dropped {} records)",
                i + 1,
                rep.ours_ns,
                rep.bpftrace_ns,
                rep.ratio,
                if rep.ours_first { "ours" } else { "bpftrace" },
                rep.calls,
                rep.ours_events,
                rep.bpftrace_events,
                rep.ours_dropped
            );
            if let Some(f) = rep.floor_ns {
                println!("    an empty program on the same tracepoints: {f:.0} ns per run");
            }
            if i == 0 {
                // Where our time goes: ns per run of each program (the madvise hooks run once
                // per call, not per event).
                let per: Vec<String> = rep
                    .ours_per_program
                    .iter()
                    .map(|(name, ns)| format!("{name} {ns:.0}"))
                    .collect();
                println!("    ours per program run (ns): {}", per.join(", "));
            }
            reps.push(rep);
        }
        let col = |f: fn(&CostRep) -> f64| Spread::of(&reps.iter().map(f).collect::<Vec<_>>());
        let opt = |f: fn(&CostRep) -> Option<f64>| {
            Spread::of(&reps.iter().filter_map(f).collect::<Vec<_>>())
        };
        Ok(CostSet {
            mode,
            range,
            peer: if mode.hooks() {
                "bpftrace counting by result, plus MADV_COLLAPSE calls by errno \
                 (sys_enter/exit_madvise, a map keyed by tid)"
            } else {
                "bpftrace counting by result"
            },
            ours_ns: col(|r| r.ours_ns),
            bpftrace_ns: col(|r| r.bpftrace_ns),
            ratio: col(|r| r.ratio),
            bpftrace_tracepoints_ns: col(|r| r.bpftrace_tracepoints_ns),
            strict_ratio: col(|r| r.strict_ratio),
            floor_ns: opt(|r| r.floor_ns),
            floor_ratio: opt(|r| r.floor_ratio),
            ours_tracepoints_ns: col(|r| r.ours_tracepoints_ns),
            tracepoints_ratio: col(|r| r.tracepoints_ratio),
            reps,
        })
    }

    fn cost_rep(&self, mode: Mode, range: Range, ours_first: bool) -> Result<CostRep> {
        let mut storm = self.storm(range, self.args.storm_secs, None)?;
        let pid = storm.pid();
        let extra: &[&str] = match mode {
            Mode::CountingNoCalls => &["--no-events", "--no-calls"],
            Mode::Counting => &["--no-events"],
            Mode::EventsNoCalls => &["--no-calls"],
            Mode::Events => &[],
        };
        // Start (and wait for) one tool, then the other: the order decides which program the
        // tracepoint runs first.
        let mut started: Vec<Proc> = Vec::new();
        for ours in [ours_first, !ours_first] {
            let mut p = if ours {
                self.ours(pid, extra)?
            } else {
                self.bpftrace(pid, mode.hooks())?
            };
            wait_attached_n(self.env, &mut p, if mode.hooks() { 4 } else { 2 })?;
            started.push(p);
        }
        // Counting sits near the least any program costs: measure that floor in the same run.
        let empty = match mode {
            Mode::CountingNoCalls => {
                let mut p = self.bpftrace_program(&format!(
                    "tracepoint:huge_memory:{SCAN} {{ }}\ntracepoint:huge_memory:{COLLAPSE} {{ }}"
                ))?;
                wait_attached(self.env, &mut p)?;
                Some(p)
            }
            _ => None,
        };
        let (ours, bt) = if ours_first {
            let b = started.pop().unwrap();
            (started.pop().unwrap(), b)
        } else {
            let o = started.pop().unwrap();
            (o, started.pop().unwrap())
        };
        let ours_progs = attached_progs(self.env, ours.pid())?;
        let bt_progs = attached_progs(self.env, bt.pid())?;
        let empty_progs = match &empty {
            Some(p) => Some(attached_progs(self.env, p.pid())?),
            None => None,
        };
        let before = prog_stats(self.env)?;
        storm.release()?;
        let tally = parse::storm_tally(&storm.wait(Duration::from_secs(60))?)?;
        let after = prog_stats(self.env)?;
        let ours_out = ours.stop()?;
        let bt_out = bt.stop()?;
        if let Some(p) = empty {
            p.stop()?;
        }
        let totals = parse::stat_totals(&ours_out)?;
        let bt_maps = parse::bpftrace_maps(&bt_out);
        let bt_count = |name: &str| -> u64 {
            bt_maps
                .iter()
                .filter(|((m, _), _)| m == name)
                .map(|(_, n)| n)
                .sum()
        };
        let bt_events = bt_count("scan") + bt_count("collapse");
        if mode.hooks() {
            ensure!(
                bt_count("errno") == tally.calls,
                "bpftrace counted {} MADV_COLLAPSE calls, the storm made {}",
                bt_count("errno"),
                tally.calls
            );
        }
        let expect = range.events(tally.calls);
        ensure!(
            totals.events == expect && bt_events == expect,
            "counts disagree: the storm made {} calls ({expect} events expected), ours counted {}, \
             bpftrace {bt_events}",
            tally.calls,
            totals.events
        );
        // (all programs' ns per event, the tracepoint programs' ns per event, runs, per program)
        type Delta = (f64, f64, u64, BTreeMap<String, f64>);
        let delta = |progs: &BTreeMap<String, u32>| -> Result<Delta> {
            let (mut ns, mut tp_ns, mut cnt) = (0u64, 0u64, 0u64);
            let mut per = BTreeMap::new();
            for (tp, id) in progs {
                let (a, b) = (
                    after.get(id).context("program vanished")?,
                    before.get(id).context("program vanished")?,
                );
                let (dn, dc) = (a.run_time_ns - b.run_time_ns, a.run_cnt - b.run_cnt);
                ns += dn;
                // Events are the huge_memory tracepoint hits; helper programs add time only.
                if tp == SCAN || tp == COLLAPSE {
                    cnt += dc;
                    tp_ns += dn;
                }
                let name = if a.name.is_empty() {
                    tp.clone()
                } else {
                    format!("{} ({tp})", a.name)
                };
                per.insert(name, dn as f64 / dc.max(1) as f64);
            }
            ensure!(
                cnt > 0,
                "no program run counted: is kernel.bpf_stats_enabled on?"
            );
            Ok((ns as f64 / cnt as f64, tp_ns as f64 / cnt as f64, cnt, per))
        };
        let (ours_ns, ours_tracepoints_ns, ours_run_cnt, ours_per_program) = delta(&ours_progs)?;
        let (bpftrace_ns, bpftrace_tracepoints_ns, bpftrace_run_cnt, bpftrace_per_tracepoint) =
            delta(&bt_progs)?;
        // The empty program runs for every task (it has no filter): ns per run, not per event.
        let floor_ns = match &empty_progs {
            Some(progs) => {
                let (mut ns, mut cnt) = (0, 0);
                for id in progs.values() {
                    let (a, b) = (
                        after.get(id).context("program vanished")?,
                        before.get(id).context("program vanished")?,
                    );
                    ns += a.run_time_ns - b.run_time_ns;
                    cnt += a.run_cnt - b.run_cnt;
                }
                ensure!(cnt > 0, "the empty bpftrace program never ran");
                Some(ns as f64 / cnt as f64)
            }
            None => None,
        };
        Ok(CostRep {
            ours_first,
            calls: tally.calls,
            ours_events: totals.events,
            bpftrace_events: bt_events,
            ours_dropped: totals.dropped,
            ours_run_cnt,
            bpftrace_run_cnt,
            ours_ns,
            bpftrace_ns,
            ratio: ours_ns / bpftrace_ns,
            bpftrace_tracepoints_ns,
            strict_ratio: ours_ns / bpftrace_tracepoints_ns,
            floor_ns,
            floor_ratio: floor_ns.map(|f| f / bpftrace_tracepoints_ns),
            ours_tracepoints_ns,
            tracepoints_ratio: ours_tracepoints_ns / bpftrace_ns,
            ours_per_program,
            bpftrace_per_tracepoint,
        })
    }

    /// Start-up to attached and ready, warm or cold, `reps` pairs, order alternated.
    fn startup_set(&self, cold: bool) -> Result<StartupSet> {
        let cache = if cold { "cold" } else { "warm" };
        println!(
            "\n== start-up to attached and ready, {cache} page cache, {} pairs",
            self.args.reps
        );
        // The trigger: events all along, from a copy of the binary (see `trigger_bin`).
        let mut cmd = Command::new(&self.trigger_bin);
        cmd.args([
            "provoke",
            "storm",
            "--range",
            "empty",
            "--rate",
            "5000",
            "--duration",
            "10m",
        ]);
        let mut trigger = Proc::spawn_gated("trigger storm", cmd)?;
        let pid = trigger.pid();
        trigger.release()?;
        sleep(Duration::from_millis(300))?;
        trigger.check_running()?;
        let (mut ours, mut bt, mut ours_self, mut bt_self) = (vec![], vec![], vec![], vec![]);
        // One unmeasured warm-up of each, so "warm" means warm.
        if !cold {
            for o in [true, false] {
                self.time_startup(o, pid, false)?;
            }
        }
        for i in 0..self.args.reps {
            for o in [i % 2 == 0, i % 2 != 0] {
                let (ready, said) = self.time_startup(o, pid, cold)?;
                let (all, own) = if o {
                    (&mut ours, &mut ours_self)
                } else {
                    (&mut bt, &mut bt_self)
                };
                all.push(ready);
                own.extend(said);
            }
            println!(
                "  pair {}: ours {:.1} ms, bpftrace {:.1} ms",
                i + 1,
                ours[i],
                bt[i]
            );
        }
        drop(trigger);
        let ratios: Vec<f64> = ours.iter().zip(&bt).map(|(a, b)| a / b).collect();
        Ok(StartupSet {
            cache,
            ours_ms: Spread::of(&ours),
            bpftrace_ms: Spread::of(&bt),
            ratio: Spread::of(&ratios),
            ours_self_reported_ms: Spread::of(&ours_self),
            bpftrace_self_reported_ms: Spread::of(&bt_self),
        })
    }

    /// Spawns one tool filtered by `pid` and returns (ms to ready, ms to its own message).
    fn time_startup(&self, ours: bool, pid: u32, cold: bool) -> Result<(f64, Option<f64>)> {
        if cold {
            std::fs::write("/proc/sys/vm/drop_caches", "3").context("drop_caches")?;
        }
        let p = if ours {
            self.ours(pid, &[])?
        } else {
            self.bpftrace(pid, false)?
        };
        let t0 = p.spawned;
        let ready = poll_ready(&p, Duration::from_secs(20))?;
        let said = if ours {
            "collapse-trace: attached to"
        } else {
            "Attaching "
        };
        // bpftrace prints "Attaching" on stdout, which we only see at exit; ours on stderr.
        let own = p.stderr_line_at(said).map(|t| (t - t0).as_secs_f64() * 1e3);
        // Stopped at once, possibly before it installed its own signal handling: its exit
        // status says nothing here (Drop interrupts, waits, kills if needed).
        drop(p);
        Ok(((ready - t0).as_secs_f64() * 1e3, own))
    }

    /// CPU and peak RSS of `serve` or `stat` during a paced storm (or idle when `rate` is None).
    fn resource(&self, tool: &str, events_per_s: Option<u64>) -> Result<Resource> {
        let secs = self.args.load_secs;
        println!(
            "\n== {tool}: CPU and peak RSS, {}",
            events_per_s.map_or("idle (no events)".into(), |r| format!(
                "storm at {r} events/s for {secs} s"
            ))
        );
        let mut storm = self.storm(Range::Collapsed, secs, events_per_s)?;
        let pid = storm.pid();
        let mut record_file = None;
        let mut p = match tool {
            "serve" => {
                let mut cmd = Command::new(&self.bin);
                cmd.args([
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--pid",
                    &pid.to_string(),
                ]);
                Proc::spawn("collapse-trace serve", cmd)?
            }
            "record" | "record-zst" => {
                let ext = if tool == "record" {
                    "ndjson"
                } else {
                    "ndjson.zst"
                };
                let out = std::env::temp_dir().join(format!("ct-bench-{pid}.{ext}"));
                let mut cmd = Command::new(&self.bin);
                cmd.args(["record", "--pid", &pid.to_string(), "-o"])
                    .arg(&out);
                // Removed once the recorder has stopped (it creates the file only after
                // attaching, so removing it any earlier would leave it behind).
                record_file = Some(out);
                Proc::spawn("collapse-trace record", cmd)?
            }
            _ => self.ours(pid, &[])?,
        };
        let needle = if tool == "serve" {
            "listening on"
        } else {
            "attached to"
        };
        p.wait_stderr(needle, Duration::from_secs(20))?;
        sleep(Duration::from_millis(200))?;
        let c0 = cpu_ticks(p.pid())?;
        let w0 = Instant::now();
        let tally = if events_per_s.is_some() {
            storm.release()?;
            Some(parse::storm_tally(&storm.wait(Duration::from_secs(60))?)?)
        } else {
            sleep(Duration::from_secs_f64(secs))?;
            drop(storm);
            None
        };
        let wall = w0.elapsed().as_secs_f64();
        let c1 = cpu_ticks(p.pid())?;
        let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid()))?;
        let peak = parse::status_kib(&status, "VmHWM").context("no VmHWM")?;
        let out = p.stop()?;
        let write_floor = match &record_file {
            Some(f) => {
                let floor = write_floor(f, wall);
                let _ = std::fs::remove_file(f);
                Some(floor?)
            }
            None => None,
        };
        let totals = if tool == "stat" {
            Some(parse::stat_totals(&out)?)
        } else {
            None
        };
        let tick = clock_ticks();
        let (user, sys) = ((c1.0 - c0.0) as f64 / tick, (c1.1 - c0.1) as f64 / tick);
        let r = Resource {
            tool: tool.to_string(),
            target_events_per_s: events_per_s,
            achieved_events_per_s: tally.map(|t| t.calls as f64 / (t.loop_us as f64 / 1e6)),
            wall_s: wall,
            cpu_s: user + sys,
            user_s: user,
            sys_s: sys,
            cpu_pct_of_one_core: (user + sys) / wall * 100.0,
            peak_rss_kib: peak,
            totals,
            write_floor,
        };
        println!(
            "  {:.1}% of one core ({:.2} s user, {:.2} s sys over {:.1} s), peak RSS {:.1} MiB{}",
            r.cpu_pct_of_one_core,
            user,
            sys,
            wall,
            peak as f64 / 1024.0,
            r.achieved_events_per_s.map_or(String::new(), |a| format!(
                ", storm achieved {a:.0} events/s"
            ))
        );
        if let Some(f) = &r.write_floor {
            println!(
                "  writing its {:.0} MB alone, the same way, right after: {:.2} s of CPU (tries: \
                 {}), {:.1}% of one core over the same time",
                f.bytes as f64 / 1e6,
                f.cpu_s,
                f.tries_s
                    .iter()
                    .map(|t| format!("{t:.2}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                f.cpu_pct_of_one_core
            );
        }
        Ok(r)
    }

    /// Drops at rising rates with the default ring.
    fn drops(&self) -> Result<Drops> {
        println!("\n== drops with the default ring (stat, full events)");
        let mut steps = Vec::new();
        let vcpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let comm = format!("ct-bench{}", std::process::id() % 10_000);
        for (rate, storms) in [
            (Some(100_000), 1),
            (Some(200_000), 1),
            (Some(400_000), 1),
            (None, 1),
            (None, vcpus),
        ] {
            // Every storm shares one comm, and stat filters on it.
            let mut procs = (0..storms)
                .map(|_| self.storm_named(Range::Collapsed, self.args.load_secs, rate, Some(&comm)))
                .collect::<Result<Vec<_>>>()?;
            let mut p = self.ours_comm(&comm)?;
            p.wait_stderr("attached to", Duration::from_secs(20))?;
            for storm in &mut procs {
                storm.release()?;
            }
            let (mut calls, mut loop_us) = (0, 0);
            for storm in procs {
                let tally = parse::storm_tally(&storm.wait(Duration::from_secs(60))?)?;
                calls += tally.calls;
                loop_us = loop_us.max(tally.loop_us);
            }
            let totals = parse::stat_totals(&p.stop()?)?;
            let step = DropStep {
                storms,
                target_events_per_s: rate,
                achieved_events_per_s: totals.events as f64 / (loop_us as f64 / 1e6),
                calls,
                // Each storm's first call collapses the range (two events), the rest one each.
                exact: totals.dropped + totals.delivered == totals.events + totals.calls
                    && totals.events == calls + storms as u64,
                totals,
            };
            println!(
                "  {storms} storm(s), target {}: achieved {:.0} events/s, {} events, {} delivered, {} dropped ({})",
                rate.map_or("unpaced".into(), |r| r.to_string()),
                step.achieved_events_per_s,
                step.totals.events,
                step.totals.delivered,
                step.totals.dropped,
                if step.exact {
                    "dropped + delivered = events + calls, exactly"
                } else {
                    "NOT EXACT"
                }
            );
            steps.push(step);
        }
        let highest = steps
            .iter()
            .filter(|s| s.totals.dropped == 0)
            .map(|s| s.achieved_events_per_s)
            .reduce(f64::max);
        let beyond = steps
            .iter()
            .filter(|s| s.totals.dropped > 0 && highest.is_none_or(|h| s.achieved_events_per_s > h))
            .min_by(|a, b| a.achieved_events_per_s.total_cmp(&b.achieved_events_per_s))
            .map(|s| s.totals.dropped);
        Ok(Drops {
            ring_bytes: "default (4 MiB)",
            steps,
            highest_zero_drop_events_per_s: highest,
            drops_beyond: beyond,
        })
    }
}

/// The bpftrace peer: counts both tracepoints by result, for one pid; with `join`, also
/// MADV_COLLAPSE calls by errno, as our call hooks do (a call remembered per thread at entry,
/// counted and forgotten at exit).
fn bpftrace_script(pid: u32, join: bool) -> String {
    let mut s = format!(
        "tracepoint:huge_memory:{SCAN} /pid == {pid}/ {{ @scan[args->result] = count(); }}\n\
         tracepoint:huge_memory:{COLLAPSE} /pid == {pid}/ {{ @collapse[args->result] = count(); }}"
    );
    if join {
        s.push_str(&format!(
            "\ntracepoint:syscalls:sys_enter_madvise /pid == {pid} && args->behavior == 25/ \
             {{ @call[tid] = 1; }}\n\
             tracepoint:syscalls:sys_exit_madvise /@call[tid]/ \
             {{ @errno[-args->ret] = count(); delete(@call[tid]); }}"
        ));
    }
    s
}

/// tracepoint -> program id of what `pid` has attached. bpftool perf show finds tracepoints
/// attached through a perf event fd (bpftrace); aya attaches through a bpf_link and keeps no
/// perf event fd, so for those the process's program fds (fdinfo) and their names (bpftool
/// prog show: `scan_file`, `collapse_file`) tell.
fn attached_progs(env: &Env, pid: u32) -> Result<BTreeMap<String, u32>> {
    let json = output(env.command("bpftool").args(["-j", "perf", "show"]))?;
    let mut found: BTreeMap<String, u32> = parse::bpftool_perf(&json)?
        .into_iter()
        .filter(|a| a.pid == pid)
        .filter_map(|a| Some((a.tracepoint?, a.prog_id)))
        .collect();
    // Every program of a tool counts towards its cost (bpftrace's call hooks too); only the
    // huge_memory ones count events. Ours are found by name among the programs it holds: the
    // BTF-typed ones are BPF links, which `perf show` does not list, beside its classic
    // syscall hooks, which it does.
    let ids = prog_fd_infos(pid);
    if !ids.is_empty() {
        let progs = prog_stats(env)?;
        for info in ids {
            // Listed by `perf show` already (under its tracepoint's name).
            if found.values().any(|&id| id == info.prog_id) {
                continue;
            }
            let Some(name) = progs.get(&info.prog_id).map(|p| p.name.as_str()) else {
                continue;
            };
            let tp = match name.strip_suffix("_btf").unwrap_or(name) {
                "scan_file" => SCAN,
                "collapse_file" => COLLAPSE,
                "scan_pmd" | "scan_pmd_writable" => "scan_pmd",
                "collapse_huge_page" => "collapse_huge_page",
                "enter_madvise"
                | "exit_madvise"
                | "enter_process_madvise"
                | "exit_process_madvise" => name,
                _ => continue,
            };
            found.entry(tp.to_string()).or_insert(info.prog_id);
        }
    }
    Ok(found)
}

/// The BPF programs whose fds `pid` holds, from /proc/PID/fdinfo.
fn prog_fd_infos(pid: u32) -> Vec<parse::ProgFdInfo> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| t.as_os_str() == "anon_inode:bpf-prog")
        })
        .filter_map(|e| {
            let info =
                std::fs::read_to_string(fd_info(pid, &e.file_name().to_string_lossy())).ok()?;
            parse::prog_fdinfo(&info)
        })
        .collect()
}

/// Waits until `p` has both tracepoints attached. Ours says so on stderr once attached; for
/// bpftrace ("Attaching N probes..." comes before attaching) bpftool perf show must list both.
fn wait_attached(env: &Env, p: &mut Proc) -> Result<()> {
    wait_attached_n(env, p, 2)
}

/// Waits for our "attached to" line, or for bpftrace's `programs` to be attached.
fn wait_attached_n(env: &Env, p: &mut Proc, programs: usize) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = if p.name.starts_with("collapse-trace") {
            p.stderr_line_at("attached to").is_some()
        } else {
            attached_progs(env, p.pid())?.len() >= programs
        };
        if ready {
            return Ok(());
        }
        p.check_running()?;
        check_interrupted()?;
        ensure!(
            Instant::now() < end,
            "{} did not attach within 30 s",
            p.name
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn prog_stats(env: &Env) -> Result<BTreeMap<u32, parse::Prog>> {
    parse::bpftool_progs(&output(
        env.command("bpftool").args(["-j", "prog", "show"]),
    )?)
}

/// Polls `p`'s program fds every 1 ms until two of them have run; returns when.
fn poll_ready(p: &Proc, timeout: Duration) -> Result<Instant> {
    let fd_dir = PathBuf::from(format!("/proc/{}/fd", p.pid()));
    let end = Instant::now() + timeout;
    let mut progs: BTreeSet<String> = BTreeSet::new();
    loop {
        let now = Instant::now();
        let mut ran = 0;
        if let Ok(dir) = std::fs::read_dir(&fd_dir) {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !progs.contains(&name) {
                    match std::fs::read_link(e.path()) {
                        Ok(t) if t.as_os_str() == "anon_inode:bpf-prog" => {
                            progs.insert(name.clone());
                        }
                        _ => continue,
                    }
                }
                let info = std::fs::read_to_string(fd_info(p.pid(), &name)).unwrap_or_default();
                if parse::prog_fdinfo(&info).is_some_and(|i| i.run_cnt > 0) {
                    ran += 1;
                }
            }
        }
        if ran >= 2 {
            return Ok(now);
        }
        check_interrupted()?;
        ensure!(
            Instant::now() < end,
            "{} was not ready within {timeout:?}:\n{}",
            p.name,
            p.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn fd_info(pid: u32, fd: &str) -> PathBuf {
    Path::new("/proc")
        .join(pid.to_string())
        .join("fdinfo")
        .join(fd)
}

/// Tries of [`write_floor`]: the same write moves by 10x on a VM (see [`WriteFloor`]).
const FLOOR_TRIES: usize = 3;

/// Writes as many bytes as `recording` holds (its first lines over and over) into a new file
/// beside it, as `record` writes (256 KiB writes, as many `fdatasync`s as it made over
/// `wall_s`), and times the writing thread's CPU, [`FLOOR_TRIES`] times.
fn write_floor(recording: &Path, wall_s: f64) -> Result<WriteFloor> {
    use std::io::Read as _;
    let bytes = std::fs::metadata(recording)?.len();
    let mut sample = Vec::with_capacity(FLOOR_CHUNK);
    std::fs::File::open(recording)?
        .take(FLOOR_CHUNK as u64)
        .read_to_end(&mut sample)?;
    ensure!(!sample.is_empty(), "{} is empty", recording.display());
    let chunk: Vec<u8> = sample.iter().copied().cycle().take(FLOOR_CHUNK).collect();
    let path = recording.with_extension("floor");
    let syncs = (wall_s.floor() as u64).max(1);
    let tries_s = (0..FLOOR_TRIES)
        .map(|_| {
            let t = write_once(&path, &chunk, bytes, (bytes / syncs).max(1));
            let _ = std::fs::remove_file(&path);
            t.with_context(|| format!("writing {}", path.display()))
        })
        .collect::<Result<Vec<f64>>>()?;
    let cpu_s = tries_s[0];
    Ok(WriteFloor {
        bytes,
        cpu_s,
        tries_s,
        cpu_pct_of_one_core: cpu_s / wall_s * 100.0,
    })
}

/// `record`'s write size.
const FLOOR_CHUNK: usize = 256 * 1024;

/// One try of [`write_floor`]: `bytes` of `chunk` over and over into a new file at `path`,
/// synced every `sync_every` bytes; this thread's CPU seconds.
fn write_once(path: &Path, chunk: &[u8], bytes: u64, sync_every: u64) -> Result<f64> {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path)?;
    let t0 = thread_cpu_s();
    let (mut done, mut synced) = (0u64, 0u64);
    while done < bytes {
        let n = (bytes - done).min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n])?;
        done += n as u64;
        if done - synced >= sync_every {
            f.sync_data()?;
            synced = done;
        }
    }
    Ok(thread_cpu_s() - t0)
}

/// This thread's CPU time (user + sys), in seconds.
fn thread_cpu_s() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `t` is.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

fn cpu_ticks(pid: u32) -> Result<(u64, u64)> {
    parse::proc_stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat"))?)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64
}

fn machine() -> Result<Machine> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo")?;
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".into(), |(_, m)| m.trim().to_string());
    let vcpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let hypervisor = cpuinfo
        .lines()
        .any(|l| l.starts_with("flags") && l.contains(" hypervisor"));
    let mem = std::fs::read_to_string("/proc/meminfo")?;
    Ok(Machine {
        cpu_model,
        vcpus,
        mem_total_kib: parse::status_kib(&mem, "MemTotal").unwrap_or(0),
        hypervisor,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")?
            .trim()
            .to_string(),
    })
}

fn versions(env: &Env, bin: &Path) -> Result<BTreeMap<&'static str, String>> {
    let first = |s: String| s.lines().next().unwrap_or_default().trim().to_string();
    let git = output(env.command("git").args(["describe", "--always", "--dirty"]))
        .map(first)
        .unwrap_or_default();
    Ok(BTreeMap::from([
        (
            "collapse-trace",
            format!(
                "{} (git {git})",
                first(output(Command::new(bin).arg("--version"))?)
            ),
        ),
        (
            "bpftrace",
            first(output(env.command("bpftrace").arg("--version"))?),
        ),
        (
            "bpftool",
            first(output(env.command("bpftool").arg("version"))?),
        ),
    ]))
}

/// `report --json` reading a generated recording, end to end.
#[derive(Debug, Serialize)]
struct ReportSpeed {
    events: u64,
    bytes: u64,
    seconds: f64,
    events_per_s: f64,
}

impl Bench<'_> {
    /// Generates a recording of `report_events` events (the `report_speed` example) and times
    /// `collapse-trace report --json` over it.
    fn report_speed(&self) -> Result<ReportSpeed> {
        let n = self.args.report_events;
        println!("\n== report: reading a generated recording of {n} events");
        run(self.env.cargo().args([
            "build",
            "--release",
            "-p",
            "collapse-trace",
            "--example",
            "report_speed",
        ]))?;
        let dir = std::env::temp_dir().join(format!("ct-bench-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("bench.ndjson");
        let result = (|| -> Result<ReportSpeed> {
            let gen_bin = self.env.root.join("target/release/examples/report_speed");
            output(Command::new(&gen_bin).arg(n.to_string()).arg(&file))?;
            let bytes = std::fs::metadata(&file)?.len();
            let t = Instant::now();
            let out = Command::new(&self.bin)
                .args(["report", "--json"])
                .arg(&file)
                .stdout(std::process::Stdio::null())
                .status()?;
            let seconds = t.elapsed().as_secs_f64();
            ensure!(
                out.success(),
                "report failed on the generated recording ({out})"
            );
            let r = ReportSpeed {
                events: n,
                bytes,
                seconds,
                events_per_s: n as f64 / seconds,
            };
            println!(
                "  {:.2} M events/s ({:.0} MiB in {:.2} s)",
                r.events_per_s / 1e6,
                bytes as f64 / (1 << 20) as f64,
                seconds
            );
            Ok(r)
        })();
        let _ = std::fs::remove_dir_all(&dir);
        result
    }
}
