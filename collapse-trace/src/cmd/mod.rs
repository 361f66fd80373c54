//! One module per subcommand.

pub mod doctor;
pub mod explain;
pub mod provoke;
pub mod record;
pub mod report;
pub mod serve;
pub mod stat;
pub mod sysfs;
pub mod top;

use std::{path::PathBuf, time::Duration};

use anyhow::Result;
use clap::Args;

use crate::{
    kernel::{cgroups::CgroupResolver, pods::PodDirectory, probes::ProbeOptions},
    model::filters::Filters,
    session::{Session, Stop},
};

/// Options shared by every subcommand that attaches.
#[derive(Debug, Args)]
pub struct CollectArgs {
    /// Only events of this process id, as the task that ran the code or as the owner of the
    /// memory worked on (so khugepaged's work on its memory counts too); filtered in the
    /// kernel, so counts stay exact.
    #[arg(long, short = 'p', value_parser = parse_pid)]
    pub pid: Option<u32>,
    /// Only events whose task or memory owner has exactly this comm (filtered in the kernel).
    #[arg(long, short = 'c', value_parser = parse_comm)]
    pub comm: Option<String>,
    /// Only events whose task or memory owner is in this cgroup v2 (not its children): a path
    /// inside the cgroup2 mount or from its root (`/system.slice/foo.service`); filtered in
    /// the kernel.
    #[arg(long, value_parser = parse_cgroup)]
    pub cgroup: Option<CgroupArg>,
    /// Count only: no per-event records (cheapest; no process or file tables).
    #[arg(long)]
    pub no_events: bool,
    /// Leave out the MADV_COLLAPSE call hooks (madvise syscall entry/exit): no counts by
    /// errno, no errno join; the cheapest mode, for exporters that only need results.
    #[arg(long)]
    pub no_calls: bool,
    /// How MADV_COLLAPSE calls are hooked: `auto` (the fexit on madvise_collapse where the
    /// kernel allows BPF trampolines, else the syscall hooks), `fexit` (fail where refused) or
    /// `syscalls` (the madvise syscall exits, which run on every madvise(2)).
    #[arg(long, value_enum, default_value = "auto")]
    pub calls_via: crate::kernel::probes::CallsVia,
    /// How the huge_memory tracepoints are read: `auto` (BTF-typed raw tracepoints where BTF
    /// shows arguments they are built for, else the classic programs), `btf` (the
    /// tracepoints' own arguments: real file names, inode, directories; fail where not
    /// possible) or `classic` (the record the kernel builds for a tracepoint program, whose
    /// file name is stale for names over ~40 bytes). `doctor` says which this kernel gets.
    #[arg(long = "attach", value_enum, default_value = "auto")]
    pub attach_via: crate::kernel::probes::AttachVia,
    /// Bytes of event rings, all CPUs together (a power of two, at least 4096): each CPU gets
    /// an equal share in whole records of 544 bytes, at least 4. Default: 256 KiB for each
    /// possible CPU, at least 8 MiB and at most 64 MiB in all.
    #[arg(long, value_name = "BYTES", value_parser = parse_ring_size)]
    pub ring_size: Option<u32>,
    /// Size the rings and the reader for this many possible CPUs (testing: a big machine's
    /// ring memory and merge on a small one).
    #[arg(long, hide = true)]
    pub possible_cpus: Option<u32>,
    /// Read tracepoint formats from this directory instead of the mounted tracefs (testing).
    #[arg(long, hide = true, value_parser = parse_tracefs_dir)]
    pub tracefs: Option<PathBuf>,
    /// Kernel-side diagnostics through aya-log (costs time on every event).
    #[arg(long)]
    pub kernel_log: bool,
    /// Read the clock for every record: ns-exact event times, at 15-90 ns more per record in a
    /// virtual machine. By default the clock is read once per kernel tick and shared by all
    /// CPUs, so times may lag by up to one tick (4 ms at HZ=250); events come in time order
    /// either way.
    #[arg(long)]
    pub precise_time: bool,
    /// Read fields with the probe helper even on the compiled layout (testing).
    #[arg(long, hide = true)]
    pub force_probe_read: bool,
    /// Stall the reader: no kernel wakeups, drain every 2 s (overflow tests).
    #[arg(long, hide = true)]
    pub stall_reader: bool,
}

/// `--pid`: a live process id (a thread group leader). 0 would switch the kernel filter off, a
/// thread id or a gone process would count nothing: all three are mistakes worth a message.
pub fn parse_pid(s: &str) -> Result<u32, String> {
    let pid: u32 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a process id (a positive whole number)"))?;
    if pid == 0 {
        return Err("0 is not a process id".to_string());
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|_| format!("no process has pid {pid} (nothing to filter on)"))?;
    let tgid = status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse::<u32>().ok());
    match tgid {
        Some(t) if t != pid => Err(format!(
            "{pid} is a thread of process {t}; the filter is per process: use --pid {t}"
        )),
        _ => Ok(pid),
    }
}

