//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer): one
//! function per parser of outside input, each taking arbitrary bytes. They
//! must never panic, and where a parser accepts its input they check what
//! the rest of the shim relies on (an accepted id is one path component, an
//! accepted log path is absolute, ...).
//!
//! `cargo test` replays the committed seed corpus (`fuzz/corpus/<target>/`)
//! through the same functions on stable Rust; `fuzz/run.sh` fuzzes them.

use std::path::{Component, Path};

use protobuf::well_known_types::any::Any;
use protobuf::Message;

use crate::protos::shim::*;

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every target, by the name of its fuzz target and corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("ids", ids),
    ("flags", flags),
    ("runtime_options", runtime_options),
    ("bootstrap", bootstrap),
    ("mount_options", mount_options),
    ("log_uri", log_uri),
    ("ttrpc_frames", ttrpc_frames),
    ("task_request", task_request),
    ("upgrade_state", upgrade_state),
];

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// A container id, exec id or namespace: accepted ids are safe as one path
/// component and as one runc argument.
pub fn ids(data: &[u8]) {
    let s = text(data);
    if crate::ids::validate("id", &s).is_ok() {
        assert!(!s.is_empty() && s.len() <= crate::ids::MAX_LEN);
        assert!(!s.starts_with('-'), "{s:?} would read as a flag");
        let mut parts = Path::new(&s).components();
        assert!(
            matches!(parts.next(), Some(Component::Normal(_))) && parts.next().is_none(),
            "{s:?} is not one path component"
        );
    }
}

/// The Go-style command line containerd passes (NUL-separated arguments).
pub fn flags(data: &[u8]) {
    let args: Vec<String> = data.split(|b| *b == 0).map(text).collect();
    let _ = crate::cli::Flags::parse(args);
}

/// Runtime options: a protobuf Any (first byte even) or CRI's TOML table.
pub fn runtime_options(data: &[u8]) {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(any) = Any::parse_from_bytes(rest) {
            let _ = crate::options::runtime_options(Some(&any));
        }
        // The known types under their own names, whatever the payload.
        for t in crate::options::KNOWN_TYPES {
            let any = Any {
                type_url: (*t).to_string(),
                value: rest.to_vec(),
                ..Default::default()
            };
            let _ = crate::options::runtime_options(Some(&any));
        }
    } else {
        let _ = crate::options::toml_options(&text(rest));
    }
}

/// `start`'s stdin: BootstrapParams, or runtime options as an Any.
pub fn bootstrap(data: &[u8]) {
    if let Ok(input) = crate::cli::bootstrap::parse(data, "c1", "default") {
        if let Some(dir) = &input.socket_dir {
            assert!(dir.is_absolute(), "socket_dir {dir:?} accepted");
        }
    }
}

/// Mount options as a rootfs mount carries them (comma-separated here).
pub fn mount_options(data: &[u8]) {
    let options: Vec<String> = text(data).split(',').map(str::to_string).collect();
    let (_, _, rest) = crate::mount::parse_options(&options);
    let words: Vec<String> = rest
        .split(',')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    // What is not a flag goes to the filesystem as data, untouched...
    for word in &words {
        assert!(options.iter().any(|o| o == word), "{word:?} invented");
    }
    // ...and no flag ever ends up in the data.
    let (flags, propagation, again) = crate::mount::parse_options(&words);
    assert!(
        flags.is_empty() && propagation.is_empty(),
        "a flag in {rest:?}"
    );
    assert_eq!(again, words.join(","));
}

/// A stdout URI: accepted file:// and binary:// paths are absolute.
pub fn log_uri(data: &[u8]) {
    use crate::io::log_uri::Target;
    match Target::parse(&text(data)) {
        Ok(Target::File(p)) | Ok(Target::Binary(p, _)) => {
            assert!(p.starts_with('/'), "relative log path {p:?} accepted")
        }
        _ => {}
    }
}

/// A byte stream read as ttrpc frames the way the transport reads them:
/// the announced length is bounded before anything is allocated for it.
pub fn ttrpc_frames(mut data: &[u8]) {
    use crate::transport::frame::{method_of, Header, HEADER};
    while let Some(header) = data.get(..HEADER) {
        let header: &[u8; HEADER] = header.try_into().expect("HEADER bytes");
        let Ok(Header { len, .. }) = Header::parse(header) else {
            return;
        };
        assert!(len <= 4 << 20);
        let Some(frame) = data.get(..HEADER + len) else {
            return;
        };
        let _ = Header::of(frame);
        let _ = method_of(frame);
        data = &data[HEADER + len..];
    }
}

