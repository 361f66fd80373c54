//! Loads the embedded eBPF object with the running kernel's layouts, attaches what the
//! kernel has, and reads the counters back.

use std::path::PathBuf;

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{ProgramError, TracePoint},
};
use collapse_trace_common::{
    COLLAPSE_FILE_LAYOUT, COMM_LEN, Config, DEFAULT_RING_BYTES, FIELD_ABSENT, NUM_TRACEPOINTS,
    RESULT_SLOTS, SCAN_FILE_LAYOUT, TpLayout, Tracepoint, maps,
};

use super::{
    KernelError, btf,
    caps::check_privileges,
    tracefs::{EventFormat, Tracefs},
};
use crate::model::{
    aggregate::KernelCounters,
    results::{ResultSource, ResultTable},
};

/// The eBPF object, built by build.rs and embedded so the installed binary is one file.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/collapse-trace"));

/// What to load.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// Send one record per event (false: count only).
    pub events: bool,
    /// Only this process (in the kernel, so counters are exact for it).
    pub pid: Option<u32>,
    /// Only tasks with this comm (in the kernel).
    pub comm: Option<String>,
    /// Ring buffer bytes (power of two, multiple of the page size).
    pub ring_bytes: u32,
    /// Turn on aya-log diagnostics from the kernel side (costs per event).
    pub kernel_log: bool,
    /// tracefs location override (tests with hand-made format files).
    pub tracefs: Option<PathBuf>,
    /// Read every field with `bpf_probe_read_kernel` even when the layout is the compiled
    /// one: the path a kernel with moved fields takes, exercised on this one by tests.
    pub force_probe_read: bool,
    /// Never ask for a wakeup (a stalled reader, for overflow tests).
    pub no_wakeup: bool,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            events: true,
            pid: None,
            comm: None,
            ring_bytes: DEFAULT_RING_BYTES,
            kernel_log: false,
            tracefs: None,
            force_probe_read: false,
            no_wakeup: false,
        }
    }
}

/// What the running kernel offers for one tracepoint.
#[derive(Debug, Clone)]
pub struct TracepointInfo {
    /// Which one.
    pub tracepoint: Tracepoint,
    /// Its parsed format, `None` when the kernel lacks it.
    pub format: Option<EventFormat>,
    /// The layout handed to the program.
    pub layout: TpLayout,
    /// Problems worth telling the user (missing fields, odd sizes).
    pub warnings: Vec<String>,
    /// Attached in this run.
    pub attached: bool,
}

/// What was learned about the kernel while setting up.
#[derive(Debug, Clone)]
pub struct KernelInfo {
    /// `uname -r`.
    pub release: String,
    /// Per tracepoint.
    pub tracepoints: Vec<TracepointInfo>,
    /// Result names.
    pub results: ResultTable,
    /// Offset of `task_struct.flags` (origin detection), if BTF had it.
    pub task_flags_offset: Option<u32>,
    /// tracefs mount point.
    pub tracefs: PathBuf,
    /// Whether collapse-trace mounted tracefs itself.
    pub tracefs_mounted_by_us: bool,
}

impl KernelInfo {
    /// Reads formats, BTF and names; loads nothing. Used by `doctor` and by [`Probes::attach`].
    pub fn probe(tracefs: Option<&std::path::Path>) -> Result<KernelInfo, KernelError> {
        let fs = Tracefs::open(tracefs)?;
        let mut tracepoints = Vec::new();
        for tp in Tracepoint::ALL {
            let format = fs.format(tp.group(), tp.name())?;
            let (layout, warnings) = match &format {
                Some(f) => layout_from_format(tp, f),
                None => (
                    TpLayout::ABSENT,
                    vec![format!(
                        "this kernel has no {}:{} tracepoint",
                        tp.group(),
                        tp.name()
                    )],
                ),
            };
            tracepoints.push(TracepointInfo {
                tracepoint: tp,
                format,
                layout,
                warnings,
                attached: false,
            });
        }
        let kbtf = btf::read_vmlinux()
            .inspect_err(|e| log::warn!("no BTF ({e:#}): origin will read `unknown`"))
            .unwrap_or_default();
        let results = result_table(&tracepoints, &kbtf);
        Ok(KernelInfo {
            release: kernel_release(),
            tracepoints,
            results,
            task_flags_offset: kbtf.task_flags_offset,
            tracefs: fs.root().to_path_buf(),
            tracefs_mounted_by_us: fs.mounted_by_us,
        })
    }

    /// Tracepoints the kernel has.
    pub fn available(&self) -> impl Iterator<Item = &TracepointInfo> {
        self.tracepoints
            .iter()
            .filter(|t| t.format.is_some() && t.layout.result != FIELD_ABSENT)
    }
}

