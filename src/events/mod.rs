//! Publishing task events to containerd over its ttrpc `Events.Forward`.
//!
//! Events go through one bounded, ordered queue. Publishing never waits: an
//! RPC enqueues and returns. One task sends the queue's head, and retries it
//! (reconnecting, with back-off) until containerd takes it, so events survive
//! a containerd restart in order. When the queue is full the oldest event is
//! dropped, with a warning in the log.

mod publisher;

pub use publisher::Publisher;

use std::time::SystemTime;

use protobuf::well_known_types::any::Any;
use protobuf::well_known_types::timestamp::Timestamp;
use protobuf::Message;

use crate::protos::events as wire;
use crate::protos::mount::Mount as WireMount;

/// The seconds of Go's zero time: what containerd 1.6 expects for "never".
pub const GO_ZERO_SECONDS: i64 = -62_135_596_800;

/// A task event, in domain terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `/tasks/create`.
    Create {
        /// Container id.
        id: String,
        /// Bundle path.
        bundle: String,
        /// The rootfs mounts as received.
        rootfs: Vec<crate::mount::Mount>,
        /// The stdio paths as received.
        stdio: crate::io::StdioPaths,
        /// Checkpoint path, if restoring.
        checkpoint: String,
        /// Init pid.
        pid: u32,
    },
    /// `/tasks/start`.
    Start {
        /// Container id.
        id: String,
        /// Init pid.
        pid: u32,
    },
    /// `/tasks/exec-added`.
    ExecAdded {
        /// Container id.
        id: String,
        /// Exec id.
        exec_id: String,
    },
    /// `/tasks/exec-started`.
    ExecStarted {
        /// Container id.
        id: String,
        /// Exec id.
        exec_id: String,
        /// Pid.
        pid: u32,
    },
    /// `/tasks/oom`.
    Oom {
        /// Container id.
        id: String,
    },
    /// `/tasks/paused`.
    Paused {
        /// Container id.
        id: String,
    },
    /// `/tasks/resumed`.
    Resumed {
        /// Container id.
        id: String,
    },
    /// `/tasks/checkpointed`.
    Checkpointed {
        /// Container id.
        id: String,
        /// Where the image went.
        checkpoint: String,
    },
    /// `/tasks/exit`.
    Exit {
        /// Container id.
        id: String,
        /// Process id: the container id for init, the exec id otherwise.
        process: String,
        /// Pid.
        pid: u32,
        /// Exit status.
        status: u32,
        /// Exit time.
        at: SystemTime,
    },
    /// `/tasks/delete`.
    Delete {
        /// Container id.
        id: String,
        /// Exec id; empty for init.
        exec_id: String,
        /// Pid.
        pid: u32,
        /// Exit status.
        status: u32,
        /// Exit time (None: never exited).
        at: Option<SystemTime>,
    },
}

impl Event {
    /// The topic and the Any-wrapped message containerd expects.
    fn to_wire(&self) -> (&'static str, Any) {
        match self {
            Event::Create {
                id,
                bundle,
                rootfs,
                stdio,
                checkpoint,
                pid,
            } => {
                let mut m = wire::TaskCreate::new();
                m.container_id = id.clone();
                m.bundle = bundle.clone();
                m.rootfs = rootfs
                    .iter()
                    .map(|r| {
                        let mut w = WireMount::new();
                        w.type_ = r.kind.clone();
                        w.source = r.source.clone();
                        w.options = r.options.clone();
                        w
                    })
                    .collect();
                let mut io = wire::TaskIO::new();
                io.stdin = stdio.stdin.clone();
                io.stdout = stdio.stdout.clone();
                io.stderr = stdio.stderr.clone();
                io.terminal = stdio.terminal;
                m.io = Some(io).into();
                m.checkpoint = checkpoint.clone();
                m.pid = *pid;
                ("/tasks/create", any(&m))
            }
            Event::Start { id, pid } => {
                let mut m = wire::TaskStart::new();
                m.container_id = id.clone();
                m.pid = *pid;
                ("/tasks/start", any(&m))
            }
            Event::ExecAdded { id, exec_id } => {
                let mut m = wire::TaskExecAdded::new();
                m.container_id = id.clone();
                m.exec_id = exec_id.clone();
                ("/tasks/exec-added", any(&m))
            }
            Event::ExecStarted { id, exec_id, pid } => {
                let mut m = wire::TaskExecStarted::new();
                m.container_id = id.clone();
                m.exec_id = exec_id.clone();
                m.pid = *pid;
                ("/tasks/exec-started", any(&m))
            }
            Event::Oom { id } => {
                let mut m = wire::TaskOOM::new();
                m.container_id = id.clone();
                ("/tasks/oom", any(&m))
            }
            Event::Paused { id } => {
                let mut m = wire::TaskPaused::new();
                m.container_id = id.clone();
                ("/tasks/paused", any(&m))
            }
            Event::Resumed { id } => {
                let mut m = wire::TaskResumed::new();
                m.container_id = id.clone();
                ("/tasks/resumed", any(&m))
            }
            Event::Checkpointed { id, checkpoint } => {
                let mut m = wire::TaskCheckpointed::new();
                m.container_id = id.clone();
                m.checkpoint = checkpoint.clone();
                ("/tasks/checkpointed", any(&m))
            }
            Event::Exit {
                id,
                process,
                pid,
                status,
                at,
            } => {
                let mut m = wire::TaskExit::new();
                m.container_id = id.clone();
                m.id = process.clone();
                m.pid = *pid;
                m.exit_status = *status;
                m.exited_at = Some(timestamp(Some(*at))).into();
                ("/tasks/exit", any(&m))
            }
            Event::Delete {
                id,
                exec_id,
                pid,
                status,
                at,
            } => {
                let mut m = wire::TaskDelete::new();
                m.container_id = id.clone();
                m.id = exec_id.clone();
                m.pid = *pid;
                m.exit_status = *status;
                m.exited_at = Some(timestamp(*at)).into();
                ("/tasks/delete", any(&m))
            }
        }
    }
}

