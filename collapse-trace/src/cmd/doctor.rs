//! `collapse-trace doctor`: what this kernel supports and what is missing, in words a user
//! can act on. Loads nothing but one program, to see whether the kernel allows the fexit on
//! madvise_collapse (unloaded at once).

use std::{fmt::Write as _, path::PathBuf};

use anyhow::Result;
use clap::Args;

use crate::{
    kernel::{btf, caps, tracefs::Tracefs},
    model::kernel_info::KernelInfo,
};

/// Options of `doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Read tracepoint formats from this directory instead of the mounted tracefs (testing).
    #[arg(long, hide = true, value_parser = super::parse_tracefs_dir)]
    tracefs: Option<PathBuf>,
}

/// Runs `doctor`; fails when tracing cannot work here: exit 3 for missing privilege
/// (capabilities, an unreadable tracefs), 4 for what the kernel lacks.
pub fn run(args: DoctorArgs) -> Result<()> {
    let (report, ok) = report(args.tracefs.as_deref());
    print!("{report}");
    if ok {
        return Ok(());
    }
    // Blame what is wrong: missing privilege (exit 3) before the kernel (exit 4).
    let missing = caps::missing(caps::effective());
    if !missing.is_empty() {
        return Err(crate::kernel::KernelError::Privileges(missing.join(" and ")).into());
    }
    if args.tracefs.is_none()
        && let Some(p) = Tracefs::find_unreadable()
    {
        return Err(crate::kernel::KernelError::Tracefs(
            crate::kernel::tracefs::TracefsError::Unreadable(p),
        )
        .into());
    }
    Err(crate::kernel::KernelError::NoTracepoints.into())
}

fn mark(ok: bool) -> &'static str {
    if ok { "ok  " } else { "MISSING" }
}

