//! `collapse-trace serve` end to end, as root, against the real kernel and a real Prometheus
//! (Debian package `prometheus`, which also ships `promtool`): what Prometheus scraped must
//! equal the daemon's own `/json` for the workload's run; `/metrics` with hostile comm names
//! must pass `promtool check metrics`; the shipped rules, config and dashboard must be valid;
//! the systemd unit's capability set must be enough. `stat --json --follow` is checked too.
//!
//! These tests fail, never skip, when something is missing. Every process they start is
//! killed and reaped by a guard, also when an assertion fails.

mod common;

use common::*;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    os::unix::ffi::OsStrExt,
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use collapse_trace::{
    export::{json::Snapshot, ndjson::EventLine},
    model::event::escape,
};

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");

/// GET over HTTP/1.0 (no chunking, the server closes): (status, body).
fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    Ok((status, body.to_string()))
}

fn get_ok(addr: SocketAddr, path: &str) -> String {
    let (status, body) = get(addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// Percent-encodes a query parameter.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query against Prometheus's HTTP API: the result vector.
fn prom_query(addr: SocketAddr, q: &str) -> Vec<serde_json::Value> {
    let body = get_ok(addr, &format!("/api/v1/query?query={}", encode(q)));
    let v: serde_json::Value = serde_json::from_str(&body).expect("Prometheus API JSON");
    assert_eq!(v["status"], "success", "query {q}: {body}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Starts `collapse-trace serve ARGS` (via `bin`) and waits for its start line.
fn start_serve(bin: &Path, args: &[&str], setpriv: Option<&[String]>) -> (Guard, SocketAddr) {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let listen = addr.to_string();
    let mut cmd = match setpriv {
        Some(pre) => {
            let mut c = Command::new("setpriv");
            c.args(pre).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.arg("serve")
        .args(["--listen", &listen])
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn collapse-trace serve");
    let stderr = child.stderr.take().unwrap();
    let guard = Guard::new("collapse-trace serve", child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap_or_default();
            eprintln!("[serve] {line}");
            if line.contains("attached to")
                && line.contains("listening on")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("collapse-trace serve did not report attaching and listening within 30 s");
    (guard, addr)
}

/// A task name for this test binary's workloads, so that `--comm` filters exactly them even
/// when other collapse-trace workloads run on the machine.
fn workload_comm() -> String {
    format!("ct-s{}", std::process::id() % 1_000_000)
}

/// Kernel counts in a snapshot by (tracepoint, result).
fn kernel_counts(s: &Snapshot) -> BTreeMap<(String, String), u64> {
    let mut m = BTreeMap::new();
    for t in &s.tracepoints {
        for r in &t.results {
            m.insert((t.name.clone(), r.result.clone()), r.count);
        }
    }
    m
}

fn value(v: &serde_json::Value) -> u64 {
    let s = v["value"][1].as_str().expect("sample value");
    s.parse::<f64>().expect("number") as u64
}

/// Starts Prometheus on loopback, scraping `target` every second, with its own data dir.
fn start_prometheus(dir: &Path, target: SocketAddr) -> (Guard, SocketAddr) {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: collapse-trace\n    static_configs:\n      \
             - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus (Debian package `prometheus`; `cargo xtask setup` installs it)");
    let guard = Guard::new("prometheus", child);
    let start = Instant::now();
    loop {
        if let Ok((200, _)) = get(addr, "/-/ready") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "prometheus not ready within 30 s: {}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    (guard, addr)
}

/// The workload's page_filled and exceed_none_pte, as Prometheus scraped them, equal the
/// daemon's /json (kernel counters), which equal the workload's own errnos.
#[test]
fn prometheus_scrapes_equal_the_daemons_json() {
    require_root();
    let _serial = serial();
    let dir = TempDir::new("prom");
    // --comm: khugepaged runs in the background; the kernel counts only the workload (the
    // daemon, also `collapse-trace`, never calls madvise).
    let comm = workload_comm();
    let (mut daemon, d_addr) = start_serve(Path::new(BIN), &["--comm", &comm], None);
    assert_eq!(get_ok(d_addr, "/healthz"), "ok\n");
    let (_prom, p_addr) = start_prometheus(&dir.0, d_addr);

    // Wait until Prometheus scrapes the daemon.
    let start = Instant::now();
    while prom_query(p_addr, "up{job=\"collapse-trace\"} == 1").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "Prometheus never scraped the daemon"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    let tally = provoke_with(Path::new(BIN), &["all", "--comm", &comm]);
    // The kernel counters are re-read every 250 ms.
    std::thread::sleep(Duration::from_millis(600));
    let snap: Snapshot = serde_json::from_str(&get_ok(d_addr, "/json")).expect("/json parses");
    assert_eq!(snap.schema, "collapse-trace.stat/2");
    assert_eq!(snap.filters.comm.as_deref(), Some(comm.as_str()));
    assert_eq!(snap.totals.dropped, 0);
    assert_eq!(
        snap.totals.delivered,
        snap.totals.events + snap.totals.calls
    );
    let ours = kernel_counts(&snap);
    let key = |tp: &str, r: &str| (tp.to_string(), r.to_string());
    let cf = "mm_khugepaged_collapse_file";

    // The independent truth: the workload's errnos.
    let uffd = tally
        .scenarios
        .iter()
        .find(|s| s.scenario == "uffd-holes")
        .expect("uffd-holes ran");
    let ebusy = uffd.errnos.get("EBUSY").copied().unwrap_or(0);
    assert!(ebusy > 0, "uffd-holes got no EBUSY: {uffd:?}");
    assert_eq!(
        ours.get(&key(cf, "exceed_none_pte")).copied(),
        Some(ebusy),
        "/json exceed_none_pte vs the workload's EBUSY"
    );
    assert!(
        ours.get(&key(cf, "page_filled")).copied().unwrap_or(0) >= 1,
        "the page-filled race produced no page_filled: {ours:?}"
    );
    // Only the workload: its pid is the one process.
    assert!(
        snap.processes.iter().all(|p| p.tgid == tally.pid),
        "{:?}",
        snap.processes
    );

    // Prometheus's view must converge to exactly the same numbers.
    let want: BTreeMap<(String, String), u64> = ours
        .iter()
        .filter(|((_, r), _)| r == "page_filled" || r == "exceed_none_pte")
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let query = "collapse_trace_events_total{job=\"collapse-trace\",result=~\"page_filled|exceed_none_pte\"}";
    let start = Instant::now();
    let got = loop {
        let got: BTreeMap<(String, String), u64> = prom_query(p_addr, query)
            .iter()
            .map(|s| {
                let m = &s["metric"];
                (
                    (
                        m["tracepoint"].as_str().unwrap().to_string(),
                        m["result"].as_str().unwrap().to_string(),
                    ),
                    value(s),
                )
            })
            .filter(|(_, v)| *v > 0)
            .collect();
        if got == want || start.elapsed() > Duration::from_secs(20) {
            break got;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(
        got, want,
        "Prometheus vs the daemon's /json (kernel counters)"
    );

    // The per-comm series (from delivered events) say the same for the workload.
    let q = format!(
        "sum by (tracepoint, result) (collapse_trace_process_events_total{{comm=\"{comm}\",\
         origin=\"madvise\",result=~\"page_filled|exceed_none_pte\"}})"
    );
    let per_comm: BTreeMap<(String, String), u64> = prom_query(p_addr, &q)
        .iter()
        .map(|s| {
            let m = &s["metric"];
            (
                (
                    m["tracepoint"].as_str().unwrap().to_string(),
                    m["result"].as_str().unwrap().to_string(),
                ),
                value(s),
            )
        })
        .collect();
    assert_eq!(per_comm, want, "per-comm series vs /json");
    // The workload's files are on tmpfs: every collapse_file record is shmem.
    let shmem = prom_query(
        p_addr,
        "sum(collapse_trace_collapse_file_events_total{shmem=\"true\",result=\"exceed_none_pte\"})",
    );
    assert_eq!(
        shmem.first().map(value),
        Some(ebusy),
        "shmem exceed_none_pte"
    );
    let build = prom_query(p_addr, "collapse_trace_build_info");
    assert_eq!(build.len(), 1);
    assert_eq!(
        build[0]["metric"]["kernel_release"],
        snap.kernel_release.as_str()
    );

    // Every query of the shipped dashboard and rules is valid PromQL to this Prometheus.
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{DEPLOY}/grafana/collapse-trace.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut n = 0;
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let e = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$__range", "1h")
                .replace("$instance", ".*");
            prom_query(p_addr, &e);
            n += 1;
        }
    }
    assert!(n >= 9, "the dashboard has {n} queries");

    // SIGTERM: detach and exit 0.
    let st = daemon.terminate();
    assert!(st.success(), "serve exited with {st}");
}

/// Hostile comm names (quotes, backslash, newline, invalid UTF-8) reach /metrics escaped, and
/// the body passes `promtool check metrics`.
#[test]
fn hostile_comm_names_pass_promtool() {
    require_root();
    let _serial = serial();
    let dir = TempDir::new("hostile");
    // comm is the exec'd file's name, truncated to 15 bytes: a symlink gives any bytes.
    let name: &[u8] = b"q\"b\\c\nd\xffe";
    let link = dir.0.join(std::ffi::OsStr::from_bytes(name));
    std::os::unix::fs::symlink(BIN, &link).unwrap();

    let (mut daemon, addr) = start_serve(Path::new(BIN), &[], None);
    let tally = provoke_with(&link, &["collapse", "-n", "3"]);
    std::thread::sleep(Duration::from_millis(600));
    let body = get_ok(addr, "/metrics");

    // escape(): q"b\\c\x0ad\xffe; then the exposition format escapes `"` and `\`.
    let escaped = escape(name);
    assert_eq!(escaped, "q\"b\\\\c\\x0ad\\xffe");
    let label = format!(
        "comm=\"{}\"",
        escaped.replace('\\', "\\\\").replace('"', "\\\"")
    );
    assert!(
        body.lines()
            .any(|l| l.starts_with("collapse_trace_process_events_total{") && l.contains(&label)),
        "no series with {label} in\n{body}"
    );

    assert_promtool_accepts(&body);

    // /json names the same process with the same escaped comm.
    let snap: Snapshot = serde_json::from_str(&get_ok(addr, "/json")).unwrap();
    let p = snap
        .processes
        .iter()
        .find(|p| p.tgid == tally.pid)
        .expect("the hostile process in /json");
    assert_eq!(p.comm, escaped);
    assert!(daemon.terminate().success());
}

/// The shipped alert and recording rules (docs/fleet.md) and the scrape config pass
/// promtool, and the rules' unit tests pass.
#[test]
fn deploy_rules_and_config_pass_promtool() {
    let dir = format!("{DEPLOY}/prometheus");
    for args in [
        &["check", "rules", "collapse-trace.rules.yml"][..],
        &["check", "config", "prometheus.yml"],
        &["test", "rules", "collapse-trace.rules.test.yml"],
        &["check", "rules", "collapse-trace.recording.yml"],
        &["test", "rules", "collapse-trace.recording.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool (Debian package `prometheus`)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The capabilities the systemd unit grants are enough: run as nobody with exactly those.
#[test]
fn serve_runs_with_only_the_units_capabilities() {
    require_root();
    let _serial = serial();
    let unit = std::fs::read_to_string(format!("{DEPLOY}/systemd/collapse-trace.service")).unwrap();
    let caps: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("AmbientCapabilities= in the unit")
        .split_whitespace()
        .map(|c| {
            format!(
                "+{}",
                c.strip_prefix("CAP_").expect("CAP_ name").to_lowercase()
            )
        })
        .collect();
    assert_eq!(caps, ["+bpf", "+perfmon", "+dac_read_search"]);
    let bounding = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("CapabilityBoundingSet= in the unit");
    assert_eq!(bounding, "CAP_BPF CAP_PERFMON CAP_DAC_READ_SEARCH");
    let set = caps.join(",");
    let pre: Vec<String> = vec![
        "--reuid=65534".into(),
        "--regid=65534".into(),
        "--clear-groups".into(),
        format!("--inh-caps=-all,{set}"),
        format!("--ambient-caps={set}"),
        format!("--bounding-set=-all,{set}"),
    ];
    let comm = workload_comm();
    let (mut daemon, addr) = start_serve(Path::new(BIN), &["--comm", &comm], Some(&pre));
    let tally = provoke_with(Path::new(BIN), &["uffd-holes", "-n", "2", "--comm", &comm]);
    std::thread::sleep(Duration::from_millis(600));
    let snap: Snapshot = serde_json::from_str(&get_ok(addr, "/json")).unwrap();
    let p = snap
        .processes
        .iter()
        .find(|p| p.tgid == tally.pid)
        .expect("the unprivileged daemon saw the workload");
    assert_eq!(p.events, 4, "{p:?}");
    assert!(get_ok(addr, "/metrics").contains("collapse_trace_events_total"));
    assert!(daemon.terminate().success());
}

/// `stat --json --follow` prints one snapshot per interval; with `--events`, one line per event.
#[test]
fn stat_follow_prints_ndjson() {
    require_root();
    let _serial = serial();
    let comm = workload_comm();
    for events in [false, true] {
        let mut args = vec![
            "stat",
            "--json",
            "--follow",
            "--interval",
            "300ms",
            "--comm",
            &comm,
        ];
        if events {
            args.push("--events");
        }
        let mut child = Command::new(BIN)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut guard = Guard::new("stat --follow", child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let line = line.unwrap_or_default();
                if line.contains("attached to")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(());
                }
            }
        });
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            BufReader::new(stdout).read_to_string(&mut s).unwrap();
            s
        });
        rx.recv_timeout(Duration::from_secs(30)).expect("attached");
        let tally = provoke_with(Path::new(BIN), &["uffd-holes", "-n", "3", "--comm", &comm]);
        std::thread::sleep(Duration::from_millis(700));
        assert!(guard.terminate().success());
        let out = reader.join().unwrap();
        let lines: Vec<&str> = out.lines().collect();
        let last: Snapshot = serde_json::from_str(lines.last().expect("output")).unwrap();
        assert_eq!(last.schema, "collapse-trace.stat/2");
        assert_eq!(last.totals.events, 6, "3 calls x 2 tracepoints");
        if events {
            let evs: Vec<EventLine> = lines[..lines.len() - 1]
                .iter()
                .map(|l| serde_json::from_str(l).expect("an event line"))
                .collect();
            assert_eq!(evs.len(), 9, "3 calls x (2 events + the call): {out}");
            assert!(evs.iter().all(|e| e.schema == "collapse-trace.event/1"
                && e.tgid == tally.pid
                && e.call_ns.is_some()));
            let (calls, events): (Vec<_>, Vec<_>) =
                evs.iter().partition(|e| e.tracepoint == "madvise_collapse");
            assert!(
                calls
                    .iter()
                    .all(|e| e.result == "EBUSY" && e.len == Some(2 << 20))
            );
            assert!(events.iter().all(|e| e.result == "exceed_none_pte"));
            let shmem = evs.iter().filter(|e| e.is_shmem == Some(true)).count();
            assert_eq!(shmem, 3);
        } else {
            assert!(lines.len() >= 3, "snapshots every 300 ms: {out}");
            for l in &lines {
                let s: Snapshot = serde_json::from_str(l).expect("a snapshot line");
                assert_eq!(s.schema, "collapse-trace.stat/2");
            }
        }
    }
}
