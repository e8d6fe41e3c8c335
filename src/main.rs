//! The `shadowcat` binary.

fn main() -> std::process::ExitCode {
    shadowcat::cli::main()
}
