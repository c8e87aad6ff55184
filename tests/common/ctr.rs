//! `ctr` invocations against a `Containerd` (`ctr run`, `ctr task ...`)
//! and parsing of their output (`TaskRow`, Delete exit codes).

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::containerd::Containerd;
use super::environment::runtime;
use super::rootfs::Rootfs;
use super::util::{describe_output, output_with_timeout, poll_until};
use super::{CTR_TIMEOUT, SETTLE_TIMEOUT};

/// One row of `ctr task ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    pub id: String,
    pub pid: u32,
    pub status: String,
}

impl Containerd {
    /// A `ctr --address A --namespace NS` command with stdin from /dev/null,
    /// run inside containerd's environment: ctr makes the fifos of `task
    /// exec`, `task start` and `run` (without `--fifo-dir`) under
    /// /run/containerd/fifo, where the shims must find them.
    pub fn ctr_command(&self) -> Command {
        self.ctr_command_with(self.env().command(&self.bins.ctr))
    }

    /// The same run on the host, for the calls that hand the shims no path
    /// (listing, killing, deleting; `run` with `--fifo-dir`): one process
    /// fewer than through the environment.
    fn host_ctr_command(&self) -> Command {
        self.ctr_command_with(Command::new(&self.bins.ctr))
    }

    fn ctr_command_with(&self, mut cmd: Command) -> Command {
        cmd.arg("--address")
            .arg(&self.address)
            .arg("--namespace")
            .arg(self.namespace())
            .env_remove("CONTAINERD_ADDRESS")
            .env_remove("CONTAINERD_NAMESPACE")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `ctr --address A --namespace NS <args>` (stdin /dev/null),
    /// inside the environment when it may make fifos (see `ctr_command`).
    pub fn ctr(&self, args: &[&str]) -> Output {
        let fifos = match args {
            ["run", rest @ ..] => !rest.contains(&"--fifo-dir"),
            ["task" | "tasks" | "t", sub, ..] => ["exec", "start", "attach"].contains(sub),
            _ => false,
        };
        let mut cmd = if fifos {
            self.ctr_command()
        } else {
            self.host_ctr_command()
        };
        output_with_timeout(cmd.args(args), CTR_TIMEOUT)
    }

    /// Like `ctr`, but panics (with containerd's log) unless it succeeds.
    pub fn ctr_ok(&self, args: &[&str]) -> Output {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "`ctr {}` failed\n{}\n{}",
            args.join(" "),
            describe_output(&out),
            self.log_tail()
        );
        out
    }

    /// Arguments for `ctr run <opts> --runtime RT --fifo-dir F --rootfs R <id> <argv..>`.
    pub fn run_args(&self, opts: &[&str], rootfs: &Rootfs, id: &str, argv: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = vec!["run".into()];
        args.extend(opts.iter().map(|s| s.to_string()));
        args.push("--runtime".into());
        args.push(runtime());
        args.push("--fifo-dir".into());
        args.push(self.fifo_dir.display().to_string());
        args.push("--rootfs".into());
        args.push(rootfs.path().display().to_string());
        args.push(id.into());
        args.extend(argv.iter().map(|s| s.to_string()));
        args
    }

    /// A ready-to-spawn `ctr run` command (see `run_args`).
    pub fn run_command(&self, opts: &[&str], rootfs: &Rootfs, id: &str, argv: &[&str]) -> Command {
        // (Its fifos are in `fifo_dir`, which the environment shares.)
        let mut cmd = self.host_ctr_command();
        cmd.args(self.run_args(opts, rootfs, id, argv));
        cmd
    }

    /// Runs `ctr run <opts> ... <id> <argv..>` and returns its output.
    pub fn run(&self, opts: &[&str], rootfs: &Rootfs, id: &str, argv: &[&str]) -> Output {
        output_with_timeout(&mut self.run_command(opts, rootfs, id, argv), CTR_TIMEOUT)
    }

