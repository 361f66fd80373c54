//! Lines of a capture, one at a time into a reused buffer, with a length cap: the record
//! reader's header and the text loader read through it, so that a file with no newline (or
//! an endless one) cannot take all memory.

use std::io::{self, BufRead};

/// The longest line read; longer lines are an error (record) or skipped (text).
pub const MAX_LINE: usize = 1 << 20;

/// One line out of a [`LineReader`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// End of input.
    Eof,
    /// A line that ended with a newline (not included).
    Complete,
    /// The last line, without a newline.
    Partial,
    /// A line longer than [`MAX_LINE`] (skipped up to its newline).
    TooLong,
}

/// Reads lines of at most [`MAX_LINE`] bytes into a reused buffer.
pub struct LineReader<R> {
    inner: R,
    /// Lines returned so far (the number of the last one).
    pub number: u64,
}

impl<R: BufRead> LineReader<R> {
    /// Wraps a reader.
    pub fn new(inner: R) -> Self {
        LineReader { inner, number: 0 }
    }

    /// The reader, past the lines read so far (for readers that take over after line 1).
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The next line into `buf` (cleared first).
    pub fn next(&mut self, buf: &mut Vec<u8>) -> io::Result<Line> {
        buf.clear();
        let mut too_long = false;
        loop {
            let chunk = match self.inner.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                if buf.is_empty() && !too_long {
                    return Ok(Line::Eof);
                }
                self.number += 1;
                return Ok(if too_long {
                    Line::TooLong
                } else {
                    Line::Partial
                });
            }
            let (take, done) = match memchr(chunk) {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            if !too_long {
                if buf.len() + take > MAX_LINE {
                    too_long = true;
                    buf.clear();
                } else {
                    buf.extend_from_slice(&chunk[..take]);
                }
            }
            self.inner.consume(if done { take + 1 } else { take });
            if done {
                self.number += 1;
                return Ok(if too_long {
                    Line::TooLong
                } else {
                    Line::Complete
                });
            }
        }
    }
}

pub(super) fn memchr(b: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_reader_caps_and_marks_the_last_line() {
        let mut data = b"one\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', MAX_LINE + 5));
        data.extend(b"\nthree");
        let mut r = LineReader::new(&data[..]);
        let mut buf = Vec::new();
        assert_eq!(r.next(&mut buf).unwrap(), Line::Complete);
        assert_eq!(buf, b"one");
        assert_eq!(r.next(&mut buf).unwrap(), Line::TooLong);
        assert_eq!(r.next(&mut buf).unwrap(), Line::Partial);
        assert_eq!((buf.as_slice(), r.number), (&b"three"[..], 3));
        assert_eq!(r.next(&mut buf).unwrap(), Line::Eof);
    }
}
