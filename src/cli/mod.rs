//! Command-line entry points: the Go-flag style arguments containerd passes,
//! and the three modes (`start`, `delete`, and the daemon).

pub mod bootstrap;
pub mod delete;
pub mod info;

/// The user-namespace holder mode (`crate::mount::idmap`): `main` checks for it
/// before parsing flags.
pub use crate::mount::idmap::{run_holder as run_userns_holder, HOLDER_ARG as USERNS_HOLDER_ARG};
pub mod serve;
pub mod start;

/// Flags in the form containerd passes them: `-name value`, `-name=value`,
/// `--name value`; boolean flags stand alone or as `-name=true|false`.
/// The first argument that is not a flag is the action.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Flags {
    /// containerd namespace of the task.
    pub namespace: String,
    /// Container id (the task id).
    pub id: String,
    /// containerd's gRPC socket path.
    pub address: String,
    /// containerd's own binary (legacy event path; unused).
    pub publish_binary: String,
    /// Bundle directory (`delete` only; the cwd otherwise).
    pub bundle: Option<String>,
    /// Log at debug level.
    pub debug: bool,
    /// Print the version and exit.
    pub version: bool,
    /// Print a `containerd.types.RuntimeInfo` and exit (containerd 2.x).
    pub info: bool,
    /// `start`, `delete`, or none for the daemon.
    pub action: Option<String>,
    /// Check that this binary can take over an upgrade state file.
    pub upgrade_check: Option<String>,
    /// Print the usage and exit (`-h`, `-help`).
    pub help: bool,
}

/// What `-help` prints: the shim is run by containerd, not by hand.
pub const USAGE: &str = "\
Usage: containerd-shim-tether-v2 [flags] [start|delete]

tether, a containerd shim (runtime v2, runtime type io.containerd.tether.v2).
containerd runs it; to run containers without containerd, use tetherctl.

  start      start a shim daemon for a task and print its address
  delete     clean up after a task whose shim is gone
  (none)     serve the Task API (what start runs in the background)

Flags:
  -namespace NAME        containerd namespace
  -id ID                 task id
  -address PATH          containerd's socket
  -publish-binary PATH   accepted, unused (events go over ttrpc)
  -bundle DIR            the task's bundle (delete)
  -socket, -debug-socket accepted for compatibility, unused
  -debug                 log at debug level
  -v, -version           print the version
  -info                  print the runtime's RuntimeInfo (containerd 2.x)
  -h, -help              print this
";

const VALUE_FLAGS: &[&str] = &[
    "namespace",
    "id",
    "address",
    "publish-binary",
    "bundle",
    "socket",
    "debug-socket",
    "upgrade-check",
];
const BOOL_FLAGS: &[&str] = &["debug", "v", "version", "info", "h", "help"];

impl Flags {
    /// Parses `args` (without the program name).
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Flags, String> {
        let mut flags = Flags::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                if flags.action.is_some() {
                    return Err(format!("unexpected argument {arg:?}"));
                }
                flags.action = Some(arg);
                continue;
            };
            if body.is_empty() {
                return Err(format!("bad flag syntax: {arg:?}"));
            }
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            if BOOL_FLAGS.contains(&name) {
                let on = match inline.as_deref() {
                    None | Some("true") | Some("1") => true,
                    Some("false") | Some("0") => false,
                    Some(v) => return Err(format!("invalid boolean value {v:?} for -{name}")),
                };
                match name {
                    "debug" => flags.debug = on,
                    "info" => flags.info = on,
                    "h" | "help" => flags.help = on,
                    _ => flags.version = on,
                }
                continue;
            }
            if !VALUE_FLAGS.contains(&name) {
                return Err(format!("flag provided but not defined: -{name}"));
            }
            let value = match inline {
                Some(v) => v,
                None => args
                    .next()
                    .ok_or_else(|| format!("flag needs an argument: -{name}"))?,
            };
            match name {
                "namespace" => flags.namespace = value,
                "id" => flags.id = value,
                "address" => flags.address = value,
                "publish-binary" => flags.publish_binary = value,
                "bundle" => flags.bundle = Some(value),
                "upgrade-check" => flags.upgrade_check = Some(value),
                // Accepted for compatibility with the Go shim library; tether
                // always serves on the listener `start` hands over.
                _ => {}
            }
        }
        Ok(flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Flags, String> {
        Flags::parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn parses_what_containerd_1_6_passes() {
        let f = parse(
            "-namespace default -address /run/containerd/containerd.sock \
             -publish-binary /usr/bin/containerd -id c1 -debug start",
        )
        .unwrap();
        assert_eq!(f.namespace, "default");
        assert_eq!(f.address, "/run/containerd/containerd.sock");
        assert_eq!(f.publish_binary, "/usr/bin/containerd");
        assert_eq!(f.id, "c1");
        assert!(f.debug);
        assert_eq!(f.action.as_deref(), Some("start"));
    }

    #[test]
    fn accepts_equals_and_double_dash() {
        let f = parse("--namespace=ns -id=x -bundle /b -debug=false delete").unwrap();
        assert_eq!((f.namespace.as_str(), f.id.as_str()), ("ns", "x"));
        assert_eq!(f.bundle.as_deref(), Some("/b"));
        assert!(!f.debug);
        assert_eq!(f.action.as_deref(), Some("delete"));
    }

    #[test]
    fn help_in_every_spelling() {
        for h in ["-h", "-help", "--help", "--h"] {
            assert!(parse(h).unwrap().help, "{h}");
        }
        assert!(USAGE.contains("tetherctl"));
    }

    #[test]
    fn no_action_means_daemon() {
        assert_eq!(parse("-namespace a -id b").unwrap().action, None);
    }

    #[test]
    fn rejects_unknown_flags_and_missing_values() {
        assert!(parse("-bogus 1 start").unwrap_err().contains("-bogus"));
        assert!(parse("-id").unwrap_err().contains("-id"));
        assert!(parse("start delete").is_err());
    }
}
