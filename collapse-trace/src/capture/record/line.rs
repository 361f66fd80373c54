//! The event line of a record file: [`RecordEvent`] (serde, for reading) and
//! [`EventLines`] (the hand-tuned writer, byte-equal to serde's), both generated from the one
//! field list.

use std::{
    borrow::Cow,
    fmt::{self, Write as _},
};

use collapse_trace_common::{Origin, RecordKind};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::OWNER_AS_CALLER;
use crate::model::event::{
    Escaped, Event, UnescapeError, event_fields, origin_name, owner_caller, unescape_into,
};

/// `comm` or `file` of an event line: raw bytes on the way out (escaped straight into the
/// output, no `String` built), the [`escape`](crate::model::event::escape)d text on the way
/// in (borrowed from the line unless JSON escapes made a copy necessary).
#[derive(Debug, Clone, PartialEq)]
pub enum Text<'a> {
    /// Raw bytes of an [`Event`], to write.
    #[cfg(test)]
    Raw(&'a [u8]),
    /// Escaped text, as read.
    Escaped(Cow<'a, str>),
}

impl Text<'_> {
    fn is_empty(&self) -> bool {
        match self {
            #[cfg(test)]
            Text::Raw(b) => b.is_empty(),
            Text::Escaped(s) => s.is_empty(),
        }
    }

    /// The raw bytes into `out` (cleared first).
    fn bytes_into(&self, out: &mut Vec<u8>) -> Result<(), UnescapeError> {
        match self {
            #[cfg(test)]
            Text::Raw(b) => {
                out.clear();
                out.extend_from_slice(b);
                Ok(())
            }
            Text::Escaped(s) => unescape_into(s, out),
        }
    }
}

impl Default for Text<'_> {
    fn default() -> Self {
        Text::Escaped(Cow::Borrowed(""))
    }
}

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            #[cfg(test)]
            Text::Raw(b) => s.collect_str(&Escaped(b)),
            Text::Escaped(t) => s.serialize_str(t),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Through a newtype so that `borrow` applies: no copy unless JSON escapes need one.
        #[derive(Deserialize)]
        struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
        Ok(Text::Escaped(Borrowed::deserialize(d)?.0))
    }
}

/// A field's type as a record line holds it: serde's view for reading and for the test that
/// pins the writer, and the hand-tuned writer's. The serde writing side (`to_line`,
/// `RecordEvent::new`, `Text::Raw`) only exists in tests: the product writes with
/// [`EventLines`].
pub trait LineValue {
    /// The value in a line: the event's own on the way out (borrowed), the line's on the way
    /// in.
    type Line<'a>
    where
        Self: 'a;
    /// The line's value for an event's.
    #[cfg(test)]
    fn to_line(&self) -> Self::Line<'_>;
    /// The event's value for a line's, into `out` (reusing its buffer); `key` names the
    /// field in an error.
    fn from_line(line: &Self::Line<'_>, out: &mut Self, key: &str) -> Result<(), String>;
    /// Appends `key` (`,"name":`) and the value, unless it is left out (zero, false, empty).
    fn append(&self, key: &[u8], out: &mut Vec<u8>);
    /// Appends `key` and the value, even when zero or empty (an owner field that is not the
    /// caller's).
    fn append_always(&self, key: &[u8], out: &mut Vec<u8>);
}

macro_rules! int_line_value {
    ($($t:ty),*) => {$(
        impl LineValue for $t {
            type Line<'a> = $t;
            #[cfg(test)]
            fn to_line(&self) -> $t {
                *self
            }
            fn from_line(line: &$t, out: &mut $t, _: &str) -> Result<(), String> {
                *out = *line;
                Ok(())
            }
            fn append(&self, key: &[u8], out: &mut Vec<u8>) {
                if *self != 0 {
                    num(out, key, *self);
                }
            }
            fn append_always(&self, key: &[u8], out: &mut Vec<u8>) {
                num(out, key, *self);
            }
        }
    )*};
}
int_line_value!(u32, i32, u64, i64);

impl LineValue for bool {
    type Line<'a> = bool;
    #[cfg(test)]
    fn to_line(&self) -> bool {
        *self
    }
    fn from_line(line: &bool, out: &mut bool, _: &str) -> Result<(), String> {
        *out = *line;
        Ok(())
    }
    fn append(&self, key: &[u8], out: &mut Vec<u8>) {
        if *self {
            out.extend_from_slice(key);
            out.extend_from_slice(b"true");
        }
    }
    fn append_always(&self, key: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(key);
        out.extend_from_slice(if *self { b"true" } else { b"false" });
    }
}

impl LineValue for Vec<u8> {
    type Line<'a> = Text<'a>;
    #[cfg(test)]
    fn to_line(&self) -> Text<'_> {
        Text::Raw(self)
    }
    fn from_line(line: &Text<'_>, out: &mut Vec<u8>, key: &str) -> Result<(), String> {
        line.bytes_into(out).map_err(|e| format!("{key}: {e}"))
    }
    fn append(&self, key: &[u8], out: &mut Vec<u8>) {
        if !self.is_empty() {
            self.append_always(key, out);
        }
    }
    fn append_always(&self, key: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(key);
        escaped_string(out, self);
    }
}

