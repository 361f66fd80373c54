//! A private tmpfs mounted with `huge=advise` on a fresh temporary directory.
//!
//! MADV_COLLAPSE on shmem needs THP allowed for that shmem; memfd and /dev/shm follow the global
//! `shmem_enabled` (often `never`), whereas our own mount carries its own `huge=` policy, so we
//! never have to touch the global sysfs settings.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// A private tmpfs, held by a directory fd only.
///
/// Right after mounting, the mount is detached (MNT_DETACH) and its directory removed: the
/// filesystem lives on, reachable only through our fd, and the kernel frees it once the fd and
/// the last mapping of it are gone. So nothing is left behind even if the process is killed
/// (a Drop guard alone would not cover SIGINT/SIGKILL).
#[derive(Debug)]
pub(super) struct TmpfsMount {
    dir: OwnedFd,
}

impl TmpfsMount {
    /// Makes a fresh directory under `parent`, mounts a tmpfs of `size` (e.g. "64m") with
    /// `huge=advise` on it, keeps an fd to it, and detaches and removes the mount point again.
    pub(super) fn new(parent: &Path, size: &str) -> Result<Self> {
        let dir = make_temp_dir(parent)?;
        // Until the mount point is gone, this guard unmounts (if mounted) and removes it on
        // every return path.
        let mut point = MountPoint {
            path: dir,
            mounted: false,
        };
        let target = path_cstring(&point.path)?;
        let data = CString::new(format!("size={size},huge=advise,mode=0700"))
            .context("tmpfs mount options contain a NUL byte")?;
        let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        // SAFETY: all pointers are valid NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                c"collapse-trace".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                flags,
                data.as_ptr().cast(),
            )
        };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if matches!(err.raw_os_error(), Some(libc::EPERM | libc::EACCES)) {
                return Err(NeedsPrivilege(format!(
                    "provoking collapses needs root (CAP_SYS_ADMIN) to mount a private tmpfs: \
                     mount(tmpfs, {}) failed: {err}",
                    point.path.display()
                ))
                .into());
            }
            bail!(
                "mount(tmpfs, {}, \"{}\") failed: {err}",
                point.path.display(),
                data.to_string_lossy()
            );
        }
        point.mounted = true;
        // SAFETY: valid NUL-terminated path; the returned fd is checked below.
        let fd = unsafe {
            libc::open(
                target.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error())
                .with_context(|| format!("open({}, O_PATH) failed", point.path.display()));
        }
        // SAFETY: a fresh fd from open() that nothing else owns.
        let dir = unsafe { OwnedFd::from_raw_fd(fd) };
        drop(point); // detach + rmdir; the filesystem stays alive through `dir`
        Ok(TmpfsMount { dir })
    }

    /// Creates `name` (O_EXCL) read-write in the tmpfs.
    pub(super) fn create(&self, name: &str) -> Result<File> {
        let cname = CString::new(name).context("file name contains a NUL byte")?;
        // SAFETY: valid dir fd and NUL-terminated name; the returned fd is checked below.
        let fd = unsafe {
            libc::openat(
                self.dir.as_raw_fd(),
                cname.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error())
                .with_context(|| format!("openat(tmpfs, {name}, O_CREAT|O_EXCL) failed"));
        }
        // SAFETY: a fresh fd from openat() that nothing else owns.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Removes `name` from the tmpfs.
    pub(super) fn unlink(&self, name: &str) -> Result<()> {
        let cname = CString::new(name).context("file name contains a NUL byte")?;
        // SAFETY: valid dir fd and NUL-terminated name.
        if unsafe { libc::unlinkat(self.dir.as_raw_fd(), cname.as_ptr(), 0) } != 0 {
            return Err(io::Error::last_os_error())
                .with_context(|| format!("unlinkat(tmpfs, {name}) failed"));
        }
        Ok(())
    }
}

/// The temporary mount point: unmounted (plain, then MNT_DETACH) and removed when dropped.
struct MountPoint {
    path: PathBuf,
    mounted: bool,
}

impl Drop for MountPoint {
    fn drop(&mut self) {
        let Ok(target) = path_cstring(&self.path) else {
            return;
        };
        if self.mounted {
            // Detach straight away: our own O_PATH fd (or a mapping) keeps the mount busy, and
            // a plain umount would fail with EBUSY for that very reason.
            // SAFETY: `target` is a valid NUL-terminated path.
            if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } != 0 {
                log::warn!(
                    "could not unmount {}: {}",
                    self.path.display(),
                    io::Error::last_os_error()
                );
                return; // rmdir of a live mount point would fail anyway
            }
        }
        if let Err(e) = std::fs::remove_dir(&self.path) {
            log::warn!("could not remove {}: {e}", self.path.display());
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

/// Not enough privilege for the workload (exit code 3, like the tracer's own privilege
/// errors).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NeedsPrivilege(pub String);
