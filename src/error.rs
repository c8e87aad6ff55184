//! The shim's error type. Every failure inside the shim is one of these
//! variants; `Error::code` maps it to the ttrpc code containerd acts on, once,
//! at the service edge.

use std::io;
use std::path::PathBuf;

/// Result alias used throughout the shim.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, with enough context to act on the message alone.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An id that is not a containerd identifier.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidId {
        /// Which id ("container id", "exec id", "namespace").
        what: &'static str,
        /// The offending value, as received.
        value: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A request that is malformed in some other way.
    #[error("{0}")]
    InvalidArgument(String),
    /// No container with this id is known to the shim.
    #[error("container {0:?} not found")]
    ContainerNotFound(String),
    /// The process exists in no form the operation can act on (e.g. already exited).
    #[error("{0}")]
    NotFound(String),
    /// A container with this id already exists in this shim.
    #[error("container {0:?} already exists")]
    AlreadyExists(String),
    /// The operation does not fit the process's current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A request this shim does not serve, on purpose.
    #[error("{0}")]
    Unimplemented(String),
    /// The OCI runtime binary could not be started at all.
    #[error("OCI runtime {binary:?} could not be started: {source}")]
    RuntimeMissing {
        /// The binary name or path that was tried.
        binary: String,
        /// Why exec failed (usually "No such file or directory").
        #[source]
        source: io::Error,
    },
    /// The OCI runtime ran and failed.
    #[error("OCI runtime {op} failed: {message}")]
    Runtime {
        /// The runtime binary.
        binary: String,
        /// The runtime sub-command ("create", "start", ...).
        op: &'static str,
        /// The runtime's own last error message.
        message: String,
    },
    /// A runtime sub-command outlived its deadline, and was killed.
    #[error("{binary} {op} timed out after {}s", after.as_secs_f64())]
    RuntimeTimeout {
        /// The runtime binary.
        binary: String,
        /// The runtime sub-command ("kill", "delete", ...).
        op: &'static str,
        /// Its deadline.
        after: std::time::Duration,
    },
    /// A file system or descriptor operation failed.
    #[error("{op} {path:?}: {source}")]
    Io {
        /// What the shim was doing.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A system call without a path failed.
    #[error("{op}: {source}")]
    Sys {
        /// What the shim was doing.
        op: &'static str,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// A mount failed: the errno, as the kernel gave it.
    #[error("mount {kind} {device:?} on {target:?}")]
    Mount {
        /// The mount type ("overlay", "bind", ...).
        kind: String,
        /// What was mounted (the mount's source).
        device: String,
        /// Where.
        target: PathBuf,
        /// The kernel's answer.
        #[source]
        errno: nix::Error,
    },
    /// A request field that does not decode as its type says (runtime
    /// options, an exec's process spec, resources, checkpoint options).
    #[error("{what}: {source}")]
    Decode {
        /// Which field, and of what type.
        what: String,
        /// The decoder's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A helper program the shim starts (a binary logger) failed to start
    /// or to report ready.
    #[error("{what} {binary:?}: {source}")]
    Helper {
        /// Which helper, and what step ("starting the logger", ...).
        what: &'static str,
        /// Its binary.
        binary: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Builds an [`Error::Io`] from a closure-friendly triple.
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }

    /// Builds an [`Error::Decode`].
    pub fn decode<E>(what: impl Into<String>) -> impl FnOnce(E) -> Error
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let what = what.into();
        move |e| Error::Decode {
            what,
            source: Box::new(e),
        }
    }

    /// Builds an [`Error::Sys`].
    pub fn sys(op: &'static str) -> impl FnOnce(nix::Error) -> Error {
        move |source| Error::Sys { op, source }
    }

    /// The ttrpc status code containerd should see for this error.
    pub fn code(&self) -> ttrpc::Code {
        use ttrpc::Code;
        match self {
            Error::InvalidId { .. } | Error::InvalidArgument(_) | Error::Decode { .. } => {
                Code::INVALID_ARGUMENT
            }
            Error::ContainerNotFound(_) | Error::NotFound(_) => Code::NOT_FOUND,
            Error::AlreadyExists(_) => Code::ALREADY_EXISTS,
            Error::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            Error::Unimplemented(_) => Code::UNIMPLEMENTED,
            // containerd surfaces these as-is; Unknown is what its own shim sends.
            Error::RuntimeMissing { .. } | Error::Runtime { .. } => Code::UNKNOWN,
            Error::RuntimeTimeout { .. } => Code::DEADLINE_EXCEEDED,
            Error::Io { .. } | Error::Sys { .. } | Error::Mount { .. } => Code::INTERNAL,
            Error::Helper { .. } => Code::UNKNOWN,
        }
    }
}

impl From<Error> for ttrpc::Error {
    fn from(e: Error) -> Self {
        // The full chain, so "could not be started: No such file or directory" survives.
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(cause) = src {
            let text = cause.to_string();
            if !msg.ends_with(&text) {
                msg.push_str(": ");
                msg.push_str(&text);
            }
            src = cause.source();
        }
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_ones_containerd_branches_on() {
        assert_eq!(
            Error::ContainerNotFound("a".into()).code(),
            ttrpc::Code::NOT_FOUND
        );
        assert_eq!(
            Error::AlreadyExists("a".into()).code(),
            ttrpc::Code::ALREADY_EXISTS
        );
        assert_eq!(
            Error::FailedPrecondition("x".into()).code(),
            ttrpc::Code::FAILED_PRECONDITION
        );
    }

    #[test]
    fn a_decode_error_keeps_its_cause_and_is_an_argument_error() {
        let cause = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let e = Error::decode("resources")(cause);
        assert_eq!(e.code(), ttrpc::Code::INVALID_ARGUMENT);
        assert!(e.to_string().starts_with("resources: "), "{e}");
        let source = std::error::Error::source(&e).expect("a source");
        assert!(source.is::<serde_json::Error>());
    }

    #[test]
    fn a_timeout_names_the_command_and_is_deadline_exceeded() {
        let e = Error::RuntimeTimeout {
            binary: "runc".into(),
            op: "kill",
            after: std::time::Duration::from_secs(10),
        };
        assert_eq!(e.to_string(), "runc kill timed out after 10s");
        assert_eq!(e.code(), ttrpc::Code::DEADLINE_EXCEEDED);
    }

    #[test]
    fn a_mount_keeps_its_errno_and_a_logger_is_no_argument_error() {
        let e = Error::Mount {
            kind: "overlay".into(),
            device: "overlay".into(),
            target: "/r".into(),
            errno: nix::errno::Errno::EINVAL,
        };
        let errno = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<nix::errno::Errno>())
            .copied();
        assert_eq!(errno, Some(nix::errno::Errno::EINVAL));
        assert_eq!(e.code(), ttrpc::Code::INTERNAL);
        let e = Error::Helper {
            what: "starting the logger",
            binary: "/bin/nope".into(),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert_ne!(e.code(), ttrpc::Code::INVALID_ARGUMENT);
    }

    #[test]
    fn message_keeps_the_cause() {
        let e = Error::RuntimeMissing {
            binary: "nope".into(),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        };
        let t: ttrpc::Error = e.into();
        let ttrpc::Error::RpcStatus(s) = t else {
            panic!("not a status")
        };
        assert!(s.message.contains("\"nope\""), "{}", s.message);
        assert!(s.message.contains("No such file"), "{}", s.message);
    }
}
