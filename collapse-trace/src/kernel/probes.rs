//! Loads the embedded eBPF object with the running kernel's layouts, attaches what the
//! kernel has, and reads the counters back.

use std::path::PathBuf;

use aya::{
    Ebpf,
    maps::{Array, MapData, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, FExit, ProgramError, TracePoint},
};
use collapse_trace_common::{
    BTF_VARIANTS, COMM_LEN, COMPILED, Config, FIELD_ABSENT, Field, Layout, NUM_KINDS, Probe,
    RESULT_SLOTS, RecordKind, maps, ring_slots,
};

use super::{KernelError, btf, caps::check_privileges, loader, rings::RingMaps, tracefs::Tracefs};
use crate::model::{
    aggregate::KernelCounters,
    format::EventFormat,
    kernel_info::RingLayout,
    kernel_info::{BtfProgram, KernelInfo, ProbeInfo},
    results::{ResultSource, ResultTable},
};

/// The eBPF object, built by build.rs and embedded so the installed binary is one file.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/collapse-trace"));

/// What to load.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// Send one record per event (false: count only).
    pub events: bool,
    /// Hook the madvise/process_madvise syscalls to count MADV_COLLAPSE calls by errno and
    /// join them with their events (false: the huge_memory tracepoints only, cheapest).
    pub calls: bool,
    /// Only this process (in the kernel, so counters are exact for it).
    pub pid: Option<u32>,
    /// Only tasks with this comm (in the kernel).
    pub comm: Option<String>,
    /// Only events whose task or memory owner is in this cgroup v2 (its id: the inode number
    /// of its directory), in the kernel.
    pub cgroup: Option<u64>,
    /// Event ring bytes, all CPUs together (each CPU gets an equal share of whole records);
    /// `None`: [`collapse_trace_common::default_ring_bytes`] for the CPU count.
    pub ring_bytes: Option<u32>,
    /// Size the rings and the reader for this many possible CPUs instead of the machine's
    /// (at least as many): a big machine's ring memory and merge on a small one (testing).
    pub possible_cpus: Option<u32>,
    /// Turn on aya-log diagnostics from the kernel side (costs per event).
    pub kernel_log: bool,
    /// tracefs location override (tests with hand-made format files).
    pub tracefs: Option<PathBuf>,
    /// Read every field with `bpf_probe_read_kernel` even when the layout is the compiled
    /// one: the path a kernel with moved fields takes, exercised on this one by tests.
    pub force_probe_read: bool,
    /// Never ask for a wakeup (a stalled reader, for overflow tests).
    pub no_wakeup: bool,
    /// Read the clock for every record instead of once per tick (shared by all CPUs).
    pub precise_time: bool,
    /// How MADV_COLLAPSE calls are hooked.
    pub calls_via: CallsVia,
    /// How the huge_memory tracepoints are attached.
    pub attach_via: AttachVia,
}

/// How the huge_memory tracepoints are attached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachVia {
    /// BTF-typed raw tracepoints where BTF shows arguments a program is built for, else the
    /// classic tracepoint programs.
    #[default]
    Auto,
    /// BTF-typed raw tracepoints (the tracepoints' own arguments: the file's real name, its
    /// inode and directories; no record built); fail where one is not possible.
    Btf,
    /// Classic tracepoint programs, which read the record the kernel builds (its file name
    /// copies the dentry's inline buffer: stale for names over ~40 bytes).
    Classic,
}

/// How MADV_COLLAPSE calls are tracked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CallsVia {
    /// The fexit on madvise_collapse where the kernel allows it, else the syscall hooks.
    #[default]
    Auto,
    /// The fexit on madvise_collapse (runs for MADV_COLLAPSE only); fail where refused.
    Fexit,
    /// The madvise/process_madvise syscall hooks (run on every madvise(2)).
    Syscalls,
}

/// The fexit program for `madvise_collapse` whose `start` is argument `start_arg` (BTF):
/// `(vma, prev, start, end)` or `(vma, start, end, lock_dropped)`.
pub fn fexit_program(start_arg: u32) -> &'static str {
    if start_arg == 1 {
        "madvise_collapse_exit"
    } else {
        "madvise_collapse_exit_prev"
    }
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            events: true,
            calls: true,
            pid: None,
            comm: None,
            cgroup: None,
            ring_bytes: None,
            possible_cpus: None,
            kernel_log: false,
            tracefs: None,
            force_probe_read: false,
            no_wakeup: false,
            precise_time: false,
            calls_via: CallsVia::Auto,
            attach_via: AttachVia::Auto,
        }
    }
}

impl KernelInfo {
    /// Reads formats, BTF and names; loads nothing. Used by `doctor`.
    pub fn probe(tracefs: Option<&std::path::Path>) -> Result<KernelInfo, KernelError> {
        KernelInfo::probe_with(tracefs, btf::read_vmlinux_bytes().as_deref())
    }

