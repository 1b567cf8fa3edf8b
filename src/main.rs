//! The `headstart` command: a thin shell over the library. Arguments, printing and the demos live in `cli/`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