impl LineValue for Origin {
    type Line<'a> = Cow<'a, str>;
    #[cfg(test)]
    fn to_line(&self) -> Cow<'_, str> {
        Cow::Borrowed(origin_name(*self))
    }
    fn from_line(line: &Cow<'_, str>, out: &mut Origin, key: &str) -> Result<(), String> {
        *out = match &**line {
            "khugepaged" => Origin::Khugepaged,
            "madvise" => Origin::Madvise,
            "unknown" => Origin::Unknown,
            o => return Err(format!("unknown {key} {o:?}")),
        };
        Ok(())
    }
    fn append(&self, key: &[u8], out: &mut Vec<u8>) {
        self.append_always(key, out);
    }
    fn append_always(&self, key: &[u8], out: &mut Vec<u8>) {
        // Always written: a plain ASCII word, nothing to escape.
        out.extend_from_slice(key);
        out.push(b'"');
        out.extend_from_slice(origin_name(*self).as_bytes());
        out.push(b'"');
    }
}

/// Whether serde leaves a line value out (the writer's rule, for serde's side).
pub trait Omit {
    /// Left out of a line.
    fn omit(&self) -> bool;
}

macro_rules! omit_zero {
    ($($t:ty),*) => {$(
        impl Omit for $t {
            fn omit(&self) -> bool {
                *self == <$t>::default()
            }
        }
    )*};
}
omit_zero!(u32, i32, u64, i64, bool);

impl Omit for Text<'_> {
    fn omit(&self) -> bool {
        self.is_empty()
    }
}

impl Omit for Cow<'_, str> {
    fn omit(&self) -> bool {
        false
    }
}

