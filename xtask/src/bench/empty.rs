//! Empty BPF programs for the floor figures: the least any program of an attach kind costs the
//! traced workload. Every kind gets the same two instructions (`r0 = 0; exit`), loaded and
//! attached here with raw `bpf(2)` and `perf_event_open(2)` calls, so the kinds differ only by
//! how the kernel runs them: a classic tracepoint builds the event's record (file name copy
//! included) before the program runs; a raw tracepoint and a BTF-typed one (`tp_btf`) hand the
//! program the tracepoint's arguments; an fexit needs a BPF trampoline on the function. The
//! call hooks' floors: where no fexit is possible the default mode closes MADV_COLLAPSE calls
//! from the classic `syscalls:sys_exit_madvise`, so its empty program is measured too, and so
//! is a tp_btf on the raw `sys_exit` (no record built, but it runs on every syscall of every
//! task), the cheapest syscall exit hook there is.
//! bpftrace has no `tp_btf`, and its empty programs are not all the same size, so the bench
//! does not use it here. Programs are detached when their fds close (on drop).

use std::{
    ffi::CString,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use anyhow::{Context as _, Result, bail, ensure};
use serde::Serialize;

/// How a program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `BPF_PROG_TYPE_TRACEPOINT` through a perf event: the kernel builds the record first.
    Classic,
    /// `BPF_PROG_TYPE_RAW_TRACEPOINT`: the tracepoint's arguments, no record.
    Raw,
    /// `BPF_PROG_TYPE_TRACING`, `BPF_TRACE_RAW_TP`: a raw tracepoint typed by BTF.
    TpBtf,
    /// `BPF_PROG_TYPE_TRACING`, `BPF_TRACE_FEXIT` on `madvise_collapse` (once per call).
    Fexit,
    /// A classic tracepoint program on `syscalls:sys_exit_madvise`: the default mode's call
    /// hook where no fexit is possible.
    SysExit,
    /// A tp_btf program on the raw `sys_exit` tracepoint (every syscall of every task).
    SysExitBtf,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Classic,
        Kind::Raw,
        Kind::TpBtf,
        Kind::Fexit,
        Kind::SysExit,
        Kind::SysExitBtf,
    ];

    /// The name printed in `floor KIND:` lines.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Classic => "tracepoint",
            Kind::Raw => "raw_tracepoint",
            Kind::TpBtf => "tp_btf",
            Kind::Fexit => "fexit",
            Kind::SysExit => "sys_exit_madvise",
            Kind::SysExitBtf => "sys_exit (tp_btf)",
        }
    }

    /// The kind of a loaded program of ours, from `bpftool prog show`'s `type`: a `tracing`
    /// program on a huge_memory event can only be a tp_btf (fexit attaches to functions).
    pub fn of_prog_type(prog_type: &str) -> Option<Kind> {
        match prog_type {
            "tracepoint" => Some(Kind::Classic),
            "raw_tracepoint" => Some(Kind::Raw),
            "tracing" => Some(Kind::TpBtf),
            _ => None,
        }
    }
}

/// The tracepoints (huge_memory) or function an empty program of `kind` goes on.
pub fn targets(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Fexit => &["madvise_collapse"],
        Kind::SysExit => &["syscalls/sys_exit_madvise"],
        Kind::SysExitBtf => &["sys_exit"],
        _ => &[super::SCAN, super::COLLAPSE],
    }
}

/// Attached empty programs of one kind; detached when dropped (the perf event or link fds
/// hold the programs).
pub struct Empty {
    _attached: Vec<OwnedFd>,
}

impl Empty {
    /// Loads and attaches an empty program of `kind` on each of its [`targets`]; an error
    /// says why this kernel refuses (with the verifier's log when there is one).
    pub fn attach(kind: Kind) -> Result<Empty> {
        let btf = match kind {
            Kind::TpBtf | Kind::Fexit | Kind::SysExitBtf => Some(
                std::fs::read("/sys/kernel/btf/vmlinux")
                    .context("reading /sys/kernel/btf/vmlinux (needed for tp_btf and fexit)")?,
            ),
            _ => None,
        };
        let mut attached = Vec::new();
        for target in targets(kind) {
            let fd = match kind {
                Kind::Classic | Kind::SysExit => {
                    let prog = prog_load(PROG_TRACEPOINT, 0, 0)?;
                    perf_tracepoint(tracepoint_id(target)?, &prog)?
                }
                Kind::Raw => {
                    let prog = prog_load(PROG_RAW_TRACEPOINT, 0, 0)?;
                    raw_tracepoint_open(Some(target), &prog)?
                }
                Kind::TpBtf | Kind::Fexit | Kind::SysExitBtf => {
                    let btf = btf.as_deref().unwrap_or_default();
                    let (name, btf_kind, attach) = if kind != Kind::Fexit {
                        (
                            format!("btf_trace_{target}"),
                            BTF_KIND_TYPEDEF,
                            TRACE_RAW_TP,
                        )
                    } else {
                        (target.to_string(), BTF_KIND_FUNC, TRACE_FEXIT)
                    };
                    let id = btf_type_id(btf, &name, btf_kind)?
                        .with_context(|| format!("no {name} in the kernel's BTF"))?;
                    let prog = prog_load(PROG_TRACING, attach, id)?;
                    raw_tracepoint_open(None, &prog)?
                }
            };
            attached.push(fd);
        }
        Ok(Empty {
            _attached: attached,
        })
    }
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
const PROG_TRACEPOINT: u32 = 5;
const PROG_RAW_TRACEPOINT: u32 = 17;
const PROG_TRACING: u32 = 26;
const TRACE_RAW_TP: u32 = 23;
const TRACE_FEXIT: u32 = 25;
const BTF_KIND_TYPEDEF: u32 = 8;
const BTF_KIND_FUNC: u32 = 12;

/// `union bpf_attr` for BPF_PROG_LOAD, up to `attach_btf_obj_fd` (the kernel takes a shorter
/// attr than its own and zero-fills the rest).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
    attach_btf_obj_fd: u32,
    _pad: u32,
}

