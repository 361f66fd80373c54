//! What is known about the kernel a run was made on (or a capture was taken on): its
//! attach points, the record kinds collected, the result names, BTF offsets. Plain data:
//! the kernel layer fills it in from the running kernel, a capture from its header.

use std::path::PathBuf;

use collapse_trace_common::{Layout, Probe, RecordKind};

use super::{format::EventFormat, results::ResultTable};

/// What the running kernel offers for one attach point.
#[derive(Debug, Clone)]
pub struct ProbeInfo {
    /// Which one.
    pub probe: Probe,
    /// Its parsed format, `None` when the kernel lacks it.
    pub format: Option<EventFormat>,
    /// The layout handed to the program.
    pub layout: Layout,
    /// Problems worth telling the user (missing fields, odd sizes).
    pub warnings: Vec<String>,
    /// Whether the kernel has what the program needs.
    pub usable: bool,
    /// Attached in this run.
    pub attached: bool,
    /// The BTF-typed program that fits this tracepoint's arguments on this kernel, or why
    /// none does (huge_memory tracepoints only; `None` for the others).
    pub btf_variant: Option<Result<BtfProgram, String>>,
    /// Attached in this run by its BTF-typed program (false: the classic one, or not at all).
    pub via_btf: bool,
}

/// The BTF-typed program that fits a tracepoint's arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BtfProgram {
    /// Index into collapse-trace-common's `BTF_VARIANTS`.
    pub variant: usize,
    /// The page argument is a pointer (`struct page *`, `struct folio *`), not a pfn: the
    /// events' pfn is then 0.
    pub page_is_pointer: bool,
}

/// Whether the records of one kind were collected in this run.
#[derive(Debug, Clone)]
pub struct KindInfo {
    /// Which kind.
    pub tracepoint: RecordKind,
    /// Its probes were attached (both entry and exit, for calls).
    pub attached: bool,
}

/// What was learned about the kernel while setting up.
#[derive(Debug, Clone)]
pub struct KernelInfo {
    /// `uname -r`.
    pub release: String,
    /// Per attach point.
    pub probes: Vec<ProbeInfo>,
    /// Per record kind, derived from `probes`.
    pub tracepoints: Vec<KindInfo>,
    /// Result names.
    pub results: ResultTable,
    /// Offset of `task_struct.flags` (origin detection), if BTF had it.
    pub task_flags_offset: Option<u32>,
    /// Offset of `task_struct.comm`, if BTF had it (else the comm helper is used).
    pub task_comm_offset: Option<u32>,
    /// Offsets of `task_struct.pid` and `.tgid`, if BTF had both (else the pid helper is used).
    pub task_pid_offsets: Option<(u32, u32)>,
    /// Offsets in `struct pt_regs` of the first four syscall arguments, if known: then the
    /// syscall exits alone track MADV_COLLAPSE calls.
    pub syscall_args: Option<[u32; 4]>,
    /// Which argument of `madvise_collapse` is `start`, when BTF shows the shape the fexit
    /// program reads (`None`: no fexit possible).
    pub fexit_start_arg: Option<u32>,
    /// Whether this run tracks MADV_COLLAPSE calls with the fexit on madvise_collapse
    /// (false: the syscall hooks, or no call tracking).
    pub calls_by_fexit: bool,
    /// The BTF offsets that lead from an `mm_struct` to its owner and the owner's cgroup, if
    /// BTF had every one (else events carry no owner).
    pub owner: Option<collapse_trace_common::OwnerConfig>,
    /// The BTF offsets that lead from a `struct file *` to its name, inode, device and
    /// directories, if BTF had every one (else no BTF-typed programs).
    pub file: Option<collapse_trace_common::FileConfig>,
    /// tracefs mount point.
    pub tracefs: PathBuf,
    /// Whether collapse-trace mounted tracefs itself.
    pub tracefs_mounted_by_us: bool,
    /// The event rings this run reads (`None`: not loaded, or counting only).
    pub rings: Option<RingLayout>,
}

/// How the event rings of a run are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingLayout {
    /// Possible CPUs, one ring each.
    pub cpus: u32,
    /// Records each CPU's ring holds.
    pub records_per_cpu: u32,
    /// Bytes of each CPU's ring.
    pub bytes_per_cpu: u64,
}

