//! The check suite, run as root on one kernel: the host's directly, or a guest's (this same
//! xtask binary, started by virtme-ng inside the guest with `matrix --suite FILE --guest`).
//!
//! Every number it compares comes from two independent places on the running kernel: the
//! tool's view (doctor, stat, record -> report, serve) against the kernel's own tracepoint
//! format files, a private ftrace instance of the same run, and the workload's own tally of
//! what each MADV_COLLAPSE returned. The per-family expectations in [`FAMILIES`] are what a
//! prototype run saw on each kernel (shared notes); a kernel that differs from them fails.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::Value;

use crate::env::Env;

/// The message `provoke` must print when uffd-holes collapses succeed (kernel without the
/// seed patch). The matrix asserts it on 6.1 and its absence elsewhere.
pub const PREDATES: &str = "it predates 'mm/khugepaged: skip shmem with userfaultfd'";

/// The huge_memory events the suite counts.
const EVENTS: [&str; 4] = [
    "mm_khugepaged_scan_file",
    "mm_khugepaged_collapse_file",
    "mm_khugepaged_scan_pmd",
    "mm_collapse_huge_page",
];

/// What a kernel family is expected to show.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// Release prefix, e.g. `6.1.`.
    pub prefix: &'static str,
    /// For the docs table.
    pub label: &'static str,
    /// Whether `mm_khugepaged_collapse_file` exists.
    pub collapse_file: bool,
    /// The number of `page_filled` in the kernel's result table (None: absent).
    pub page_filled: Option<i64>,
    /// Whether the kernel has the seed patch (uffd-holes -> EBUSY).
    pub seed_patch: bool,
    /// Whether the tool must choose the fexit on madvise_collapse for MADV_COLLAPSE calls
    /// (false: the syscall exits, the kernel refusing BPF trampolines).
    pub fexit: bool,
}

/// What stat says when attaching, for each way of reading the huge_memory tracepoints.
const ATTACH_BTF: &str = "tracepoints read from their arguments (BTF-typed)";
const ATTACH_CLASSIC: &str = "tracepoints read from their records (classic)";

/// How doctor's `calls` line starts for each attach path.
const CALLS_FEXIT: &str = "MADV_COLLAPSE calls tracked by an fexit on madvise_collapse";
const CALLS_SYSCALLS: &str = "MADV_COLLAPSE calls tracked by the syscall exits";

/// The families the matrix knows (a release matching none fails the `doctor` check).
pub const FAMILIES: [Family; 3] = [
    Family {
        prefix: "6.1.",
        label: "Debian 12 (6.1)",
        collapse_file: false,
        page_filled: None,
        seed_patch: false,
        fexit: true,
    },
    Family {
        prefix: "6.12.",
        label: "6.12 LTS (Debian 12 backports)",
        collapse_file: true,
        page_filled: Some(31),
        seed_patch: true,
        fexit: true,
    },
    Family {
        prefix: "6.18.",
        label: "6.18 (this CI host)",
        collapse_file: true,
        page_filled: Some(30),
        seed_patch: true,
        fexit: false,
    },
];

/// One check's outcome.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// A kernel's outcome: the checks, and the facts for docs/kernels.md.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SuiteResult {
    pub release: String,
    pub checks: Vec<Check>,
    #[serde(default)]
    pub facts: BTreeMap<String, String>,
}

impl SuiteResult {
    /// A kernel that could not be checked at all.
    pub fn failed(release: &str, why: &str) -> Self {
        SuiteResult {
            release: release.to_string(),
            checks: vec![Check {
                name: "boot".into(),
                ok: false,
                detail: why.to_string(),
            }],
            facts: BTreeMap::new(),
        }
    }

    fn check(&mut self, name: &str, res: Result<String>) {
        let (ok, detail) = match res {
            Ok(d) => (true, d),
            Err(e) => (false, format!("{e:#}")),
        };
        println!(
            "suite {} {name}: {} {detail}",
            self.release,
            if ok { "PASS" } else { "FAIL" }
        );
        self.checks.push(Check {
            name: name.to_string(),
            ok,
            detail,
        });
    }

    fn fact(&mut self, key: &str, value: impl Into<String>) {
        self.facts.insert(key.to_string(), value.into());
    }
}

