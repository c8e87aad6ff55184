//! tetherctl's command line, without root, runc or a shim: what it refuses
//! before it reaches one. (The end-to-end tests, with real shims and runc,
//! are the workspace root's tests/tetherctl.rs; this test also makes
//! `cargo test` build the tetherctl binary they run.)

use std::process::Command;

fn tetherctl(state: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tetherctl"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn help_lists_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let out = tetherctl(dir.path(), &["--help"]);
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8(out.stdout).unwrap();
    for command in [
        "run", "exec", "ps", "logs", "attach", "stop", "rm", "upgrade",
    ] {
        assert!(
            help.contains(&format!("\n  {command} ")),
            "{command} in:\n{help}"
        );
    }
    assert!(
        !help.contains("log-driver"),
        "internal commands are hidden:\n{help}"
    );
}

#[test]
fn an_id_the_shim_would_refuse_is_refused_first() {
    let dir = tempfile::tempdir().unwrap();
    let out = tetherctl(dir.path(), &["state", "../x"]);
    assert_eq!(out.status.code(), Some(125), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains(r#"invalid container id "../x""#), "{err}");
}