    /// [`KernelInfo::probe`] with the kernel's BTF already read (or why it could not be),
    /// so that [`Probes::attach`] reads it once for this and for the loader.
    fn probe_with(
        tracefs: Option<&std::path::Path>,
        vmlinux: Result<&[u8], &anyhow::Error>,
    ) -> Result<KernelInfo, KernelError> {
        let fs = Tracefs::open(tracefs)?;
        let mut probes = Vec::new();
        for p in Probe::ALL {
            let format = fs.format(p.group(), p.name())?;
            let (layout, warnings, usable) = match &format {
                Some(f) => layout_from_format(p, f),
                None => (
                    Layout::ABSENT,
                    vec![format!(
                        "this kernel has no {}:{} tracepoint",
                        p.group(),
                        p.name()
                    )],
                    false,
                ),
            };
            probes.push(ProbeInfo {
                probe: p,
                format,
                layout,
                warnings,
                usable,
                attached: false,
                btf_variant: None,
                via_btf: false,
            });
        }
        // A call is only worth tracking with both its entry and its exit.
        for (enter, exit) in [
            (Probe::EnterMadvise, Probe::ExitMadvise),
            (Probe::EnterProcessMadvise, Probe::ExitProcessMadvise),
        ] {
            let both = probes[enter as usize].usable && probes[exit as usize].usable;
            probes[enter as usize].usable = both;
            probes[exit as usize].usable = both;
        }
        let kbtf = vmlinux
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .and_then(btf::parse)
            .inspect_err(|e| log::warn!("no BTF ({e:#}): origin will read `unknown`"))
            .unwrap_or_default();
        for p in probes
            .iter_mut()
            .filter(|p| p.probe.kind().is_huge_memory())
        {
            p.btf_variant = Some(btf_variant(p.probe, &kbtf));
        }
        let results = result_table(&probes, &kbtf);
        let mut info = KernelInfo {
            release: kernel_release(),
            tracepoints: Vec::new(),
            probes,
            results,
            task_flags_offset: kbtf.task_flags_offset,
            task_comm_offset: kbtf.task_comm_offset,
            task_pid_offsets: kbtf.task_pid_offset.zip(kbtf.task_tgid_offset),
            syscall_args: kbtf.syscall_args,
            fexit_start_arg: kbtf.madvise_collapse_start_arg(),
            calls_by_fexit: false,
            owner: kbtf.owner,
            file: kbtf.file,
            tracefs: fs.root().to_path_buf(),
            tracefs_mounted_by_us: fs.mounted_by_us,
            rings: None,
        };
        info.derive_kinds();
        Ok(info)
    }
}

/// The names: the tracepoints' own tables if any, else BTF's enum, else the built-in copy.
/// The BTF-typed program for `probe` on this kernel, or why there is none.
fn btf_variant(probe: Probe, kbtf: &btf::KernelBtf) -> Result<BtfProgram, String> {
    let args = kbtf
        .tracepoint_args
        .get(probe.name())
        .ok_or_else(|| format!("BTF has no prototype for {}", probe.name()))?;
    let m = btf::match_variant(probe, args)?;
    if probe.kind().carries(Field::Filename) && kbtf.file.is_none() {
        return Err("BTF lacks a member on the way from struct file to its name".into());
    }
    Ok(m)
}

fn result_table(probes: &[ProbeInfo], kbtf: &btf::KernelBtf) -> ResultTable {
    let names = names_from_formats(probes.iter().filter_map(|p| p.format.as_ref()));
    if !names.is_empty() {
        return ResultTable::new(ResultSource::Tracefs, names);
    }
    if !kbtf.scan_result.is_empty() {
        return ResultTable::new(ResultSource::Btf, kbtf.scan_result.clone());
    }
    log::warn!("{}", ResultSource::Builtin.describe());
    ResultTable::builtin()
}

/// The one reader of the tracepoints' result tables: every `__print_symbolic` of their
/// `result`/`status` fields, merged (a disagreement is logged, the first name kept).
fn names_from_formats<'a>(
    formats: impl Iterator<Item = &'a EventFormat>,
) -> std::collections::BTreeMap<i64, String> {
    let mut names = std::collections::BTreeMap::new();
    for f in formats {
        for field in ["result", "status"] {
            for (n, s) in f.symbols.get(field).into_iter().flatten() {
                match names.get(n) {
                    Some(old) if old != s => {
                        log::warn!("tracepoints disagree on result {n}: {old} vs {s}");
                    }
                    Some(_) => {}
                    None => {
                        names.insert(*n, s.clone());
                    }
                }
            }
        }
    }
    names
}

/// The result names of this machine's kernel, if tracefs is readable (never mounts it);
/// else the built-in table. Text captures carry names; this only numbers them (`report`).
pub fn local_result_table() -> ResultTable {
    let formats: Vec<EventFormat> = match Tracefs::find().map(|r| Tracefs::open(Some(&r))) {
        Some(Ok(fs)) => RecordKind::TRACEPOINTS
            .iter()
            .filter_map(|k| fs.format("huge_memory", k.name()).ok().flatten())
            .collect(),
        _ => Vec::new(),
    };
    let names = names_from_formats(formats.iter());
    if names.is_empty() {
        ResultTable::builtin()
    } else {
        ResultTable::new(ResultSource::Tracefs, names)
    }
}

