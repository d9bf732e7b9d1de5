//! The `liangma` command: key management, issuing and verifying codes.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = liangma::cli::Cli::parse();
    match liangma::cli::run(cli) {
        Ok(code) => code,
        // The reader went away (`liangma verify … | head -1`): what it wanted was written.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("liangma: {error:#}");
            ExitCode::from(liangma::cli::EXIT_ERROR)
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
