//! ttrpc frames as the relay sees them: a 10-byte header (payload length,
//! stream id, type, flags, all big-endian) and an opaque payload.
//!
//! The hot path reads only the header. The payload is decoded (to learn a
//! request's method) only when an upgrade or shutdown asks which requests
//! are still unanswered.

use std::collections::VecDeque;
use std::io;

use protobuf::Message;
use tokio::net::UnixStream;

/// Length of a frame header.
pub(crate) const HEADER: usize = 10;
/// The largest payload ttrpc itself accepts (4 MiB).
const MAX_PAYLOAD: usize = 4 << 20;
/// Frame type of a request.
pub(crate) const REQUEST: u8 = 1;
/// Frame type of a response.
pub(crate) const RESPONSE: u8 = 2;

/// A frame header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Payload length.
    pub len: usize,
    /// Stream id: pairs a response with its request.
    pub stream: u32,
    /// Frame type ([`REQUEST`], [`RESPONSE`], data).
    pub kind: u8,
    /// Flags (streaming only).
    pub flags: u8,
}

impl Header {
    /// Decodes a header, refusing a payload past ttrpc's own bound before
    /// anything is allocated for it.
    pub(crate) fn parse(h: &[u8; HEADER]) -> io::Result<Header> {
        let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a ttrpc frame of {len} bytes"),
            ));
        }
        Ok(Header {
            len,
            stream: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
            kind: h[8],
            flags: h[9],
        })
    }

    /// The header of a whole frame (None if shorter than a header or over
    /// the bound).
    pub(crate) fn of(frame: &[u8]) -> Option<Header> {
        Header::parse(frame.get(..HEADER)?.try_into().ok()?).ok()
    }
}

/// The method a request frame calls (decodes the payload: not for the hot
/// path).
pub(crate) fn method_of(frame: &[u8]) -> Option<String> {
    let req = ttrpc::Request::parse_from_bytes(frame.get(HEADER..)?).ok()?;
    Some(req.method)
}

/// The room a read gets when the frame's size is not known yet (a request
/// is well under this, as a rule); a larger frame gets room for the rest of
/// itself once its header is in.
const CHUNK: usize = 4 << 10;

