use which::which;

/// Rebuild the eBPF object when bpf-linker changes: a new linker may produce different code.
fn main() {
    let bpf_linker = which("bpf-linker").expect(
        "bpf-linker not found on PATH: run `cargo xtask setup` (it builds bpf-linker against the nightly toolchain's LLVM)",
    );
    println!("cargo:rerun-if-changed={}", bpf_linker.display());
}
