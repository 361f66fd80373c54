//! Parsers for what the bench reads from the system: `bpftool -j prog show`, `bpftool -j perf
//! show`, `/proc/PID/fdinfo/FD` of a BPF program, `/proc/PID/stat` and `/proc/PID/status`,
//! bpftrace's map dump, and `collapse-trace stat --json` / `provoke --json`. Pure functions, so
//! unit tests catch a format change before a bench run does.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

/// One program from `bpftool -j prog show`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Prog {
    pub id: u32,
    #[serde(default)]
    pub name: String,
    /// `tracepoint`, `raw_tracepoint`, `tracing`, ...
    #[serde(default, rename = "type")]
    pub prog_type: String,
    /// Present only while `kernel.bpf_stats_enabled` is (or was) on.
    #[serde(default)]
    pub run_time_ns: u64,
    #[serde(default)]
    pub run_cnt: u64,
}

/// `bpftool -j prog show` -> programs by id.
pub fn bpftool_progs(json: &str) -> Result<BTreeMap<u32, Prog>> {
    let progs: Vec<Prog> =
        serde_json::from_str(json).context("`bpftool -j prog show` printed unexpected JSON")?;
    Ok(progs.into_iter().map(|p| (p.id, p)).collect())
}

/// One tracepoint attachment from `bpftool -j perf show`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PerfAttach {
    pub pid: u32,
    pub prog_id: u32,
    #[serde(default)]
    pub fd_type: String,
    /// The tracepoint name for `fd_type == "tracepoint"`.
    #[serde(default)]
    pub tracepoint: Option<String>,
}

/// `bpftool -j perf show` -> the tracepoint attachments.
pub fn bpftool_perf(json: &str) -> Result<Vec<PerfAttach>> {
    let all: Vec<PerfAttach> =
        serde_json::from_str(json).context("`bpftool -j perf show` printed unexpected JSON")?;
    Ok(all
        .into_iter()
        .filter(|a| a.fd_type == "tracepoint" && a.tracepoint.is_some())
        .collect())
}

/// How many perf-event attachments of any kind (tracepoint, kprobe, ...) `bpftool -j perf
/// show` lists for `pid`.
pub fn perf_attachments_of(json: &str, pid: u32) -> Result<usize> {
    let all: Vec<PerfAttach> =
        serde_json::from_str(json).context("`bpftool -j perf show` printed unexpected JSON")?;
    Ok(all.iter().filter(|a| a.pid == pid).count())
}

/// The statistics of one BPF program fd, from `/proc/PID/fdinfo/FD`; `None` when the fd is not
/// a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProgFdInfo {
    pub prog_id: u32,
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// Parses a program fd's fdinfo (`prog_id:\t12`, `run_time_ns:\t...`, `run_cnt:\t...`).
pub fn prog_fdinfo(text: &str) -> Option<ProgFdInfo> {
    let mut info = ProgFdInfo::default();
    let mut is_prog = false;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "prog_type" => is_prog = true,
            "prog_id" => info.prog_id = value.parse().ok()?,
            "run_time_ns" => info.run_time_ns = value.parse().ok()?,
            "run_cnt" => info.run_cnt = value.parse().ok()?,
            _ => {}
        }
    }
    (is_prog && info.prog_id != 0).then_some(info)
}

/// CPU time of a process from `/proc/PID/stat`, in clock ticks: (utime, stime).
pub fn proc_stat_ticks(text: &str) -> Result<(u64, u64)> {
    // The comm (field 2) is in parentheses and may hold spaces: count from the last ')'.
    let rest = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("no ')' in /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    if fields.len() < 13 {
        bail!("/proc/PID/stat has only {} fields after comm", fields.len());
    }
    let utime = fields[11].parse().context("utime in /proc/PID/stat")?;
    let stime = fields[12].parse().context("stime in /proc/PID/stat")?;
    Ok((utime, stime))
}

/// A `kB` field (`VmHWM`, `VmRSS`) of `/proc/PID/status`, in KiB.
pub fn status_kib(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}

/// bpftrace's map dump at exit: `@scan[10]: 4711` -> ("scan", 10) -> 4711.
pub fn bpftrace_maps(text: &str) -> BTreeMap<(String, i64), u64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix('@') else {
            continue;
        };
        let Some((key, count)) = rest.rsplit_once(':') else {
            continue;
        };
        let Some((map, idx)) = key.split_once('[') else {
            continue;
        };
        let (Ok(idx), Ok(count)) = (
            idx.trim_end_matches(']').trim().parse::<i64>(),
            count.trim().parse::<u64>(),
        ) else {
            continue;
        };
        out.insert((map.to_string(), idx), count);
    }
    out
}