/// Runs every check on the running kernel and writes the [`SuiteResult`] as JSON to `out`.
/// In a guest (`guest`), first sets the guest's own THP sysfs like this host's.
pub fn run_suite(env: &Env, out: &Path, guest: bool) -> Result<()> {
    ensure!(
        crate::is_root()?,
        "the matrix suite needs root (BPF, tracefs, a tmpfs mount)"
    );
    let release = fs::read_to_string("/proc/sys/kernel/osrelease")?
        .trim()
        .to_string();
    let mut r = SuiteResult {
        release: release.clone(),
        checks: Vec::new(),
        facts: BTreeMap::new(),
    };
    if guest {
        r.check("thp-sysfs", set_guest_thp());
    }
    if !Path::new("/sys/kernel/tracing/events").exists() {
        println!("suite: tracefs is not mounted, mounting it at /sys/kernel/tracing");
        crate::env::run(Command::new("mount").args([
            "-t",
            "tracefs",
            "nodev",
            "/sys/kernel/tracing",
        ]))?;
    }
    let bin = env.root.join("target/release/collapse-trace");
    let work = out
        .parent()
        .context("--suite FILE has no directory")?
        .to_path_buf();
    let family = FAMILIES.iter().find(|f| release.starts_with(f.prefix));
    let truth = KernelTruth::read();
    r.fact("btf", yes(Path::new("/sys/kernel/btf/vmlinux").exists()));
    for e in EVENTS {
        r.fact(e, if truth.has(e) { "present" } else { "absent" });
    }
    r.fact(
        "page_filled",
        truth
            .results
            .get("page_filled")
            .map_or("absent".to_string(), |n| n.to_string()),
    );
    let doctor = check_doctor(&bin, &work, family, &truth, &mut r);
    r.check("doctor", doctor);
    let run = run_workload(&bin, &work, family, &mut r);
    match run {
        Ok(run) => {
            let c = check_stat(&run, &truth, family);
            r.check("stat", c);
            let c = check_other_path(&run);
            r.check(
                match run.other_path {
                    OtherPath::Syscalls { .. } => "stat-syscalls",
                    OtherPath::FexitRefused(_) => "fexit-refused",
                },
                c,
            );
            let c = check_classic(&run);
            r.check("stat-classic", c);
            let c = check_provoke(&run, family, &mut r);
            r.check("provoke", c);
            let c = check_record(&bin, &run);
            r.check("record", c);
            let c = check_serve(&run, &truth);
            r.check("serve", c);
        }
        Err(e) => r.check("workload", Err(e)),
    }
    fs::write(out, serde_json::to_string_pretty(&r)?)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Sets the guest's THP: `enabled=madvise`, `shmem_enabled=advise`. Refuses unless this is a
/// virtme-ng guest (never the host's global settings).
fn set_guest_thp() -> Result<String> {
    let cmdline = fs::read_to_string("/proc/cmdline")?;
    ensure!(
        cmdline.contains("virtme_hostname=virtme-ng"),
        "refusing to set THP sysfs: /proc/cmdline shows no virtme-ng guest (this looks like \
         the host)"
    );
    let base = Path::new("/sys/kernel/mm/transparent_hugepage");
    fs::write(base.join("enabled"), "madvise")?;
    fs::write(base.join("shmem_enabled"), "advise")?;
    Ok(format!(
        "guest THP enabled={} shmem_enabled={}",
        selected(&fs::read_to_string(base.join("enabled"))?),
        selected(&fs::read_to_string(base.join("shmem_enabled"))?)
    ))
}

/// `always [madvise] never` -> `madvise`.
fn selected(s: &str) -> String {
    s.split_whitespace()
        .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
        .unwrap_or("?")
        .to_string()
}

/// What the running kernel itself says, read straight from tracefs.
struct KernelTruth {
    /// Events that have a format file.
    present: Vec<&'static str>,
    /// The result table of `mm_khugepaged_scan_file`'s print fmt: name -> number.
    results: BTreeMap<String, i64>,
}

impl KernelTruth {
    fn read() -> Self {
        let dir = Path::new("/sys/kernel/tracing/events/huge_memory");
        let present = EVENTS
            .into_iter()
            .filter(|e| dir.join(e).join("format").exists())
            .collect();
        let fmt =
            fs::read_to_string(dir.join("mm_khugepaged_scan_file/format")).unwrap_or_default();
        KernelTruth {
            present,
            results: print_symbolic(&fmt),
        }
    }

    fn has(&self, e: &str) -> bool {
        self.present.contains(&e)
    }
}

/// `__print_symbolic(REC->result, {0, "failed"}, { 1, "succeeded" }, ...)` -> name -> number.
fn print_symbolic(format: &str) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    let Some(start) = format.find("__print_symbolic(") else {
        return out;
    };
    let mut rest = &format[start..];
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let inner = &rest[open + 1..open + close];
        if let Some((n, name)) = inner.split_once(',')
            && let Ok(n) = n.trim().parse::<i64>()
        {
            out.insert(name.trim().trim_matches('"').to_string(), n);
        }
        rest = &rest[open + close..];
    }
    out
}

