//! `tetherctl logs`: a detached container's output, which its shim appends
//! to `<state>/containers/<id>/output.log` (stdout and stderr together).

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::store::Store;
use crate::protos::shim::WaitRequest;

/// How often `logs -f` looks for more output (the way `tail -f` without
/// inotify does; a CLI's reading loop, not the daemon's).
const FOLLOW_EVERY: Duration = Duration::from_millis(100);

/// Prints container `id`'s output; with `follow`, goes on printing what it
/// writes until it has exited and everything it wrote is out.
pub async fn logs(store: &Store, id: &str, follow: bool) -> Result<u8> {
    crate::ids::validate("container id", id)?;
    let bundle = store.bundle(id);
    if !bundle.is_dir() {
        bail!("no such container: {id}");
    }
    let path = bundle.join("output.log");
    // A regular file: reads are short and do not block for long.
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        // A foreground container's output went to its terminal or pipes.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("container {id} has no log: only detached containers (run -d) write one")
        }
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let exited = if follow {
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
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n > 0 {
            out.write_all(&buf[..n])?;
            continue;
        }
        out.flush()?;
        match &exited {
            // Everything up to the exit is in the file once Wait returned;
            // one more read takes it.
            Some(h) if h.is_finished() => {
                let mut rest = Vec::new();
                file.read_to_end(&mut rest)?;
                out.write_all(&rest)?;
                out.flush()?;
                return Ok(0);
            }
            Some(_) => tokio::time::sleep(FOLLOW_EVERY).await,
            None => return Ok(0),
        }
    }
}
