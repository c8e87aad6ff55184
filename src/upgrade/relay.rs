//! Client connections, relayed frame by frame to the ttrpc server.
//!
//! Every accepted connection is joined to the ttrpc server through a
//! socketpair, with two small tasks moving whole ttrpc frames (10-byte
//! header, payload) across. The relay knows which requests have had no
//! response yet, and it can stop between frames. That is what lets a live
//! upgrade keep containerd's connection open across exec (containerd takes a
//! closed shim connection for a dead shim): the client's socket and its
//! unanswered requests are handed to the next binary, which replays them.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protobuf::Message;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::sys::{FdList, FdTable};

/// ttrpc's frame header length and its largest payload.
pub(crate) const HEADER: usize = 10;
const MAX_PAYLOAD: usize = 4 << 20;
const REQUEST: u8 = 1;
const RESPONSE: u8 = 2;

/// A request still waiting for its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The method (`Wait`, `State`, ...).
    pub method: String,
    /// The whole frame, as the client sent it.
    pub frame: Vec<u8>,
}

/// A client connection as a live-upgrade snapshot records it: its socket
/// (a number that survives exec) and the requests it awaits answers to.
#[derive(Debug, Serialize, Deserialize)]
pub struct ConnRec {
    /// Its socket.
    pub fd: RawFd,
    /// Requests without a response: (method, frame).
    pub pending: Vec<(String, Vec<u8>)>,
}

type Table = Arc<Mutex<BTreeMap<u32, Pending>>>;

struct Conn {
    pending: Table,
    /// Reads requests from the client; hands back the client's read half
    /// and the server's write half (dropping that would close the server's
    /// connection, and with it, through the other task, the client's).
    up: JoinHandle<io::Result<(OwnedReadHalf, OwnedWriteHalf)>>,
    /// Writes responses to the client; hands back its write half.
    down: JoinHandle<io::Result<OwnedWriteHalf>>,
}

/// All relayed connections of this shim.
pub struct Relays {
    conns: Mutex<Vec<Conn>>,
    /// Stops reading requests from clients (between frames).
    stop_up: watch::Sender<bool>,
    /// Stops writing responses to clients (between frames).
    stop_down: watch::Sender<bool>,
    to_server: mpsc::UnboundedSender<UnixStream>,
}

impl Relays {
    /// Relays feeding the ttrpc server through `to_server`, which takes the
    /// server's ends of the socketpairs.
    pub fn new(to_server: mpsc::UnboundedSender<UnixStream>) -> Arc<Relays> {
        Arc::new(Relays {
            conns: Mutex::default(),
            stop_up: watch::Sender::new(false),
            stop_down: watch::Sender::new(false),
            to_server,
        })
    }

    /// Relays a client connection; `replay` are requests an earlier shim had
    /// not answered, sent to the server before anything else.
    pub fn add(&self, client: UnixStream, replay: Vec<Pending>) -> io::Result<()> {
        let (ours, theirs) = UnixStream::pair()?;
        self.to_server
            .send(theirs)
            .map_err(|_| io::Error::other("the ttrpc server is gone"))?;
        let (c_read, c_write) = client.into_split();
        let (s_read, s_write) = ours.into_split();
        let table: BTreeMap<u32, Pending> = replay
            .into_iter()
            .filter_map(|p| Some((header_of(&p.frame)?.0, p)))
            .collect();
        let replay: Vec<Vec<u8>> = table.values().map(|p| p.frame.clone()).collect();
        let pending: Table = Arc::new(Mutex::new(table));
        let up = tokio::spawn(relay_up(
            c_read,
            s_write,
            replay,
            pending.clone(),
            self.stop_up.subscribe(),
        ));
        let down = tokio::spawn(relay_down(
            s_read,
            c_write,
            pending.clone(),
            self.stop_down.subscribe(),
        ));
        let mut conns = lock(&self.conns);
        conns.retain(|c| !(c.up.is_finished() && c.down.is_finished()));
        conns.push(Conn { pending, up, down });
        Ok(())
    }

