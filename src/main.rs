//! The `liangma` command: key management, issuing and verifying codes.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: under load the service allocates on one worker and frees
/// on another, and glibc's arenas then contend on their locks (docs/performance.md measured a
/// fifth of the service's CPU in malloc and free).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
