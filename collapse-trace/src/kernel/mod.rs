//! Everything that talks to the kernel. Views never use this module directly: they read the
//! aggregation core.

pub mod btf;
pub mod caps;
pub mod cgroups;
mod loader;
pub mod pods;
pub mod probes;
pub mod rings;
pub mod stream;
pub mod tracefs;

use collapse_trace_common::Probe;
use thiserror::Error;

/// Why the kernel side could not be set up. Each message names the cause and the fix.
#[derive(Debug, Error)]
pub enum KernelError {
    /// Not root and lacking capabilities.
    #[error(
        "not enough privilege to load eBPF programs: missing {0}. \
         Fix: run as root (`sudo collapse-trace ...`), or grant CAP_BPF and CAP_PERFMON \
         (plus CAP_DAC_READ_SEARCH to read tracefs) to the binary or service (README: Privileges)"
    )]
    Privileges(String),
    /// tracefs trouble.
    #[error(transparent)]
    Tracefs(#[from] tracefs::TracefsError),
    /// A format file that does not parse.
    #[error("cannot understand a tracepoint format: {0}")]
    Format(#[from] crate::model::format::FormatError),
    /// Neither tracepoint exists.
    #[error(
        "this kernel has neither huge_memory:mm_khugepaged_scan_file nor \
         huge_memory:mm_khugepaged_collapse_file (they need CONFIG_TRANSPARENT_HUGEPAGE and \
         a kernel of about 6.1 or newer); `collapse-trace doctor` shows what it has"
    )]
    NoTracepoints,
    /// The event rings publish records by plain stores, ordered only by x86-64's memory
    /// model (the BPF target has no release store here): elsewhere records could be read
    /// half-written.
    #[error(
        "collapse-trace's event rings are only correct on x86-64 (its store order publishes \
         each record); this machine is {0}. Nothing was loaded"
    )]
    UnsupportedArch(&'static str),
    /// A bad filter or option value.
    #[error("{0}")]
    BadFilter(String),
    /// The object did not load (maps, BTF, relocation).
    #[error("loading the eBPF object failed: {0}")]
    Load(#[source] aya::EbpfError),
    /// The object lacks a program: a build problem.
    #[error("the embedded eBPF object has no program `{0}`: rebuild collapse-trace")]
    MissingProgram(&'static str),
    /// The object lacks a map: a build problem.
    #[error("the embedded eBPF object has no map `{0}`: rebuild collapse-trace")]
    MissingMap(&'static str),
    /// A map could not be used.
    #[error("map {0}: {1}")]
    Map(&'static str, #[source] aya::maps::MapError),
    /// A system call around the maps failed.
    #[error("{0}: {1}")]
    Io(&'static str, #[source] std::io::Error),
    /// The verifier refused a program, or attaching failed.
    #[error("{}", program_error(*.0, .1))]
    Program(Probe, aya::programs::ProgramError),
    /// `--calls-via fexit` on a kernel that has no usable fexit on madvise_collapse.
    #[error(
        "--calls-via fexit: the fexit on madvise_collapse cannot be used on this kernel: {0}. \
         Use --calls-via syscalls (or auto, the default)"
    )]
    Fexit(String),
    /// `--attach btf` on a kernel where a BTF-typed program is not possible.
    #[error(
        "--attach btf: the BTF-typed tracepoint programs cannot be used on this kernel: {0}. \
         Use --attach classic (or auto, the default)"
    )]
    Btf(String),
}

fn program_error(tp: Probe, e: &aya::programs::ProgramError) -> String {
    match probes::verifier_log(e) {
        Some(log) => format!(
            "the kernel's verifier rejected the program for {}:{} ({e}). This kernel may \
             differ from what collapse-trace supports; please report it with `collapse-trace \
             doctor` output. Verifier log (end):\n{log}",
            tp.group(),
            tp.name()
        ),
        None => format!(
            "attaching to {}:{} failed: {e}. Check `collapse-trace doctor`",
            tp.group(),
            tp.name()
        ),
    }
}

impl KernelError {
    /// The documented exit code for this error (see the README).
    pub fn exit_code(&self) -> u8 {
        match self {
            KernelError::Privileges(_)
            | KernelError::Tracefs(tracefs::TracefsError::Unreadable(_)) => 3,
            KernelError::Tracefs(_)
            | KernelError::NoTracepoints
            | KernelError::Format(_)
            | KernelError::UnsupportedArch(_) => 4,
            KernelError::Program(_, aya::programs::ProgramError::LoadError { .. }) => 5,
            KernelError::Btf(_) => 4,
            KernelError::BadFilter(_) => 2,
            _ => 1,
        }
    }
}