/// doctor: its tracepoint lines, its result table and verdict against the kernel's own files
/// and the family's expectations; BTF and the attach path chosen.
fn check_doctor(
    bin: &Path,
    work: &Path,
    family: Option<&Family>,
    truth: &KernelTruth,
    r: &mut SuiteResult,
) -> Result<String> {
    let out = Command::new(bin).arg("doctor").output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let _ = fs::write(work.join("doctor.txt"), &text);
    let fam = family.with_context(|| {
        format!(
            "no expectations for kernel {} (the matrix knows {})",
            r.release,
            FAMILIES.map(|f| f.prefix).join(" ")
        )
    })?;
    ensure!(
        out.status.success(),
        "doctor exited {}:\n{text}",
        out.status
    );
    let mut said = Vec::new();
    for e in EVENTS {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("huge_memory:{e} ")))
            .with_context(|| format!("doctor lists no huge_memory:{e}"))?;
        let doctor_has = !line.contains("MISSING");
        ensure!(
            doctor_has == truth.has(e),
            "doctor says {e} {} but tracefs {} it: {line}",
            if doctor_has { "present" } else { "MISSING" },
            if truth.has(e) { "has" } else { "lacks" }
        );
        said.push(format!("{e}={}", if doctor_has { "yes" } else { "no" }));
        if doctor_has {
            // Each present tracepoint is read by its BTF-typed program (its own arguments).
            let at = text.find(line).unwrap_or(0);
            let read_by = text[at..]
                .lines()
                .skip(1)
                .take_while(|l| l.starts_with("    "))
                .find_map(|l| l.trim_start().strip_prefix("read by: "))
                .with_context(|| format!("doctor has no `read by:` line for {e}"))?;
            ensure!(
                read_by.starts_with("BTF-typed raw tracepoint"),
                "doctor says {e} is read by {read_by:?}, not its BTF-typed program"
            );
        }
    }
    r.fact(
        "huge_memory",
        "BTF-typed raw tracepoints (classic programs tested when forced)",
    );
    ensure!(
        truth.has("mm_khugepaged_collapse_file") == fam.collapse_file,
        "{} was expected to {} mm_khugepaged_collapse_file",
        fam.label,
        if fam.collapse_file { "have" } else { "lack" }
    );
    // The result table as doctor read it, against the kernel's print fmt, name for name.
    let mut doctor_table = BTreeMap::new();
    let table = text
        .lines()
        .skip_while(|l| !l.starts_with("result names"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.trim_start().starts_with("note:"));
    for l in table {
        for pair in l.split_whitespace() {
            if let Some((n, name)) = pair.split_once('=')
                && let Ok(n) = n.parse::<i64>()
            {
                doctor_table.insert(name.to_string(), n);
            }
        }
    }
    ensure!(
        !truth.results.is_empty(),
        "no __print_symbolic table in scan_file's format"
    );
    ensure!(
        doctor_table == truth.results,
        "doctor's result table differs from the kernel's print fmt: doctor {doctor_table:?} \
         kernel {:?}",
        truth.results
    );
    let pf = doctor_table.get("page_filled").copied();
    ensure!(
        pf == fam.page_filled,
        "page_filled is {} on this kernel, {} expected {}",
        pf.map_or("absent".into(), |n| n.to_string()),
        fam.label,
        fam.page_filled.map_or("absent".into(), |n| n.to_string())
    );
    ensure!(
        text.lines().any(|l| l.starts_with("BTF         ok")),
        "doctor does not report BTF ok"
    );
    let calls = text
        .lines()
        .find_map(|l| l.strip_prefix("calls       "))
        .context("doctor has no `calls` line (the attach path)")?;
    let want = if fam.fexit {
        CALLS_FEXIT
    } else {
        CALLS_SYSCALLS
    };
    ensure!(
        calls.starts_with(want),
        "attach path: doctor says {calls:?}, expected {want:?}"
    );
    r.fact(
        "calls",
        if fam.fexit {
            "fexit on madvise_collapse (syscall exits tested as the fallback)"
        } else {
            "syscall exits (fexit refused by this kernel)"
        },
    );
    let verdict = text
        .lines()
        .find_map(|l| l.strip_prefix("verdict: "))
        .context("doctor printed no verdict")?;
    let gaps = !truth.has("mm_khugepaged_collapse_file") || pf.is_none();
    if gaps {
        ensure!(
            verdict != "ready to trace",
            "doctor says plainly \"ready to trace\" although this kernel lacks {}",
            if truth.has("mm_khugepaged_collapse_file") {
                "page_filled"
            } else {
                "mm_khugepaged_collapse_file"
            }
        );
        ensure!(
            text.contains("not observable on this kernel"),
            "doctor does not say what is not observable:\n{text}"
        );
        if !truth.has("mm_khugepaged_collapse_file") {
            ensure!(
                text.contains("seen by mm_khugepaged_scan_file only"),
                "doctor does not say file collapses are seen by scan_file only"
            );
        }
    } else {
        ensure!(
            verdict == "ready to trace" && !text.contains("not observable on this kernel"),
            "a kernel with every tracepoint and page_filled got verdict {verdict:?}"
        );
    }
    r.fact("verdict", verdict.split(':').next().unwrap_or(verdict));
    let gap_lines: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "not observable on this kernel")
        .skip(1)
        .map_while(|l| l.strip_prefix("  - "))
        .collect();
    r.fact(
        "gaps",
        if gap_lines.is_empty() {
            "nothing".to_string()
        } else {
            gap_lines.join("<br>")
        },
    );
    Ok(format!(
        "{}; page_filled={}; {} result names equal the kernel's; BTF ok; {}; verdict: {verdict}",
        said.join(" "),
        pf.map_or("absent".into(), |n| n.to_string()),
        doctor_table.len(),
        calls.split(" (").next().unwrap_or(calls)
    ))
}

