//! A small reader of the kernel's BTF (/sys/kernel/btf/vmlinux), for the facts collapse-trace
//! needs from it: the offsets of `task_struct.flags` (to tell the khugepaged kernel thread
//! from a MADV_COLLAPSE caller) and `task_struct.comm` (read with plain loads, cheaper than
//! the comm helper), and `enum scan_result` (a second source of result names). aya parses BTF too but keeps its type accessors private; the format is
//! small and stable (Documentation/bpf/btf.rst), so this walks it directly.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, bail, ensure};

use crate::model::kernel_info::BtfProgram;
use collapse_trace_common::{BTF_VARIANTS, FileConfig, OwnerConfig, PAGE_ARG, Probe};

/// Where the running kernel's BTF lives.
pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;

/// What collapse-trace reads from BTF.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelBtf {
    /// Byte offset of `task_struct.flags`.
    pub task_flags_offset: Option<u32>,
    /// Byte offset of `task_struct.comm`.
    pub task_comm_offset: Option<u32>,
    /// Byte offset of `task_struct.pid` (the thread id).
    pub task_pid_offset: Option<u32>,
    /// Byte offset of `task_struct.tgid` (the process id).
    pub task_tgid_offset: Option<u32>,
    /// Byte offsets in `struct pt_regs` of the registers that hold the first four syscall
    /// arguments, when this is x86-64 (`di`, `si`, `dx`, `r10`) and BTF has them all.
    pub syscall_args: Option<[u32; 4]>,
    /// `enum scan_result`, value to name, with the `SCAN_` prefix dropped and lower-cased
    /// the way the tracepoints print them.
    pub scan_result: BTreeMap<i64, String>,
    /// The parameter names of `madvise_collapse` (the kernel's MADV_COLLAPSE implementation,
    /// where the fexit hook goes), when BTF has the function.
    pub madvise_collapse_params: Option<Vec<String>>,
    /// The offsets that lead from a `struct mm_struct *` to its owner task, and from a task
    /// to its pid, comm and default-hierarchy cgroup id, when BTF has every one.
    pub owner: Option<OwnerConfig>,
    /// The offsets that lead from a `struct file *` to its name, inode, device and parent
    /// directories, when BTF has every one (`page_is_pointer` left zero).
    pub file: Option<FileConfig>,
    /// The huge_memory tracepoints' arguments (after `__data`), from BTF's
    /// `__bpf_trace_<name>` functions, by tracepoint name.
    pub tracepoint_args: BTreeMap<String, Vec<Param>>,
}

/// One argument of a tracepoint, as BTF gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Its name.
    pub name: String,
    /// Its type.
    pub ty: ParamType,
}

/// The type of a tracepoint argument, as far as the BTF-typed programs care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamType {
    /// A pointer to the struct of this name.
    StructPointer(String),
    /// An integer (`int`, `bool`, `unsigned long`, an enum).
    Integer,
    /// Anything else.
    Other,
}

/// The BTF-typed program whose argument list `args` is (names in order; `mm` and `file`
/// typed as their structs' pointers, the page argument a page or folio pointer or an
/// integer pfn), or why none is.
pub fn match_variant(probe: Probe, args: &[Param]) -> Result<BtfProgram, String> {
    let mut why = format!("no BTF-typed program for {}({})", probe.name(), {
        let names: Vec<&str> = args.iter().map(|p| p.name.as_str()).collect();
        names.join(", ")
    });
    for (i, v) in BTF_VARIANTS.iter().enumerate() {
        if v.probe != probe || v.params.len() != args.len() {
            continue;
        }
        let mut page_is_pointer = false;
        let fits = v.params.iter().zip(args).all(|(&want, got)| match want {
            PAGE_ARG => match &got.ty {
                ParamType::StructPointer(s) if s == "page" || s == "folio" => {
                    page_is_pointer = true;
                    true
                }
                ParamType::Integer => true,
                _ => false,
            },
            "mm" => got.name == "mm" && got.ty == ParamType::StructPointer("mm_struct".into()),
            "file" => got.name == "file" && got.ty == ParamType::StructPointer("file".into()),
            name => got.name == name && got.ty == ParamType::Integer,
        });
        if fits {
            return Ok(BtfProgram {
                variant: i,
                page_is_pointer,
            });
        }
        why = format!("{}: its arguments differ from {}'s", why, v.program);
    }
    Err(why)
}

impl KernelBtf {
    /// Which argument of `madvise_collapse` is `start` (with `end` right after it, four
    /// parameters in all, so the return value is in slot 4): the shape the fexit program
    /// reads. `None` when BTF lacks the function or it has another shape.
    pub fn madvise_collapse_start_arg(&self) -> Option<u32> {
        let p = self.madvise_collapse_params.as_ref()?;
        let start = p.iter().position(|n| n == "start")?;
        (p.len() == 4 && (start == 1 || start == 2) && p.get(start + 1)? == "end")
            .then_some(start as u32)
    }
}

