//! `ctr events` in the background (`EventStream`) and parsing of its lines
//! into `Event`s.

use std::fs;
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use super::containerd::Containerd;
use super::procs::kill_and_reap;
use super::util::{next_serial, poll_until};
use super::SETTLE_TIMEOUT;

/// One parsed line of `ctr events`.
#[derive(Debug, Clone)]
pub struct Event {
    pub namespace: String,
    pub topic: String,
    pub body: serde_json::Value,
    pub line: String,
}

impl Event {
    /// `exit_status` of a task event; absent means 0 (protobuf JSON omits zeros).
    pub fn exit_status(&self) -> i64 {
        self.body
            .get("exit_status")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0)
    }

    /// `pid` of a task event.
    pub fn pid(&self) -> Option<i64> {
        self.body.get("pid").and_then(serde_json::Value::as_i64)
    }
}

/// A background `ctr events` writing to a file; killed by PID on drop.
pub struct EventStream {
    child: Option<Child>,
    path: PathBuf,
    namespace: String,
}

impl EventStream {
    pub(super) fn start(cd: &Containerd) -> EventStream {
        let path = cd.dir().join(format!("events-{}.log", next_serial()));
        let file = fs::File::create(&path).expect("creating events log");
        let file2 = file.try_clone().expect("cloning events log handle");
        let child = cd
            .ctr_command()
            .arg("events")
            .stdout(file)
            .stderr(file2)
            .spawn()
            .expect("spawning ctr events");
        let stream = EventStream {
            child: Some(child),
            path,
            namespace: cd.namespace().to_string(),
        };
        // The subscription is asynchronous: label the namespace until the
        // stream shows the resulting /namespaces/update event.
        let mut n = 0;
        let synced = poll_until(SETTLE_TIMEOUT, || {
            n += 1;
            let marker = format!("{n}");
            cd.ctr_ok(&[
                "namespaces",
                "label",
                cd.namespace(),
                &format!("tether-sync={marker}"),
            ]);
            let seen = poll_until(Duration::from_millis(500), || {
                stream
                    .events()
                    .iter()
                    .any(|e| {
                        e.topic == "/namespaces/update"
                            && e.body
                                .pointer("/labels/tether-sync")
                                .and_then(|v| v.as_str())
                                == Some(marker.as_str())
                    })
                    .then_some(())
            });
            seen
        });
        assert!(
            synced.is_some(),
            "`ctr events` never delivered an event; its output:\n{}\n{}",
            stream.contents(),
            cd.log_tail()
        );
        stream
    }

    /// Raw output so far.
    pub fn contents(&self) -> String {
        fs::read_to_string(&self.path).unwrap_or_default()
    }

    /// All parsed events of this namespace so far.
    pub fn events(&self) -> Vec<Event> {
        self.contents()
            .lines()
            .filter_map(parse_event_line)
            .filter(|e| e.namespace == self.namespace)
            .collect()
    }

    /// Events with `topic` whose `container_id` is `id`.
    pub fn find(&self, topic: &str, id: &str) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|e| {
                // Task events name the container in container_id, container
                // events (/containers/*) in id.
                let named = e.body.get("container_id").or_else(|| e.body.get("id"));
                e.topic == topic && named.and_then(|v| v.as_str()) == Some(id)
            })
            .collect()
    }

    /// Waits for the first `topic` event of container `id`.
    pub fn wait_for(&self, topic: &str, id: &str, timeout: Duration) -> Event {
        poll_until(timeout, || self.find(topic, id).into_iter().next()).unwrap_or_else(|| {
            panic!(
                "no {topic} event for {id} within {timeout:?}; events so far:\n{}",
                self.contents()
            )
        })
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            kill_and_reap(child);
        }
    }
}

/// Parses `<timestamp...> <namespace> <topic> <json>`; the topic is the first
/// whitespace-separated field starting with `/`.
pub fn parse_event_line(line: &str) -> Option<Event> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let ti = fields.iter().position(|f| f.starts_with('/'))?;
    if ti == 0 {
        return None;
    }
    let topic = fields[ti];
    let namespace = fields[ti - 1];
    let json_start = line.find(&format!(" {topic} "))? + topic.len() + 2;
    let body = serde_json::from_str(line[json_start..].trim()).ok()?;
    Some(Event {
        namespace: namespace.to_string(),
        topic: topic.to_string(),
        body,
        line: line.to_string(),
    })
}