/// bpftrace's map dump at exit, each map's counts summed over its keys, whatever their shape
/// (`@join[21, 22]: 5` has two): `join` -> 5.
pub fn bpftrace_map_totals(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix('@') else {
            continue;
        };
        let Some((key, count)) = rest.rsplit_once(':') else {
            continue;
        };
        let (Some((map, _)), Ok(count)) = (key.split_once('['), count.trim().parse::<u64>()) else {
            continue;
        };
        *out.entry(map.to_string()).or_default() += count;
    }
    out
}

/// The totals of a `collapse-trace stat --json` document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct StatTotals {
    pub events: u64,
    /// MADV_COLLAPSE calls (their records are delivered or dropped too).
    #[serde(default)]
    pub calls: u64,
    pub delivered: u64,
    pub dropped: u64,
}

/// `stat --json`'s `rings`: how big the event rings were.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize)]
pub struct Rings {
    pub cpus: u32,
    pub records_per_cpu: u32,
    pub bytes_per_cpu: u64,
    pub bytes: u64,
}

/// `stat --json` -> its rings (`None` when it had none: counting only).
pub fn stat_rings(json: &str) -> Result<Option<Rings>> {
    #[derive(Deserialize)]
    struct Doc {
        #[serde(default)]
        rings: Option<Rings>,
    }
    let doc: Doc = serde_json::from_str(json)
        .context("`collapse-trace stat --json` printed unexpected JSON")?;
    Ok(doc.rings)
}

/// `stat --json` -> its totals.
pub fn stat_totals(json: &str) -> Result<StatTotals> {
    #[derive(Deserialize)]
    struct Doc {
        totals: StatTotals,
    }
    let doc: Doc = serde_json::from_str(json)
        .context("`collapse-trace stat --json` printed unexpected JSON")?;
    Ok(doc.totals)
}

/// What a `provoke storm --json` run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct StormTally {
    pub calls: u64,
    pub ok: u64,
    pub loop_us: u64,
    /// The looping thread's CPU time in the loop (binaries from before it was added: None).
    pub loop_cpu_ns: Option<u64>,
}

