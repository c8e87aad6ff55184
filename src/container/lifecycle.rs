//! The container's state machine in one table: which operation may happen
//! in which state, and the phase it moves the process to.
//!
//! Every operation of [`Container`](super::Container) asks [`check`] before
//! it acts, with the state it reads (or, for an operation that changes a
//! phase, inside `Process::transition`, so the check and the change are one
//! step). A refusal is a [`Refused`]; [`Refused::error`] is the one place
//! that turns it into an error code.

use std::fmt;

use crate::error::Error;
use crate::process::Phase;

/// An operation on a container or on one of its processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Create the container (its init process).
    Create,
    /// Start the init process (or restore it), or a registered exec.
    Start,
    /// Register an exec.
    Exec,
    /// Signal a process.
    Kill,
    /// Delete a process (for the init, the container).
    Delete,
    /// Handle a process's reaped exit.
    Exit,
    /// Freeze the container.
    Pause,
    /// Thaw the container.
    Resume,
    /// Change the container's resources.
    Update,
    /// Checkpoint the container.
    Checkpoint,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Create => "create",
            Op::Start => "start",
            Op::Exec => "exec in",
            Op::Kill => "signal",
            Op::Delete => "delete",
            Op::Exit => "handle the exit of",
            Op::Pause => "pause",
            Op::Resume => "resume",
            Op::Update => "update",
            Op::Checkpoint => "checkpoint",
        })
    }
}

/// What the table looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct State {
    /// Whether the process the operation is on is an exec.
    pub exec: bool,
    /// Its phase (the init's, for an operation on the container).
    pub phase: Phase,
    /// The init process's phase.
    pub init: Phase,
    /// Whether the container is frozen by Pause.
    pub paused: bool,
}

/// Why an operation may not happen in a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    /// Started (or starting) already.
    #[error("it is already started")]
    AlreadyStarted,
    /// Exited already (Start of a process that ran).
    #[error("it has already exited")]
    AlreadyExited,
    /// Not running (an exec never started or exited; a container not
    /// started or exited).
    #[error("it is not running")]
    NotRunning,
    /// The init process is not running.
    #[error("its init process is not running")]
    InitNotRunning,
    /// The init process has exited.
    #[error("its init process has exited")]
    InitExited,
    /// The container is paused.
    #[error("it is paused")]
    Paused,
    /// The container is paused already.
    #[error("it is already paused")]
    AlreadyPaused,
    /// The container is not paused.
    #[error("it is not paused")]
    NotPaused,
    /// The process runs (or is between phases): it cannot be deleted.
    #[error("it is running")]
    Running,
    /// The process has finished: nothing to signal.
    #[error("it has already finished")]
    Finished,
    /// The process is deleted (or being deleted).
    #[error("it is already deleted")]
    Deleted,
    /// The exit was handled already.
    #[error("its exit is already handled")]
    ExitHandled,
}

impl Refused {
    /// The error for `op` refused on `what` (e.g. `container "x"`): the one
    /// place a refusal gets its code. What is gone is NotFound (containerd
    /// kills and deletes what has finished as a matter of course); the rest
    /// is FailedPrecondition.
    pub(crate) fn error(self, op: Op, what: &str) -> Error {
        let message = format!("cannot {op} {what}: {self}");
        match self {
            Refused::Finished | Refused::Deleted => Error::NotFound(message),
            _ => Error::FailedPrecondition(message),
        }
    }
}

