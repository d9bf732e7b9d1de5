//! The `liangma` command: key management, issuing and verifying codes.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = liangma::cli::Cli::parse();
    match liangma::cli::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("liangma: {error:#}");
            ExitCode::from(liangma::cli::EXIT_ERROR)
        }
    }
}
