//! `khugepaged`: a workload the khugepaged kernel thread collapses, not the process itself.
//!
//! An 8 MiB file on the private `huge=advise` tmpfs, mapped MAP_SHARED at a 2 MiB-aligned
//! address and fully touched, then MADV_HUGEPAGE; MADV_HUGEPAGE on a shmem range that was
//! already faulted in does not register the process with khugepaged (6.18 checks the VMA's
//! old flags), so a touched anonymous MADV_HUGEPAGE range registers it. One MADV_COLLAPSE on a
//! third, anonymous range comes first: its events are the process's own (a tracer's ground
//! truth can learn the process's `mm` from them). Then the workload waits, up to the given
//! time, until the file range is mapped by huge pages (`ShmemPmdMapped` in
//! /proc/self/smaps_rollup).

use std::io;
use std::os::fd::AsRawFd as _;
use std::ptr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::ScenarioTally;
use super::scenarios::{HPAGE, PAGE};
use super::tmpfs::TmpfsMount;

/// The file range khugepaged is to collapse.
pub(super) const FILE_BYTES: usize = 4 * HPAGE;

/// The default file name: 62 bytes, longer than the dentry's inline name (40 bytes).
pub const DEFAULT_FILE_NAME: &str =
    "database-shared-buffer-segment-000123-primary-khugepaged-t.dat";

/// What the workload tells the caller, beyond the tally.
pub(super) fn khugepaged(
    mount: &TmpfsMount,
    name: &str,
    wait: Duration,
    st: &mut ScenarioTally,
) -> Result<()> {
    // 1. The marker: one MADV_COLLAPSE of our own, on an anonymous range.
    let marker = Mapping::anon(2 * HPAGE)?;
    let m = marker.aligned(HPAGE);
    touch(m, HPAGE);
    // SAFETY: our own mapping.
    let rc = unsafe { libc::madvise(m.cast(), HPAGE, 25) };
    st.record(if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
    });

    // 2. The file, touched, then MADV_HUGEPAGE.
    let file = mount.create(name)?;
    file.set_len(FILE_BYTES as u64)
        .with_context(|| format!("ftruncate({name}) failed"))?;
    let reserve = Mapping::reserve(FILE_BYTES + HPAGE)?;
    let at = reserve.aligned(HPAGE);
    // SAFETY: [at, at + FILE_BYTES) lies inside our reservation.
    let addr = unsafe {
        libc::mmap(
            at.cast(),
            FILE_BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_FIXED,
            file.as_raw_fd(),
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error()).context("mmap(MAP_SHARED|MAP_FIXED tmpfs file)");
    }
    touch(at, FILE_BYTES);
    // SAFETY: our own mapping.
    if unsafe { libc::madvise(at.cast(), FILE_BYTES, libc::MADV_HUGEPAGE) } != 0 {
        return Err(io::Error::last_os_error()).context("madvise(file, MADV_HUGEPAGE)");
    }

    // 3. An anonymous MADV_HUGEPAGE range: registers the process with khugepaged.
    let anon = Mapping::anon(2 * HPAGE)?;
    let a = anon.aligned(HPAGE);
    touch(a, HPAGE);
    // SAFETY: our own mapping.
    if unsafe { libc::madvise(a.cast(), HPAGE, libc::MADV_HUGEPAGE) } != 0 {
        return Err(io::Error::last_os_error()).context("madvise(anon, MADV_HUGEPAGE)");
    }

    // 4. Wait for khugepaged.
    let start = Instant::now();
    let want_kb = (FILE_BYTES / 1024) as u64;
    loop {
        // A collapsed range is mapped by a huge page at its next fault (khugepaged retracts
        // the old page tables): read one byte of each 2 MiB.
        for i in (0..FILE_BYTES).step_by(HPAGE) {
            // SAFETY: inside our read/write mapping.
            unsafe { ptr::read_volatile(at.add(i)) };
        }
        if shmem_pmd_mapped_kb() >= want_kb {
            break;
        }
        if start.elapsed() >= wait || super::stop_requested().is_some() {
            st.skipped = Some(format!(
                "khugepaged did not collapse the {} MiB file range within {} s (ShmemPmdMapped \
                 {} kB of {want_kb})",
                FILE_BYTES >> 20,
                wait.as_secs(),
                shmem_pmd_mapped_kb()
            ));
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // SAFETY: unmapping the file mapping we made (the reservation goes with `reserve`).
    unsafe { libc::munmap(at.cast(), FILE_BYTES) };
    drop(file);
    mount.unlink(name)?;
    Ok(())
}

/// Writes one byte per page.
fn touch(p: *mut u8, len: usize) {
    for i in (0..len).step_by(PAGE) {
        // SAFETY: inside a read/write mapping of ours.
        unsafe { ptr::write_volatile(p.add(i), 1u8) };
    }
}

/// `ShmemPmdMapped` of this process, kB.
fn shmem_pmd_mapped_kb() -> u64 {
    std::fs::read_to_string("/proc/self/smaps_rollup")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("ShmemPmdMapped:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// A mapping of ours, unmapped on drop.
struct Mapping {
    base: *mut u8,
    len: usize,
}

impl Mapping {
    fn map(len: usize, prot: libc::c_int, flags: libc::c_int) -> Result<Mapping> {
        // SAFETY: an anonymous mapping at an address of the kernel's choice.
        let base = unsafe { libc::mmap(ptr::null_mut(), len, prot, flags, -1, 0) };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error()).context("mmap(anonymous)");
        }
        Ok(Mapping {
            base: base.cast(),
            len,
        })
    }

    fn anon(len: usize) -> Result<Mapping> {
        Mapping::map(
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        )
    }

    fn reserve(len: usize) -> Result<Mapping> {
        Mapping::map(
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
        )
    }

    /// The first address in the mapping aligned to `align`.
    fn aligned(&self, align: usize) -> *mut u8 {
        (((self.base as usize) + align - 1) & !(align - 1)) as *mut u8
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what we mapped (MAP_FIXED mappings inside go too).
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}
