//! Reader for ftrace's text output (`trace`, `trace_pipe`) of the huge_memory events: the
//! independent record that tests compare collapse-trace's counts with, and later an input of
//! `report`.

use std::collections::BTreeMap;

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

/// Parses one line; `None` for comments, blank lines and lines that are not events.
///
/// Shape: `<comm>-<pid> [(<tgid>)] [<cpu>] <flags> <ts>: <event>: k=v, k=v, ...`
pub fn parse_line(line: &str) -> Option<FtraceLine> {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    // The CPU field "[NNN]" is the first bracket holding only digits; the comm cannot
    // be trusted not to contain brackets, so look for the first such one after a '-'.
    let mut search = 0;
    let (task_end, cpu, after_cpu) = loop {
        let open = search + line[search..].find(" [")?;
        let close = open + 2 + line[open + 2..].find(']')?;
        let inner = &line[open + 2..close];
        if !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit()) {
            break (open, inner.parse().ok()?, close + 1);
        }
        search = open + 2;
    };
    let mut task = line[..task_end].trim_end();
    let mut tgid = None;
    if task.ends_with(')')
        && let Some(open) = task.rfind('(')
    {
        tgid = task[open + 1..task.len() - 1].trim().parse().ok();
        task = task[..open].trim_end();
    }
    let dash = task.rfind('-')?;
    let pid = task[dash + 1..].parse().ok()?;
    let comm = task[..dash].to_string();

    // After the CPU: flags, timestamp "123.456:", then "event: fields".
    let rest = &line[after_cpu..];
    let ts_colon = rest.find(": ")?;
    let rest = &rest[ts_colon + 2..];
    let (event, body) = rest
        .split_once(": ")
        .unwrap_or((rest.trim_end_matches(':'), ""));
    let mut fields = BTreeMap::new();
    for part in body.split(", ") {
        if let Some((k, v)) = part.split_once('=') {
            fields.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    Some(FtraceLine {
        comm,
        pid,
        tgid,
        cpu,
        event: event.trim().to_string(),
        fields,
    })
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
    fn skips_comments_and_junk() {
        assert_eq!(parse_line("# tracer: nop"), None);
        assert_eq!(parse_line(""), None);
        assert_eq!(parse_line("no cpu field here"), None);
    }
}
