//! Malformed ttrpc on a live shim's socket: an oversized length, a truncated
//! frame, an unknown message type, an unknown service or method, and garbage
//! protobuf. Each gets an error reply or a closed connection, never a crash;
//! a connection opened before stays usable, the container keeps running, and
//! the shim serves the next request.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::direct::*;
use protobuf::Message;
use tether::protos::shim::*;
use tether::protos::shim_ttrpc::TaskClient;
use tether::protos::status::Status;

const REQUEST: u8 = 1;
const RESPONSE: u8 = 2;

fn frame(stream: u32, kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&stream.to_be_bytes());
    out.push(kind);
    out.push(0);
    out.extend_from_slice(payload);
    out
}

fn request(service: &str, method: &str, payload: &[u8]) -> Vec<u8> {
    let r = ttrpc::Request {
        service: service.into(),
        method: method.into(),
        payload: payload.to_vec(),
        timeout_nano: 10_000_000_000,
        ..Default::default()
    };
    r.write_to_bytes().unwrap()
}

/// What came back on a raw connection after sending `bytes`.
#[derive(Debug)]
enum Answer {
    /// A response frame: its stream id and the ttrpc status code.
    Reply(u32, i32, String),
    /// The shim closed the connection.
    Closed,
    /// Nothing within the timeout, the connection still open.
    Silence,
}

/// Connects to the shim, writes `bytes` (only the first `upto` of them, then
/// closes the writing side, when given) and reads what comes back.
async fn exchange(f: &Fixture, bytes: Vec<u8>, upto: Option<usize>) -> Answer {
    let addr = f.socket();
    tokio::task::spawn_blocking(move || {
        let mut s = UnixStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        match upto {
            Some(n) => {
                s.write_all(&bytes[..n]).unwrap();
                s.shutdown(std::net::Shutdown::Write).unwrap();
            }
            // The shim may close before it has read everything.
            None => drop(s.write_all(&bytes)),
        }
        read_answer(&mut s)
    })
    .await
    .unwrap()
}

/// The shim still serves: on the connection opened before, and on a new one;
/// the container still runs with the same pid.
async fn still_serving(f: &Fixture, before: &TaskClient, pid: u32) {
    let state = StateRequest {
        id: f.id.clone(),
        ..Default::default()
    };
    for client in [before, &f.client] {
        let s = client.state(ctx(), &state).await.unwrap();
        assert_eq!(s.status.enum_value(), Ok(Status::RUNNING));
        assert_eq!(s.pid, pid);
    }
    let fresh = tether::client::connect(&f.address).await.unwrap();
    assert_eq!(fresh.state(ctx(), &state).await.unwrap().pid, pid);
    assert!(alive(f.shim_pid), "the shim died");
}

