//! The support module of every integration test: a private containerd (in a
//! testenv environment of its own), a shim driven directly over ttrpc,
//! busybox root filesystems, helpers to inspect processes, mounts, sockets
//! and runc state, and the check scripts' runner.
//!
//! Everything a test starts is owned by a guard (`Containerd`, `Rootfs`,
//! `EventStream`, `direct::Fixture`) whose `Drop` stops it by PID and removes
//! what it left, so a panicking test cleans up too; a `Containerd`'s is its
//! environment's teardown (kill its cgroup, drop its namespaces, remove its
//! dir). Nothing here ever signals a process by name.
//!
//! The runtime under test in the containerd tests is `TETHER_TEST_RUNTIME`
//! when set (a runtime name such as `io.containerd.runc.v2`, or an absolute
//! path to a shim binary) and the tether shim built by cargo otherwise.
//!
//! Layout: `environment` (runtime under test, prerequisites), `containerd`
//! (the private daemon in its environment, and its teardown), `ctr` (`ctr` invocations and their
//! parsing), `direct` (the shim without containerd: `Fixture`, `Exec`),
//! `rootfs`, `events` (`ctr events`), `hanging_runc` (a runc wrapper that
//! hangs on command), `procs` (/proc scanning, waiting for
//! and killing by PID), `mounts`, `payloads` (the `Any`s containerd sends),
//! `runc` (runc's state), `scenarios` (scenarios several test binaries run),
//! `script_checks` (PASS/FAIL check scripts), `specs` (a Kubernetes suite's
//! per-spec results with runc and with tether, compared), `sockets` (unix sockets,
//! /run/containerd/s, connecting as another user) and `util` (polling,
//! running commands, data helpers).
//!
//! A test declares `mod common;` and uses `common::Name` for everything
//! public but the direct harness, which is `common::direct` (`use
//! common::direct::*;` brings it and the helpers the direct tests use), and
//! the script runner, `common::script_checks`, and the suite comparison,
//! `common::specs`.

#![allow(dead_code)]

use std::time::Duration;

mod containerd;
mod ctr;
pub mod direct;
mod environment;
mod events;
mod hanging_runc;
#[macro_use]
pub mod matrix;
mod mounts;
mod payloads;
mod procs;
mod rootfs;
mod runc;
mod scenarios;
pub mod script_checks;
mod sockets;
pub mod specs;
mod util;

// One item, so one `allow`: each test crate uses a different part of the
// harness (the same reason for `dead_code` above).
#[allow(unused_imports)]
pub use self::{
    containerd::{testenv_binary, Containerd},
    ctr::{parse_delete_exit_code, parse_task_ls, TaskRow},
    environment::{
        find_in_path, require_environment, require_root_and_runc, runtime, runtime_binary,
        shim_path, SHIM,
    },
    events::{parse_event_line, Event, EventStream},
    hanging_runc::{poll_until_async, remove, run_with, Frozen, HangingRunc, PROMPT},
    matrix::{
        bins, current_bins, current_runc_dir, current_runc_version, current_version, run_on,
        run_on_with_runc, runc_binary, runc_dir, ContainerdBins, MATRIX, NEWEST_RUNC,
    },
    mounts::{mounted_under, mounts_in_under, mounts_under, unmount_all_under},
    payloads::{linux_resources, oci_process, process_spec, runc_options},
    procs::{
        alive, all_processes, fd_count, fd_targets, gone_within, kill_processes_where,
        process_alive, processes_rooted_under, sigkill, zombie_children, ProcInfo,
    },
    rootfs::{make_rootfs, Rootfs},
    runc::{runc_delete_force, runc_knows, runc_root},
    scenarios::oom_reported_once_before_exit,
    sockets::{
        bound_unix_paths, bound_unix_paths_of_netns, probe_connect, refused_for, refused_for_gid,
        socket_dir_entries, socket_path_of_address, sockets_of, unix_sockets,
        unix_sockets_of_netns, SocketDirSnapshot, UnixSocket,
    },
    util::{
        compare_stream, describe_output, env_or, eventually, output_in_pty, output_in_pty_paced,
        output_with_timeout, poll_until, pseudo_random_bytes, sha256_hex, spawn_and_wait,
        unique_name, StreamCompare,
    },
};

/// Upper bound for one `ctr` invocation. Only guards against hangs; never
/// asserted as a performance limit.
pub const CTR_TIMEOUT: Duration = Duration::from_secs(120);
/// How long to wait for asynchronous state (task status, events, process
/// exit, cleanup) to settle before declaring failure.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Directory containerd's v2 shims put their sockets in (for a
/// `Containerd`, in its environment's /run: `Containerd::host_path`).
pub const SHIM_SOCKET_DIR: &str = "/run/containerd/s";
/// runc state root used by containerd shims (one dir per namespace; for a
/// `Containerd`, in its environment's /run).
pub const RUNC_ROOT: &str = "/run/containerd/runc";

/// Interval between two checks of `poll_until`.
const POLL: Duration = Duration::from_millis(50);