/// The fields each program reads: (field, name in the format file, size, required).
fn wanted(p: Probe) -> &'static [(Field, &'static str, u32, bool)] {
    use Field::*;
    match p {
        Probe::ScanFile => &[
            (Result, "result", 4, true),
            (Filename, "filename", 4, false),
            (Pfn, "pfn", 8, false),
            (Mm, "mm", 8, false),
            (Present, "present", 4, false),
            (Swap, "swap", 4, false),
        ],
        Probe::CollapseFile => &[
            (Result, "result", 4, true),
            (Filename, "filename", 4, false),
            (Pfn, "hpfn", 8, false),
            (Mm, "mm", 8, false),
            (Index, "index", 8, false),
            (Addr, "addr", 8, false),
            (IsShmem, "is_shmem", 1, false),
            (Nr, "nr", 4, false),
        ],
        Probe::ScanPmd => &[
            (Result, "status", 4, true),
            (Pfn, "pfn", 8, false),
            (Mm, "mm", 8, false),
            (Referenced, "referenced", 4, false),
            (NoneOrZero, "none_or_zero", 4, false),
            (Unmapped, "unmapped", 4, false),
        ],
        Probe::CollapseHugePage => &[
            (Result, "status", 4, true),
            (Isolated, "isolated", 4, false),
            (Mm, "mm", 8, false),
        ],
        // Syscall tracepoints store every argument in 8 bytes.
        Probe::EnterMadvise => &[
            (Behavior, "behavior", 8, true),
            (Start, "start", 8, false),
            (Len, "len_in", 8, false),
        ],
        Probe::EnterProcessMadvise => &[(Behavior, "behavior", 8, true)],
        Probe::ExitMadvise | Probe::ExitProcessMadvise => &[(Ret, "ret", 8, true)],
    }
}

/// Builds the layout a program gets from its tracepoint's format, checking each field's
/// size. Returns the layout, warnings, and whether every required field is there.
pub fn layout_from_format(p: Probe, f: &EventFormat) -> (Layout, Vec<String>, bool) {
    let mut warnings = Vec::new();
    let mut layout = Layout::ABSENT;
    let mut usable = true;
    for &(field, name, size, required) in wanted(p) {
        let off = match f.field(name) {
            Some(x) if x.size == size && x.offset < u16::MAX as u32 => {
                if field == Field::Filename && !x.is_data_loc() {
                    warnings.push(format!(
                        "{}: `filename` is not a __data_loc string; not read",
                        p.name()
                    ));
                    FIELD_ABSENT
                } else {
                    x.offset as u16
                }
            }
            Some(x) => {
                warnings.push(format!(
                    "{}: field `{name}` has size {} (expected {size}); not read",
                    p.name(),
                    x.size
                ));
                FIELD_ABSENT
            }
            None => {
                warnings.push(format!(
                    "{}: this kernel has no `{name}` field; reported as 0",
                    p.name()
                ));
                FIELD_ABSENT
            }
        };
        if off == FIELD_ABSENT && required {
            usable = false;
        }
        layout.offsets[field as usize] = off;
    }
    if layout.offsets == COMPILED[p as usize].offsets {
        layout.compiled = 1;
    }
    (layout, warnings, usable)
}

/// `uname -r`.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The loaded, attached programs and their maps.
pub struct Probes {
    ebpf: Ebpf,
    /// What was found and attached.
    pub info: KernelInfo,
    counts: PerCpuArray<MapData, u64>,
    drops: PerCpuArray<MapData, u64>,
    untracked_calls: PerCpuArray<MapData, u64>,
    /// The counting window's flag (see [`Probes::open_window`]).
    window: Array<MapData, u32>,
    /// CPUs the event rings are sized for.
    cpus: u32,
    /// Records per CPU ring.
    slots: u32,
    /// The reader paces its drains by the event rate (false: a stalled reader, for tests).
    paced: bool,
    /// Records carry a clock read each (not the tick-cached clock).
    pub precise_time: bool,
}

