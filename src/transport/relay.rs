//! One client connection joined to the ttrpc server: a single task moves
//! whole frames both ways between the client's socket and the server's end
//! of a socketpair, reading only frame headers.
//!
//! Each direction reads what its socket has in one call, and reads again
//! only once that is written, so a peer that stops reading holds back only
//! its own traffic. The task keeps the requests that have had no response
//! yet (their frames, as sent), and stops only between frames, with nothing
//! half read or half written (a frame begun is read to its end first): the
//! client's socket can then change hands.

use std::collections::BTreeMap;
use std::io;

use tokio::net::UnixStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::frame::{method_of, FrameReader, Header, Outbox, REQUEST, RESPONSE};

/// Requests without a response, by stream id: their frames as sent.
pub(crate) type Unanswered = BTreeMap<u32, Vec<u8>>;

/// When a relay stops.
#[derive(Clone)]
pub(crate) struct Stops {
    /// Stop taking requests from the client (responses still flow).
    pub requests: CancellationToken,
    /// Stop altogether and hand the client's socket back. Cancelling it
    /// cancels `requests` too (it is its parent).
    pub all: CancellationToken,
}

impl Stops {
    /// Stops that fire with `owner` too.
    pub(crate) fn under(owner: &CancellationToken) -> Stops {
        let all = owner.child_token();
        Stops {
            requests: all.child_token(),
            all,
        }
    }
}

/// The requests that may wait forever, and are handed over: a task's
/// `Wait`, and the `WaitSandbox` CRI keeps open for each pod.
const WAITS: [&str; 2] = ["Wait", "WaitSandbox"];

/// Whether a stopped connection's unanswered requests are all waits (see
/// [`WAITS`]): decodes their payloads, which happens only once requests have
/// stopped.
pub(crate) fn only_waits(unanswered: &Unanswered) -> bool {
    unanswered
        .values()
        .all(|f| method_of(f).is_some_and(|m| WAITS.contains(&m.as_str())))
}

/// Relays until `stops.all` (returning the client's socket and the requests
/// it awaits answers to) or until either side fails or closes (an error;
/// both sockets close). `replay` are requests an earlier shim had not
/// answered, sent before anything the client sends. `settled` turns true
/// once requests have stopped and only `Wait`s are left unanswered.
pub(crate) async fn run(
    client: UnixStream,
    server: UnixStream,
    replay: Unanswered,
    stops: Stops,
    settled: watch::Sender<bool>,
) -> io::Result<(UnixStream, Unanswered)> {
    let mut unanswered = Unanswered::new();
    let mut up_in = FrameReader::default();
    let mut up_out = Outbox::default();
    for frame in replay.into_values() {
        up_out.push(frame);
    }
    let mut down_in = FrameReader::default();
    let mut down_out = Outbox::default();
    let mut taking_requests = true;
    // A request is recorded once wholly written to the server: no response
    // can come before that.
    let record = |unanswered: &mut Unanswered, frame: Vec<u8>| {
        if let Some(Header {
            kind: REQUEST,
            stream,
            ..
        }) = Header::of(&frame)
        {
            unanswered.insert(stream, frame);
        }
    };
    // A request is answered once its response is wholly written.
    let answer = |unanswered: &mut Unanswered, frame: Vec<u8>| {
        if let Some(Header {
            kind: RESPONSE,
            stream,
            ..
        }) = Header::of(&frame)
        {
            unanswered.remove(&stream);
        }
    };
    loop {
        if !taking_requests {
            let now = up_out.is_empty() && only_waits(&unanswered);
            settled.send_if_modified(|s| std::mem::replace(s, now) != now);
        }
        let quiet = up_in.idle() && up_out.is_empty() && down_in.idle() && down_out.is_empty();
        tokio::select! {
            biased;
            _ = stops.all.cancelled(), if quiet => return Ok((client, unanswered)),
            _ = stops.requests.cancelled(), if taking_requests && up_in.idle() => {
                taking_requests = false;
            }
            ready = server.writable(), if !up_out.is_empty() => {
                ready?;
                up_out.flush(&server, |f| record(&mut unanswered, f))?;
            }
            ready = client.writable(), if !down_out.is_empty() => {
                ready?;
                down_out.flush(&client, |f| answer(&mut unanswered, f))?;
            }
            ready = server.readable(), if down_out.is_empty() => {
                ready?;
                if down_in.read_from(&server)? {
                    while let Some(frame) = down_in.next_frame()? {
                        down_out.push(frame);
                    }
                    down_out.flush(&client, |f| answer(&mut unanswered, f))?;
                }
            }
            ready = client.readable(), if taking_requests && up_out.is_empty() => {
                ready?;
                if up_in.read_from(&client)? {
                    while let Some(frame) = up_in.next_frame()? {
                        up_out.push(frame);
                    }
                    up_out.flush(&server, |f| record(&mut unanswered, f))?;
                }
            }
        }
    }
}
