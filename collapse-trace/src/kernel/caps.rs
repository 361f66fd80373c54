//! Privilege checks, so a missing capability is one clear message rather than an EPERM from
//! deep inside the loader.

use super::KernelError;

/// Capability numbers from include/uapi/linux/capability.h.
pub const CAP_SYS_ADMIN: u32 = 21;
/// Perf events and tracing.
pub const CAP_PERFMON: u32 = 38;
/// BPF programs and maps.
pub const CAP_BPF: u32 = 39;

/// The effective capability set of this process (from /proc/self/status).
pub fn effective() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Whether capability `cap` is in `set`.
pub fn has(set: u64, cap: u32) -> bool {
    set & (1u64 << cap) != 0
}

/// Names of the capabilities needed to trace that `set` lacks. CAP_SYS_ADMIN stands in for
/// both CAP_BPF and CAP_PERFMON, as in the kernel.
pub fn missing(set: u64) -> Vec<&'static str> {
    if has(set, CAP_SYS_ADMIN) {
        return vec![];
    }
    let mut m = vec![];
    if !has(set, CAP_BPF) {
        m.push("CAP_BPF");
    }
    if !has(set, CAP_PERFMON) {
        m.push("CAP_PERFMON");
    }
    m
}

/// Fails with [`KernelError::Privileges`] when this process cannot load and attach.
pub fn check_privileges() -> Result<(), KernelError> {
    let m = missing(effective());
    if m.is_empty() {
        Ok(())
    } else {
        Err(KernelError::Privileges(m.join(" and ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sys_admin_covers_both() {
        assert!(missing(1 << CAP_SYS_ADMIN).is_empty());
        assert!(missing((1 << CAP_BPF) | (1 << CAP_PERFMON)).is_empty());
        assert_eq!(missing(1 << CAP_BPF), ["CAP_PERFMON"]);
        assert_eq!(missing(0), ["CAP_BPF", "CAP_PERFMON"]);
    }
}
