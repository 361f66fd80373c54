//! Workload overhead (issue 17): what a tracer costs the traced task, end to end. The storm's
//! own loop time per MADV_COLLAPSE call with no tracer, with each of our modes, with bpftrace
//! (counting by result, and doing the same errno join as our default mode) and with an empty
//! program of each attach kind (the floors), alternated within one run: every rotation runs
//! each configuration once, in an order rotated by one from the previous rotation's, and a
//! configuration's overhead is its time minus the no-tracer time of the same rotation and
//! range. `bpf_stats` figures (the kernel part) leave this out: the tracepoint machinery, the
//! record a classic tracepoint builds, the syscall hooks' entry, cache effects.
//!
//! The storm runs `SCHED_FIFO` on a CPU of its own (`chrt --fifo 1 taskset`): on a machine
//! busy with other work its calls are then neither preempted nor interleaved with other
//! tasks on that CPU. Time is the storm thread's own CPU time in its loop (`CLOCK_THREAD_CPUTIME_ID`; the
//! kernel's program runs and interrupts that land on the thread count in it): on a quiet
//! machine it is the loop's wall time, on a busy one it leaves out other tasks' turns on the
//! CPU, which would otherwise swamp differences of tens of nanoseconds.
//!
//! Measured with `kernel.bpf_stats_enabled` off, as users run: with it on every program run
//! also reads the clock twice, which lands in the workload's time.

use std::{collections::BTreeMap, path::Path, time::Duration};

use anyhow::{Context as _, Result, ensure};
use serde::Serialize;

use super::{
    Bench, Range,
    empty::{self, Kind},
    parse,
    procs::{Proc, check_interrupted},
    prog_fd_infos, prog_stats,
    report::Spread,
    stepped::Stepped,
};
use crate::env::{Env, output};

/// One configuration of a run: what is attached while the storm runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tracer {
    /// Nothing attached: the baseline of its rotation.
    None,
    /// `stat --no-events --no-calls`.
    Counting,
    /// `stat --no-calls`: a record per event, with the file name and the owner.
    Events,
    /// `stat --no-calls --attach classic`: the same from the classic tracepoint programs
    /// (the record the kernel builds), to compare the two ways of reading the tracepoints.
    EventsClassic,
    /// `stat`: records and the errno join (the call hooks).
    Default,
    /// bpftrace `@[args->result] = count()` per tracepoint, `/pid == P/`.
    BpftraceCounting,
    /// bpftrace counting by result and joining each call's errno with its last event's result.
    BpftraceJoin,
    /// An empty program of this kind on the same tracepoints (fexit: on madvise_collapse).
    Empty(Kind),
}

impl Tracer {
    /// Our stat options for this mode (`None`: not one of ours).
    fn ours_args(self) -> Option<&'static [&'static str]> {
        match self {
            Tracer::Counting => Some(&["--no-events", "--no-calls"]),
            Tracer::Events => Some(&["--no-calls"]),
            Tracer::EventsClassic => Some(&["--no-calls", "--attach", "classic"]),
            Tracer::Default => Some(&[]),
            _ => None,
        }
    }

    pub fn describe(self) -> String {
        match self {
            Tracer::None => "no tracer".into(),
            Tracer::Counting => "ours, counting (stat --no-events --no-calls)".into(),
            Tracer::Events => "ours, events (stat --no-calls)".into(),
            Tracer::EventsClassic => {
                "ours, events from the classic programs (stat --no-calls --attach classic)".into()
            }
            Tracer::Default => "ours, default (stat: events and the errno join)".into(),
            Tracer::BpftraceCounting => "bpftrace counting by result".into(),
            Tracer::BpftraceJoin => "bpftrace counting and joining the errno".into(),
            Tracer::Empty(k) => format!("an empty {} program", k.name()),
        }
    }
}

/// The hook bpftrace's join takes the call's result from, best first: what a bpftrace user
/// would write on this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum JoinHook {
    /// `kretfunc:madvise_collapse` (BPF trampolines: our default mode's fexit too).
    Kretfunc,
    /// `kretprobe:madvise_collapse`.
    Kretprobe,
    /// `sys_enter_madvise` (remembers MADV_COLLAPSE calls per thread) and `sys_exit_madvise`,
    /// where neither of the others is available (our default mode then hooks the syscall
    /// exit too).
    Syscalls,
}

impl JoinHook {
    /// Probes bpftrace attaches with this hook: two tracepoints plus the call hooks.
    fn probes(self) -> usize {
        match self {
            JoinHook::Kretfunc | JoinHook::Kretprobe => 3,
            JoinHook::Syscalls => 4,
        }
    }
}

/// Picks the join hook from `bpftrace --info`'s text and whether the kernel has kprobes and
/// the function.
pub fn pick_join_hook(bpftrace_info: &str, kprobes: bool, has_function: bool) -> JoinHook {
    let says_yes = |feature: &str| {
        bpftrace_info.lines().any(|l| {
            l.trim()
                .strip_prefix(feature)
                .and_then(|r| r.strip_prefix(':'))
                .is_some_and(|v| v.trim() == "yes")
        })
    };
    if says_yes("kfunc") && has_function {
        JoinHook::Kretfunc
    } else if kprobes && has_function {
        JoinHook::Kretprobe
    } else {
        JoinHook::Syscalls
    }
}