/// `--cgroup`: the path as given and the cgroup's id.
#[derive(Debug, Clone)]
pub struct CgroupArg {
    /// As given.
    pub path: String,
    /// The cgroup id (its directory's inode number).
    pub id: u64,
}

/// `--cgroup`: an existing cgroup v2 directory.
pub fn parse_cgroup(s: &str) -> Result<CgroupArg, String> {
    Ok(CgroupArg {
        path: s.to_string(),
        id: crate::kernel::cgroups::id_of(s)?,
    })
}

/// Names every cgroup id `agg` has seen and not yet named, from this machine's cgroup2 mount.
pub fn name_cgroups(agg: &mut crate::model::aggregate::Aggregate, r: &mut CgroupResolver) {
    for id in agg.unnamed_cgroups() {
        let path = r.path(id);
        agg.set_cgroup_path(id, path);
    }
}

/// Where pods get their names (`stat`, `serve`).
#[derive(Debug, Args)]
pub struct PodsArgs {
    /// The kubelet's pod log directory (one `<namespace>_<name>_<uid>/` per pod): names the
    /// Kubernetes pods whose cgroups events come from. Where it does not exist, pods are
    /// shown by UID only.
    #[arg(long, value_name = "DIR", default_value = crate::kernel::pods::DEFAULT_PODS_DIR)]
    pub pods_dir: PathBuf,
}

impl PodsArgs {
    /// The directory, not read yet.
    pub fn directory(&self) -> PodDirectory {
        PodDirectory::new(self.pods_dir.clone())
    }
}

/// Names every pod UID in `agg`'s cgroup paths that has no name yet and that `pods` lists.
pub fn name_pods(agg: &mut crate::model::aggregate::Aggregate, pods: &mut PodDirectory) {
    for uid in agg.unnamed_pods() {
        if let Some(name) = pods.name(&uid) {
            agg.set_pod_name(uid, name);
        }
    }
}

/// `--comm`: 1 to 15 bytes (the kernel's TASK_COMM_LEN less the NUL), no NUL.
pub fn parse_comm(s: &str) -> Result<String, String> {
    let max = collapse_trace_common::COMM_LEN - 1;
    if s.is_empty() {
        return Err("an empty comm matches no task".to_string());
    }
    if s.len() > max {
        return Err(format!(
            "{s:?} is {} bytes; the kernel keeps at most {max} bytes of a comm, so it could \
             never match (use the first {max})",
            s.len()
        ));
    }
    Ok(s.to_string())
}

/// `--tracefs`: an existing, readable directory (whether it holds the right events is told
/// later, with the kernel's other checks).
pub fn parse_tracefs_dir(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    match std::fs::read_dir(&p) {
        Ok(_) => Ok(p),
        Err(e) => Err(format!("cannot read directory {s:?}: {e}")),
    }
}

pub use crate::values::parse_positive_duration;

/// A warning on stderr when records were dropped: how big the rings were and what to do.
/// The counts stay exact either way (the kernel counts every event); the tables and the
/// recording miss the dropped records.
pub fn warn_drops(info: &crate::model::kernel_info::KernelInfo, dropped: u64) {
    if let Some(w) = drop_warning(info.rings, dropped) {
        eprintln!("collapse-trace: warning: {w}");
    }
}

/// The words of [`warn_drops`] (`None`: nothing dropped, or no rings).
fn drop_warning(
    rings: Option<crate::model::kernel_info::RingLayout>,
    dropped: u64,
) -> Option<String> {
    use crate::values::bytes_name;
    let r = rings.filter(|_| dropped > 0)?;
    let total = r.bytes_per_cpu * u64::from(r.cpus);
    Some(format!(
        "{dropped} event records were dropped: a CPU wrote more than its ring holds ({} \
         records, {}; {} in all over {} CPUs) before the reader emptied it. Counts are still \
         exact; the per-event tables miss them. A larger ring holds longer bursts: try \
         --ring-size {}",
        r.records_per_cpu,
        bytes_name(r.bytes_per_cpu),
        bytes_name(total),
        r.cpus,
        bytes_name(total.next_power_of_two() * 2).replace(' ', "")
    ))
}

fn parse_ring_size(s: &str) -> Result<u32, String> {
    let n = crate::values::parse_bytes(s)?;
    let hint = || n.clamp(4096, 1 << 31).next_power_of_two();
    match u32::try_from(n) {
        Ok(n) if n >= 4096 && n.is_power_of_two() => Ok(n),
        _ => Err(format!(
            "{s:?} is not a power of two from 4 KiB to 2 GiB (try {})",
            crate::values::bytes_name(hint())
        )),
    }
}