/// `bpf_attr.raw_tracepoint`.
#[repr(C)]
struct RawTpAttr {
    name: u64,
    prog_fd: u32,
    _pad: u32,
}

/// `r0 = 0` (BPF_ALU64 | BPF_MOV | BPF_K) and `exit`, little-endian `struct bpf_insn`s.
const EMPTY_PROGRAM: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<OwnedFd> {
    // SAFETY: attr is a live, initialised #[repr(C)] bpf_attr prefix of the size passed; the
    // kernel reads (and for the log, writes through) only the pointers it holds, which outlive
    // the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            std::mem::size_of::<T>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new fd the kernel just returned, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn prog_load(prog_type: u32, attach: u32, btf_id: u32) -> Result<OwnedFd> {
    let license = c"GPL";
    let mut log = vec![0u8; 4096];
    let mut attr = ProgLoadAttr {
        prog_type,
        insn_cnt: EMPTY_PROGRAM.len() as u32,
        insns: EMPTY_PROGRAM.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        expected_attach_type: attach,
        attach_btf_id: btf_id,
        ..Default::default()
    };
    attr.prog_name[..5].copy_from_slice(b"empty");
    bpf(BPF_PROG_LOAD, &mut attr).map_err(|e| {
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        let log = String::from_utf8_lossy(&log[..end]);
        anyhow::anyhow!(
            "BPF_PROG_LOAD failed: {e}{}",
            match log.trim() {
                "" => String::new(),
                l => format!(" (verifier: {l})"),
            }
        )
    })
}

fn raw_tracepoint_open(name: Option<&str>, prog: &OwnedFd) -> Result<OwnedFd> {
    let name = name.map(CString::new).transpose()?;
    let mut attr = RawTpAttr {
        name: name.as_ref().map_or(0, |n| n.as_ptr() as u64),
        prog_fd: prog.as_raw_fd() as u32,
        _pad: 0,
    };
    bpf(BPF_RAW_TRACEPOINT_OPEN, &mut attr).context("BPF_RAW_TRACEPOINT_OPEN failed")
}

/// The tracefs id of event `name`: `group/event`, or a huge_memory event by its name alone.
fn tracepoint_id(name: &str) -> Result<u64> {
    let event = match name.contains('/') {
        true => name.to_string(),
        false => format!("huge_memory/{name}"),
    };
    let path = format!("/sys/kernel/tracing/events/{event}/id");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {path} (is tracefs mounted?)"))?;
    text.trim()
        .parse()
        .with_context(|| format!("{path} holds {text:?}"))
}

/// `struct perf_event_attr` up to `config2` (PERF_ATTR_SIZE_VER1).
#[repr(C)]
#[derive(Default)]
struct PerfAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
}