/// A Task request body (first byte: which request), decoded and put through
/// the checks the service makes before it touches a container.
pub fn task_request(data: &[u8]) {
    let Some((which, body)) = data.split_first() else {
        return;
    };
    let ids = |id: &str, exec_id: &str| crate::service::validate_ids(id, exec_id).is_ok();
    match which % 8 {
        0 => {
            let Ok(r) = CreateTaskRequest::parse_from_bytes(body) else {
                return;
            };
            if !ids(&r.id, "") || !Path::new(&r.bundle).is_absolute() {
                return;
            }
            let _ = crate::options::runtime_options(r.options.as_ref());
            let _ = crate::io::log_uri::Target::parse(&r.stdout);
            for m in &r.rootfs {
                let _ = crate::mount::parse_options(&m.options);
            }
        }
        1 => {
            let Ok(r) = ExecProcessRequest::parse_from_bytes(body) else {
                return;
            };
            if ids(&r.id, &r.exec_id) {
                let _ = crate::io::log_uri::Target::parse(&r.stdout);
                if let Some(spec) = r.spec.as_ref() {
                    let _ = serde_json::from_slice::<serde_json::Value>(&spec.value);
                }
            }
        }
        2 => {
            if let Ok(r) = UpdateTaskRequest::parse_from_bytes(body) {
                if let Some(res) = r.resources.as_ref() {
                    let _ = serde_json::from_slice::<serde_json::Value>(&res.value);
                }
            }
        }
        3 => {
            if let Ok(r) = KillRequest::parse_from_bytes(body) {
                let _ = ids(&r.id, &r.exec_id);
                let _ = nix::sys::signal::Signal::try_from(r.signal as i32);
            }
        }
        4 => {
            if let Ok(r) = CheckpointTaskRequest::parse_from_bytes(body) {
                let _ = ids(&r.id, "");
                let _ = Path::new(&r.path).is_absolute();
            }
        }
        5 => {
            if let Ok(r) = ResizePtyRequest::parse_from_bytes(body) {
                let _ = ids(&r.id, &r.exec_id);
            }
        }
        6 => {
            if let Ok(r) = StartRequest::parse_from_bytes(body) {
                let _ = ids(&r.id, &r.exec_id);
            }
        }
        _ => {
            if let Ok(r) = DeleteRequest::parse_from_bytes(body) {
                let _ = ids(&r.id, &r.exec_id);
            }
        }
    }
}

/// A live-upgrade state file: accepted states name each descriptor once and
/// none of stdio. The numbers are collected from the JSON itself, not by
/// the reader's own `State::descriptors`.
pub fn upgrade_state(data: &[u8]) {
    if let Ok(state) = crate::upgrade::snapshot::parse(data) {
        let mut fds = Vec::new();
        match serde_json::from_slice::<serde_json::Value>(data) {
            Ok(json) => descriptor_numbers(&json, &mut fds),
            // The reader skips unknown keys without checking their strings;
            // a Value cannot hold bad UTF-8 there. Count through the reader.
            Err(_) => fds = state.descriptors().into_iter().map(i64::from).collect(),
        }
        assert!(fds.iter().all(|fd| *fd >= 3), "stdio accepted: {fds:?}");
        let n = fds.len();
        fds.sort_unstable();
        fds.dedup();
        assert_eq!(fds.len(), n, "a descriptor named twice was accepted");
    }
}

/// Every descriptor number of a state, read from the JSON by the state
/// file's layout (unknown keys, which the reader ignores, are not
/// descriptors): the listener, each connection's fd, and each process's
/// stdin holder, console, stream ends and spill files.
fn descriptor_numbers(v: &serde_json::Value, out: &mut Vec<i64>) {
    let num = |v: &serde_json::Value, out: &mut Vec<i64>| out.extend(v.as_i64());
    num(&v["listener"], out);
    for c in v["conns"].as_array().into_iter().flatten() {
        num(&c["fd"], out);
    }
    for c in v["containers"].as_array().into_iter().flatten() {
        let execs = c["execs"].as_array().into_iter().flatten();
        for p in std::iter::once(&c["init"]).chain(execs) {
            let io = &p["io"];
            num(&io["stdin_holder"], out);
            num(&io["console"], out);
            for st in io["streams"].as_array().into_iter().flatten() {
                num(&st["from"], out);
                num(&st["to"], out);
                num(&st["spill_file"], out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// fuzz/Cargo.toml has one fuzz target per entry point, by the same name
    /// (tests/fuzz_smoke.rs counts the targets there).
    #[test]
    fn every_entry_point_has_its_fuzz_target() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        let bins: Vec<&str> = text
            .split("[[bin]]")
            .skip(1)
            .filter_map(|b| b.lines().find_map(|l| l.strip_prefix("name = ")))
            .map(|n| n.trim_matches('"'))
            .collect();
        let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
        assert_eq!(bins, names);
    }

    /// The committed seed corpus, through every target, on stable Rust.
    #[test]
    fn seed_corpus_passes_every_target() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        for (name, target) in TARGETS {
            let dir = root.join(name);
            let entries: Vec<_> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| e.unwrap().path())
                .collect();
            assert!(!entries.is_empty(), "no seeds in {}", dir.display());
            for seed in entries {
                target(&std::fs::read(&seed).unwrap());
            }
        }
    }
}
