//! The pidfd probe's answers written down for later shims (see
//! [`super::pidfd`]): `<dir>/<sha256 of the binary's identity>`, holding
//! `yes` or `no` and, on a second line, the binary's path. The directory is
//! made 0700 and used only while it is a directory of this user's that
//! nobody else can write to; each answer is a 0600 file replaced whole, so
//! a reader sees an old answer or a new one. Writing an answer also removes
//! those of binaries that are gone or have changed since (a runc upgraded,
//! a wrapper deleted), so the directory holds one file per binary in use.
//! Every failure here only means asking the binary again.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::pidfd::{identity, Identity};

/// The answer written down for `id`, if any (and if `dir` is safe to trust).
pub(super) fn read(dir: &Path, id: &Identity) -> Option<bool> {
    let name = file_name(id)?;
    if !trusted(dir) {
        return None;
    }
    let text = std::fs::read_to_string(dir.join(name)).ok()?;
    match text.lines().next() {
        Some("yes") => Some(true),
        Some("no") => Some(false),
        _ => None,
    }
}

/// Removes the answers whose binary is gone or is no longer the file they
/// were written for (and any other file that is not an answer).
fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str().filter(|n| !n.starts_with('.')) else {
            continue;
        };
        let path = entry.path();
        let current = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.lines().nth(1).map(identity))
            .and_then(|id| file_name(&id));
        if current.as_deref() != Some(name) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Writes `takes` down for `id`; failures are logged and otherwise ignored.
pub(super) fn write(dir: &Path, id: &Identity, takes: bool) {
    let Some(name) = file_name(id) else { return };
    let made = {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    };
    if let Err(e) = made {
        tracing::debug!(dir = %dir.display(), error = %e, "cannot keep the runtime's flags");
        return;
    }
    if !trusted(dir) {
        tracing::debug!(dir = %dir.display(), "not keeping the runtime's flags: the directory is not root's alone");
        return;
    }
    remove_stale(dir);
    let answer = if takes { "yes" } else { "no" };
    let data = format!("{answer}\n{}\n", id.path.display());
    // Replaced whole, as the shim's records are. Two shims of the same
    // runtime may write at once; they write the same answer.
    let written = crate::records::write_replacing_now(&dir.join(&name), data.as_bytes(), 0o600);
    if let Err(e) = written {
        tracing::debug!(dir = %dir.display(), error = %e, "cannot keep the runtime's flags");
    }
}

/// A real directory (not a link), owned by this user, that no group or
/// other may write to.
fn trusted(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(dir).is_ok_and(|m| {
        m.is_dir() && m.uid() == nix::unistd::geteuid().as_raw() && m.mode() & 0o022 == 0
    })
}

/// Only files that exist are written down.
fn file_name(id: &Identity) -> Option<String> {
    let file = id.file?;
    let mut digest = Sha256::new();
    digest.update(id.path.as_os_str().as_encoded_bytes());
    for n in file {
        digest.update(b"\0");
        digest.update(n.to_string().as_bytes());
    }
    Some(
        digest
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_read_back_for_the_same_file_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/flags");
        let bin = tmp.path().join("runc");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        let id = identity(bin.to_str().unwrap());
        assert_eq!(read(&dir, &id), None);
        write(&dir, &id, true);
        assert_eq!(read(&dir, &id), Some(true));
        write(&dir, &id, false);
        assert_eq!(read(&dir, &id), Some(false));

        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(file_name(&id).unwrap())), 0o600);
        // only the answer is left
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

        // the file rewritten: a different identity, not answered yet
        std::fs::write(&bin, "#!/bin/sh\nexit 0\n").unwrap();
        assert_eq!(read(&dir, &identity(bin.to_str().unwrap())), None);
        // a missing binary is never written down
        let gone = identity("/nonexistent/runc");
        write(&dir, &gone, true);
        assert_eq!(read(&dir, &gone), None);
    }

    #[test]
    fn writing_an_answer_removes_those_of_binaries_gone_or_changed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("flags");
        let bins: Vec<_> = ["gone", "changed", "kept", "new"]
            .iter()
            .map(|n| {
                let p = tmp.path().join(n);
                std::fs::write(&p, "#!/bin/sh\n").unwrap();
                p
            })
            .collect();
        let id = |p: &Path| identity(p.to_str().unwrap());
        let before: Vec<_> = bins[..3].iter().map(|b| id(b)).collect();
        for b in &before {
            write(&dir, b, true);
        }
        std::fs::write(dir.join("not-an-answer"), "yes\n").unwrap();
        std::fs::remove_file(&bins[0]).unwrap();
        std::fs::write(&bins[1], "#!/bin/sh\nexit 0\n").unwrap();
        write(&dir, &id(&bins[3]), false);

        let mut left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut want = vec![
            file_name(&before[2]).unwrap(),
            file_name(&id(&bins[3])).unwrap(),
        ];
        want.sort();
        assert_eq!(left, want);
        assert_eq!(read(&dir, &before[2]), Some(true));
        assert_eq!(read(&dir, &id(&bins[3])), Some(false));
    }

    #[test]
    fn a_directory_others_may_write_to_is_not_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("runc");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        let id = identity(bin.to_str().unwrap());
        let dir = tmp.path().join("flags");
        write(&dir, &id, true);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(read(&dir, &id), None);
        write(&dir, &id, false);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(
            read(&dir, &id),
            Some(true),
            "the untrusted write changed nothing"
        );
        // garbage in the file is no answer
        std::fs::write(dir.join(file_name(&id).unwrap()), "maybe\n").unwrap();
        assert_eq!(read(&dir, &id), None);
    }
}