impl CollectArgs {
    /// The kernel side's options.
    pub fn options(&self, events: bool) -> ProbeOptions {
        ProbeOptions {
            events: events && !self.no_events,
            calls: !self.no_calls,
            pid: self.pid,
            comm: self.comm.clone(),
            cgroup: self.cgroup.as_ref().map(|c| c.id),
            ring_bytes: self.ring_size,
            possible_cpus: self.possible_cpus,
            kernel_log: self.kernel_log,
            tracefs: self.tracefs.clone(),
            force_probe_read: self.force_probe_read,
            no_wakeup: self.stall_reader,
            precise_time: self.precise_time,
            calls_via: self.calls_via,
            attach_via: self.attach_via,
        }
    }

    /// Attaches and opens the counting window, with `stop` (made before attaching, so that a
    /// signal while attaching ends the run cleanly). `events: false` counts only, whatever
    /// `--no-events` says.
    pub fn start(&self, events: bool, stop: Stop) -> Result<Session> {
        Ok(Session::start(
            &self.options(events),
            self.drain_tick(),
            stop,
        )?)
    }

    /// How long to wait for a kernel wakeup before draining anyway.
    pub fn drain_tick(&self) -> Duration {
        if self.stall_reader {
            Duration::from_secs(2)
        } else {
            crate::kernel::stream::DRAIN_TICK
        }
    }

    /// The filters, as outputs report them.
    pub fn filters(&self) -> Filters {
        Filters {
            pid: self.pid,
            comm: self.comm.clone(),
            cgroup: self.cgroup.as_ref().map(|c| c.path.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked() {
        assert!(parse_pid("0").is_err());
        assert!(parse_pid("-3").is_err());
        assert!(parse_pid("abc").is_err());
        assert_eq!(
            parse_pid(&std::process::id().to_string()),
            Ok(std::process::id())
        );
        assert!(parse_pid("4194304").unwrap_err().contains("no process"));
        assert!(parse_comm("").is_err());
        assert!(parse_comm("0123456789abcdef").unwrap_err().contains("15"));
        assert_eq!(parse_comm("khugepaged").as_deref(), Ok("khugepaged"));
        assert!(parse_positive_duration("0s").is_err());
        assert!(parse_positive_duration("ten").unwrap_err().contains("try"));
        assert_eq!(parse_positive_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_tracefs_dir("/nonexistent/ct").is_err());
    }

    #[test]
    fn a_drop_warning_names_the_rings_and_a_size_to_try() {
        use crate::model::kernel_info::RingLayout;
        let r = RingLayout {
            cpus: 2,
            records_per_cpu: 7710,
            bytes_per_cpu: 7710 * 544,
        };
        assert_eq!(drop_warning(Some(r), 0), None);
        assert_eq!(drop_warning(None, 5), None);
        let w = drop_warning(Some(r), 5).unwrap();
        assert!(w.starts_with("5 event records were dropped"), "{w}");
        assert!(
            w.contains("(7710 records, 4.0 MiB; 8.0 MiB in all over 2 CPUs)"),
            "{w}"
        );
        assert!(w.ends_with("try --ring-size 16MiB"), "{w}");
    }

    #[test]
    fn default_rings_have_a_floor_per_cpu_and_a_cap() {
        use collapse_trace_common::{default_ring_bytes, ring_slots};
        // Small machines: 8 MiB in all.
        assert_eq!(default_ring_bytes(1), 8 << 20);
        assert_eq!(default_ring_bytes(2), 8 << 20);
        assert_eq!(default_ring_bytes(32), 8 << 20);
        // 256 KiB a CPU up to the 64 MiB cap at 256 CPUs, less a CPU beyond.
        assert_eq!(default_ring_bytes(64), 16 << 20);
        assert_eq!(default_ring_bytes(256), 64 << 20);
        assert_eq!(default_ring_bytes(384), 64 << 20);
        assert_eq!(ring_slots(default_ring_bytes(256), 256), 481);
        assert_eq!(ring_slots(default_ring_bytes(2), 2), 7710);
        assert_eq!(default_ring_bytes(u32::MAX), 64 << 20);
    }

    #[test]
    fn ring_sizes_are_checked() {
        assert_eq!(parse_ring_size("8192"), Ok(8192));
        assert_eq!(parse_ring_size("64MiB"), Ok(64 << 20));
        assert!(parse_ring_size("5000").unwrap_err().contains("try 8 KiB"));
        assert!(parse_ring_size("1k").is_err());
        assert!(parse_ring_size("4GiB").unwrap_err().contains("2 GiB"));
    }
}
