//! `explain`'s verdict logic: why a process's memory is (not) in huge pages, from the THP
//! settings, its mappings (`/proc/P/smaps`), its tmpfs mounts and the collapse attempts
//! seen for it. Pure: the command reads the files and passes their text in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::outcome::{Knobs, Outcome, advice};

/// Schema of `explain --json`.
pub const EXPLAIN_SCHEMA: &str = "collapse-trace.explain/1";

/// The 2 MiB range size.
const PMD: u64 = 2 << 20;

/// The selected word of a sysfs choice file (`always [madvise] never` -> `madvise`), or the
/// trimmed text when nothing is bracketed.
pub fn selected(text: &str) -> String {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
        .map_or_else(|| text.trim().to_string(), str::to_string)
}

/// The THP settings that apply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// `transparent_hugepage/enabled` (selected value).
    pub enabled: Option<String>,
    /// `transparent_hugepage/defrag`.
    pub defrag: Option<String>,
    /// `transparent_hugepage/shmem_enabled`.
    pub shmem_enabled: Option<String>,
    /// `transparent_hugepage/khugepaged/*`: knob -> value.
    pub khugepaged: BTreeMap<String, String>,
    /// Per-size (mTHP) settings, `hugepages-<size>kB/*`: size -> (knob -> selected value).
    pub sizes: BTreeMap<String, BTreeMap<String, String>>,
}

impl Settings {
    /// The setting that governs PMD-sized (2 MiB) anonymous THP: `hugepages-2048kB/enabled`
    /// unless it is `inherit` (or absent), then the global `enabled`.
    pub fn anon_pmd(&self) -> Option<String> {
        match self.sizes.get("2048kB").and_then(|m| m.get("enabled")) {
            Some(v) if v != "inherit" => Some(v.clone()),
            _ => self.enabled.clone(),
        }
    }

    /// The knobs advice quotes.
    pub fn knobs(&self) -> Knobs {
        let get = |k: &str| self.khugepaged.get(k).and_then(|v| v.parse().ok());
        Knobs {
            max_ptes_none: get("max_ptes_none"),
            max_ptes_swap: get("max_ptes_swap"),
            max_ptes_shared: get("max_ptes_shared"),
        }
    }
}

/// A tmpfs mount the process can see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsMount {
    /// Mount point.
    pub mount_point: String,
    /// Its `huge=` option (`never` when absent: tmpfs's default).
    pub huge: String,
}

/// The tmpfs mounts of a `/proc/P/mountinfo` text.
pub fn parse_mountinfo(text: &str) -> Vec<TmpfsMount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split_whitespace();
        if post.next() != Some("tmpfs") {
            continue;
        }
        let _source = post.next();
        let opts = post.next().unwrap_or("");
        let Some(mp) = pre.split_whitespace().nth(4) else {
            continue;
        };
        let huge = opts
            .split(',')
            .find_map(|o| o.strip_prefix("huge="))
            .unwrap_or("never");
        out.push(TmpfsMount {
            mount_point: unescape_octal(mp),
            huge: huge.to_string(),
        });
    }
    out
}

/// `\040`-style escapes of /proc files.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `THP_enabled` of a `/proc/P/status` text (the prctl(PR_SET_THP_DISABLE) state): `None`
/// when the kernel does not print it.
pub fn parse_thp_enabled(status: &str) -> Option<bool> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(|v| v.trim() != "0")
}

/// One mapping of `/proc/P/smaps`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    /// Start address.
    pub start: u64,
    /// End address.
    pub end: u64,
    /// `rw-s` etc.
    pub perms: String,
    /// Path or pseudo-path (`[heap]`, `/memfd:x (deleted)`), empty for anonymous memory.
    pub path: String,
    /// `Rss`, KiB.
    pub rss_kb: u64,
    /// `AnonHugePages`, KiB.
    pub anon_huge_kb: u64,
    /// `ShmemPmdMapped`, KiB.
    pub shmem_pmd_kb: u64,
    /// `FilePmdMapped`, KiB.
    pub file_pmd_kb: u64,
    /// `VmFlags`.
    pub vm_flags: Vec<String>,
    /// Whether the mapped file is on a tmpfs (shmem), as the caller found out (statfs of
    /// `/proc/P/map_files/...`): a tmpfs whose mount the process cannot see (detached) is
    /// otherwise not recognisable.
    #[serde(default)]
    pub on_tmpfs: bool,
}