impl KernelInfo {
    /// How the attached huge_memory tracepoints are read, in words (`None` when none is
    /// attached): by their BTF-typed programs (their own arguments), by the classic programs
    /// (the kernel's record), or which by which.
    pub fn attach_summary(&self) -> Option<String> {
        let huge: Vec<&ProbeInfo> = self
            .probes
            .iter()
            .filter(|p| p.attached && p.probe.kind().is_huge_memory())
            .collect();
        let (btf, classic): (Vec<&ProbeInfo>, Vec<&ProbeInfo>) =
            huge.iter().partition(|p| p.via_btf);
        let names = |v: &[&ProbeInfo]| {
            v.iter()
                .map(|p| p.probe.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (btf.is_empty(), classic.is_empty()) {
            (true, true) => None,
            (false, true) => Some("tracepoints read from their arguments (BTF-typed)".into()),
            (true, false) => Some("tracepoints read from their records (classic)".into()),
            (false, false) => Some(format!(
                "BTF-typed: {}; classic: {}",
                names(&btf),
                names(&classic)
            )),
        }
    }

    /// What a capture says about the kernel it was taken on, for views of a capture (`report`):
    /// the release, the result names and which record kinds were collected. Nothing is read
    /// from this machine.
    pub fn offline(
        release: String,
        results: ResultTable,
        attached: &[(RecordKind, bool)],
    ) -> KernelInfo {
        KernelInfo {
            release,
            probes: Vec::new(),
            tracepoints: RecordKind::ALL
                .into_iter()
                .map(|tp| KindInfo {
                    tracepoint: tp,
                    attached: attached.iter().any(|(t, a)| *t == tp && *a),
                })
                .collect(),
            results,
            task_flags_offset: None,
            task_comm_offset: None,
            task_pid_offsets: None,
            syscall_args: None,
            fexit_start_arg: None,
            calls_by_fexit: false,
            owner: None,
            file: None,
            tracefs: PathBuf::new(),
            tracefs_mounted_by_us: false,
            rings: None,
        }
    }

    /// What this kernel cannot show, one sentence each (empty: everything collapse-trace
    /// traces is observable here). Said by `doctor`, `stat`, `top`'s header and `serve`.
    /// Judged from the attach points the kernel has (`doctor`, before loading) or, for a view
    /// of a capture, from the record kinds collected.
    pub fn gaps(&self) -> Vec<String> {
        let has = |p: Probe| {
            if self.probes.is_empty() {
                self.tracepoints
                    .iter()
                    .any(|t| t.tracepoint == p.kind() && t.attached)
            } else {
                self.probes.get(p as usize).is_some_and(|i| i.usable)
            }
        };
        let mut gaps = Vec::new();
        if !has(Probe::ScanFile) {
            gaps.push(
                "mm_khugepaged_scan_file is absent: file/shmem scans and MADV_COLLAPSE's final \
                 result on them are not observable"
                    .to_string(),
            );
        }
        if !has(Probe::CollapseFile) {
            gaps.push(
                "mm_khugepaged_collapse_file is absent (it came in 6.2): file/shmem collapses \
                 are seen by mm_khugepaged_scan_file only, without the collapse step's own \
                 result"
                    .to_string(),
            );
        }
        if !has(Probe::ScanPmd) {
            gaps.push(
                "mm_khugepaged_scan_pmd is absent: anonymous scans are not observable".into(),
            );
        }
        if !has(Probe::CollapseHugePage) {
            gaps.push(
                "mm_collapse_huge_page is absent: anonymous collapses are not observable".into(),
            );
        }
        if !self.results.names.is_empty() && self.results.number("page_filled").is_none() {
            gaps.push(
                "no `page_filled` result: this kernel predates 'mm/khugepaged: skip shmem with \
                 userfaultfd', so a hole filled during a collapse cannot be reported (and \
                 MADV_COLLAPSE fills holes behind a userfaultfd instead of refusing)"
                    .to_string(),
            );
        }
        if !self.probes.is_empty() && !has(Probe::ExitMadvise) {
            gaps.push(
                "no syscalls:sys_{enter,exit}_madvise: MADV_COLLAPSE errnos are not observable"
                    .to_string(),
            );
        }
        gaps
    }

    /// Fills [`KernelInfo::tracepoints`] in from [`KernelInfo::probes`].
    pub(crate) fn derive_kinds(&mut self) {
        self.tracepoints = RecordKind::ALL
            .into_iter()
            .map(|tp| KindInfo {
                tracepoint: tp,
                attached: self
                    .probes
                    .iter()
                    .any(|p| p.probe.kind() == tp && p.attached)
                    || (tp == RecordKind::MadviseCall && self.calls_by_fexit),
            })
            .collect();
    }

    /// Names of the record kinds collected in this run.
    pub fn attached_names(&self) -> Vec<&'static str> {
        self.tracepoints
            .iter()
            .filter(|t| t.attached)
            .map(|t| t.tracepoint.name())
            .collect()
    }

    /// Names of the record kinds this kernel could not give.
    pub fn missing_names(&self) -> Vec<&'static str> {
        self.tracepoints
            .iter()
            .filter(|t| !t.attached)
            .map(|t| t.tracepoint.name())
            .collect()
    }

    /// Attach points the kernel has everything for.
    pub fn available(&self) -> impl Iterator<Item = &ProbeInfo> {
        self.probes.iter().filter(|p| p.usable)
    }
}
