//! Readers of text captures of the huge_memory events (and the madvise syscall events, when
//! present): ftrace's `trace` / `trace_pipe`, `trace-cmd report` and `perf script`. Each line
//! becomes a [`FtraceLine`]; a [`TextDecoder`] turns those into [`Event`]s for the aggregation
//! core, joining MADV_COLLAPSE calls (syscall enter/exit on one thread) with the events
//! inside them, as the kernel side of `record` does. [`load`] reads a whole capture this way.

pub(super) mod load;

use std::collections::{BTreeMap, HashMap};

use collapse_trace_common::{Origin, RecordKind};

use crate::model::{event::Event, results::ResultTable};

/// One line of ftrace text output, for one of the events we know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtraceLine {
    /// Task comm (may contain spaces and dashes).
    pub comm: String,
    /// Thread id.
    pub pid: u32,
    /// Process id, when the trace was taken with `options/record-tgid`.
    pub tgid: Option<u32>,
    /// CPU.
    pub cpu: u32,
    /// Timestamp in ns (the trace clock; `local` and `mono` are CLOCK_MONOTONIC-like).
    pub ts_ns: u64,
    /// Event name, e.g. `mm_khugepaged_scan_file`.
    pub event: String,
    /// `key=value` pairs of the event's print format (values as printed).
    pub fields: BTreeMap<String, String>,
}

impl FtraceLine {
    /// The `result=` (file events) or `status=` (anon events) value.
    pub fn result(&self) -> Option<&str> {
        self.fields
            .get("result")
            .or_else(|| self.fields.get("status"))
            .map(String::as_str)
    }
}

/// Parses one line of ftrace or `trace-cmd report` text; `None` for comments, blank lines and
/// lines that are not events.
///
/// Shape: `<comm>-<pid> [(<tgid>)] [<cpu>] [<flags>] <ts>: <event>: k=v, k=v, ...`
pub fn parse_line(line: &str) -> Option<FtraceLine> {
    parse_dialect(line, false)
}

/// Parses one line of `perf script` text; `None` for lines that are not events.
///
/// Shape: `<comm> <pid>[/<tid>] [<cpu>] <ts>: <group>:<event>: k=v, k=v, ...`
pub(crate) fn parse_perf_line(line: &str) -> Option<FtraceLine> {
    parse_dialect(line, true)
}

fn parse_dialect(line: &str, perf: bool) -> Option<FtraceLine> {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    // The CPU field "[NNN]" is the first bracket holding only digits; the comm cannot
    // be trusted not to contain brackets, so look for the first such one after a '-'.
    let mut search = 0;
    let (task_end, cpu, after_cpu) = loop {
        let open = search + line.get(search..)?.find(" [")?;
        let close = open + 2 + line[open + 2..].find(']')?;
        let inner = &line[open + 2..close];
        if !inner.is_empty() && inner.len() < 10 && inner.bytes().all(|b| b.is_ascii_digit()) {
            break (open, inner.parse().ok()?, close + 1);
        }
        search = open + 2;
    };
    let mut task = line[..task_end].trim_end();
    let mut tgid = None;
    let (comm, pid);
    if perf {
        // "comm pid" or "comm pid/tid".
        let sp = task.rfind(' ')?;
        let ids = &task[sp + 1..];
        match ids.split_once('/') {
            Some((p, t)) => {
                tgid = Some(p.parse().ok()?);
                pid = t.parse().ok()?;
            }
            None => pid = ids.parse().ok()?,
        }
        comm = task[..sp].trim_end().to_string();
    } else {
        if task.ends_with(')')
            && let Some(open) = task.rfind('(')
        {
            tgid = task[open + 1..task.len() - 1].trim().parse().ok();
            task = task[..open].trim_end();
        }
        let dash = task.rfind('-')?;
        pid = task[dash + 1..].parse().ok()?;
        comm = task[..dash].to_string();
    }

    // After the CPU: flags, timestamp "123.456:", then "event: fields".
    let rest = &line[after_cpu..];
    let ts_colon = rest.find(": ")?;
    let ts_ns = parse_ts(rest[..ts_colon].split_whitespace().last()?)?;
    let rest = rest[ts_colon + 2..].trim_start();
    let (event, fields) = split_event(rest, perf)?;
    Some(FtraceLine {
        comm,
        pid,
        tgid,
        cpu,
        ts_ns,
        event,
        fields,
    })
}

