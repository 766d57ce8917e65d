//! Publish: the end of the pipeline.
//!
//! Hands out the sensor-wide sequence numbers, keeps the most recent ones for
//! clients that ask for a backlog, and fans events out to stream subscribers over a
//! broadcast channel. A subscriber that falls behind loses the oldest events; its
//! subscription ([`super::stream`]) counts and reports that loss.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, atomic::Ordering},
};

use tokio::sync::broadcast;

use super::stats::Stats;
use crate::proto;

/// Events kept for backlog requests.
pub const RECENT: usize = 1024;

#[derive(Clone)]
pub struct Feed {
    pub live: broadcast::Sender<Arc<proto::Event>>,
    pub recent: Arc<Mutex<VecDeque<Arc<proto::Event>>>>,
}

impl Feed {
    pub fn new(capacity: usize) -> Self {
        Self {
            live: broadcast::channel(capacity.max(16)).0,
            recent: Arc::new(Mutex::new(VecDeque::with_capacity(RECENT))),
        }
    }
}

pub struct Publisher {
    seq: u64,
    feed: Feed,
    stats: Arc<Stats>,
}

impl Publisher {
    pub fn new(feed: Feed, stats: Arc<Stats>) -> Self {
        Self {
            seq: 0,
            feed,
            stats,
        }
    }

    /// The next sequence number. Numbers are given out before detection, so detections can
    /// cite their evidence and follow it in the sequence.
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub fn publish(&mut self, event: proto::Event) -> Arc<proto::Event> {
        let event = Arc::new(event);
        {
            let mut recent = self.feed.recent.lock().unwrap();
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(event.clone());
        }
        // No subscriber is not an error: the event is still counted as published.
        let _ = self.feed.live.send(event.clone());
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        event
    }
}
