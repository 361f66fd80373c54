//! Just enough userfaultfd to arm MISSING mode on a shmem range.
//!
//! The libc crate has SYS_userfaultfd but none of the ioctl structs or numbers, so they are
//! spelled out here from include/uapi/linux/userfaultfd.h.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{Context, Result};

/// `struct uffdio_api`.
#[repr(C)]
#[derive(Debug, Default)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

/// `struct uffdio_range`.
#[repr(C)]
#[derive(Debug, Default)]
struct UffdioRange {
    start: u64,
    len: u64,
}

/// `struct uffdio_register`.
#[repr(C)]
#[derive(Debug, Default)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

const _: () = assert!(size_of::<UffdioApi>() == 24);
const _: () = assert!(size_of::<UffdioRegister>() == 32);

const UFFD_API: u64 = 0xAA;
const UFFDIO: u64 = 0xAA;
const UFFD_FEATURE_MISSING_SHMEM: u64 = 1 << 5;
const UFFDIO_REGISTER_MODE_MISSING: u64 = 1 << 0;

/// `_IOWR(type, nr, size)`. Read|write is 3 << 30 with the common encoding (x86, arm, riscv…)
/// and 6 << 29 on powerpc/mips/sparc: the same bits, so one formula serves all.
const fn iowr(ty: u64, nr: u64, size: usize) -> u64 {
    (3 << 30) | ((size as u64) << 16) | (ty << 8) | nr
}

const UFFDIO_API: u64 = iowr(UFFDIO, 0x3F, size_of::<UffdioApi>());
const UFFDIO_REGISTER: u64 = iowr(UFFDIO, 0x00, size_of::<UffdioRegister>());

const _: () = assert!(UFFDIO_API == 0xC018_AA3F);
const _: () = assert!(UFFDIO_REGISTER == 0xC020_AA00);

/// Outcome of arming a userfaultfd.
#[derive(Debug)]
pub(super) enum Armed {
    /// Registered; closing the fd (dropping this) disarms it.
    Ready {
        /// Held only to keep the registration alive.
        fd: OwnedFd,
    },
    /// The kernel cannot do it here; the string says why.
    Unavailable(String),
}

/// Creates a userfaultfd and registers `[addr, addr+len)` in MISSING mode (shmem feature on).
pub(super) fn arm_missing(addr: usize, len: usize) -> Result<Armed> {
    let flags = libc::O_CLOEXEC | libc::O_NONBLOCK;
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, flags) };
    if fd < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENOSYS) => Ok(Armed::Unavailable(format!(
                "userfaultfd(2) is not available on this kernel ({err})"
            ))),
            Some(libc::EPERM) => Ok(Armed::Unavailable(format!(
                "userfaultfd(2) is not permitted ({err}; see vm.unprivileged_userfaultfd or \
                 a seccomp filter)"
            ))),
            _ => Err(err).context("userfaultfd(O_CLOEXEC|O_NONBLOCK) failed"),
        };
    }
    let fd = i32::try_from(fd).context("userfaultfd returned an out-of-range fd")?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };

    let mut api = UffdioApi {
        api: UFFD_API,
        features: UFFD_FEATURE_MISSING_SHMEM,
        ioctls: 0,
    };
    // SAFETY: `api` is a live, correctly laid out uffdio_api the kernel reads and writes.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_API as _, &raw mut api) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            // The kernel rejects feature bits it does not know.
            Some(libc::EINVAL) => Ok(Armed::Unavailable(format!(
                "UFFDIO_API with UFFD_FEATURE_MISSING_SHMEM refused ({err}): no userfaultfd on shmem"
            ))),
            _ => Err(err).context("ioctl(UFFDIO_API, UFFD_FEATURE_MISSING_SHMEM) failed"),
        };
    }

    let mut reg = UffdioRegister {
        range: UffdioRange {
            start: addr as u64,
            len: len as u64,
        },
        mode: UFFDIO_REGISTER_MODE_MISSING,
        ioctls: 0,
    };
    // SAFETY: `reg` is a live, correctly laid out uffdio_register the kernel reads and writes.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_REGISTER as _, &raw mut reg) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::EINVAL) => Ok(Armed::Unavailable(format!(
                "UFFDIO_REGISTER (MISSING) on a tmpfs mapping refused ({err}): \
                 no userfaultfd support for shmem"
            ))),
            _ => Err(err).context("ioctl(UFFDIO_REGISTER, MODE_MISSING) failed"),
        };
    }
    Ok(Armed::Ready { fd })
}