/// The report text, and whether collapse-trace can trace on this machine.
pub fn report(tracefs: Option<&std::path::Path>) -> (String, bool) {
    let mut o = String::new();
    let release = crate::kernel::probes::kernel_release();
    let _ = writeln!(o, "kernel      {release}");

    let eff = caps::effective();
    let missing = caps::missing(eff);
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let _ = writeln!(
        o,
        "privileges  {} euid={euid} CapEff={eff:#x} (CAP_BPF {}, CAP_PERFMON {}, CAP_SYS_ADMIN {})",
        mark(missing.is_empty()),
        yes(caps::has(eff, caps::CAP_BPF)),
        yes(caps::has(eff, caps::CAP_PERFMON)),
        yes(caps::has(eff, caps::CAP_SYS_ADMIN)),
    );
    if !missing.is_empty() {
        let _ = writeln!(
            o,
            "            -> missing {}: run with sudo, or grant the capabilities (README: Privileges)",
            missing.join(" and ")
        );
    }

    let mounted = tracefs.map(|p| p.to_path_buf()).or_else(Tracefs::find);
    match &mounted {
        Some(p) => {
            let _ = writeln!(o, "tracefs     ok   mounted at {}", p.display());
        }
        None => match Tracefs::find_unreadable() {
            Some(p) => {
                let _ = writeln!(
                    o,
                    "tracefs     UNREADABLE mounted at {} but this user may not read it; run as \
                     root, or add CAP_DAC_READ_SEARCH to CAP_BPF and CAP_PERFMON",
                    p.display()
                );
            }
            None => {
                let _ = writeln!(
                    o,
                    "tracefs     MISSING not mounted; collapse-trace mounts it when run as root, \
                     or: mount -t tracefs nodev /sys/kernel/tracing"
                );
            }
        },
    }

    let btf = btf::read_vmlinux();
    match &btf {
        Ok(b) => {
            let _ = writeln!(
                o,
                "BTF         ok   {} (task_struct.flags at {}, .comm at {}; enum scan_result: {} values)",
                btf::VMLINUX,
                b.task_flags_offset
                    .map_or("not found: origin reads `unknown`".into(), |x| format!(
                        "+{x}"
                    )),
                b.task_comm_offset
                    .map_or("not found: the comm helper is used".into(), |x| format!(
                        "+{x}"
                    )),
                b.scan_result.len()
            );
            let syscalls = match (b.syscall_args, b.task_flags_offset) {
                (Some(a), Some(_)) => format!(
                    "MADV_COLLAPSE calls tracked by the syscall exits alone (arguments from the \
                     saved registers, pt_regs +{} +{} +{} +{})",
                    a[0], a[1], a[2], a[3]
                ),
                _ => "MADV_COLLAPSE calls tracked by the syscall entries and exits (no x86-64 \
                      pt_regs in BTF)"
                    .to_string(),
            };
            // The choice `stat`, `top`, `record` and `serve` make at start (--calls-via auto).
            let calls = match b.madvise_collapse_start_arg() {
                None => format!(
                    "{syscalls}; no fexit: BTF has no madvise_collapse(vma, [prev,] start, end)"
                ),
                Some(arg) if b.syscall_args.is_some() && b.task_flags_offset.is_some() => {
                    match crate::kernel::probes::fexit_trial(arg) {
                        Ok(()) => format!(
                            "MADV_COLLAPSE calls tracked by an fexit on madvise_collapse (its \
                             return value is the result; start is argument {arg}); the syscall \
                             exits are the fallback (--calls-via syscalls)"
                        ),
                        Err(e) => format!(
                            "{syscalls}; the fexit on madvise_collapse is refused here ({e})"
                        ),
                    }
                }
                Some(_) => format!("{syscalls}; fexit not tried (it needs the exit-only mode)"),
            };
            let _ = writeln!(o, "calls       {calls}");
            let _ = writeln!(
                o,
                "owners      {}",
                match b.owner {
                    Some(w) => format!(
                        "events filed under the owner of the memory: mm->owner (mm_struct +{}), \
                         its tgid +{}, comm +{}, cgroup task->cgroups +{} ->dfl_cgrp +{} ->kn +{} \
                         ->id +{}",
                        w.mm_owner,
                        w.task_tgid,
                        w.task_comm,
                        w.task_cgroups,
                        w.css_set_dfl_cgrp,
                        w.cgroup_kn,
                        w.kn_id
                    ),
                    None => "MISSING: BTF lacks mm_struct.owner (CONFIG_MEMCG) or the cgroup \
                             chain; events carry no owner"
                        .to_string(),
                }
            );
        }
        Err(e) => {
            let _ = writeln!(
                o,
                "BTF         MISSING {e:#}: khugepaged vs MADV_COLLAPSE origin will read `unknown` \
                 (needs CONFIG_DEBUG_INFO_BTF)"
            );
        }
    }

    let _ = writeln!(o, "rings       {}", rings_line());
    let _ = writeln!(
        o,
        "cgroup2     {}",
        crate::kernel::cgroups::cgroup2_mount().map_or(
            "not mounted: cgroup ids are shown as numbers".to_string(),
            |m| format!("{} (cgroup ids resolved to paths there)", m.display())
        )
    );

    let mut ok = missing.is_empty();
    let mut gaps = Vec::new();
    if mounted.is_none() {
        // Without tracefs nothing below can be read; root can mount it at run time.
        let why = match Tracefs::find_unreadable() {
            Some(_) => "readable (a privilege problem, not the kernel's)",
            None => "mounted",
        };
        let _ = writeln!(o, "\ncannot read tracepoints until tracefs is {why}");
        return (o, false);
    }
    match KernelInfo::probe(mounted.as_deref()) {
        Ok(info) => {
            let _ = writeln!(o, "\ntracepoints");
            let trial = crate::kernel::probes::btf_trial(&info);
            for t in &info.probes {
                let tp = t.probe;
                match &t.format {
                    None => {
                        let _ = writeln!(
                            o,
                            "  {:<34} MISSING (the kernel has no such event)",
                            format!("{}:{}", tp.group(), tp.name())
                        );
                    }
                    Some(f) => {
                        let path = if t.layout.compiled != 0 {
                            "compiled layout: direct loads"
                        } else {
                            "layout differs from the compiled one: probe-read path"
                        };
                        let usable = t.usable;
                        let _ = writeln!(
                            o,
                            "  {:<34} {} id {}, {path}",
                            format!("{}:{}", tp.group(), tp.name()),
                            mark(usable),
                            f.id
                        );
                        let fields: Vec<String> = f
                            .fields
                            .iter()
                            .map(|x| format!("{}@{}/{}", x.name, x.offset, x.size))
                            .collect();
                        let _ = writeln!(o, "    fields: {}", fields.join(" "));
                    }
                }
                if t.format.is_some()
                    && let Some(how) = read_by(t, &trial)
                {
                    let _ = writeln!(o, "    read by: {how}");
                }
                for w in &t.warnings {
                    let _ = writeln!(o, "    warning: {w}");
                }
            }
            gaps = info.gaps();
            if !gaps.is_empty() {
                let _ = writeln!(o, "\nnot observable on this kernel");
                for g in &gaps {
                    let _ = writeln!(o, "  - {g}");
                }
            }
            let any = info.available().next().is_some();
            ok &= any;
            if !any {
                let _ = writeln!(
                    o,
                    "  -> no collapse tracepoint: needs CONFIG_TRANSPARENT_HUGEPAGE and kernel >= ~6.1"
                );
            }
            if !info.probes[collapse_trace_common::Probe::ExitMadvise as usize].usable {
                let _ = writeln!(
                    o,
                    "  -> no syscalls:sys_{{enter,exit}}_madvise (CONFIG_FTRACE_SYSCALLS): \
                     MADV_COLLAPSE errnos cannot be joined with their results"
                );
            }
            let r = &info.results;
            let _ = writeln!(
                o,
                "\nresult names ({} values) {}",
                r.names.len(),
                r.source.describe()
            );
            let names: Vec<String> = r.names.iter().map(|(n, s)| format!("{n}={s}")).collect();
            for chunk in names.chunks(6) {
                let _ = writeln!(o, "  {}", chunk.join(" "));
            }
            for key in ["page_filled", "exceed_none_pte", "pte_mapped_hugepage"] {
                if r.number(key).is_none() {
                    let _ = writeln!(
                        o,
                        "  note: this kernel has no `{key}` result (older or newer khugepaged)"
                    );
                }
            }
        }
        Err(e) => {
            ok = false;
            let _ = writeln!(o, "\ntracepoints MISSING {e}");
        }
    }

    let _ = writeln!(
        o,
        "\ntransparent huge pages (read only; collapse-trace never changes them)"
    );
    for f in ["enabled", "shmem_enabled", "khugepaged/defrag"] {
        let p = format!("/sys/kernel/mm/transparent_hugepage/{f}");
        let v = std::fs::read_to_string(&p).unwrap_or_else(|e| format!("unreadable: {e}"));
        let _ = writeln!(o, "  {f:<18} {}", v.trim());
    }
    let _ = writeln!(
        o,
        "\nknown quirk: the tracepoints copy the dentry's inline name; file names longer than \
         about 40 bytes may show a stale, unrelated name (kernel side, not collapse-trace)."
    );
    let _ = writeln!(
        o,
        "\nverdict: {}",
        match (ok, gaps.len()) {
            (true, 0) => "ready to trace".to_string(),
            (true, n) => format!(
                "ready to trace, with {n} gap{}: see \"not observable on this kernel\" above",
                if n == 1 { "" } else { "s" }
            ),
            (false, _) => "cannot trace: see MISSING above".to_string(),
        }
    );
    (o, ok)
}

