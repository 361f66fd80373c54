//! Where things are, and running child processes with a `PATH` that finds cargo-installed tools.

use std::{
    env,
    ffi::{OsStr, OsString},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, ensure};

/// The paths every task needs.
pub struct Env {
    /// The workspace root (the parent of this crate's directory).
    pub root: PathBuf,
    /// The user's home directory.
    pub home: PathBuf,
    /// Where `cargo install` puts binaries (`$CARGO_HOME/bin`, by default `~/.cargo/bin`).
    pub cargo_bin: PathBuf,
    /// `PATH` for child processes: [`Env::cargo_bin`] first, then the inherited `PATH`. CI may
    /// not have `~/.cargo/bin` on `PATH`, and the nested eBPF build must find bpf-linker there.
    path: OsString,
}

impl Env {
    /// Finds the workspace root, the home directory and cargo's bin directory.
    pub fn new() -> Result<Self> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("the xtask crate has no parent directory (the workspace root)")?
            .to_path_buf();
        let home = env::var_os("HOME")
            .filter(|home| !home.is_empty())
            .map(PathBuf::from)
            .context("HOME is not set: set it to your home directory")?;
        let cargo_home = env::var_os("CARGO_HOME")
            .filter(|dir| !dir.is_empty())
            .map_or_else(|| home.join(".cargo"), PathBuf::from);
        let cargo_bin = cargo_home.join("bin");
        let inherited = env::var_os("PATH").unwrap_or_default();
        let path =
            env::join_paths(std::iter::once(cargo_bin.clone()).chain(env::split_paths(&inherited)))
                .with_context(|| format!("cannot put {} on PATH", cargo_bin.display()))?;
        Ok(Self {
            root,
            home,
            cargo_bin,
            path,
        })
    }

    /// A command for `program` (looked up in our `PATH`), run in the workspace root.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("PATH", &self.path).current_dir(&self.root);
        cmd
    }

    /// A `cargo` command, run in the workspace root.
    pub fn cargo(&self) -> Command {
        self.command("cargo")
    }

    /// The first executable file called `name` in our `PATH`.
    pub fn which(&self, name: &str) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt as _;
        env::split_paths(&self.path)
            .map(|dir| dir.join(name))
            .find(|file| {
                file.metadata()
                    .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
            })
    }
}

/// `cmd` as a shell-like command line, for messages.
pub fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|arg| arg.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` with inherited stdio; fails unless it exits successfully.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("failed to start `{}`", command_line(cmd)))?;
    ensure!(
        status.success(),
        "`{}` failed ({status})",
        command_line(cmd)
    );
    Ok(())
}

/// Runs `cmd` and returns its stdout; fails (with its stderr) unless it exits successfully.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("failed to start `{}`", command_line(cmd)))?;
    ensure!(
        out.status.success(),
        "`{}` failed ({}): {}",
        command_line(cmd),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8(out.stdout)
        .with_context(|| format!("`{}` printed non-UTF-8 output", command_line(cmd)))
}
