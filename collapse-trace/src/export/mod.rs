//! Machine-readable outputs.

pub mod json;
pub mod ndjson;
pub mod prometheus;