/// A tool process whose stderr is collected, with the "attached" signal.
struct Tool {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Tool {
    /// Starts `bin args` and waits (up to 180 s: TCG is slow) for its "attached to" line.
    fn start(bin: &Path, args: &[&str]) -> Result<Tool> {
        let mut child = Command::new(bin)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} {}", bin.display(), args.join(" ")))?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let keep = lines.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let line = line.unwrap_or_default();
                let attached = line.contains("attached to");
                keep.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                if attached && let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
            }
        });
        let t = Instant::now();
        if rx.recv_timeout(Duration::from_secs(180)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            let err = lines.lock().unwrap_or_else(|e| e.into_inner()).join("\n");
            bail!("`{}` did not attach within 180 s: {err}", args.join(" "));
        }
        println!(
            "suite: `{}` attached after {:.1} s",
            args.join(" "),
            t.elapsed().as_secs_f64()
        );
        Ok(Tool {
            child,
            stderr: lines,
        })
    }

    /// SIGINT, then stdout; fails unless it exits 0.
    fn stop(mut self) -> Result<(String, String)> {
        // SAFETY: kill with a pid we started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let mut out = String::new();
        if let Some(mut s) = self.child.stdout.take() {
            s.read_to_string(&mut out)?;
        }
        let status = self.child.wait()?;
        // Let the reader thread see EOF.
        std::thread::sleep(Duration::from_millis(100));
        let err = self
            .stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n");
        ensure!(status.success(), "exited {status}: {err}");
        Ok((out, err))
    }

    fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }
}

/// Everything one `provoke all` run left behind.
struct Run {
    comm: String,
    tally: Value,
    provoke_text: String,
    ftrace: BTreeMap<(String, String), u64>,
    stat: Value,
    stat_stderr: String,
    /// The other attach path: a second stat forced to the syscall hooks where the fexit is
    /// used, or (where the kernel refuses fexit) `stat --calls-via fexit`'s refusal.
    other_path: OtherPath,
    /// A third stat forced to the classic tracepoint programs (`--attach classic`).
    classic: (Value, String),
    record_file: PathBuf,
    metrics: String,
    promtool: Result<String>,
}

enum OtherPath {
    Syscalls { stat: Value, stderr: String },
    FexitRefused(Result<String>),
}

/// A private ftrace instance with its own buffer, the four events filtered on `comm`.
struct Instance {
    dir: PathBuf,
}

impl Instance {
    fn create(name: &str, comm: &str, present: &[&str]) -> Result<Instance> {
        let dir = Path::new("/sys/kernel/tracing/instances").join(name);
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let inst = Instance { dir };
        inst.write("buffer_size_kb", "16384")?;
        for e in present {
            inst.write(
                &format!("events/huge_memory/{e}/filter"),
                &format!("comm == \"{comm}\""),
            )?;
            inst.write(&format!("events/huge_memory/{e}/enable"), "1")?;
        }
        Ok(inst)
    }

    fn write(&self, file: &str, value: &str) -> Result<()> {
        let p = self.dir.join(file);
        fs::write(&p, value).with_context(|| format!("writing {value:?} to {}", p.display()))
    }