#[tokio::test(flavor = "current_thread")]
async fn malformed_frames_get_an_error_or_a_close_and_harm_nothing() {
    let f = Fixture::new(&["/bin/sleep", "1000"]).await;
    f.create().await;
    let pid = f.start().await;
    let before = tether::client::connect(&f.address).await.unwrap();
    still_serving(&f, &before, pid).await;
    let task = "containerd.task.v2.Task";
    let state = StateRequest {
        id: f.id.clone(),
        ..Default::default()
    }
    .write_to_bytes()
    .unwrap();

    // A length header over 4 MiB: nothing is allocated for it; the
    // connection is refused.
    let mut huge = frame(1, REQUEST, b"");
    huge[..4].copy_from_slice(&(64u32 << 20).to_be_bytes());
    let a = exchange(&f, huge, None).await;
    assert!(
        matches!(a, Answer::Closed | Answer::Reply(1, 1.., _)),
        "a 64 MiB length header got {a:?}"
    );
    still_serving(&f, &before, pid).await;

    // A truncated frame, then the writer gone.
    let whole = frame(3, REQUEST, &request(task, "State", &state));
    let half = whole.len() / 2;
    let a = exchange(&f, whole, Some(half)).await;
    assert!(matches!(a, Answer::Closed), "a truncated frame got {a:?}");
    still_serving(&f, &before, pid).await;

    // What ttrpc and the shim answer each with: None for "no answer, the
    // connection stays usable" (a frame type the server does not know).
    let cases: Vec<(&str, Vec<u8>, Option<ttrpc::Code>)> = vec![
        (
            "an unknown message type",
            frame(5, 9, &request(task, "State", &state)),
            None,
        ),
        (
            "an unknown service",
            frame(
                7,
                REQUEST,
                &request("containerd.task.v9.Nope", "State", &state),
            ),
            Some(ttrpc::Code::INVALID_ARGUMENT),
        ),
        (
            "an unknown method",
            frame(9, REQUEST, &request(task, "Explode", &state)),
            Some(ttrpc::Code::UNIMPLEMENTED),
        ),
        (
            "garbage protobuf in the request",
            frame(11, REQUEST, b"\xff\xff\xff\xff\x0f garbage"),
            Some(ttrpc::Code::INVALID_ARGUMENT),
        ),
        (
            "garbage protobuf in the payload",
            frame(
                13,
                REQUEST,
                &request(task, "State", b"\x0a\xff\xff\xff\xff\x0f"),
            ),
            Some(ttrpc::Code::UNKNOWN),
        ),
        (
            "a Create whose id is ../",
            frame(
                15,
                REQUEST,
                &request(task, "Create", &[0x0a, 0x03, b'.', b'.', b'/']),
            ),
            Some(ttrpc::Code::INVALID_ARGUMENT),
        ),
    ];
    for (what, bytes, expected) in cases {
        let a = exchange(&f, bytes.clone(), None).await;
        eprintln!("{what}: {a:?}");
        match (&a, expected) {
            (Answer::Reply(stream, code, msg), Some(want)) => {
                let sent = u32::from_be_bytes(bytes[4..8].try_into().unwrap());
                assert_eq!(*stream, sent, "{what}: answer on another stream");
                assert_eq!(*code, want as i32, "{what}: {msg}");
            }
            (Answer::Silence, None) => {}
            _ => panic!("{what}: got {a:?}, expected {expected:?}"),
        }
        still_serving(&f, &before, pid).await;
    }

    // The same garbage many times over, on many connections at once.
    let mut threads = Vec::new();
    for i in 0..32u32 {
        let addr = f.socket();
        threads.push(std::thread::spawn(move || {
            let mut s = UnixStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let junk = frame(2 * i + 1, REQUEST, &[0xffu8; 64]);
            for _ in 0..50 {
                if s.write_all(&junk).is_err() {
                    break;
                }
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    still_serving(&f, &before, pid).await;

    // A live upgrade after all that: garbage that never got a reply must
    // not hold it up (an upgrade waits for unanswered requests).
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(f.shim_pid as i32),
        nix::sys::signal::Signal::SIGUSR2,
    )
    .unwrap();
    let upgraded = || {
        std::fs::read(format!("/proc/{}/environ", f.shim_pid))
            .is_ok_and(|e| String::from_utf8_lossy(&e).contains("TETHER_UPGRADE_STATE="))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !upgraded() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(upgraded(), "no live upgrade after the hostile frames");
    still_serving(&f, &before, pid).await;

    f.stop_and_delete().await;
    f.shutdown_and_wait_exit().await;
}

fn read_answer(s: &mut UnixStream) -> Answer {
    let mut header = [0u8; 10];
    match s.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Answer::Closed,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Answer::Closed,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Answer::Silence,
        Err(e) => panic!("reading the answer: {e}"),
    }
    let len = u32::from_be_bytes(header[..4].try_into().unwrap()) as usize;
    let stream = u32::from_be_bytes(header[4..8].try_into().unwrap());
    assert_eq!(header[8], RESPONSE, "answer of type {}", header[8]);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    let r = ttrpc::Response::parse_from_bytes(&body).unwrap();
    let status = r.status.unwrap_or_default();
    Answer::Reply(stream, status.code.value(), status.message)
}
