//! Kubernetes pod attribution on the real kernel, as root, without Kubernetes: the test makes
//! cgroup directories of its own named as the kubelet names a pod's (systemd driver, and
//! cgroupfs driver), under its own directory of the cgroup2 mount, and a fake kubelet pod log
//! directory (`<namespace>_<name>_<uid>`) naming one of the two pods. A `provoke collapse`
//! workload runs in each container's cgroup while `serve --pods-dir` and `stat --json
//! --pods-dir` run: the series of `/metrics` carry the fake namespace and pod (the UID for the
//! pod the directory does not name), with counts equal to the workloads' own calls, and
//! `cgroups[].pod` says the same with the QoS class and the container id.
//!
//! Every cgroup directory the test made is removed, deepest first, and so is the temporary
//! directory, also when an assertion fails (guards). No other cgroup is touched, nor any
//! THP setting. The test fails, never skips, when it cannot run.

mod common;

use common::*;

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    os::unix::process::CommandExt as _,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use collapse_trace::{
    export::json::{PodRow, Snapshot},
    kernel::cgroups::cgroup2_mount,
    model::pods::Qos,
    provoke::Tally,
};

/// A chain of cgroup directories of the test's own, made top down and removed bottom up
/// when dropped (their processes have exited by then).
struct CgroupTree {
    /// Every directory made, outermost first.
    made: Vec<PathBuf>,
    mount: PathBuf,
}

impl CgroupTree {
    /// The test's own top directory in the cgroup2 mount.
    fn new(tag: &str) -> CgroupTree {
        let mount = cgroup2_mount().expect("a cgroup2 mount in /proc/mounts");
        let mut t = CgroupTree {
            made: Vec::new(),
            mount,
        };
        let top = t
            .mount
            .join(format!("collapse-trace-test-{tag}-{}", std::process::id()));
        t.mkdir(top);
        t
    }

    fn mkdir(&mut self, dir: PathBuf) {
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        self.made.push(dir);
    }

