//! An aya `EbpfLoader` without the kernel BTF parse that aya 0.14's `EbpfLoader::new` does
//! and that [`super::probes`] throws away.
//!
//! `EbpfLoader::new` reads and parses /sys/kernel/btf/vmlinux (~5 MiB) into a copy that it
//! keeps private, so that it cannot be reused; `attach` needs a parsed copy of its own for
//! the BTF-typed programs. That first parse was about a third of every start (20-30 ms of
//! 75-90 here). aya reworked it after the line this project builds with (aya-rs/aya#1172,
//! #1639, #1644), so until then the loader is made on a short-lived thread that cannot open
//! files: its parse fails at once, and the loader comes back with no BTF, exactly what
//! `EbpfLoader::btf(None)` makes of it. The filter is the thread's own (seccomp filters are
//! per thread without `SECCOMP_FILTER_FLAG_TSYNC`) and ends with it; where it cannot be
//! installed the loader is made the ordinary way.

use aya::EbpfLoader;

/// A loader with no BTF, made without parsing the kernel's.
pub fn loader_without_btf() -> EbpfLoader<'static> {
    let make = |deny: bool| {
        if deny && let Err(e) = deny_opening_files() {
            log::debug!("no seccomp filter for the loader's thread ({e}); aya parses BTF twice");
        }
        let mut loader = EbpfLoader::new();
        loader.btf(None);
        loader
    };
    std::thread::Builder::new()
        .name("loader".into())
        .spawn(move || make(true))
        .ok()
        .and_then(|t| t.join().ok())
        .unwrap_or_else(|| make(false))
}

/// Makes every `openat(2)` of the calling thread fail with ENOENT, for the rest of its life.
#[cfg(target_arch = "x86_64")]
fn deny_opening_files() -> std::io::Result<()> {
    use libc::{
        BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, ENOENT, SECCOMP_RET_ALLOW,
        SECCOMP_RET_ERRNO, SYS_openat, seccomp_data, sock_filter, sock_fprog,
    };
    /// AUDIT_ARCH_X86_64 (include/uapi/linux/audit.h): EM_X86_64 | 64-bit | little-endian.
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    let stmt = |code: u32, k: u32| sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| sock_filter {
        code: (BPF_JMP | BPF_JEQ | BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let filter = [
        stmt(
            BPF_LD | BPF_W | BPF_ABS,
            std::mem::offset_of!(seccomp_data, arch) as u32,
        ),
        // Another ABI (x32 or i386 entry): let it through.
        jeq(AUDIT_ARCH_X86_64, 0, 3),
        stmt(
            BPF_LD | BPF_W | BPF_ABS,
            std::mem::offset_of!(seccomp_data, nr) as u32,
        ),
        jeq(SYS_openat as u32, 0, 1),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOENT as u32),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    ];
    let prog = sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: prctl with integer arguments; no_new_privs (required to install a filter
    // without CAP_SYS_ADMIN) only ever takes privileges away, here from this thread alone.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `prog` points at `filter`, both alive for the call; the kernel copies them.
    // Without flags the filter applies to the calling thread only.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &raw const prog,
            0,
            0,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Elsewhere the loader is made the ordinary way.
#[cfg(not(target_arch = "x86_64"))]
fn deny_opening_files() -> std::io::Result<()> {
    Err(std::io::Error::other("only built for x86-64"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_filter_stops_opening_files_on_its_thread_only() {
        let denied = std::thread::spawn(|| {
            deny_opening_files().expect("a seccomp filter installs");
            std::fs::File::open("/proc/self/status").map(|_| ())
        })
        .join()
        .unwrap();
        assert_eq!(
            denied.expect_err("opening is refused").kind(),
            std::io::ErrorKind::NotFound
        );
        // The process, and every other thread, still opens files.
        std::fs::File::open("/proc/self/status").expect("opening works here");
        std::thread::spawn(|| std::fs::File::open("/proc/self/status").map(|_| ()))
            .join()
            .unwrap()
            .expect("and on a new thread");
    }
}
