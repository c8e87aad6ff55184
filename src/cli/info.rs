//! `-info`: what containerd 2.x asks a shim before it creates a task (and
//! for `ctr plugins` introspection). stdin holds the runtime options as a
//! protobuf `Any` (or nothing); stdout gets a `containerd.types.RuntimeInfo`
//! with the OCI runtime's own `features` JSON, which containerd reads to
//! decide whether a spec's needs (idmapped mounts, say) can be met.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use protobuf::well_known_types::any::Any;
use protobuf::{Message, MessageField};

use crate::options::runtime_options;
use crate::protos::introspection::{RuntimeInfo, RuntimeVersion};

/// The runtime name tether reports.
pub const RUNTIME_NAME: &str = "io.containerd.tether.v2";
/// The type URL containerd registers the OCI features document under.
pub const FEATURES_TYPE: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/features/Features";
/// How long `<runtime> features` may take.
const FEATURES_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_STDIN: u64 = 1 << 20;

/// Runs `-info`.
pub fn run() -> Result<()> {
    let mut stdin = Vec::new();
    std::io::stdin()
        .take(MAX_STDIN)
        .read_to_end(&mut stdin)
        .context("reading stdin")?;
    let info = runtime_info(&stdin)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&info.write_to_bytes()?)?;
    out.flush()?;
    Ok(())
}

/// Builds the answer for the options in `stdin`.
pub fn runtime_info(stdin: &[u8]) -> Result<RuntimeInfo> {
    let given = if stdin.is_empty() {
        None
    } else {
        let any = Any::parse_from_bytes(stdin).context("runtime options on stdin")?;
        Some(any).filter(|a| !a.type_url.is_empty())
    };
    let opts = runtime_options(given.as_ref())?;
    let binary = if opts.binary.is_empty() {
        "runc"
    } else {
        &opts.binary
    };
    let path =
        look_path(binary).with_context(|| format!("the OCI runtime {binary:?} is not in PATH"))?;

    let mut info = RuntimeInfo::new();
    info.name = RUNTIME_NAME.to_string();
    let mut version = RuntimeVersion::new();
    version.version = env!("CARGO_PKG_VERSION").to_string();
    version.revision = option_env!("TETHER_REVISION")
        .unwrap_or_default()
        .to_string();
    info.version = MessageField::some(version);
    info.options = given.into();
    // A runtime without `features` (older runc, youki) still gets an answer:
    // containerd then treats every optional feature as missing.
    match features(&path) {
        Ok(json) => {
            let mut any = Any::new();
            any.type_url = FEATURES_TYPE.to_string();
            any.value = json;
            info.features = MessageField::some(any);
        }
        Err(e) => eprintln!("containerd-shim-tether-v2: no runtime features: {e:#}"),
    }
    Ok(info)
}

/// `binary` as a path: itself when it has a slash, else the first match in
/// PATH that is an executable file.
fn look_path(binary: &str) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if binary.contains('/') {
        let p = PathBuf::from(binary);
        return if executable(&p) {
            Ok(p)
        } else {
            bail!("{binary} is not an executable file")
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(binary))
        .find(|p| executable(p))
        .ok_or_else(|| anyhow::anyhow!("{binary} not found"))
}

/// The JSON `<runtime> features` prints, checked to be a JSON object. The
/// output is read while the runtime runs (a document larger than a pipe
/// holds must not stall it), by a thread that owns the child; a runtime
/// still running after [`FEATURES_TIMEOUT`] is killed.
fn features(path: &Path) -> Result<Vec<u8>> {
    let child = Command::new(path)
        .arg("features")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {} features", path.display()))?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(FEATURES_TIMEOUT) {
        Ok(out) => out?,
        Err(_) => {
            // The thread still owns the child and reaps it once killed.
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = reader.join();
            bail!(
                "{} features took longer than {FEATURES_TIMEOUT:?}",
                path.display()
            );
        }
    };
    let _ = reader.join();
    if !out.status.success() {
        bail!(
            "{} features: {} ({})",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{} features printed no JSON", path.display()))?;
    if !doc.is_object() {
        bail!("{} features printed no JSON object", path.display());
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_runtime_binary_is_a_clear_error() {
        let mut o = crate::protos::runc_options::Options::new();
        o.binary_name = "/nonexistent/tether-runtime".into();
        let mut a = Any::new();
        a.type_url = "containerd.runc.v1.Options".into();
        a.value = o.write_to_bytes().unwrap();
        let e = runtime_info(&a.write_to_bytes().unwrap()).unwrap_err();
        assert!(
            format!("{e:#}").contains("/nonexistent/tether-runtime"),
            "{e:#}"
        );
    }

    /// A features document larger than a pipe holds (64 KiB) comes through
    /// whole, at once (it used to stall the runtime until the timeout).
    #[test]
    fn large_features_document_is_read_whole() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let runtime = dir.path().join("big-runtime");
        std::fs::write(
            &runtime,
            "#!/bin/sh\nprintf '{\"pad\":\"'\nhead -c 300000 /dev/zero | tr '\\0' x\nprintf '\"}'\n",
        )
        .unwrap();
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o755)).unwrap();
        let start = std::time::Instant::now();
        let doc = features(&runtime).unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert!(doc.len() > 300_000, "{}", doc.len());
    }

    #[test]
    fn garbage_stdin_is_an_error() {
        assert!(runtime_info(b"\xff\xff").is_err());
    }
}
