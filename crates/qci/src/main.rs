//! `qci`: the one binary. `qci serve` runs the API, the controller and the node agent;
//! `qci monitor` is the per-container monitor it starts; every other command is a client of
//! the HTTP API.

mod cli;
mod commands;
mod private_file;
mod serve;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    // The monitor forks, so it must run before any thread exists (no runtime, no logger).
    if let cli::Command::Monitor(m) = &args.command {
        return std::process::ExitCode::from(qci_runtime::monitor::launch(m.to_args()) as u8);
    }
    qci_image::init_tls();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(commands::run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
