//! A shim driven straight over ttrpc, as containerd drives it: started with
//! `start` in a bundle made from busybox-static and `runc spec`, with an
//! in-test receiver where containerd's events socket would be. Everything a
//! fixture started is stopped when it is dropped, by pid.
//!
//! Tests use it with `mod common;` and `use common::direct::*;`, which also
//! brings the helpers of the rest of the harness that the direct tests use.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protobuf::well_known_types::any::Any;
use protobuf::Message;
use tether::client::{connect, ShimSpawn};
use tether::protos::forward::ForwardRequest;
use tether::protos::forward_ttrpc::{create_events, Events};
use tether::protos::shim::*;
use tether::protos::shim_ttrpc::TaskClient;
use ttrpc::r#async::TtrpcContext;

use super::SETTLE_TIMEOUT;

mod exec;

// Each test crate uses a different part of the harness (see common/mod.rs).
#[allow(unused_imports)]
pub use self::exec::Exec;
#[allow(unused_imports)]
pub use super::{
    alive, env_or, eventually, fd_count, fd_targets, gone_within, linux_resources, make_rootfs,
    mounted_under, oci_process, poll_until, probe_connect, process_spec, refused_for,
    refused_for_gid, require_root_and_runc, runc_delete_force, runc_knows, runc_options, runc_root,
    sigkill, zombie_children, SHIM,
};

/// The shim the fixtures start: tether, or the binary TETHER_DIRECT_SHIM
/// names (containerd's Go shim, containerd-shim-runc-v2, to compare).
pub fn shim_binary() -> PathBuf {
    std::env::var_os("TETHER_DIRECT_SHIM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(SHIM))
}

pub fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_duration(Duration::from_secs(20))
}

/// Events received on a stand-in for containerd's ttrpc events socket.
#[derive(Default)]
pub struct Sink {
    pub got: Mutex<Vec<(String, Any)>>,
    /// Each event's topic and its envelope's timestamp (when the shim
    /// published it), in nanoseconds since the epoch.
    pub published: Mutex<Vec<(String, i128)>>,
}

#[async_trait::async_trait]
impl Events for Sink {
    async fn forward(
        &self,
        _: &TtrpcContext,
        req: ForwardRequest,
    ) -> ttrpc::Result<protobuf::well_known_types::empty::Empty> {
        let env = req.envelope.into_option().expect("an envelope");
        assert!(env.timestamp.seconds > 0, "envelope timestamp must be set");
        let at =
            i128::from(env.timestamp.seconds) * 1_000_000_000 + i128::from(env.timestamp.nanos);
        self.published.lock().unwrap().push((env.topic.clone(), at));
        self.got.lock().unwrap().push((
            env.topic.clone(),
            env.event.into_option().expect("an event"),
        ));
        Ok(Default::default())
    }
}

/// One shim, its bundle, its event sink; everything stopped on drop.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub namespace: String,
    pub id: String,
    pub address: String,
    pub client: TaskClient,
    pub sink: Arc<Sink>,
    events: ttrpc::r#async::Server,
    pub shim_pid: u32,
}

pub static SEQ: AtomicUsize = AtomicUsize::new(0);

