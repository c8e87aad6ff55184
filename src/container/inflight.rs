//! Kill replies before exit events.
//!
//! A Kill through the runtime (`runc kill`) takes some milliseconds after
//! the signal has gone; the process may die, be reaped and its exit be
//! published in that time. containerd reacts to the exit with Delete and,
//! for the last task, Shutdown, and closes its connection to the shim: a
//! Kill still waiting for its reply then fails with "ttrpc: closed" (seen
//! with containerd 1.6's CRI, whose StopContainer then fails). So an exit
//! is published only once the container's Kills in flight have returned,
//! for at most [`KILLS_GRACE`], so that a hung runtime never holds an exit
//! back for long (its Kill has a deadline of its own).

use std::time::Duration;

use tokio::sync::watch;

/// The longest an exit waits for the Kills in flight.
pub(crate) const KILLS_GRACE: Duration = Duration::from_secs(1);

/// How many Kills of a container are in flight.
pub(crate) struct Kills(watch::Sender<usize>);

/// One Kill in flight, counted until it is dropped.
pub(crate) struct InFlight<'a>(&'a Kills);

impl Kills {
    pub(crate) fn new() -> Kills {
        Kills(watch::Sender::new(0))
    }

    /// Counts a Kill until the guard is dropped.
    pub(crate) fn begin(&self) -> InFlight<'_> {
        self.0.send_modify(|n| *n += 1);
        InFlight(self)
    }

    /// Waits until no Kill is in flight, for at most `limit`; returns
    /// whether none is.
    pub(crate) async fn settled(&self, limit: Duration) -> bool {
        // Every exit asks; mostly no Kill is in flight.
        if *self.0.borrow() == 0 {
            return true;
        }
        let mut rx = self.0.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|n| *n == 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0 .0.send_modify(|n| *n -= 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_exit_waits_for_the_kills_in_flight_and_no_longer_than_the_limit() {
        let short = Duration::from_millis(20);
        let kills = Kills::new();
        assert!(kills.settled(short).await, "none in flight");
        let first = kills.begin();
        let second = kills.begin();
        drop(first);
        assert!(
            !kills.settled(short).await,
            "one still in flight: the limit ends the wait"
        );
        let release = async {
            tokio::task::yield_now().await;
            drop(second);
        };
        let (settled, ()) = tokio::join!(kills.settled(Duration::from_secs(60)), release);
        assert!(settled, "released when the last Kill returned");
    }
}
