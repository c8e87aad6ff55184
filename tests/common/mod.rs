//! End-to-end harness: a private containerd, a busybox root filesystem and
//! helpers to inspect processes, mounts and sockets on the host.
//!
//! Everything a test starts is owned by a guard (`Containerd`, `Rootfs`,
//! `EventStream`) whose `Drop` stops it by PID and removes what it left, so a
//! panicking test cleans up too. Nothing here ever signals a process by name.
//!
//! The runtime under test is `TETHER_TEST_RUNTIME` when set (a runtime name
//! such as `io.containerd.runc.v2`, or an absolute path to a shim binary) and
//! the tether shim built by cargo otherwise.
//!
//! Layout: `environment` (runtime under test, prerequisites), `containerd`
//! (the private daemon and its cleanup), `ctr` (`ctr` invocations and their
//! parsing), `rootfs`, `events` (`ctr events`), `procs` (/proc scanning and
//! killing by PID), `mounts`, `scenarios` (scenarios several test binaries run), `sockets` (unix sockets, /run/containerd/s) and
//! `util` (polling, running commands, data helpers). Everything public is
//! re-exported here, so tests use `common::Name`.

#![allow(dead_code)]

use std::time::Duration;

mod containerd;
mod ctr;
mod environment;
mod events;
#[macro_use]
pub mod matrix;
mod mounts;
mod procs;
mod rootfs;
mod scenarios;
mod sockets;
mod util;

// One item, so one `allow`: each test crate uses a different part of the
// harness (the same reason for `dead_code` above).
#[allow(unused_imports)]
pub use self::{
    containerd::Containerd,
    ctr::{parse_delete_exit_code, parse_task_ls, TaskRow},
    environment::{find_in_path, require_environment, runtime, runtime_binary, shim_path},
    events::{parse_event_line, Event, EventStream},
    matrix::{bins, current_bins, current_version, run_on, selected, ContainerdBins, MATRIX},
    mounts::{mounts_under, unmount_all_under},
    procs::{all_processes, kill_processes_where, process_alive, processes_rooted_under, ProcInfo},
    rootfs::Rootfs,
    scenarios::oom_reported_once_before_exit,
    sockets::{
        bound_unix_paths, socket_dir_entries, socket_path_of_address, sockets_of, unix_sockets,
        SocketDirSnapshot, UnixSocket,
    },
    util::{
        compare_stream, describe_output, output_in_pty, output_with_timeout, poll_until,
        pseudo_random_bytes, sha256_hex, spawn_and_wait, unique_name, StreamCompare,
    },
};

/// Upper bound for one `ctr` invocation. Only guards against hangs; never
/// asserted as a performance limit.
pub const CTR_TIMEOUT: Duration = Duration::from_secs(120);
/// How long to wait for asynchronous state (task status, events, process
/// exit, cleanup) to settle before declaring failure.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Directory containerd's v2 shims put their sockets in.
pub const SHIM_SOCKET_DIR: &str = "/run/containerd/s";
/// Machine-wide runc state root used by containerd shims (one dir per namespace).
pub const RUNC_ROOT: &str = "/run/containerd/runc";

/// Interval between two checks of `poll_until`.
const POLL: Duration = Duration::from_millis(50);
