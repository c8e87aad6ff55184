//! How long each runtime sub-command may run.
//!
//! A runtime invocation that outlives its deadline is killed (its whole
//! process group, see `Runc::run`) and reaped, and the call fails with
//! [`Error::RuntimeTimeout`](crate::error::Error::RuntimeTimeout), which
//! names the sub-command. The defaults are generous: they are there to end a
//! runtime that hangs, not to police a slow one on a loaded machine.

use std::time::Duration;

/// One deadline per runtime sub-command; zero means none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Timeouts {
    /// `runc create` (mounts, hooks, `runc init`).
    pub create: Duration,
    /// `runc start` (poststart hooks run here).
    pub start: Duration,
    /// `runc exec --detach`.
    pub exec: Duration,
    /// `runc kill`.
    pub kill: Duration,
    /// `runc delete`.
    pub delete: Duration,
    /// `runc pause`.
    pub pause: Duration,
    /// `runc resume`.
    pub resume: Duration,
    /// `runc update`.
    pub update: Duration,
    /// `runc ps`.
    pub ps: Duration,
    /// `runc checkpoint` (criu dumps take as long as memory is large).
    pub checkpoint: Duration,
    /// `runc restore`.
    pub restore: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        let s = Duration::from_secs;
        Timeouts {
            create: s(120),
            start: s(60),
            exec: s(60),
            kill: s(10),
            delete: s(30),
            pause: s(30),
            resume: s(30),
            update: s(30),
            ps: s(30),
            checkpoint: s(600),
            restore: s(600),
        }
    }
}

/// The sub-commands, as the TOML options table names them.
const NAMES: &[&str] = &[
    "Create",
    "Start",
    "Exec",
    "Kill",
    "Delete",
    "Pause",
    "Resume",
    "Update",
    "Ps",
    "Checkpoint",
    "Restore",
];

impl Timeouts {
    /// The deadline of sub-command `op` (`"kill"`, ...), None if it has none.
    pub fn of(&self, op: &str) -> Option<Duration> {
        let mut t = *self;
        t.slot(op).map(|d| *d).filter(|d| !d.is_zero())
    }

    /// The field of sub-command `op`, whatever its case.
    fn slot(&mut self, op: &str) -> Option<&mut Duration> {
        Some(match op.to_ascii_lowercase().as_str() {
            "create" => &mut self.create,
            "start" => &mut self.start,
            "exec" => &mut self.exec,
            "kill" => &mut self.kill,
            "delete" => &mut self.delete,
            "pause" => &mut self.pause,
            "resume" => &mut self.resume,
            "update" => &mut self.update,
            "ps" => &mut self.ps,
            "checkpoint" => &mut self.checkpoint,
            "restore" => &mut self.restore,
            _ => return None,
        })
    }

    /// The defaults, with the seconds of the TOML `[RuncTimeouts]` table
    /// (`Kill = 5`, `Update = 2.5`, `Exec = 0` for no deadline) applied.
    pub fn from_table(table: &toml::Table) -> Result<Timeouts, String> {
        let mut t = Timeouts::default();
        for (key, value) in table {
            if !NAMES.contains(&key.as_str()) {
                return Err(format!(
                    "RuncTimeouts: unknown sub-command {key:?} (known: {})",
                    NAMES.join(", ")
                ));
            }
            let secs = match value {
                toml::Value::Integer(i) => *i as f64,
                toml::Value::Float(f) => *f,
                other => {
                    return Err(format!(
                        "RuncTimeouts.{key}: seconds expected, got {}",
                        other.type_str()
                    ))
                }
            };
            let limit = Duration::try_from_secs_f64(secs)
                .map_err(|_| format!("RuncTimeouts.{key}: {secs} is not a number of seconds"))?;
            if let Some(slot) = t.slot(key) {
                *slot = limit;
            }
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_overrides_defaults_and_zero_means_none() {
        let table: toml::Table = toml::from_str("Kill = 2\nUpdate = 0.5\nExec = 0\n").unwrap();
        let t = Timeouts::from_table(&table).unwrap();
        assert_eq!(t.of("kill"), Some(Duration::from_secs(2)));
        assert_eq!(t.of("update"), Some(Duration::from_millis(500)));
        assert_eq!(t.of("exec"), None);
        assert_eq!(t.of("delete"), Some(Duration::from_secs(30)));
        assert_eq!(t.of("create"), Some(Duration::from_secs(120)));
    }

    #[test]
    fn bad_tables_are_refused() {
        for text in ["Kil = 2", "Kill = -1", "Kill = \"10s\"", "Kill = nan"] {
            let table: toml::Table = toml::from_str(text).unwrap();
            assert!(Timeouts::from_table(&table).is_err(), "{text}");
        }
    }
}
