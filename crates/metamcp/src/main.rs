//! The `metamcp` binary: parse the command line, run the command, print errors as one line.

// why: the relay allocates and frees small buffers on every call; glibc malloc took 17% of
// the gateway's CPU in the benchmark profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    metamcp::cli::main()
}
