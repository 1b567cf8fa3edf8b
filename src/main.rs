//! The `headstart` command: a thin shell over the library. Arguments, printing and the demos live in `cli/`.

mod cli;

fn main() -> std::process::ExitCode {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`headstart embed … | head`) would panic. With the
    // default action the process ends quietly there, as Unix tools do; output files are still only ever
    // renamed into place whole.
    #[cfg(unix)]
    // SAFETY: called first thing, before any other thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    cli::main()
}
