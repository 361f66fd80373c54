//! A private tmpfs mounted with `huge=advise` on a fresh temporary directory.
//!
//! MADV_COLLAPSE on shmem needs THP allowed for that shmem; memfd and /dev/shm follow the global
//! `shmem_enabled` (often `never`), whereas our own mount carries its own `huge=` policy, so we
//! never have to touch the global sysfs settings.

use std::ffi::{CString, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// A mounted private tmpfs; unmounts and removes its directory when dropped (also on unwind).
#[derive(Debug)]
pub(super) struct TmpfsMount {
    dir: PathBuf,
    mounted: bool,
}

impl TmpfsMount {
    /// Makes a fresh directory under `parent` and mounts a tmpfs of `size` (e.g. "64m") with
    /// `huge=advise` on it.
    pub(super) fn new(parent: &Path, size: &str) -> Result<Self> {
        let dir = make_temp_dir(parent)?;
        // From here on the guard owns the directory, so an error below still removes it.
        let mut guard = TmpfsMount {
            dir,
            mounted: false,
        };
        let target = path_cstring(&guard.dir)?;
        let source = c"collapse-trace";
        let fstype = c"tmpfs";
        let data = CString::new(format!("size={size},huge=advise,mode=0700"))
            .context("tmpfs mount options contain a NUL byte")?;
        let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        // SAFETY: all pointers are valid NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                flags,
                data.as_ptr().cast(),
            )
        };
        if rc != 0 {
            let err = io::Error::last_os_error();
            let hint = match err.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => {
                    " (provoking collapses mounts a private tmpfs: run as root / with CAP_SYS_ADMIN)"
                }
                _ => "",
            };
            bail!(
                "mount(tmpfs, {}, \"{}\") failed: {err}{hint}",
                guard.dir.display(),
                data.to_string_lossy()
            );
        }
        guard.mounted = true;
        Ok(guard)
    }

    /// The mount point.
    pub(super) fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let Ok(target) = path_cstring(&self.dir) else {
            return;
        };
        if self.mounted {
            // SAFETY: `target` is a valid NUL-terminated path.
            let rc = unsafe { libc::umount2(target.as_ptr(), 0) };
            if rc != 0 {
                // Something still holds the mount (e.g. a mapping leaked on an error path):
                // detach it lazily so the directory can go; the kernel frees it once unused.
                let first = io::Error::last_os_error();
                // SAFETY: as above.
                let rc = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
                if rc != 0 {
                    log::warn!(
                        "could not unmount {}: {first}; lazy unmount: {}",
                        self.dir.display(),
                        io::Error::last_os_error()
                    );
                    return; // rmdir of a live mount point would fail anyway
                }
            }
        }
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            log::warn!("could not remove {}: {e}", self.dir.display());
        }
    }
}

/// mkdtemp(3) under `parent`.
fn make_temp_dir(parent: &Path) -> Result<PathBuf> {
    let mut template = parent.as_os_str().as_bytes().to_vec();
    template.extend_from_slice(b"/collapse-trace-provoke.XXXXXX");
    let template = CString::new(template).context("temp directory path contains a NUL byte")?;
    let mut buf = template.into_bytes_with_nul();
    // SAFETY: `buf` is a writable NUL-terminated buffer; mkdtemp only rewrites the XXXXXX.
    let p = unsafe { libc::mkdtemp(buf.as_mut_ptr().cast()) };
    if p.is_null() {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("mkdtemp under {} failed", parent.display()));
    }
    buf.pop(); // the NUL
    Ok(PathBuf::from(OsString::from_vec(buf)))
}

fn path_cstring(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .with_context(|| format!("path {} contains a NUL byte", p.display()))
}