impl Mapping {
    /// Bytes.
    pub fn size(&self) -> u64 {
        self.end - self.start
    }
    /// Whether it holds a 2 MiB-aligned 2 MiB range.
    pub fn has_pmd_range(&self) -> bool {
        self.start.div_ceil(PMD) * PMD + PMD <= self.end
    }
    fn flag(&self, f: &str) -> bool {
        self.vm_flags.iter().any(|x| x == f)
    }
    /// Huge now, KiB.
    pub fn huge_kb(&self) -> u64 {
        self.anon_huge_kb + self.shmem_pmd_kb + self.file_pmd_kb
    }
}

/// The mappings of a `/proc/P/smaps` text.
pub fn parse_smaps(text: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16))
        {
            let perms = words.next().unwrap_or("").to_string();
            // offset, dev, inode, then the path (which may hold spaces).
            let rest: Vec<&str> = line.splitn(6, char::is_whitespace).collect();
            let path = rest.get(5).map_or("", |p| p.trim()).to_string();
            out.push(Mapping {
                start,
                end,
                perms,
                path,
                ..Default::default()
            });
            continue;
        }
        let Some(m) = out.last_mut() else { continue };
        let kb = || {
            words
                .clone()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match first {
            "Rss:" => m.rss_kb = kb(),
            "AnonHugePages:" => m.anon_huge_kb = kb(),
            "ShmemPmdMapped:" => m.shmem_pmd_kb = kb(),
            "FilePmdMapped:" => m.file_pmd_kb = kb(),
            "VmFlags:" => m.vm_flags = words.map(str::to_string).collect(),
            _ => {}
        }
    }
    out
}

/// What kind of memory a mapping is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Private anonymous memory (heap, stack, mmap).
    Anon,
    /// shmem: memfd, SysV, shared anonymous, or a file on a tmpfs.
    Shmem,
    /// A regular file's page cache.
    File,
}

/// One mapping, judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MappingVerdict {
    /// Start address.
    pub start: u64,
    /// End address.
    pub end: u64,
    /// Path or pseudo-path (empty: anonymous).
    pub path: String,
    /// anon, shmem or file.
    pub kind: Kind,
    /// The setting that governs it (`enabled=madvise`, `tmpfs /mnt huge=advise`, ...).
    pub governed_by: String,
    /// Whether khugepaged may collapse it.
    pub khugepaged_eligible: bool,
    /// Whether MADV_COLLAPSE may collapse it.
    pub madv_collapse_eligible: bool,
    /// Why (not).
    pub why: String,
    /// Bytes mapped.
    pub size_kb: u64,
    /// Resident, KiB.
    pub rss_kb: u64,
    /// Huge now (AnonHugePages + ShmemPmdMapped + FilePmdMapped), KiB.
    pub huge_kb: u64,
    /// A userfaultfd registered on it: `missing`, `wp`, `missing+wp`, or null.
    pub userfaultfd: Option<String>,
    /// Attempts seen for its 2 MiB ranges, by outcome.
    pub attempts: BTreeMap<Outcome, u64>,
}

/// Attempts seen for the process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    /// `live` (collected for `duration_s`), `recording` (from a file), or `none`.
    pub source: String,
    /// Seconds collected live.
    pub duration_s: Option<f64>,
    /// Attempts in all.
    pub attempts: u64,
    /// By outcome and result, most first.
    pub rows: Vec<SeenRow>,
}

/// Attempts of one (outcome, result).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeenRow {
    /// Outcome.
    pub outcome: Outcome,
    /// Final result.
    pub result: String,
    /// Attempts.
    pub count: u64,
}

