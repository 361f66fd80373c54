//! unescape never panics, and inverts escape for any bytes.
#![no_main]

use collapse_trace::model::event::{escape, unescape};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    assert_eq!(unescape(&escape(data)).unwrap(), data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = unescape(s);
    }
});
