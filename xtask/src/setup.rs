//! `cargo xtask setup`: makes sure the nightly toolchain can build the eBPF crate.
//!
//! collapse-trace's build.rs compiles collapse-trace-ebpf with
//! `rustup run nightly cargo build -Z build-std=core --target bpfel-unknown-none`, which needs the
//! nightly's `rust-src` and a `bpf-linker` whose LLVM major version equals the nightly's. No
//! prebuilt bpf-linker fits, so it is built from crates.io against the nightly's own libLLVM,
//! through symlinks in a lasting prefix (the binary's RUNPATH points there).
//!
//! Every check prints one line; once everything is in place a run takes a few milliseconds and
//! touches neither the network nor `cargo install`.

use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::env::{Env, command_line, output, run};

/// The bpf-linker release to install (it has the `llvm-21`, `llvm-22` and `llvm-23` features).
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Checks each prerequisite and installs or repairs what is missing.
pub fn setup(env: &Env) -> Result<()> {
    let nightly = Nightly::find(env)?;
    println!(
        "nightly toolchain: present ({}, LLVM {})",
        nightly.release, nightly.llvm_version
    );
    ensure_rust_src(env)?;
    let prefix = ensure_llvm_prefix(env, &nightly)?;
    ensure_bpf_linker(env, &nightly, &prefix)
}

/// What setup needs to know about the nightly toolchain.
struct Nightly {
    /// rustc's release, e.g. `1.97.0-nightly`.
    release: String,
    /// The full LLVM version, e.g. `22.1.4`.
    llvm_version: String,
    /// The LLVM major version, e.g. `22`.
    llvm_major: u32,
    /// The toolchain's shared libLLVM, e.g. `<sysroot>/lib/libLLVM.so.22.1-rust-1.97.0-nightly`.
    libllvm: PathBuf,
}

impl Nightly {
    /// Describes the installed nightly toolchain; fails if there is none.
    fn find(env: &Env) -> Result<Self> {
        // Check first: `rustc +nightly` could make rustup download a toolchain.
        let toolchains = output(env.command("rustup").args(["toolchain", "list"]))
            .context("cannot list rustup toolchains: is rustup installed and on PATH?")?;
        let has_nightly = toolchains.lines().any(|line| {
            let name = line.split_whitespace().next().unwrap_or_default();
            name == "nightly"
                || name
                    .strip_prefix("nightly-")
                    .is_some_and(|host| !host.starts_with(|c: char| c.is_ascii_digit()))
        });
        ensure!(
            has_nightly,
            "the nightly toolchain is not installed (rustup has: {}); the eBPF crate needs it: \
             `rustup toolchain install nightly --component rust-src`",
            toolchains.split_whitespace().collect::<Vec<_>>().join(" ")
        );

        let version = output(env.command("rustc").args(["+nightly", "-vV"]))?;
        let field = |name: &str| {
            version
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .map(|value| value.trim().to_owned())
                .with_context(|| format!("`rustc +nightly -vV` printed no `{name}`:\n{version}"))
        };
        let release = field("release:")?;
        let llvm_version = field("LLVM version:")?;
        let llvm_major = leading_number(&llvm_version)
            .with_context(|| format!("cannot parse the nightly's LLVM version {llvm_version:?}"))?;

        let sysroot = output(
            env.command("rustc")
                .args(["+nightly", "--print", "sysroot"]),
        )?;
        let lib_dir = Path::new(sysroot.trim()).join("lib");
        let prefix = format!("libLLVM.so.{llvm_major}");
        let mut found = fs::read_dir(&lib_dir)
            .with_context(|| format!("cannot list the nightly's {}", lib_dir.display()))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with(&prefix))
            })
            .collect::<Vec<_>>();
        let libllvm = match (found.pop(), found.is_empty()) {
            (Some(libllvm), true) => libllvm,
            (None, _) => bail!(
                "no {prefix}* in {}: the nightly has no shared libLLVM to build bpf-linker \
                 against (reinstall it: `rustup toolchain install nightly --force`)",
                lib_dir.display()
            ),
            (Some(_), false) => bail!(
                "several {prefix}* in {}: cannot tell which one the nightly uses",
                lib_dir.display()
            ),
        };
        Ok(Self {
            release,
            llvm_version,
            llvm_major,
            libllvm,
        })
    }
}