/// The bpftrace peer's program: counts both tracepoints by result for one pid; with `join`,
/// also remembers each thread's last event result and counts calls by (that result, errno)
/// when the call returns, as our default mode joins a call's errno with its events.
pub fn bpftrace_script(pid: u32, join: Option<JoinHook>) -> String {
    let (scan, collapse) = (super::SCAN, super::COLLAPSE);
    let keep = if join.is_some() {
        " @last[tid] = args->result;"
    } else {
        ""
    };
    let mut s = format!(
        "tracepoint:huge_memory:{scan} /pid == {pid}/ {{ @scan[args->result] = count();{keep} }}\n\
         tracepoint:huge_memory:{collapse} /pid == {pid}/ {{ @collapse[args->result] = count();{keep} }}"
    );
    let count = "@join[@last[tid], -(int32)retval] = count(); delete(@last[tid]);";
    match join {
        None => {}
        Some(JoinHook::Kretfunc) => {
            s += &format!("\nkretfunc:madvise_collapse /pid == {pid}/ {{ {count} }}");
        }
        Some(JoinHook::Kretprobe) => {
            s += &format!("\nkretprobe:madvise_collapse /pid == {pid}/ {{ {count} }}");
        }
        Some(JoinHook::Syscalls) => {
            s += &format!(
                "\ntracepoint:syscalls:sys_enter_madvise /pid == {pid} && args->behavior == 25/ \
                 {{ @call[tid] = 1; }}\n\
                 tracepoint:syscalls:sys_exit_madvise /@call[tid]/ \
                 {{ @join[@last[tid], -args->ret] = count(); delete(@last[tid]); delete(@call[tid]); }}"
            );
        }
    }
    s
}

/// One storm under one configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub rotation: usize,
    /// Place in the rotation's order (0 = first).
    pub position: usize,
    pub tracer: Tracer,
    pub range: Range,
    /// Calls inside the timed loop (a collapsed range's first, real collapse is before it).
    pub loop_calls: u64,
    pub loop_us: u64,
    pub loop_cpu_ns: u64,
    /// The storm thread's CPU time per call in the step, the median of its sub-batches: the
    /// figure every overhead is taken from (on a busy machine the wall time also holds other
    /// tasks' turns).
    pub ns_per_call: f64,
    /// Wall time per call in the loop, for comparison.
    pub wall_ns_per_call: f64,
    /// The step's sub-batches: (the storm's CPU ns per call, the calibration loop's ns
    /// after it). The calibration (dependent loads through 8 MiB, no system call) tells the
    /// machine's speed at the time, which the tracers do not touch.
    #[serde(default)]
    pub parts: Vec<[f64; 2]>,
}

/// The machine's state for a sub-batch: fast when its calibration is within this factor of
/// the fastest ones of its range, else slow. This guest's vCPU switches every few seconds
/// between two states (the same no-tracer calls took ~500 or ~770 ns, the calibration's
/// 4096 dependent loads ~50 or ~700 us: the data near the CPU or not), and a traced run is
/// compared with baselines in the same state. Where the machine holds still, all is fast.
pub const PHASE_FACTOR: f64 = 2.0;

/// Each run's time per call in each machine state, `[fast, slow]`: the median of its
/// sub-batches in that state, where at least a quarter of them (and two) are; a run without
/// calibration is all fast, at its own median.
pub fn state_times(runs: &[Run]) -> Vec<([Option<f64>; 2], [usize; 2])> {
    let mut floor: BTreeMap<Range, f64> = BTreeMap::new();
    for range in [Range::Collapsed, Range::Empty] {
        let mut cal: Vec<f64> = runs
            .iter()
            .filter(|r| r.range == range)
            .flat_map(|r| r.parts.iter().map(|p| p[1]))
            .filter(|c| *c > 0.0)
            .collect();
        cal.sort_by(f64::total_cmp);
        if !cal.is_empty() {
            // The 5th percentile: the fast state, not one lucky sub-batch.
            floor.insert(range, cal[cal.len() / 20]);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    runs.iter()
        .map(|r| {
            let Some(&f) = floor.get(&r.range).filter(|_| !r.parts.is_empty()) else {
                return ([Some(r.ns_per_call), None], [1, 0]);
            };
            let (fast, slow): (Vec<&[f64; 2]>, Vec<&[f64; 2]>) =
                r.parts.iter().partition(|p| p[1] <= f * PHASE_FACTOR);
            let time = |v: Vec<&[f64; 2]>| {
                (v.len() >= 2 && v.len() * 4 >= r.parts.len())
                    .then(|| median(v.iter().map(|p| p[0]).collect()))
            };
            let counts = [fast.len(), slow.len()];
            ([time(fast), time(slow)], counts)
        })
        .collect()
}

/// One configuration's figures on one range.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub tracer: Tracer,
    pub range: Range,
    pub ns_per_call: Option<Spread>,
    /// Minus the no-tracer time of the same rotation.
    pub overhead_ns_per_call: Option<Spread>,
    pub overhead_ns_per_event: Option<Spread>,
}

/// One `overhead MODE:` comparison on one range.
#[derive(Debug, Clone, Serialize)]
pub struct ModeFigure {
    /// `counting`, `events`, `default` or `join`.
    pub mode: &'static str,
    pub range: Range,
    pub ours: Tracer,
    pub peer: Tracer,
    pub ours_ns_per_event: Option<Spread>,
    pub bpftrace_ns_per_event: Option<Spread>,
    /// Per rotation: our overhead / the peer's.
    pub ratio: Option<Spread>,
}

/// An attach kind's empty program, or why this kernel has none.
#[derive(Debug, Clone, Serialize)]
pub struct Floor {
    pub kind: Kind,
    pub unavailable: Option<String>,
}

/// The overhead part's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Overhead {
    pub rotations: usize,
    /// Calls per storm, by range.
    pub calls: BTreeMap<&'static str, u64>,
    pub join_hook: JoinHook,
    /// The kind of program our counting mode attaches to the huge_memory tracepoints.
    pub ours_kind: Option<Kind>,
    /// The kind of MADV_COLLAPSE call hook our default mode attached: `fexit` or
    /// `sys-exit` (the classic `sys_exit_madvise`).
    pub ours_call_kind: Option<Kind>,
    pub floors: Vec<Floor>,
    /// The 1-minute load average before and after the part: other work on the machine
    /// widens the spreads.
    pub load_average: [f64; 2],
    pub figures: Vec<Figure>,
    pub modes: Vec<ModeFigure>,
    pub runs: Vec<Run>,
}