impl Probes {
    /// Checks privileges, reads the kernel's layouts, loads and attaches. A tracepoint the
    /// kernel lacks is skipped with a warning; none at all is an error.
    pub fn attach(opts: &ProbeOptions) -> Result<Probes, KernelError> {
        if !cfg!(target_arch = "x86_64") {
            return Err(KernelError::UnsupportedArch(std::env::consts::ARCH));
        }
        check_privileges()?;
        let mut loader = loader::loader_without_btf();
        // The kernel's BTF, read once: for our own offsets and names, then parsed by aya for
        // the loader's relocations and every attach that needs it.
        let vmlinux = btf::read_vmlinux_bytes();
        let mut info = KernelInfo::probe_with(opts.tracefs.as_deref(), vmlinux.as_deref())?;
        if info.available().next().is_none() {
            return Err(KernelError::NoTracepoints);
        }
        if let Err(e) = raise_memlock() {
            // Kernels >= 5.11 charge BPF memory to the cgroup; the limit rarely matters.
            log::debug!("could not raise RLIMIT_MEMLOCK ({e}); continuing");
        }

        let mut config = Config::DEFAULT;
        for p in info.probes.iter_mut() {
            if opts.force_probe_read {
                p.layout.compiled = 0;
            }
            config.layouts[p.probe as usize] = p.layout;
        }
        config.task_flags_offset = info.task_flags_offset.unwrap_or(u32::MAX);
        // The probe-read test path also takes the comm helper, the fallback for kernels
        // without BTF, so that both get loaded and checked here.
        config.task_comm_offset = match opts.force_probe_read {
            true => u32::MAX,
            false => info.task_comm_offset.unwrap_or(u32::MAX),
        };
        (config.task_pid_offset, config.task_tgid_offset) = match opts.force_probe_read {
            true => (u32::MAX, u32::MAX),
            false => info.task_pid_offsets.unwrap_or((u32::MAX, u32::MAX)),
        };
        // Events look up (and, exit-only, open) their call only where a syscall exit will be
        // attached to close it: a kernel without the syscall tracepoints must not leave
        // calls open forever.
        let exits = [Probe::ExitMadvise, Probe::ExitProcessMadvise]
            .iter()
            .any(|&p| info.probes[p as usize].usable);
        config.calls = u32::from(opts.calls && exits);
        // The exit hook alone needs the saved registers and the task's flags (only a user
        // task's events open a call). The probe-read test path keeps the entry hooks, so that
        // both ways are loaded and checked here.
        let exit_only = match (info.syscall_args, info.task_flags_offset) {
            (Some(args), Some(_)) if !opts.force_probe_read => Some(args),
            _ => None,
        };
        if let Some(args) = exit_only {
            config.exit_only = 1;
            config.syscall_args = args;
        }
        // The fexit closes calls the way the exit-only syscall hook does (a call's first
        // event opens it), so it is tried only where that mode is on: a refused fexit then
        // falls back to the syscall exits with the same configuration.
        let try_fexit = opts.calls
            && config.calls != 0
            && opts.calls_via != CallsVia::Syscalls
            && exit_only.is_some()
            && info.fexit_start_arg.is_some();
        if opts.calls_via == CallsVia::Fexit && !try_fexit {
            return Err(KernelError::Fexit(
                match (info.fexit_start_arg, exit_only) {
                    (None, _) => "BTF has no madvise_collapse(vma, [prev,] start, end)".into(),
                    _ => "the exit-only call tracking it builds on is not possible here (no \
                      pt_regs or task flags in BTF, or no syscall exits)"
                        .into(),
                },
            ));
        }
        config.events = opts.events as u32;
        // Possible CPUs: the processor id a program sees is below this.
        let real_cpus = possible_cpus();
        let cpus = match opts.possible_cpus {
            Some(n) if n < real_cpus => {
                return Err(KernelError::BadFilter(format!(
                    "--possible-cpus {n} is fewer than this machine's {real_cpus} possible CPUs"
                )));
            }
            Some(n) => n,
            None => real_cpus,
        };
        let layout = ring_layout(opts.ring_bytes, cpus);
        let slots = layout.records_per_cpu;
        config.ring_slots = slots;
        // The reader paces its own drains (stream.rs); a CPU looks at the reader's position
        // every quarter ring and wakes it when half the ring is unread (the reader fell
        // behind), so the ring is at most three quarters full when the wakeup goes out.
        config.wake_records = if opts.no_wakeup {
            u32::MAX
        } else {
            (slots / 4).max(1)
        };
        config.wake_unread = (slots / 2).max(1);
        config.precise_time = u32::from(opts.precise_time);
        config.filter_tgid = opts.pid.unwrap_or(0);
        config.filter_cgroup = opts.cgroup.unwrap_or(0);
        btf_offsets(&info, &mut config);
        if opts.attach_via == AttachVia::Btf
            && let Some(Err(why)) = info
                .probes
                .iter()
                .filter(|p| p.usable)
                .find_map(|p| p.btf_variant.as_ref().filter(|b| b.is_err()))
        {
            return Err(KernelError::Btf(why.clone()));
        }
        if let Some(comm) = &opts.comm {
            let b = comm.as_bytes();
            if b.len() >= COMM_LEN {
                return Err(KernelError::BadFilter(format!(
                    "--comm {comm:?} is longer than the kernel's {} bytes",
                    COMM_LEN - 1
                )));
            }
            config.filter_comm_on = 1;
            config.filter_comm[..b.len()].copy_from_slice(b);
        }
        let log_level: u8 = if opts.kernel_log { 4 } else { 0 }; // aya-log: 4 = Debug, 0 = off

        let kernel_btf = vmlinux
            .ok()
            .and_then(|d| aya::Btf::parse(&d, aya::Endianness::default()).ok());
        loader
            .btf(kernel_btf.as_ref())
            .override_global(maps::CONFIG, &config, true)
            .override_global(aya_log::LEVEL, &log_level, true);
        loader
            .map_max_entries(maps::RING, cpus * slots)
            .map_max_entries(maps::HEADS, cpus)
            .map_max_entries(maps::TAILS, cpus);
        let mut ebpf = loader.load(OBJECT).map_err(KernelError::Load)?;
        if opts.kernel_log {
            match aya_log::EbpfLogger::init(&mut ebpf) {
                Ok(logger) => spawn_kernel_logger(logger),
                Err(e) => log::warn!("kernel-side logging unavailable: {e}"),
            }
        }

        if try_fexit {
            match attach_fexit(
                &mut ebpf,
                kernel_btf.as_ref(),
                info.fexit_start_arg.unwrap_or(2),
            ) {
                Ok(()) => info.calls_by_fexit = true,
                Err(e) if opts.calls_via == CallsVia::Fexit => {
                    return Err(KernelError::Fexit(e));
                }
                Err(e) => log::info!(
                    "fexit on madvise_collapse not possible here ({e}); MADV_COLLAPSE calls \
                     are tracked by the syscall exits"
                ),
            }
        }
        // Which program each probe takes: its BTF-typed one where this kernel has it, else the
        // classic one. `None`: the probe is left out.
        let chosen: Vec<Option<Load>> = info
            .probes
            .iter()
            .map(|p| {
                let wanted = p.usable
                    && !(p.probe.kind() == RecordKind::MadviseCall
                        && (info.calls_by_fexit || !opts.calls))
                    && !(exit_only.is_some()
                        && matches!(p.probe, Probe::EnterMadvise | Probe::EnterProcessMadvise));
                wanted.then(|| match p.btf_variant {
                    Some(Ok(b)) if opts.attach_via != AttachVia::Classic => Load::Btf {
                        program: BTF_VARIANTS[b.variant].program,
                        tracepoint: p.probe.name(),
                    },
                    _ => Load::Classic(p.probe.program()),
                })
            })
            .collect();
        let mut loaded = load_programs(&mut ebpf, kernel_btf.as_ref(), &chosen);
        for (p, load) in info.probes.iter_mut().zip(&chosen) {
            for w in &p.warnings {
                log::warn!("{w}");
            }
            let Some(load) = load else {
                continue;
            };
            let probe = p.probe;
            if let Load::Btf { program, .. } = *load {
                match attach_btf(&mut ebpf, &mut loaded, program) {
                    Ok(()) => {
                        p.attached = true;
                        p.via_btf = true;
                        continue;
                    }
                    Err(e) if opts.attach_via == AttachVia::Btf => {
                        return Err(KernelError::Btf(format!("{program}: {e}")));
                    }
                    Err(e) => log::info!(
                        "BTF-typed program {program} not possible here ({e}); {} is read by \
                         the classic tracepoint program",
                        probe.name()
                    ),
                }
            }
            let prog: &mut TracePoint = ebpf
                .program_mut(probe.program())
                .ok_or(KernelError::MissingProgram(probe.program()))?
                .try_into()
                .map_err(|e| KernelError::Program(probe, e))?;
            // Loaded above unless its BTF-typed program was refused (then it is loaded now).
            match loaded.remove(probe.program()) {
                Some(r) => r.map_err(|e| KernelError::Program(probe, e))?,
                None => prog.load().map_err(|e| KernelError::Program(probe, e))?,
            }
            prog.attach(probe.group(), probe.name())
                .map_err(|e| KernelError::Program(probe, e))?;
            p.attached = true;
        }
        info.derive_kinds();

        let counts = take_percpu(&mut ebpf, maps::COUNTS)?;
        let drops = take_percpu(&mut ebpf, maps::DROPS)?;
        let untracked_calls = take_percpu(&mut ebpf, maps::UNTRACKED_CALLS)?;
        let window = match ebpf.take_map(maps::WINDOW) {
            Some(m) => Array::try_from(m).map_err(|e| KernelError::Map(maps::WINDOW, e))?,
            None => return Err(KernelError::MissingMap(maps::WINDOW)),
        };
        if opts.events {
            info.rings = Some(layout);
        }
        Ok(Probes {
            ebpf,
            info,
            counts,
            drops,
            untracked_calls,
            window,
            cpus,
            slots,
            paced: !opts.no_wakeup,
            precise_time: opts.precise_time,
        })
    }

