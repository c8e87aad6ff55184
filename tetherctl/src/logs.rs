//! `tetherctl logs`: a detached container's output, from the log its log
//! driver keeps (`<state>/containers/<id>/output.log` and the rotated
//! `output.log.N`, in CRI's format: see [`super::logfile`]). Both streams
//! are printed, in order, to stdout.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use tether_proto::shim::{StateRequest, WaitRequest};
use tether_proto::status::Status;

use super::logfile::{self, Record};
use super::store::{ctx, Store};
use super::timefmt::parse_since;

/// How often `logs -f` looks for more output (the way `tail -f` without
/// inotify does; a CLI's reading loop, not the daemon's).
const FOLLOW_EVERY: Duration = Duration::from_millis(100);
/// How long `logs` waits for an exited container's log driver to store
/// the last of its output.
const DRIVER_DONE: Duration = Duration::from_secs(5);
/// The name of the current log file in the bundle.
pub const LOG_NAME: &str = "output.log";

/// What `logs` was asked for.
#[derive(Debug, Clone, Default)]
pub struct LogsOptions {
    /// Go on printing until the container has exited.
    pub follow: bool,
    /// Only the last N lines of what is there already.
    pub tail: Option<usize>,
    /// Only lines that began at or after this (`--since`).
    pub since: Option<String>,
}

/// Records cut out of bytes read in any pieces.
#[derive(Default)]
struct RecordReader {
    rest: Vec<u8>,
}

impl RecordReader {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Record>) {
        self.rest.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(i) = self.rest[start..].iter().position(|b| *b == b'\n') {
            // A line that is not a record (a damaged file) is skipped.
            out.extend(logfile::parse(&self.rest[start..start + i]));
            start += i + 1;
        }
        self.rest.drain(..start);
    }
}

/// One line of output: where it began, and its bytes (with its newline if
/// it is complete).
struct Line {
    nanos: i128,
    bytes: Vec<u8>,
    complete: bool,
}

fn lines(records: Vec<Record>) -> Vec<Line> {
    let mut lines: Vec<Line> = Vec::new();
    for r in records {
        match lines.last_mut() {
            Some(l) if !l.complete => l.bytes.extend_from_slice(&r.content),
            _ => lines.push(Line {
                nanos: r.nanos,
                bytes: r.content,
                complete: false,
            }),
        }
        let last = lines.last_mut().expect("pushed above");
        if !r.partial {
            last.bytes.push(b'\n');
            last.complete = true;
        }
    }
    lines
}

/// Prints records as they come, line by line as `--since` decides.
struct Printer {
    since: i128,
    /// A line is under way: whether it is being printed.
    in_line: Option<bool>,
}

impl Printer {
    fn print(&mut self, out: &mut impl Write, r: &Record) -> std::io::Result<()> {
        let shown = *self.in_line.get_or_insert(r.nanos >= self.since);
        if shown {
            out.write_all(&r.content)?;
            if !r.partial {
                out.write_all(b"\n")?;
            }
        }
        if !r.partial {
            self.in_line = None;
        }
        Ok(())
    }
}

fn read_all(file: &mut File, reader: &mut RecordReader, out: &mut Vec<Record>) -> Result<()> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    reader.feed(&bytes, out);
    Ok(())
}

