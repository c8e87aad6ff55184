//! What `start` reads on stdin and how it answers, by containerd version.
//!
//! containerd 1.6 to 2.2 write the runtime options (a protobuf `Any`, or
//! nothing) and take a plain `unix://` address back. containerd 2.3+ write a
//! `BootstrapParams` message, with the options among its extensions, and take
//! a `BootstrapResult` back; answering with version 3 makes containerd drive
//! the `containerd.task.v3.Task` service. Both inputs are protobuf and each
//! decodes as the other, so they are told apart by content: the params name
//! this very task (`instance_id` and `namespace` equal the `-id` and
//! `-namespace` flags), while an Any starts with a type URL.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use protobuf::well_known_types::any::Any;
use protobuf::{Enum, Message};

use crate::options::{is_runtime_options, runtime_options};
use crate::protos::bootstrap::{BootstrapParams, BootstrapResult, LogLevel};
use crate::runc::RuntimeOptions;

/// The task API version tether serves to containerd 2.3+.
pub const TASK_API_VERSION: i32 = 3;

/// How `start` must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The address alone (containerd 1.6 to 2.2: task API v2).
    Plain,
    /// A protobuf BootstrapResult with version 3 (containerd 2.3+).
    Bootstrap,
}

/// What `start` learned from its stdin.
#[derive(Debug, Clone, PartialEq)]
pub struct StartInput {
    /// The runtime options, decoded (defaults when none were sent).
    pub options: RuntimeOptions,
    /// Where to put the socket, when containerd says (2.3+ `socket_dir`).
    pub socket_dir: Option<PathBuf>,
    /// containerd's ttrpc address from the params (2.3+).
    pub ttrpc_address: Option<String>,
    /// containerd logs at debug level or finer (2.3+ `log_level`).
    pub debug: bool,
    /// The answer's form.
    pub reply: Reply,
}

/// Decodes `start`'s stdin for task `id` in `namespace`. Bytes that are
/// neither form, and options that do not decode, are errors: containerd
/// would otherwise run a shim without the options it asked for.
pub fn parse(stdin: &[u8], id: &str, namespace: &str) -> Result<StartInput> {
    let mut input = StartInput {
        options: RuntimeOptions::default(),
        socket_dir: None,
        ttrpc_address: None,
        debug: false,
        reply: Reply::Plain,
    };
    if stdin.is_empty() {
        return Ok(input);
    }
    if let Ok(p) = BootstrapParams::parse_from_bytes(stdin) {
        if p.instance_id == id && p.namespace == namespace {
            let opts: Vec<&Any> = p
                .extensions
                .iter()
                .filter_map(|e| e.value.as_ref())
                .filter(|a| is_runtime_options(a))
                .collect();
            if opts.len() > 1 {
                bail!(
                    "bootstrap params carry {} sets of runtime options",
                    opts.len()
                );
            }
            if let Some(a) = opts.first() {
                input.options = runtime_options(Some(a)).context("bootstrap params")?;
            }
            if let Some(dir) = p.socket_dir.as_deref().filter(|d| !d.is_empty()) {
                let dir = PathBuf::from(dir);
                if !dir.is_absolute() {
                    bail!("bootstrap params: socket_dir {dir:?} is not an absolute path");
                }
                input.socket_dir = Some(dir);
            }
            if !p.containerd_ttrpc_address.is_empty() {
                input.ttrpc_address = Some(p.containerd_ttrpc_address.clone());
            }
            let level = p.log_level.value();
            input.debug = level <= LogLevel::DEBUG.value();
            input.reply = Reply::Bootstrap;
            return Ok(input);
        }
    }
    let any = Any::parse_from_bytes(stdin)
        .ok()
        .filter(|a| !a.type_url.is_empty());
    let Some(any) = any else {
        bail!(
            "stdin ({} bytes) is neither containerd's bootstrap params for task {namespace}/{id} \
             nor runtime options",
            stdin.len()
        );
    };
    input.options = runtime_options(Some(&any)).context("runtime options on stdin")?;
    Ok(input)
}

