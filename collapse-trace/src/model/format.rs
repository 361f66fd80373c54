//! A tracepoint's `format` file, parsed: every field's offset and size, and the
//! `__print_symbolic` tables of `print fmt` that name each result number. Both drift between
//! kernels, so they are read at start rather than compiled in (the kernel layer reads the
//! files; this only parses text).

use std::{collections::BTreeMap, path::PathBuf};

use thiserror::Error;

/// A `format` file that could not be read or understood.
#[derive(Debug, Error)]
pub enum FormatError {
    /// I/O error reading the file.
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// A line that looks like a field but does not parse.
    #[error("format line {line}: {why}: {text:?}")]
    BadField {
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        why: &'static str,
        /// The line.
        text: String,
    },
    /// No `ID:` line.
    #[error("format file has no ID line")]
    NoId,
}

/// One field of a tracepoint record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The C declaration without the name, e.g. `unsigned long` or `__data_loc char[]`.
    pub ctype: String,
    /// The field name.
    pub name: String,
    /// Offset from the start of the record.
    pub offset: u32,
    /// Size in bytes (4 for a `__data_loc`: the offset/length word).
    pub size: u32,
    /// Whether the kernel calls it signed.
    pub signed: bool,
}

impl Field {
    /// A `__data_loc` field: a u32 whose low 16 bits are the offset of the data from the
    /// record start and whose high 16 bits are its length.
    pub fn is_data_loc(&self) -> bool {
        self.ctype.starts_with("__data_loc")
    }
}

/// A parsed `format` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFormat {
    /// The event name.
    pub name: String,
    /// The event id (what perf_event_open takes).
    pub id: u32,
    /// The event's own fields (the `common_*` ones excluded).
    pub fields: Vec<Field>,
    /// `__print_symbolic` tables by the field they decode (`result`, `status`, ...).
    pub symbols: BTreeMap<String, BTreeMap<i64, String>>,
}

impl EventFormat {
    /// The named field, if the kernel has it.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// Parses the text of a tracefs `format` file.
pub fn parse_format(text: &str) -> Result<EventFormat, FormatError> {
    let mut name = String::new();
    let mut id = None;
    let mut fields = Vec::new();
    let mut symbols = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("name:") {
            name = rest.trim().to_string();
        } else if let Some(rest) = trimmed.strip_prefix("ID:") {
            id = rest.trim().parse().ok();
        } else if trimmed.starts_with("field:") {
            let field = parse_field(trimmed).map_err(|why| FormatError::BadField {
                line: line_no,
                why,
                text: trimmed.to_string(),
            })?;
            if !field.name.starts_with("common_") {
                fields.push(field);
            }
        } else if let Some(rest) = trimmed.strip_prefix("print fmt:") {
            symbols = parse_print_symbolic(rest);
        }
    }
    Ok(EventFormat {
        name,
        id: id.ok_or(FormatError::NoId)?,
        fields,
        symbols,
    })
}

/// `field:unsigned long pfn;\toffset:16;\tsize:8;\tsigned:0;`
fn parse_field(line: &str) -> Result<Field, &'static str> {
    let mut decl = None;
    let mut offset = None;
    let mut size = None;
    let mut signed = false;
    for part in line.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once(':').ok_or("part without ':'")?;
        match key.trim() {
            "field" => decl = Some(value.trim()),
            "offset" => offset = Some(value.trim().parse().map_err(|_| "bad offset")?),
            "size" => size = Some(value.trim().parse().map_err(|_| "bad size")?),
            "signed" => signed = value.trim() == "1",
            _ => {} // newer kernels may add keys; ignore them
        }
    }
    let decl = decl.ok_or("no declaration")?;
    // The name is the last identifier; an array suffix belongs to the type.
    let (ctype, name) = decl.rsplit_once(' ').ok_or("declaration without a type")?;
    let (name, array) = match name.find('[') {
        Some(i) => (&name[..i], &name[i..]),
        None => (name, ""),
    };
    let name = name.trim_start_matches('*');
    if name.is_empty() {
        return Err("empty field name");
    }
    Ok(Field {
        ctype: format!("{}{}", ctype.trim(), array),
        name: name.to_string(),
        offset: offset.ok_or("no offset")?,
        size: size.ok_or("no size")?,
        signed,
    })
}

