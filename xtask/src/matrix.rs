//! `cargo xtask matrix`: the same release binary, checked for real on the kernels users run.
//!
//! Boots Debian's 6.1 and 6.12 kernels under QEMU with virtme-ng (the host's `/` shared
//! read-only, one command run as root), runs the check suite inside each, and runs the same
//! suite on the host's own kernel directly. The suite is this very xtask binary in a hidden
//! mode (`matrix --suite`), so the guest runs exactly the code the host runs.
//!
//! Installs are idempotent and each prints one line (present / installing what and how):
//! the kernel packages, qemu-system-x86 from bookworm-backports (bookworm's own would remove
//! this image's backports qemu-utils), busybox-static (virtme-ng's initramfs) and virtme-ng in
//! a venv under `~/.local/share/collapse-trace/`.

use std::{
    collections::BTreeMap,
    fs,
    os::unix::process::ExitStatusExt as _,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::env::{Env, command_line, output, run};

/// The virtme-ng release the notes measured.
const VIRTME_NG_VERSION: &str = "1.42";
/// Our private apt source for bookworm-backports (qemu-system-x86 only, pinned per command).
const BACKPORTS_SOURCES: &str = "/etc/apt/sources.list.d/collapse-trace-bookworm-backports.sources";

/// Options of `matrix`.
#[derive(Debug, Default, clap::Args)]
pub struct MatrixArgs {
    /// Kernels to check: `6.1`, `6.12` (the newest plain -amd64 Debian image of that series),
    /// a full release such as `6.1.0-57-amd64`, or `host` (this machine's kernel, run
    /// directly). Default: 6.1, 6.12 and host.
    #[arg(long = "kernel", value_name = "V")]
    kernels: Vec<String>,
    /// QEMU accelerator: `tcg` (software emulation, what works on this nested VM) or `kvm`
    /// (for machines with real VMX/SVM).
    #[arg(long, value_enum, default_value = "tcg")]
    accel: Accel,
    /// Also write docs/kernels.md, the table of what the tool observes per kernel, from this
    /// run's results.
    #[arg(long)]
    write_docs: bool,
    /// Only install what the matrix needs, boot nothing.
    #[arg(long)]
    setup_only: bool,
    /// Internal: run the check suite on the running kernel and write its JSON to this file
    /// (what the guests run).
    #[arg(long, hide = true, value_name = "FILE")]
    suite: Option<PathBuf>,
    /// Internal, with --suite: this is a matrix guest, so set its own THP sysfs.
    #[arg(long, hide = true)]
    guest: bool,
}

impl MatrixArgs {
    /// The defaults, for `cargo xtask test`; `ACCEL=kvm` in the environment picks KVM (for a
    /// machine with real VMX/SVM; this nested VM's KVM emulates guest kernels too slowly).
    pub fn from_env() -> Self {
        let mut args = Self::default();
        if std::env::var("ACCEL").is_ok_and(|v| v == "kvm") {
            args.accel = Accel::Kvm;
        }
        args
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
enum Accel {
    #[default]
    Tcg,
    Kvm,
}

/// Checks passed and failed in the last [`matrix`] run (for `test`'s closing line).
static COUNTS: std::sync::Mutex<(u64, u64)> = std::sync::Mutex::new((0, 0));

/// (passed, failed) checks of the last [`matrix`] run in this process.
pub fn last_counts() -> (u64, u64) {
    *COUNTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `matrix`.
pub fn matrix(env: &Env, args: MatrixArgs) -> Result<()> {
    if let Some(out) = &args.suite {
        return suite::run_suite(env, out, args.guest);
    }
    let started = Instant::now();
    let wanted = if args.kernels.is_empty() {
        vec!["6.1".to_string(), "6.12".to_string(), "host".to_string()]
    } else {
        args.kernels.clone()
    };
    let guests: Vec<&str> = wanted
        .iter()
        .map(String::as_str)
        .filter(|k| *k != "host")
        .collect();
    let setup = Setup::ensure(env, &guests)?;
    println!("matrix setup: {:.0} s", started.elapsed().as_secs_f64());
    if args.setup_only {
        return Ok(());
    }
    let binary = env.root.join("target/release/collapse-trace");
    ensure!(
        binary.exists(),
        "{} is missing: build it first (`cargo build --release -p collapse-trace`)",
        binary.display()
    );
    let mut results = Vec::new();
    for k in &wanted {
        let t = Instant::now();
        let res = if k == "host" {
            run_host(env)
        } else {
            let release = setup.release_for(k)?;
            run_guest(env, &setup, &release, args.accel)
        };
        let secs = t.elapsed().as_secs_f64();
        match res {
            Ok(r) => {
                for c in &r.checks {
                    let mut lines = c.detail.lines();
                    println!(
                        "matrix {:<24} {:<10} {} {}",
                        r.release,
                        c.name,
                        if c.ok { "PASS" } else { "FAIL" },
                        lines.next().unwrap_or("")
                    );
                    for l in lines {
                        println!("    {l}");
                    }
                }
                println!("matrix {:<24} took {secs:.0} s", r.release);
                results.push(r);
            }
            Err(e) => {
                println!("matrix {k:<24} boot       FAIL {e:#}");
                results.push(suite::SuiteResult::failed(k, &format!("{e:#}")));
            }
        }
    }
    let failed: Vec<String> = results
        .iter()
        .flat_map(|r| {
            r.checks
                .iter()
                .filter(|c| !c.ok)
                .map(move |c| format!("{} {}", r.release, c.name))
        })
        .collect();
    let total = results.iter().map(|r| r.checks.len()).sum::<usize>();
    *COUNTS.lock().unwrap_or_else(|e| e.into_inner()) =
        ((total - failed.len()) as u64, failed.len() as u64);
    println!(
        "matrix: {} kernels, {} checks, {} failed, {:.0} s in all",
        results.len(),
        results.iter().map(|r| r.checks.len()).sum::<usize>(),
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    if args.write_docs {
        let path = env.root.join("docs/kernels.md");
        fs::write(&path, suite::docs_table(&results))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("matrix: wrote {}", path.display());
    }
    ensure!(
        failed.is_empty(),
        "matrix checks failed: {}",
        failed.join(", ")
    );
    Ok(())
}

/// What the installs found or made.
struct Setup {
    /// Kernel series ("6.1") or release -> installed release ("6.1.0-57-amd64").
    releases: BTreeMap<String, String>,
    /// The venv's `vng`.
    vng: PathBuf,
}

impl Setup {
    fn release_for(&self, k: &str) -> Result<String> {
        self.releases
            .get(k)
            .cloned()
            .with_context(|| format!("no kernel resolved for {k}"))
    }

    /// Installs what is missing, one line per item.
    fn ensure(env: &Env, kernels: &[&str]) -> Result<Self> {
        let mut releases = BTreeMap::new();
        let mut packages = Vec::new();
        for &k in kernels {
            let release = resolve_kernel(env, k)?;
            let pkg = format!("linux-image-{release}");
            let vmlinuz = PathBuf::from(format!("/boot/vmlinuz-{release}"));
            let modules = PathBuf::from(format!("/lib/modules/{release}/modules.dep"));
            if is_installed(env, &pkg) && vmlinuz.exists() && modules.exists() {
                println!("kernel {k}: present ({pkg}, {})", vmlinuz.display());
            } else {
                println!(
                    "kernel {k}: missing, installing {pkg} with apt-get (~1-2 min, most of it \
                     initramfs generation)"
                );
                packages.push(pkg);
            }
            releases.insert(k.to_string(), release);
        }
        if is_installed(env, "busybox-static") {
            println!("busybox-static (virtme-ng's initramfs): present");
        } else {
            println!("busybox-static (virtme-ng's initramfs): missing, installing with apt-get");
            packages.push("busybox-static".into());
        }
        if !packages.is_empty() {
            let mut cmd = env.command("apt-get");
            cmd.env("DEBIAN_FRONTEND", "noninteractive")
                .args([
                    "install",
                    "-y",
                    "-q",
                    "--no-install-recommends",
                    "--no-remove",
                ])
                .args(&packages);
            println!("  `{}`", command_line(&cmd));
            run(&mut cmd).with_context(|| format!("installing {}", packages.join(" ")))?;
        }
        ensure_qemu(env)?;
        let vng = ensure_virtme_ng(env)?;
        Ok(Setup { releases, vng })
    }
}

/// Whether dpkg has `pkg` installed.
fn is_installed(env: &Env, pkg: &str) -> bool {
    output(env.command("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .is_ok_and(|s| s.trim() == "install ok installed")
}

/// `6.1` / `6.12` -> the newest plain `-amd64` release of that series in apt's lists (an
/// `apt-get update` first if the lists know none); a full release is taken as is.
fn resolve_kernel(env: &Env, k: &str) -> Result<String> {
    if k.ends_with("-amd64") {
        return Ok(k.to_string());
    }
    ensure!(
        k.split('.').count() == 2 && k.split('.').all(|p| p.parse::<u32>().is_ok()),
        "--kernel {k}: give a series (6.1, 6.12), a full release (6.1.0-57-amd64) or `host`"
    );
    let search = |env: &Env| -> Result<Vec<String>> {
        let out = output(env.command("apt-cache").args([
            "search",
            "--names-only",
            &format!("^linux-image-{}\\.", regex_escape(k)),
        ]))?;
        let mut found: Vec<String> = out
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter_map(|p| p.strip_prefix("linux-image-"))
            .filter(|r| is_plain_amd64(r, k))
            .map(str::to_string)
            .collect();
        found.sort_by_key(|r| version_key(r));
        Ok(found)
    };
    let mut found = search(env)?;
    if found.is_empty() {
        println!("kernel {k}: apt knows no linux-image-{k}.*-amd64, running apt-get update");
        run(env.command("apt-get").args(["update", "-q"]))?;
        found = search(env)?;
    }
    found
        .pop()
        .with_context(|| format!("no plain linux-image-{k}.*-amd64 package in apt's lists"))
}

/// `6.1.0-57-amd64` or `6.12.117+deb12-amd64` of series `k`, not -cloud/-rt/-dbg/unsigned.
fn is_plain_amd64(release: &str, series: &str) -> bool {
    let Some(rest) = release
        .strip_prefix(series)
        .and_then(|r| r.strip_prefix('.'))
    else {
        return false;
    };
    let Some(core) = rest.strip_suffix("-amd64") else {
        return false;
    };
    // 6.1: "0-57"; 6.12: "117+deb12".
    !core.is_empty()
        && core
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '+')
        && !["cloud", "rt", "dbg", "unsigned"]
            .iter()
            .any(|w| core.split(['-', '+']).any(|p| p == *w))
}

/// The numbers in a release, for sorting ("6.1.0-57-amd64" -> [6, 1, 0, 57, 64]).
fn version_key(release: &str) -> Vec<u64> {
    release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn regex_escape(s: &str) -> String {
    s.replace('.', "\\.")
}

/// qemu-system-x86 from bookworm-backports, through our own apt source, never removing
/// anything (bookworm's 7.2 would take this image's backports qemu-utils with it).
fn ensure_qemu(env: &Env) -> Result<()> {
    if is_installed(env, "qemu-system-x86") && env.which("qemu-system-x86_64").is_some() {
        let v = output(env.command("qemu-system-x86_64").arg("--version")).unwrap_or_default();
        println!(
            "qemu-system-x86: present ({})",
            v.lines().next().unwrap_or("?").trim()
        );
        return Ok(());
    }
    if !Path::new(BACKPORTS_SOURCES).exists() {
        let uri = debian_mirror()?;
        println!(
            "apt source for bookworm-backports: missing, writing {BACKPORTS_SOURCES} (mirror \
             from /etc/apt/sources.list.d/debian.sources; backports stay at apt's default \
             priority 100, so nothing else upgrades from it)"
        );
        fs::write(
            BACKPORTS_SOURCES,
            format!(
                "# Written by `cargo xtask matrix` (collapse-trace): qemu-system-x86 for the \
                 kernel matrix.\nTypes: deb\nURIs: {uri}\nSuites: bookworm-backports\n\
                 Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
            ),
        )
        .with_context(|| format!("writing {BACKPORTS_SOURCES}"))?;
        run(env.command("apt-get").args(["update", "-q"]))?;
    }
    let mut cmd = env.command("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive").args([
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "--no-remove",
        "-t",
        "bookworm-backports",
        "qemu-system-x86",
    ]);
    println!(
        "qemu-system-x86: missing, installing from bookworm-backports (`{}`)",
        command_line(&cmd)
    );
    run(&mut cmd).context("installing qemu-system-x86 from bookworm-backports")
}

/// The Debian archive URI this machine's apt already uses for bookworm.
fn debian_mirror() -> Result<String> {
    let path = "/etc/apt/sources.list.d/debian.sources";
    let text = fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
        };
        if field("Suites:").is_some_and(|s| s.split_whitespace().any(|s| s == "bookworm"))
            && let Some(uri) = field("URIs:").and_then(|u| u.split_whitespace().next())
        {
            return Ok(uri.to_string());
        }
    }
    bail!("{path} has no bookworm entry to take the mirror from")
}

/// virtme-ng in a venv under `~/.local/share/collapse-trace/`; returns its `vng`.
fn ensure_virtme_ng(env: &Env) -> Result<PathBuf> {
    let venv = env.home.join(format!(
        ".local/share/collapse-trace/virtme-ng-{VIRTME_NG_VERSION}"
    ));
    let vng = venv.join("bin/vng");
    let pip = venv.join("bin/pip");
    let version = || {
        output(env.command(&pip).args(["show", "virtme-ng"]))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Version:"))
                    .map(|v| v.trim().to_string())
            })
    };
    if vng.exists() && version().as_deref() == Some(VIRTME_NG_VERSION) {
        println!("virtme-ng {VIRTME_NG_VERSION}: present ({})", vng.display());
        return Ok(vng);
    }
    println!(
        "virtme-ng {VIRTME_NG_VERSION}: missing, installing into the venv {} (pip)",
        venv.display()
    );
    run(env.command("python3").arg("-m").arg("venv").arg(&venv))
        .context("python3 -m venv (needs python3-venv)")?;
    run(env
        .command(&pip)
        .args(["install", "-q", &format!("virtme-ng=={VIRTME_NG_VERSION}")]))?;
    ensure!(
        vng.exists(),
        "pip installed virtme-ng but {} is missing",
        vng.display()
    );
    Ok(vng)
}

mod suite;

/// The suite on this machine's own kernel, directly (its THP settings as they are).
fn run_host(env: &Env) -> Result<suite::SuiteResult> {
    let dir = env.root.join("target/matrix/host");
    fs::create_dir_all(&dir)?;
    let out = dir.join("suite.json");
    let _ = fs::remove_file(&out);
    suite::run_suite(env, &out, false)?;
    read_result(&out)
}

fn read_result(out: &Path) -> Result<suite::SuiteResult> {
    let text = fs::read_to_string(out).with_context(|| format!("reading {}", out.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", out.display()))
}

/// Boots `release` under QEMU with virtme-ng and runs the suite inside as root. Retries the
/// boot once, saying so, when QEMU itself aborted (a known TCG flake), never a failed check.
fn run_guest(env: &Env, setup: &Setup, release: &str, accel: Accel) -> Result<suite::SuiteResult> {
    let dir = env.root.join("target/matrix").join(release);
    fs::create_dir_all(&dir)?;
    let out = dir.join("suite.json");
    let exe = std::env::current_exe().context("this xtask binary's path")?;
    for attempt in 1..=2 {
        let _ = fs::remove_file(&out);
        let log = dir.join(format!("console-{attempt}.log"));
        let mut cmd = env.command(&setup.vng);
        let venv_bin = setup.vng.parent().context("vng has no directory")?;
        let path = std::env::join_paths(std::iter::once(venv_bin.to_path_buf()).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ))?;
        cmd.env("PATH", path)
            .current_dir(&dir)
            .arg("-r")
            .arg(format!("/boot/vmlinuz-{release}"))
            .args(["--user", "root", "--memory", "2G", "--cpus", "2"]);
        match accel {
            Accel::Tcg => {
                cmd.args(["--disable-kvm", "--qemu-opts=-accel tcg,thread=multi"]);
            }
            // virtme-ng uses KVM whenever /dev/kvm is there and not disabled.
            Accel::Kvm => ensure!(
                Path::new("/dev/kvm").exists(),
                "--accel kvm: this machine has no /dev/kvm (use --accel tcg)"
            ),
        }
        cmd.arg(format!("--rwdir={}", dir.display()))
            .arg("--")
            .arg(format!(
                "{} matrix --suite {} --guest",
                exe.display(),
                out.display()
            ));
        let t = Instant::now();
        println!("matrix {release}: booting (`{}`)", command_line(&cmd));
        let logf = fs::File::create(&log)?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf)
            .spawn()
            .context("starting vng")?;
        let status = wait_timeout(&mut child, Duration::from_secs(20 * 60))?;
        let console = fs::read_to_string(&log).unwrap_or_default();
        if out.exists() {
            println!(
                "matrix {release}: guest ran the suite in {:.0} s (console: {})",
                t.elapsed().as_secs_f64(),
                log.display()
            );
            return read_result(&out);
        }
        let aborted = console.contains("Assertion")
            || console.contains("qemu-system-x86_64: ")
            || status.is_some_and(|s| s.signal().is_some());
        let tail: Vec<&str> = console.lines().rev().take(15).collect();
        let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n  ");
        if aborted && attempt == 1 {
            println!(
                "matrix {release}: QEMU aborted ({}) before the suite finished: a known TCG \
                 flake; retrying the boot once. Console tail:\n  {tail}",
                status.map_or("timed out".to_string(), |s| s.to_string())
            );
            continue;
        }
        bail!(
            "the guest wrote no result ({}; console {}):\n  {tail}",
            status.map_or("timed out after 20 min".to_string(), |s| s.to_string()),
            log.display()
        );
    }
    unreachable!("the loop returns or bails on its second attempt")
}

/// Waits for `child` up to `limit`; kills it then (None).
fn wait_timeout(child: &mut Child, limit: Duration) -> Result<Option<std::process::ExitStatus>> {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(Some(s));
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
