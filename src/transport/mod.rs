//! The request path: client connections accepted on the shim's socket and
//! relayed, frame by frame, to the ttrpc server.
//!
//! The ttrpc server never sees a client's socket. Each accepted connection
//! is joined to it through a socketpair, and one task per connection
//! ([`relay`]) moves whole frames across, reading only their 10-byte
//! headers ([`frame`]). The relay exists for live upgrade alone: containerd
//! takes a closed shim connection for a dead shim, so an upgrade must keep
//! every client socket open across exec, which the ttrpc server cannot do
//! (it owns its connections and their half-read frames). The relay knows
//! which requests are unanswered and can stop between frames; an upgrade
//! then stops taking requests ([`Transport::quiesce`]), takes the client
//! sockets and their unanswered requests out ([`Transport::snapshot`]), and
//! the next binary takes them back and replays those requests
//! ([`Transport::restore`]).
//!
//! Its cost, measured with 100,000 `Connect` calls in a row over one
//! connection against release builds on a shared, loaded 2-core machine:
//! the shim's CPU time (utime + stime from /proc) per request is 5.3-6.8
//! µs with the ttrpc server on the client socket directly (no relay, so no
//! live upgrade) and 9.6-14.7 µs relayed, by this relay or the former one
//! (two tasks per connection, each request's protobuf decoded): about 5 µs
//! per request, with no difference between the relays above the noise.
//! What the relay adds is the second hop, and that shows in system calls
//! (strace, shim and client together, per request): 13.4 without a relay,
//! 23.3 with the former relay, 19.1 with this one, which reads what a
//! socket has in one call and knows a short read drained it (no EAGAIN
//! read). Decoding was never the cost. An exec takes about five requests
//! against 1.8 ms of shim CPU (benchmark B4), so the relay is under 2 % of
//! it.

pub(crate) mod frame;
pub(crate) mod relay;
#[cfg(test)]
mod tests;

use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use ttrpc::r#async::transport::Listener;

use crate::sys::{FdList, FdTable};
use crate::tasks::Tasks;
use relay::{Stops, Unanswered};

/// How long [`Transport::quiesce`] waits for requests other than Wait to be
/// answered.
pub const QUIESCE_LIMIT: Duration = Duration::from_secs(10);
/// How long the accept loop rests after a failed accept (out of
/// descriptors, say) before it tries again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A client connection as a live-upgrade snapshot records it: its socket
/// (a number that survives exec) and the requests it awaits answers to.
#[derive(Debug, Serialize, Deserialize)]
pub struct ConnRec {
    /// Its socket.
    pub fd: RawFd,
    /// Requests without a response: (method, frame).
    pub pending: Vec<(String, Vec<u8>)>,
}

/// Requests still running when the transport was asked to settle.
#[derive(Debug, thiserror::Error)]
#[error("requests other than Wait still running after {0:?}")]
pub struct Unsettled(pub Duration);

/// The ttrpc server is gone: it takes no more connections.
#[derive(Debug, thiserror::Error)]
#[error("the ttrpc server is gone")]
pub struct ServerGone;

struct Conn {
    /// Turns true once its requests stopped and only Waits are open.
    settled: watch::Receiver<bool>,
    task: JoinHandle<io::Result<(UnixStream, Unanswered)>>,
}

struct Inner {
    conns: Vec<Conn>,
    /// The stops given to new connections; replaced once they have fired.
    stops: Stops,
}

/// Every client connection of this shim.
pub struct Transport {
    inner: Mutex<Inner>,
    /// The relays' owner (a branch of the daemon's tasks): their stops are
    /// below its token, and waiting for the daemon waits for them.
    tasks: Tasks,
    /// Whether the accept loop takes new connections.
    accepting: watch::Sender<bool>,
    to_server: mpsc::UnboundedSender<UnixStream>,
}

impl Transport {
    /// A transport whose relays `tasks` owns, and the listener to give the
    /// ttrpc server: it yields the server's ends of the connections'
    /// socketpairs.
    pub fn new(tasks: Tasks) -> (Arc<Transport>, Listener) {
        let (to_server, rx) = mpsc::unbounded_channel();
        let listener = Listener::new(futures_util::stream::unfold(rx, |mut rx| async move {
            let conn = rx.recv().await?;
            Some((Ok(conn), rx))
        }));
        (Transport::feeding(to_server, tasks), listener)
    }

    /// A transport handing the server's ends to `to_server`.
    fn feeding(to_server: mpsc::UnboundedSender<UnixStream>, tasks: Tasks) -> Arc<Transport> {
        Arc::new(Transport {
            inner: Mutex::new(Inner {
                conns: Vec::new(),
                stops: Stops::under(tasks.token()),
            }),
            tasks,
            accepting: watch::Sender::new(true),
            to_server,
        })
    }