/// The names: the tracepoints' own tables if any, else BTF's enum, else the built-in copy.
fn result_table(tps: &[TracepointInfo], kbtf: &btf::KernelBtf) -> ResultTable {
    let mut names = std::collections::BTreeMap::new();
    for t in tps {
        if let Some(table) = t.format.as_ref().and_then(|f| f.symbols.get("result")) {
            for (n, s) in table {
                if let Some(old) = names.insert(*n, s.clone())
                    && old != *s
                {
                    log::warn!("tracepoints disagree on result {n}: {old} vs {s}");
                }
            }
        }
    }
    if !names.is_empty() {
        return ResultTable::new(ResultSource::Tracefs, names);
    }
    if !kbtf.scan_result.is_empty() {
        return ResultTable::new(ResultSource::Btf, kbtf.scan_result.clone());
    }
    log::warn!("{}", ResultSource::Builtin.describe());
    ResultTable::builtin()
}

/// Builds the layout the program gets from a tracepoint's format, checking each field's size.
pub fn layout_from_format(tp: Tracepoint, f: &EventFormat) -> (TpLayout, Vec<String>) {
    let mut warnings = Vec::new();
    let mut get = |name: &str, size: u32, required: bool| -> u16 {
        match f.field(name) {
            Some(field) if field.size == size && field.offset < u16::MAX as u32 => {
                field.offset as u16
            }
            Some(field) => {
                warnings.push(format!(
                    "{}: field `{name}` has size {} (expected {size}); not read",
                    tp.name(),
                    field.size
                ));
                FIELD_ABSENT
            }
            None => {
                if required {
                    warnings.push(format!(
                        "{}: this kernel has no `{name}` field; reported as 0",
                        tp.name()
                    ));
                }
                FIELD_ABSENT
            }
        }
    };
    let scan = tp == Tracepoint::ScanFile;
    let mut layout = TpLayout {
        result: get("result", 4, true),
        filename: get("filename", 4, true),
        pfn: get(if scan { "pfn" } else { "hpfn" }, 8, true),
        present: if scan {
            get("present", 4, true)
        } else {
            FIELD_ABSENT
        },
        swap: if scan {
            get("swap", 4, true)
        } else {
            FIELD_ABSENT
        },
        index: if scan {
            FIELD_ABSENT
        } else {
            get("index", 8, true)
        },
        addr: if scan {
            FIELD_ABSENT
        } else {
            get("addr", 8, true)
        },
        is_shmem: if scan {
            FIELD_ABSENT
        } else {
            get("is_shmem", 1, true)
        },
        nr: if scan {
            FIELD_ABSENT
        } else {
            get("nr", 4, true)
        },
        compiled: 0,
    };
    if layout.filename != FIELD_ABSENT && !f.field("filename").is_some_and(|x| x.is_data_loc()) {
        warnings.push(format!(
            "{}: `filename` is not a __data_loc string; not read",
            tp.name()
        ));
        layout.filename = FIELD_ABSENT;
    }
    let compiled = match tp {
        Tracepoint::ScanFile => SCAN_FILE_LAYOUT,
        Tracepoint::CollapseFile => COLLAPSE_FILE_LAYOUT,
    };
    if layout
        == (TpLayout {
            compiled: 0,
            ..compiled
        })
    {
        layout.compiled = 1;
    }
    (layout, warnings)
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
}

impl Probes {
    /// Checks privileges, reads the kernel's layouts, loads and attaches. A tracepoint the
    /// kernel lacks is skipped with a warning; none at all is an error.
    pub fn attach(opts: &ProbeOptions) -> Result<Probes, KernelError> {
        check_privileges()?;
        let mut info = KernelInfo::probe(opts.tracefs.as_deref())?;
        if info.available().next().is_none() {
            return Err(KernelError::NoTracepoints);
        }
        if let Err(e) = raise_memlock() {
            // Kernels >= 5.11 charge BPF memory to the cgroup; the limit rarely matters.
            log::debug!("could not raise RLIMIT_MEMLOCK ({e}); continuing");
        }

        let mut config = Config::DEFAULT;
        for t in info.tracepoints.iter_mut() {
            if opts.force_probe_read {
                t.layout.compiled = 0;
            }
            config.layouts[t.tracepoint as usize] = t.layout;
        }
        config.task_flags_offset = info.task_flags_offset.unwrap_or(u32::MAX);
        config.events = opts.events as u32;
        config.wakeup_bytes = if opts.no_wakeup {
            u64::MAX
        } else {
            (opts.ring_bytes / 4) as u64
        };
        config.filter_tgid = opts.pid.unwrap_or(0);
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

        let mut loader = EbpfLoader::new();
        loader
            .override_global(maps::CONFIG, &config, true)
            .override_global(aya_log::LEVEL, &log_level, true);
        if opts.ring_bytes != DEFAULT_RING_BYTES {
            loader.map_max_entries(maps::EVENTS, opts.ring_bytes);
        }
        let mut ebpf = loader.load(OBJECT).map_err(KernelError::Load)?;
        if opts.kernel_log {
            match aya_log::EbpfLogger::init(&mut ebpf) {
                Ok(logger) => spawn_kernel_logger(logger),
                Err(e) => log::warn!("kernel-side logging unavailable: {e}"),
            }
        }

        for t in info.tracepoints.iter_mut() {
            if t.format.is_none() || t.layout.result == FIELD_ABSENT {
                for w in &t.warnings {
                    log::warn!("{w}");
                }
                continue;
            }
            for w in &t.warnings {
                log::warn!("{w}");
            }
            let tp = t.tracepoint;
            let prog: &mut TracePoint = ebpf
                .program_mut(tp.program())
                .ok_or(KernelError::MissingProgram(tp.program()))?
                .try_into()
                .map_err(|e| KernelError::Program(tp, e))?;
            prog.load().map_err(|e| KernelError::Program(tp, e))?;
            prog.attach(tp.group(), tp.name())
                .map_err(|e| KernelError::Program(tp, e))?;
            t.attached = true;
        }

        let counts = take_percpu(&mut ebpf, maps::COUNTS)?;
        let drops = take_percpu(&mut ebpf, maps::DROPS)?;
        Ok(Probes {
            ebpf,
            info,
            counts,
            drops,
        })
    }

