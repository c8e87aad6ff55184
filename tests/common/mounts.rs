//! Mounts in this process's mount namespace (from /proc/self/mountinfo) or
//! another's (/proc/<pid>/mountinfo): listing them under a directory and
//! lazily unmounting leftovers.

use std::fs;
use std::path::Path;

use nix::mount::{umount2, MntFlags};

/// Decodes the octal escapes (`\040` for a space, ...) of a mountinfo field.
pub(super) fn unescape_mountinfo(s: &str) -> String {
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v as char);
                i += 4;
                continue;
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

/// Mount points (in this process's mount namespace) at or under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    mounts_in_under(Path::new("/proc/self/mountinfo"), dir)
}

/// Mount points at or under `dir` in the mount namespace whose mountinfo
/// is `mountinfo` (`/proc/<pid>/mountinfo`).
pub fn mounts_in_under(mountinfo: &Path, dir: &Path) -> Vec<String> {
    fs::read_to_string(mountinfo)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(unescape_mountinfo))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect()
}

/// Whether anything is mounted at or under `dir`.
pub fn mounted_under(dir: &Path) -> bool {
    !mounts_under(dir).is_empty()
}

/// Lazily unmounts everything at or under `dir`, deepest first.
pub fn unmount_all_under(dir: &Path) {
    for _ in 0..10 {
        let mut mounts = mounts_under(dir);
        if mounts.is_empty() {
            return;
        }
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            eprintln!("[harness] unmounting leftover mount {m}");
            let _ = umount2(Path::new(&m), MntFlags::MNT_DETACH);
        }
    }
}