    /// The event rings' maps (once).
    pub fn take_rings(&mut self) -> Result<RingMaps, KernelError> {
        let mut array = |name: &'static str| match self.ebpf.take_map(name) {
            Some(aya::maps::Map::Array(m)) => Ok(m),
            _ => Err(KernelError::MissingMap(name)),
        };
        let (ring, heads, tails) = (array(maps::RING)?, array(maps::HEADS)?, array(maps::TAILS)?);
        let map = self
            .ebpf
            .take_map(maps::WAKEUPS)
            .ok_or(KernelError::MissingMap(maps::WAKEUPS))?;
        let wakeups = RingBuf::try_from(map).map_err(|e| KernelError::Map(maps::WAKEUPS, e))?;
        Ok(RingMaps {
            ring,
            heads,
            tails,
            wakeups,
            cpus: self.cpus,
            slots: self.slots,
            paced: self.paced,
        })
    }

    /// Opens the counting window: from now on every attached program counts and sends, all
    /// from the same instant (they were attached with the window closed, and counted nothing).
    pub fn open_window(&mut self) -> Result<(), KernelError> {
        self.window
            .set(0, 1, 0)
            .map_err(|e| KernelError::Map(maps::WINDOW, e))
    }

    /// Closes the counting window: no program counts or sends after this instant, so the
    /// counters read afterwards and the records in the rings describe the same events.
    pub fn close_window(&mut self) -> Result<(), KernelError> {
        self.window
            .set(0, 0, 0)
            .map_err(|e| KernelError::Map(maps::WINDOW, e))
    }

    /// Detaches and unloads every program; maps stay readable. `info` keeps saying what was
    /// attached during the run.
    pub fn detach(&mut self) {
        if self.info.calls_by_fexit
            && let Some(arg) = self.info.fexit_start_arg
            && let Some(p) = self.ebpf.program_mut(fexit_program(arg))
        {
            let p: Result<&mut FExit, _> = p.try_into();
            if let Ok(p) = p
                && let Err(e) = p.unload()
            {
                log::warn!("detaching the fexit on madvise_collapse: {e}");
            }
        }
        for t in self.info.probes.iter().filter(|t| t.attached) {
            if t.via_btf
                && let Some(Ok(b)) = t.btf_variant
                && let Some(p) = self.ebpf.program_mut(BTF_VARIANTS[b.variant].program)
            {
                let p: Result<&mut BtfTracePoint, _> = p.try_into();
                if let Ok(p) = p
                    && let Err(e) = p.unload()
                {
                    log::warn!("detaching {}: {e}", t.probe.name());
                }
                continue;
            }
            if let Some(p) = self.ebpf.program_mut(t.probe.program()) {
                let p: Result<&mut TracePoint, _> = p.try_into();
                if let Ok(p) = p
                    && let Err(e) = p.unload()
                {
                    log::warn!("detaching {}: {e}", t.probe.name());
                }
            }
        }
    }

    /// Sums the per-CPU counters.
    pub fn counters(&self) -> Result<KernelCounters, KernelError> {
        let mut k = KernelCounters::default();
        for t in 0..NUM_KINDS {
            for s in 0..RESULT_SLOTS {
                let v = self
                    .counts
                    .get(&((t * RESULT_SLOTS + s) as u32), 0)
                    .map_err(|e| KernelError::Map(maps::COUNTS, e))?;
                k.counts[t][s] = v.iter().sum();
            }
            let v = self
                .drops
                .get(&(t as u32), 0)
                .map_err(|e| KernelError::Map(maps::DROPS, e))?;
            k.drops[t] = v.iter().sum();
        }
        let v = self
            .untracked_calls
            .get(&0, 0)
            .map_err(|e| KernelError::Map(maps::UNTRACKED_CALLS, e))?;
        k.untracked_calls = v.iter().sum();
        Ok(k)
    }
}

