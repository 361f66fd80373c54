//! Machine-readable outputs.

pub mod json;
