//! `collapse-trace explain --pid P [--duration D] [--json] [--from FILE]`: why a process
//! does (not) get huge pages. Reads the THP settings, the process's mappings, mounts and
//! prctl state, optionally watches its collapses live (filtered by pid in the kernel) or
//! reads them from a recording, and hands everything to [`crate::model::explain`].

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use anyhow::{Context as _, Result, bail};
use clap::Args;

use super::{CollectArgs, sysfs::THP_DIR};
use crate::{
    capture,
    model::{
        aggregate::Aggregate,
        event::escape,
        explain::{
            Explanation, Inputs, Seen, SeenRow, Settings, explain, parse_mountinfo, parse_smaps,
            parse_thp_enabled, selected,
        },
        outcome::Outcome,
    },
    session::{Stop, Wake},
};

/// Options of `explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    collect: CollectArgs,
    /// Also watch the process's collapses this long (live, filtered by --pid in the kernel).
    #[arg(long, short = 'd', value_parser = super::parse_positive_duration, conflicts_with = "from")]
    duration: Option<Duration>,
    /// Take the collapses seen from this recording (`record` file) instead of watching.
    #[arg(long)]
    from: Option<PathBuf>,
    /// Print one JSON document (schema `collapse-trace.explain/1`, docs/json-schema.md).
    #[arg(long)]
    json: bool,
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The THP settings of this machine.
pub fn settings() -> Settings {
    let sel = |name: &str| read(&format!("{THP_DIR}/{name}")).map(|t| selected(&t));
    let mut khugepaged = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(format!("{THP_DIR}/khugepaged")) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(v) = std::fs::read_to_string(e.path()) {
                khugepaged.insert(name, v.trim().to_string());
            }
        }
    }
    let mut sizes = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(THP_DIR) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(size) = name.strip_prefix("hugepages-") else {
                continue;
            };
            let mut knobs = BTreeMap::new();
            for knob in ["enabled", "shmem_enabled"] {
                if let Ok(v) = std::fs::read_to_string(e.path().join(knob)) {
                    knobs.insert(knob.to_string(), selected(&v));
                }
            }
            sizes.insert(size.to_string(), knobs);
        }
    }
    Settings {
        enabled: sel("enabled"),
        defrag: sel("defrag"),
        shmem_enabled: sel("shmem_enabled"),
        khugepaged,
        sizes,
    }
}

fn seen_from(agg: &Aggregate, pid: u32, source: &str, duration_s: Option<f64>) -> Seen {
    let mut rows: Vec<SeenRow> = agg
        .attempts
        .by_tgid
        .get(&pid)
        .map(|m| {
            m.iter()
                .map(|((o, r), n)| SeenRow {
                    outcome: *o,
                    result: r.to_string(),
                    count: *n,
                })
                .collect()
        })
        .unwrap_or_default();
    rows.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(a.result.cmp(&b.result))
            .then(a.outcome.cmp(&b.outcome))
    });
    Seen {
        source: source.to_string(),
        duration_s,
        attempts: rows.iter().map(|r| r.count).sum(),
        rows,
    }
}

/// Whether the file behind `path` is on a tmpfs (statfs `f_type` TMPFS_MAGIC).
fn on_tmpfs(path: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(path) else {
        return false;
    };
    // SAFETY: a zeroed statfs the call fills; `c` is a NUL-terminated path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type == libc::TMPFS_MAGIC
}

