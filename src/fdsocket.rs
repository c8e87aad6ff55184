//! A socket the runtime hands one descriptor back on: `--console-socket`
//! (the pty master of a terminal) and `--pidfd-socket` (a pidfd for the
//! process it started). runc connects and sends the descriptor with
//! SCM_RIGHTS; the shim accepts and receives it once runc has returned.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::UnixListener;

use crate::error::{Error, Result};

/// A listening socket in a private directory.
pub struct FdSocket {
    dir: PathBuf,
    path: PathBuf,
    listener: UnixListener,
    what: &'static str,
}

impl FdSocket {
    /// Creates `<temp>/tether-<kind>-XXXXXX/<kind>.sock` in a new 0700
    /// directory (short enough for a socket path whatever the bundle's
    /// length). `what` names the descriptor in errors.
    pub fn new(kind: &str, what: &'static str) -> Result<FdSocket> {
        let template = std::env::temp_dir().join(format!("tether-{kind}-XXXXXX"));
        let dir = nix::unistd::mkdtemp(&template).map_err(Error::sys("mkdtemp"))?;
        let path = dir.join(format!("{kind}.sock"));
        let listener = UnixListener::bind(&path).map_err(|e| {
            let _ = std::fs::remove_dir(&dir);
            Error::io("bind socket", &path)(e)
        })?;
        Ok(FdSocket {
            dir,
            path,
            listener,
            what,
        })
    }

    /// The path to give runc.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts runc's connection and receives the descriptor (close-on-exec),
    /// within `limit`.
    pub async fn receive(&self, limit: Duration) -> Result<OwnedFd> {
        let recv = async {
            let (conn, _) = self.listener.accept().await?;
            conn.async_io(Interest::READABLE, || crate::sys::recv_fd(conn.as_raw_fd()))
                .await
        };
        let received = match tokio::time::timeout(limit, recv).await {
            Ok(r) => r,
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        };
        received.map_err(|source| Error::Io {
            op: self.what,
            path: self.path.clone(),
            source,
        })
    }
}

impl Drop for FdSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}
