//! `serve` facing a network (docs/daemon.md), end to end, as root, on loopback only:
//!
//! - hostile clients: 1,100 idle connections and 50 slowloris clients held open against a
//!   daemon under a 1,024-descriptor file limit; `/metrics` must still answer within a
//!   second, the bound must be logged, slowloris and idle keep-alive connections closed by the
//!   timeouts;
//! - `--web-config` (the exporter toolkit's file): TLS, basic auth (bcrypt, unknown users cost
//!   the same), mutual TLS (no, expired, or foreign client certificate refused), checked with
//!   curl; a real Prometheus scraping over HTTPS with basic auth equals `/json`, the same
//!   Prometheus without credentials is refused; SIGHUP reloads while scraped (a new
//!   certificate is served; a bad file keeps the old config); bad files refused at start with
//!   the field named and exit code 2;
//! - the Kubernetes manifests against the Kubernetes schemas (kubernetes-validate).
//!
//! Certificates are made at test time (rcgen). Every process started is killed by a guard.

mod common;

use common::*;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use collapse_trace::export::json::Snapshot;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");

/// The daemon's stderr lines, as they come.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn contains(&self, s: &str) -> bool {
        self.0.lock().unwrap().iter().any(|l| l.contains(s))
    }

    fn count(&self, s: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(s))
            .count()
    }

    /// Waits (at most `within`) for `n` lines containing `s`.
    fn wait_count(&self, s: &str, n: usize, within: Duration) {
        let start = Instant::now();
        while self.count(s) < n {
            assert!(
                start.elapsed() < within,
                "fewer than {n} log lines with {s:?} within {within:?}:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }

    /// Waits (at most `within`) for a line containing `s`.
    fn wait_for(&self, s: &str, within: Duration) {
        let start = Instant::now();
        while !self.contains(s) {
            assert!(
                start.elapsed() < within,
                "no log line with {s:?} within {within:?}:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Starts `collapse-trace serve --listen 127.0.0.1:PORT ARGS`, optionally with a file limit,
/// and waits for its start line.
fn start_serve(args: &[&str], nofile: Option<u64>) -> (Guard, SocketAddr, Log) {
    use std::os::unix::process::CommandExt as _;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .args(["--listen", &addr.to_string()])
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(n) = nofile {
        // SAFETY: setrlimit only, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let l = libc::rlimit {
                    rlim_cur: n,
                    rlim_max: n,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().expect("spawn collapse-trace serve");
    let stderr = child.stderr.take().unwrap();
    let guard = Guard {
        name: "collapse-trace serve",
        child: Some(child),
    };
    let log = Log::default();
    let (tx, rx) = mpsc::channel();
    let lines = log.clone();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap_or_default();
            eprintln!("[serve] {line}");
            let start = line.contains("attached to") && line.contains("listening on");
            lines.0.lock().unwrap().push(line);
            if start && let Some(tx) = tx.take() {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| {
            panic!(
                "collapse-trace serve did not report attaching and listening within 30 s:\n{}",
                log.text()
            )
        });
    (guard, addr, log)
}

/// GET over plain HTTP/1.0: (status, body).
fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:?}")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    Ok((status, body.to_string()))
}

/// Whether the server closed `s` (EOF or reset) within `within`.
fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// 1,100 idle connections and 50 slowloris clients, under the systemd unit's old file limit
/// (1,024): `/metrics` answers within a second every time, the bound is logged, the slowloris
/// connections are closed at the header timeout and an idle keep-alive one at the idle
/// timeout.
#[test]
fn hostile_clients_cannot_lock_out_metrics() {
    require_root();
    let _serial = serial();
    let (mut daemon, addr, log) = start_serve(
        &["--header-timeout", "4s", "--idle-timeout", "3s"],
        Some(1024),
    );
    // The default bound (1,024) does not fit 1,024 descriptors: lowered, with a warning.
    log.wait_for("does not fit the file limit", Duration::from_secs(1));
    let t = Instant::now();
    let (st, body) = http_get(addr, "/metrics", Duration::from_secs(1)).expect("/metrics");
    assert_eq!(st, 200);
    assert!(body.contains("collapse_trace_events_total"));
    eprintln!("/metrics unloaded: {:?}", t.elapsed());
    // A request head over 16 KiB is refused with 431, not buffered.
    let mut big = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = write!(
        big,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let mut head = [0u8; 64];
    let n = big.read(&mut head).unwrap_or(0);
    assert!(
        String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 431"),
        "a 20 KB request head: {:?}",
        String::from_utf8_lossy(&head[..n])
    );

    // 1,100 idle connections: more than the bound, more than the file limit.
    let mut idle = Vec::new();
    for _ in 0..1100 {
        idle.push(TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect"));
    }
    // 50 slowloris clients: a request head that never ends, one header line at a time.
    let mut slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    let held = Instant::now();
    let mut worst = Duration::ZERO;
    let mut answered = 0;
    // While all of them are held open (bounded: 6 rounds, well inside the header timeout).
    for round in 0..6 {
        for (i, s) in slow.iter_mut().enumerate() {
            let _ = write!(s, "X-Slow-{round}-{i}: a\r\n");
        }
        let t = Instant::now();
        let (st, body) = http_get(addr, "/metrics", Duration::from_secs(1))
            .unwrap_or_else(|e| panic!("/metrics under 1,150 hostile connections: {e}"));
        let took = t.elapsed();
        assert_eq!(st, 200);
        assert!(body.contains("collapse_trace_events_total"));
        assert!(
            took < Duration::from_secs(1),
            "/metrics took {took:?} under load"
        );
        worst = worst.max(took);
        answered += 1;
        std::thread::sleep(Duration::from_millis(400));
    }
    assert!(held.elapsed() < Duration::from_secs(4));
    eprintln!(
        "/metrics answered {answered} times under 1,150 hostile connections; worst {worst:?}"
    );
    log.wait_for("connection bound reached", Duration::from_secs(2));

    // The slowloris connections are closed at the header timeout (4 s after their accept),
    // whatever they keep sending.
    let start = Instant::now();
    let mut closed = 0;
    for s in &mut slow {
        let left = Duration::from_secs(7).saturating_sub(start.elapsed());
        let _ = s.write_all(b"X-More: a\r\n");
        if closed_by_server(s, left.max(Duration::from_millis(10))) {
            closed += 1;
        }
    }
    assert_eq!(
        closed, 50,
        "slowloris connections still open after the header timeout"
    );
    drop(idle);
    drop(slow);

    // An idle keep-alive connection is closed at the idle timeout (3 s), not before ~2 s.
    let mut ka = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).unwrap();
    write!(ka, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut head = [0u8; 512];
    let n = ka.read(&mut head).unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));
    let answered_at = Instant::now();
    assert!(
        !closed_by_server(&mut ka, Duration::from_secs(2)),
        "a keep-alive connection was closed before the idle timeout"
    );
    assert!(
        closed_by_server(&mut ka, Duration::from_secs(3)),
        "a keep-alive connection outlived the idle timeout"
    );
    let idle_for = answered_at.elapsed();
    eprintln!("keep-alive connection closed after {idle_for:?} idle (--idle-timeout 3s)");

    assert!(daemon.terminate().success());
}

// ---------------------------------------------------------------------------------------------
// Certificates and web configs

/// A CA, certificates it signed, and one from another CA, as PEM files in a directory.
struct Pki {
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "collapse-trace test CA");
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = p.self_signed(&key).unwrap();
        std::fs::write(dir.join("ca.crt"), cert.pem()).unwrap();
        Pki {
            ca: rcgen::Issuer::new(p, key),
            dir: dir.to_path_buf(),
        }
    }

    /// Writes NAME.crt and NAME.key: a leaf for `sans` (server or client), valid now or
    /// expired.
    fn leaf(&self, name: &str, cn: &str, sans: &[&str], client: bool, expired: bool) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2020, 2, 1);
        }
        let cert = p.signed_by(&key, &self.ca).unwrap();
        std::fs::write(self.dir.join(format!("{name}.crt")), cert.pem()).unwrap();
        std::fs::write(self.dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

const USER: &str = "prometheus";
const PASSWORD: &str = "s3cret: with spaces";
/// bcrypt cost of the test users: the toolkit's documented 10 (~70 ms), so that the
/// unknown-user timing check means something.
const COST: u32 = 10;

/// Makes the CA, server (`server`, `server2`) and client (`client`, `expired`, `foreign`)
/// certificates and a web config with TLS, mutual TLS and basic auth. Returns its path.
fn tls_setup(dir: &TempDir) -> PathBuf {
    let pki = Pki::new(&dir.0);
    pki.leaf(
        "server",
        "collapse-trace one",
        &["127.0.0.1", "localhost"],
        false,
        false,
    );
    pki.leaf(
        "server2",
        "collapse-trace two",
        &["127.0.0.1", "localhost"],
        false,
        false,
    );
    pki.leaf("client", "scraper", &["scraper.test"], true, false);
    pki.leaf("expired", "old scraper", &["scraper.test"], true, true);
    let other = TempDir::new("foreign-ca");
    let foreign = Pki::new(&other.0);
    foreign.leaf("foreign", "stranger", &["scraper.test"], true, false);
    for f in ["foreign.crt", "foreign.key"] {
        std::fs::copy(other.path(f), dir.path(f)).unwrap();
    }
    write_web_config(dir, "server")
}

fn write_web_config(dir: &TempDir, server: &str) -> PathBuf {
    let hash = bcrypt::hash(PASSWORD, COST).unwrap();
    // Relative paths: relative to the file's directory, as in the exporter toolkit.
    dir.write(
        "web-config.yml",
        &format!(
            "tls_server_config:\n  cert_file: {server}.crt\n  key_file: {server}.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  \
             min_version: TLS12\n\
             http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n\
             basic_auth_users:\n  {USER}: {hash}\n"
        ),
    )
}

/// The outcome of one curl request.
#[derive(Debug)]
struct Curl {
    /// curl's exit code (0: an HTTP response came).
    code: i32,
    /// The HTTP status (0 when none).
    status: u16,
    body: String,
    headers: String,
    stderr: String,
    took: Duration,
}

/// curl over HTTPS to 127.0.0.1 with the test CA; `cert`: the client certificate's name;
/// `auth`: user:password.
fn curl(
    dir: &TempDir,
    addr: SocketAddr,
    path: &str,
    cert: Option<&str>,
    auth: Option<&str>,
) -> Curl {
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "10", "-o", "-", "-D"])
        .arg(dir.path("headers.txt"))
        .args(["-w", "\n%{http_code}"])
        .arg("--cacert")
        .arg(dir.path("ca.crt"));
    if let Some(n) = cert {
        c.arg("--cert")
            .arg(dir.path(&format!("{n}.crt")))
            .arg("--key")
            .arg(dir.path(&format!("{n}.key")));
    }
    if let Some(a) = auth {
        c.args(["-u", a]);
    }
    c.arg(format!("https://{addr}{path}"));
    let _ = std::fs::remove_file(dir.path("headers.txt"));
    let t = Instant::now();
    let out = c.output().expect("curl (Debian package curl)");
    let took = t.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", stdout.as_str()));
    Curl {
        code: out.status.code().unwrap_or(-1),
        status: status.trim().parse().unwrap_or(0),
        body: body.to_string(),
        headers: std::fs::read_to_string(dir.path("headers.txt")).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took,
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// With curl: credentials and a client certificate get /metrics and /json; no credentials, a
/// wrong password, an unknown user get 401 (the unknown user after as long as a wrong
/// password: one bcrypt either way); /healthz needs no credentials; no client certificate, an
/// expired one, one from another CA, and plain HTTP get no HTTP answer at all.
#[test]
fn tls_basic_auth_and_client_certificates_with_curl() {
    require_root();
    let _serial = serial();
    let dir = TempDir::new("curl");
    let config = tls_setup(&dir);
    let (mut daemon, addr, log) = start_serve(&["--web-config", config.to_str().unwrap()], None);
    assert!(
        log.contains(&format!("listening on https://{addr}")),
        "{}",
        log.text()
    );
    // Logged by the server task, right after the start line.
    log.wait_for("client certificates required", Duration::from_secs(5));
    let auth = format!("{USER}:{PASSWORD}");

    let ok = curl(&dir, addr, "/metrics", Some("client"), Some(&auth));
    assert_eq!((ok.code, ok.status), (0, 200), "{ok:?}");
    assert!(ok.body.contains("collapse_trace_events_total"));
    assert!(
        ok.headers
            .to_ascii_lowercase()
            .contains("x-content-type-options: nosniff"),
        "the web config's header: {}",
        ok.headers
    );
    let json = curl(&dir, addr, "/json", Some("client"), Some(&auth));
    assert_eq!(json.status, 200);
    let snap: Snapshot = serde_json::from_str(&json.body).expect("/json parses");
    assert_eq!(snap.schema, collapse_trace::export::json::SCHEMA);

    for (what, path, who) in [
        ("no credentials", "/metrics", None),
        ("no credentials", "/json", None),
        ("no credentials", "/", None),
        ("wrong password", "/metrics", Some(format!("{USER}:wrong"))),
        ("empty password", "/metrics", Some(format!("{USER}:"))),
        (
            "unknown user",
            "/metrics",
            Some(format!("nobody:{PASSWORD}")),
        ),
    ] {
        let r = curl(&dir, addr, path, Some("client"), who.as_deref());
        assert_eq!(r.status, 401, "{what} on {path}: {r:?}");
        assert!(
            r.headers.contains("www-authenticate: Basic")
                || r.headers.contains("WWW-Authenticate: Basic"),
            "{what}: {}",
            r.headers
        );
        assert!(!r.body.contains("collapse_trace"), "{what} leaked data");
    }
    // Unauthenticated on purpose (liveness probes carry no credentials).
    let h = curl(&dir, addr, "/healthz", Some("client"), None);
    assert_eq!((h.status, h.body.as_str()), (200, "ok\n"), "{h:?}");

    // Unknown users cost one bcrypt like a wrong password (no user-existence oracle).
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..5 {
        wrong.push(
            curl(
                &dir,
                addr,
                "/metrics",
                Some("client"),
                Some(&format!("{USER}:x")),
            )
            .took,
        );
        unknown.push(curl(&dir, addr, "/metrics", Some("client"), Some("ghost:x")).took);
    }
    let (w, u) = (median(wrong), median(unknown));
    eprintln!("median request time: wrong password {w:?}, unknown user {u:?}");
    assert!(
        u * 2 > w && w * 2 > u,
        "unknown user {u:?} vs wrong password {w:?}: not the same cost"
    );

    // Mutual TLS: no certificate, an expired one, one from another CA: refused in the
    // handshake, so no HTTP status at all, even with the right password.
    for cert in [None, Some("expired"), Some("foreign")] {
        let r = curl(&dir, addr, "/metrics", cert, Some(&auth));
        assert!(
            r.code != 0 && r.status == 0,
            "client certificate {cert:?} was accepted: {r:?}"
        );
        eprintln!(
            "client certificate {cert:?}: curl {}: {}",
            r.code,
            r.stderr.trim()
        );
    }
    // Plain HTTP to the TLS port: no HTTP answer, never a fallback.
    match http_get(addr, "/metrics", Duration::from_secs(3)) {
        Ok((st, body)) => panic!("plain HTTP answered {st}: {body}"),
        Err(e) => eprintln!("plain HTTP to the TLS port: {e}"),
    }

    // client_allowed_sans (set by a SIGHUP reload): only a listed SAN gets through.
    let base = std::fs::read_to_string(&config).unwrap();
    let with_sans = |sans: &str| {
        base.replace(
            "  min_version: TLS12\n",
            &format!("  min_version: TLS12\n  client_allowed_sans: [{sans}]\n"),
        )
    };
    std::fs::write(&config, with_sans("other.test, 10.9.9.9")).unwrap();
    daemon.signal(libc::SIGHUP);
    log.wait_count("re-read on SIGHUP", 1, Duration::from_secs(5));
    let r = curl(&dir, addr, "/metrics", Some("client"), Some(&auth));
    assert!(
        r.code != 0 && r.status == 0,
        "a client certificate without an allowed SAN was accepted: {r:?}"
    );
    eprintln!("SAN not allowed: curl {}: {}", r.code, r.stderr.trim());
    std::fs::write(&config, with_sans("other.test, Scraper.test")).unwrap();
    daemon.signal(libc::SIGHUP);
    log.wait_count("re-read on SIGHUP", 2, Duration::from_secs(5));
    let r = curl(&dir, addr, "/metrics", Some("client"), Some(&auth));
    assert_eq!(r.status, 200, "an allowed SAN was refused: {r:?}");
    assert!(daemon.terminate().success());
}

/// Bad web configs are refused at start, before anything is loaded, with the field named and
/// exit code 2; nothing listens.
#[test]
fn bad_web_config_is_refused_at_start() {
    let dir = TempDir::new("bad");
    let pki = Pki::new(&dir.0);
    pki.leaf("server", "s", &["127.0.0.1"], false, false);
    pki.leaf("other", "o", &["127.0.0.1"], false, false);
    let hash = bcrypt::hash("pw", 4).unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown field",
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  cert_flie: x\n"
                .into(),
            "cert_flie",
        ),
        (
            "unknown top-level field",
            "basic_auth_user:\n  a: b\n".into(),
            "basic_auth_user",
        ),
        (
            "missing key",
            "tls_server_config:\n  cert_file: server.crt\n".into(),
            "key_file",
        ),
        (
            "missing certificate file",
            "tls_server_config:\n  cert_file: nothere.crt\n  key_file: server.key\n".into(),
            "cert_file",
        ),
        (
            "key of another certificate",
            "tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n".into(),
            "key",
        ),
        (
            "client CA without a policy",
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: ca.crt\n"
                .into(),
            "client_auth_type",
        ),
        (
            "verification without a CA",
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n"
                .into(),
            "client_ca_file",
        ),
        (
            "unverified client certificates",
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAnyClientCert\n  client_ca_file: ca.crt\n"
                .into(),
            "client_auth_type",
        ),
        (
            "TLS 1.1 at most",
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  max_version: TLS11\n"
                .into(),
            "max_version",
        ),
        (
            "a CBC suite",
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]\n"
                .into(),
            "cipher_suites",
        ),
        (
            "not a bcrypt hash",
            "basic_auth_users:\n  alice: plaintext\n".into(),
            "basic_auth_users.alice",
        ),
        (
            "TLS options without a certificate",
            "tls_server_config:\n  min_version: TLS13\n".into(),
            "tls_server_config",
        ),
        (
            "a header the toolkit does not allow",
            format!("http_server_config:\n  headers:\n    Server: x\nbasic_auth_users:\n  a: {hash}\n"),
            "http_server_config.headers",
        ),
        (
            "SANs without a required certificate",
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n  client_allowed_sans: [a.test]\n"
                .into(),
            "client_allowed_sans",
        ),
        (
            "an e-mail SAN",
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  client_allowed_sans: [a@b.test]\n"
                .into(),
            "client_allowed_sans",
        ),
        ("a list for a map", "tls_server_config: [\n".into(), "tls_server_config"),
        ("not YAML", "basic_auth_users:\n  a: 'unterminated\n".into(), "line 2"),
    ];
    for (what, text, field) in &cases {
        let file = dir.write("web.yml", text);
        let port = free_port();
        let out = Command::new(BIN)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--web-config",
            ])
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert!(
            stderr.contains(field) && stderr.contains("refusing to start"),
            "{what}: the message does not name {field:?}: {stderr}"
        );
        assert!(
            !stderr.contains("attached"),
            "{what}: attached anyway: {stderr}"
        );
        eprintln!("{what}: {}", stderr.trim());
    }
    // A missing file, too.
    let out = Command::new(BIN)
        .args(["serve", "--web-config", "/nonexistent/web.yml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/web.yml"));
}

