//! The `shadowcat` binary.

/// mimalloc (without transparent huge pages, which would cost ~8 MiB of idle RSS):
/// less CPU per proxied call than the system allocator (the README's Performance
/// section), and it builds from one C file, unlike jemalloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    shadowcat::cli::main()
}
