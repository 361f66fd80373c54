//! What is known about the kernel a run was made on (or a capture was taken on): its
//! attach points, the record kinds collected, the result names, BTF offsets. Plain data:
//! [`crate::kernel`] fills it in from the running kernel, a capture from its header.

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
    /// The BTF offsets that lead from an `mm_struct` to its owner and the owner's cgroup, if
    /// BTF had every one (else events carry no owner).
    pub owner: Option<collapse_trace_common::OwnerConfig>,
    /// tracefs mount point.
    pub tracefs: PathBuf,
    /// Whether collapse-trace mounted tracefs itself.
    pub tracefs_mounted_by_us: bool,
}

impl KernelInfo {
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
            owner: None,
            tracefs: PathBuf::new(),
            tracefs_mounted_by_us: false,
        }
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
                    .any(|p| p.probe.kind() == tp && p.attached),
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