/// Installs the nightly's `rust-src` component (for `-Z build-std=core`) if it is missing.
fn ensure_rust_src(env: &Env) -> Result<()> {
    let installed = output(env.command("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if installed.lines().any(|line| line.trim() == "rust-src") {
        println!("rust-src for nightly: present");
        return Ok(());
    }
    let mut cmd = env.command("rustup");
    cmd.args(["component", "add", "rust-src", "--toolchain", "nightly"]);
    println!(
        "rust-src for nightly: missing, installing (`{}`)",
        command_line(&cmd)
    );
    run(&mut cmd).context("cannot install rust-src for the nightly toolchain (needs network)")
}

/// Makes `<prefix>/lib` hold `libLLVM.so` and the library's soname, both linking to the nightly's
/// libLLVM, and removes links left dangling by a nightly update. Returns the prefix, which is
/// `~/.local/share/collapse-trace/llvm<major>`: bpf-linker's RUNPATH points into it for good.
fn ensure_llvm_prefix(env: &Env, nightly: &Nightly) -> Result<PathBuf> {
    let prefix = env.home.join(format!(
        ".local/share/collapse-trace/llvm{}",
        nightly.llvm_major
    ));
    let lib_dir = prefix.join("lib");
    let target = &nightly.libllvm;
    let soname = target
        .file_name()
        .context("libLLVM path has no file name")?;
    let links = [lib_dir.join("libLLVM.so"), lib_dir.join(soname)];
    let line = format!("libLLVM links in {}", lib_dir.display());

    let is_current = |link: &PathBuf| fs::read_link(link).is_ok_and(|to| to == *target);
    if links.iter().all(is_current) {
        println!("{line}: present (-> {})", target.display());
        return Ok(prefix);
    }
    println!("{line}: missing or stale, linking to {}", target.display());
    fs::create_dir_all(&lib_dir).with_context(|| format!("cannot create {}", lib_dir.display()))?;
    // Links into a toolchain that was updated or removed point nowhere now.
    let entries =
        fs::read_dir(&lib_dir).with_context(|| format!("cannot list {}", lib_dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.is_symlink() && !path.exists() {
            fs::remove_file(&path)
                .with_context(|| format!("cannot remove dangling {}", path.display()))?;
        }
    }
    for link in links.iter().filter(|link| !is_current(link)) {
        if link.symlink_metadata().is_ok() {
            fs::remove_file(link).with_context(|| format!("cannot remove {}", link.display()))?;
        }
        symlink(target, link)
            .with_context(|| format!("cannot link {} to {}", link.display(), target.display()))?;
    }
    Ok(prefix)
}

/// Makes sure the first `bpf-linker` on our `PATH` runs and links the nightly's LLVM major
/// version; otherwise builds one into `~/.cargo/bin` (about a minute).
fn ensure_bpf_linker(env: &Env, nightly: &Nightly, prefix: &Path) -> Result<()> {
    let major = nightly.llvm_major;
    let line = format!("bpf-linker with LLVM {major}");
    let problem = match check_bpf_linker(env, major) {
        Ok(found) => {
            println!("{line}: present ({found})");
            return Ok(());
        }
        Err(problem) => problem,
    };
    let mut cmd = env.cargo();
    cmd.args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
        .args(["--locked", "--force", "--no-default-features", "--features"])
        .arg(format!("llvm-{major}"))
        .env("LLVM_PREFIX", prefix);
    println!(
        "{line}: {problem:#}; installing (LLVM_PREFIX={} `{}`, about a minute)",
        prefix.display(),
        command_line(&cmd)
    );
    run(&mut cmd).with_context(|| {
        format!(
            "cannot build bpf-linker {BPF_LINKER_VERSION} against the nightly's LLVM {major} \
             (does that release have the `llvm-{major}` feature? is {}/lib/libLLVM.so valid?)",
            prefix.display()
        )
    })?;
    let found = check_bpf_linker(env, major)
        .context("bpf-linker was installed but still does not check out")?;
    println!("{line}: installed ({found})");
    Ok(())
}

/// Finds `bpf-linker`, checks with `ldd` that it loads a libLLVM of version `major` and that it
/// runs. Returns a description of it, or what is wrong.
fn check_bpf_linker(env: &Env, major: u32) -> Result<String> {
    let path = env
        .which("bpf-linker")
        .with_context(|| format!("not found on PATH or in {}", env.cargo_bin.display()))?;
    // `bpf-linker --version` prints only its own version, so ask the dynamic loader.
    let ldd = output(env.command("ldd").arg(&path))?;
    let Some((needed, resolved)) = ldd
        .lines()
        .filter_map(|line| line.trim().split_once("=>"))
        .find(|(needed, _)| needed.starts_with("libLLVM"))
    else {
        bail!(
            "{} does not load libLLVM dynamically, so its LLVM version is unknown",
            path.display()
        );
    };
    let (needed, resolved) = (needed.trim(), resolved.trim());
    ensure!(
        !resolved.starts_with("not found"),
        "{} needs {needed}, which is not found",
        path.display()
    );
    let linked_major = leading_number(needed.trim_start_matches(|c: char| !c.is_ascii_digit()));
    ensure!(
        linked_major == Some(major),
        "{} loads {needed}, not LLVM {major}",
        path.display()
    );
    let version = output(env.command(&path).arg("--version"))?;
    let resolved = resolved.split_whitespace().next().unwrap_or(resolved);
    Ok(format!(
        "{}, {}, loads {resolved}",
        path.display(),
        version.trim()
    ))
}

/// The number at the start of `text` ("22" in "22.1.4").
fn leading_number(text: &str) -> Option<u32> {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text[..end].parse().ok()
}

/// Debian packages the tests drive for real: tmux (the TUI in a real terminal), prometheus
/// (a real server scraping the daemon; it brings promtool), trace-cmd (a second, independent
/// capture that `report` must read the same), a font for `report --plot`'s labels, the
/// shells and man tools of tests/cli.rs, curl (the HTTPS client of tests/web.rs) and
/// python3-venv (the venv of [`ensure_python_tools`]).
pub const TEST_PACKAGES: &[&str] = &[
    "tmux",
    "prometheus",
    "trace-cmd",
    "fonts-dejavu-core",
    // tests/cli.rs: the completion scripts parse in each shell, the manual pages render.
    "zsh",
    "fish",
    "groff-base",
    "man-db",
    "curl",
    "python3-venv",
    // tests/web.rs: the Prometheus-operator manifests against the operator's schemas (npm).
    "nodejs",
];

/// Installs the missing ones of `packages` with apt-get (one `apt-get update` first).
pub fn ensure_debian_packages(env: &Env, packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            let status = output(env.command("dpkg-query").args(["-W", "-f=${Status}", p]));
            !status.is_ok_and(|s| s.trim() == "install ok installed")
        })
        .collect();
    if missing.is_empty() {
        println!(
            "Debian packages for the tests ({}): present",
            packages.join(", ")
        );
        return Ok(());
    }
    println!(
        "Debian packages for the tests: missing {}, installing with apt-get",
        missing.join(", ")
    );
    let mut update = env.command("apt-get");
    update.args(["update", "-q"]);
    run(&mut update).context("apt-get update failed (needs root and the Debian mirror)")?;
    let mut install = env.command("apt-get");
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing);
    run(&mut install).with_context(|| format!("installing {} failed", missing.join(" ")))
}

