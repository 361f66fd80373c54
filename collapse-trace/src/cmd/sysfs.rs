//! The THP settings of this machine, read from sysfs at run time (the model only takes the
//! values: it never reads a file).

use std::path::Path;

use crate::model::{aggregate::Aggregate, attempts::Clock, outcome::Knobs};

/// Where the THP settings live.
pub const THP_DIR: &str = "/sys/kernel/mm/transparent_hugepage";

/// A number from a sysfs file, `None` when missing or not a number.
pub fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// khugepaged's `max_ptes_*` knobs, as set now.
pub fn knobs() -> Knobs {
    let k = Path::new(THP_DIR).join("khugepaged");
    let get = |name: &str| read_u64(&k.join(name)).and_then(|v| u32::try_from(v).ok());
    Knobs {
        max_ptes_none: get("max_ptes_none"),
        max_ptes_swap: get("max_ptes_swap"),
        max_ptes_shared: get("max_ptes_shared"),
    }
}

/// Tells a core that collects live which clock its events carry and this machine's knobs.
pub fn prime(agg: &mut Aggregate, precise_time: bool) {
    agg.attempts.clock = if precise_time {
        Clock::Precise
    } else {
        Clock::Tick
    };
    agg.attempts.knobs = knobs();
}

/// This machine's kernel release (`uname -r`), empty when unreadable.
pub fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// /proc/vmstat's `thp_*` counters and khugepaged's numeric files, read now (missing files
/// are left out).
pub fn system_context() -> crate::model::system::SystemContext {
    let vmstat = std::fs::read_to_string("/proc/vmstat").unwrap_or_default();
    let mut khugepaged = Vec::new();
    if let Ok(dir) = std::fs::read_dir(Path::new(THP_DIR).join("khugepaged")) {
        let mut names: Vec<_> = dir.flatten().map(|e| e.path()).collect();
        names.sort();
        for p in names {
            if let (Some(v), Some(name)) = (read_u64(&p), p.file_name()) {
                khugepaged.push((name.to_string_lossy().into_owned(), v));
            }
        }
    }
    crate::model::system::SystemContext {
        vmstat_thp: crate::model::system::parse_vmstat_thp(&vmstat),
        khugepaged,
    }
}