/// `provoke storm --json` -> its tally (fails when the storm was skipped).
pub fn storm_tally(json: &str) -> Result<StormTally> {
    #[derive(Deserialize)]
    struct Doc {
        scenarios: Vec<Sc>,
    }
    #[derive(Deserialize)]
    struct Sc {
        calls: u64,
        ok: u64,
        skipped: Option<String>,
        loop_us: Option<u64>,
        loop_cpu_ns: Option<u64>,
    }
    let doc: Doc = serde_json::from_str(json)
        .context("`collapse-trace provoke --json` printed unexpected JSON")?;
    let [sc] = doc.scenarios.as_slice() else {
        bail!("expected one scenario in the storm's tally");
    };
    if let Some(why) = &sc.skipped {
        bail!("the storm was skipped: {why}");
    }
    Ok(StormTally {
        calls: sc.calls,
        ok: sc.ok,
        loop_us: sc.loop_us.context("the storm's tally has no loop_us")?,
        loop_cpu_ns: sc.loop_cpu_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured on this project's 6.18 VM with Debian's bpftool 7.1.0 (trimmed).
    const PROG_SHOW: &str = r#"[{"id":141,"type":"tracepoint","name":"scan_file","tag":"0a1b2c3d4e5f6071","gpl_compatible":true,"run_time_ns":9170443,"run_cnt":61234,"loaded_at":1760000000,"uid":0,"orphaned":false,"bytes_xlated":1232,"jited":true,"bytes_jited":712,"bytes_memlock":4096,"map_ids":[55,56,57,58],"btf_id":210,"pids":[{"pid":4242,"comm":"collapse-trace"}]},{"id":150,"type":"tracepoint","name":"tracepoint_huge","tag":"feedfacecafebeef","gpl_compatible":true,"loaded_at":1760000001,"uid":0,"orphaned":false,"bytes_xlated":344,"jited":true,"bytes_jited":200,"bytes_memlock":4096,"map_ids":[60]}]"#;
    const PERF_SHOW: &str = r#"[{"pid":4242,"fd":12,"prog_id":141,"fd_type":"tracepoint","tracepoint":"mm_khugepaged_scan_file"},{"pid":4243,"fd":9,"prog_id":150,"fd_type":"tracepoint","tracepoint":"mm_khugepaged_collapse_file"},{"pid":77,"fd":3,"prog_id":9,"fd_type":"kprobe","func":"do_sys_open","offset":0}]"#;

    #[test]
    fn bpftool_prog_show_is_parsed_with_and_without_stats() {
        let p = bpftool_progs(PROG_SHOW).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[&141],
            Prog {
                id: 141,
                name: "scan_file".into(),
                prog_type: "tracepoint".into(),
                run_time_ns: 9_170_443,
                run_cnt: 61_234
            }
        );
        // A program loaded while stats were off has no run_* keys: zero, not an error.
        assert_eq!((p[&150].run_time_ns, p[&150].run_cnt), (0, 0));
        assert!(bpftool_progs("not json").is_err());
    }

    #[test]
    fn bpftool_perf_show_keeps_tracepoints_only() {
        let a = bpftool_perf(PERF_SHOW).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].pid, 4242);
        assert_eq!(
            a[1].tracepoint.as_deref(),
            Some("mm_khugepaged_collapse_file")
        );
    }

    #[test]
    fn prog_fdinfo_is_parsed_and_other_fds_are_not_programs() {
        let text = "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t2071\nprog_type:\t5\n\
                    prog_jited:\t1\nprog_tag:\t0a1b2c3d4e5f6071\nmemlock:\t4096\nprog_id:\t141\n\
                    run_time_ns:\t123456\nrun_cnt:\t789\nrecursion_misses:\t0\nverified_insns:\t99\n";
        assert_eq!(
            prog_fdinfo(text),
            Some(ProgFdInfo {
                prog_id: 141,
                run_time_ns: 123_456,
                run_cnt: 789
            })
        );
        let map = "pos:\t0\nflags:\t02000002\nmap_type:\t27\nkey_size:\t0\nmap_id:\t57\n";
        assert_eq!(prog_fdinfo(map), None);
    }

    #[test]
    fn proc_stat_and_status_are_parsed() {
        let stat = "4242 (collapse (trace)) S 1 4242 4242 0 -1 4194560 1034 0 0 0 \
                    157 42 0 0 20 0 2 0 123456 1234567 890 18446744073709551615";
        assert_eq!(proc_stat_ticks(stat).unwrap(), (157, 42));
        let status = "Name:\tcollapse-trace\nVmPeak:\t  123456 kB\nVmHWM:\t    9876 kB\nVmRSS:\t    8000 kB\n";
        assert_eq!(status_kib(status, "VmHWM"), Some(9876));
        assert_eq!(status_kib(status, "VmRSS"), Some(8000));
        assert_eq!(status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn bpftrace_map_dump_is_parsed() {
        let out = "Attaching 2 probes...\n\n\n@collapse[22]: 1000\n@scan[22]: 1000\n@scan[10]: 7\n";
        let m = bpftrace_maps(out);
        assert_eq!(m.len(), 3);
        assert_eq!(m[&("scan".to_string(), 22)], 1000);
        assert_eq!(m.values().sum::<u64>(), 2007);
    }

    #[test]
    fn bpftrace_map_totals_take_any_key_shape() {
        let out = "Attaching 4 probes...\n\n\n@call[4242]: 1\n@collapse[22]: 1000\n\
                   @join[22, 22]: 999\n@join[0, 0]: 1\n@scan[10]: 7\n@scan[22]: 1000\n";
        let t = bpftrace_map_totals(out);
        assert_eq!(t["join"], 1000);
        assert_eq!(t["scan"], 1007);
        assert_eq!(t["call"], 1);
        assert!(!t.contains_key("last"));
    }

    #[test]
    fn perf_attachments_of_any_kind_are_counted_per_pid() {
        assert_eq!(perf_attachments_of(PERF_SHOW, 77).unwrap(), 1);
        assert_eq!(perf_attachments_of(PERF_SHOW, 4242).unwrap(), 1);
        assert_eq!(perf_attachments_of(PERF_SHOW, 1).unwrap(), 0);
    }

    #[test]
    fn stat_and_storm_json_are_parsed() {
        let stat = r#"{"schema":"collapse-trace.stat/1","totals":{"events":10,"successes":4,"failures":6,"delivered":7,"dropped":3},"tracepoints":[]}"#;
        assert_eq!(
            stat_totals(stat).unwrap(),
            StatTotals {
                events: 10,
                calls: 0,
                delivered: 7,
                dropped: 3
            }
        );
        let storm = r#"{"pid":1,"scenarios":[{"scenario":"storm","calls":5,"ok":5,"errnos":{},"skipped":null,"loop_us":1000,"loop_cpu_ns":987654}]}"#;
        assert_eq!(
            storm_tally(storm).unwrap(),
            StormTally {
                calls: 5,
                ok: 5,
                loop_us: 1000,
                loop_cpu_ns: Some(987_654)
            }
        );
        let older = storm.replace(r#","loop_cpu_ns":987654"#, "");
        assert_eq!(storm_tally(&older).unwrap().loop_cpu_ns, None);
        let skipped = storm.replace("null", "\"EINVAL\"");
        assert!(
            storm_tally(&skipped)
                .unwrap_err()
                .to_string()
                .contains("skipped")
        );
    }
}