/// Values of an instant query.
fn prom_query(addr: SocketAddr, q: &str) -> Vec<serde_json::Value> {
    let enc: String = q
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (st, body) = http_get(
        addr,
        &format!("/api/v1/query?query={enc}"),
        Duration::from_secs(10),
    )
    .expect("Prometheus API");
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn sample(v: &serde_json::Value) -> f64 {
    v["value"][1].as_str().unwrap().parse().unwrap()
}

/// The scrape health of one job: (up, last error).
fn target(addr: SocketAddr, job: &str) -> Option<(String, String)> {
    let (_, body) = http_get(addr, "/api/v1/targets", Duration::from_secs(10)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["activeTargets"]
        .as_array()?
        .iter()
        .find(|t| t["labels"]["job"] == job)
        .map(|t| {
            (
                t["health"].as_str().unwrap_or("").to_string(),
                t["lastError"].as_str().unwrap_or("").to_string(),
            )
        })
}

/// The server certificate's common name as curl saw it on a new connection.
fn served_cn(dir: &TempDir, addr: SocketAddr) -> String {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-v",
            "-o",
            "/dev/null",
            "--max-time",
            "10",
            "--cacert",
        ])
        .arg(dir.path("ca.crt"))
        .arg("--cert")
        .arg(dir.path("client.crt"))
        .arg("--key")
        .arg(dir.path("client.key"))
        .arg(format!("https://{addr}/healthz"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    err.lines()
        .find_map(|l| {
            l.split_once("subject: CN=")
                .map(|(_, cn)| cn.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no subject in curl -v: {err}"))
}

/// A real Prometheus scrapes over HTTPS with a client certificate and basic auth: its values
/// equal the daemon's /json for a workload; the same Prometheus without the password is
/// refused (401, up = 0). SIGHUP while being scraped: a new certificate is served to new
/// connections and scraping goes on; a broken file on SIGHUP keeps the config in force.
#[test]
fn prometheus_scrapes_over_tls_with_basic_auth() {
    require_root();
    let _serial = serial();
    let dir = TempDir::new("prom");
    let config = tls_setup(&dir);
    let comm = format!("ct-w{}", std::process::id() % 1_000_000);
    let (mut daemon, d_addr, log) = start_serve(
        &["--comm", &comm, "--web-config", config.to_str().unwrap()],
        None,
    );

    // Prometheus: one job with the credentials, one without.
    let p_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let d = dir.0.display();
    let tls = format!(
        "    scheme: https\n    tls_config:\n      ca_file: {d}/ca.crt\n      cert_file: {d}/client.crt\n      key_file: {d}/client.key\n"
    );
    let prom_cfg = dir.write(
        "prometheus.yml",
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n\
             \x20 - job_name: good\n{tls}    basic_auth:\n      username: {USER}\n      password: '{PASSWORD}'\n    static_configs:\n      - targets: ['{d_addr}']\n\
             \x20 - job_name: nocreds\n{tls}    static_configs:\n      - targets: ['{d_addr}']\n"
        ),
    );
    let plog = std::fs::File::create(dir.path("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", prom_cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path("data").display()
        ))
        .arg(format!("--web.listen-address={p_addr}"))
        .stdout(Stdio::null())
        .stderr(plog)
        .spawn()
        .expect("prometheus (Debian package `prometheus`)");
    let _prom = Guard {
        name: "prometheus",
        child: Some(child),
    };
    let start = Instant::now();
    loop {
        if matches!(
            http_get(p_addr, "/-/ready", Duration::from_secs(2)),
            Ok((200, _))
        ) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "prometheus not ready: {}",
            std::fs::read_to_string(dir.path("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let start = Instant::now();
    while prom_query(p_addr, "up{job=\"good\"} == 1").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "Prometheus never scraped over TLS with basic auth: {:?}",
            target(p_addr, "good")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // Refused without the password.
    let start = Instant::now();
    let refused = loop {
        if let Some((health, err)) = target(p_addr, "nocreds")
            && health == "down"
        {
            break err;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "nocreds never scraped"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(refused.contains("401"), "nocreds: {refused}");
    assert!(prom_query(p_addr, "up{job=\"nocreds\"} == 1").is_empty());

    // A workload; Prometheus's numbers must equal /json's.
    let tally = provoke(&["uffd-holes", "-n", "5", "--comm", &comm]);
    assert!(tally.pid > 0);
    std::thread::sleep(Duration::from_millis(600));
    let auth = format!("{USER}:{PASSWORD}");
    let json = curl(&dir, d_addr, "/json", Some("client"), Some(&auth));
    assert_eq!(json.status, 200, "{json:?}");
    let snap: Snapshot = serde_json::from_str(&json.body).unwrap();
    // /json's tracepoints: the kernel counts by result, MADV_COLLAPSE calls by errno; in
    // /metrics the first are collapse_trace_events_total, the calls
    // collapse_trace_madvise_calls_total{errno}.
    let mut want = BTreeMap::new();
    for t in &snap.tracepoints {
        for r in &t.results {
            if r.count > 0 {
                let key = if t.name == "madvise_collapse" {
                    ("madvise_calls".to_string(), r.result.clone())
                } else {
                    (t.name.clone(), r.result.clone())
                };
                want.insert(key, r.count as f64);
            }
        }
    }
    assert_eq!(
        want.get(&("madvise_calls".to_string(), "EBUSY".to_string())),
        Some(&5.0),
        "the workload's 5 EBUSY calls in /json: {want:?}"
    );
    assert!(
        want.len() >= 3,
        "5 calls x 2 tracepoints and the calls: {want:?}"
    );
    let series = |q: &str, label: &str, fixed: Option<&str>| -> Vec<((String, String), f64)> {
        prom_query(p_addr, q)
            .iter()
            .map(|s| {
                let tp = match fixed {
                    Some(f) => f.to_string(),
                    None => s["metric"]["tracepoint"].as_str().unwrap().to_string(),
                };
                (
                    (tp, s["metric"][label].as_str().unwrap().to_string()),
                    sample(s),
                )
            })
            .collect()
    };
    let start = Instant::now();
    let got = loop {
        let mut got: BTreeMap<(String, String), f64> = BTreeMap::new();
        got.extend(series(
            "collapse_trace_events_total{job=\"good\"} > 0",
            "result",
            None,
        ));
        got.extend(series(
            "collapse_trace_madvise_calls_total{job=\"good\"} > 0",
            "errno",
            Some("madvise_calls"),
        ));
        if got == want || start.elapsed() > Duration::from_secs(20) {
            break got;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(got, want, "Prometheus over HTTPS vs the daemon's /json");

    // SIGHUP with a new certificate, while Prometheus scrapes every second.
    assert_eq!(served_cn(&dir, d_addr), "collapse-trace one");
    write_web_config(&dir, "server2");
    daemon.signal(libc::SIGHUP);
    log.wait_for("re-read on SIGHUP", Duration::from_secs(5));
    assert_eq!(served_cn(&dir, d_addr), "collapse-trace two");
    // Scrapes go on: the scrape count keeps growing, and the latest scrape is up.
    let scrapes = |p| {
        prom_query(p, "count_over_time(up{job=\"good\"}[1h])")
            .first()
            .map(sample)
            .unwrap_or(0.0)
    };
    let before = scrapes(p_addr);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        scrapes(p_addr) >= before + 2.0,
        "scrapes stopped after SIGHUP"
    );
    assert_eq!(target(p_addr, "good").map(|t| t.0).as_deref(), Some("up"));

    // A broken file on SIGHUP: an error logged, the config in force kept.
    dir.write("web-config.yml", "tls_server_config:\n  cert_file: [\n");
    daemon.signal(libc::SIGHUP);
    log.wait_for("SIGHUP reload refused", Duration::from_secs(5));
    let ok = curl(&dir, d_addr, "/metrics", Some("client"), Some(&auth));
    assert_eq!(ok.status, 200, "after a bad reload: {ok:?}");
    assert_eq!(served_cn(&dir, d_addr), "collapse-trace two");
    // A reload that would turn TLS off is refused too (never a fallback to plain HTTP).
    dir.write(
        "web-config.yml",
        &format!(
            "basic_auth_users:\n  {USER}: {}\n",
            bcrypt::hash("x", 4).unwrap()
        ),
    );
    daemon.signal(libc::SIGHUP);
    log.wait_for("turns TLS off", Duration::from_secs(5));
    assert_eq!(
        curl(&dir, d_addr, "/metrics", Some("client"), Some(&auth)).status,
        200
    );
    let before = scrapes(p_addr);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        scrapes(p_addr) >= before + 2.0,
        "scrapes stopped after a bad SIGHUP"
    );
    assert_eq!(target(p_addr, "good").map(|t| t.0).as_deref(), Some("up"));

    let st = daemon.terminate();
    assert!(st.success(), "serve exited with {st}");
}

// ---------------------------------------------------------------------------------------------
// Kubernetes manifests

/// kubernetes-validate, installed by `cargo xtask test` in a venv of its own.
fn kubernetes_validate() -> PathBuf {
    let home = std::env::var_os("HOME").expect("HOME");
    let p = Path::new(&home).join(".local/share/collapse-trace/venv/bin/kubernetes-validate");
    assert!(
        p.exists(),
        "{} is missing: `cargo xtask test` installs it (PyPI kubernetes-validate)",
        p.display()
    );
    p
}

fn validate(files: &[PathBuf]) -> (bool, String) {
    status_and_text(
        Command::new(kubernetes_validate())
            .arg("--strict")
            .args(files),
    )
}

/// Runs `cmd`: whether it succeeded, and its stdout and stderr together.
fn status_and_text(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// tests/k8s/validate-operator.mjs, run where `cargo xtask test` installed its npm packages
/// (Node resolves a module's imports from the module's own directory).
fn validate_operator(files: &[PathBuf]) -> (bool, String) {
    let home = std::env::var_os("HOME").expect("HOME");
    let prefix = Path::new(&home).join(".local/share/collapse-trace/node");
    assert!(
        prefix
            .join("node_modules/@kubernetes-models/prometheus-operator")
            .exists(),
        "{} lacks the npm packages: `cargo xtask test` installs them",
        prefix.display()
    );
    let script = prefix.join("validate-operator.mjs");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/k8s/validate-operator.mjs"
        ),
        &script,
    )
    .unwrap();
    status_and_text(Command::new("node").arg(&script).args(files))
}

fn yaml(path: &str) -> serde_yaml_ng::Value {
    serde_yaml_ng::from_str(
        &std::fs::read_to_string(format!("{DEPLOY}/kubernetes/{path}")).unwrap(),
    )
    .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The DaemonSet and Service pass the Kubernetes schemas (strict: no unknown field); a broken
/// copy does not (the validator really validates). The Prometheus-operator kinds, which
/// kubernetes-validate has no schema for, pass the operator's own CRD schemas (and a broken
/// copy does not), and are checked against the Service and the DaemonSet by hand (selector,
/// port name, scheme).
#[test]
fn kubernetes_manifests_validate() {
    let k = PathBuf::from(format!("{DEPLOY}/kubernetes"));
    let (ok, out) = validate(&[k.join("daemonset.yaml"), k.join("service.yaml")]);
    assert!(ok, "kubernetes-validate: {out}");
    assert_eq!(out.matches("passed").count(), 2, "{out}");

    let dir = TempDir::new("k8s");
    let broken = std::fs::read_to_string(k.join("daemonset.yaml"))
        .unwrap()
        .replace("hostPID: true", "hostPid: true");
    let (ok, out) = validate(&[dir.write("broken.yaml", &broken)]);
    assert!(!ok, "a misspelt field passed: {out}");

    // kubernetes-validate has no schema for the Prometheus-operator kinds; the operator's own
    // CRD schemas (npm) check them, and refuse a broken copy.
    let (_, out) = validate(&[k.join("servicemonitor.yaml"), k.join("podmonitor.yaml")]);
    assert_eq!(out.matches("Couldn't find schema").count(), 2, "{out}");
    let (ok, out) = validate_operator(&[k.join("servicemonitor.yaml"), k.join("podmonitor.yaml")]);
    assert!(ok, "operator schemas: {out}");
    assert_eq!(out.matches(": passed").count(), 2, "{out}");
    let broken = std::fs::read_to_string(k.join("servicemonitor.yaml"))
        .unwrap()
        .replace("endpoints:", "endpoint:");
    let (ok, out) = validate_operator(&[dir.write("broken-sm.yaml", &broken)]);
    assert!(
        !ok && out.contains("FAILED"),
        "a broken ServiceMonitor passed: {out}"
    );

    // What the validator cannot check: the pieces fit together.
    let ds = yaml("daemonset.yaml");
    let svc = yaml("service.yaml");
    let pod = &ds["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    assert_eq!(pod["spec"]["hostPID"], true);
    let c = &pod["spec"]["containers"][0];
    let caps: Vec<&str> = c["securityContext"]["capabilities"]["add"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // The README's privileges: CAP_BPF, CAP_PERFMON, CAP_DAC_READ_SEARCH, and no more.
    assert_eq!(caps, ["BPF", "PERFMON", "DAC_READ_SEARCH"]);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert_eq!(c["securityContext"]["privileged"], false);
    for m in c["volumeMounts"].as_sequence().unwrap() {
        assert_eq!(m["readOnly"], true, "{m:?}");
    }
    // --pods-dir is a mount of the node's own pod log directory (pod names).
    let pods_dir = c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .find_map(|a| a.as_str().unwrap().strip_prefix("--pods-dir="))
        .expect("serve --pods-dir in the DaemonSet");
    let mount = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == pods_dir)
        .unwrap_or_else(|| panic!("no volume mounted at {pods_dir}"));
    let volume = pod["spec"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mount's volume");
    assert_eq!(volume["hostPath"]["path"], "/var/log/pods");
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert!(c["resources"]["requests"]["memory"].is_string());
    for (k, v) in svc["spec"]["selector"].as_mapping().unwrap() {
        assert_eq!(&labels[k], v, "the Service selects the DaemonSet's pods");
    }
    assert!(
        svc["spec"]["clusterIP"] == "None",
        "headless: one target per node"
    );
    let port = &svc["spec"]["ports"][0];
    assert_eq!(port["targetPort"], c["ports"][0]["name"]);
    for (file, eps) in [
        ("servicemonitor.yaml", "endpoints"),
        ("podmonitor.yaml", "podMetricsEndpoints"),
    ] {
        let m = yaml(file);
        let sel = &m["spec"]["selector"]["matchLabels"];
        let against = if file == "servicemonitor.yaml" {
            &svc["metadata"]["labels"]
        } else {
            labels
        };
        for (k, v) in sel.as_mapping().unwrap() {
            assert_eq!(&against[k], v, "{file} selects by {k:?}");
        }
        let ep = &m["spec"][eps][0];
        assert_eq!(ep["port"], port["name"], "{file}");
        assert_eq!(ep["scheme"], "https", "{file}: the daemon serves TLS");
        assert!(ep["basicAuth"]["password"].is_mapping(), "{file}");
    }
    // The example web config is a valid web config (certificates aside).
    let example = std::fs::read_to_string(k.join("web-config.example.yml")).unwrap();
    let pki = Pki::new(&dir.0);
    pki.leaf(
        "server",
        "s",
        &["collapse-trace.monitoring.svc"],
        false,
        false,
    );
    let cfg = dir.write("web-config.yml", &example);
    let loaded =
        collapse_trace::web::config::Loaded::read(&cfg).expect("the example web config loads");
    let users = loaded.users.expect("the example has a user");
    assert!(
        users.check("prometheus", b"change-me"),
        "the example hash is of change-me"
    );
    assert!(!users.check("prometheus", b"change-you"));
}

/// The systemd unit's file limit fits the default connection bound with the reserve and room
/// for the BPF side, so the daemon never has to lower the bound under it.
#[test]
fn systemd_unit_file_limit_fits_the_connection_bound() {
    let unit = std::fs::read_to_string(format!("{DEPLOY}/systemd/collapse-trace.service")).unwrap();
    let nofile: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("LimitNOFILE="))
        .expect("LimitNOFILE= in the unit")
        .trim()
        .parse()
        .unwrap();
    let need = collapse_trace::web::DEFAULT_MAX_CONNECTIONS as u64
        + collapse_trace::web::limits::FD_RESERVE
        + 256;
    assert!(nofile >= need, "LimitNOFILE={nofile} < {need}");
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
}
