use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

/// Builds collapse-trace-ebpf with the nightly toolchain (`-Z build-std=core`, bpf-linker) and
/// leaves the object in OUT_DIR, where `include_bytes_aligned!` embeds it in the binary.
fn main() -> anyhow::Result<()> {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let root = std::path::Path::new(&manifest)
        .parent()
        .ok_or_else(|| anyhow!("collapse-trace has no parent directory"))?
        .join("collapse-trace-ebpf");
    let root = root
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", root.display()))?;
    aya_build::build_ebpf(
        [Package {
            name: "collapse-trace-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        Toolchain::Nightly,
    )
    .context("building the eBPF object failed (run `cargo xtask setup` first: it installs rust-src and bpf-linker)")
}
