//! `qci`: the one binary. `qci serve` runs the API, the controller and the node agent;
//! `qci monitor` is the per-container monitor it starts; `qci pause` holds a gVisor sandbox;
//! every other command is a client of the HTTP API.

mod cli;
mod commands;
mod private_file;
mod serve;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // `qci monitor` (started by `qci serve`, not by hand) forks, so it must run before any
    // thread exists (no runtime, no logger). Its arguments are read by hand, before clap
    // builds the whole CLI: the monitor keeps for its life every page touched before it
    // forks, and there is one monitor per container.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "monitor") {
        return match qci_runtime::MonitorArgs::from_args(&argv[2..]) {
            Ok(m) => std::process::ExitCode::from(qci_runtime::monitor::launch(m) as u8),
            Err(e) => {
                eprintln!("qci monitor: {e}");
                std::process::ExitCode::from(2)
            }
        };
    }
    // `qci pause`: the root process of a gVisor sandbox (qci-runtime's gvisor.rs), which holds
    // the sandbox while its containers come and go. It does nothing, for ever, and is killed
    // with the sandbox. Not a command for people: not in the CLI's help.
    if argv.get(1).is_some_and(|a| a == "pause") {
        loop {
            nix::unistd::pause();
        }
    }
    drop(argv);
    let args = cli::Cli::parse();
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