/// The comparisons: (mode, ours, peer).
pub const MODES: [(&str, Tracer, Tracer); 5] = [
    ("counting", Tracer::Counting, Tracer::BpftraceCounting),
    ("events", Tracer::Events, Tracer::BpftraceCounting),
    (
        "events-classic",
        Tracer::EventsClassic,
        Tracer::BpftraceCounting,
    ),
    ("default", Tracer::Default, Tracer::BpftraceCounting),
    ("join", Tracer::Default, Tracer::BpftraceJoin),
];

impl Range {
    /// Events per call of the timed loop.
    pub fn events_per_loop_call(self) -> f64 {
        match self {
            Range::Collapsed => 1.0,
            Range::Empty => 2.0,
        }
    }
}

/// Figures and comparisons from the runs (pure: unit-tested). A traced run's overhead is its
/// time minus the mean of the no-tracer runs next to it in the same rotation (the one before
/// and the one after it; one of them at an end): the machine's speed drifts by seconds (here
/// it halved and came back within one rotation), and neighbours share its state.
pub fn summarize(runs: &[Run]) -> (Vec<Figure>, Vec<ModeFigure>) {
    let states = state_times(runs);
    let time = |i: usize, state: usize| states[i].0[state];
    // (range, rotation) -> the runs' indices, in their order
    let mut groups: BTreeMap<(Range, usize), Vec<usize>> = BTreeMap::new();
    for (i, r) in runs.iter().enumerate() {
        groups.entry((r.range, r.rotation)).or_default().push(i);
    }
    // (range, rotation) -> tracer -> overhead ns/call
    let mut by: BTreeMap<(Range, usize), BTreeMap<Tracer, f64>> = BTreeMap::new();
    for (key, group) in &mut groups {
        group.sort_by_key(|&i| runs[i].position);
        for (at, &ri) in group.iter().enumerate() {
            let r = &runs[ri];
            if r.tracer == Tracer::None {
                continue;
            }
            // The state the run spent more of its time in first.
            let n = states[ri].1;
            let order = if n[1] > n[0] { [1, 0] } else { [0, 1] };
            for state in order {
                let Some(t) = time(ri, state) else { continue };
                // The nearest baseline on each side with a time in the same state.
                let baseline = |&b: &usize| runs[b].tracer == Tracer::None;
                let before = group[..at]
                    .iter()
                    .rev()
                    .filter(|b| baseline(b))
                    .find_map(|&b| time(b, state));
                let after = group[at + 1..]
                    .iter()
                    .filter(|b| baseline(b))
                    .find_map(|&b| time(b, state));
                let base: Vec<f64> = before.into_iter().chain(after).collect();
                if !base.is_empty() {
                    let base = base.iter().sum::<f64>() / base.len() as f64;
                    by.entry(*key).or_default().insert(r.tracer, t - base);
                    break;
                }
            }
        }
    }
    let overhead = |range: Range, rot: usize, t: Tracer| -> Option<f64> {
        by.get(&(range, rot))?.get(&t).copied()
    };
    let rotations = |range: Range| -> Vec<usize> {
        groups
            .keys()
            .filter(|(r, _)| *r == range)
            .map(|(_, rot)| *rot)
            .collect()
    };
    let mut figures = Vec::new();
    let mut modes = Vec::new();
    for range in [Range::Collapsed, Range::Empty] {
        let rots = rotations(range);
        let mut tracers: Vec<Tracer> = runs
            .iter()
            .filter(|r| r.range == range)
            .map(|r| r.tracer)
            .collect();
        tracers.sort();
        tracers.dedup();
        let per_event = range.events_per_loop_call();
        for t in tracers {
            let times: Vec<f64> = runs
                .iter()
                .filter(|r| r.range == range && r.tracer == t)
                .map(|r| r.ns_per_call)
                .collect();
            let over: Vec<f64> = rots.iter().filter_map(|&i| overhead(range, i, t)).collect();
            let over_ev: Vec<f64> = over.iter().map(|o| o / per_event).collect();
            figures.push(Figure {
                tracer: t,
                range,
                ns_per_call: Spread::of(&times),
                overhead_ns_per_call: (t != Tracer::None).then(|| Spread::of(&over)).flatten(),
                overhead_ns_per_event: (t != Tracer::None).then(|| Spread::of(&over_ev)).flatten(),
            });
        }
        for (mode, ours, peer) in MODES {
            let (mut o, mut p, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
            for &i in &rots {
                let (a, b) = (overhead(range, i, ours), overhead(range, i, peer));
                o.extend(a.map(|a| a / per_event));
                p.extend(b.map(|b| b / per_event));
                if let (Some(a), Some(b)) = (a, b) {
                    ratio.push(a / b);
                }
            }
            modes.push(ModeFigure {
                mode,
                range,
                ours,
                peer,
                ours_ns_per_event: Spread::of(&o),
                bpftrace_ns_per_event: Spread::of(&p),
                ratio: Spread::of(&ratio),
            });
        }
    }
    (figures, modes)
}

/// `overhead MODE: ours N ns/event, bpftrace M ns/event, ratio R (min-max)`.
pub fn mode_line(m: &ModeFigure) -> String {
    let ns = |s: &Option<Spread>| s.map_or("-".into(), |s| format!("{:.0}", s.median));
    format!(
        "overhead {}: ours {} ns/event, bpftrace {} ns/event, ratio {}{}",
        m.mode,
        ns(&m.ours_ns_per_event),
        ns(&m.bpftrace_ns_per_event),
        m.ratio.map_or("-".into(), |r| r.show(2)),
        // Rotations where both had a baseline at their machine speed.
        m.ratio.map_or(String::new(), |r| format!(" n={}", r.n))
    )
}

/// `floor KIND: N ns/event (min-max)`, or why the kind is not available.
pub fn floor_line(kind: Kind, figure: Option<&Figure>, unavailable: Option<&str>) -> String {
    match (unavailable, figure.and_then(|f| f.overhead_ns_per_event)) {
        (Some(why), _) => format!("floor {}: not available here ({why})", kind.name()),
        (None, Some(s)) => format!(
            "floor {}: {:.0} ns/event ({:.0}-{:.0})",
            kind.name(),
            s.median,
            s.min,
            s.max
        ),
        (None, None) => format!("floor {}: -", kind.name()),
    }
}

/// Calls per storm on `range`: the collapsed range's calls take ~1 us, the empty range's ~9
/// (both tracepoints and a failed collapse), so it makes an eighth as many for a similar time.
pub fn calls_for(range: Range, collapsed_calls: u64) -> u64 {
    match range {
        Range::Collapsed => collapsed_calls,
        Range::Empty => (collapsed_calls / 8).max(1000),
    }
}

/// A rotation's runs: a no-tracer run first, last and between every two traced ones, so each
/// traced run has a baseline on both sides (see [`summarize`]).
pub fn with_baselines(order: &[Tracer]) -> Vec<Tracer> {
    let mut v = vec![Tracer::None];
    for &t in order {
        v.extend([t, Tracer::None]);
    }
    v
}

/// The configurations of one rotation, in rotation `r`'s order: the list rotated left by r.
pub fn rotation_order(tracers: &[Tracer], r: usize) -> Vec<Tracer> {
    let mut v = tracers.to_vec();
    if !v.is_empty() {
        let n = v.len();
        v.rotate_left(r % n);
    }
    v
}

impl Bench<'_> {
    /// The overhead part: `reps` rotations over both ranges.
    pub(super) fn overhead(&self) -> Result<Overhead> {
        let env = self.env;
        let collapsed_calls = self.args.overhead_calls;
        // Rotations are cheap next to the other parts' repetitions, and the machine's states
        // leave some comparisons out: about twice as many (9 by default, 5 with --quick).
        let rotations = (self.args.reps * 2).saturating_sub(1).max(1);
        let join_hook = detect_join_hook(env);
        let load_before = super::procs::load_average().0;
        println!(
            "\n== workload overhead: the storm's time per call, {rotations} rotations, {} + {} calls per storm (collapsed, empty range); bpftrace's join on {join_hook:?}; load average {load_before:.1}",
            calls_for(Range::Collapsed, collapsed_calls),
            calls_for(Range::Empty, collapsed_calls),
        );
        // Which kinds this kernel lets us attach (a trial load and attach of each).
        let floors: Vec<Floor> = Kind::ALL
            .iter()
            .map(|&kind| Floor {
                kind,
                unavailable: empty::Empty::attach(kind).err().map(|e| format!("{e:#}")),
            })
            .collect();
        for f in floors.iter().filter(|f| f.unavailable.is_some()) {
            println!(
                "  no empty {} program on this kernel: {}",
                f.kind.name(),
                f.unavailable.as_deref().unwrap_or_default()
            );
        }
        // Rotated; a no-tracer run goes between every two (see `with_baselines`).
        let mut tracers = vec![
            Tracer::Counting,
            Tracer::BpftraceCounting,
            Tracer::Events,
            Tracer::BpftraceJoin,
            Tracer::EventsClassic,
            Tracer::Default,
        ];
        tracers.extend(
            floors
                .iter()
                .filter(|f| f.unavailable.is_none())
                .map(|f| Tracer::Empty(f.kind)),
        );
        // One stepped storm per range for the whole part (see stepped.rs), each warmed by an
        // untimed step first.
        // `--quick`: the collapsed range alone, the one the goals are judged on.
        let measured: &[Range] = if self.args.quick {
            &[Range::Collapsed]
        } else {
            &[Range::Collapsed, Range::Empty]
        };
        let mut storms = BTreeMap::new();
        for &range in measured {
            let mut st = Stepped::spawn(self.storm_command(), range)?;
            st.step(calls_for(range, collapsed_calls))?;
            storms.insert(range.arg(), st);
        }
        let mut runs = Vec::new();
        let (mut ours_kind, mut ours_call_kind) = (None, None);
        for rot in 0..rotations {
            let mut ranges = measured.to_vec();
            if rot % 2 == 1 {
                ranges.reverse();
            }
            for range in ranges {
                let mut line = Vec::new();
                for (position, tracer) in with_baselines(&rotation_order(&tracers, rot))
                    .into_iter()
                    .enumerate()
                {
                    let calls = calls_for(range, collapsed_calls);
                    let storm = storms.get_mut(range.arg()).expect("a storm per range");
                    let (run, kinds) = self.overhead_run(storm, tracer, calls, join_hook)?;
                    ours_kind = ours_kind.or(kinds.events);
                    ours_call_kind = ours_call_kind.or(kinds.calls);
                    let cal = run.parts.iter().map(|p| p[1]).fold(f64::INFINITY, f64::min);
                    line.push(format!(
                        "{:?} {:.0} ({:.2})",
                        tracer,
                        run.ns_per_call,
                        cal / 1000.0
                    ));
                    runs.push(Run {
                        rotation: rot,
                        position,
                        ..run
                    });
                }
                println!(
                    "  rotation {} {:?} range, ns/call (fastest calibration, us): {}",
                    rot + 1,
                    range,
                    line.join(", ")
                );
            }
        }
        for (_, st) in storms {
            let tally = st.finish()?;
            ensure!(
                tally.calls > 0,
                "a stepped storm made no call: its tally says {tally:?}"
            );
        }
        let (figures, modes) = summarize(&runs);
        let o = Overhead {
            rotations,
            calls: BTreeMap::from([
                ("collapsed", calls_for(Range::Collapsed, collapsed_calls)),
                ("empty", calls_for(Range::Empty, collapsed_calls)),
            ]),
            join_hook,
            ours_kind,
            ours_call_kind,
            floors,
            load_average: [load_before, super::procs::load_average().0],
            figures,
            modes,
            runs,
        };
        print_lines(&o);
        Ok(o)
    }

    /// The stepped storm's command: `SCHED_FIFO` on the last CPU (chrt and taskset exec it:
    /// same pid), so other tasks neither take turns on its CPU nor evict its caches between
    /// calls; the kernel's RT throttling still leaves them 5% of it. The tracers' own
    /// processes run on the other CPUs.
    fn storm_command(&self) -> std::process::Command {
        let cpu = std::thread::available_parallelism().map_or(1, |n| n.get()) - 1;
        let mut cmd = self.env.command("chrt");
        cmd.args(["--fifo", "1", "taskset", "--cpu-list", &cpu.to_string()])
            .arg(&self.bin);
        cmd
    }

    /// One step of `calls` calls of `storm` under `tracer` (attached before the step, stopped
    /// after it); returns the run (rotation and position unset) and, for our counting and
    /// default modes, the kinds of program they attached.
    fn overhead_run(
        &self,
        storm: &mut Stepped,
        tracer: Tracer,
        calls: u64,
        join: JoinHook,
    ) -> Result<(Run, OursKinds)> {
        check_interrupted()?;
        let (pid, range) = (storm.pid(), storm.range);
        let mut kinds = OursKinds::default();
        let mut empty_progs = None;
        let mut tool = match tracer {
            Tracer::None => None,
            Tracer::Empty(k) => {
                empty_progs = Some(empty::Empty::attach(k)?);
                None
            }
            Tracer::BpftraceCounting | Tracer::BpftraceJoin => {
                let hook = (tracer == Tracer::BpftraceJoin).then_some(join);
                let mut p = self.bpftrace_program(&bpftrace_script(pid, hook))?;
                wait_probes(self.env, &mut p, hook.map_or(2, JoinHook::probes))?;
                Some(p)
            }
            ours => {
                let mut p = self.ours(pid, ours.ours_args().unwrap_or_default())?;
                p.wait_stderr("attached to", Duration::from_secs(30))?;
                if matches!(ours, Tracer::Counting | Tracer::Default) {
                    kinds = ours_program_kinds(self.env, p.pid())?;
                }
                Some(p)
            }
        };
        let step = storm.step(calls)?;
        drop(empty_progs);
        ensure!(
            step.calls == calls,
            "the storm made {} calls of {calls}",
            step.calls
        );
        // The collapsed range was collapsed before the first step: one event per call.
        let expect = (range.events_per_loop_call() * calls as f64) as u64;
        if let Some(p) = tool.take() {
            let is_bpftrace = p.name == "bpftrace";
            let out = p.stop()?;
            // Every tracer must have seen the whole storm, or its time means nothing.
            if is_bpftrace {
                let maps = parse::bpftrace_map_totals(&out);
                let seen = maps.get("scan").copied().unwrap_or(0)
                    + maps.get("collapse").copied().unwrap_or(0);
                ensure!(
                    seen == expect,
                    "bpftrace counted {seen} events, the storm made {expect}"
                );
                if tracer == Tracer::BpftraceJoin {
                    let joined = maps.get("join").copied().unwrap_or(0);
                    ensure!(
                        joined == calls,
                        "bpftrace joined {joined} calls, the storm made {calls}"
                    );
                }
            } else {
                let totals = parse::stat_totals(&out)?;
                ensure!(
                    totals.events == expect,
                    "ours counted {} events, the storm made {expect}",
                    totals.events
                );
            }
        }
        ensure!(step.cpu_ns > 0, "the storm made no timed call");
        Ok((
            Run {
                rotation: 0,
                position: 0,
                tracer,
                range,
                loop_calls: calls,
                loop_us: step.wall_ns / 1000,
                loop_cpu_ns: step.cpu_ns,
                ns_per_call: step.ns_per_call(),
                wall_ns_per_call: step.wall_ns as f64 / calls as f64,
                parts: step
                    .part_cpu_ns_per_call
                    .iter()
                    .zip(
                        step.part_calibration_ns
                            .iter()
                            .chain(std::iter::repeat(&0.0)),
                    )
                    .map(|(&a, &b)| [a, b])
                    .collect(),
            },
            kinds,
        ))
    }
}