    /// `ctr run -d` that must succeed; returns the task's row once it is
    /// RUNNING, and remembers the shim's socket for cleanup.
    pub fn run_detached(&self, rootfs: &Rootfs, id: &str, argv: &[&str]) -> TaskRow {
        let out = self.run(&["-d"], rootfs, id, argv);
        assert!(
            out.status.success(),
            "`ctr run -d` of {id} failed\n{}\n{}",
            describe_output(&out),
            self.log_tail()
        );
        let row = self.wait_task(id, SETTLE_TIMEOUT, |t| t.status == "RUNNING");
        let _ = self.shim_socket(id);
        row
    }

    /// Parses `ctr task ls`.
    pub fn tasks(&self) -> Vec<TaskRow> {
        let out = self.ctr_ok(&["task", "ls"]);
        parse_task_ls(&String::from_utf8_lossy(&out.stdout))
    }

    /// The `ctr task ls` row of `id`, if listed.
    pub fn task(&self, id: &str) -> Option<TaskRow> {
        self.tasks().into_iter().find(|t| t.id == id)
    }

    /// Polls `ctr task ls` until the row of `id` satisfies `pred`; panics
    /// with the last rows seen and containerd's log after `timeout`.
    /// SIGKILLs a detached container, removes its task and container, and
    /// checks that nothing of it is left.
    pub fn kill_and_remove(&self, id: &str, rootfs: &Rootfs) {
        self.ctr(&["task", "kill", "-s", "KILL", id]);
        self.wait_task(id, Duration::from_secs(30), |t| t.status == "STOPPED");
        self.ctr_ok(&["task", "rm", id]);
        self.ctr_ok(&["container", "rm", id]);
        self.assert_no_leftovers(id, rootfs, None, None);
    }

    pub fn wait_task(
        &self,
        id: &str,
        timeout: Duration,
        pred: impl Fn(&TaskRow) -> bool,
    ) -> TaskRow {
        let mut last: Vec<TaskRow> = Vec::new();
        let mut last_err = String::new();
        let found = poll_until(timeout, || {
            let out = self.ctr(&["task", "ls"]);
            if !out.status.success() {
                last_err = describe_output(&out);
                return None;
            }
            last = parse_task_ls(&String::from_utf8_lossy(&out.stdout));
            last.iter().find(|t| t.id == id && pred(t)).cloned()
        });
        found.unwrap_or_else(|| {
            panic!(
                "task {id} did not reach the expected state within {timeout:?}; last `ctr task ls`: {last:?}; \
                 last error: {last_err}\n{}",
                self.diagnostics()
            )
        })
    }

    /// Runs `ctr task rm <id>`, which must succeed, and returns the exit
    /// status the shim reported in its Delete response. ctr 1.6 prints
    /// `task <id> exit with non-zero exit code <N>` (a warning on stderr) for
    /// a non-zero status and nothing for 0.
    pub fn task_delete(&self, id: &str) -> i32 {
        let out = self.ctr_ok(&["task", "rm", id]);
        parse_delete_exit_code(&String::from_utf8_lossy(&out.stderr), id).unwrap_or(0)
    }

    /// Names listed by `ctr container ls -q`.
    pub fn containers(&self) -> Vec<String> {
        let out = self.ctr_ok(&["container", "ls", "-q"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// Parses `ctr task ls` output (`TASK PID STATUS` columns).
pub fn parse_task_ls(text: &str) -> Vec<TaskRow> {
    text.lines()
        .skip_while(|l| !l.trim_start().starts_with("TASK"))
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let id = f.next()?.to_string();
            let pid = f.next()?.parse().ok()?;
            let status = f.next()?.to_string();
            Some(TaskRow { id, pid, status })
        })
        .collect()
}

/// Finds ctr 1.6's `task <id> exit with non-zero exit code <N>` warning.
pub fn parse_delete_exit_code(stderr: &str, id: &str) -> Option<i32> {
    let needle = format!("task {id} exit with non-zero exit code ");
    stderr.lines().find_map(|l| {
        let rest = &l[l.find(&needle)? + needle.len()..];
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        digits.parse().ok()
    })
}