/// Loads and attaches the fexit on madvise_collapse; the error in words when the kernel
/// refuses (no BPF trampolines, as on some virtual machines' kernels).
fn attach_fexit(ebpf: &mut Ebpf, btf: Option<&aya::Btf>, start_arg: u32) -> Result<(), String> {
    let btf = btf.ok_or("the kernel's BTF could not be read")?;
    let name = fexit_program(start_arg);
    let prog: &mut FExit = ebpf
        .program_mut(name)
        .ok_or_else(|| format!("the object has no program {name}"))?
        .try_into()
        .map_err(|e| format!("{e}"))?;
    prog.load("madvise_collapse", btf)
        .map_err(|e| format!("loading: {}", error_chain(&e)))?;
    prog.attach()
        .map_err(|e| format!("attaching: {}", error_chain(&e)))?;
    Ok(())
}

/// A program to load for a probe.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// The BTF-typed `program` on `tracepoint`.
    Btf {
        program: &'static str,
        tracepoint: &'static str,
    },
    /// The classic tracepoint program of this name.
    Classic(&'static str),
}

impl Load {
    /// The program's name in the object.
    fn program(self) -> &'static str {
        match self {
            Load::Btf { program, .. } | Load::Classic(program) => program,
        }
    }

    /// Loads `prog`, which is this program.
    fn load(
        self,
        prog: &mut aya::programs::Program,
        btf: Option<&aya::Btf>,
    ) -> Result<(), ProgramError> {
        use aya::programs::Program;
        let refused = |why: &str| {
            Err(ProgramError::IOError(std::io::Error::other(
                why.to_string(),
            )))
        };
        match (self, prog) {
            (Load::Btf { tracepoint, .. }, Program::BtfTracePoint(p)) => match btf {
                Some(btf) => p.load(tracepoint, btf),
                None => refused("the kernel's BTF could not be read"),
            },
            (Load::Classic(_), Program::TracePoint(p)) => p.load(),
            _ => refused("not a program of the kind its probe needs"),
        }
    }
}

/// What loading each program gave, by program name.
type Loaded = std::collections::HashMap<&'static str, Result<(), ProgramError>>;

/// Loads the `chosen` programs on two threads: the verifier takes most of a start-up (15-20
/// ms for each program that names files, most of it looking BTF type names up), and programs
/// verify independently.
fn load_programs(ebpf: &mut Ebpf, btf: Option<&aya::Btf>, chosen: &[Option<Load>]) -> Loaded {
    let mut programs: std::collections::HashMap<&str, &mut aya::programs::Program> =
        ebpf.programs_mut().collect();
    let mut jobs: Vec<_> = chosen
        .iter()
        .flatten()
        .filter_map(|&l| Some((l, programs.remove(l.program())?)))
        .collect();
    // The BTF-typed programs, the longest to verify, first: they alternate between threads.
    jobs.sort_by_key(|(l, _)| matches!(l, Load::Classic(_)));
    let (mut mine, mut theirs) = (Vec::new(), Vec::new());
    for (i, job) in jobs.into_iter().enumerate() {
        if i % 2 == 0 { &mut mine } else { &mut theirs }.push(job);
    }
    let run = |jobs: Vec<(Load, &mut aya::programs::Program)>| {
        jobs.into_iter()
            .map(|(l, prog)| (l.program(), l.load(prog, btf)))
            .collect::<Vec<_>>()
    };
    std::thread::scope(|s| {
        let other = s.spawn(|| run(theirs));
        let mut out: Loaded = run(mine).into_iter().collect();
        // Only a bug panics there; its programs are then loaded one by one when attached.
        out.extend(other.join().unwrap_or_default());
        out
    })
}

