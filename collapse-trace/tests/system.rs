//! `/metrics` carries the system's own THP context (/proc/vmstat `thp_*`, khugepaged's
//! progress and knobs) and the attempts view; every system value equals the file's, read
//! just before and just after the scrape (a counter may move in between, never back).

mod common;

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    process::{Command, Stdio},
    time::Duration,
};

use common::{BIN, free_port, require_root, serial, spawn_watching};

fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_string()
}

fn files() -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for l in std::fs::read_to_string("/proc/vmstat").unwrap().lines() {
        let (k, v) = l.split_once(' ').unwrap();
        if k.starts_with("thp_") {
            out.push((
                format!("collapse_trace_vmstat_{k}_total"),
                v.parse().unwrap(),
            ));
        }
    }
    let dir = "/sys/kernel/mm/transparent_hugepage/khugepaged";
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(v) = std::fs::read_to_string(e.path())
            .unwrap()
            .trim()
            .parse::<f64>()
        else {
            continue;
        };
        let metric = match name.as_str() {
            "full_scans" | "pages_collapsed" => format!("collapse_trace_khugepaged_{name}_total"),
            n if n.ends_with("_millisecs") => {
                let base = n.trim_end_matches("_millisecs");
                out.push((
                    format!("collapse_trace_khugepaged_{base}_seconds"),
                    v / 1000.0,
                ));
                continue;
            }
            n => format!("collapse_trace_khugepaged_{n}"),
        };
        out.push((metric, v));
    }
    out
}

fn value(body: &str, metric: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(metric)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {metric} in /metrics"))
        .parse()
        .unwrap()
}

#[test]
fn metrics_carry_vmstat_khugepaged_and_attempts() {
    require_root();
    let _g = serial();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let comm = format!("ctsys{}", std::process::id() % 100_000);
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", &addr.to_string(), "--comm", &comm])
        .stdout(Stdio::null());
    let (mut child, rx) = spawn_watching(cmd, "serve", "listening on");
    rx.recv_timeout(Duration::from_secs(30))
        .expect("serve started");
    // A workload under our comm: 2 collapses that succeed.
    let dir = std::env::temp_dir().join(format!("ct-system-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join(&comm);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    let tally = common::provoke_with(&link, &["collapse", "-n", "2"]);
    std::thread::sleep(Duration::from_millis(500));

    let before = files();
    let body = get(addr, "/metrics");
    let after = files();
    // SAFETY: kill with a pid we own.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);

    assert!(before.len() > 5, "{before:?}");
    for ((m, b), (_, a)) in before.iter().zip(&after) {
        let v = value(&body, m);
        assert!(
            *b <= v && v <= *a,
            "{m}: file said {b} then {a}, /metrics {v}"
        );
    }
    assert!(body.contains("# TYPE collapse_trace_vmstat_thp_collapse_alloc_total counter"));
    assert!(body.contains("# TYPE collapse_trace_khugepaged_scan_sleep_seconds gauge"));
    // The attempts view: both collapses, one attempt each.
    let ok = tally.scenarios[0].ok;
    assert_eq!(ok, 2, "{tally:?}");
    let attempts: f64 = body
        .lines()
        .filter(|l| {
            l.starts_with("collapse_trace_attempts_total{")
                && l.contains("origin=\"madvise\"")
                && l.contains("outcome=\"collapsed\"")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(attempts, 2.0, "{body}");
    assert!(body.contains("# TYPE collapse_trace_attempt_latency_seconds histogram"));
    assert!(
        body.contains("collapse_trace_madvise_call_latency_seconds_count{outcome=\"collapsed\"} 2"),
        "{body}"
    );
}
