//! Every output made from the aggregation core: the versioned JSON documents, NDJSON lines,
//! the Prometheus page, and the post-mortem report (its document, text and plot). Reads
//! `model` only: never the kernel, never a capture file.

pub mod attempts;
pub mod json;
pub mod ndjson;
pub(crate) mod prometheus;
pub mod report;
pub(crate) mod system;
pub(crate) mod text;