/// The bytes `start` prints for `address`.
pub fn reply(kind: Reply, address: &str) -> Vec<u8> {
    match kind {
        Reply::Plain => address.as_bytes().to_vec(),
        Reply::Bootstrap => {
            let mut r = BootstrapResult::new();
            r.version = TASK_API_VERSION;
            r.address = address.to_string();
            r.protocol = "ttrpc".to_string();
            // Writing a message with only set scalar fields cannot fail.
            r.write_to_bytes().unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protos::bootstrap::Extension;
    use crate::protos::runc_options::Options as RuncOptions;

    fn runc_any(shim_cgroup: &str) -> Any {
        let mut o = RuncOptions::new();
        o.shim_cgroup = shim_cgroup.into();
        let mut a = Any::new();
        a.type_url = "containerd.runc.v1.Options".into();
        a.value = o.write_to_bytes().unwrap();
        a
    }

    fn params(id: &str, ns: &str) -> BootstrapParams {
        let mut p = BootstrapParams::new();
        p.instance_id = id.into();
        p.namespace = ns.into();
        p.containerd_version = "v2.3.7".into();
        p.containerd_ttrpc_address = "/run/containerd/containerd.sock.ttrpc".into();
        p
    }

    #[test]
    fn empty_stdin_is_plain_with_defaults() {
        let i = parse(b"", "c1", "default").unwrap();
        assert_eq!(i.reply, Reply::Plain);
        assert_eq!(i.options, RuntimeOptions::default());
    }

    #[test]
    fn bare_options_are_the_legacy_form() {
        let bytes = runc_any("/shims").write_to_bytes().unwrap();
        let i = parse(&bytes, "c1", "default").unwrap();
        assert_eq!(i.reply, Reply::Plain);
        assert_eq!(i.options.shim_cgroup, "/shims");
    }

    #[test]
    fn bootstrap_params_give_options_socket_dir_and_v3() {
        let mut p = params("c1", "default");
        let mut e = Extension::new();
        e.value = protobuf::MessageField::some(runc_any("/shims"));
        p.extensions.push(e);
        p.socket_dir = Some("/run/other/s".into());
        p.log_level = LogLevel::DEBUG.into();
        let i = parse(&p.write_to_bytes().unwrap(), "c1", "default").unwrap();
        assert_eq!(i.reply, Reply::Bootstrap);
        assert_eq!(i.options.shim_cgroup, "/shims");
        assert_eq!(i.socket_dir, Some(PathBuf::from("/run/other/s")));
        assert_eq!(
            i.ttrpc_address.as_deref(),
            Some("/run/containerd/containerd.sock.ttrpc")
        );
        assert!(i.debug);
    }

    #[test]
    fn params_for_another_task_are_not_taken_as_params() {
        // Params naming another task do not decode as options either.
        let p = params("other", "default").write_to_bytes().unwrap();
        assert!(parse(&p, "c1", "default").is_err());
    }

    #[test]
    fn garbage_and_bad_options_are_errors() {
        assert!(parse(b"\xff\xff\xff", "c1", "ns").is_err());
        let mut p = params("c1", "ns");
        let mut e = Extension::new();
        let mut a = runc_any("");
        a.value = vec![0xff];
        e.value = protobuf::MessageField::some(a);
        p.extensions.push(e);
        let err = parse(&p.write_to_bytes().unwrap(), "c1", "ns").unwrap_err();
        assert!(
            format!("{err:#}").contains("containerd.runc.v1.Options"),
            "{err:#}"
        );
        let mut p = params("c1", "ns");
        p.socket_dir = Some("relative/dir".into());
        assert!(parse(&p.write_to_bytes().unwrap(), "c1", "ns").is_err());
    }

    #[test]
    fn unknown_extensions_are_ignored() {
        let mut p = params("c1", "ns");
        let mut e = Extension::new();
        let mut a = Any::new();
        a.type_url = "example.com/Other".into();
        e.value = protobuf::MessageField::some(a);
        p.extensions.push(e);
        let i = parse(&p.write_to_bytes().unwrap(), "c1", "ns").unwrap();
        assert_eq!(i.reply, Reply::Bootstrap);
    }

    #[test]
    fn bootstrap_reply_round_trips_and_plain_is_the_address() {
        let addr = "unix:///run/containerd/s/abc";
        assert_eq!(reply(Reply::Plain, addr), addr.as_bytes());
        let r = BootstrapResult::parse_from_bytes(&reply(Reply::Bootstrap, addr)).unwrap();
        assert_eq!(
            (r.version, r.address.as_str(), r.protocol.as_str()),
            (3, addr, "ttrpc")
        );
    }
}