    /// Makes `rel` (slash-separated) under the test's top directory, each level in turn;
    /// returns the leaf's path from the cgroup2 root, as the tool shows it.
    fn leaf(&mut self, rel: &str) -> (PathBuf, String) {
        let mut dir = self.made[0].clone();
        for part in rel.split('/') {
            dir = dir.join(part);
            if !dir.exists() {
                self.mkdir(dir.clone());
            }
        }
        let shown = format!("/{}", dir.strip_prefix(&self.mount).unwrap().display());
        (dir, shown)
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        for dir in self.made.iter().rev() {
            // A just-exited process may hold the cgroup a moment longer.
            let start = Instant::now();
            while std::fs::remove_dir(dir).is_err() && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// `collapse-trace provoke collapse --comm COMM -n N --json`, moved into cgroup `dir` before
/// it runs.
fn workload_in(dir: &std::path::Path, comm: &str, n: u32) -> Tally {
    make_room_for_huge_pages();
    let procs = dir.join("cgroup.procs");
    let mut cmd = Command::new(BIN);
    cmd.args([
        "provoke",
        "collapse",
        "--comm",
        comm,
        "-n",
        &n.to_string(),
        "--json",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    // SAFETY: the closure only opens and writes one file before exec.
    unsafe {
        cmd.pre_exec(move || std::fs::write(&procs, "0"));
    }
    let out = cmd.output().expect("run the workload");
    assert!(out.status.success(), "the workload failed: {}", out.status);
    serde_json::from_slice(&out.stdout).expect("provoke --json output")
}

/// GET over HTTP/1.0: the body of a 200 answer.
fn get_ok(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_string()
}

/// One sample line of the exposition format: (name, labels, value). Label values here have
/// no escapes (paths, UIDs and DNS names).
fn sample(line: &str) -> Option<(String, BTreeMap<String, String>, u64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let (name, labels) = series.split_once('{')?;
    let mut m = BTreeMap::new();
    for pair in labels.strip_suffix('}')?.split("\",") {
        let (k, v) = pair.split_once("=\"")?;
        m.insert(k.to_string(), v.trim_end_matches('"').to_string());
    }
    Some((name.to_string(), m, value.parse().ok()?))
}

/// The workload's calls by errno name (`ok` for 0), as the tool names MADV_COLLAPSE results.
fn calls_of(t: &Tally) -> BTreeMap<String, u64> {
    let s = &t.scenarios[0];
    let mut m = s.errnos.clone();
    if s.ok > 0 {
        m.insert("ok".into(), s.ok);
    }
    m
}

/// A container id as runtimes make them: 64 hex digits (here from a hash, unique to the run).
fn container_id(pid: u32, nanos: u32, n: u8) -> String {
    use std::hash::{BuildHasher as _, BuildHasherDefault, DefaultHasher};
    (0..4u8)
        .map(|i| {
            let h = BuildHasherDefault::<DefaultHasher>::default().hash_one((pid, nanos, n, i));
            format!("{h:016x}")
        })
        .collect()
}

#[test]
fn pod_cgroups_label_series_and_json_with_the_pod_log_directorys_names() {
    require_root();
    let _serial = serial();
    let pid = std::process::id();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    // Two pods of real-looking UIDs, unique to this run.
    let named_uid = format!("{pid:08x}-{:04x}-4aaa-8bbb-{nanos:012x}", nanos & 0xffff);
    let unnamed_uid = format!("{pid:08x}-{:04x}-4ccc-9ddd-{nanos:012x}", nanos & 0xffff);
    let cid_a = container_id(pid, nanos, 1);
    let cid_b = container_id(pid, nanos, 2);
    let (namespace, name) = ("ct-test", format!("web-{pid}"));

    let mut tree = CgroupTree::new("pods");
    // systemd driver, BestEffort; named by the pod log directory.
    let (dir_a, cg_a) = tree.leaf(&format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/\
         cri-containerd-{cid_a}.scope",
        named_uid.replace('-', "_")
    ));
    // cgroupfs driver, Burstable; not in the pod log directory.
    let (dir_b, cg_b) = tree.leaf(&format!("kubepods/burstable/pod{unnamed_uid}/{cid_b}"));
    let pods = TempDir::new("pods");
    std::fs::create_dir(pods.path(&format!("{namespace}_{name}_{named_uid}"))).unwrap();
    // Another node's-worth of noise: names that are no pod's are ignored.
    std::fs::create_dir(pods.path("not-a-pod")).unwrap();
    let pods_dir = pods.0.to_str().unwrap().to_string();

    let comm = format!("ct-pd{}", pid % 100_000);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let mut serve = Command::new(BIN);
    serve
        .args(["serve", "--listen", &addr.to_string(), "--comm", &comm])
        .args(["--pods-dir", &pods_dir])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null());
    let (child, attached) = spawn_watching(serve, "serve", "attached to");
    let mut serve = Guard::new("collapse-trace serve", child);
    attached
        .recv_timeout(Duration::from_secs(30))
        .expect("serve did not attach within 30 s");
    let mut stat = Guard::new(
        "collapse-trace stat",
        start_attached(&["stat", "--json", "--comm", &comm, "--pods-dir", &pods_dir]),
    );

    let tally_a = workload_in(&dir_a, &comm, 3);
    let tally_b = workload_in(&dir_b, &comm, 2);
    // Records reach the daemon's core within a drain (50 ms) or two.
    std::thread::sleep(Duration::from_millis(600));
    let body = get_ok(addr, "/metrics");
    let served: Snapshot = serde_json::from_str(&get_ok(addr, "/json")).expect("/json parses");
    let snap: Snapshot =
        serde_json::from_str(&sigint_and_wait(stat.child.take().unwrap())).expect("stat --json");
    assert!(serve.terminate().success(), "serve did not exit 0");

    let series: Vec<_> = body
        .lines()
        .filter(|l| l.starts_with("collapse_trace_process_events_total{"))
        .map(|l| sample(l).unwrap_or_else(|| panic!("unparsed sample {l:?}")))
        .collect();
    // Per cgroup: its (namespace, pod) labels, and its calls by errno.
    let labels_of = |cg: &str| {
        let mine: Vec<_> = series
            .iter()
            .filter(|(_, l, _)| l["cgroup"] == cg)
            .collect();
        assert!(!mine.is_empty(), "no series of cgroup {cg} in\n{body}");
        let pods: std::collections::BTreeSet<(String, String)> = mine
            .iter()
            .map(|(_, l, _)| (l["namespace"].clone(), l["pod"].clone()))
            .collect();
        let calls: BTreeMap<String, u64> = mine
            .iter()
            .filter(|(_, l, _)| l["tracepoint"] == "madvise_collapse")
            .map(|(_, l, v)| (l["result"].clone(), *v))
            .filter(|(_, v)| *v > 0)
            .collect();
        (pods, calls)
    };
    let (pods_a, calls_a) = labels_of(&cg_a);
    assert_eq!(
        pods_a,
        [(namespace.to_string(), name.clone())].into(),
        "the named pod's series"
    );
    assert_eq!(
        calls_a,
        calls_of(&tally_a),
        "pod {name}'s calls vs the workload's"
    );
    let (pods_b, calls_b) = labels_of(&cg_b);
    assert_eq!(
        pods_b,
        [(String::new(), unnamed_uid.clone())].into(),
        "a pod the directory does not name is labelled by its UID"
    );
    assert_eq!(
        calls_b,
        calls_of(&tally_b),
        "pod {unnamed_uid}'s calls vs the workload's"
    );
    assert_eq!(calls_of(&tally_a).values().sum::<u64>(), 3);
    assert_eq!(calls_of(&tally_b).values().sum::<u64>(), 2);
    // Only the workloads' cgroups (--comm), each with exactly one pair of pod labels.
    for (_, l, _) in &series {
        assert!(l["cgroup"] == cg_a || l["cgroup"] == cg_b, "{l:?}");
    }

    // cgroups[].pod, in stat --json and in serve's /json alike; its events as the series say.
    for (what, doc) in [("stat --json", &snap), ("serve /json", &served)] {
        assert_eq!(doc.totals.dropped, 0, "{what}");
        let pod_of = |cg: &str| -> PodRow {
            let row = doc
                .cgroups
                .iter()
                .find(|c| c.path == cg)
                .unwrap_or_else(|| panic!("{what}: no cgroups[] row {cg}: {:?}", doc.cgroups));
            let collapse_series: u64 = series
                .iter()
                .filter(|(_, l, _)| l["cgroup"] == cg && l["tracepoint"] != "madvise_collapse")
                .map(|(_, _, v)| v)
                .sum();
            assert_eq!(
                row.events, collapse_series,
                "{what}: {cg}'s events vs /metrics"
            );
            row.pod
                .clone()
                .unwrap_or_else(|| panic!("{what}: no pod in {row:?}"))
        };
        assert_eq!(
            pod_of(&cg_a),
            PodRow {
                uid: named_uid.clone(),
                namespace: Some(namespace.to_string()),
                name: Some(name.clone()),
                qos: Qos::BestEffort,
                container: Some(cid_a.clone()),
            },
            "{what}"
        );
        assert_eq!(
            pod_of(&cg_b),
            PodRow {
                uid: unnamed_uid.clone(),
                namespace: None,
                name: None,
                qos: Qos::Burstable,
                container: Some(cid_b.clone()),
            },
            "{what}"
        );
    }
    drop(tree);
    // Everything made is gone.
    let top = cgroup2_mount()
        .unwrap()
        .join(format!("collapse-trace-test-pods-{pid}"));
    assert!(!top.exists(), "{} left behind", top.display());
}