    /// Relays a client connection; `replay` are requests an earlier shim had
    /// not answered, sent to the server before anything else.
    fn add(&self, client: UnixStream, replay: Unanswered) -> io::Result<()> {
        let (ours, theirs) = UnixStream::pair()?;
        self.to_server
            .send(theirs)
            .map_err(|_| io::Error::other(ServerGone))?;
        let (settled_tx, settled) = watch::channel(false);
        let mut inner = lock(&self.inner);
        let stops = inner.stops.clone();
        let task = self
            .tasks
            .spawn(relay::run(client, ours, replay, stops, settled_tx));
        inner.conns.retain(|c| !c.task.is_finished());
        inner.conns.push(Conn { settled, task });
        Ok(())
    }

    /// Stops (or resumes) taking new connections: while stopped they wait in
    /// the listen backlog.
    pub fn set_accepting(&self, on: bool) {
        self.accepting.send_replace(on);
    }

    /// Stops taking requests, then waits (at most [`QUIESCE_LIMIT`]) until
    /// every request still unanswered is a Wait, which may take forever and
    /// is handed over. Responses still flow.
    pub async fn quiesce(&self) -> Result<(), Unsettled> {
        let waits: Vec<watch::Receiver<bool>> = {
            let inner = lock(&self.inner);
            inner.stops.requests.cancel();
            inner.conns.iter().map(|c| c.settled.clone()).collect()
        };
        let settled = async {
            for mut w in waits {
                // A relay that ended (its client gone) has nothing open.
                let _ = w.wait_for(|s| *s).await;
            }
        };
        tokio::time::timeout(QUIESCE_LIMIT, settled)
            .await
            .map_err(|_| Unsettled(QUIESCE_LIMIT))
    }

    /// Stops relaying and takes every connection out: the client sockets
    /// (given away into `fds`) and their unanswered requests. The server's
    /// ends close. New connections relay again.
    pub async fn snapshot(&self, fds: &mut FdList) -> Vec<ConnRec> {
        let conns = {
            let mut inner = lock(&self.inner);
            let stopped = std::mem::replace(&mut inner.stops, Stops::under(self.tasks.token()));
            stopped.all.cancel();
            std::mem::take(&mut inner.conns)
        };
        let mut out = Vec::new();
        for c in conns {
            // A relay that failed had lost its client.
            let Ok(Ok((stream, unanswered))) = c.task.await else {
                continue;
            };
            let Ok(std) = stream.into_std() else { continue };
            let pending = unanswered
                .into_values()
                .map(|frame| (frame::method_of(&frame).unwrap_or_default(), frame))
                .collect();
            out.push(ConnRec {
                fd: fds.give(std.into()),
                pending,
            });
        }
        out
    }

    /// Takes connections back from a snapshot (in this binary or the next),
    /// their sockets from `fds`; their unanswered requests are replayed.
    pub fn restore(&self, conns: Vec<ConnRec>, fds: &mut FdTable) -> io::Result<()> {
        for c in conns {
            let std = std::os::unix::net::UnixStream::from(fds.take(c.fd)?);
            std.set_nonblocking(true)?;
            let replay = c
                .pending
                .into_iter()
                .filter_map(|(_, f)| Some((frame::Header::of(&f)?.stream, f)))
                .collect();
            self.add(UnixStream::from_std(std)?, replay)?;
        }
        Ok(())
    }
}

/// Accepts connections and relays them, while the transport is accepting,
/// until `stop` is cancelled. Only processes running as the shim's own user
/// and group (containerd's) are accepted, as containerd's own shims do: the
/// socket's mode already keeps others out, and this holds even if it were
/// changed.
pub async fn accept_loop(
    listener: Arc<UnixListener>,
    transport: Arc<Transport>,
    stop: CancellationToken,
) {
    let (uid, gid) = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    let mut accepting = transport.accepting.subscribe();
    loop {
        // While an upgrade is under way, connections wait in the backlog.
        // The sender lives in `transport`, which this loop holds.
        tokio::select! {
            _ = accepting.wait_for(|on| *on) => {}
            _ = stop.cancelled() => return,
        }
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = accepting.wait_for(|on| !*on) => continue,
            _ = stop.cancelled() => return,
        };
        let conn = match accepted {
            Ok((conn, _)) => conn,
            Err(e) => {
                // Out of descriptors, say: nothing to wait on but time (a
                // backoff on an outside failure, not a poll).
                tracing::warn!(error = %e, "accept failed");
                tokio::select! {
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    _ = stop.cancelled() => return,
                }
                continue;
            }
        };
        match conn.peer_cred() {
            Ok(c) if c.uid() == uid && c.gid() == gid => {
                if let Err(e) = transport.add(conn, Unanswered::new()) {
                    tracing::warn!(error = %e, "relaying a connection");
                }
            }
            Ok(c) => tracing::warn!(
                uid = c.uid(),
                gid = c.gid(),
                pid = c.pid(),
                "refused a connection from another user"
            ),
            Err(e) => tracing::warn!(error = %e, "refused a connection: no peer credentials"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
