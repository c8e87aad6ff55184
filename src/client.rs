//! The shim's client surface: driving a shim the way containerd does
//! (`start` to get its address, a ttrpc Task client, and `delete` for
//! clean-up) and the id rule it enforces. Used by tetherctl and the tests;
//! the wire types they exchange are [`crate::protos`].

use std::path::Path;
use std::process::{Command, Stdio};

use protobuf::Message;

use crate::protos::shim::DeleteResponse;
use crate::protos::shim_ttrpc::TaskClient;

/// What to tell a shim about itself, as containerd would.
#[derive(Debug, Clone)]
pub struct ShimSpawn<'a> {
    /// The shim binary.
    pub binary: &'a Path,
    /// The bundle (the shim's cwd).
    pub bundle: &'a Path,
    /// containerd namespace.
    pub namespace: &'a str,
    /// Container id.
    pub id: &'a str,
    /// containerd's gRPC address (only hashed into the socket name).
    pub address: &'a str,
    /// containerd's ttrpc address for events ("" for none).
    pub ttrpc_address: &'a str,
    /// What `start` reads on stdin: the runtime options as a protobuf Any,
    /// or nothing.
    pub options: &'a [u8],
}

impl ShimSpawn<'_> {
    fn command(&self, action: &str) -> Command {
        let mut cmd = Command::new(self.binary);
        cmd.args(["-namespace", self.namespace, "-address", self.address])
            .args(["-publish-binary", "/usr/bin/containerd", "-id", self.id]);
        if action == "delete" {
            cmd.arg("-bundle").arg(self.bundle);
        }
        cmd.arg(action)
            .current_dir(self.bundle)
            .env("TTRPC_ADDRESS", self.ttrpc_address)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `start` with `self.options` on stdin and returns the address it
    /// printed.
    pub fn start(&self) -> std::io::Result<String> {
        self.start_with(self.options)
    }

    /// Runs `start` with `stdin` (runtime options, or containerd 2.3's
    /// BootstrapParams) and returns the address: printed plainly, or inside
    /// the BootstrapResult that answers bootstrap params.
    pub fn start_with(&self, stdin_bytes: &[u8]) -> std::io::Result<String> {
        use std::io::Write;
        let mut child = self
            .command("start")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(stdin_bytes)?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "shim start failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        if out.stdout.starts_with(b"unix://") {
            return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        crate::protos::bootstrap::BootstrapResult::parse_from_bytes(&out.stdout)
            .map(|r| r.address)
            .map_err(|e| std::io::Error::other(format!("shim start printed no address: {e}")))
    }

    /// Runs `delete` and decodes its DeleteResponse.
    pub fn delete(&self) -> std::io::Result<DeleteResponse> {
        let out = self.command("delete").stderr(Stdio::piped()).output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "shim delete failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        DeleteResponse::parse_from_bytes(&out.stdout).map_err(std::io::Error::other)
    }
}

/// Connects a Task client to a shim address (`unix:///...`).
pub async fn connect(address: &str) -> ttrpc::Result<TaskClient> {
    let client = ttrpc::r#async::Client::connect(address).await?;
    Ok(TaskClient::new(client))
}

/// An id the shim would refuse: not a containerd identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {reason}")]
pub struct InvalidId {
    /// Which id ("container id", "exec id", ...).
    pub what: &'static str,
    /// The offending value.
    pub value: String,
    /// Why it is refused.
    pub reason: &'static str,
}

/// Checks `value` against the identifier rule the shim applies to every
/// container id, exec id and namespace (containerd's: 1 to 76 characters,
/// groups of ASCII letters and digits separated by single `.`, `_` or `-`),
/// so that a client can refuse an id before it reaches a shim.
pub fn validate_id(what: &'static str, value: &str) -> Result<(), InvalidId> {
    match crate::ids::rejection(value) {
        Some(reason) => Err(InvalidId {
            what,
            value: value.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_id_says_what_the_shim_says() {
        assert!(validate_id("container id", "web-1").is_ok());
        let err = validate_id("exec id", "a/b").unwrap_err();
        let shim = crate::ids::validate("exec id", "a/b").unwrap_err();
        assert_eq!(err.to_string(), shim.to_string());
    }
}
