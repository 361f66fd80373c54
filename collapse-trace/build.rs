//! Builds collapse-trace-ebpf with the nightly toolchain (`-Z build-std=core`, bpf-linker) and
//! leaves the object in OUT_DIR, where `include_bytes_aligned!` embeds it in the binary; sets
//! `COLLAPSE_TRACE_LONG_VERSION` (the git commit and a hash of that object) for `--version`.
//!
//! The nested cargo is the one aya-build 0.2 runs (same arguments, environment and target
//! directory), run here so that its output can be kept quiet: a build prints one line, and the
//! nested cargo's whole output only when it fails (on stderr, which cargo then shows). Compiler
//! warnings of a build that works are passed on as cargo warnings.

use std::{
    env,
    ffi::OsString,
    io::{BufRead as _, BufReader, Read as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, anyhow, bail};

/// The eBPF crate, a sibling directory of this one.
const EBPF_PACKAGE: &str = "collapse-trace-ebpf";
/// The toolchain the eBPF crate builds with (`rustup run nightly ...`).
const TOOLCHAIN: &str = "nightly";
/// What to do when the build fails for want of something.
const HINT: &str = "when rust-src or bpf-linker is missing, `cargo xtask setup` installs them";

fn main() -> anyhow::Result<()> {
    let manifest =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?);
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let commit = git_commit(&manifest);

    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    let object = if env::var_os("AYA_BUILD_SKIP")
        .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
    {
        println!("cargo:warning=AYA_BUILD_SKIP is set: not building the eBPF object");
        "not built (AYA_BUILD_SKIP)".to_owned()
    } else {
        let root = manifest
            .parent()
            .ok_or_else(|| anyhow!("collapse-trace has no parent directory"))?
            .join(EBPF_PACKAGE);
        build_ebpf(&root, &out_dir)
            .with_context(|| format!("building the eBPF object failed ({HINT})"))?
    };
    println!(
        "cargo:rustc-env=COLLAPSE_TRACE_LONG_VERSION={} (commit {commit}, eBPF object {object})",
        env::var("CARGO_PKG_VERSION").context("CARGO_PKG_VERSION not set")?
    );
    Ok(())
}