    /// Stops it, checks no CPU's buffer overran, and counts events per (event, result).
    fn finish(&self) -> Result<BTreeMap<(String, String), u64>> {
        self.write("tracing_on", "0")?;
        let mut overrun = 0;
        for cpu in fs::read_dir(self.dir.join("per_cpu"))? {
            let stats = fs::read_to_string(cpu?.path().join("stats"))?;
            for l in stats.lines() {
                if let Some(v) = l.strip_prefix("overrun:") {
                    overrun += v.trim().parse::<u64>().unwrap_or(0);
                }
            }
        }
        ensure!(
            overrun == 0,
            "the ftrace instance overran ({overrun} events lost)"
        );
        let text = fs::read_to_string(self.dir.join("trace"))?;
        let mut counts = BTreeMap::new();
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some(k) = ftrace_key(l) {
                *counts.entry(k).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = fs::write(self.dir.join("events/enable"), "0");
        let _ = fs::remove_dir(&self.dir);
    }
}

/// `... 12.345: mm_khugepaged_scan_file: mm=... result=page_filled` -> (event, result).
fn ftrace_key(line: &str) -> Option<(String, String)> {
    let (event, rest) = EVENTS.iter().find_map(|e| {
        line.find(&format!(": {e}: "))
            .map(|i| (*e, &line[i + e.len() + 4..]))
    })?;
    let at = rest
        .rfind(" result=")
        .map(|i| i + 8)
        .or_else(|| rest.rfind(" status=").map(|i| i + 8))
        .or_else(|| rest.strip_prefix("result=").map(|_| 7))
        .or_else(|| rest.strip_prefix("status=").map(|_| 7))?;
    let result = rest[at..].split_whitespace().next()?.trim_end_matches(',');
    Some((event.to_string(), result.to_string()))
}

/// `provoke all` under stat, record, serve and a private ftrace instance at once.
fn run_workload(
    bin: &Path,
    work: &Path,
    family: Option<&Family>,
    r: &mut SuiteResult,
) -> Result<Run> {
    let fexit = family.is_some_and(|f| f.fexit);
    let comm = format!("ct-m{}", std::process::id() % 100_000);
    let truth = KernelTruth::read();
    let instance = Instance::create(
        &format!("collapse-trace-matrix-{}", std::process::id()),
        &comm,
        &truth.present,
    )?;
    let record_file = work.join(format!("matrix-{}.ndjson", std::process::id()));
    let _ = fs::remove_file(&record_file);
    let stat = Tool::start(bin, &["stat", "--json", "--comm", &comm])?;
    let syscalls_stat = if fexit {
        Some(Tool::start(
            bin,
            &["stat", "--json", "--comm", &comm, "--calls-via", "syscalls"],
        )?)
    } else {
        None
    };
    let classic = Tool::start(
        bin,
        &["stat", "--json", "--comm", &comm, "--attach", "classic"],
    )?;
    let record = Tool::start(
        bin,
        &[
            "record",
            "--comm",
            &comm,
            "-o",
            record_file.to_str().context("record path")?,
        ],
    )?;
    let serve = Tool::start(bin, &["serve", "--comm", &comm, "--listen", "127.0.0.1:0"])?;
    let addr = serve
        .stderr_text()
        .lines()
        .find_map(|l| {
            l.split_once("listening on http://")
                .map(|(_, a)| a.to_string())
        })
        .and_then(|a| a.split_whitespace().next().map(str::to_string))
        .context("serve did not say where it listens")?;
    let t = Instant::now();
    let out = Command::new(bin)
        .args(["provoke", "all", "--json", "--comm", &comm])
        .output()?;
    r.fact("provoke_s", format!("{:.1}", t.elapsed().as_secs_f64()));
    let provoke_text = String::from_utf8_lossy(&out.stdout).to_string();
    ensure!(
        out.status.success(),
        "provoke exited {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = fs::write(work.join("provoke.json"), &provoke_text);
    let tally: Value = serde_json::from_str(&provoke_text).context("provoke --json parses")?;
    // Everything the workload did is counted once the kernel counters are read: scrape now.
    let metrics = http_get(&addr, "/metrics")?;
    let promtool = promtool_check(&metrics);
    let (stat_out, stat_stderr) = stat.stop().context("stat")?;
    let other_path = match syscalls_stat {
        Some(t) => {
            let (out, stderr) = t.stop().context("stat --calls-via syscalls")?;
            OtherPath::Syscalls {
                stat: serde_json::from_str(&out).context("stat --json parses")?,
                stderr,
            }
        }
        None => OtherPath::FexitRefused(fexit_refused(bin)),
    };
    let (classic_out, classic_stderr) = classic.stop().context("stat --attach classic")?;
    let classic = (
        serde_json::from_str(&classic_out).context("stat --attach classic --json parses")?,
        classic_stderr,
    );
    record.stop().context("record")?;
    serve.stop().context("serve")?;
    let _ = fs::write(work.join("stat-stderr.txt"), &stat_stderr);
    let _ = fs::write(work.join("metrics.txt"), &metrics);
    let ftrace = instance.finish()?;
    drop(instance);
    let stat: Value = serde_json::from_str(&stat_out).context("stat --json parses")?;
    Ok(Run {
        comm,
        tally,
        provoke_text,
        ftrace,
        stat,
        stat_stderr,
        other_path,
        classic,
        record_file,
        metrics,
        promtool,
    })
}

fn http_get(addr: &str, path: &str) -> Result<String> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").context("no HTTP header end")?;
    ensure!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "GET {path}: {head}"
    );
    Ok(body.to_string())
}

fn promtool_check(metrics: &str) -> Result<String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running promtool (Debian package prometheus)")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(metrics.as_bytes())?;
    let out = child.wait_with_output()?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "promtool check metrics: {said}");
    Ok(said.trim().to_string())
}

