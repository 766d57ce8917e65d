//! Health: what the daemon is doing and what it failed to do, assembled in one place
//! from the pipeline's counters, the kernel's own counters and program statuses, and the
//! antimalware side's state.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, atomic::Ordering},
    time::Instant,
};

use sensor_common::EventKind;

use super::errors::{MAX_STATUS_CHARS, bounded};
use crate::{
    antimalware::Antimalware,
    detect::sigma::SigmaSource,
    kernel::probes::{ExecDenial, KernelCounters, RunStatistics},
    pipeline::stats::Stats,
    proto,
};

pub struct HealthSource {
    pub stats: Arc<Stats>,
    pub counters: Mutex<KernelCounters>,
    pub programs: Vec<proto::ProgramStatus>,
    pub run_statistics: RunStatistics,
    pub enabled: HashSet<EventKind>,
    pub mode: String,
    pub prevention: String,
    pub exec_denial: ExecDenial,
    /// Why module loads are not captured, when they are not.
    pub module_loads: Option<String>,
    /// Built-in detections running (not disabled).
    pub builtin: u32,
    pub sigma: Arc<SigmaSource>,
    pub started: Instant,
    pub av: Arc<Antimalware>,
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
                paths_truncated: s.paths_truncated_count(k),
            })
            .collect();
        let t = *s.table.lock().unwrap();
        proto::Health {
            version: env!("CARGO_PKG_VERSION").into(),
            mode: self.mode.clone(),
            uptime_secs: self.started.elapsed().as_secs(),
            programs: self.programs(),
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
                detections_merged: s.detections_merged.load(Ordering::Relaxed),
            }),
            platform: Some(proto::PlatformInfo {
                kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default(),
                btf: std::path::Path::new("/sys/kernel/btf/vmlinux").exists(),
                bpf_lsm: self.exec_denial.active,
                bpf_lsm_reason: self.exec_denial.reason.clone(),
                prevention: self.prevention.clone(),
                bpf_statistics: self.run_statistics.describe(),
            }),
            detection: Some(self.detection()),
            real_time_protection: Some(self.av.rtp_health()),
            definitions: Some(self.av.definitions()),
            issues: self.issues(),
        }
    }

    fn detection(&self) -> proto::DetectionInfo {
        let rules = self.sigma.info();
        proto::DetectionInfo {
            builtin: self.builtin,
            sigma_rules: rules.sigma_rules,
            sigma_skipped: rules.skipped,
            sigma_filtered: rules.filtered,
            sigma_installed_version: rules.version,
        }
    }

    /// The program statuses with their run statistics read now.
    fn programs(&self) -> Vec<proto::ProgramStatus> {
        let ids = self
            .programs
            .iter()
            .filter(|p| p.attached && p.prog_id != 0)
            .map(|p| p.prog_id)
            .collect();
        let runs = self.run_statistics.read(&ids);
        let mut programs = self.programs.clone();
        for p in &mut programs {
            if let Some(r) = runs.get(&p.prog_id) {
                p.run_count = r.count;
                p.run_time_ns = r.time_ns;
            }
        }
        programs
    }

    /// What is wrong but did not stop the daemon, one line each.
    fn issues(&self) -> Vec<String> {
        let exclusions = self.av.handler.exclusions.load_error.as_ref();
        let exclusions =
            exclusions.map(|e| format!("exclusions: {}", bounded(e, MAX_STATUS_CHARS)));
        let statistics = self.run_statistics.refusal().map(str::to_string);
        let modules = self.module_loads.clone();
        exclusions
            .into_iter()
            .chain(statistics)
            .chain(modules)
            .collect()
    }
}