/// Prints the `overhead MODE:` lines (collapsed range: one event per call, the issue's
/// reference), the same on the empty range indented, and the `floor KIND:` lines.
pub fn print_lines(o: &Overhead) {
    println!(
        "\nworkload overhead, collapsed range (1 event per call), median of {} rotations, ratio per rotation (min-max):",
        o.rotations
    );
    for m in o.modes.iter().filter(|m| m.range == Range::Collapsed) {
        println!("{}", mode_line(m));
    }
    for f in &o.floors {
        let fig = o
            .figures
            .iter()
            .find(|x| x.range == Range::Collapsed && x.tracer == Tracer::Empty(f.kind));
        println!("{}", floor_line(f.kind, fig, f.unavailable.as_deref()));
    }
    println!("the same on the empty range (2 events per call):");
    for m in o.modes.iter().filter(|m| m.range == Range::Empty) {
        println!("  {}", mode_line(m));
    }
    for f in o.floors.iter().filter(|f| f.unavailable.is_none()) {
        let fig = o
            .figures
            .iter()
            .find(|x| x.range == Range::Empty && x.tracer == Tracer::Empty(f.kind));
        println!("  {}", floor_line(f.kind, fig, None));
    }
    if let Some(k) = o.ours_kind {
        println!("our counting mode attaches {} programs", k.name());
    }
    if let Some(k) = o.ours_call_kind {
        println!("our default mode's MADV_COLLAPSE call hook: {}", k.name());
    }
    println!(
        "load average {:.1} before, {:.1} after",
        o.load_average[0], o.load_average[1]
    );
}