/// Builds the eBPF crate's binaries into OUT_DIR and describes the object that will be embedded
/// (`fnv1a64 <hash>, <nightly rustc version>`).
fn build_ebpf(root: &Path, out_dir: &Path) -> anyhow::Result<String> {
    // The build-dependency on the eBPF crate rebuilds us when its library changes; this covers
    // its binary (the programs) too.
    println!("cargo:rerun-if-changed={}", root.display());

    let endian = env::var("CARGO_CFG_TARGET_ENDIAN").context("CARGO_CFG_TARGET_ENDIAN not set")?;
    let target = match endian.as_str() {
        "little" => "bpfel-unknown-none",
        "big" => "bpfeb-unknown-none",
        other => bail!("unsupported endian={other}"),
    };
    let arch = env::var("CARGO_CFG_TARGET_ARCH").context("CARGO_CFG_TARGET_ARCH not set")?;
    let arch = if arch.starts_with("riscv64") {
        "riscv64".to_owned()
    } else {
        arch
    };

    let rustup = has_rustup();
    let tool = |program: &str| {
        if rustup {
            let mut cmd = Command::new("rustup");
            cmd.args(["run", TOOLCHAIN, program]);
            cmd
        } else {
            Command::new(program)
        }
    };
    let rustc = tool("rustc")
        .arg("-V")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "rustc unknown".to_owned());
    let how = if rustup {
        format!("with {TOOLCHAIN} ({rustc})")
    } else {
        format!("with the current toolchain ({rustc}; rustup not found)")
    };

    let mut cmd = tool("cargo");
    cmd.args([
        "build",
        "--package",
        EBPF_PACKAGE,
        "--bins",
        "--message-format=json",
        "--release",
        "--target",
        target,
    ]);
    cmd.args(["-Z", "build-std=core", "--features", ""]);
    let mut rustflags = OsString::new();
    for s in [
        &format!("--cfg=bpf_target_arch=\"{arch}\""),
        "\x1f-Cdebuginfo=2",
        "\x1f-Clink-arg=--btf",
    ] {
        rustflags.push(s);
    }
    cmd.env("CARGO_ENCODED_RUSTFLAGS", rustflags);
    // The outer build's compiler is not the nightly one.
    cmd.env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    // A target directory of its own (cargo would wait on the outer build's lock), the one
    // aya-build used, so existing builds stay warm.
    let target_dir = out_dir.join("aya-build").join("target").join(EBPF_PACKAGE);
    cmd.arg("--target-dir").arg(&target_dir);

    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to start {cmd:?}"))?;
    let mut stderr = child.stderr.take().context("no stderr pipe")?;
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let mut executables = Vec::new();
    let mut other_lines = Vec::new();
    let mut diagnostics = Vec::new();
    for line in BufReader::new(child.stdout.take().context("no stdout pipe")?).lines() {
        let line = line.context("reading the nested cargo's output")?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            other_lines.push(line);
            continue;
        };
        match message["reason"].as_str() {
            Some("compiler-artifact") => {
                if let (Some(name), Some(exe)) = (
                    message["target"]["name"].as_str(),
                    message["executable"].as_str(),
                ) {
                    executables.push((name.to_owned(), PathBuf::from(exe)));
                }
            }
            Some("compiler-message") => {
                let rendered = message["message"]["rendered"].as_str();
                diagnostics.extend(rendered.unwrap_or_default().lines().map(str::to_owned));
            }
            _ => {}
        }
    }
    let status = child
        .wait()
        .with_context(|| format!("failed to wait for {cmd:?}"))?;
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        // Cargo shows a failed build script's stderr in full: the nested build's output once,
        // without a `warning:` prefix on every line.
        let lines = diagnostics.iter().chain(&other_lines).map(String::as_str);
        for line in lines.chain(stderr.lines()) {
            eprintln!("{line}");
        }
        bail!("{cmd:?} failed ({status}); its output is above");
    }
    // Warnings of a build that worked.
    for line in &diagnostics {
        println!("cargo:warning={line}");
    }

    let mut hash = None;
    for (name, binary) in executables {
        let dst = out_dir.join(&name);
        std::fs::copy(&binary, &dst)
            .with_context(|| format!("failed to copy {} to {}", binary.display(), dst.display()))?;
        if name == "collapse-trace" {
            hash = Some(fnv1a64(
                &std::fs::read(&dst).with_context(|| format!("reading {}", dst.display()))?,
            ));
        }
    }
    let hash = hash.ok_or_else(|| anyhow!("the nested cargo built no `collapse-trace` binary"))?;
    // Cargo replays this line on builds that do not rerun the script: no timing in it.
    println!("cargo:warning=building the eBPF object {how} ... ok");
    Ok(format!("fnv1a64 {hash:016x}, {rustc}"))
}

/// Whether `rustup` is on PATH.
fn has_rustup() -> bool {
    env::var_os("PATH")
        .is_some_and(|path| env::split_paths(&path).any(|dir| dir.join("rustup").is_file()))
}

/// The commit this is built from: `COLLAPSE_TRACE_GIT_COMMIT` if set (for builds from a tarball),
/// else git's short hash of HEAD, else `unknown` (a checkout without .git, or no git).
fn git_commit(manifest: &Path) -> String {
    println!("cargo:rerun-if-env-changed=COLLAPSE_TRACE_GIT_COMMIT");
    if let Ok(commit) = env::var("COLLAPSE_TRACE_GIT_COMMIT")
        && !commit.is_empty()
    {
        return commit;
    }
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(manifest)
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return "unknown".to_owned();
    };
    // Rebuild when HEAD moves: HEAD itself, the branch it names, and packed refs. Paths that do
    // not exist are left out (cargo would rerun every time).
    let mut watch = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(branch);
    }
    for name in watch {
        if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", &name])
            && Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    commit
}

/// FNV-1a, 64 bits: a stable fingerprint of the embedded object (not a security measure).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
