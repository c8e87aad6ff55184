//! Command-line entry points: the Go-flag style arguments containerd passes,
//! and the three modes (`start`, `delete`, and the daemon).

pub mod bootstrap;
pub mod delete;
pub mod info;

/// The user-namespace holder mode (`crate::mount::idmap`): `main` checks for it
/// before parsing flags.
pub use crate::mount::idmap::{run_holder as run_userns_holder, HOLDER_ARG as USERNS_HOLDER_ARG};
pub use crate::sandbox::holder::{run as run_pod_holder, HOLDER_ARG as POD_HOLDER_ARG};
pub mod serve;
pub mod start;

/// Flags in the syntax of Go's `flag` package, which containerd's shims
/// use: `-name value`, `-name=value`, `--name value`, `--name=value`;
/// boolean flags stand alone or as `-name=VALUE` with one of Go's boolean
/// spellings (`true`, `1`, `t`, `false`, `0`, `f`, ...). The first argument
/// that is not a flag is the action; flags after it are still read (in any
/// order, as the protocol notes ask), and `--` ends the flags. No clap: the
/// shim's grammar is Go's, and the shim crate keeps its dependencies few.
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
        let mut flags_ended = false;
        while let Some(arg) = args.next() {
            if arg == "--" && !flags_ended {
                flags_ended = true;
                continue;
            }
            let body = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'));
            let Some(body) = body.filter(|_| !flags_ended && arg != "-") else {
                if flags.action.is_some() {
                    return Err(format!("unexpected argument {arg:?}"));
                }
                flags.action = Some(arg);
                continue;
            };
            if body.is_empty() || body.starts_with(['-', '=']) {
                return Err(format!("bad flag syntax: {arg}"));
            }
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            if BOOL_FLAGS.contains(&name) {
                let on = match inline.as_deref() {
                    None => true,
                    Some(v) => parse_bool(v)
                        .ok_or_else(|| format!("invalid boolean value {v:?} for -{name}"))?,
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

/// A boolean flag's value, spelled as Go's `strconv.ParseBool` accepts it.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
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

    #[test]
    fn parses_what_containerd_2_passes_to_delete_and_info() {
        let f = parse(
            "-namespace k8s.io -address /run/containerd/containerd.sock \
             -publish-binary /usr/bin/containerd -id c1 -bundle /run/b/c1 -debug delete",
        )
        .unwrap();
        assert_eq!(f.bundle.as_deref(), Some("/run/b/c1"));
        assert_eq!((f.debug, f.action.as_deref()), (true, Some("delete")));
        let info = parse("-info").unwrap();
        assert!(info.info && info.action.is_none());
        assert!(parse("-v").unwrap().version && parse("--version").unwrap().version);
    }

    #[test]
    fn every_form_go_accepts_for_a_value() {
        for form in ["-id c1", "-id=c1", "--id c1", "--id=c1"] {
            assert_eq!(parse(form).unwrap().id, "c1", "{form}");
        }
        // The value is the next argument whatever it looks like, and may be
        // empty with `=`.
        assert_eq!(parse("-id -x").unwrap().id, "-x");
        assert_eq!(parse("-address= start").unwrap().address, "");
        assert_eq!(parse("-id=a=b").unwrap().id, "a=b");
    }

    #[test]
    fn booleans_in_go_spellings() {
        for on in ["1", "t", "T", "true", "TRUE", "True"] {
            assert!(parse(&format!("-debug={on}")).unwrap().debug, "{on}");
        }
        for off in ["0", "f", "F", "false", "FALSE", "False"] {
            assert!(!parse(&format!("--debug={off}")).unwrap().debug, "{off}");
        }
        for bad in ["", "yes", "on", "2"] {
            let err = parse(&format!("-debug={bad}")).unwrap_err();
            assert!(err.contains("invalid boolean value"), "{bad}: {err}");
        }
        // A boolean never takes the next argument as its value.
        let f = parse("-debug false").unwrap();
        assert!(f.debug);
        assert_eq!(f.action.as_deref(), Some("false"));
    }

    #[test]
    fn bad_syntax_and_the_end_of_flags() {
        for bad in ["---id=x", "-=x", "--=x"] {
            assert!(parse(bad).unwrap_err().contains("bad flag syntax"), "{bad}");
        }
        // After `--` nothing is a flag; `-` alone is an argument.
        let f = parse("-id c1 -- -debug").unwrap();
        assert_eq!((f.debug, f.action.as_deref()), (false, Some("-debug")));
        assert_eq!(parse("-").unwrap().action.as_deref(), Some("-"));
        // Flags after the action are read too (any order).
        let f = parse("start -id c1").unwrap();
        assert_eq!((f.id.as_str(), f.action.as_deref()), ("c1", Some("start")));
    }
}
