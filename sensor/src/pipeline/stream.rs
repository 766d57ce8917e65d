//! Stream subscriptions: which events a subscriber asked for, the backlog it gets first,
//! and a `stream_gap` event in place of what it missed when it fell behind (counted in
//! health). The API only turns requests into a [`Subscription`] and forwards the events.

use std::{
    collections::HashSet,
    sync::{Arc, atomic::Ordering},
};

use sensor_common::EventKind;
use tokio::sync::{broadcast::error::RecvError, mpsc, watch};

use super::{publish::Feed, stats::Stats};
use crate::proto;

/// Kinds a subscriber may ask for besides the kernel's: detections and gap markers.
const PIPELINE_KINDS: [&str; 2] = ["stream_gap", "detection"];

/// Events queued for one subscriber before its sender waits.
const SUBSCRIBER_QUEUE: usize = 1024;

/// A kind name that is neither a kernel kind nor one the pipeline makes.
#[derive(Debug)]
pub struct UnknownKind(pub String);

/// Which events a subscriber asked for.
pub struct Filter {
    kinds: HashSet<String>,
    pids: HashSet<u32>,
    descendants: bool,
}

impl Filter {
    /// Empty `kinds` or `pids` mean all of them.
    pub fn new(kinds: &[String], pids: &[u32], descendants: bool) -> Result<Self, UnknownKind> {
        if let Some(k) = kinds
            .iter()
            .find(|k| !PIPELINE_KINDS.contains(&k.as_str()) && EventKind::from_name(k).is_none())
        {
            return Err(UnknownKind(k.clone()));
        }
        Ok(Self {
            kinds: kinds.iter().cloned().collect(),
            pids: pids.iter().copied().collect(),
            descendants,
        })
    }

    fn matches(&self, e: &proto::Event) -> bool {
        if !self.kinds.is_empty() && !self.kinds.contains(&e.kind) {
            return false;
        }
        if self.pids.is_empty() {
            return true;
        }
        let Some(p) = &e.process else { return false };
        self.pids.contains(&p.pid)
            || (self.descendants
                && (self.pids.contains(&p.ppid)
                    || p.ancestors.iter().any(|a| self.pids.contains(&a.pid))))
    }
}

pub struct Subscription {
    pub filter: Filter,
    /// Recent matching events sent first, at most this many.
    pub backlog: usize,
    /// Only the backlog, then the stream ends.
    pub snapshot_only: bool,
}

impl Feed {
    /// Starts a subscriber's task; it ends when the receiver is dropped, the pipeline
    /// stops, or `shutdown` turns true (so shutdown does not wait on clients).
    pub fn subscribe(
        &self,
        sub: Subscription,
        stats: Arc<Stats>,
        mut shutdown: watch::Receiver<bool>,
    ) -> mpsc::Receiver<proto::Event> {
        let Subscription {
            filter,
            backlog,
            snapshot_only,
        } = sub;
        // Subscribe before reading the backlog so nothing falls between the two.
        let mut live = self.live.subscribe();
        let backlog: Vec<Arc<proto::Event>> = {
            let recent = self.recent.lock().unwrap();
            let mut v: Vec<_> = recent
                .iter()
                .rev()
                .filter(|e| filter.matches(e))
                .take(backlog)
                .cloned()
                .collect();
            v.reverse();
            v
        };
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE);
        stats.subscribers.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let mut last_seq = 0;
            for e in backlog {
                last_seq = e.seq;
                if tx.send((*e).clone()).await.is_err() {
                    break;
                }
            }
            while !snapshot_only && !*shutdown.borrow() {
                let next = tokio::select! {
                    r = live.recv() => r,
                    _ = shutdown.wait_for(|stop| *stop) => break,
                };
                let event = match next {
                    Ok(e) if e.seq <= last_seq || !filter.matches(&e) => continue,
                    Ok(e) => (*e).clone(),
                    Err(RecvError::Lagged(n)) => {
                        stats.stream_dropped.fetch_add(n, Ordering::Relaxed);
                        proto::Event {
                            kind: "stream_gap".into(),
                            gap: Some(proto::StreamGap { missed: n }),
                            ..Default::default()
                        }
                    }
                    Err(RecvError::Closed) => break,
                };
                if tx.send(event).await.is_err() {
                    break;
                }
            }
            stats.subscribers.fetch_sub(1, Ordering::Relaxed);
        });
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64, kind: &str, pid: u32, ancestors: &[u32]) -> proto::Event {
        proto::Event {
            seq,
            kind: kind.into(),
            process: Some(
                proto::ProcessData {
                    pid,
                    ppid: ancestors.first().copied().unwrap_or(1),
                    ancestors: ancestors
                        .iter()
                        .map(|&pid| proto::Ancestor {
                            pid,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }
                .into(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn unknown_kinds_are_refused_and_pipeline_kinds_accepted() {
        let kinds = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(
            Filter::new(
                &kinds(&["process_exec", "detection", "stream_gap"]),
                &[],
                false
            )
            .is_ok()
        );
        let err = Filter::new(&kinds(&["process_exec", "proces_exec"]), &[], false).err();
        assert_eq!(err.map(|e| e.0).as_deref(), Some("proces_exec"));
    }

    #[test]
    fn pids_match_themselves_and_with_descendants_their_tree() {
        let only = Filter::new(&[], &[100], false).unwrap();
        let tree = Filter::new(&[], &[100], true).unwrap();
        let own = event(1, "process_exec", 100, &[1]);
        let grandchild = event(2, "process_exec", 300, &[200, 100, 1]);
        assert!(only.matches(&own) && tree.matches(&own));
        assert!(!only.matches(&grandchild) && tree.matches(&grandchild));
        assert!(
            !tree.matches(&proto::Event::default()),
            "no process, no match"
        );
    }

    #[tokio::test]
    async fn backlog_comes_first_then_live_events_without_repeats() {
        let feed = Feed::new(16);
        let stats = Arc::new(Stats::default());
        let mut publisher = super::super::publish::Publisher::new(feed.clone(), stats.clone());
        for _ in 0..3 {
            let seq = publisher.next_seq();
            publisher.publish(event(seq, "process_exec", 7, &[]));
        }
        let (_stop_tx, stop) = watch::channel(false);
        let sub = Subscription {
            filter: Filter::new(&[], &[], false).unwrap(),
            backlog: 2,
            snapshot_only: false,
        };
        let mut rx = feed.subscribe(sub, stats.clone(), stop);
        let seq = publisher.next_seq();
        publisher.publish(event(seq, "process_exit", 7, &[]));
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(rx.recv().await.unwrap().seq);
        }
        assert_eq!(got, [2, 3, 4]);
        assert_eq!(stats.subscribers.load(Ordering::Relaxed), 1);
    }
}