/// A message that travels in an Any: its proto package, which with the
/// message's name makes the type URL.
///
/// The URL is not taken from the message's descriptor: the first call to
/// `descriptor()` builds the reflection of the whole .proto file and of
/// those it imports (descriptor.proto among them), about 60 KiB of heap
/// that every shim kept for good after its first event (heaptrack). The
/// tests check each URL against the descriptor.
pub trait Packaged: Message {
    /// The package, as in the .proto file.
    const PACKAGE: &'static str;
}

macro_rules! packaged {
    ($package:literal: $($message:ty),+ $(,)?) => {
        $(impl Packaged for $message {
            const PACKAGE: &'static str = $package;
        })+
    };
}

packaged!("containerd.events":
    wire::TaskCreate, wire::TaskStart, wire::TaskExecAdded, wire::TaskExecStarted,
    wire::TaskOOM, wire::TaskPaused, wire::TaskResumed, wire::TaskCheckpointed,
    wire::TaskExit, wire::TaskDelete,
);
packaged!("containerd.runc.v1": crate::protos::runc_options::ProcessDetails);
packaged!("io.containerd.cgroups.v1": crate::protos::cgroup1_metrics::Metrics);
packaged!("io.containerd.cgroups.v2": crate::protos::cgroup2_metrics::Metrics);

/// The type URL of `M`: the bare full name (`package.Message`), which is
/// how containerd registers its types.
pub fn type_url<M: Packaged>() -> String {
    format!("{}.{}", M::PACKAGE, M::NAME)
}

/// Wraps `m` in an Any whose type URL is the bare message name, which is how
/// containerd registers event types.
pub fn any<M: Packaged>(m: &M) -> Any {
    let mut a = Any::new();
    a.type_url = type_url::<M>();
    a.value = m.write_to_bytes().expect("event messages always serialize");
    a
}

/// A protobuf timestamp; None becomes Go's zero time.
pub fn timestamp(t: Option<SystemTime>) -> Timestamp {
    let mut ts = Timestamp::new();
    match t.map(|t| t.duration_since(SystemTime::UNIX_EPOCH)) {
        Some(Ok(d)) => {
            ts.seconds = d.as_secs() as i64;
            ts.nanos = d.subsec_nanos() as i32;
        }
        _ => ts.seconds = GO_ZERO_SECONDS,
    }
    ts
}

#[cfg(test)]
mod tests {
    use super::*;
    use protobuf::Message;
    use std::time::Duration;

    #[test]
    fn type_urls_are_bare_names() {
        let (topic, a) = Event::Start {
            id: "c".into(),
            pid: 42,
        }
        .to_wire();
        assert_eq!(topic, "/tasks/start");
        assert_eq!(a.type_url, "containerd.events.TaskStart");
        let m = wire::TaskStart::parse_from_bytes(&a.value).unwrap();
        assert_eq!((m.container_id.as_str(), m.pid), ("c", 42));
    }

    #[test]
    fn type_urls_are_the_descriptors_full_names() {
        use protobuf::MessageFull;
        fn check<M: Packaged + MessageFull>() {
            assert_eq!(type_url::<M>(), M::descriptor().full_name());
        }
        check::<wire::TaskCreate>();
        check::<wire::TaskStart>();
        check::<wire::TaskExecAdded>();
        check::<wire::TaskExecStarted>();
        check::<wire::TaskOOM>();
        check::<wire::TaskPaused>();
        check::<wire::TaskResumed>();
        check::<wire::TaskCheckpointed>();
        check::<wire::TaskExit>();
        check::<wire::TaskDelete>();
        check::<crate::protos::runc_options::ProcessDetails>();
        check::<crate::protos::cgroup1_metrics::Metrics>();
        check::<crate::protos::cgroup2_metrics::Metrics>();
    }

    #[test]
    fn exit_carries_every_field() {
        let at = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        let (topic, a) = Event::Exit {
            id: "c".into(),
            process: "c".into(),
            pid: 7,
            status: 137,
            at,
        }
        .to_wire();
        assert_eq!(topic, "/tasks/exit");
        let m = wire::TaskExit::parse_from_bytes(&a.value).unwrap();
        assert_eq!((m.id.as_str(), m.pid, m.exit_status), ("c", 7, 137));
        assert_eq!(m.exited_at.seconds, 1_700_000_000);
        assert_eq!(m.exited_at.nanos, 5);
    }

    #[test]
    fn never_is_go_zero_time() {
        assert_eq!(timestamp(None).seconds, GO_ZERO_SECONDS);
    }
}
