//! tracefs: find (or mount) it, and read tracepoint `format` files
//! ([`crate::model::format`] parses them).
//!
//! The `format` file is the kernel's own description of a tracepoint record: every field's
//! offset and size, and in `print fmt` the `__print_symbolic` table that names each result
//! number. Both drift between kernels, so they are read at start rather than compiled in.

use std::{
    fs,
    path::{Path, PathBuf},
};

use thiserror::Error;

use crate::model::format::{EventFormat, FormatError, parse_format};

/// Where tracefs is usually mounted, in the order the kernel documentation prefers.
const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Problems with tracefs itself.
#[derive(Debug, Error)]
pub enum TracefsError {
    /// tracefs is not mounted and could not be mounted.
    #[error(
        "tracefs is not mounted at /sys/kernel/tracing and mounting it failed ({0}); \
         fix: run as root, or `mount -t tracefs nodev /sys/kernel/tracing`"
    )]
    NotMounted(std::io::Error),
    /// tracefs is there but this process may not read it.
    #[error(
        "tracefs at {0} is not readable by this user; fix: run as root, or add \
         CAP_DAC_READ_SEARCH to CAP_BPF and CAP_PERFMON"
    )]
    Unreadable(PathBuf),
    /// A `--tracefs` directory that does not look like tracefs.
    #[error("{0} has no events/ directory: it is not a tracefs mount")]
    NotTracefs(PathBuf),
}

/// A tracefs mount.
#[derive(Debug, Clone)]
pub struct Tracefs {
    root: PathBuf,
    /// True when this process mounted it (so `doctor` can say so).
    pub mounted_by_us: bool,
}

impl Tracefs {
    /// Finds the mounted tracefs; mounts it at /sys/kernel/tracing when it is not (we run as
    /// root anyway, and aya needs it to attach tracepoints). `root` overrides the search,
    /// for tests with hand-made format files.
    pub fn open(root: Option<&Path>) -> Result<Tracefs, TracefsError> {
        if let Some(root) = root {
            if !root.join("events").is_dir() {
                return Err(TracefsError::NotTracefs(root.to_path_buf()));
            }
            return Ok(Tracefs {
                root: root.to_path_buf(),
                mounted_by_us: false,
            });
        }
        if let Some(root) = Self::find() {
            return Ok(Tracefs {
                root,
                mounted_by_us: false,
            });
        }
        if let Some(root) = Self::find_unreadable() {
            return Err(TracefsError::Unreadable(root));
        }
        let target = Path::new(CANDIDATES[0]);
        mount_tracefs(target).map_err(TracefsError::NotMounted)?;
        log::info!("mounted tracefs at {}", target.display());
        Ok(Tracefs {
            root: target.to_path_buf(),
            mounted_by_us: true,
        })
    }

    /// A candidate directory that holds tracefs this process may not read (permission
    /// denied), for telling "unreadable" from "not mounted".
    pub fn find_unreadable() -> Option<PathBuf> {
        CANDIDATES.iter().map(PathBuf::from).find(|p| {
            std::fs::metadata(p.join("events"))
                .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
        })
    }

    /// The first candidate directory that holds a populated tracefs.
    pub fn find() -> Option<PathBuf> {
        CANDIDATES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.join("events").is_dir())
    }

    /// The mount point.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of one event.
    pub fn event_dir(&self, group: &str, name: &str) -> PathBuf {
        self.root.join("events").join(group).join(name)
    }

    /// Reads and parses an event's `format` file; `Ok(None)` when this kernel lacks the event.
    pub fn format(&self, group: &str, name: &str) -> Result<Option<EventFormat>, FormatError> {
        let path = self.event_dir(group, name).join("format");
        match fs::read_to_string(&path) {
            Ok(text) => parse_format(&text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FormatError::Read(path, e)),
        }
    }
}

fn mount_tracefs(target: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    let c = |s: &str| CString::new(s).expect("no NUL in constant");
    let target = CString::new(target.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe {
        libc::mount(
            c("nodev").as_ptr(),
            target.as_ptr(),
            c("tracefs").as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCAN_FILE: &str = include_str!("../../tests/data/mm_khugepaged_scan_file.format");

    #[test]
    fn missing_tracepoint_is_none() {
        let dir = std::env::temp_dir().join(format!("ct-tracefs-{}", std::process::id()));
        let ev = dir.join("events/huge_memory/mm_khugepaged_scan_file");
        fs::create_dir_all(&ev).unwrap();
        fs::write(ev.join("format"), SCAN_FILE).unwrap();
        let t = Tracefs::open(Some(&dir)).unwrap();
        assert!(
            t.format("huge_memory", "mm_khugepaged_scan_file")
                .unwrap()
                .is_some()
        );
        assert!(
            t.format("huge_memory", "mm_khugepaged_collapse_file")
                .unwrap()
                .is_none()
        );
        fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(
            Tracefs::open(Some(&dir)),
            Err(TracefsError::NotTracefs(_))
        ));
    }
}
