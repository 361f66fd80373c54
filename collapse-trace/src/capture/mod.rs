//! Readers of captures: collapse-trace's own record files ([`record`]), and text made without
//! collapse-trace ([`text`]: tracefs `trace`/`trace_pipe`, `trace-cmd report`, `perf
//! script`). Every input becomes [`Event`](crate::model::event::Event)s fed to one
//! [`Aggregate`], as live collection does.
//!
//! Error policy: a record file is strict (a bad line is an error naming its line number),
//! except that its last line may be cut (a killed recorder): then the capture is marked cut
//! short. Text captures are line-tolerant (they hold headers, other events, lost-event
//! markers): lines that are not understood are skipped and counted, and the first one is
//! named; a text input where no event is understood is an error.

//! The jobs: opening and decompressing (here), `lines` (a capped line reader), `sniff` (which
//! format), the record file ([`record`]: schema, line, writer, reader) and text imports
//! ([`text`]: parser, decoder, loader).

mod lines;
pub mod record;
mod sniff;
pub mod text;

use std::{
    cell::Cell,
    fs::File,
    io::{self, BufRead, BufReader, Read},
    path::Path,
    rc::Rc,
};

use anyhow::{Context as _, Result, bail};

use crate::model::{
    capture::{Format, Loaded},
    results::ResultTable,
};
use lines::{LineReader, memchr};

/// Counts the bytes read from the file (for a progress bar).
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Progress callbacks: called with the bytes of the file read so far, now and then.
pub type Progress<'a> = &'a mut dyn FnMut(u64);

/// Reads the capture at `path`: sniffs the format (unless `format` is given) and whether it
/// is zstd-compressed, and feeds every event to an aggregation core.
pub fn load(
    path: &Path,
    format: Option<Format>,
    names: &ResultTable,
    progress: Progress<'_>,
) -> Result<Loaded> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let count = Rc::new(Cell::new(0));
    let mut raw = BufReader::with_capacity(
        256 * 1024,
        Counting {
            inner: file,
            count: count.clone(),
        },
    );
    let compressed = raw
        .fill_buf()
        .with_context(|| format!("reading {}", path.display()))?
        .starts_with(&ZSTD_MAGIC);
    let reader: Box<dyn BufRead> = if compressed {
        let d = zstd::stream::read::Decoder::with_buffer(raw).context("starting zstd")?;
        Box::new(BufReader::with_capacity(256 * 1024, d))
    } else {
        Box::new(raw)
    };
    load_from(
        reader,
        compressed,
        format,
        names,
        &mut || count.get(),
        progress,
        &path.display().to_string(),
    )
}

/// [`load`] from any reader (`what` names it in errors); used by the fuzz targets too.
pub fn load_from(
    mut reader: Box<dyn BufRead + '_>,
    compressed: bool,
    format: Option<Format>,
    names: &ResultTable,
    bytes_read: &mut dyn FnMut() -> u64,
    progress: Progress<'_>,
    what: &str,
) -> Result<Loaded> {
    let head = reader
        .fill_buf()
        .with_context(|| format!("reading {what}"))?;
    if head.is_empty() {
        bail!("{what}: empty file: no capture in it");
    }
    // Captures are text: NUL bytes in the first line mean binary data (or /dev/zero, whose
    // one endless line would otherwise be read forever). Later junk lines are the readers'
    // business (skipped in text, an error naming the line in a record).
    let first_line = &head[..memchr(head).unwrap_or(head.len())];
    if first_line.contains(&0) {
        bail!(
            "{what}: holds NUL bytes, so it is binary data, not a capture; give a `record` file \
             or ftrace, trace-cmd or perf script text"
        );
    }
    let format = format.unwrap_or_else(|| sniff::sniff(head));
    let lines = LineReader::new(reader);
    match format {
        Format::Record => record::read::load_record(
            lines,
            compressed,
            bytes_read,
            progress,
            what,
            record::pipeline::BLOCK,
        ),
        f => text::load::load_text(lines, f, compressed, bytes_read, progress, what, names),
    }
}
