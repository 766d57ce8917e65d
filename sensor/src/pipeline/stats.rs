//! Pipeline counters: what each stage received, published and dropped.
//!
//! Stages count with relaxed atomics (cheap on the hot path); the API's health answer
//! reads them with the kernel's own counters.

use std::sync::{
    Mutex,
    atomic::{AtomicU64, Ordering},
};

use sensor_common::{EventKind, KIND_SLOTS};

use crate::{decode::DecodeError, enrich::process_table::TableStats};

pub struct Stats {
    received: [AtomicU64; KIND_SLOTS],
    paths_truncated: [AtomicU64; KIND_SLOTS],
    pub decode_errors: AtomicU64,
    pub published: AtomicU64,
    pub stream_dropped: AtomicU64,
    pub subscribers: AtomicU64,
    pub table: Mutex<TableStats>,
    pub hash_cache_size: AtomicU64,
    pub hashes_computed: AtomicU64,
    pub detections_merged: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            received: std::array::from_fn(|_| AtomicU64::new(0)),
            paths_truncated: std::array::from_fn(|_| AtomicU64::new(0)),
            decode_errors: AtomicU64::new(0),
            published: AtomicU64::new(0),
            stream_dropped: AtomicU64::new(0),
            subscribers: AtomicU64::new(0),
            table: Mutex::default(),
            hash_cache_size: AtomicU64::new(0),
            hashes_computed: AtomicU64::new(0),
            detections_merged: AtomicU64::new(0),
        }
    }
}

impl Stats {
    pub fn received(&self, kind: EventKind) {
        if let Some(c) = self.received.get(kind as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Paths of a record of `kind` that a kernel bound cut short.
    pub fn paths_truncated(&self, kind: EventKind, n: u32) {
        if n > 0
            && let Some(c) = self.paths_truncated.get(kind as usize)
        {
            c.fetch_add(u64::from(n), Ordering::Relaxed);
        }
    }

    pub fn paths_truncated_count(&self, kind: EventKind) -> u64 {
        self.paths_truncated
            .get(kind as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub fn received_count(&self, kind: EventKind) -> u64 {
        self.received
            .get(kind as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub fn decode_error(&self, e: &DecodeError) {
        // Logged at debug only: a flood of garbage must not become a flood of logs.
        log::debug!("skipping record: {e}");
        self.decode_errors.fetch_add(1, Ordering::Relaxed);
    }
}
