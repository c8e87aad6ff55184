//! The output log of a detached container, in CRI's format: one record a
//! line, `TIMESTAMP STREAM TAG CONTENT`, with the time in RFC 3339 (UTC,
//! nanoseconds), the stream `stdout` or `stderr`, and the tag `F` when the
//! content ends a line (its newline is not stored) or `P` when the line goes
//! on in a later record. Output is written as it arrives, so a line without
//! a newline yet (a prompt) is stored at once as `P`.
//!
//! Like the kubelet's rotation of CRI logs, the log is capped: once a
//! record would take `output.log` past the size cap it becomes
//! `output.log.1`, the older ones move up one, and the oldest beyond the
//! number of files kept is deleted.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::timefmt::{format_rfc3339, parse_rfc3339};

/// A log file opened for appending (created 0640, close-on-exec).
fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

/// The longest content of one record, as containerd's CRI plugin cuts
/// lines (`max_container_log_line_size`, 16 KiB).
pub const MAX_RECORD: usize = 16 * 1024;

/// Which stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The process's stdout (and a terminal's output).
    Stdout,
    /// The process's stderr.
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One parsed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// When the log driver read it, in nanoseconds since the epoch.
    pub nanos: i128,
    /// Its stream.
    pub stream: Stream,
    /// `P`: the line continues in a later record.
    pub partial: bool,
    /// The bytes, without the newline.
    pub content: Vec<u8>,
}

/// Appends the record for `content` to `out`.
fn encode(out: &mut Vec<u8>, nanos: i128, stream: Stream, partial: bool, content: &[u8]) {
    out.extend_from_slice(format_rfc3339(nanos).as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.name().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(content);
    out.push(b'\n');
}

/// Reads one record (a line without its newline); None if it is not one.
pub fn parse(line: &[u8]) -> Option<Record> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    Some(Record {
        nanos: parse_rfc3339(time)?,
        stream,
        partial,
        content: parts.next().unwrap_or_default().to_vec(),
    })
}

/// Output split into records: each complete line an `F`, what is left
/// after the last newline a `P`, and nothing longer than [`MAX_RECORD`].
pub fn records(data: &[u8]) -> impl Iterator<Item = (bool, &[u8])> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let window = &rest[..rest.len().min(MAX_RECORD + 1)];
        let (content, partial, used) = match window.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], false, i + 1),
            None => {
                let n = rest.len().min(MAX_RECORD);
                (&rest[..n], true, n)
            }
        };
        rest = &rest[used..];
        Some((partial, content))
    })
}

/// The files of the log at `path`, oldest first: `path.N` .. `path.1`,
/// then `path` itself.
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = Vec::new();
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
        let prefix = format!("{}.", name.to_string_lossy());
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let n = entry.file_name().to_string_lossy().into_owned();
            if let Some(k) = n.strip_prefix(&prefix).and_then(|k| k.parse().ok()) {
                rotated.push((k, entry.path()));
            }
        }
    }
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut all: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    all.push(path.to_path_buf());
    all
}

/// The writing end: appends records, rotating at the cap.
pub struct RotatingLog {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_files: u32,
}

impl RotatingLog {
    /// Opens (creates 0640) the log at `path`, kept under `max_size` bytes
    /// a file in at most `max_files` files (at least 1 of each).
    pub fn open(path: &Path, max_size: u64, max_files: u32) -> io::Result<RotatingLog> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingLog {
            path: path.to_path_buf(),
            file,
            size,
            max_size: max_size.max(1),
            max_files: max_files.max(1),
        })
    }

    /// Stores output `data` of `stream`, read at `nanos`.
    pub fn write(&mut self, stream: Stream, data: &[u8], nanos: i128) -> io::Result<()> {
        let mut batch = Vec::with_capacity(data.len() + 64);
        for (partial, content) in records(data) {
            let start = batch.len();
            encode(&mut batch, nanos, stream, partial, content);
            let len = (batch.len() - start) as u64;
            if self.size + start as u64 + len > self.max_size && self.size + start as u64 > 0 {
                let record = batch.split_off(start);
                self.append(&batch)?;
                batch = record;
                self.rotate()?;
            }
        }
        self.append(&batch)
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// `path` becomes `path.1`, `path.N` becomes `path.N+1`, and what
    /// would be past `max_files` (counting `path`) is deleted.
    fn rotate(&mut self) -> io::Result<()> {
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.max_files == 1 {
            std::fs::remove_file(&self.path)?;
        } else {
            match std::fs::remove_file(numbered(self.max_files - 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            for n in (1..self.max_files - 1).rev() {
                match std::fs::rename(numbered(n), numbered(n + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut out = Vec::new();
        encode(&mut out, 1_000_000_001, Stream::Stderr, true, b"a b\tc");
        assert_eq!(out, b"1970-01-01T00:00:01.000000001Z stderr P a b\tc\n");
        let r = parse(&out[..out.len() - 1]).unwrap();
        assert_eq!(r.stream, Stream::Stderr);
        assert!(r.partial);
        assert_eq!(r.content, b"a b\tc");
        assert_eq!(r.nanos, 1_000_000_001);
        assert_eq!(
            parse(b"1970-01-01T00:00:01Z stdout F ").unwrap().content,
            b""
        );
        assert!(parse(b"garbage").is_none());
    }

    #[test]
    fn output_is_cut_at_newlines_and_the_record_limit() {
        let got: Vec<_> = records(b"one\n\ntwo").collect();
        assert_eq!(
            got,
            [(false, &b"one"[..]), (false, &b""[..]), (true, &b"two"[..])]
        );
        let long = vec![b'x'; MAX_RECORD + 5];
        let got: Vec<_> = records(&long).map(|(p, c)| (p, c.len())).collect();
        assert_eq!(got, [(true, MAX_RECORD), (true, 5)]);
        let mut exact = vec![b'y'; MAX_RECORD];
        exact.push(b'\n');
        let got: Vec<_> = records(&exact).map(|(p, c)| (p, c.len())).collect();
        assert_eq!(got, [(false, MAX_RECORD)]);
    }

    #[test]
    fn rotates_at_the_cap_and_keeps_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output.log");
        let mut log = RotatingLog::open(&path, 100, 3).unwrap();
        for i in 0..20 {
            log.write(Stream::Stdout, format!("line {i}\n").as_bytes(), 0)
                .unwrap();
        }
        let all = files(&path);
        assert_eq!(all.len(), 3, "{all:?}");
        for f in &all {
            assert!(std::fs::metadata(f).unwrap().len() <= 100, "{f:?}");
        }
        let text: String = all
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect();
        let lines: Vec<String> = text
            .lines()
            .map(|l| String::from_utf8(parse(l.as_bytes()).unwrap().content).unwrap())
            .collect();
        assert_eq!(lines.last().unwrap(), "line 19");
        // Consecutive, oldest first: nothing lost between the kept files.
        let first: usize = lines[0].trim_start_matches("line ").parse().unwrap();
        let want: Vec<String> = (first..20).map(|i| format!("line {i}")).collect();
        assert_eq!(lines, want);
    }
}