/// The structs whose members this reader looks up.
const STRUCTS: [&str; 13] = [
    "task_struct",
    "pt_regs",
    "file",
    "path",
    "vfsmount",
    "dentry",
    "qstr",
    "inode",
    "super_block",
    "mm_struct",
    "css_set",
    "cgroup",
    "kernfs_node",
];

/// One type record's fixed part.
#[derive(Debug, Clone, Copy)]
struct Head {
    kind: u32,
    name: u32,
    vlen: usize,
    kind_flag: bool,
    size_or_type: u32,
    /// Where the record's members, parameters or values start.
    data: usize,
}

/// The type section, read in place: only each type's position is kept, so that a parse
/// allocates one small vector, not a copy of every type (this runs at every start).
struct Types<'a> {
    types: &'a [u8],
    strings: &'a [u8],
    /// Byte position of type `id`'s record (id 0, void, has none).
    at: Vec<u32>,
}

impl<'a> Types<'a> {
    /// The word at `at`; 0 past the end (every record was bounds-checked when indexed).
    fn word(&self, at: usize) -> u32 {
        self.types
            .get(at..at + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The string at `off`.
    fn name(&self, off: u32) -> &'a [u8] {
        name_at(self.strings, off)
    }

    fn head(&self, id: u32) -> Option<Head> {
        let pos = *self.at.get(id as usize).filter(|_| id != 0)? as usize;
        let info = self.word(pos + 4);
        Some(Head {
            kind: (info >> 24) & 0x1f,
            name: self.word(pos),
            vlen: (info & 0xffff) as usize,
            kind_flag: info >> 31 == 1,
            size_or_type: self.word(pos + 8),
            data: pos + 12,
        })
    }

    /// Skips typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.head(id) {
                // typedef, volatile, const, restrict, type_tag
                Some(h) if matches!(h.kind, 8 | 9 | 10 | 11 | 18) => id = h.size_or_type,
                _ => break,
            }
        }
        id
    }

    /// Byte offset of member `want` of struct/union `id`, looking into anonymous members.
    fn member_offset(&self, id: u32, want: &str) -> Option<u32> {
        self.member_bits(self.resolve(id), want.as_bytes(), 0)
            .filter(|b| b.is_multiple_of(8))
            .map(|b| b / 8)
    }

    fn member_bits(&self, id: u32, want: &[u8], depth: u32) -> Option<u32> {
        let h = self.head(id)?;
        if !(h.kind == KIND_STRUCT || h.kind == KIND_UNION) || depth > 8 {
            return None;
        }
        for m in 0..h.vlen {
            let at = h.data + m * 12;
            let (name, type_id, raw) = (self.word(at), self.word(at + 4), self.word(at + 8));
            // With kind_flag, the low 24 bits are the bit offset, the top 8 the bitfield
            // size (0 for an ordinary member).
            let bits = if h.kind_flag { raw & 0x00ff_ffff } else { raw };
            if name == 0 {
                if let Some(b) = self.member_bits(self.resolve(type_id), want, depth + 1) {
                    return Some(bits + b);
                }
            } else if self.name(name) == want {
                return Some(bits);
            }
        }
        None
    }

    /// The parameters (name, type id) of function prototype `id`.
    fn params(&self, id: u32) -> Option<Vec<(&'a [u8], u32)>> {
        let h = self.head(id).filter(|h| h.kind == KIND_FUNC_PROTO)?;
        Some(
            (0..h.vlen)
                .map(|i| {
                    let at = h.data + i * 8;
                    (self.name(self.word(at)), self.word(at + 4))
                })
                .collect(),
        )
    }

    /// What type `id` is, for a tracepoint argument.
    fn param_type(&self, id: u32) -> ParamType {
        match self.head(self.resolve(id)) {
            Some(h) if matches!(h.kind, KIND_INT | KIND_ENUM | KIND_ENUM64) => ParamType::Integer,
            Some(h) if h.kind == KIND_PTR => match self.head(self.resolve(h.size_or_type)) {
                Some(t) if t.kind == KIND_STRUCT => ParamType::StructPointer(
                    String::from_utf8_lossy(self.name(t.name)).into_owned(),
                ),
                _ => ParamType::Other,
            },
            _ => ParamType::Other,
        }
    }
}

/// The NUL-terminated string at `off` of a string section (empty past its end).
fn name_at(strings: &[u8], off: u32) -> &[u8] {
    let s = strings.get(off as usize..).unwrap_or(&[]);
    &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())]
}

/// Reads the running kernel's BTF.
pub fn read_vmlinux() -> Result<KernelBtf> {
    parse(&read_vmlinux_bytes()?)
}

