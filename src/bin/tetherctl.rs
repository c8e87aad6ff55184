//! `tetherctl`: run containers through tether shims without containerd.

fn main() -> std::process::ExitCode {
    tether::ctl::main()
}