    /// Stops taking requests, then waits (bounded) until every request still
    /// unanswered is a Wait, which may take forever and is handed over.
    pub async fn quiesce(&self) -> Result<(), String> {
        self.stop_up.send_replace(true);
        let settled = async {
            loop {
                let busy = lock(&self.conns).iter().any(|c| {
                    !c.up.is_finished() || lock(&c.pending).values().any(|p| p.method != "Wait")
                });
                if !busy {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(QUIESCE_LIMIT, settled)
            .await
            .map_err(|_| format!("requests still running after {QUIESCE_LIMIT:?}"))
    }

    /// Stops relaying responses and takes every connection out: the client
    /// sockets (given away into `fds`) and their unanswered requests. The
    /// server's ends close.
    pub async fn snapshot(&self, fds: &mut FdList) -> Vec<ConnRec> {
        self.stop_down.send_replace(true);
        let conns: Vec<Conn> = lock(&self.conns).drain(..).collect();
        let mut out = Vec::new();
        for c in conns {
            let (Ok(Ok((read, server))), Ok(Ok(write))) = (c.up.await, c.down.await) else {
                continue; // the client had gone
            };
            let Ok(stream) = read.reunite(write) else {
                continue;
            };
            // The old server connection ends; the client's stays open.
            drop(server);
            let Ok(std) = stream.into_std() else { continue };
            let pending = lock(&c.pending)
                .values()
                .map(|p| (p.method.clone(), p.frame.clone()))
                .collect();
            out.push(ConnRec {
                fd: fds.give(std.into()),
                pending,
            });
        }
        self.stop_up.send_replace(false);
        self.stop_down.send_replace(false);
        out
    }

    /// Takes connections back from a snapshot (in this binary or the next),
    /// their sockets from `fds`; their unanswered requests are replayed.
    pub fn restore(&self, conns: Vec<ConnRec>, fds: &mut FdTable) -> io::Result<()> {
        for c in conns {
            let std = std::os::unix::net::UnixStream::from(fds.take(c.fd)?);
            std.set_nonblocking(true)?;
            let pending = c
                .pending
                .into_iter()
                .map(|(method, frame)| Pending { method, frame })
                .collect();
            self.add(UnixStream::from_std(std)?, pending)?;
        }
        Ok(())
    }
}

async fn relay_up(
    mut client: OwnedReadHalf,
    mut server: OwnedWriteHalf,
    replay: Vec<Vec<u8>>,
    pending: Table,
    mut stop: watch::Receiver<bool>,
) -> io::Result<(OwnedReadHalf, OwnedWriteHalf)> {
    for frame in replay {
        server.write_all(&frame).await?;
    }
    loop {
        let Some(frame) = next_frame(&mut client, &mut stop).await? else {
            return Ok((client, server));
        };
        if let Some((id, REQUEST)) = header_of(&frame) {
            let method = method_of(&frame).unwrap_or_default();
            lock(&pending).insert(
                id,
                Pending {
                    method,
                    frame: frame.clone(),
                },
            );
        }
        server.write_all(&frame).await?;
    }
}

async fn relay_down(
    mut server: OwnedReadHalf,
    mut client: OwnedWriteHalf,
    pending: Table,
    mut stop: watch::Receiver<bool>,
) -> io::Result<OwnedWriteHalf> {
    loop {
        let Some(frame) = next_frame(&mut server, &mut stop).await? else {
            return Ok(client);
        };
        client.write_all(&frame).await?;
        if let Some((id, RESPONSE)) = header_of(&frame) {
            lock(&pending).remove(&id);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The payload length a frame header announces, refused past the bound
/// ttrpc itself keeps (4 MiB).
pub(crate) fn payload_len(header: &[u8; HEADER]) -> io::Result<usize> {
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(io::Error::other(format!("a ttrpc frame of {len} bytes")));
    }
    Ok(len)
}

/// Stream id and type of a frame.
pub(crate) fn header_of(frame: &[u8]) -> Option<(u32, u8)> {
    let h = frame.get(..HEADER)?;
    Some((u32::from_be_bytes([h[4], h[5], h[6], h[7]]), h[8]))
}

/// The method a request frame calls.
pub(crate) fn method_of(frame: &[u8]) -> Option<String> {
    let req = ttrpc::Request::parse_from_bytes(frame.get(HEADER..)?).ok()?;
    Some(req.method)
}

/// The next whole frame, or None once `stop` is set. Stops only between
/// frames: nothing is consumed until the first byte of a frame is in hand,
/// and from then on the frame is read to its end (peers write whole frames).
async fn next_frame(
    r: &mut OwnedReadHalf,
    stop: &mut watch::Receiver<bool>,
) -> io::Result<Option<Vec<u8>>> {
    let mut frame = vec![0u8; HEADER];
    let got = loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return Ok(None),
            ready = r.readable() => ready?,
        }
        // readable() may be stale; try_read tells, and clears it if so.
        match r.try_read(&mut frame) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    };
    r.read_exact(&mut frame[got..]).await?;
    let header: &[u8; HEADER] = frame[..HEADER].try_into().expect("a whole header");
    let len = payload_len(header)?;
    frame.resize(HEADER + len, 0);
    r.read_exact(&mut frame[HEADER..]).await?;
    Ok(Some(frame))
}

/// How long an upgrade waits for requests other than Wait to be answered.
pub const QUIESCE_LIMIT: Duration = Duration::from_secs(10);