/// Prints container `id`'s output as `opts` asks.
pub async fn logs(store: &Store, id: &str, opts: LogsOptions) -> Result<u8> {
    tether::client::validate_id("container id", id)?;
    let bundle = store.bundle(id);
    if !bundle.is_dir() {
        bail!("no such container: {id}");
    }
    let since = match &opts.since {
        Some(s) => parse_since(s, SystemTime::now())?,
        None => i128::MIN,
    };
    let path = bundle.join(LOG_NAME);
    // The shim reports an exit once the output is in the driver's pipes,
    // not once the driver has stored it: for an exited container, what is
    // in the log is read once the driver is done (`logs` right after
    // `wait` missed the last bytes, 2 runs in 30).
    let driver = store.attach_socket(id);
    if !opts.follow && driver.exists() && has_exited(store, id).await {
        driver_done(&driver).await;
    }
    // Regular files: reads are short and do not block for long.
    let mut current = match File::open(&path) {
        Ok(f) => f,
        // A foreground container's output went to its terminal or pipes.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("container {id} has no log: only detached containers (run -d) write one")
        }
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let exited = if opts.follow {
        let shim = store.client(id).await?;
        let req = WaitRequest {
            id: id.to_string(),
            ..Default::default()
        };
        Some(tokio::spawn(async move {
            let _ = shim
                .client
                .wait(ttrpc::context::with_timeout(0), &req)
                .await;
        }))
    } else {
        None
    };

    // What is there: the rotated files (gone ones skipped), then the current.
    let mut reader = RecordReader::default();
    let mut records = Vec::new();
    let files = logfile::files(&path);
    for older in &files[..files.len() - 1] {
        if let Ok(mut f) = File::open(older) {
            read_all(&mut f, &mut RecordReader::default(), &mut records)?;
        }
    }
    read_all(&mut current, &mut reader, &mut records)?;
    let all = lines(records);
    let mut shown: Vec<&Line> = all.iter().filter(|l| l.nanos >= since).collect();
    if let Some(n) = opts.tail {
        shown.drain(..shown.len().saturating_sub(n));
    }
    let mut out = std::io::stdout().lock();
    for l in &shown {
        out.write_all(&l.bytes)?;
    }
    out.flush()?;
    let Some(exited) = exited else {
        return Ok(0);
    };
    let mut printer = Printer {
        since,
        in_line: all
            .last()
            .filter(|l| !l.complete)
            .map(|l| shown.last().is_some_and(|s| std::ptr::eq(*s, l))),
    };
    loop {
        let done = exited.is_finished();
        if done {
            driver_done(&driver).await;
        }
        let mut fresh = Vec::new();
        read_all(&mut current, &mut reader, &mut fresh)?;
        // Rotated away: finish the old file, then go on with the new one.
        if rotated(&current, &path) {
            read_all(&mut current, &mut reader, &mut fresh)?;
            if let Ok(f) = File::open(&path) {
                current = f;
                reader = RecordReader::default();
                read_all(&mut current, &mut reader, &mut fresh)?;
            }
        }
        for r in &fresh {
            printer.print(&mut out, r)?;
        }
        out.flush()?;
        // Everything up to the exit was in the files once Wait returned
        // and the driver was gone (checked before this round's reads).
        if done {
            return Ok(0);
        }
        if fresh.is_empty() {
            tokio::time::sleep(FOLLOW_EVERY).await;
        }
    }
}

/// Whether container `id` has exited (false when its shim cannot say).
async fn has_exited(store: &Store, id: &str) -> bool {
    let Ok(shim) = store.client(id).await else {
        return false;
    };
    let req = StateRequest {
        id: id.to_string(),
        ..Default::default()
    };
    matches!(shim.client.state(ctx(), &req).await,
        Ok(s) if s.status.enum_value_or(Status::UNKNOWN) == Status::STOPPED)
}

/// Waits until the log driver of an exited container has stored all its
/// output: it removes its socket `driver` then. At most [`DRIVER_DONE`]
/// (a child the container left behind may hold its output open).
async fn driver_done(driver: &Path) {
    let deadline = tokio::time::Instant::now() + DRIVER_DONE;
    while driver.exists() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether `path` is no longer the file `open` reads.
fn rotated(open: &File, path: &Path) -> bool {
    match (open.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() != b.ino() || a.dev() != b.dev(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logfile::Stream;

    fn rec(nanos: i128, partial: bool, content: &str) -> Record {
        Record {
            nanos,
            stream: Stream::Stdout,
            partial,
            content: content.as_bytes().to_vec(),
        }
    }

    #[test]
    fn partial_records_join_into_lines() {
        let l = lines(vec![
            rec(1, true, "ab"),
            rec(2, false, "c"),
            rec(3, false, ""),
            rec(4, true, "$ "),
        ]);
        let text: Vec<_> = l.iter().map(|l| (l.nanos, l.bytes.clone())).collect();
        assert_eq!(
            text,
            [
                (1, b"abc\n".to_vec()),
                (3, b"\n".to_vec()),
                (4, b"$ ".to_vec())
            ]
        );
        assert!(!l[2].complete);
    }

    #[test]
    fn records_are_found_across_reads() {
        let mut r = RecordReader::default();
        let mut out = Vec::new();
        r.feed(b"1970-01-01T00:00:01Z stdout F he", &mut out);
        assert!(out.is_empty());
        r.feed(b"llo\n1970-01-01T00:00:02Z stderr P x\n", &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].content, b"hello");
        let mut p = Printer {
            since: 2_000_000_000,
            in_line: None,
        };
        let mut printed = Vec::new();
        for r in &out {
            p.print(&mut printed, r).unwrap();
        }
        assert_eq!(printed, b"x");
    }
}