/// Attaches BTF-typed program `program`, which [`load_programs`] loaded; the error in words
/// when the kernel refused either.
fn attach_btf(ebpf: &mut Ebpf, loaded: &mut Loaded, program: &'static str) -> Result<(), String> {
    match loaded.remove(program) {
        Some(r) => r.map_err(|e| format!("loading: {}", error_chain(&e)))?,
        None => return Err("it was not loaded".into()),
    }
    let prog: &mut BtfTracePoint = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("the object has no program {program}"))?
        .try_into()
        .map_err(|e| format!("{e}"))?;
    if let Err(e) = prog.attach() {
        let msg = format!("attaching: {}", error_chain(&e));
        let _ = prog.unload();
        return Err(msg);
    }
    Ok(())
}

/// `e` and its sources, `: `-joined.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(&format!(": {x}"));
        src = x.source();
    }
    s
}

/// For `doctor`: whether this kernel lets the fexit on madvise_collapse attach (loads the
/// object with the compiled-in configuration, attaches only that program, and unloads it at
/// once; it counts nothing). Needs the BPF privileges.
pub fn fexit_trial(start_arg: u32) -> Result<(), String> {
    check_privileges().map_err(|e| e.to_string())?;
    let _ = raise_memlock();
    let mut config = Config::DEFAULT;
    config.events = 0;
    let (mut ebpf, btf) = load_for_trial(&config)?;
    attach_fexit(&mut ebpf, btf.as_ref(), start_arg)
}

/// The object loaded with `config` and logging off, for a trial attach (`doctor`): its
/// programs attach with the counting window closed, so they count nothing, and go with it.
fn load_for_trial(config: &Config) -> Result<(Ebpf, Option<aya::Btf>), String> {
    let level: u8 = 0;
    let btf: Option<aya::Btf>;
    let ebpf = {
        let mut loader = loader::loader_without_btf();
        btf = aya::Btf::from_sys_fs().ok();
        loader
            .btf(btf.as_ref())
            .override_global(maps::CONFIG, config, true)
            .override_global(aya_log::LEVEL, &level, true)
            .load(OBJECT)
            .map_err(|e| format!("loading the object: {e}"))?
    };
    Ok((ebpf, btf))
}

/// The BTF offsets the programs follow (the owner, the file) and each BTF-typed program's
/// kind of page argument, into `config`.
fn btf_offsets(info: &KernelInfo, config: &mut Config) {
    if let Some(owner) = info.owner {
        config.owner = owner;
    }
    if let Some(file) = info.file {
        config.file = file;
    }
    for p in &info.probes {
        if let Some(Ok(b)) = &p.btf_variant {
            config.file.page_is_pointer[p.probe as usize] = u8::from(b.page_is_pointer);
        }
    }
}

/// Possible CPUs of this machine: every processor id a program can see is below it.
pub fn possible_cpus() -> u32 {
    aya::util::nr_cpus().map_or(1, |n| n.max(1)) as u32
}

/// The event rings `ring_bytes` gives over `cpus` CPUs (`None`: the default for that many,
/// [`collapse_trace_common::default_ring_bytes`]): whole records, the same for each CPU.
pub fn ring_layout(ring_bytes: Option<u32>, cpus: u32) -> RingLayout {
    let bytes = ring_bytes.unwrap_or(collapse_trace_common::default_ring_bytes(cpus));
    let slots = ring_slots(bytes, cpus);
    RingLayout {
        cpus,
        records_per_cpu: slots,
        bytes_per_cpu: u64::from(slots) * size_of::<collapse_trace_common::EventRecord>() as u64,
    }
}

/// How a [`btf_trial`] result starts when the trial could not be made (no privileges).
pub const NOT_TRIED: &str = "not tried: ";

/// Loads and attaches each BTF-typed program `info` says fits (with the window closed, so
/// they count nothing), then unloads them: whether this kernel's verifier takes them. One
/// result per huge_memory probe that has a fitting program (`doctor`).
pub fn btf_trial(info: &KernelInfo) -> Vec<(Probe, Result<&'static str, String>)> {
    let fits: Vec<(Probe, BtfProgram)> = info
        .probes
        .iter()
        .filter_map(|p| Some((p.probe, *p.btf_variant.as_ref()?.as_ref().ok()?)))
        .collect();
    let all = |e: String| fits.iter().map(|(p, _)| (*p, Err(e.clone()))).collect();
    if let Err(e) = check_privileges() {
        return all(format!("{NOT_TRIED}{e}"));
    }
    let _ = raise_memlock();
    let mut config = Config::DEFAULT;
    // With events on, as `stat` loads them: the verifier skips the branches a constant
    // configuration rules out, so a trial without events would not check the record path.
    config.events = 1;
    btf_offsets(info, &mut config);
    let (mut ebpf, btf) = match load_for_trial(&config) {
        Ok(e) => e,
        Err(e) => return all(e),
    };
    let chosen: Vec<Option<Load>> = fits
        .iter()
        .map(|(p, b)| {
            Some(Load::Btf {
                program: BTF_VARIANTS[b.variant].program,
                tracepoint: p.name(),
            })
        })
        .collect();
    let mut loaded = load_programs(&mut ebpf, btf.as_ref(), &chosen);
    fits.iter()
        .map(|(p, b)| {
            let program = BTF_VARIANTS[b.variant].program;
            (
                *p,
                attach_btf(&mut ebpf, &mut loaded, program).map(|()| program),
            )
        })
        .collect()
}

