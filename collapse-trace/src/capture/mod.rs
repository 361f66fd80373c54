//! Readers of captures: ftrace text today; the record format and perf script later.

pub mod ftrace;
