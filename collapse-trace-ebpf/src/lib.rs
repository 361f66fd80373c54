//! Empty on the host: the programs are the `collapse-trace` binary target, built for
//! bpfel-unknown-none by collapse-trace's build.rs. This library target exists so that cargo
//! knows the dependency and rebuilds when the programs change.
#![no_std]
