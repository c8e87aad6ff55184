//! The transport against a stand-in ttrpc server (raw frames on the
//! server's end of the socketpair): quiesce, snapshot and restore.

use protobuf::Message;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::frame::tests::{frame, next};
use super::frame::{FrameReader, Header, HEADER, REQUEST, RESPONSE};
use super::Transport;
use crate::sys::{FdList, FdTable};

fn request(stream: u32, method: &str) -> Vec<u8> {
    let req = ttrpc::Request {
        service: "containerd.task.v2.Task".into(),
        method: method.into(),
        ..Default::default()
    };
    frame(stream, REQUEST, &req.write_to_bytes().unwrap())
}

/// Lets every other task run until none has anything left to do.
async fn run_others() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn quiesce_waits_for_all_but_wait_and_the_wait_is_handed_over() {
    let (tx, mut servers) = mpsc::unbounded_channel();
    let transport = Transport::feeding(tx, crate::tasks::Tasks::root());
    let (mut client, ours) = UnixStream::pair().unwrap();
    transport.add(ours, Default::default()).unwrap();
    let mut server = servers.recv().await.unwrap();
    let mut from_client = FrameReader::default();

    let (wait, state) = (request(1, "Wait"), request(3, "State"));
    client.write_all(&wait).await.unwrap();
    client.write_all(&state).await.unwrap();
    assert_eq!(next(&mut from_client, &server).await, wait);
    assert_eq!(next(&mut from_client, &server).await, state);

    let t = transport.clone();
    let quiesce = tokio::spawn(async move { t.quiesce().await });
    run_others().await;
    assert!(!quiesce.is_finished(), "settled with State unanswered");
    // Stopped: a request sent now stays in the client's socket.
    let later = request(5, "Pids");
    client.write_all(&later).await.unwrap();
    let answer = frame(3, RESPONSE, b"");
    server.write_all(&answer).await.unwrap();
    quiesce.await.unwrap().unwrap();
    let mut from_shim = FrameReader::default();
    assert_eq!(next(&mut from_shim, &client).await, answer);

    let mut given = FdList::new();
    let conns = transport.snapshot(&mut given).await;
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].pending, vec![("Wait".to_string(), wait.clone())]);

    // The next binary (here, a new transport) replays the Wait first, then
    // relays what the client sent meanwhile.
    let (tx, mut servers) = mpsc::unbounded_channel();
    let next_transport = Transport::feeding(tx, crate::tasks::Tasks::root());
    assert_eq!(given.numbers(), [conns[0].fd]);
    next_transport.restore(conns, &mut FdTable::new()).unwrap();
    let mut server = servers.recv().await.unwrap();
    let mut from_client = FrameReader::default();
    assert_eq!(next(&mut from_client, &server).await, wait);
    assert_eq!(next(&mut from_client, &server).await, later);
    let done = frame(1, RESPONSE, b"exit");
    server.write_all(&done).await.unwrap();
    assert_eq!(next(&mut from_shim, &client).await, done);
    assert_eq!(Header::of(&done).map(|h| h.len + HEADER), Some(done.len()));
}
