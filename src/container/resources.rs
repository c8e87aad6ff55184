//! Pause, resume, resource updates and statistics of a container.

use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::container::{Container, Op};
use crate::error::{Error, Result};
use crate::events::Event;

impl Container {
    /// Whether Pause froze the container.
    pub fn is_paused(&self) -> bool {
        self.gate.paused()
    }

    /// Freezes every process of the container.
    pub async fn pause(&self) -> Result<()> {
        let op = self.gate.alone().await;
        self.allow(Op::Pause, &self.init)?;
        self.runc.pause(&self.id).await?;
        op.set_paused(true);
        self.publisher.publish(Event::Paused {
            id: self.id.clone(),
        });
        Ok(())
    }

    /// Thaws a paused container.
    pub async fn resume(&self) -> Result<()> {
        let op = self.gate.alone().await;
        self.allow(Op::Resume, &self.init)?;
        self.runc.resume(&self.id).await?;
        op.set_paused(false);
        self.publisher.publish(Event::Resumed {
            id: self.id.clone(),
        });
        Ok(())
    }

    /// Applies new resource limits (OCI LinuxResources JSON).
    pub async fn update(&self, resources_json: &[u8]) -> Result<()> {
        let _op = self.gate.alone().await;
        self.allow(Op::Update, &self.init)?;
        serde_json::from_slice::<serde_json::Value>(resources_json)
            .map_err(Error::decode("resources"))?;
        // A name per call: nothing another call writes can be applied here.
        static CALLS: AtomicU64 = AtomicU64::new(0);
        let n = CALLS.fetch_add(1, Ordering::Relaxed);
        let path = self
            .bundle
            .join(format!(".update-resources-{}-{n}.json", std::process::id()));
        let write = || {
            use std::io::Write;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)?
                .write_all(resources_json)
        };
        write().map_err(Error::io("write", &path))?;
        let result = self.runc.update(&self.id, &path).await;
        let _ = std::fs::remove_file(&path);
        result
    }

    /// The cgroup's statistics.
    pub fn stats(&self) -> Result<protobuf::well_known_types::any::Any> {
        self.cgroup()
            .ok_or_else(|| Error::NotFound(format!("container {:?} has no cgroup", self.id)))?
            .stats()
    }
}
