//! The `collapse` and `uffd-holes` scenarios, and the file/mapping plumbing all scenarios share.

use std::fs::File;
use std::io;
use std::path::Path;
use std::ptr;

use anyhow::{Context, Result};

use super::ScenarioTally;
use super::tmpfs::TmpfsMount;
use super::uffd::{self, Armed};

/// A PMD-sized huge page on x86-64, arm64 (4K pages), riscv64 — the size collapse works on.
pub(super) const HPAGE: usize = 2 << 20;
/// Base page size assumed for touching; checked against sysconf at map time.
pub(super) const PAGE: usize = 4096;
/// Pages in one huge page.
pub(super) const NR_PAGES: usize = HPAGE / PAGE;

/// MADV_COLLAPSE (Linux 6.1+); spelled out because libc only has it for some targets.
const MADV_COLLAPSE: libc::c_int = 25;

/// A 2 MiB tmpfs file mapped MAP_SHARED at a 2 MiB-aligned address; unmapped and unlinked on
/// drop.
#[derive(Debug)]
pub(super) struct HugeFile<'m> {
    mount: &'m TmpfsMount,
    name: String,
    file: File,
    addr: *mut u8,
}

impl<'m> HugeFile<'m> {
    /// Creates `name` in the tmpfs, sizes it to 2 MiB and maps it aligned (no page is touched
    /// yet).
    pub(super) fn create(mount: &'m TmpfsMount, name: &str) -> Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        anyhow::ensure!(
            page == PAGE as libc::c_long,
            "base page size is {page}, these scenarios assume {PAGE}"
        );
        let file = mount.create(name)?;
        // From here on a partial HugeFile still unlinks the file on error.
        let mut me = HugeFile {
            mount,
            name: name.to_string(),
            file,
            addr: ptr::null_mut(),
        };
        me.file
            .set_len(HPAGE as u64)
            .with_context(|| format!("ftruncate({name}, 2 MiB) failed"))?;
        me.addr = map_aligned(&me.file)?;
        Ok(me)
    }

    /// Sets the file's length (the mapping stays 2 MiB): 0 leaves the whole range past EOF.
    pub(super) fn set_len(&self, len: u64) -> Result<()> {
        self.file
            .set_len(len)
            .with_context(|| format!("ftruncate({}, {len}) failed", self.name))
    }

    /// Start of the mapping.
    pub(super) fn addr(&self) -> *mut u8 {
        self.addr
    }

    /// Writes one byte into each page `i` (0..512) for which `which(i)` holds, faulting it in.
    pub(super) fn touch(&self, which: impl Fn(usize) -> bool) {
        for i in (0..NR_PAGES).filter(|&i| which(i)) {
            // SAFETY: `i * PAGE` < HPAGE, inside our live read/write MAP_SHARED mapping.
            unsafe { ptr::write_volatile(self.addr.add(i * PAGE), 1u8) };
        }
    }

    /// madvise(MADV_COLLAPSE) over the whole 2 MiB; Err holds the errno.
    pub(super) fn collapse(&self) -> std::result::Result<(), i32> {
        // SAFETY: the range is our own mapping; MADV_COLLAPSE does not change its contents.
        let rc = unsafe { libc::madvise(self.addr.cast(), HPAGE, MADV_COLLAPSE) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
        }
    }
}

impl Drop for HugeFile<'_> {
    fn drop(&mut self) {
        if !self.addr.is_null() {
            // SAFETY: we mapped exactly HPAGE bytes at `addr` and nothing else refers to it now.
            if unsafe { libc::munmap(self.addr.cast(), HPAGE) } != 0 {
                log::warn!("munmap: {}", io::Error::last_os_error());
            }
        }
        if let Err(e) = self.mount.unlink(&self.name) {
            log::warn!("{e:#}");
        }
    }
}