/// Whether `op` may happen in state `s`: the phase the process moves to
/// (its own phase, for an operation that does not change it), or why not.
pub(crate) fn check(op: Op, s: State) -> Result<Phase, Refused> {
    use Phase::*;
    match op {
        Op::Create => match s.phase {
            Created => Ok(Created),
            _ => Err(Refused::AlreadyStarted),
        },
        Op::Start if s.exec => {
            if s.init.finished() {
                return Err(Refused::InitExited);
            }
            if s.paused {
                return Err(Refused::Paused);
            }
            match s.phase {
                Created => Ok(Starting),
                _ => Err(Refused::AlreadyStarted),
            }
        }
        Op::Start => match s.phase {
            Created => Ok(Starting),
            Starting | Running => Err(Refused::AlreadyStarted),
            _ => Err(Refused::AlreadyExited),
        },
        Op::Exec => match (s.init, s.paused) {
            (Running, false) => Ok(s.phase),
            (Running, true) => Err(Refused::Paused),
            _ => Err(Refused::InitNotRunning),
        },
        Op::Kill if s.phase.finished() => Err(Refused::Finished),
        Op::Kill if s.exec && s.phase != Running => Err(Refused::NotRunning),
        Op::Kill => Ok(s.phase),
        Op::Delete => match s.phase {
            Created => Ok(Deleting(None)),
            Stopped(e) => Ok(Deleting(Some(e))),
            Starting | Running | Exited => Err(Refused::Running),
            Deleting(_) | Deleted(_) => Err(Refused::Deleted),
        },
        Op::Exit => match s.phase {
            Created | Running => Ok(Exited),
            _ => Err(Refused::ExitHandled),
        },
        Op::Pause if s.init != Running => Err(Refused::NotRunning),
        Op::Pause if s.paused => Err(Refused::AlreadyPaused),
        Op::Pause => Ok(s.phase),
        Op::Resume if !s.paused => Err(Refused::NotPaused),
        Op::Resume => Ok(s.phase),
        Op::Update if s.init.finished() => Err(Refused::InitExited),
        Op::Update => Ok(s.phase),
        Op::Checkpoint if s.init != Running => Err(Refused::NotRunning),
        Op::Checkpoint => Ok(s.phase),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::ExitInfo;

    fn init(phase: Phase) -> State {
        State {
            exec: false,
            phase,
            init: phase,
            paused: false,
        }
    }

    fn exec(phase: Phase, init: Phase) -> State {
        State {
            exec: true,
            phase,
            init,
            paused: false,
        }
    }

    #[test]
    fn start_runs_once() {
        assert_eq!(check(Op::Start, init(Phase::Created)), Ok(Phase::Starting));
        for p in [Phase::Starting, Phase::Running] {
            assert_eq!(check(Op::Start, init(p)), Err(Refused::AlreadyStarted));
        }
        assert_eq!(
            check(Op::Start, init(Phase::Exited)),
            Err(Refused::AlreadyExited)
        );
        let e = exec(Phase::Created, Phase::Exited);
        assert_eq!(check(Op::Start, e), Err(Refused::InitExited));
        let paused = State {
            paused: true,
            ..exec(Phase::Created, Phase::Running)
        };
        assert_eq!(check(Op::Start, paused), Err(Refused::Paused));
    }

    #[test]
    fn delete_rules() {
        let at = std::time::SystemTime::UNIX_EPOCH;
        let stopped = Phase::Stopped(ExitInfo { status: 3, at });
        assert_eq!(
            check(Op::Delete, init(Phase::Created)),
            Ok(Phase::Deleting(None))
        );
        assert!(matches!(
            check(Op::Delete, init(stopped)),
            Ok(Phase::Deleting(Some(_)))
        ));
        let running = check(Op::Delete, init(Phase::Running)).unwrap_err();
        let code = running.error(Op::Delete, "container \"c\"").code();
        assert_eq!(code, ttrpc::Code::FAILED_PRECONDITION);
        let gone = check(Op::Delete, init(Phase::Deleting(None))).unwrap_err();
        let code = gone.error(Op::Delete, "container \"c\"").code();
        assert_eq!(code, ttrpc::Code::NOT_FOUND);
    }

    #[test]
    fn kill_reaches_only_what_runs() {
        assert!(check(Op::Kill, init(Phase::Created)).is_ok());
        let done = check(Op::Kill, init(Phase::Exited)).unwrap_err();
        assert_eq!(done.error(Op::Kill, "x").code(), ttrpc::Code::NOT_FOUND);
        let e = exec(Phase::Created, Phase::Running);
        assert_eq!(check(Op::Kill, e), Err(Refused::NotRunning));
    }

    #[test]
    fn pause_and_resume_alternate() {
        let running = init(Phase::Running);
        assert!(check(Op::Pause, running).is_ok());
        let paused = State {
            paused: true,
            ..running
        };
        assert_eq!(check(Op::Pause, paused), Err(Refused::AlreadyPaused));
        assert!(check(Op::Resume, paused).is_ok());
        assert_eq!(check(Op::Resume, running), Err(Refused::NotPaused));
        assert_eq!(check(Op::Exec, paused), Err(Refused::Paused));
    }
}
