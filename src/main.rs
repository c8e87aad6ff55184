//! `containerd-shim-tether-v2`: the entry point containerd runs.

use std::process::ExitCode;

use tether::cli::{self, Flags};

fn main() -> ExitCode {
    // The shim's own helper for idmapped rootfs mounts, not a containerd
    // action.
    if std::env::args().nth(1).as_deref() == Some(cli::USERNS_HOLDER_ARG) {
        return cli::run_userns_holder();
    }
    // The holder of a pod's namespaces (see `tether::cli::POD_HOLDER_ARG`).
    if std::env::args().nth(1).as_deref() == Some(cli::POD_HOLDER_ARG) {
        return cli::run_pod_holder();
    }
    let flags = match Flags::parse(std::env::args().skip(1)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("containerd-shim-tether-v2: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(state) = &flags.upgrade_check {
        return match tether::check_upgrade_state(state.as_ref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("containerd-shim-tether-v2: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if flags.info {
        return match cli::info::run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("containerd-shim-tether-v2: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if flags.help {
        print!("{}", cli::USAGE);
        return ExitCode::SUCCESS;
    }
    if flags.version {
        println!("containerd-shim-tether-v2 {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let result = match flags.action.as_deref() {
        Some("start") => cli::start::run(&flags),
        Some("delete") => cli::delete::run(&flags),
        None => cli::serve::run(&flags),
        Some(other) => Err(anyhow::anyhow!(
            "unknown action {other:?} (expected start or delete)"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("containerd-shim-tether-v2: {e:#}");
            ExitCode::FAILURE
        }
    }
}