impl Fixture {
    /// How many times the shim says (in Connect's version) it was upgraded
    /// in place.
    pub async fn upgrades(&self) -> u32 {
        let request = tether::protos::shim::ConnectRequest::default();
        let v = self.client.connect(ctx(), &request).await.unwrap().version;
        let n = v
            .split("(upgraded ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok());
        n.unwrap_or_else(|| panic!("no upgrade count in the version {v:?}"))
    }

    /// A bundle whose spec runs `args`, and a shim started for it.
    pub async fn new(args: &[&str]) -> Fixture {
        Fixture::with_spec(args, |_| {}).await
    }

    /// Like [`Fixture::new`], with a last say over the OCI spec.
    pub async fn with_spec(args: &[&str], edit: impl FnOnce(&mut serde_json::Value)) -> Fixture {
        Fixture::build(args, edit, &[]).await
    }

    /// Like [`Fixture::with_spec`], with runtime options for `start`'s stdin.
    pub async fn build(
        args: &[&str],
        edit: impl FnOnce(&mut serde_json::Value),
        options: &[u8],
    ) -> Fixture {
        Fixture::build_on(args, edit, options, |_| {}).await
    }

    /// Like [`Fixture::build`]; `prepare` gets the (empty) bundle directory
    /// first, to put a filesystem there, say.
    pub async fn build_on(
        args: &[&str],
        edit: impl FnOnce(&mut serde_json::Value),
        options: &[u8],
        prepare: impl FnOnce(&Path),
    ) -> Fixture {
        require_root_and_runc();
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let namespace = format!("tether-direct-{}-{n}", std::process::id());
        let id = format!("c{n}");
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle");
        std::fs::create_dir(&bundle).unwrap();
        prepare(&bundle);
        make_bundle(&bundle, args, edit);

        let events_sock = dir.path().join("events.sock");
        let sink = Arc::new(Sink::default());
        let mut events = ttrpc::r#async::Server::new()
            .bind(&format!("unix://{}", events_sock.display()))
            .unwrap()
            .register_service(create_events(sink.clone()));
        events.start().await.unwrap();

        let fake_grpc = dir.path().join("containerd.sock").display().to_string();
        let binary = shim_binary();
        if binary != Path::new(SHIM) {
            // containerd's Go shim logs to a FIFO named "log" in the bundle,
            // which containerd makes and reads; without it, it exits.
            let log = bundle.join("log");
            nix::unistd::mkfifo(&log, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
            let keep = dir.path().join("shim.log");
            std::thread::spawn(move || {
                if let (Ok(mut r), Ok(mut w)) =
                    (std::fs::File::open(&log), std::fs::File::create(&keep))
                {
                    let _ = std::io::copy(&mut r, &mut w);
                }
            });
        }
        let spawn = ShimSpawn {
            binary: &binary,
            bundle: &bundle,
            namespace: &namespace,
            id: &id,
            address: &fake_grpc,
            ttrpc_address: &events_sock.display().to_string(),
            options,
        };
        let address = spawn.start().expect("shim start");
        assert!(
            address.starts_with("unix:///run/containerd/s/"),
            "{address}"
        );
        assert_eq!(
            std::fs::read_to_string(bundle.join("address")).unwrap(),
            address
        );
        let client = connect(&address).await.expect("connect to the shim");
        let shim_pid = client
            .connect(ctx(), &ConnectRequest::default())
            .await
            .unwrap()
            .shim_pid;
        Fixture {
            dir,
            namespace,
            id,
            address,
            client,
            sink,
            events,
            shim_pid,
        }
    }

    pub fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    pub fn socket(&self) -> PathBuf {
        PathBuf::from(self.address.trim_start_matches("unix://"))
    }

    /// runc's state root for this fixture's namespace.
    pub fn runc_root(&self) -> PathBuf {
        runc_root(&self.namespace)
    }

    pub fn create_request(&self) -> CreateTaskRequest {
        CreateTaskRequest {
            id: self.id.clone(),
            bundle: self.bundle().display().to_string(),
            ..Default::default()
        }
    }

    /// containerd goes away: the event receiver stops listening.
    pub async fn events_down(&mut self) {
        self.events.shutdown().await.unwrap();
        let _ = std::fs::remove_file(self.dir.path().join("events.sock"));
    }

    /// containerd is back: a new event receiver on the same socket, into
    /// the same sink.
    pub async fn events_up(&mut self) {
        let sock = self.dir.path().join("events.sock");
        let _ = std::fs::remove_file(&sock);
        let mut events = ttrpc::r#async::Server::new()
            .bind(&format!("unix://{}", sock.display()))
            .unwrap()
            .register_service(create_events(self.sink.clone()));
        events.start().await.unwrap();
        self.events = events;
    }

    pub fn topics(&self) -> Vec<String> {
        self.sink
            .got
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.0.clone())
            .collect()
    }

    pub fn event<M: Message>(&self, topic: &str) -> M {
        let got = self.sink.got.lock().unwrap();
        let (_, any) = got
            .iter()
            .find(|e| e.0 == topic)
            .unwrap_or_else(|| panic!("no {topic} event"));
        M::parse_from_bytes(&any.value).unwrap()
    }

    /// How many events of `topic` arrived.
    pub fn count(&self, topic: &str) -> usize {
        self.topics().iter().filter(|t| *t == topic).count()
    }

    /// Waits until `n` events of `topic` arrived; panics, naming what came,
    /// when they do not within `SETTLE_TIMEOUT`.
    pub async fn wait_for_topic(&self, topic: &str, n: usize) {
        self.wait_for_events_where(&format!("{n} {topic} event(s)"), || self.count(topic) >= n)
            .await;
    }

    /// Waits until `n` events (of any topic) arrived; panics, naming what
    /// came, when they do not within `SETTLE_TIMEOUT`.
    pub async fn wait_for_events(&self, n: usize) {
        self.wait_for_events_where(&format!("{n} event(s)"), || {
            self.sink.got.lock().unwrap().len() >= n
        })
        .await;
    }

    async fn wait_for_events_where(&self, what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{what} did not arrive within {SETTLE_TIMEOUT:?}; events so far: {:?}",
                self.topics()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Creates the container from the default request; returns its pid.
    pub async fn create(&self) -> u32 {
        let req = self.create_request();
        self.client.create(ctx(), &req).await.unwrap().pid
    }

    /// Starts the init process; returns its pid.
    pub async fn start(&self) -> u32 {
        let req = StartRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        self.client.start(ctx(), &req).await.unwrap().pid
    }

    /// Sends `signal` to the init process.
    pub async fn kill(&self, signal: u32) {
        let req = KillRequest {
            id: self.id.clone(),
            signal,
            ..Default::default()
        };
        self.client.kill(ctx(), &req).await.unwrap();
    }

    /// Waits for the init process; returns its exit status.
    pub async fn wait(&self) -> u32 {
        let req = WaitRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        self.client.wait(ctx(), &req).await.unwrap().exit_status
    }

    /// The container's state.
    pub async fn state(&self) -> StateResponse {
        let req = StateRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        self.client.state(ctx(), &req).await.unwrap()
    }

    /// Pauses the container.
    pub async fn pause(&self) {
        let req = PauseRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        self.client.pause(ctx(), &req).await.unwrap();
    }

    /// Resumes the container.
    pub async fn resume(&self) {
        let req = ResumeRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        self.client.resume(ctx(), &req).await.unwrap();
    }

    /// Deletes the container.
    pub async fn delete(&self) -> DeleteResponse {
        let req = DeleteRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        self.client.delete(ctx(), &req).await.unwrap()
    }

    /// SIGKILLs the init, waits for it and deletes the container; returns
    /// the exit status.
    pub async fn stop_and_delete(&self) -> u32 {
        self.kill(9).await;
        let status = self.wait().await;
        self.delete().await;
        status
    }

    /// Shutdown, then wait for the daemon to exit; asserts it does.
    pub async fn shutdown_and_wait_exit(&self) {
        let req = ShutdownRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        // The connection may close under the reply: that is success too.
        let _ = self.client.shutdown(ctx(), &req).await;
        assert!(
            gone_within(self.shim_pid, Duration::from_secs(10)),
            "shim still running after Shutdown"
        );
        assert!(!self.socket().exists(), "socket left behind");
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if alive(self.shim_pid) {
            sigkill(self.shim_pid);
        }
        let root = self.runc_root();
        runc_delete_force(&root, &self.id);
        let _ = std::fs::remove_dir_all(&root);
        let _ = nix::mount::umount2(
            &self.bundle().join("rootfs"),
            nix::mount::MntFlags::MNT_DETACH,
        );
        let _ = std::fs::remove_file(self.socket());
    }
}

/// What containerd does for a shim that died: the shim binary's `delete`
/// (tether's, whichever shim the fixture ran).
pub fn delete_after_death(f: &Fixture) -> DeleteResponse {
    let bundle = f.bundle();
    let spawn = ShimSpawn {
        binary: Path::new(SHIM),
        bundle: &bundle,
        namespace: &f.namespace,
        id: &f.id,
        address: "/run/containerd/containerd.sock",
        ttrpc_address: "",
        options: &[],
    };
    spawn.delete().expect("the delete subcommand")
}

/// Writes an OCI bundle: busybox rootfs, `runc spec` defaults, our args.
pub fn make_bundle(bundle: &Path, args: &[&str], edit: impl FnOnce(&mut serde_json::Value)) {
    make_rootfs(&bundle.join("rootfs"));
    let out = Command::new("runc")
        .args(["spec", "--bundle"])
        .arg(bundle)
        .output()
        .unwrap();
    assert!(out.status.success(), "runc spec: {:?}", out);
    let path = bundle.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = args.iter().map(|a| a.to_string()).collect();
    spec["root"]["readonly"] = false.into();
    edit(&mut spec);
    std::fs::write(&path, serde_json::to_vec(&spec).unwrap()).unwrap();
}

pub fn code_of<T: std::fmt::Debug>(r: ttrpc::Result<T>) -> (ttrpc::Code, String) {
    match r {
        Err(ttrpc::Error::RpcStatus(s)) => (s.code(), s.message),
        other => panic!("expected an error status, got {other:?}"),
    }
}