/// (tracepoint, result) -> count from a stat Snapshot (JSON).
fn snapshot_counts(snap: &Value) -> Result<BTreeMap<(String, String), u64>> {
    let mut out = BTreeMap::new();
    for t in snap["tracepoints"].as_array().context("no tracepoints")? {
        let name = t["name"].as_str().context("tracepoint name")?;
        for r in t["results"].as_array().context("results")? {
            let n = r["count"].as_u64().context("count")?;
            if n > 0 {
                out.insert(
                    (
                        name.to_string(),
                        r["result"].as_str().context("result")?.to_string(),
                    ),
                    n,
                );
            }
        }
    }
    Ok(out)
}

/// The workload's errno tally summed over scenarios: "ok" and errno names -> calls.
fn tally_errnos(tally: &Value) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for s in tally["scenarios"].as_array().context("no scenarios")? {
        ensure!(
            s["skipped"].is_null(),
            "scenario {} skipped: {}",
            s["scenario"],
            s["skipped"]
        );
        let ok = s["ok"].as_u64().context("ok")?;
        if ok > 0 {
            *out.entry("ok".to_string()).or_insert(0) += ok;
        }
        for (e, n) in s["errnos"].as_object().context("errnos")? {
            *out.entry(e.clone()).or_insert(0) += n.as_u64().context("errno count")?;
        }
    }
    Ok(out)
}

