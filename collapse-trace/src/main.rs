//! The `collapse-trace` binary: everything lives in the library, see `cli`.

fn main() -> std::process::ExitCode {
    collapse_trace::cli::main()
}