/// bpftrace's join hook on this machine (printed by the caller).
fn detect_join_hook(env: &Env) -> JoinHook {
    let info = output(env.command("bpftrace").arg("--info")).unwrap_or_default();
    // bpftrace's own "kprobe: yes" only says the kernel knows the program type; the
    // perf event source exists only with CONFIG_KPROBES.
    let kprobes = Path::new("/sys/bus/event_source/devices/kprobe").exists();
    let has_function = std::fs::read_to_string("/proc/kallsyms").is_ok_and(|s| {
        s.lines()
            .any(|l| l.split_whitespace().nth(2) == Some("madvise_collapse"))
    });
    pick_join_hook(&info, kprobes, has_function)
}

/// Waits until bpftrace `p` has `probes` programs attached: perf events of any kind
/// (tracepoints, kprobes) that `bpftool perf show` lists for it, plus BPF links it holds
/// (kretfunc). bpftrace's "Attaching N probes..." comes before it attaches.
fn wait_probes(env: &Env, p: &mut Proc, probes: usize) -> Result<()> {
    let end = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let json = output(env.command("bpftool").args(["-j", "perf", "show"]))?;
        let perf = parse::perf_attachments_of(&json, p.pid())?;
        let links = std::fs::read_dir(format!("/proc/{}/fd", p.pid()))
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        std::fs::read_link(e.path())
                            .is_ok_and(|t| t.as_os_str() == "anon_inode:bpf_link")
                    })
                    .count()
            })
            .unwrap_or(0);
        if perf + links >= probes {
            return Ok(());
        }
        p.check_running()?;
        check_interrupted()?;
        ensure!(
            std::time::Instant::now() < end,
            "bpftrace did not attach {probes} probes within 30 s:\n{}",
            p.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The kinds of program one of our runs attached.
#[derive(Debug, Default, Clone, Copy)]
struct OursKinds {
    /// On the huge_memory tracepoints.
    events: Option<Kind>,
    /// The MADV_COLLAPSE call hook (none without the call hooks).
    calls: Option<Kind>,
}

/// The kinds of program process `pid` (ours) attached, by the names of its programs.
fn ours_program_kinds(env: &Env, pid: u32) -> Result<OursKinds> {
    let progs = prog_stats(env)?;
    let mut kinds = OursKinds::default();
    for info in prog_fd_infos(pid) {
        let p = progs
            .get(&info.prog_id)
            .context("our program is not in bpftool's list")?;
        match p.name.as_str() {
            // `scan_file` (classic) or `scan_file_btf` (BTF-typed), whichever it attached.
            "scan_file" | "scan_file_btf" => kinds.events = Kind::of_prog_type(&p.prog_type),
            "exit_madvise" => kinds.calls = Some(Kind::SysExit),
            // madvise_collapse_exit[_prev], cut to 15 bytes where bpftool has no BTF name.
            n if n.starts_with("madvise_collaps") => kinds.calls = Some(Kind::Fexit),
            _ => {}
        }
    }
    Ok(kinds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rotation: usize, tracer: Tracer, range: Range, ns: f64) -> Run {
        // Positions in the order the runs are made.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        Run {
            rotation,
            position: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            tracer,
            range,
            loop_calls: 1000,
            loop_us: ns as u64,
            loop_cpu_ns: ns as u64 * 1000,
            ns_per_call: ns,
            wall_ns_per_call: ns,
            parts: vec![],
        }
    }

    #[test]
    fn overhead_is_against_the_same_rotation_and_ratio_per_rotation() {
        use Tracer::*;
        let mut runs = Vec::new();
        // Rotation 0: baseline 1000; rotation 1: the whole machine 200 ns slower.
        for (rot, base) in [(0, 1000.0), (1, 1200.0), (2, 1100.0)] {
            runs.push(run(rot, None, Range::Collapsed, base));
            runs.push(run(rot, Counting, Range::Collapsed, base + 100.0));
            runs.push(run(rot, BpftraceCounting, Range::Collapsed, base + 500.0));
            runs.push(run(rot, Default, Range::Collapsed, base + 250.0));
            runs.push(run(rot, BpftraceJoin, Range::Collapsed, base + 1000.0));
            runs.push(run(rot, None, Range::Empty, 9000.0));
            runs.push(run(
                rot,
                Counting,
                Range::Empty,
                9000.0 + 40.0 * (rot as f64 + 1.0),
            ));
            runs.push(run(rot, BpftraceCounting, Range::Empty, 9400.0));
        }
        let (figures, modes) = summarize(&runs);
        let m = |mode: &str, range| {
            modes
                .iter()
                .find(|m| m.mode == mode && m.range == range)
                .unwrap()
        };
        let c = m("counting", Range::Collapsed);
        assert_eq!(c.ours_ns_per_event.unwrap().median, 100.0);
        assert_eq!(c.bpftrace_ns_per_event.unwrap().median, 500.0);
        assert_eq!(c.ratio.unwrap().show(2), "0.20 (0.20-0.20)");
        assert_eq!(
            mode_line(c),
            "overhead counting: ours 100 ns/event, bpftrace 500 ns/event, ratio 0.20 (0.20-0.20) n=3"
        );
        assert_eq!(m("join", Range::Collapsed).ratio.unwrap().median, 0.25);
        assert_eq!(m("default", Range::Collapsed).ratio.unwrap().median, 0.5);
        // Per event on the empty range: two events per call.
        let e = m("counting", Range::Empty);
        assert_eq!(e.ours_ns_per_event.unwrap().show(0), "40 (20-60)");
        assert_eq!(e.bpftrace_ns_per_event.unwrap().median, 200.0);
        assert_eq!(e.ratio.unwrap().show(1), "0.2 (0.1-0.3)");
        // A mode without its runs has no figures, not zeros.
        assert!(m("events", Range::Collapsed).ratio.is_none());
        let none = figures
            .iter()
            .find(|f| f.tracer == None && f.range == Range::Collapsed)
            .unwrap();
        assert_eq!(none.ns_per_call.unwrap().show(0), "1100 (1000-1200)");
        assert!(none.overhead_ns_per_call.is_none());
        let per_call = figures
            .iter()
            .find(|f| f.tracer == Counting && f.range == Range::Empty)
            .unwrap();
        assert_eq!(per_call.overhead_ns_per_call.unwrap().median, 80.0);
    }

    #[test]
    fn a_drifting_machine_is_measured_against_the_runs_next_to_it() {
        use Tracer::*;
        // The machine slows from 1000 to 2000 ns/call half-way; each tracer adds 100.
        let runs = [
            run(0, None, Range::Collapsed, 1000.0),
            run(0, Counting, Range::Collapsed, 1100.0),
            run(0, None, Range::Collapsed, 1000.0),
            run(0, BpftraceCounting, Range::Collapsed, 2100.0),
            run(0, None, Range::Collapsed, 2000.0),
        ];
        let (_, modes) = summarize(&runs);
        let c = modes
            .iter()
            .find(|m| m.mode == "counting" && m.range == Range::Collapsed)
            .unwrap();
        assert_eq!(c.ours_ns_per_event.unwrap().median, 100.0);
        // Across the step: against the mean of 1000 and 2000, half the step's error (against
        // the rotation's first no-tracer run alone it would read 1100).
        assert_eq!(c.bpftrace_ns_per_event.unwrap().median, 600.0);
        assert_eq!(
            with_baselines(&[Counting, Events]),
            vec![None, Counting, None, Events, None]
        );
    }

    #[test]
    fn traced_runs_are_compared_with_baselines_in_the_same_machine_state() {
        use Tracer::*;
        // Sub-batches (ns/call, calibration): 1000 calibration = fast, 3000 = slow.
        let at = |tracer, parts: &[[f64; 2]]| Run {
            parts: parts.to_vec(),
            ..run(0, tracer, Range::Collapsed, 9999.0)
        };
        let fast = |ns: f64| [ns, 1000.0];
        let slow = |ns: f64| [ns, 3000.0];
        let runs = [
            at(None, &[fast(500.0), fast(502.0), slow(800.0)]),
            // Half fast: its fast sub-batches count (530 against 501 before, 500 after); the
            // single slow sub-batch of the first baseline is too few to count.
            at(
                Counting,
                &[slow(840.0), fast(530.0), slow(850.0), fast(530.0)],
            ),
            at(None, &[fast(500.0), fast(500.0), fast(500.0)]),
            // All slow.
            at(BpftraceCounting, &[slow(900.0), slow(900.0)]),
            at(None, &[slow(800.0), slow(800.0)]),
            at(Events, &[fast(620.0), fast(620.0)]),
            at(None, &[fast(480.0), fast(480.0)]),
        ];
        let (figures, modes) = summarize(&runs);
        let c = modes
            .iter()
            .find(|m| m.mode == "counting" && m.range == Range::Collapsed)
            .unwrap();
        assert_eq!(c.ours_ns_per_event.unwrap().median, 29.5);
        // All slow: against the next slow baseline (800), not the fast ones around it.
        assert_eq!(c.bpftrace_ns_per_event.unwrap().median, 100.0);
        // Events: against 500 (the fast baseline before the skipped one) and 480.
        let events = figures.iter().find(|f| f.tracer == Events).unwrap();
        assert_eq!(events.overhead_ns_per_call.unwrap().median, 130.0);
    }

    #[test]
    fn floor_lines() {
        let fig = Figure {
            tracer: Tracer::Empty(Kind::TpBtf),
            range: Range::Collapsed,
            ns_per_call: None,
            overhead_ns_per_call: None,
            overhead_ns_per_event: Spread::of(&[35.0, 30.0, 41.0]),
        };
        assert_eq!(
            floor_line(Kind::TpBtf, Some(&fig), None),
            "floor tp_btf: 35 ns/event (30-41)"
        );
        assert_eq!(
            floor_line(Kind::Fexit, None, Some("BPF_PROG_LOAD failed")),
            "floor fexit: not available here (BPF_PROG_LOAD failed)"
        );
    }

    #[test]
    fn rotations_rotate_and_calls_scale() {
        use Tracer::*;
        let t = [None, Counting, Events];
        assert_eq!(rotation_order(&t, 0), vec![None, Counting, Events]);
        assert_eq!(rotation_order(&t, 1), vec![Counting, Events, None]);
        assert_eq!(rotation_order(&t, 4), vec![Counting, Events, None]);
        assert_eq!(calls_for(Range::Collapsed, 800_000), 800_000);
        assert_eq!(calls_for(Range::Empty, 800_000), 100_000);
    }

    #[test]
    fn join_hook_is_the_best_the_machine_has() {
        let info =
            "System\n  OS: Linux 6.18\nKernel features\n  btf: yes\n  kfunc: no\n  kprobe: yes\n";
        assert_eq!(pick_join_hook(info, false, true), JoinHook::Syscalls);
        assert_eq!(pick_join_hook(info, true, true), JoinHook::Kretprobe);
        let kfunc = info.replace("kfunc: no", "kfunc: yes");
        assert_eq!(pick_join_hook(&kfunc, false, true), JoinHook::Kretfunc);
        assert_eq!(pick_join_hook(&kfunc, true, false), JoinHook::Syscalls);
    }

    #[test]
    fn bpftrace_scripts() {
        let counting = bpftrace_script(42, Option::None);
        assert_eq!(counting.lines().count(), 2);
        assert!(counting.contains("/pid == 42/ { @scan[args->result] = count(); }"));
        let join = bpftrace_script(42, Some(JoinHook::Syscalls));
        assert!(join.contains("@collapse[args->result] = count(); @last[tid] = args->result;"));
        assert!(join.contains("args->behavior == 25"));
        assert!(join.contains("@join[@last[tid], -args->ret] = count()"));
        let kret = bpftrace_script(42, Some(JoinHook::Kretprobe));
        assert!(kret.contains(
            "kretprobe:madvise_collapse /pid == 42/ { @join[@last[tid], -(int32)retval]"
        ));
        assert_eq!(JoinHook::Syscalls.probes(), join.lines().count());
        assert_eq!(JoinHook::Kretprobe.probes(), kret.lines().count());
    }
}
