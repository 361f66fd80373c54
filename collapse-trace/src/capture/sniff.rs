//! Which format a capture is in, guessed from its first bytes (when `--format` does not say).

use crate::model::capture::Format;

use super::text;

/// Guesses the format from the first bytes.
pub fn sniff(head: &[u8]) -> Format {
    let text = String::from_utf8_lossy(&head[..head.len().min(64 * 1024)]);
    let first = text.trim_start();
    if first.starts_with('{') {
        return Format::Record;
    }
    let mut lines = text.lines().take(200);
    if lines.clone().any(|l| {
        let l = l.trim_start();
        l.starts_with("cpus=") || l.starts_with("version = ")
    }) {
        return Format::TraceCmd;
    }
    if lines.clone().any(|l| l.starts_with("# tracer:")) {
        return Format::Ftrace;
    }
    if lines.any(|l| {
        text::parse_perf_line(l).is_some()
            && (l.contains(" huge_memory:") || l.contains(" syscalls:"))
    }) {
        return Format::Perf;
    }
    Format::Ftrace
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_formats() {
        assert_eq!(sniff(b"{\"format\":1}"), Format::Record);
        assert_eq!(sniff(b"# tracer: nop\n#\n"), Format::Ftrace);
        assert_eq!(sniff(b"cpus=2\n  a-1 [000] 1.0: x: y\n"), Format::TraceCmd);
        assert_eq!(
            sniff(b"  a 1 [000] 1.000: huge_memory:mm_collapse_huge_page: mm=1, isolated=1, status=succeeded\n"),
            Format::Perf
        );
    }
}
