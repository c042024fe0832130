//! The `metamcp` binary: parse the command line, run the command, print errors as one line.

fn main() -> std::process::ExitCode {
    metamcp::cli::main()
}
