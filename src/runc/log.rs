//! The runtime's log, per invocation: each runc call writes a JSON log of its
//! own, so its error is read from that file alone; afterwards the file joins
//! the bundle's `log.json` history.

use std::fs;
use std::io::{Read, Write};
use std::ops::{Deref, DerefMut};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One runtime invocation: its command, and the log file it alone writes.
pub(super) struct Invocation {
    pub(super) cmd: Command,
    pub(super) log: PathBuf,
}

impl Deref for Invocation {
    type Target = Command;
    fn deref(&self) -> &Command {
        &self.cmd
    }
}

impl DerefMut for Invocation {
    fn deref_mut(&mut self) -> &mut Command {
        &mut self.cmd
    }
}

/// Reads what one invocation logged (its last MiB), appends it to the
/// bundle's `history` (log.json) and removes the invocation's own file.
pub(super) fn keep_log(log: &Path, history: &Path) -> String {
    let mut text = String::new();
    let Ok(f) = fs::File::open(log) else {
        return text;
    };
    let _ = f.take(1 << 20).read_to_string(&mut text);
    let _ = fs::remove_file(log);
    if !text.is_empty() {
        let appended = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(history)
            .and_then(|mut h| h.write_all(text.as_bytes()));
        if let Err(e) = appended {
            tracing::debug!(error = %e, "keeping the runtime's log");
        }
    }
    text
}

pub(super) fn last_error_in(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Line {
        level: String,
        msg: String,
    }
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Line>(l).ok())
        .find(|l| matches!(l.level.as_str(), "error" | "fatal" | "panic"))
        .map(|l| l.msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_last_error_line() {
        let log = concat!(
            r#"{"level":"info","msg":"starting","time":"t"}"#,
            "\n",
            r#"{"level":"error","msg":"first","time":"t"}"#,
            "\n",
            "not json\n",
            r#"{"level":"error","msg":"exec: \"nope\": executable file not found in $PATH","time":"t"}"#,
            "\n",
            r#"{"level":"warning","msg":"later","time":"t"}"#,
            "\n"
        );
        assert_eq!(
            last_error_in(log).unwrap(),
            "exec: \"nope\": executable file not found in $PATH"
        );
        assert_eq!(last_error_in(""), None);
    }
}
