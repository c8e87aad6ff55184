//! Exec processes of a fixture's container, driven one RPC at a time.

use protobuf::MessageField;
use tether::protos::shim::*;
use tether::protos::shim_ttrpc::TaskClient;

use super::{ctx, process_spec, Fixture};

/// One exec process of a fixture's container.
pub struct Exec<'a> {
    pub client: &'a TaskClient,
    pub id: String,
    pub exec_id: String,
}

impl Exec<'_> {
    /// Adds exec `exec_id` running `args`, with `io` its (stdin, stdout),
    /// without a terminal.
    pub async fn add<'a>(
        f: &'a Fixture,
        exec_id: &str,
        args: &[&str],
        io: (&str, &str),
    ) -> Exec<'a> {
        Exec::add_with(f, exec_id, args, io, false).await
    }

    /// Like [`Exec::add`], with or without a terminal.
    pub async fn add_with<'a>(
        f: &'a Fixture,
        exec_id: &str,
        args: &[&str],
        (stdin, stdout): (&str, &str),
        terminal: bool,
    ) -> Exec<'a> {
        let req = ExecProcessRequest {
            id: f.id.clone(),
            exec_id: exec_id.into(),
            stdin: stdin.into(),
            stdout: stdout.into(),
            terminal,
            spec: MessageField::some(process_spec(args)),
            ..Default::default()
        };
        f.client.exec(ctx(), &req).await.unwrap();
        Exec {
            client: &f.client,
            id: f.id.clone(),
            exec_id: exec_id.into(),
        }
    }

    /// Starts it; returns its pid.
    pub async fn start(&self) -> ttrpc::Result<u32> {
        let req = StartRequest {
            id: self.id.clone(),
            exec_id: self.exec_id.clone(),
            ..Default::default()
        };
        self.client.start(ctx(), &req).await.map(|r| r.pid)
    }

    /// Waits for it; returns its exit status.
    pub async fn wait(&self) -> u32 {
        let req = WaitRequest {
            id: self.id.clone(),
            exec_id: self.exec_id.clone(),
            ..Default::default()
        };
        self.client.wait(ctx(), &req).await.unwrap().exit_status
    }

    /// Sends it `signal`.
    pub async fn kill(&self, signal: u32) -> ttrpc::Result<()> {
        let req = KillRequest {
            id: self.id.clone(),
            exec_id: self.exec_id.clone(),
            signal,
            ..Default::default()
        };
        self.client.kill(ctx(), &req).await.map(drop)
    }

    /// Deletes it.
    pub async fn delete(&self) -> ttrpc::Result<DeleteResponse> {
        let req = DeleteRequest {
            id: self.id.clone(),
            exec_id: self.exec_id.clone(),
            ..Default::default()
        };
        self.client.delete(ctx(), &req).await
    }

    /// Resizes its terminal.
    pub async fn resize(&self, width: u32, height: u32) {
        let req = ResizePtyRequest {
            id: self.id.clone(),
            exec_id: self.exec_id.clone(),
            width,
            height,
            ..Default::default()
        };
        self.client.resize_pty(ctx(), &req).await.unwrap();
    }

    /// Starts it, waits for it and deletes it; returns its exit status.
    pub async fn run(&self) -> u32 {
        self.start().await.unwrap();
        let status = self.wait().await;
        self.delete().await.unwrap();
        status
    }
}