/// The whole answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// Always [`EXPLAIN_SCHEMA`].
    pub schema: String,
    /// The process.
    pub pid: u32,
    /// Its comm (escaped).
    pub comm: String,
    /// The THP settings.
    pub settings: Settings,
    /// Its prctl THP state (`THP_enabled` in /proc/P/status; null when not shown).
    pub thp_enabled: Option<bool>,
    /// tmpfs mounts it sees that its mappings use.
    pub tmpfs: Vec<TmpfsMount>,
    /// Its mappings of 2 MiB or more, with a 2 MiB-aligned range.
    pub mappings: Vec<MappingVerdict>,
    /// Collapse attempts seen for it.
    pub seen: Seen,
    /// The verdict, in sentences.
    pub verdict: Vec<String>,
    /// The one or two changes most likely to help.
    pub changes: Vec<String>,
}

/// Everything the verdict is made from.
pub struct Inputs<'a> {
    /// The process.
    pub pid: u32,
    /// Its comm.
    pub comm: String,
    /// THP settings.
    pub settings: Settings,
    /// `THP_enabled`.
    pub thp_enabled: Option<bool>,
    /// Its tmpfs mounts.
    pub tmpfs: Vec<TmpfsMount>,
    /// Its mappings.
    pub mappings: Vec<Mapping>,
    /// Attempts seen, with the 2 MiB ranges they were on: by (range start) -> by outcome.
    pub ranges: &'a dyn Fn(u64, u64) -> BTreeMap<Outcome, u64>,
    /// Attempts seen in all.
    pub seen: Seen,
}

fn judge(m: &Mapping, inp: &Inputs<'_>, tmpfs_used: &mut Vec<TmpfsMount>) -> MappingVerdict {
    let s = &inp.settings;
    let shared = m.perms.as_bytes().get(3) == Some(&b's');
    let internal_shmem = m.path.starts_with("/memfd:")
        || m.path.starts_with("/SYSV")
        || m.path.starts_with("/dev/zero");
    let mount = inp
        .tmpfs
        .iter()
        .filter(|t| {
            m.path == t.mount_point
                || m.path
                    .starts_with(&format!("{}/", t.mount_point.trim_end_matches('/')))
        })
        .max_by_key(|t| t.mount_point.len());
    let kind = if !shared && (m.path.is_empty() || m.path.starts_with('[')) {
        Kind::Anon
    } else if internal_shmem || mount.is_some() || m.on_tmpfs || (shared && m.path.is_empty()) {
        Kind::Shmem
    } else {
        Kind::File
    };
    let (governed_by, mut kh, mut mc, mut why) = match kind {
        Kind::Anon => {
            let v = s.anon_pmd().unwrap_or_else(|| "unknown".into());
            let hg = m.flag("hg");
            match v.as_str() {
                "always" => (format!("enabled={v}"), true, true, "THP is on for all anonymous memory".to_string()),
                "madvise" => (
                    format!("enabled={v}"),
                    hg,
                    true,
                    if hg {
                        "MADV_HUGEPAGE is set on it".to_string()
                    } else {
                        "enabled=madvise and the range has no MADV_HUGEPAGE: khugepaged skips it (MADV_COLLAPSE works)".to_string()
                    },
                ),
                _ => (format!("enabled={v}"), false, false, format!("anonymous THP is off (enabled={v})")),
            }
        }
        Kind::Shmem => {
            let (by, v) = match mount.filter(|_| !internal_shmem) {
                Some(t) => {
                    if !tmpfs_used.contains(t) {
                        tmpfs_used.push(t.clone());
                    }
                    (format!("tmpfs {} huge={}", t.mount_point, t.huge), t.huge.clone())
                }
                // A file on a tmpfs this process cannot see in its mountinfo (detached): its
                // huge= option is unknown; a huge page in it proves it allows them.
                None if m.on_tmpfs && !internal_shmem => (
                    "tmpfs not in the process's mountinfo (detached): huge= unknown".to_string(),
                    if m.shmem_pmd_kb > 0 { "allows".into() } else { "unknown".into() },
                ),
                None => {
                    let v = s.shmem_enabled.clone().unwrap_or_else(|| "unknown".into());
                    (format!("shmem_enabled={v}"), v)
                }
            };
            // shmem_enabled's deny and force override every mount.
            let v = match s.shmem_enabled.as_deref() {
                Some("deny") => "never".to_string(),
                Some("force") => "always".to_string(),
                _ => v,
            };
            let hg = m.flag("hg");
            match v.as_str() {
                "always" | "within_size" => (by, true, true, format!("shmem THP allowed ({v})")),
                "advise" => (
                    by,
                    hg,
                    true,
                    if hg {
                        "huge=advise and MADV_HUGEPAGE is set".to_string()
                    } else {
                        "huge=advise without MADV_HUGEPAGE: khugepaged skips it (MADV_COLLAPSE works)".to_string()
                    },
                ),
                "allows" => (
                    by,
                    false,
                    true,
                    "its tmpfs allows huge pages (one is mapped in it); whether khugepaged may (huge=always) is unknown".to_string(),
                ),
                "unknown" => (
                    by,
                    false,
                    true,
                    "its tmpfs huge= option is unknown: MADV_COLLAPSE works only if it is advise, always or within_size (the attempts seen tell)".to_string(),
                ),
                _ => (by, false, false, format!("shmem THP is off for it ({v}): MADV_COLLAPSE returns EINVAL")),
            }
        }
        Kind::File => (
            "page cache".to_string(),
            false,
            false,
            "a regular file: huge only with CONFIG_READ_ONLY_THP_FOR_FS (read-only text) or a filesystem with large folios (not judged here)".to_string(),
        ),
    };
    if inp.thp_enabled == Some(false) {
        (kh, mc) = (false, false);
        why = "THP is disabled for the process (prctl PR_SET_THP_DISABLE, THP_enabled: 0)".into();
    } else if m.flag("nh") {
        (kh, mc) = (false, false);
        why = "MADV_NOHUGEPAGE is set on it".into();
    } else if !m.has_pmd_range() {
        (kh, mc) = (false, false);
        why = "no 2 MiB-aligned 2 MiB range inside it".into();
    }
    let uffd = match (m.flag("um"), m.flag("uw")) {
        (true, true) => Some("missing+wp".to_string()),
        (true, false) => Some("missing".to_string()),
        (false, true) => Some("wp".to_string()),
        _ => None,
    };
    MappingVerdict {
        start: m.start,
        end: m.end,
        path: m.path.clone(),
        kind,
        governed_by,
        khugepaged_eligible: kh,
        madv_collapse_eligible: mc,
        why,
        size_kb: m.size() / 1024,
        rss_kb: m.rss_kb,
        huge_kb: m.huge_kb(),
        userfaultfd: uffd,
        attempts: (inp.ranges)(m.start, m.end),
    }
}

