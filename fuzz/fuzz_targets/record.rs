//! Any bytes, read as a Record capture: an error or a report, never a panic.
#![no_main]

use collapse_trace::{capture::load_from, model::capture::Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(l) = load_from(Box::new(data), false, Some(Format::Record), &collapse_trace::model::results::ResultTable::builtin(), &mut || 0, &mut |_| {}, "fuzz") {
        let _ = collapse_trace::export::report::build(&l);
    }
});
