//! collapse-trace: shows why Linux transparent-huge-page collapses (khugepaged and
//! MADV_COLLAPSE) succeed or fail.
//!
//! One event flows one way: tracepoint -> eBPF program -> (per-CPU counters, per-CPU event
//! rings) -> [`kernel::stream`] -> [`model::aggregate`] -> views ([`export`], [`tui`]), every
//! attaching command through one [`session`]. Views read [`model`] only; the kernel side never
//! knows about views. docs/architecture.md has the layers (checked by tests/layers.rs).
//!
//! Public only where the binary, the integration tests, the examples or the fuzz targets
//! use it: the rest is `pub(crate)`, so that the compiler reports code nothing uses.

pub mod capture;
pub mod cli;
pub(crate) mod cmd;
pub mod export;
pub mod kernel;
pub mod model;
pub mod provoke;
pub(crate) mod session;
pub mod tui;
pub(crate) mod values;
pub mod web;