    /// The ring buffer of events (once).
    pub fn take_ring(&mut self) -> Result<RingBuf<MapData>, KernelError> {
        let map = self
            .ebpf
            .take_map(maps::EVENTS)
            .ok_or(KernelError::MissingMap(maps::EVENTS))?;
        RingBuf::try_from(map).map_err(|e| KernelError::Map(maps::EVENTS, e))
    }

    /// Detaches and unloads every program; maps stay readable. `info` keeps saying what was
    /// attached during the run.
    pub fn detach(&mut self) {
        for t in self.info.tracepoints.iter().filter(|t| t.attached) {
            if let Some(p) = self.ebpf.program_mut(t.tracepoint.program()) {
                let p: Result<&mut TracePoint, _> = p.try_into();
                if let Ok(p) = p
                    && let Err(e) = p.unload()
                {
                    log::warn!("detaching {}: {e}", t.tracepoint.name());
                }
            }
        }
    }

    /// Sums the per-CPU counters.
    pub fn counters(&self) -> Result<KernelCounters, KernelError> {
        let mut k = KernelCounters::default();
        for t in 0..NUM_TRACEPOINTS {
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
        Ok(k)
    }
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
    use crate::kernel::tracefs::parse_format;

    const SCAN: &str = include_str!("../../tests/data/mm_khugepaged_scan_file.format");
    const COLLAPSE: &str = include_str!("../../tests/data/mm_khugepaged_collapse_file.format");

    #[test]
    fn this_kernels_layout_is_the_compiled_one() {
        let (l, w) = layout_from_format(Tracepoint::ScanFile, &parse_format(SCAN).unwrap());
        assert_eq!(l, SCAN_FILE_LAYOUT);
        assert!(w.is_empty(), "{w:?}");
        let (l, w) = layout_from_format(Tracepoint::CollapseFile, &parse_format(COLLAPSE).unwrap());
        assert_eq!(l, COLLAPSE_FILE_LAYOUT);
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn a_moved_field_takes_the_generic_path() {
        let text = SCAN.replace("offset:36;\tsize:4;", "offset:40;\tsize:4;");
        let (l, _) = layout_from_format(Tracepoint::ScanFile, &parse_format(&text).unwrap());
        assert_eq!(l.result, 40);
        assert_eq!(l.compiled, 0);
    }

    #[test]
    fn a_missing_or_resized_field_is_absent_with_a_warning() {
        let text = COLLAPSE
            .replace("\tfield:int nr;\toffset:48;\tsize:4;\tsigned:1;\n", "")
            .replace(
                "bool is_shmem;\toffset:40;\tsize:1;",
                "int is_shmem;\toffset:40;\tsize:4;",
            );
        let (l, w) = layout_from_format(Tracepoint::CollapseFile, &parse_format(&text).unwrap());
        assert_eq!(
            (l.nr, l.is_shmem, l.compiled),
            (FIELD_ABSENT, FIELD_ABSENT, 0)
        );
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w.iter().any(|w| w.contains("no `nr` field")));
    }

    #[test]
    fn names_come_from_the_kernel_first() {
        let f = parse_format(SCAN).unwrap();
        let tps = vec![TracepointInfo {
            tracepoint: Tracepoint::ScanFile,
            format: Some(f),
            layout: SCAN_FILE_LAYOUT,
            warnings: vec![],
            attached: false,
        }];
        let t = result_table(&tps, &btf::KernelBtf::default());
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