/// Maps `file` MAP_SHARED at a 2 MiB-aligned address: reserve 4 MiB PROT_NONE, put the file at
/// the aligned point inside with MAP_FIXED, and give back the slack.
fn map_aligned(file: &File) -> Result<*mut u8> {
    use std::os::fd::AsRawFd;
    let span = 2 * HPAGE;
    // SAFETY: anonymous PROT_NONE reservation at an address of the kernel's choice.
    let base = unsafe {
        libc::mmap(
            ptr::null_mut(),
            span,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error()).context("mmap(4 MiB PROT_NONE reservation) failed");
    }
    let base = base as usize;
    let aligned = (base + HPAGE - 1) & !(HPAGE - 1);
    // SAFETY: [aligned, aligned+HPAGE) lies inside our reservation, so MAP_FIXED replaces only
    // memory we own.
    let addr = unsafe {
        libc::mmap(
            aligned as *mut libc::c_void,
            HPAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_FIXED,
            file.as_raw_fd(),
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        let err = io::Error::last_os_error();
        // SAFETY: unmapping our own reservation.
        unsafe { libc::munmap(base as *mut libc::c_void, span) };
        return Err(err).context("mmap(MAP_SHARED|MAP_FIXED tmpfs file, 2 MiB) failed");
    }
    let head = aligned - base;
    let tail = base + span - (aligned + HPAGE);
    for (start, len) in [(base, head), (aligned + HPAGE, tail)] {
        if len == 0 {
            continue;
        }
        // SAFETY: the slack before and after the file mapping is still our PROT_NONE reservation.
        if unsafe { libc::munmap(start as *mut libc::c_void, len) } != 0 {
            let err = io::Error::last_os_error();
            // SAFETY: unmapping what we mapped (the whole reservation span, file part included).
            unsafe { libc::munmap(base as *mut libc::c_void, span) };
            return Err(err).context("munmap(reservation slack) failed");
        }
    }
    Ok(aligned as *mut u8)
}

/// Why MADV_COLLAPSE gave EINVAL on a tmpfs `huge=advise` mapping, as far as we can tell
/// without changing anything.
pub(super) fn einval_reason() -> String {
    let mut why = String::from(
        "MADV_COLLAPSE returned EINVAL on a huge=advise tmpfs mapping: this kernel cannot collapse \
         shmem here",
    );
    let thp = Path::new("/sys/kernel/mm/transparent_hugepage");
    if !thp.exists() {
        why.push_str(" (no /sys/kernel/mm/transparent_hugepage: kernel built without THP)");
    } else if let Ok(s) = std::fs::read_to_string(thp.join("shmem_enabled")) {
        if s.contains("[deny]") {
            why.push_str(" (shmem_enabled is [deny])");
        } else {
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            if status
                .lines()
                .any(|l| l.replace(' ', "") == "THP_enabled:\t0")
            {
                why.push_str(" (THP disabled for this process by prctl(PR_SET_THP_DISABLE))");
            } else {
                why.push_str(" (kernel older than 6.1, or THP for shmem not supported)");
            }
        }
    }
    why
}

/// Records a MADV_COLLAPSE outcome; on an EINVAL first try marks the scenario skipped and
/// returns false (stop), since every further try would fail the same way. Also false once a
/// signal asked the workload to stop.
pub(super) fn record_first_aware(
    st: &mut ScenarioTally,
    outcome: std::result::Result<(), i32>,
) -> bool {
    let first = st.calls == 0;
    st.record(outcome);
    if first && outcome == Err(libc::EINVAL) {
        st.skipped = Some(einval_reason());
        return false;
    }
    // A signal asked to stop: end after this try, the tally stays exact.
    super::stop_requested().is_none()
}

/// `collapse`: fully populated aligned files; MADV_COLLAPSE should succeed every time.
pub(super) fn collapse(mount: &TmpfsMount, iterations: u32, st: &mut ScenarioTally) -> Result<()> {
    for i in 0..iterations {
        let f = HugeFile::create(mount, &format!("collapse-{i}"))?;
        f.touch(|_| true);
        let ok = record_first_aware(st, f.collapse());
        super::hold(!ok || i + 1 == iterations, "collapse");
        if !ok {
            break;
        }
    }
    Ok(())
}

/// `anon`: a fully touched, 2 MiB-aligned private anonymous mapping: MADV_COLLAPSE succeeds
/// through the anonymous path (`mm_khugepaged_scan_pmd`, `mm_collapse_huge_page`).
pub(super) fn anon(iterations: u32, st: &mut ScenarioTally) -> Result<()> {
    for i in 0..iterations {
        let span = 2 * HPAGE;
        // SAFETY: a private anonymous mapping at an address of the kernel's choice.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                span,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error()).context("mmap(4 MiB anonymous) failed");
        }
        let aligned = ((base as usize + HPAGE - 1) & !(HPAGE - 1)) as *mut u8;
        for i in 0..NR_PAGES {
            // SAFETY: inside the 2 MiB-aligned half of our own read/write mapping.
            unsafe { ptr::write_volatile(aligned.add(i * PAGE), 1u8) };
        }
        // SAFETY: the range is our own mapping; MADV_COLLAPSE keeps its contents.
        let rc = unsafe { libc::madvise(aligned.cast(), HPAGE, MADV_COLLAPSE) };
        let outcome = if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
        };
        super::hold(i + 1 == iterations, "anon");
        // SAFETY: unmapping exactly what we mapped.
        unsafe { libc::munmap(base, span) };
        let first = st.calls == 0;
        st.record(outcome);
        if first && outcome == Err(libc::EINVAL) {
            st.skipped = Some(
                "MADV_COLLAPSE returned EINVAL on an anonymous mapping: THP is off for this \
                 process or kernel (transparent_hugepage/enabled = never?)"
                    .to_string(),
            );
            break;
        }
    }
    Ok(())
}

/// `uffd-holes`: 7 of 8 pages present and a MISSING-mode userfaultfd armed on the range, so
/// collapse must not fill the holes behind userspace's back: EBUSY (`exceed_none_pte`).
pub(super) fn uffd_holes(
    mount: &TmpfsMount,
    iterations: u32,
    st: &mut ScenarioTally,
) -> Result<()> {
    for i in 0..iterations {
        let f = HugeFile::create(mount, &format!("uffd-holes-{i}"))?;
        f.touch(|p| p % 8 != 7);
        // Declared after `f`, so dropped before it: the fd closes before the unmap.
        let _uffd = match uffd::arm_missing(f.addr() as usize, HPAGE)? {
            Armed::Ready { fd } => fd,
            Armed::Unavailable(why) => {
                st.skipped = Some(why);
                break;
            }
        };
        // No page of the range may be touched from here on: a hole fault would wait for a
        // userfaultfd reader that does not exist.
        let ok = record_first_aware(st, f.collapse());
        super::hold(!ok || i + 1 == iterations, "uffd-holes");
        if !ok {
            break;
        }
    }
    Ok(())
}