/// PyPI packages the tests run, with the version they were checked with: kubernetes-validate
/// checks deploy/kubernetes/ against the Kubernetes API schemas it ships (tests/web.rs).
pub const TEST_PYPI: &[(&str, &str)] = &[("kubernetes-validate", "1.37.0")];

/// npm packages the tests run, with the version they were checked with: the
/// Prometheus-operator CRD schemas (ServiceMonitor, PodMonitor) and a YAML parser for
/// tests/k8s/validate-operator.mjs (tests/web.rs).
pub const TEST_NPM: &[(&str, &str)] = &[
    ("@kubernetes-models/prometheus-operator", "6.0.0"),
    ("yaml", "2.9.1"),
];

/// Installs [`TEST_NPM`] under ~/.local/share/collapse-trace/node (never globally), once:
/// packages already there at their version are left as they are. npm itself comes from
/// Debian's `npm` package where no npm is installed (a NodeSource nodejs brings its own).
pub fn ensure_node_tools(env: &Env) -> Result<()> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let prefix = Path::new(&home).join(".local/share/collapse-trace/node");
    let missing: Vec<String> = TEST_NPM
        .iter()
        .filter(|(name, version)| {
            let pkg = prefix.join("node_modules").join(name).join("package.json");
            let text = std::fs::read_to_string(pkg).unwrap_or_default();
            !text.contains(&format!("\"version\": \"{version}\""))
        })
        .map(|(name, version)| format!("{name}@{version}"))
        .collect();
    if missing.is_empty() {
        println!("npm tools for the tests: present in {}", prefix.display());
        return Ok(());
    }
    if output(env.command("npm").arg("--version")).is_err() {
        ensure_debian_packages(env, &["npm"])?;
    }
    std::fs::create_dir_all(&prefix)?;
    println!("npm tools for the tests: installing {}", missing.join(", "));
    let mut install = env.command("npm");
    install
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&prefix)
        .args(&missing);
    run(&mut install).with_context(|| format!("npm install {} failed", missing.join(" ")))
}

/// Installs [`TEST_PYPI`] into a venv of our own, ~/.local/share/collapse-trace/venv (never
/// into the system's Python), once: a venv that already has them is left as it is.
pub fn ensure_python_tools(env: &Env) -> Result<()> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let venv = Path::new(&home).join(".local/share/collapse-trace/venv");
    let pip = venv.join("bin/pip");
    let missing: Vec<String> = TEST_PYPI
        .iter()
        .filter(|(name, version)| {
            let shown = output(env.command(&pip).args(["show", name]));
            !shown.is_ok_and(|s| s.lines().any(|l| l.trim() == format!("Version: {version}")))
        })
        .map(|(name, version)| format!("{name}=={version}"))
        .collect();
    if missing.is_empty() {
        println!("PyPI tools for the tests: present in {}", venv.display());
        return Ok(());
    }
    if !pip.exists() {
        std::fs::create_dir_all(venv.parent().unwrap())?;
        // Debian's python3 (package python3-venv), not whatever python3 is first on PATH.
        let python = if Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3"
        } else {
            "python3"
        };
        let mut mk = env.command(python);
        mk.arg("-m").arg("venv").arg(&venv);
        run(&mut mk).context("creating the test venv (Debian package python3-venv)")?;
    }
    println!(
        "PyPI tools for the tests: installing {}",
        missing.join(", ")
    );
    let mut install = env.command(&pip);
    install.args(["install", "-q"]).args(&missing);
    run(&mut install).with_context(|| format!("pip install {} failed", missing.join(" ")))
}
