//! Terminals: the console socket runc sends a pty master to, and the master
//! itself (one descriptor, one owner, shared by the copy loops and resize).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use tokio::io::unix::AsyncFd;

use crate::error::{Error, Result};
use crate::fdsocket::FdSocket;

/// How long runc has to hand over the pty master once it has exited.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(30);

/// The socket runc sends a terminal's pty master to (`--console-socket`).
pub struct ConsoleSocket(FdSocket);

impl ConsoleSocket {
    /// Creates the socket in a new private directory.
    pub fn new() -> Result<ConsoleSocket> {
        FdSocket::new("pty", "receive pty master").map(ConsoleSocket)
    }

    /// The path to give runc.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Accepts runc's connection and receives the pty master.
    pub async fn receive(&self) -> Result<OwnedFd> {
        self.0.receive(RECEIVE_TIMEOUT).await
    }
}

/// A pty master.
pub struct Console {
    master: AsyncFd<OwnedFd>,
    eof_sent: Mutex<bool>,
}

impl Console {
    /// Wraps a received master (made non-blocking).
    pub fn new(master: OwnedFd) -> Result<Console> {
        let flags = fcntl(master.as_raw_fd(), FcntlArg::F_GETFL).map_err(Error::sys("F_GETFL"))?;
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        fcntl(master.as_raw_fd(), FcntlArg::F_SETFL(flags)).map_err(Error::sys("F_SETFL"))?;
        let master =
            crate::sys::async_fd(master).map_err(Error::io("register pty master", "ptmx"))?;
        Ok(Console {
            master,
            eof_sent: Mutex::new(false),
        })
    }

    /// Sets the window size.
    pub fn resize(&self, width: u16, height: u16) -> Result<()> {
        crate::sys::set_winsize(self.master.as_raw_fd(), width, height)
            .map_err(Error::io("resize pty", "ptmx"))
    }

    /// Waits until output (or the end of the terminal) can be read.
    pub async fn readable(&self) -> io::Result<()> {
        self.master.readable().await.map(drop)
    }

    /// Reads output; Ok(0) once the terminal's other side is gone (EIO).
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.master.readable().await?;
            match guard.try_io(|fd| Ok(nix::unistd::read(fd.as_raw_fd(), buf)?)) {
                Ok(Ok(n)) => return Ok(n),
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes some of `buf` as input; how much.
    pub async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.master.writable().await?;
            match guard.try_io(|fd| Ok(nix::unistd::write(fd.get_ref(), buf)?)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// The master's descriptor, borrowed (for a loop on the blocking pool).
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self.master.get_ref())
    }

    /// The master's descriptor, for a handover.
    pub fn into_fd(self) -> OwnedFd {
        self.master.into_inner()
    }

    /// A duplicate of the master (close-on-exec), for when the terminal is
    /// still shared.
    pub fn try_clone_fd(&self) -> io::Result<OwnedFd> {
        self.master.get_ref().try_clone()
    }

    /// Writes all of `buf` as input.
    pub async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let mut guard = self.master.writable().await?;
            match guard.try_io(|fd| Ok(nix::unistd::write(fd.get_ref(), buf)?)) {
                Ok(Ok(n)) => buf = &buf[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// [`Console::send_eof`] for a loop on the blocking pool: a full input
    /// buffer is waited out for at most a second.
    pub fn send_eof_blocking(&self) {
        if !self.first_eof() {
            return;
        }
        for _ in 0..10 {
            match nix::unistd::write(self.fd(), &[4]) {
                Err(nix::errno::Errno::EAGAIN) => {
                    let mut fds = [nix::poll::PollFd::new(
                        self.fd(),
                        nix::poll::PollFlags::POLLOUT,
                    )];
                    let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16));
                }
                _ => return,
            }
        }
    }

    /// Whether no EOF was sent yet; from now on, one was.
    fn first_eof(&self) -> bool {
        let mut sent = self.eof_sent.lock().unwrap_or_else(|p| p.into_inner());
        !std::mem::replace(&mut *sent, true)
    }

    /// Ends input as a user at the terminal would: an EOF character, which a
    /// reader in canonical mode sees as end of input. Sent once.
    pub async fn send_eof(&self) {
        if self.first_eof() {
            let _ = self.write_all(&[4]).await;
        }
    }
}
