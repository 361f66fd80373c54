//! What a user without enough privilege sees: the documented exit code 3 and a message that
//! names the missing privilege, never a blamed kernel (exit 4) or a bare failure (exit 1).
//! Run as root, dropping to an unprivileged user (with and without CAP_BPF + CAP_PERFMON)
//! through util-linux's setpriv.

mod common;

use std::process::Command;

use common::{BIN, require_root};

/// Runs the binary as user nobody with `caps` (e.g. "+bpf,+perfmon") as ambient capabilities.
fn as_nobody(caps: Option<&str>, args: &[&str]) -> (Option<i32>, String, String) {
    // A copy the unprivileged user can execute, whatever the build directory's modes are.
    let bin = std::env::temp_dir().join(format!("ct-priv-{}", std::process::id()));
    std::fs::copy(BIN, &bin).unwrap();
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
    if let Some(c) = caps {
        cmd.arg(format!("--inh-caps={c}"))
            .arg(format!("--ambient-caps={c}"));
    }
    let out = cmd
        .arg(&bin)
        .args(args)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("setpriv (util-linux)");
    let _ = std::fs::remove_file(&bin);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn missing_privilege_is_exit_3_with_the_reason() {
    require_root();
    let (code, _, err) = as_nobody(None, &["provoke", "collapse", "-n", "1"]);
    assert_eq!(code, Some(3), "provoke: {err}");
    assert!(err.contains("needs root (CAP_SYS_ADMIN)"), "{err}");

    let (code, out, err) = as_nobody(None, &["doctor"]);
    assert_eq!(code, Some(3), "doctor: {out}{err}");
    assert!(err.contains("CAP_BPF and CAP_PERFMON"), "{err}");

    let (code, _, err) = as_nobody(None, &["stat", "-d", "1s"]);
    assert_eq!(code, Some(3), "stat: {err}");

    // CAP_BPF + CAP_PERFMON but no CAP_DAC_READ_SEARCH: tracefs is mounted, only unreadable.
    let caps = Some("+bpf,+perfmon");
    let (code, _, err) = as_nobody(caps, &["stat", "-d", "1s"]);
    assert_eq!(code, Some(3), "stat with CAP_BPF+CAP_PERFMON: {err}");
    assert!(err.contains("not readable by this user"), "{err}");
    let (code, out, err) = as_nobody(caps, &["doctor"]);
    assert_eq!(code, Some(3), "doctor with CAP_BPF+CAP_PERFMON: {out}{err}");
    assert!(out.contains("tracefs     UNREADABLE"), "{out}");
    assert!(!out.contains("not mounted"), "{out}");
}