/// Runs `explain`.
pub async fn run(args: ExplainArgs) -> Result<()> {
    let Some(pid) = args.collect.pid else {
        bail!("explain needs --pid P");
    };
    let proc_dir = format!("/proc/{pid}");
    let comm = read(&format!("{proc_dir}/comm"))
        .with_context(|| format!("process {pid} is gone (no {proc_dir}/comm)"))?;
    let table = crate::kernel::probes::local_result_table();
    let mut agg = Aggregate::new(table.clone());
    let mut source = "none";
    let mut duration_s = None;
    if let Some(file) = &args.from {
        agg = capture::load(file, None, &table, &mut |_| {})?.agg;
        source = "recording";
    } else if let Some(d) = args.duration {
        let stop = Stop::new(None)?;
        let mut session = args.collect.start(true, stop)?;
        agg = Aggregate::new(session.info().results.clone());
        super::sysfs::prime(&mut agg, args.collect.precise_time);
        eprintln!(
            "collapse-trace: attached; watching process {pid}'s collapses for {}",
            humantime::format_duration(d)
        );
        session.set_duration(Some(d));
        while session.wait().await == Wake::Drain {
            session.drain(|e| agg.add(e));
        }
        let kernel = session.finish(|e| agg.add(e))?;
        agg.set_kernel(kernel);
        source = "live";
        duration_s = Some(session.elapsed().as_secs_f64());
    }
    // Read the process after watching: what it looks like now.
    let smaps = read(&format!("{proc_dir}/smaps"))
        .with_context(|| format!("reading {proc_dir}/smaps (process gone?)"))?;
    let status = read(&format!("{proc_dir}/status")).unwrap_or_default();
    let mountinfo = read(&format!("{proc_dir}/mountinfo")).unwrap_or_default();
    let ranges = |start: u64, end: u64| -> BTreeMap<Outcome, u64> {
        let mut m = BTreeMap::new();
        for ((tgid, s), by) in &agg.attempts.ranges {
            if *tgid == pid && *s >= start && *s < end {
                for (o, n) in by {
                    *m.entry(*o).or_default() += n;
                }
            }
        }
        m
    };
    let mut mappings = parse_smaps(&smaps);
    for m in mappings
        .iter_mut()
        .filter(|m| !m.path.is_empty() && !m.path.starts_with('['))
    {
        m.on_tmpfs = on_tmpfs(&format!("{proc_dir}/map_files/{:x}-{:x}", m.start, m.end));
    }
    let e = explain(Inputs {
        pid,
        comm: escape(comm.trim().as_bytes()),
        settings: settings(),
        thp_enabled: parse_thp_enabled(&status),
        tmpfs: parse_mountinfo(&mountinfo),
        mappings,
        ranges: &ranges,
        seen: seen_from(&agg, pid, source, duration_s),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&e)?);
    } else {
        print!("{}", render(&e));
    }
    Ok(())
}

/// The text answer.
pub fn render(e: &Explanation) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let s = &e.settings;
    let _ = writeln!(o, "collapse-trace explain: {} ({})", e.comm, e.pid);
    let _ = writeln!(o, "\nVerdict");
    for v in &e.verdict {
        let _ = writeln!(o, "  - {v}");
    }
    if !e.changes.is_empty() {
        let _ = writeln!(o, "\nMost likely to help");
        for (i, c) in e.changes.iter().enumerate() {
            let _ = writeln!(o, "  {}. {c}", i + 1);
        }
    }
    let q = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
    let _ = writeln!(
        o,
        "\nSettings: enabled={} defrag={} shmem_enabled={}; process THP_enabled={}",
        q(&s.enabled),
        q(&s.defrag),
        q(&s.shmem_enabled),
        e.thp_enabled
            .map_or("not shown".to_string(), |b| u8::from(b).to_string())
    );
    let k: Vec<String> = s
        .khugepaged
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let _ = writeln!(o, "  khugepaged: {}", k.join(" "));
    let sizes: Vec<String> = s
        .sizes
        .iter()
        .map(|(size, m)| {
            let v: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{size}: {}", v.join(" "))
        })
        .collect();
    if !sizes.is_empty() {
        let _ = writeln!(o, "  per size: {}", sizes.join("; "));
    }
    for t in &e.tmpfs {
        let _ = writeln!(o, "  tmpfs {} huge={}", t.mount_point, t.huge);
    }
    let _ = writeln!(o, "\nMappings of 2 MiB or more ({})", e.mappings.len());
    for m in &e.mappings {
        let _ = writeln!(
            o,
            "  {:#x}-{:#x} {:>8} KiB {:<6} {} ; huge {} KiB, resident {} KiB{}",
            m.start,
            m.end,
            m.size_kb,
            format!("{:?}", m.kind).to_lowercase(),
            if m.path.is_empty() {
                "[anonymous]"
            } else {
                &m.path
            },
            m.huge_kb,
            m.rss_kb,
            m.userfaultfd
                .as_deref()
                .map_or(String::new(), |u| format!(", userfaultfd {u}"))
        );
        let _ = writeln!(
            o,
            "      khugepaged {}, MADV_COLLAPSE {} ({}): {}",
            if m.khugepaged_eligible { "yes" } else { "no" },
            if m.madv_collapse_eligible {
                "yes"
            } else {
                "no"
            },
            m.governed_by,
            m.why
        );
        if !m.attempts.is_empty() {
            let a: Vec<String> = m
                .attempts
                .iter()
                .map(|(o, n)| format!("{} {n}", o.name()))
                .collect();
            let _ = writeln!(o, "      attempts seen: {}", a.join(", "));
        }
    }
    let _ = writeln!(
        o,
        "\nCollapses seen ({}{}): {} attempts",
        e.seen.source,
        e.seen
            .duration_s
            .map_or(String::new(), |d| format!(", {d:.1} s")),
        e.seen.attempts
    );
    for r in &e.seen.rows {
        let _ = writeln!(
            o,
            "  {:<19} {:<32} {:>7}",
            r.outcome.name(),
            r.result,
            r.count
        );
    }
    o
}