fn take_percpu(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<PerCpuArray<MapData, u64>, KernelError> {
    let map = ebpf.take_map(name).ok_or(KernelError::MissingMap(name))?;
    PerCpuArray::try_from(map).map_err(|e| KernelError::Map(name, e))
}

fn raise_memlock() -> std::io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn spawn_kernel_logger(logger: aya_log::EbpfLogger<&'static dyn log::Log>) {
    use tokio::io::unix::AsyncFd;
    // SAFETY: the logger owns its ring buffer fd for as long as the AsyncFd owns the logger.
    match unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) } {
        Ok(mut fd) => {
            tokio::spawn(async move {
                loop {
                    let Ok(mut guard) = fd.readable_mut().await else {
                        return;
                    };
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
            });
        }
        Err(e) => log::warn!("kernel-side logging unavailable: {}", e.into_parts().1),
    }
}

/// Verifier log tail for a load error, if there is one.
pub fn verifier_log(e: &ProgramError) -> Option<String> {
    match e {
        ProgramError::LoadError { verifier_log, .. } => {
            let s = verifier_log.to_string();
            let lines: Vec<&str> = s.lines().collect();
            let tail = lines[lines.len().saturating_sub(20)..].join("\n");
            Some(tail)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::format::parse_format;

    const SCAN: &str = include_str!("../../tests/data/mm_khugepaged_scan_file.format");
    const COLLAPSE: &str = include_str!("../../tests/data/mm_khugepaged_collapse_file.format");
    const SCAN_PMD: &str = include_str!("../../tests/data/mm_khugepaged_scan_pmd.format");
    const HUGE_PAGE: &str = include_str!("../../tests/data/mm_collapse_huge_page.format");
    const ENTER: &str = include_str!("../../tests/data/sys_enter_madvise.format");
    const EXIT: &str = include_str!("../../tests/data/sys_exit_madvise.format");
    const PENTER: &str = include_str!("../../tests/data/sys_enter_process_madvise.format");

    #[test]
    fn this_kernels_layouts_are_the_compiled_ones() {
        for (p, text) in [
            (Probe::ScanFile, SCAN),
            (Probe::CollapseFile, COLLAPSE),
            (Probe::ScanPmd, SCAN_PMD),
            (Probe::CollapseHugePage, HUGE_PAGE),
            (Probe::EnterMadvise, ENTER),
            (Probe::ExitMadvise, EXIT),
            (Probe::EnterProcessMadvise, PENTER),
            (Probe::ExitProcessMadvise, EXIT),
        ] {
            let (l, w, usable) = layout_from_format(p, &parse_format(text).unwrap());
            assert_eq!(l, COMPILED[p as usize], "{p:?}");
            assert!(w.is_empty() && usable, "{p:?}: {w:?}");
        }
    }

    #[test]
    fn a_moved_field_takes_the_generic_path() {
        let text = SCAN.replace("offset:36;\tsize:4;", "offset:40;\tsize:4;");
        let (l, _, usable) = layout_from_format(Probe::ScanFile, &parse_format(&text).unwrap());
        assert_eq!(l.get(Field::Result), 40);
        assert_eq!(l.compiled, 0);
        assert!(usable);
    }

    #[test]
    fn a_missing_or_resized_field_is_absent_with_a_warning() {
        let text = COLLAPSE
            .replace("\tfield:int nr;\toffset:48;\tsize:4;\tsigned:1;\n", "")
            .replace(
                "bool is_shmem;\toffset:40;\tsize:1;",
                "int is_shmem;\toffset:40;\tsize:4;",
            );
        let (l, w, usable) = layout_from_format(Probe::CollapseFile, &parse_format(&text).unwrap());
        assert_eq!(
            (l.get(Field::Nr), l.get(Field::IsShmem), l.compiled),
            (FIELD_ABSENT, FIELD_ABSENT, 0)
        );
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w.iter().any(|w| w.contains("no `nr` field")));
        assert!(usable, "result is still there");
        let no_result = SCAN.replace("field:int result;", "field:int outcome;");
        let (_, _, usable) =
            layout_from_format(Probe::ScanFile, &parse_format(&no_result).unwrap());
        assert!(!usable);
    }

    #[test]
    fn names_come_from_the_kernel_first() {
        let f = parse_format(SCAN).unwrap();
        let probes = vec![ProbeInfo {
            probe: Probe::ScanFile,
            format: Some(f),
            layout: COMPILED[0],
            warnings: vec![],
            usable: true,
            attached: false,
            btf_variant: None,
            via_btf: false,
        }];
        let t = result_table(&probes, &btf::KernelBtf::default());
        assert_eq!(t.source, ResultSource::Tracefs);
        assert_eq!(t.name(30), "page_filled");
        let mut kb = btf::KernelBtf::default();
        kb.scan_result.insert(31, "page_filled".into());
        let t = result_table(&[], &kb);
        assert_eq!(
            (t.source, t.name(31).as_str()),
            (ResultSource::Btf, "page_filled")
        );
        assert_eq!(
            result_table(&[], &btf::KernelBtf::default()).source,
            ResultSource::Builtin
        );
    }
}