/// Generates [`RecordEvent`], its conversions and [`EventLines::append`] from the field list
/// ([`event_fields`]).
macro_rules! record_line {
    (
        pre { $( $(#[doc = $pd:literal])* $pn:ident $pk:literal : $pt:ty = $pdec:expr, )* }
        who { $( $(#[doc = $wd:literal])* $wn:ident $wk:literal : $wt:ty = $wdec:expr, )* }
        owner { $( $(#[doc = $od:literal])* $on:ident $ok:literal : $ot:ty = $odec:expr, )* }
        what { $( $(#[doc = $xd:literal])* $xn:ident $xk:literal : $xt:ty = $xdec:expr, )* }
    ) => {
        /// One event: every field of [`Event`], losslessly (`comm` and `file` are
        /// [`escape`](crate::model::event::escape)d, which
        /// [`unescape`](crate::model::event::unescape) reverses). Version 2 leaves out every
        /// field that is zero, false or empty, except `ts_ns`, `tracepoint` and `origin`; a
        /// reader takes an absent field as that zero (version 1 wrote every field). Version
        /// 4 leaves out each owner field that repeats the caller's (`owner_comm` when it is
        /// `comm`) and writes the others even when zero or empty; before it, an absent owner
        /// field was zero or empty.
        #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
        #[serde(bound(deserialize = "'de: 'a"))]
        pub struct RecordEvent<'a> {
            /// CLOCK_MONOTONIC ns.
            pub ts_ns: u64,
            /// Record kind name.
            #[serde(borrow)]
            pub tracepoint: Cow<'a, str>,
            $(
                $(#[doc = $pd])*
                #[serde(rename = $pk, default, skip_serializing_if = "Omit::omit")]
                pub $pn: <$pt as LineValue>::Line<'a>,
            )*
            $(
                $(#[doc = $wd])*
                #[serde(rename = $wk, default, skip_serializing_if = "Omit::omit")]
                pub $wn: <$wt as LineValue>::Line<'a>,
            )*
            $(
                $(#[doc = $od])*
                ///
                /// Absent: the caller's (version 4), zero or empty (before).
                #[serde(rename = $ok, default, skip_serializing_if = "Option::is_none")]
                pub $on: Option<<$ot as LineValue>::Line<'a>>,
            )*
            $(
                $(#[doc = $xd])*
                #[serde(rename = $xk, default, skip_serializing_if = "Omit::omit")]
                pub $xn: <$xt as LineValue>::Line<'a>,
            )*
        }

        impl<'a> RecordEvent<'a> {
            /// The line for an event (borrows it: nothing is copied or allocated).
            #[cfg(test)]
            pub fn new(e: &'a Event) -> RecordEvent<'a> {
                RecordEvent {
                    ts_ns: e.ts_ns,
                    tracepoint: Cow::Borrowed(e.tracepoint.name()),
                    $( $pn: LineValue::to_line(&e.$pn), )*
                    $( $wn: LineValue::to_line(&e.$wn), )*
                    $( $on: (e.$on != owner_caller!(e.$on)).then(|| LineValue::to_line(&e.$on)), )*
                    $( $xn: LineValue::to_line(&e.$xn), )*
                }
            }

            /// Back to an [`Event`], into `e`, reusing its byte buffers; `version` is the
            /// file's (it decides what an absent owner field means).
            pub fn fill(&self, e: &mut Event, version: u32) -> Result<(), String> {
                e.tracepoint = RecordKind::from_name(&self.tracepoint)
                    .ok_or_else(|| format!("unknown tracepoint {:?}", self.tracepoint))?;
                e.ts_ns = self.ts_ns;
                $( LineValue::from_line(&self.$pn, &mut e.$pn, $pk)?; )*
                $( LineValue::from_line(&self.$wn, &mut e.$wn, $wk)?; )*
                $(
                    match &self.$on {
                        Some(v) => LineValue::from_line(v, &mut e.$on, $ok)?,
                        None if version >= OWNER_AS_CALLER => {
                            e.$on.clone_from(&owner_caller!(e.$on))
                        }
                        None => e.$on = Default::default(),
                    }
                )*
                $( LineValue::from_line(&self.$xn, &mut e.$xn, $xk)?; )*
                Ok(())
            }
        }

        /// The `who` and `owner` fields of the last line written (see [`EventLines`]).
        #[derive(Debug, Clone, PartialEq)]
        struct Who {
            $( $wn: $wt, )*
            $( $on: $ot, )*
        }

        impl EventLines {
            /// Appends the line of `e`, without its newline.
            pub fn append(&mut self, out: &mut Vec<u8>, e: &Event) {
                num(out, b"{\"ts_ns\":", e.ts_ns);
                // Kind names are plain ASCII words: nothing to escape.
                out.extend_from_slice(b",\"tracepoint\":\"");
                out.extend_from_slice(e.tracepoint.name().as_bytes());
                out.push(b'"');
                $( e.$pn.append(concat!(",\"", $pk, "\":").as_bytes(), out); )*
                let same = self
                    .who
                    .as_ref()
                    .is_some_and(|w| true $( && w.$wn == e.$wn )* $( && w.$on == e.$on )*);
                if !same {
                    let t = &mut self.who_text;
                    t.clear();
                    $( e.$wn.append(concat!(",\"", $wk, "\":").as_bytes(), t); )*
                    $(
                        if e.$on != owner_caller!(e.$on) {
                            e.$on.append_always(concat!(",\"", $ok, "\":").as_bytes(), t);
                        }
                    )*
                    self.who = Some(Who { $( $wn: e.$wn.clone(), )* $( $on: e.$on.clone(), )* });
                }
                out.extend_from_slice(&self.who_text);
                $( e.$xn.append(concat!(",\"", $xk, "\":").as_bytes(), out); )*
                out.push(b'}');
            }
        }
    };
}

event_fields!(record_line);

#[cfg(test)]
impl RecordEvent<'_> {
    /// Back to a new [`Event`].
    pub fn to_event(&self) -> Result<Event, String> {
        let mut e = Event::empty();
        self.fill(&mut e, super::VERSION)?;
        Ok(e)
    }
}

/// Writes event lines: exactly the bytes serde_json writes for `RecordEvent::new(e)` (a test
/// holds them equal for every kind of field value), written straight. `record` writes
/// 400,000 lines a second under a storm; through serde_json a line costs ~220 ns (a per-byte
/// escape scan of every key, a write call per fragment), this way ~60 ns.
#[derive(Debug, Default)]
pub struct EventLines {
    /// The `who` fields of the last line and their text: events of one thread repeat it, and
    /// copying it is cheaper than writing it again.
    who: Option<Who>,
    who_text: Vec<u8>,
}

fn num(out: &mut Vec<u8>, key: &[u8], v: impl itoa::Integer) {
    out.extend_from_slice(key);
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends the line of `e` without its newline (see [`EventLines`], which is faster for a
/// stream of events).
#[cfg(test)]
pub fn append_event_line(out: &mut Vec<u8>, e: &Event) {
    EventLines::default().append(out, e);
}

/// `bytes` [`escape`](crate::model::event::escape)d, as a JSON string.
fn escaped_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    // Printable ASCII but `"` and `\`: the same in both escapings (the usual comm or name).
    if bytes
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.extend_from_slice(bytes);
    } else {
        // escape() writes no control character: of JSON's escapes only `\"` and `\\` occur.
        struct Json<'a>(&'a mut Vec<u8>);
        impl fmt::Write for Json<'_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                for &b in s.as_bytes() {
                    debug_assert!(b >= 0x20, "escape() wrote a control character");
                    if b == b'"' || b == b'\\' {
                        self.0.push(b'\\');
                    }
                    self.0.push(b);
                }
                Ok(())
            }
        }
        // Writing into a Vec cannot fail.
        let _ = write!(Json(out), "{}", Escaped(bytes));
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::record::tests::sample_events;

    #[test]
    fn events_round_trip_losslessly() {
        let events = sample_events();
        let mut lines = EventLines::default();
        let full = &events[1];
        for (i, e) in events.iter().enumerate() {
            // Each event twice (the second line copies the pid..cgroup_id text of the first),
            // between others, and the same thread with another comm, origin or cgroup.
            let prev = &events[i.saturating_sub(1)];
            let mut other = e.clone();
            match i % 3 {
                0 => other.comm.push(b'x'),
                1 => other.origin = Origin::Khugepaged,
                _ => other.cgroup_id ^= 1,
            }
            for e in [e, e, prev, e, &other, e] {
                let mut line = Vec::new();
                lines.append(&mut line, e);
                // The direct writer writes what serde writes for the RecordEvent.
                assert_eq!(
                    String::from_utf8_lossy(&line),
                    serde_json::to_string(&RecordEvent::new(e)).unwrap(),
                    "{e:?}"
                );
                let back: RecordEvent = serde_json::from_slice(&line).unwrap();
                assert_eq!(
                    back.to_event().unwrap(),
                    *e,
                    "{}",
                    String::from_utf8_lossy(&line)
                );
                // Into a used event: nothing of the old one stays.
                let mut reused = full.clone();
                back.fill(&mut reused, super::super::VERSION).unwrap();
                assert_eq!(reused, *e);
            }
        }
    }

    #[test]
    fn zero_fields_are_left_out() {
        let e = Event::empty();
        let mut line = Vec::new();
        append_event_line(&mut line, &e);
        assert_eq!(
            String::from_utf8_lossy(&line),
            r#"{"ts_ns":0,"tracepoint":"mm_khugepaged_scan_file","origin":"unknown"}"#
        );
    }

    #[test]
    fn an_owner_field_is_left_out_where_it_repeats_the_callers() {
        let mut e = Event::empty();
        e.tracepoint = RecordKind::MadviseCall;
        e.origin = Origin::Madvise;
        (e.pid, e.tgid, e.comm, e.cgroup_id) = (7, 7, b"app".to_vec(), 9);
        (e.owner_tgid, e.owner_comm, e.owner_cgroup_id) = (7, b"app".to_vec(), 9);
        let line = |e: &Event| {
            let mut out = Vec::new();
            append_event_line(&mut out, e);
            String::from_utf8(out).unwrap()
        };
        let same = line(&e);
        assert_eq!(
            same,
            r#"{"ts_ns":0,"tracepoint":"madvise_collapse","pid":7,"tgid":7,"comm":"app","origin":"madvise","cgroup_id":9}"#
        );
        let read = |line: &str, version| {
            let rec: RecordEvent = serde_json::from_str(line).unwrap();
            let mut back = Event::empty();
            rec.fill(&mut back, version).unwrap();
            back
        };
        assert_eq!(read(&same, 4), e);
        // Before version 4 an absent owner field was no owner.
        let v3 = read(&same, 3);
        assert_eq!(
            (v3.owner_tgid, v3.owner_comm.as_slice(), v3.owner_cgroup_id),
            (0, &b""[..], 0)
        );
        // No owner, under a caller that has one of each: written as zero and empty.
        let mut none = e.clone();
        (none.owner_tgid, none.owner_comm, none.owner_cgroup_id) = (0, Vec::new(), 0);
        let l = line(&none);
        assert!(
            l.ends_with(r#""cgroup_id":9,"owner_tgid":0,"owner_comm":"","owner_cgroup_id":0}"#),
            "{l}"
        );
        assert_eq!(read(&l, 4), none);
        // Another owner in the caller's cgroup: only the differing fields.
        let mut other = e.clone();
        (other.owner_tgid, other.owner_comm) = (8, b"db".to_vec());
        let l = line(&other);
        assert!(
            l.ends_with(r#""cgroup_id":9,"owner_tgid":8,"owner_comm":"db"}"#),
            "{l}"
        );
        assert_eq!(read(&l, 4), other);
    }

    #[test]
    fn version_1_lines_read() {
        // Version 1 wrote every field, zero or not.
        let v1 = br#"{"ts_ns":5,"tracepoint":"madvise_collapse","result":0,"pid":7,"tgid":7,"comm":"a\\x0ab\"","origin":"madvise","cgroup_id":1,"file":"","pfn":0,"present":0,"swap":0,"is_shmem":false,"nr":0,"index":2097152,"addr":4096,"call_ns":3,"referenced":0,"none_or_zero":0,"unmapped":0,"isolated":0,"process_madvise":false}"#;
        let line: RecordEvent = serde_json::from_slice(v1).unwrap();
        let mut e = Event::empty();
        line.fill(&mut e, 1).unwrap();
        let mut want = Event::empty();
        want.ts_ns = 5;
        want.tracepoint = RecordKind::MadviseCall;
        want.pid = 7;
        want.tgid = 7;
        want.comm = b"a\nb\"".to_vec();
        want.origin = Origin::Madvise;
        want.cgroup_id = 1;
        want.index = 2 << 20;
        want.addr = 4096;
        want.call_ns = 3;
        assert_eq!(e, want);
    }
}