/// Reads whole frames from a non-blocking socket, as many bytes as it has
/// at once (one read a request, as a rule). What it has read stays in it
/// between calls, so the caller may stop waiting for readiness at any
/// moment (in a `select!`) without losing bytes. It stops between frames:
/// a caller that stops reading once it is [`idle`](Self::idle) leaves
/// nothing half read.
#[derive(Default)]
pub(crate) struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// True when it holds no byte of a frame.
    pub(crate) fn idle(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next whole frame it holds, if any.
    pub(crate) fn next_frame(&mut self) -> io::Result<Option<Vec<u8>>> {
        let Some(header) = self.buf.get(..HEADER) else {
            return Ok(None);
        };
        let len = Header::parse(header.try_into().expect("a header"))?.len;
        if self.buf.len() < HEADER + len {
            return Ok(None);
        }
        // A frame of its own size (an unanswered Wait is kept for as long as
        // it runs).
        let frame = self.buf[..HEADER + len].to_vec();
        self.buf.drain(..HEADER + len);
        self.release_if_empty();
        Ok(Some(frame))
    }

    /// Reads what the socket has (Ok(false) when it has nothing for now).
    /// A short read means the socket is drained: its readiness is cleared
    /// then, as tokio's own reads do, rather than found out by another read.
    pub(crate) fn read_from(&mut self, s: &UnixStream) -> io::Result<bool> {
        let rest = match self.buf.get(..HEADER) {
            Some(h) => (HEADER + Header::parse(h.try_into().expect("a header"))?.len)
                .saturating_sub(self.buf.len()),
            None => 0,
        };
        self.buf.reserve(rest.max(CHUNK));
        let room = self.buf.capacity() - self.buf.len();
        match s.try_read_buf(&mut self.buf) {
            Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                if n < room {
                    let _ = s.try_io(tokio::io::Interest::READABLE, || {
                        Err::<(), _>(io::ErrorKind::WouldBlock.into())
                    });
                }
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.release_if_empty();
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Gives the read room back once no byte of a frame is in it: a
    /// connection is idle most of the time, and a shim has one per
    /// container's client (two readers each, 8 KiB a connection when kept).
    fn release_if_empty(&mut self) {
        if self.buf.is_empty() {
            self.buf = Vec::new();
        }
    }
}

/// Frames waiting to be written to a non-blocking socket, in order.
#[derive(Default)]
pub(crate) struct Outbox {
    frames: VecDeque<Vec<u8>>,
    /// How much of the first frame is written.
    at: usize,
}

impl Outbox {
    /// True when everything is written.
    pub(crate) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Queues a frame.
    pub(crate) fn push(&mut self, frame: Vec<u8>) {
        self.frames.push_back(frame);
    }

    /// Writes what the socket takes; `sent` gets each frame once it is
    /// wholly written.
    pub(crate) fn flush(
        &mut self,
        s: &UnixStream,
        mut sent: impl FnMut(Vec<u8>),
    ) -> io::Result<()> {
        while let Some(frame) = self.frames.front() {
            match s.try_write(&frame[self.at..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
            if self.at == frame.len() {
                self.at = 0;
                sent(self.frames.pop_front().expect("a frame"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A frame of `kind` on `stream` carrying `payload`.
    pub(in crate::transport) fn frame(stream: u32, kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes().to_vec();
        f.extend(stream.to_be_bytes());
        f.extend([kind, 0]);
        f.extend(payload);
        f
    }

    #[test]
    fn header_decodes_every_field_and_bounds_the_length() {
        let f = frame(7, REQUEST, b"abc");
        let h = Header::of(&f).unwrap();
        assert_eq!((h.len, h.stream, h.kind, h.flags), (3, 7, REQUEST, 0));
        let mut big = f.clone();
        big[..4].copy_from_slice(&((4u32 << 20) + 1).to_be_bytes());
        assert!(Header::of(&big).is_none());
        assert!(Header::of(&f[..9]).is_none());
    }

    #[test]
    fn method_is_read_from_a_request_payload() {
        let req = ttrpc::Request {
            service: "containerd.task.v2.Task".into(),
            method: "Wait".into(),
            ..Default::default()
        };
        let f = frame(1, REQUEST, &req.write_to_bytes().unwrap());
        assert_eq!(method_of(&f).as_deref(), Some("Wait"));
        assert_eq!(method_of(&f[..HEADER]).as_deref(), Some(""));
    }

    /// The next whole frame `r` reads from `s`.
    pub(in crate::transport) async fn next(r: &mut FrameReader, s: &UnixStream) -> Vec<u8> {
        loop {
            if let Some(f) = r.next_frame().unwrap() {
                return f;
            }
            s.readable().await.unwrap();
            r.read_from(s).unwrap();
        }
    }

    #[tokio::test]
    async fn reader_returns_whole_frames_however_they_arrive() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let (f1, f2) = (frame(1, REQUEST, b"hello"), frame(3, REQUEST, b""));
        let mut r = FrameReader::default();
        use tokio::io::AsyncWriteExt;
        a.write_all(&f1[..4]).await.unwrap();
        b.readable().await.unwrap();
        assert!(r.read_from(&b).unwrap());
        assert_eq!(r.next_frame().unwrap(), None);
        assert!(!r.idle());
        a.write_all(&f1[4..]).await.unwrap();
        a.write_all(&f2).await.unwrap();
        assert_eq!(next(&mut r, &b).await, f1);
        assert_eq!(next(&mut r, &b).await, f2);
        assert!(r.idle());
        assert_eq!(r.buf.capacity(), 0, "an idle reader keeps no room");
        drop(a);
        b.readable().await.unwrap();
        assert!(r.read_from(&b).is_err());
    }

    #[tokio::test]
    async fn outbox_reports_each_frame_once_written() {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let mut out = Outbox::default();
        out.push(frame(1, REQUEST, b"x"));
        out.push(frame(3, REQUEST, b"yy"));
        let mut sent = Vec::new();
        out.flush(&a, |f| sent.push(Header::of(&f).unwrap().stream))
            .unwrap();
        assert!(out.is_empty());
        assert_eq!(sent, [1, 3]);
        let mut r = FrameReader::default();
        assert_eq!(next(&mut r, &b).await, frame(1, REQUEST, b"x"));
    }
}
