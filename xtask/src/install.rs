//! `cargo xtask install`: the release binary, its manual pages, shell completions, the systemd
//! unit and the documentation, under a prefix (and a staging `--destdir` for packaging).
//!
//! Layout, relative to `DESTDIR/PREFIX` (PREFIX `/usr/local` by default):
//!
//! | file | where |
//! |---|---|
//! | the binary | `bin/collapse-trace` |
//! | manual pages | `share/man/man1/collapse-trace.1`, `collapse-trace-COMMAND.1` |
//! | bash completion | `share/bash-completion/completions/collapse-trace` |
//! | zsh completion | `share/zsh/site-functions/_collapse-trace` |
//! | fish completion | `share/fish/vendor_completions.d/collapse-trace.fish` |
//! | systemd unit | `lib/systemd/system/collapse-trace.service` (`ExecStart` names `PREFIX/bin`) |
//! | documentation | `share/doc/collapse-trace/` (README.md, docs/*.md) |
//!
//! The unit goes under the prefix, not to /etc: `/usr/local/lib/systemd/system` and
//! `/usr/lib/systemd/system` are both on systemd's unit path, and /etc stays the
//! administrator's. Nothing is enabled or started.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, ensure};

use crate::env::{Env, command_line, run};

/// Arguments of `cargo xtask install`.
#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// The installation prefix: files go to PREFIX/bin, PREFIX/share, PREFIX/lib/systemd/system.
    #[arg(long, default_value = "/usr/local", value_name = "PREFIX")]
    prefix: PathBuf,
    /// Stage the files under DIR (DIR/PREFIX/...) for packaging; paths inside the files still
    /// name PREFIX.
    #[arg(long, value_name = "DIR")]
    destdir: Option<PathBuf>,
    /// Install this collapse-trace binary instead of building target/release/collapse-trace
    /// (its manual pages and completions are made by running it).
    #[arg(long, value_name = "FILE")]
    binary: Option<PathBuf>,
}

/// Builds the release binary and installs every file (the caller has run `setup`).
pub fn install(env: &Env, args: &InstallArgs) -> Result<()> {
    ensure!(
        args.prefix.is_absolute(),
        "--prefix must be an absolute path, not {}",
        args.prefix.display()
    );
    let binary = match &args.binary {
        Some(binary) => binary.clone(),
        None => {
            run(env
                .cargo()
                .args(["build", "--release", "-p", "collapse-trace"]))?;
            env.root.join("target/release/collapse-trace")
        }
    };
    let root = match &args.destdir {
        // PREFIX is absolute: strip its `/` so that it lands under DESTDIR.
        Some(destdir) => destdir.join(args.prefix.strip_prefix("/").unwrap_or(&args.prefix)),
        None => args.prefix.clone(),
    };

    install_file(
        binary.display(),
        &fs::read(&binary)?,
        &root.join("bin/collapse-trace"),
        0o755,
    )?;

    let staging = std::env::temp_dir().join(format!("collapse-trace-man.{}", std::process::id()));
    run(Command::new(&binary).arg("man").arg("--dir").arg(&staging))?;
    let mut pages: Vec<PathBuf> = fs::read_dir(&staging)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    pages.sort();
    for page in pages {
        let name = page.file_name().context("a page without a name")?;
        install_file(
            page.display(),
            &fs::read(&page)?,
            &root.join("share/man/man1").join(name),
            0o644,
        )?;
    }
    fs::remove_dir_all(&staging).with_context(|| format!("cannot remove {}", staging.display()))?;

    for (shell, path) in [
        ("bash", "share/bash-completion/completions/collapse-trace"),
        ("zsh", "share/zsh/site-functions/_collapse-trace"),
        (
            "fish",
            "share/fish/vendor_completions.d/collapse-trace.fish",
        ),
    ] {
        let mut cmd = Command::new(&binary);
        cmd.args(["completions", shell]);
        let out = cmd
            .output()
            .with_context(|| format!("cannot run `{}`", command_line(&cmd)))?;
        ensure!(
            out.status.success(),
            "`{}` failed ({})",
            command_line(&cmd),
            out.status
        );
        install_file(
            format!("`{}`", command_line(&cmd)),
            &out.stdout,
            &root.join(path),
            0o644,
        )?;
    }

    let unit_src = env.root.join("deploy/systemd/collapse-trace.service");
    let unit = unit_for_prefix(&fs::read_to_string(&unit_src)?, &args.prefix)?;
    install_file(
        unit_src.display(),
        unit.as_bytes(),
        &root.join("lib/systemd/system/collapse-trace.service"),
        0o644,
    )?;

    let doc = root.join("share/doc/collapse-trace");
    let readme = env.root.join("README.md");
    install_file(
        readme.display(),
        &fs::read(&readme)?,
        &doc.join("README.md"),
        0o644,
    )?;
    let mut docs: Vec<PathBuf> = fs::read_dir(env.root.join("docs"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    docs.sort();
    for file in docs
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
    {
        let name = file.file_name().context("a doc without a name")?;
        install_file(
            file.display(),
            &fs::read(file)?,
            &doc.join("docs").join(name),
            0o644,
        )?;
    }

    println!(
        "installed under {}; to run the daemon: systemctl daemon-reload && systemctl enable --now collapse-trace",
        root.display()
    );
    if args.destdir.is_none() && !matches!(args.prefix.to_str(), Some("/usr" | "/usr/local")) {
        println!(
            "note: systemd does not look in {}/lib/systemd/system: link the unit into /etc/systemd/system",
            args.prefix.display()
        );
    }
    Ok(())
}

/// The unit with `ExecStart` naming `prefix/bin/collapse-trace` and `Documentation` the
/// installed manual page and README.
fn unit_for_prefix(unit: &str, prefix: &Path) -> Result<String> {
    let installed = "/usr/local/bin/collapse-trace";
    ensure!(
        unit.contains(&format!("ExecStart={installed} ")),
        "deploy/systemd/collapse-trace.service has no `ExecStart={installed} ...` line"
    );
    let prefix = prefix.display().to_string();
    let prefix = prefix.trim_end_matches('/');
    Ok(unit
        .lines()
        .map(|line| {
            if let Some(rest) = line.strip_prefix(&format!("ExecStart={installed}")) {
                format!("ExecStart={prefix}/bin/collapse-trace{rest}")
            } else if line.starts_with("Documentation=") {
                format!(
                    "Documentation=man:collapse-trace(1) file://{prefix}/share/doc/collapse-trace/README.md"
                )
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n")
}

/// Writes `bytes` (made from `from`) to `to` with `mode`: through a temporary file renamed over
/// `to`, so that a running binary is replaced, not rewritten in place.
fn install_file(from: impl std::fmt::Display, bytes: &[u8], to: &Path, mode: u32) -> Result<()> {
    let dir = to.parent().context("a destination without a directory")?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = to.file_name().context("a destination without a name")?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, to)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), to.display()))?;
    println!("install: {from} -> {}", to.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_the_prefix() {
        let unit = "[Unit]\nDocumentation=file:///x\n[Service]\nExecStart=/usr/local/bin/collapse-trace serve --listen 127.0.0.1:9867\n";
        let got = unit_for_prefix(unit, Path::new("/usr/")).unwrap();
        assert_eq!(
            got,
            "[Unit]\nDocumentation=man:collapse-trace(1) file:///usr/share/doc/collapse-trace/README.md\n[Service]\nExecStart=/usr/bin/collapse-trace serve --listen 127.0.0.1:9867\n"
        );
        assert!(unit_for_prefix("[Service]\nExecStart=/bin/true\n", Path::new("/usr")).is_err());
    }
}