/// Opens a perf event on tracepoint `id` and sets `prog` on it (what libbpf does for a
/// classic tracepoint). The program runs for the event on every CPU, whichever CPU the perf
/// event was opened on.
fn perf_tracepoint(id: u64, prog: &OwnedFd) -> Result<OwnedFd> {
    const PERF_TYPE_TRACEPOINT: u32 = 2;
    const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
    const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
    const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
    let attr = PerfAttr {
        type_: PERF_TYPE_TRACEPOINT,
        size: std::mem::size_of::<PerfAttr>() as u32,
        config: id,
        sample_period: 1,
        wakeup_events: 1,
        ..Default::default()
    };
    // SAFETY: attr is a live perf_event_attr prefix whose `size` says how long it is.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &raw const attr,
            -1,
            0,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    ensure!(
        fd >= 0,
        "perf_event_open on tracepoint {id} failed: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a new fd the kernel just returned, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    for (req, arg) in [
        (PERF_EVENT_IOC_SET_BPF, prog.as_raw_fd() as libc::c_ulong),
        (PERF_EVENT_IOC_ENABLE, 0),
    ] {
        // SAFETY: ioctls on our own perf event fd, with an integer argument.
        if unsafe { libc::ioctl(fd.as_raw_fd(), req, arg) } < 0 {
            bail!(
                "ioctl {req:#x} on the tracepoint's perf event failed: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(fd)
}

/// The id of the type called `name` of BTF kind `kind` in a raw BTF blob (the layout of
/// /sys/kernel/btf/vmlinux: a header, then the type section, then the string section).
/// `Ok(None)` when there is none.
pub fn btf_type_id(btf: &[u8], name: &str, kind: u32) -> Result<Option<u32>> {
    let u32_at = |at: usize| -> Result<u32> {
        let b = btf.get(at..at + 4).context("BTF ends early")?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    ensure!(
        btf.len() >= 24 && btf[..2] == [0x9f, 0xeb],
        "not little-endian BTF (bad magic)"
    );
    let hdr_len = u32_at(4)? as usize;
    let (type_off, type_len) = (u32_at(8)? as usize, u32_at(12)? as usize);
    let (str_off, str_len) = (u32_at(16)? as usize, u32_at(20)? as usize);
    let types = hdr_len + type_off;
    let strings = btf
        .get(hdr_len + str_off..hdr_len + str_off + str_len)
        .context("BTF string section out of bounds")?;
    let name_at = |off: usize| -> &[u8] {
        let s = strings.get(off..).unwrap_or_default();
        &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())]
    };
    let (mut at, end, mut id) = (types, types + type_len, 1u32);
    while at < end {
        let (name_off, info) = (u32_at(at)? as usize, u32_at(at + 4)?);
        let (vlen, this_kind) = ((info & 0xffff) as usize, (info >> 24) & 0x1f);
        if this_kind == kind && name_at(name_off) == name.as_bytes() {
            return Ok(Some(id));
        }
        // What follows the 12-byte common part, by kind (include/uapi/linux/btf.h).
        let extra = match this_kind {
            1 | 14 | 17 => 4,     // INT, VAR, DECL_TAG
            3 => 12,              // ARRAY
            4 | 5 => 12 * vlen,   // STRUCT, UNION
            6 | 13 => 8 * vlen,   // ENUM, FUNC_PROTO
            15 | 19 => 12 * vlen, // DATASEC, ENUM64
            2 | 7..=12 | 16 | 18 => 0,
            other => bail!("unknown BTF kind {other} (type {id})"),
        };
        at += 12 + extra;
        id += 1;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob with the given (name, kind, vlen) types, each with `vlen` members' worth of
    /// trailing data for kinds that have it.
    fn blob(types: &[(&str, u32, u32)]) -> Vec<u8> {
        let mut strings = vec![0u8];
        let mut section = Vec::new();
        for &(name, kind, vlen) in types {
            section.extend((strings.len() as u32).to_le_bytes());
            strings.extend(name.as_bytes());
            strings.push(0);
            section.extend(((kind << 24) | vlen).to_le_bytes());
            section.extend(0u32.to_le_bytes());
            let extra = match kind {
                1 => 4,
                4 => 12 * vlen as usize,
                13 => 8 * vlen as usize,
                _ => 0,
            };
            section.extend(std::iter::repeat_n(0xaa, extra));
        }
        let mut out = vec![0x9f, 0xeb, 1, 0];
        for v in [
            24,
            0,
            section.len() as u32,
            section.len() as u32,
            strings.len() as u32,
        ] {
            out.extend(v.to_le_bytes());
        }
        out.extend(section);
        out.extend(strings);
        out
    }

    #[test]
    fn btf_ids_are_found_past_every_kind_of_trailing_data() {
        let b = blob(&[
            ("int", 1, 0),
            ("task_struct", 4, 3),
            ("", 13, 2),
            ("btf_trace_mm_khugepaged_scan_file", 8, 0),
            ("madvise_collapse", 12, 0),
        ]);
        let id = |n, k| btf_type_id(&b, n, k).unwrap();
        assert_eq!(
            id("btf_trace_mm_khugepaged_scan_file", BTF_KIND_TYPEDEF),
            Some(4)
        );
        assert_eq!(id("madvise_collapse", BTF_KIND_FUNC), Some(5));
        // The right name of the wrong kind is not it.
        assert_eq!(id("madvise_collapse", BTF_KIND_TYPEDEF), None);
        assert!(btf_type_id(b"not btf at all, no magic here", "x", 1).is_err());
    }

    #[test]
    fn the_empty_program_is_mov_r0_0_exit() {
        let bytes: Vec<u8> = EMPTY_PROGRAM.iter().flat_map(|i| i.to_le_bytes()).collect();
        assert_eq!(bytes[0], 0xb7, "BPF_ALU64 | BPF_MOV | BPF_K");
        assert_eq!(bytes[8], 0x95, "BPF_JMP | BPF_EXIT");
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 120);
        assert_eq!(std::mem::size_of::<PerfAttr>(), 72);
    }

    #[test]
    fn kinds_of_our_programs() {
        assert_eq!(Kind::of_prog_type("tracepoint"), Some(Kind::Classic));
        assert_eq!(Kind::of_prog_type("raw_tracepoint"), Some(Kind::Raw));
        assert_eq!(Kind::of_prog_type("tracing"), Some(Kind::TpBtf));
        assert_eq!(Kind::of_prog_type("kprobe"), None);
    }
}
