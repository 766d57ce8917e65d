//! Health: what the daemon is doing and what it failed to do.
//!
//! Pipeline stages count into [`Stats`] with relaxed atomics (cheap on the hot path);
//! [`HealthSource::snapshot`] assembles them with the kernel's own counters and the
//! program statuses into the `GetHealth` answer.

use std::{
    collections::HashSet,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use sensor_common::{EventKind, KIND_SLOTS};

use crate::{decode::DecodeError, probes::KernelCounters, process_table::TableStats, proto};

pub struct Stats {
    received: [AtomicU64; KIND_SLOTS],
    pub decode_errors: AtomicU64,
    pub published: AtomicU64,
    pub stream_dropped: AtomicU64,
    pub subscribers: AtomicU64,
    pub table: Mutex<TableStats>,
    pub hash_cache_size: AtomicU64,
    pub hashes_computed: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            received: std::array::from_fn(|_| AtomicU64::new(0)),
            decode_errors: AtomicU64::new(0),
            published: AtomicU64::new(0),
            stream_dropped: AtomicU64::new(0),
            subscribers: AtomicU64::new(0),
            table: Mutex::default(),
            hash_cache_size: AtomicU64::new(0),
            hashes_computed: AtomicU64::new(0),
        }
    }
}

impl Stats {
    pub fn received(&self, kind: EventKind) {
        if let Some(c) = self.received.get(kind as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
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

pub struct HealthSource {
    pub stats: std::sync::Arc<Stats>,
    pub counters: Mutex<KernelCounters>,
    pub programs: Vec<proto::ProgramStatus>,
    pub enabled: HashSet<EventKind>,
    pub mode: String,
    pub prevention: String,
    pub exec_denial: crate::probes::ExecDenial,
    pub detection: proto::DetectionInfo,
    pub started: Instant,
}

impl HealthSource {
    pub fn snapshot(&self) -> proto::Health {
        let s = &self.stats;
        let counters = self.counters.lock().unwrap();
        let events = EventKind::ALL
            .iter()
            .map(|&k| proto::KindCounters {
                kind: k.name().into(),
                enabled: self.enabled.contains(&k),
                received: s.received_count(k),
                lost: counters.lost(k),
                kernel_errors: counters.errors(k),
            })
            .collect();
        let t = *s.table.lock().unwrap();
        proto::Health {
            version: env!("CARGO_PKG_VERSION").into(),
            mode: self.mode.clone(),
            uptime_secs: self.started.elapsed().as_secs(),
            programs: self.programs.clone(),
            events,
            process_table: Some(proto::ProcessTableStats {
                size: t.size,
                capacity: t.capacity,
                seeded: t.seeded,
                evicted_exited: t.evicted_exited,
                evicted_lru: t.evicted_lru,
                exited_retained: t.exited_retained,
            }),
            pipeline: Some(proto::PipelineCounters {
                published: s.published.load(Ordering::Relaxed),
                decode_errors: s.decode_errors.load(Ordering::Relaxed),
                stream_dropped: s.stream_dropped.load(Ordering::Relaxed),
                subscribers: s.subscribers.load(Ordering::Relaxed),
                hash_cache_size: s.hash_cache_size.load(Ordering::Relaxed),
                hashes_computed: s.hashes_computed.load(Ordering::Relaxed),
            }),
            platform: Some(proto::PlatformInfo {
                kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default(),
                btf: std::path::Path::new("/sys/kernel/btf/vmlinux").exists(),
                bpf_lsm: self.exec_denial.active,
                bpf_lsm_reason: self.exec_denial.reason.clone(),
                prevention: self.prevention.clone(),
            }),
            detection: Some(self.detection.clone()),
            // Filled in by the gRPC layer, which holds the antimalware side.
            real_time_protection: None,
            definitions: None,
            issues: Vec::new(),
        }
    }
}