/// The running kernel's BTF, unparsed.
pub fn read_vmlinux_bytes() -> Result<Vec<u8>> {
    std::fs::read(VMLINUX).with_context(|| format!("reading {VMLINUX}"))
}

fn u32_at(d: &[u8], off: usize) -> Result<u32> {
    let b = d
        .get(off..off + 4)
        .with_context(|| format!("BTF truncated at byte {off}"))?;
    Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
}

/// Parses little-endian BTF: one pass that notes where each type starts and which ids the
/// few named types have, then lookups in place.
pub fn parse(d: &[u8]) -> Result<KernelBtf> {
    ensure!(d.len() >= 24, "BTF too short");
    let magic = u16::from_le_bytes([d[0], d[1]]);
    if magic != MAGIC {
        bail!("not little-endian BTF (magic {magic:#x})");
    }
    let hdr_len = u32_at(d, 4)? as usize;
    let type_off = u32_at(d, 8)? as usize;
    let type_len = u32_at(d, 12)? as usize;
    let str_off = u32_at(d, 16)? as usize;
    let str_len = u32_at(d, 20)? as usize;
    let types = d
        .get(hdr_len + type_off..hdr_len + type_off + type_len)
        .context("BTF type section out of bounds")?;
    let strings = d
        .get(hdr_len + str_off..hdr_len + str_off + str_len)
        .context("BTF string section out of bounds")?;
    // A name starts with `want` and ends there: no strlen for the ~56k functions.
    let named = |off: u32, want: &[u8]| {
        strings
            .get(off as usize..)
            .is_some_and(|s| s.starts_with(want) && s.get(want.len()) == Some(&0))
    };

    let mut out = KernelBtf::default();
    // The smallest record is 12 bytes; vmlinux averages ~30.
    let mut at = Vec::with_capacity(types.len() / 24 + 1);
    at.push(0);
    let mut struct_ids = [0u32; STRUCTS.len()];
    let mut madvise_collapse_proto = None;
    // `__bpf_trace_<tracepoint>` function -> its prototype's type id.
    let mut trace_funcs: Vec<(String, u32)> = Vec::new();
    let mut pos = 0;
    while pos + 12 <= types.len() {
        let id = at.len() as u32;
        at.push(pos as u32);
        let name_off = u32_at(types, pos)?;
        let info = u32_at(types, pos + 4)?;
        let size_or_type = u32_at(types, pos + 8)?;
        let vlen = (info & 0xffff) as usize;
        let kind = (info >> 24) & 0x1f;
        pos += 12;
        let extra = match kind {
            KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
            KIND_ARRAY => 12,
            KIND_STRUCT | KIND_UNION | KIND_DATASEC => vlen * 12,
            KIND_ENUM | KIND_FUNC_PROTO => vlen * 8,
            KIND_ENUM64 => vlen * 12,
            _ => 0,
        };
        ensure!(pos + extra <= types.len(), "BTF type section truncated");
        match kind {
            // The first definition with members (forward declarations have none).
            KIND_STRUCT if name_off != 0 && vlen > 0 => {
                let n = name_at(strings, name_off);
                if let Some(i) = STRUCTS.iter().position(|s| s.as_bytes() == n)
                    && struct_ids[i] == 0
                {
                    struct_ids[i] = id;
                }
            }
            KIND_FUNC => {
                let n = strings.get(name_off as usize..).unwrap_or(&[]);
                if n.starts_with(b"__bpf_trace_mm_") {
                    let tp = &name_at(strings, name_off)[b"__bpf_trace_".len()..];
                    if tp.starts_with(b"mm_khugepaged_") || tp == b"mm_collapse_huge_page" {
                        trace_funcs.push((String::from_utf8_lossy(tp).into_owned(), size_or_type));
                    }
                } else if named(name_off, b"madvise_collapse") {
                    madvise_collapse_proto = Some(size_or_type);
                }
            }
            KIND_ENUM if named(name_off, b"scan_result") => {
                for v in 0..vlen {
                    let at = pos + v * 8;
                    let label = String::from_utf8_lossy(name_at(strings, u32_at(types, at)?));
                    let value = u32_at(types, at + 4)? as i32 as i64;
                    let label = label.strip_prefix("SCAN_").unwrap_or(&label).to_lowercase();
                    out.scan_result.insert(value, label);
                }
            }
            _ => {}
        }
        pos += extra;
    }
    let t = Types { types, strings, at };
    let off = |st: &str, m: &str| -> Option<u32> {
        let i = STRUCTS
            .iter()
            .position(|s| *s == st)
            .expect("every struct looked up is listed in STRUCTS");
        t.member_offset(Some(struct_ids[i]).filter(|&id| id != 0)?, m)
    };
    out.task_flags_offset = off("task_struct", "flags");
    out.task_comm_offset = off("task_struct", "comm");
    out.task_pid_offset = off("task_struct", "pid");
    out.task_tgid_offset = off("task_struct", "tgid");
    if cfg!(target_arch = "x86_64") {
        let reg = |r: &str| off("pt_regs", r).filter(|o| o.is_multiple_of(8));
        if let (Some(a), Some(b), Some(c), Some(d)) = (reg("di"), reg("si"), reg("dx"), reg("r10"))
        {
            out.syscall_args = Some([a, b, c, d]);
        }
    }
    out.madvise_collapse_params = madvise_collapse_proto.and_then(|p| {
        let params = t.params(p)?;
        Some(
            params
                .iter()
                .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
                .collect(),
        )
    });
    for (tp, proto) in trace_funcs {
        let Some(params) = t.params(proto) else {
            continue;
        };
        // The first parameter is the tracepoint's `void *__data`, not an argument.
        let args = params
            .iter()
            .skip(1)
            .map(|&(n, ty)| Param {
                name: String::from_utf8_lossy(n).into_owned(),
                ty: t.param_type(ty),
            })
            .collect();
        out.tracepoint_args.insert(tp, args);
    }
    out.file = (|| {
        let f_path = off("file", "f_path")?;
        let d_name = off("dentry", "d_name")?;
        Some(FileConfig {
            file_dentry: f_path + off("path", "dentry")?,
            file_mnt: f_path + off("path", "mnt")?,
            mnt_root: off("vfsmount", "mnt_root")?,
            dentry_name: d_name + off("qstr", "name")?,
            dentry_name_len: d_name + off("qstr", "len")?,
            dentry_parent: off("dentry", "d_parent")?,
            dentry_inode: off("dentry", "d_inode")?,
            inode_ino: off("inode", "i_ino")?,
            inode_sb: off("inode", "i_sb")?,
            sb_dev: off("super_block", "s_dev")?,
            page_is_pointer: [0; 4],
        })
    })();
    out.owner = (|| {
        Some(OwnerConfig {
            mm_owner: off("mm_struct", "owner")?,
            task_mm: off("task_struct", "mm")?,
            task_tgid: off("task_struct", "tgid")?,
            task_comm: off("task_struct", "comm")?,
            task_cgroups: off("task_struct", "cgroups")?,
            css_set_dfl_cgrp: off("css_set", "dfl_cgrp")?,
            cgroup_kn: off("cgroup", "kn")?,
            kn_id: off("kernfs_node", "id")?,
        })
    })();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_running_kernel() {
        // Every kernel this tool supports has BTF; the test machine's must parse.
        let btf = read_vmlinux().expect("this machine has /sys/kernel/btf/vmlinux");
        let off = btf.task_flags_offset.expect("task_struct.flags found");
        assert!(
            off > 0 && off < 4096 && off.is_multiple_of(4),
            "odd offset {off}"
        );
        let comm = btf.task_comm_offset.expect("task_struct.comm found");
        assert!(comm > off && comm < 8192, "odd comm offset {comm}");
        let pid = btf.task_pid_offset.expect("task_struct.pid found");
        let tgid = btf.task_tgid_offset.expect("task_struct.tgid found");
        assert!(pid.is_multiple_of(4) && tgid.is_multiple_of(4) && pid < 8192 && tgid < 8192);
        let o = btf
            .owner
            .expect("mm_struct.owner and the cgroup chain found");
        assert_eq!(o.task_tgid, tgid);
        assert_eq!(o.task_comm, comm);
        assert!(o.mm_owner > 0 && o.mm_owner < 4096 && o.mm_owner.is_multiple_of(8));
        assert!(o.task_mm.is_multiple_of(8) && o.task_cgroups.is_multiple_of(8));
        if cfg!(target_arch = "x86_64") {
            // x86-64's struct pt_regs: r15 first, then ... r10 at 56, dx 96, si 104, di 112.
            assert_eq!(btf.syscall_args, Some([112, 104, 96, 56]));
        }
    }

    #[test]
    fn finds_madvise_collapse_for_the_fexit() {
        // Every kernel with MADV_COLLAPSE (6.1+) has the function; its argument order varies.
        let btf = read_vmlinux().expect("this machine has /sys/kernel/btf/vmlinux");
        let params = btf
            .madvise_collapse_params
            .clone()
            .expect("BTF has madvise_collapse");
        let start = btf
            .madvise_collapse_start_arg()
            .unwrap_or_else(|| panic!("unexpected madvise_collapse{params:?}"));
        assert_eq!(params[start as usize], "start");
        assert_eq!(params[start as usize + 1], "end");
        assert_eq!(params[0], "vma");
    }

    #[test]
    fn rejects_junk() {
        assert!(parse(b"not btf at all, not at all").is_err());
        assert!(parse(&[0x9f, 0xeb, 1, 0, 24, 0, 0, 0]).is_err());
    }
}