/// Compares a tool's counts with ftrace's (events) and the tally's (calls).
fn compare(what: &str, snap: &Value, run: &Run) -> Result<String> {
    let counts = snapshot_counts(snap)?;
    let events: BTreeMap<_, _> = counts
        .iter()
        .filter(|((tp, _), _)| EVENTS.contains(&tp.as_str()))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    ensure!(
        !run.ftrace.is_empty(),
        "ftrace saw no event of comm {}",
        run.comm
    );
    ensure!(
        events == run.ftrace,
        "{what} vs ftrace, per tracepoint and result:\n  {what}:   {events:?}\n  ftrace: {:?}",
        run.ftrace
    );
    let calls: BTreeMap<String, u64> = counts
        .iter()
        .filter(|((tp, _), _)| tp == "madvise_collapse")
        .map(|((_, r), v)| (r.clone(), *v))
        .collect();
    let tally = tally_errnos(&run.tally)?;
    ensure!(
        calls == tally,
        "{what}'s MADV_COLLAPSE results vs the workload's tally:\n  {what}: {calls:?}\n  \
         tally: {tally:?}"
    );
    let dropped = snap["totals"]["dropped"].as_u64().unwrap_or(u64::MAX);
    ensure!(dropped == 0, "{what} dropped {dropped} records");
    let n: u64 = events.values().sum();
    Ok(format!(
        "{n} events in {} (tracepoint, result) pairs equal ftrace's; calls {}",
        events.len(),
        tally
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// `stat --calls-via fexit` on a kernel that refuses trampolines: must fail, saying why.
fn fexit_refused(bin: &Path) -> Result<String> {
    let out = Command::new(bin)
        .args(["stat", "--calls-via", "fexit", "--duration", "1s"])
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    ensure!(
        !out.status.success(),
        "stat --calls-via fexit succeeded on a kernel expected to refuse fexit: {err}"
    );
    ensure!(
        err.contains("the fexit on madvise_collapse cannot be used on this kernel"),
        "stat --calls-via fexit failed without saying why: {err}"
    );
    Ok(err
        .lines()
        .find(|l| l.contains("cannot be used"))
        .unwrap_or("")
        .trim()
        .to_string())
}

fn check_other_path(run: &Run) -> Result<String> {
    match &run.other_path {
        OtherPath::Syscalls { stat, stderr } => {
            ensure!(
                stderr.contains("MADV_COLLAPSE calls by the syscall hooks"),
                "stat --calls-via syscalls did not say it uses the syscall hooks: {stderr}"
            );
            Ok(format!("syscall path: {}", compare("stat", stat, run)?))
        }
        OtherPath::FexitRefused(r) => match r {
            Ok(s) => Ok(format!("refused as expected: {s}")),
            Err(e) => bail!("{e:#}"),
        },
    }
}

fn check_stat(run: &Run, truth: &KernelTruth, family: Option<&Family>) -> Result<String> {
    let fexit = family.is_some_and(|f| f.fexit);
    ensure!(
        run.stat_stderr.contains(ATTACH_BTF),
        "stat did not read the tracepoints by their BTF-typed programs ({ATTACH_BTF}): {}",
        run.stat_stderr
    );
    // The workload owns the memory it collapses: its owner row (mm->owner, read through the
    // BTF-typed programs' mm argument) holds exactly ftrace's events.
    let mut owned = BTreeMap::new();
    for o in run.stat["owners"]
        .as_array()
        .context("stat has no owners[]")?
    {
        if o["comm"] != Value::String(run.comm.clone()) {
            continue;
        }
        for r in o["results"].as_array().context("owner results")? {
            let tp = r["tracepoint"].as_str().context("tracepoint")?;
            if EVENTS.contains(&tp) {
                *owned
                    .entry((
                        tp.to_string(),
                        r["result"].as_str().context("result")?.to_string(),
                    ))
                    .or_insert(0u64) += r["count"].as_u64().context("count")?;
            }
        }
    }
    ensure!(
        owned == run.ftrace,
        "the workload's owner rows vs ftrace:\n  owners: {owned:?}\n  ftrace: {:?}",
        run.ftrace
    );
    // Every file comes with its real name and inode from the tracepoint's struct file.
    let files = run.stat["files"]
        .as_array()
        .context("stat has no files[]")?;
    ensure!(!files.is_empty(), "stat saw no file");
    if let Some(f) = files
        .iter()
        .find(|f| f["real_name"] != Value::Bool(true) || !f["inode"].is_u64())
    {
        bail!("a file without its real name or inode: {f}");
    }
    let said = if fexit {
        "MADV_COLLAPSE calls by the fexit on madvise_collapse"
    } else {
        "MADV_COLLAPSE calls by the syscall hooks"
    };
    ensure!(
        run.stat_stderr.contains(said),
        "stat did not choose the expected path ({said}): {}",
        run.stat_stderr
    );
    let d = format!(
        "{} path: {}",
        if fexit { "fexit" } else { "syscall" },
        compare("stat", &run.stat, run)?
    );
    // stat must say what this kernel cannot show, where it lacks a tracepoint.
    for e in EVENTS.iter().filter(|e| !truth.has(e)) {
        ensure!(
            run.stat_stderr.contains("not observable on this kernel")
                && run.stat_stderr.contains(e),
            "stat does not say {e} is not observable: {}",
            run.stat_stderr
        );
    }
    Ok(d)
}

/// The classic tracepoint programs, forced: the same counts as ftrace and the BTF-typed run.
fn check_classic(run: &Run) -> Result<String> {
    let (snap, stderr) = &run.classic;
    ensure!(
        stderr.contains(ATTACH_CLASSIC),
        "stat --attach classic does not say it reads the records: {stderr}"
    );
    compare("stat --attach classic", snap, run)
}

fn check_provoke(run: &Run, family: Option<&Family>, r: &mut SuiteResult) -> Result<String> {
    let fam = family.context("no expectations for this kernel family")?;
    let by = |name: &str| {
        run.tally["scenarios"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["scenario"] == name))
            .cloned()
            .with_context(|| format!("no {name} scenario in provoke's tally"))
    };
    let uffd = by("uffd-holes")?;
    let summary = |s: &Value| {
        let mut parts = vec![format!("ok {}", s["ok"])];
        if let Some(m) = s["errnos"].as_object() {
            parts.extend(m.iter().map(|(k, v)| format!("{k} {v}")));
        }
        parts.join(", ")
    };
    let calls = uffd["calls"].as_u64().unwrap_or(0);
    r.fact(
        "uffd-holes",
        if uffd["ok"].as_u64() == Some(calls) {
            "every call succeeds: the holes are filled behind the userfaultfd".to_string()
        } else if uffd["errnos"]["EBUSY"].as_u64() == Some(calls) {
            "every call EBUSY (exceed_none_pte)".to_string()
        } else {
            summary(&uffd)
        },
    );
    let pf = by("page-filled")?;
    let seen = snapshot_counts(&run.stat)?
        .keys()
        .any(|(_, result)| result == "page_filled");
    r.fact(
        "page-filled",
        format!(
            "{}; page_filled {}",
            if pf["errnos"]["EAGAIN"].as_u64().unwrap_or(0) > 0 {
                "some calls EAGAIN"
            } else {
                "no EAGAIN"
            },
            if seen { "seen" } else { "never seen" }
        ),
    );
    let says = run.provoke_text.contains(PREDATES);
    if fam.seed_patch {
        ensure!(
            !says,
            "provoke says the kernel predates the seed patch on {}:\n{}",
            fam.label,
            run.provoke_text
        );
        ensure!(
            uffd["errnos"]["EBUSY"].as_u64() == Some(calls),
            "uffd-holes on a kernel with the seed patch: {}",
            summary(&uffd)
        );
    } else {
        ensure!(
            says,
            "provoke does not say that {} predates the seed patch although uffd-holes gave {}",
            fam.label,
            summary(&uffd)
        );
    }
    Ok(format!(
        "uffd-holes {}; seed-patch message {}",
        summary(&uffd),
        if says { "present" } else { "absent" }
    ))
}

fn check_record(bin: &Path, run: &Run) -> Result<String> {
    let out = Command::new(bin)
        .arg("report")
        .arg(&run.record_file)
        .arg("--json")
        .output()?;
    let _ = fs::remove_file(&run.record_file);
    ensure!(
        out.status.success(),
        "report exited {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let rep: Value = serde_json::from_slice(&out.stdout).context("report --json parses")?;
    compare("report", &rep["snapshot"], run)
}

fn check_serve(run: &Run, truth: &KernelTruth) -> Result<String> {
    let said = match &run.promtool {
        Ok(s) => s.clone(),
        Err(e) => bail!("{e:#}"),
    };
    let mut attached = Vec::new();
    for e in EVENTS {
        let line = run
            .metrics
            .lines()
            .find(|l| {
                l.starts_with("collapse_trace_tracepoint_attached{")
                    && l.contains(&format!("tracepoint=\"{e}\""))
            })
            .with_context(|| {
                format!("/metrics has no collapse_trace_tracepoint_attached for {e}")
            })?;
        let v = line.rsplit(' ').next().unwrap_or("");
        let want = if truth.has(e) { "1" } else { "0" };
        ensure!(v == want, "{line}: expected {want}");
        attached.push(format!("{e}={v}"));
    }
    Ok(format!(
        "promtool check metrics ok{}; tracepoint_attached {}",
        if said.is_empty() {
            String::new()
        } else {
            format!(" ({said})")
        },
        attached.join(" ")
    ))
}

/// docs/kernels.md from a run's results.
pub fn docs_table(results: &[SuiteResult]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# What collapse-trace observes on each kernel\n\n<!-- Generated by `cargo xtask matrix \
         --write-docs` from the matrix run's own results; do not edit by hand. -->\n"
    );
    let _ = writeln!(
        o,
        "Each column is one kernel the matrix booted (Debian's images under QEMU, the CI host \
         directly) and checked with the same release binary: doctor against the kernel's own \
         format files, `provoke all` under stat, record -> report and serve against a private \
         ftrace instance and the workload's own errno tally.\n"
    );
    let rows: [(&str, &str); 14] = [
        ("family", "kernel family"),
        ("btf", "BTF"),
        ("mm_khugepaged_scan_file", "`mm_khugepaged_scan_file`"),
        (
            "mm_khugepaged_collapse_file",
            "`mm_khugepaged_collapse_file`",
        ),
        ("mm_khugepaged_scan_pmd", "`mm_khugepaged_scan_pmd`"),
        ("mm_collapse_huge_page", "`mm_collapse_huge_page`"),
        ("page_filled", "`page_filled` result number"),
        ("huge_memory", "huge_memory tracepoints read by"),
        ("calls", "MADV_COLLAPSE attach path"),
        ("verdict", "doctor's verdict"),
        ("gaps", "not observable (doctor)"),
        (
            "uffd-holes",
            "`provoke uffd-holes`: MADV_COLLAPSE on shmem holes + uffd MISSING",
        ),
        (
            "page-filled",
            "`provoke page-filled`: a hole faulted in mid-collapse",
        ),
        ("checks", "matrix checks"),
    ];
    let _ = write!(o, "| |");
    for r in results {
        let _ = write!(o, " {} |", r.release);
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "|---|{}", "---|".repeat(results.len()));
    for (key, label) in rows {
        let _ = write!(o, "| {label} |");
        for r in results {
            let v = match key {
                "family" => FAMILIES
                    .iter()
                    .find(|f| r.release.starts_with(f.prefix))
                    .map_or("unknown", |f| f.label)
                    .to_string(),
                "checks" => {
                    let failed: Vec<&str> = r
                        .checks
                        .iter()
                        .filter(|c| !c.ok)
                        .map(|c| c.name.as_str())
                        .collect();
                    if failed.is_empty() {
                        format!("all {} pass", r.checks.len())
                    } else {
                        format!("FAILED: {}", failed.join(", "))
                    }
                }
                k => r.facts.get(k).cloned().unwrap_or_else(|| "?".into()),
            };
            let _ = write!(o, " {} |", v.replace('|', "\\|"));
        }
        let _ = writeln!(o);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_print_symbolic() {
        let f = r#"print fmt: "mm=%p result=%s", REC->mm, __print_symbolic(REC->result, { 0, "failed" }, { 1, "succeeded" }, { 31, "page_filled" })"#;
        let t = print_symbolic(f);
        assert_eq!(t.get("failed"), Some(&0));
        assert_eq!(t.get("page_filled"), Some(&31));
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn keys_ftrace_lines() {
        let l = "   ct-m1-123 (    123) [001] ..... 10.5: mm_khugepaged_scan_file: mm=0000 pfn=0x1 filename=a b present=512 swap=0 result=page_filled";
        assert_eq!(
            ftrace_key(l),
            Some(("mm_khugepaged_scan_file".into(), "page_filled".into()))
        );
        let l = "   x-1 [000] ..... 1.0: mm_collapse_huge_page: mm=00 isolated=1 status=succeeded";
        assert_eq!(
            ftrace_key(l),
            Some(("mm_collapse_huge_page".into(), "succeeded".into()))
        );
    }
}