/// `seconds.fraction` to ns.
fn parse_ts(t: &str) -> Option<u64> {
    let (s, f) = t.split_once('.').unwrap_or((t, ""));
    let secs: u64 = s.parse().ok()?;
    if f.len() > 9 || !f.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac: u64 = if f.is_empty() { 0 } else { f.parse().ok()? };
    secs.checked_mul(1_000_000_000)?
        .checked_add(frac * 10u64.pow(9 - f.len() as u32))
}

/// The event name and its fields. Syscall events come in two spellings: ftrace's own
/// (`sys_madvise(start: 7f.., len_in: 200000, behavior: 19)`, `sys_madvise -> 0x0`) and the
/// format-file one that trace-cmd and perf print (`sys_enter_madvise: start: 0x.., ...`,
/// `sys_exit_madvise: 0x0`); both become `sys_enter_*` (fields `start`, `len_in`,
/// `behavior`, ...; hex) and `sys_exit_*` (field `ret`; hex).
fn split_event(rest: &str, perf: bool) -> Option<(String, BTreeMap<String, String>)> {
    let mut fields = BTreeMap::new();
    // ftrace's syscall spelling.
    if let Some(name) = rest.strip_prefix("sys_") {
        let paren = name.find('(');
        let arrow = name.find(" -> ");
        if let Some(p) = paren.filter(|p| arrow.is_none_or(|a| *p < a)) {
            let body = name[p + 1..].trim_end().trim_end_matches(')');
            for part in body.split(", ") {
                if let Some((k, v)) = part.split_once(": ") {
                    fields.insert(k.trim().to_string(), v.trim().to_string());
                }
            }
            return Some((format!("sys_enter_{}", &name[..p]), fields));
        }
        if let Some(a) = arrow {
            fields.insert("ret".to_string(), name[a + 4..].trim().to_string());
            return Some((format!("sys_exit_{}", &name[..a]), fields));
        }
    }
    let (mut event, body) = rest
        .split_once(": ")
        .unwrap_or((rest.trim_end_matches(':'), ""));
    if perf || event.contains(':') {
        event = event.rsplit(':').next().unwrap_or(event);
    }
    let event = event.trim();
    if event.starts_with("sys_exit_") {
        fields.insert("ret".to_string(), body.trim().to_string());
    } else if event.starts_with("sys_enter_") {
        for part in body.split(", ") {
            if let Some((k, v)) = part.split_once(": ") {
                fields.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
    } else {
        for part in body.split(", ") {
            if let Some((k, v)) = part.split_once('=') {
                fields.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
    }
    Some((event.to_string(), fields))
}

/// A number as the kernel printed it: decimal, or hex with `0x`.
fn num(v: Option<&String>) -> Option<i64> {
    let v = v?.trim();
    let (neg, v) = match v.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, v),
    };
    let n = match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok()? as i64,
        None => v.parse::<i64>().ok()?,
    };
    Some(if neg { n.wrapping_neg() } else { n })
}

/// A hex number printed with or without `0x` (`%lx`).
fn hex(v: Option<&String>) -> Option<u64> {
    let v = v?.trim();
    u64::from_str_radix(v.strip_prefix("0x").unwrap_or(v), 16).ok()
}

/// MADV_COLLAPSE's advice number.
pub(crate) const MADV_COLLAPSE: u64 = 25;

#[derive(Debug, Clone, Copy)]
struct OpenCall {
    ts_ns: u64,
    start: u64,
    len: u64,
}

/// Why a text line that names one of our events did not become one.
// Unboxed: one is made per line read, nearly all of them events; a box would allocate each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// An event for the aggregation core.
    Event(Event),
    /// An event this tool does not use (another tracepoint, a syscall that is not
    /// MADV_COLLAPSE, an exit without its entry).
    Other,
    /// One of our events, but a field was missing or unreadable.
    Bad(&'static str),
}

/// Turns text lines into [`Event`]s: result names to numbers (the table's, or new ones for
/// names it lacks), MADV_COLLAPSE calls joined with the events inside them.
#[derive(Debug, Default)]
pub(crate) struct TextDecoder {
    open: HashMap<u32, OpenCall>,
}

impl TextDecoder {
    /// A decoder with no call open.
    pub fn new() -> TextDecoder {
        TextDecoder::default()
    }

    /// Decodes one line.
    pub fn decode(&mut self, l: FtraceLine, table: &mut ResultTable) -> Decoded {
        let tp = match l.event.as_str() {
            name if let Some(k) = RecordKind::from_tracepoint(name) => k,
            "sys_enter_madvise" | "sys_enter_process_madvise" => {
                if hex(l.fields.get("behavior")) == Some(MADV_COLLAPSE) {
                    let process = l.event.contains("process");
                    self.open.insert(
                        l.pid,
                        OpenCall {
                            ts_ns: l.ts_ns,
                            start: if process {
                                0
                            } else {
                                hex(l.fields.get("start")).unwrap_or(0)
                            },
                            len: if process {
                                0
                            } else {
                                hex(l.fields.get("len_in")).unwrap_or(0)
                            },
                        },
                    );
                } else {
                    self.open.remove(&l.pid);
                }
                return Decoded::Other;
            }
            "sys_exit_madvise" | "sys_exit_process_madvise" => {
                let Some(call) = self.open.remove(&l.pid) else {
                    return Decoded::Other;
                };
                let Some(ret) = hex(l.fields.get("ret")) else {
                    return Decoded::Bad("a syscall exit without its return value");
                };
                let ret = ret as i64;
                let mut e = self.base(&l, RecordKind::MadviseCall);
                e.result = if ret < 0 { -ret } else { 0 };
                e.call_ns = call.ts_ns;
                e.addr = call.start;
                e.index = call.len;
                e.origin = Origin::Madvise;
                e.process_madvise = l.event.contains("process");
                return Decoded::Event(e);
            }
            _ => return Decoded::Other,
        };
        let Some(rname) = l.result().filter(|r| !r.is_empty()) else {
            return Decoded::Bad("no result= or status= value");
        };
        let result = match num(Some(&rname.to_string())) {
            Some(n) => n,
            None => match table.number_or_add(rname) {
                Some(n) => n,
                None => return Decoded::Bad("too many distinct result names"),
            },
        };
        let mut e = self.base(&l, tp);
        e.result = result;
        if let Some(call) = self.open.get(&l.pid) {
            e.call_ns = call.ts_ns;
            e.origin = Origin::Madvise;
        }
        let f = &l.fields;
        let i32_of = |k: &str| num(f.get(k)).unwrap_or(0) as i32;
        match tp {
            RecordKind::ScanFile => {
                e.filename = f
                    .get("filename")
                    .map(|s| s.as_bytes().to_vec())
                    .unwrap_or_default();
                e.pfn = hex(f.get("scan_pfn")).unwrap_or(0);
                e.present = i32_of("present");
                e.swap = i32_of("swap");
            }
            RecordKind::CollapseFile => {
                e.filename = f
                    .get("filename")
                    .map(|s| s.as_bytes().to_vec())
                    .unwrap_or_default();
                e.pfn = hex(f.get("hpage_pfn")).unwrap_or(0);
                e.index = num(f.get("index")).unwrap_or(0) as u64;
                e.addr = hex(f.get("addr")).unwrap_or(0);
                e.is_shmem = num(f.get("is_shmem")).unwrap_or(0) != 0;
                e.nr = i32_of("nr");
            }
            RecordKind::ScanPmd => {
                e.pfn = hex(f.get("scan_pfn")).unwrap_or(0);
                e.referenced = i32_of("referenced");
                e.none_or_zero = i32_of("none_or_zero");
                e.unmapped = i32_of("unmapped");
            }
            RecordKind::CollapseHugePage => e.isolated = i32_of("isolated"),
            RecordKind::MadviseCall => {}
        }
        Decoded::Event(e)
    }

    fn base(&self, l: &FtraceLine, tp: RecordKind) -> Event {
        Event {
            ts_ns: l.ts_ns,
            tracepoint: tp,
            pid: l.pid,
            tgid: l.tgid.unwrap_or(l.pid),
            comm: l.comm.as_bytes().to_vec(),
            ..Event::empty()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_with_and_without_tgid() {
        let l = parse_line(
            " collapse-trace-14551 (  14551) [001] ..... 12345.678901: mm_khugepaged_scan_file: \
             mm=00000000a1b2c3d4, scan_pfn=0x1234, filename=page-filled-3, present=128, swap=0, \
             result=page_filled",
        )
        .unwrap();
        assert_eq!(
            (l.comm.as_str(), l.pid, l.tgid, l.cpu),
            ("collapse-trace", 14551, Some(14551), 1)
        );
        assert_eq!(l.event, "mm_khugepaged_scan_file");
        assert_eq!(l.result(), Some("page_filled"));
        assert_eq!(l.fields["filename"], "page-filled-3");

        let l = parse_line(
            "   my [odd]-name-77 [000] d..1. 5.000001: mm_khugepaged_collapse_file: mm=x, \
             hpage_pfn=0x0, index=0, addr=7f0000000000, is_shmem=1, filename=f, nr=0, result=exceed_none_pte",
        )
        .unwrap();
        assert_eq!(
            (l.comm.as_str(), l.pid, l.tgid),
            ("my [odd]-name", 77, None)
        );
        assert_eq!(l.result(), Some("exceed_none_pte"));
    }

    #[test]
    fn reads_timestamps_syscalls_and_perf_lines() {
        let l = parse_line("  w-7 (7) [001] ..... 12.5: sys_madvise(start: 7f0000200000, len_in: 200000, behavior: 19)").unwrap();
        assert_eq!(l.ts_ns, 12_500_000_000);
        assert_eq!(l.event, "sys_enter_madvise");
        assert_eq!(l.fields["behavior"], "19");
        let l = parse_line("  w-7 (7) [001] ..... 12.500001: sys_madvise -> 0xfffffffffffffff5")
            .unwrap();
        assert_eq!(
            (l.event.as_str(), l.fields["ret"].as_str()),
            ("sys_exit_madvise", "0xfffffffffffffff5")
        );
        let l = parse_line("w-7 [001] 12.000000001: sys_enter_madvise:    start: 0x7f0000200000, len_in: 0x00200000, behavior: 0x00000019").unwrap();
        assert_eq!(
            (l.event.as_str(), l.ts_ns),
            ("sys_enter_madvise", 12_000_000_001)
        );
        let l = parse_perf_line("  my prog 10/11 [000]   3.000001: huge_memory:mm_collapse_huge_page: mm=0x1, isolated=1, status=succeeded").unwrap();
        assert_eq!((l.comm.as_str(), l.pid, l.tgid), ("my prog", 11, Some(10)));
        assert_eq!(
            (l.event.as_str(), l.result()),
            ("mm_collapse_huge_page", Some("succeeded"))
        );

        // Decoding: a call with a page_filled inside, joined.
        let mut t = ResultTable::builtin();
        let mut d = TextDecoder::new();
        let lines = [
            "w-7 (7) [001] ..... 1.0: sys_madvise(start: 7f0000200000, len_in: 200000, behavior: 19)",
            "w-7 (7) [001] ..... 1.1: mm_khugepaged_scan_file: mm=x, scan_pfn=0x10, filename=f, present=1, swap=0, result=page_filled",
            "w-7 (7) [001] ..... 1.2: mm_khugepaged_scan_file: mm=x, scan_pfn=0x10, filename=f, present=1, swap=0, result=brand_new",
            "w-7 (7) [001] ..... 1.3: sys_madvise -> 0xfffffffffffffff5",
        ];
        let out: Vec<Decoded> = lines
            .iter()
            .map(|l| d.decode(parse_line(l).unwrap(), &mut t))
            .collect();
        assert_eq!(out[0], Decoded::Other);
        let Decoded::Event(e) = &out[1] else { panic!() };
        assert_eq!(
            (e.result, e.call_ns, e.origin),
            (30, 1_000_000_000, Origin::Madvise)
        );
        let Decoded::Event(e) = &out[2] else { panic!() };
        assert_eq!(t.name(e.result), "brand_new");
        let Decoded::Event(e) = &out[3] else { panic!() };
        assert_eq!(
            (e.tracepoint, e.result, e.addr, e.index),
            (RecordKind::MadviseCall, 11, 0x7f0000200000, 0x200000)
        );
    }

    #[test]
    fn skips_comments_and_junk() {
        assert_eq!(parse_line("# tracer: nop"), None);
        assert_eq!(parse_line(""), None);
        assert_eq!(parse_line("no cpu field here"), None);
    }
}
