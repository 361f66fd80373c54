//! Writing a record file: whole lines only, flushed after each drain batch and synced once a
//! [`SYNC_EVERY`], so that a killed recorder leaves a file readable up to its last line.

use std::{
    fs::File,
    io::{self, Write},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::{EventLines, Header, Trailer, TrailerLine};
use crate::model::event::Event;

/// Now, wall clock and CLOCK_MONOTONIC, in ns.
pub fn now_ns() -> (u64, u64) {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (wall, ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

enum Sink {
    /// Plain: whole batches of lines go to the file in one `write`.
    Plain(File),
    /// Compressed: each batch of lines handed over is one zstd frame of its own, compressed
    /// straight from the batch (a stream encoder first copies its input into its window, a
    /// fifth of `record`'s CPU time here) and written in one `write`. Readers decode
    /// concatenated frames as one stream.
    Zstd {
        file: File,
        compressor: zstd::bulk::Compressor<'static>,
        /// The frame being written (reused).
        frame: Vec<u8>,
    },
}

impl Sink {
    /// Writes `lines` (whole lines) to the file.
    fn write_lines(&mut self, lines: &[u8]) -> io::Result<()> {
        match self {
            Sink::Plain(f) => f.write_all(lines),
            Sink::Zstd {
                file,
                compressor,
                frame,
            } => {
                frame.clear();
                frame.reserve(zstd::zstd_safe::compress_bound(lines.len()));
                compressor.compress_to_buffer(lines, frame)?;
                file.write_all(frame)
            }
        }
    }

    fn file(&self) -> &File {
        match self {
            Sink::Plain(f) | Sink::Zstd { file: f, .. } => f,
        }
    }
}

/// How often a recording is synced to disk.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Lines are handed to the file (or the compressor) once this many bytes of them are
/// pending, and at the end of every drain batch. Fewer, larger writes cost less in the
/// kernel (64 KiB measured ~1% of a core more under a storm); still within the L2 cache.
const PENDING_BYTES: usize = 256 * 1024;

/// Writes a record file.
pub struct RecordWriter {
    sink: Sink,
    /// Whole lines not yet handed to the sink; events are serialized straight into it.
    pending: Vec<u8>,
    last_sync: Instant,
    lines: EventLines,
    /// Event lines written.
    pub written: u64,
}

impl RecordWriter {
    /// Creates `path` (zstd-compressed when it ends in `.zst`) and writes the header.
    pub fn create(path: &Path, header: &Header) -> Result<RecordWriter> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let sink = if path.extension().is_some_and(|e| e == "zst") {
            // Level 1: on event lines (which repeat themselves) both cheaper and smaller than
            // 3 (a 200,000 events/s storm: 10.6-11.6% of a core and 4.3 MB against
            // 12.5-13.5% and 4.4 MB).
            Sink::Zstd {
                file,
                compressor: zstd::bulk::Compressor::new(1).context("starting zstd")?,
                frame: Vec::new(),
            }
        } else {
            Sink::Plain(file)
        };
        let mut w = RecordWriter {
            sink,
            pending: Vec::with_capacity(PENDING_BYTES + 4096),
            last_sync: Instant::now(),
            lines: EventLines::default(),
            written: 0,
        };
        w.write(header)?;
        w.batch_end()?;
        Ok(w)
    }

    fn write<T: Serialize>(&mut self, value: &T) -> io::Result<()> {
        // Only whole lines reach the file: a crash can cut only the last line.
        let start = self.pending.len();
        if let Err(e) = serde_json::to_writer(&mut self.pending, value) {
            self.pending.truncate(start);
            return Err(e.into());
        }
        self.pending.push(b'\n');
        if self.pending.len() >= PENDING_BYTES {
            self.hand_over()?;
        }
        Ok(())
    }

    /// Pending lines to the sink.
    fn hand_over(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.sink.write_lines(&self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }

    /// Writes one event.
    pub fn event(&mut self, e: &Event) -> io::Result<()> {
        self.lines.append(&mut self.pending, e);
        self.pending.push(b'\n');
        self.written += 1;
        if self.pending.len() >= PENDING_BYTES {
            self.hand_over()?;
        }
        Ok(())
    }

    /// Ends a drain batch: writes (a whole zstd frame: everything so far decodes), and syncs
    /// to disk once a [`SYNC_EVERY`].
    pub fn batch_end(&mut self) -> io::Result<()> {
        self.hand_over()?;
        if self.last_sync.elapsed() >= SYNC_EVERY {
            self.sink.file().sync_data()?;
            self.last_sync = Instant::now();
        }
        Ok(())
    }

    /// Writes the trailer (in a frame of its own when compressed) and syncs.
    pub fn finish(mut self, trailer: Trailer) -> io::Result<()> {
        self.write(&TrailerLine { trailer })?;
        self.hand_over()?;
        self.sink.file().sync_all()
    }
}