/// Finds every `__print_symbolic(REC->field, {N, "name"}, ...)` in a print fmt line.
fn parse_print_symbolic(fmt: &str) -> BTreeMap<String, BTreeMap<i64, String>> {
    let mut out = BTreeMap::new();
    let mut rest = fmt;
    while let Some(start) = rest.find("__print_symbolic(") {
        rest = &rest[start + "__print_symbolic(".len()..];
        let Some(comma) = rest.find(',') else { break };
        let field = rest[..comma].trim().trim_start_matches("REC->").to_string();
        rest = &rest[comma + 1..];
        let mut table = BTreeMap::new();
        // Pairs until the closing parenthesis of this call.
        loop {
            let t = rest.trim_start();
            let Some(body) = t.strip_prefix('{') else {
                break;
            };
            let Some(end) = body.find('}') else { break };
            let pair = &body[..end];
            if let Some((num, label)) = pair.split_once(',') {
                let label = label.trim().trim_matches('"').to_string();
                if let Some(n) = parse_int(num.trim()) {
                    table.insert(n, label);
                }
            }
            rest = body[end + 1..].trim_start();
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
        if !table.is_empty() {
            out.insert(field, table);
        }
    }
    out
}

fn parse_int(s: &str) -> Option<i64> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let v = match s.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16).ok()?,
        None => s.parse().ok()?,
    };
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCAN_FILE: &str = include_str!("../../tests/data/mm_khugepaged_scan_file.format");
    const COLLAPSE_FILE: &str = include_str!("../../tests/data/mm_khugepaged_collapse_file.format");

    #[test]
    fn parses_real_scan_file() {
        let f = parse_format(SCAN_FILE).unwrap();
        assert_eq!(f.name, "mm_khugepaged_scan_file");
        assert!(f.id > 0);
        let names: Vec<_> = f.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["mm", "pfn", "filename", "present", "swap", "result"]
        );
        let filename = f.field("filename").unwrap();
        assert!(filename.is_data_loc());
        assert_eq!((filename.offset, filename.size), (24, 4));
        let result = f.field("result").unwrap();
        assert_eq!((result.offset, result.size, result.signed), (36, 4, true));
        let table = &f.symbols["result"];
        assert_eq!(table[&0], "failed");
        assert_eq!(table[&1], "succeeded");
        assert_eq!(table[&30], "page_filled");
        assert_eq!(table.len(), 31);
    }

    #[test]
    fn parses_real_collapse_file() {
        let f = parse_format(COLLAPSE_FILE).unwrap();
        let is_shmem = f.field("is_shmem").unwrap();
        assert_eq!(
            (is_shmem.offset, is_shmem.size, is_shmem.ctype.as_str()),
            (40, 1, "bool")
        );
        assert_eq!(f.field("nr").unwrap().offset, 48);
        assert_eq!(f.field("result").unwrap().offset, 52);
        assert_eq!(f.symbols["result"][&5], "exceed_none_pte");
    }

    #[test]
    fn moved_field_and_added_result() {
        // A hypothetical newer kernel: `result` moved, a result added, keys added.
        let text = SCAN_FILE
            .replace("offset:36;\tsize:4;", "offset:40;\tsize:4;")
            .replace(
                "{30, \"page_filled\"})",
                "{30, \"page_filled\"}, {31, \"page_dirty_or_writeback\"})",
            )
            .replace("signed:1;", "signed:1;\tfuture:7;");
        let f = parse_format(&text).unwrap();
        assert_eq!(f.field("result").unwrap().offset, 40);
        assert_eq!(f.symbols["result"][&31], "page_dirty_or_writeback");
        assert_eq!(f.symbols["result"].len(), 32);
    }

    #[test]
    fn arrays_pointers_and_several_tables() {
        let text = "name: x\nID: 7\nformat:\n\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
                    \tfield:struct mm_struct * mm;\toffset:24;\tsize:8;\tsigned:0;\n\n\
                    print fmt: \"a=%s b=%s\", __print_symbolic(REC->a, {0x1, \"one\"}, {-2, \"minus two\"}), \
                    __print_symbolic(REC->b, {3, \"three\"})\n";
        let f = parse_format(text).unwrap();
        assert_eq!(f.fields[0].name, "comm");
        assert_eq!(f.fields[0].ctype, "char[16]");
        assert_eq!(f.fields[1].name, "mm");
        assert_eq!(f.symbols["a"][&1], "one");
        assert_eq!(f.symbols["a"][&-2], "minus two");
        assert_eq!(f.symbols["b"][&3], "three");
    }

    #[test]
    fn bad_lines_are_errors_with_line_numbers() {
        let text = "name: x\nID: 7\nformat:\n\tfield:int result;\toffset:zz;\tsize:4;\tsigned:1;\n";
        let err = parse_format(text).unwrap_err().to_string();
        assert!(
            err.contains("line 4") && err.contains("bad offset"),
            "{err}"
        );
        assert!(matches!(parse_format("name: x\n"), Err(FormatError::NoId)));
    }
}