/// The event rings the default `--ring-size` gives this machine.
fn rings_line() -> String {
    use crate::values::bytes_name;
    let r = crate::kernel::probes::ring_layout(None, crate::kernel::probes::possible_cpus());
    format!(
        "{} of event rings by default: {} ({} records) for each of {} possible CPUs \
         (--ring-size to change)",
        bytes_name(r.bytes_per_cpu * u64::from(r.cpus)),
        bytes_name(r.bytes_per_cpu),
        r.records_per_cpu,
        r.cpus,
    )
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Which program `top`, `stat`, `record` and `serve` read huge_memory tracepoint `t` with
/// (`--attach auto`), and why not the BTF-typed one where it is the classic one.
fn read_by(
    t: &crate::model::kernel_info::ProbeInfo,
    trial: &[(collapse_trace_common::Probe, Result<&'static str, String>)],
) -> Option<String> {
    let fits = t.btf_variant.as_ref()?;
    let classic = "the classic tracepoint program (its record; file names from the record's \
                   copy, stale for names over ~40 bytes)";
    Some(match fits {
        Err(why) => format!("{classic}: {why}"),
        Ok(_) => match trial.iter().find(|(p, _)| *p == t.probe).map(|(_, r)| r) {
            Some(Ok(program)) => format!(
                "BTF-typed raw tracepoint {program} (its own arguments: {}; --attach classic \
                 for the record)",
                if t.probe.kind().is_anon() {
                    "the memory's owner"
                } else {
                    "the memory's owner, the file's real name, inode and directories"
                }
            ),
            Some(Err(e)) => match e.strip_prefix(crate::kernel::probes::NOT_TRIED) {
                Some(why) => format!(
                    "the BTF-typed raw tracepoint {} fits this kernel's arguments; whether it \
                     loads was not tried ({why})",
                    collapse_trace_common::BTF_VARIANTS[fits.as_ref().map_or(0, |b| b.variant)]
                        .program
                ),
                None => format!("{classic}: the BTF-typed program was refused ({e})"),
            },
            None => classic.to_string(),
        },
    })
}