fn range_name(m: &MappingVerdict) -> String {
    format!(
        "{:#x}-{:#x} ({}{} KiB)",
        m.start,
        m.end,
        if m.path.is_empty() {
            "anonymous, ".to_string()
        } else {
            format!("{}, ", m.path)
        },
        m.size_kb
    )
}

/// Judges every large mapping and writes the verdict.
pub fn explain(inp: Inputs<'_>) -> Explanation {
    let mut tmpfs_used = Vec::new();
    let mappings: Vec<MappingVerdict> = inp
        .mappings
        .iter()
        .filter(|m| m.size() >= PMD && m.path != "[vsyscall]")
        .map(|m| judge(m, &inp, &mut tmpfs_used))
        .collect();
    let knobs = inp.settings.knobs();
    let mut verdict = Vec::new();
    let mut changes: Vec<String> = Vec::new();
    let seen_count = |o: Outcome| {
        inp.seen
            .rows
            .iter()
            .filter(|r| r.outcome == o)
            .map(|r| r.count)
            .sum::<u64>()
    };

    // userfaultfd in MISSING mode with pages missing: collapse refused (EBUSY).
    for m in &mappings {
        if m.userfaultfd
            .as_deref()
            .is_some_and(|u| u.contains("missing"))
            && m.huge_kb < m.size_kb
        {
            let refused = m.attempts.get(&Outcome::Refused).copied().unwrap_or(0);
            verdict.push(format!(
                "{} has a userfaultfd registered in MISSING mode (VmFlags um) and {} KiB of it \
                 not mapped: a collapse would fill holes behind the userfaultfd owner's back, \
                 so MADV_COLLAPSE returns EBUSY (exceed_none_pte) and khugepaged skips it{}.",
                range_name(m),
                m.size_kb.saturating_sub(m.rss_kb),
                if refused > 0 {
                    format!("; {refused} such refused attempts were seen")
                } else {
                    String::new()
                }
            ));
            changes.push(
                "the userfaultfd owner must populate the range first (UFFDIO_COPY / \
                 UFFDIO_ZEROPAGE, or touch every page), or unregister it, then collapse"
                    .into(),
            );
        } else if m.userfaultfd.as_deref() == Some("wp") {
            verdict.push(format!(
                "{} has a userfaultfd registered in write-protect mode (VmFlags uw): \
                 write-protected pages refuse a collapse (pte_uffd_wp).",
                range_name(m)
            ));
        }
    }

    let transient = seen_count(Outcome::Transient);
    if transient > 0 {
        let names: Vec<String> = inp
            .seen
            .rows
            .iter()
            .filter(|r| r.outcome == Outcome::Transient)
            .map(|r| format!("{} {}", r.result, r.count))
            .collect();
        verdict.push(format!(
            "{transient} attempts failed transiently ({}): a race with a fault, a lock or the \
             LRU, not a property of the range: a retry helps.",
            names.join(", ")
        ));
        changes.push("retry MADV_COLLAPSE on EAGAIN (a retry is expected to work)".into());
    }
    for r in inp
        .seen
        .rows
        .iter()
        .filter(|r| r.outcome == Outcome::Refused)
    {
        if r.result == "exceed_none_pte" && !changes.is_empty() {
            continue;
        }
        if let Some(a) = advice(&r.result, None, false, &knobs) {
            verdict.push(format!(
                "{} attempts were refused with {}.",
                r.count, r.result
            ));
            changes.push(a);
        }
    }

    let eligible: Vec<&MappingVerdict> = mappings
        .iter()
        .filter(|m| m.khugepaged_eligible || m.madv_collapse_eligible)
        .collect();
    let huge: Vec<&MappingVerdict> = mappings.iter().filter(|m| m.huge_kb > 0).collect();
    for m in &huge {
        verdict.push(format!(
            "{} is huge now: {} of {} KiB in huge pages.",
            range_name(m),
            m.huge_kb,
            m.size_kb
        ));
    }
    if mappings.is_empty() {
        verdict.push(format!(
            "{} ({}) has no mapping of 2 MiB or more: nothing of it can be in a 2 MiB huge page.",
            inp.comm, inp.pid
        ));
    } else if eligible.is_empty() && huge.is_empty() {
        let mut whys: Vec<&str> = mappings.iter().map(|m| m.why.as_str()).collect();
        whys.sort_unstable();
        whys.dedup();
        verdict.push(format!(
            "No mapping of {} ({}) can get huge pages: {}.",
            inp.comm,
            inp.pid,
            whys.join("; ")
        ));
        if inp.thp_enabled == Some(false) {
            changes.push("clear PR_SET_THP_DISABLE in the process (prctl)".into());
        } else if mappings.iter().any(|m| m.kind == Kind::Anon) {
            changes.push(
                "for its anonymous memory: transparent_hugepage/enabled=madvise or always, \
                 then madvise(MADV_HUGEPAGE) or MADV_COLLAPSE on a 2 MiB-aligned range"
                    .into(),
            );
        }
        if mappings.iter().any(|m| m.kind == Kind::Shmem) {
            changes.push("for its shmem: mount the tmpfs with huge=advise (or always), or shmem_enabled for memfd/SysV".into());
        }
    } else {
        for m in eligible
            .iter()
            .filter(|m| m.huge_kb == 0 && m.userfaultfd.is_none())
        {
            if m.attempts.is_empty() {
                verdict.push(format!(
                    "{} may get huge pages ({}) but is not huge yet and no attempt was seen: {}",
                    range_name(m),
                    m.why,
                    if m.khugepaged_eligible {
                        format!(
                            "khugepaged scans {} pages every {} ms and has not got to it yet; \
                             MADV_COLLAPSE collapses it now",
                            inp.settings
                                .khugepaged
                                .get("pages_to_scan")
                                .map_or("?", |s| s),
                            inp.settings
                                .khugepaged
                                .get("scan_sleep_millisecs")
                                .map_or("?", |s| s)
                        )
                    } else {
                        "khugepaged will not collapse it: call MADV_COLLAPSE (or set MADV_HUGEPAGE)"
                            .to_string()
                    }
                ));
                if changes.is_empty() {
                    changes.push(if m.khugepaged_eligible {
                        "call madvise(MADV_COLLAPSE) on the range, or wait for khugepaged".into()
                    } else {
                        "madvise(MADV_HUGEPAGE) on the range for khugepaged, or madvise(MADV_COLLAPSE) now".into()
                    });
                }
            }
        }
    }
    if verdict.is_empty() {
        verdict.push(
            "Nothing stands in the way: its eligible memory is huge or being collapsed.".into(),
        );
    }
    changes.dedup();
    changes.truncate(2);
    Explanation {
        schema: EXPLAIN_SCHEMA.to_string(),
        pid: inp.pid,
        comm: inp.comm.clone(),
        settings: inp.settings.clone(),
        thp_enabled: inp.thp_enabled,
        tmpfs: tmpfs_used,
        mappings,
        seen: inp.seen.clone(),
        verdict,
        changes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
7f0000000000-7f0000200000 rw-s 00000000 00:2d 12 /tmp/ct.x/uffd-holes-0
Size:               2048 kB
Rss:                1792 kB
ShmemPmdMapped:        0 kB
VmFlags: rd wr sh mr mw me ms um
7f0000400000-7f0000600000 rw-p 00000000 00:00 0 
Size:               2048 kB
Rss:                2048 kB
AnonHugePages:      2048 kB
VmFlags: rd wr mr mw me ac
";
    const MOUNTINFO: &str = "\
30 25 0:26 / /dev/shm rw,nosuid,nodev shared:4 - tmpfs tmpfs rw
99 25 0:45 / /tmp/ct.x rw,relatime - tmpfs none rw,size=65536k,huge=advise
";

    #[test]
    fn parses_and_judges_uffd_and_huge_mappings() {
        let maps = parse_smaps(SMAPS);
        assert_eq!(maps.len(), 2);
        assert_eq!(maps[0].path, "/tmp/ct.x/uffd-holes-0");
        assert_eq!(maps[1].anon_huge_kb, 2048);
        let tmpfs = parse_mountinfo(MOUNTINFO);
        assert_eq!(tmpfs[1].huge, "advise");
        assert_eq!(tmpfs[0].huge, "never");
        assert_eq!(selected("always [madvise] never"), "madvise");
        let ranges = |_: u64, _: u64| BTreeMap::new();
        let e = explain(Inputs {
            pid: 1,
            comm: "w".into(),
            settings: Settings {
                enabled: Some("madvise".into()),
                shmem_enabled: Some("never".into()),
                ..Default::default()
            },
            thp_enabled: Some(true),
            tmpfs,
            mappings: maps,
            ranges: &ranges,
            seen: Seen::default(),
        });
        assert_eq!(e.mappings[0].kind, Kind::Shmem);
        assert!(e.mappings[0].madv_collapse_eligible && !e.mappings[0].khugepaged_eligible);
        assert_eq!(e.mappings[0].userfaultfd.as_deref(), Some("missing"));
        let v = e.verdict.join(" ");
        assert!(v.contains("userfaultfd") && v.contains("EBUSY"), "{v}");
        assert!(v.contains("is huge now: 2048 of 2048 KiB"), "{v}");
        assert!(e.changes[0].contains("populate"), "{:?}", e.changes);
    }

    #[test]
    fn a_process_without_large_mappings_says_so() {
        let ranges = |_: u64, _: u64| BTreeMap::new();
        let e = explain(Inputs {
            pid: 5,
            comm: "sleep".into(),
            settings: Settings::default(),
            thp_enabled: None,
            tmpfs: vec![],
            mappings: parse_smaps("00400000-00401000 r-xp 00000000 08:01 1 /bin/sleep\n"),
            ranges: &ranges,
            seen: Seen::default(),
        });
        assert!(e.mappings.is_empty());
        assert!(e.verdict[0].contains("no mapping of 2 MiB or more"));
        assert_eq!(
            parse_thp_enabled("Name:\tx\nTHP_enabled:\t0\n"),
            Some(false)
        );
    }
}
