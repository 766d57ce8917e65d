//! Act on malware: what real-time protection and scans do once the scan engine names a
//! threat. In blocking mode the access is denied and the file quarantined (unless the
//! threat is allowed, or the process is outside the blocking scope); in passive mode
//! nothing is touched. Either way the threat enters the history and travels down the
//! pipeline as a detection (SNS-0100 on access, SNS-0101 by a scan), so collectors see it
//! next to the behaviour around it.
//!
//! The record is made after the kernel has been answered and says what it was told: a
//! deny that lost the race with the deadline is recorded as `allowed_at_deadline`.
//!
//! With a blocking scope set, on-demand scans (which belong to no process) report what
//! they find and quarantine nothing; after-write scans quarantine only files whose writer
//! is inside the scope.

use std::{
    fs::File,
    path::Path,
    sync::{Arc, mpsc::SyncSender},
};

use crate::{
    daemon::Input,
    exclusions::{ExclusionStore, threat_allowed},
    proto,
    quarantine::{Quarantine, ThreatLog, now_ns},
    scan::{ScannedFile, Threat},
    scope::BlockingScope,
};

pub const ON_ACCESS_ID: &str = "SNS-0100";
pub const ON_SCAN_ID: &str = "SNS-0101";

/// Where a threat was met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Open,
    Exec,
    /// Scanned after a writer closed it.
    Write,
    Scan,
}

impl Access {
    fn name(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Exec => "exec",
            Self::Write => "write",
            Self::Scan => "scan",
        }
    }

    fn is_permission(self) -> bool {
        matches!(self, Self::Open | Self::Exec)
    }
}

pub struct Found<'a> {
    pub path: &'a Path,
    pub file: &'a File,
    pub scanned: ScannedFile,
    pub threat: Threat,
    pub access: Access,
    /// The process that opened it (0 for scans).
    pub pid: u32,
    pub definitions_version: String,
}

pub struct ThreatHandler {
    blocking: bool,
    scope: BlockingScope,
    pub quarantine: Quarantine,
    pub log: ThreatLog,
    pub exclusions: Arc<ExclusionStore>,
    reports: SyncSender<Input>,
}

impl ThreatHandler {
    pub fn new(
        blocking: bool,
        scope: BlockingScope,
        quarantine: Quarantine,
        log: ThreatLog,
        exclusions: Arc<ExclusionStore>,
        reports: SyncSender<Input>,
    ) -> Self {
        Self {
            blocking,
            scope,
            quarantine,
            log,
            exclusions,
            reports,
        }
    }

    pub fn blocking(&self) -> bool {
        self.blocking
    }

    /// Whether blocking may act on what `pid` met through `access`: a scan belongs to no
    /// process, so it is inside only when there is no scope.
    pub fn in_scope(&self, access: Access, pid: u32) -> bool {
        match access {
            Access::Scan => self.scope.is_everywhere(),
            _ => self.scope.covers(pid),
        }
    }

    /// Whether an access that meets the known threat `name` is refused now.
    pub fn refuses(&self, name: &str, access: Access, pid: u32) -> bool {
        self.blocking
            && access.is_permission()
            && !threat_allowed(&self.exclusions.get(), name)
            && self.in_scope(access, pid)
    }

    /// Acts on a threat and reports it. For an open or exec, `answer(allow)` tells the
    /// kernel and returns whether that answer is the one the kernel got (false: the
    /// deadline had already allowed it); it is called once, before the file is quarantined
    /// so the opener waits no longer than the verdict. Returns the threat as recorded.
    pub fn handle(&self, f: Found, answer: impl FnOnce(bool) -> bool) -> proto::Threat {
        let allowed = threat_allowed(&self.exclusions.get(), &f.threat.name);
        let in_scope = self.in_scope(f.access, f.pid);
        let stop = self.blocking && !allowed && in_scope;
        // Read while the opener still waits on the answer: once answered it may be gone.
        let proc_entry = (f.pid != 0)
            .then(|| crate::process_table::read_proc(f.pid))
            .flatten();
        let told = f.access.is_permission().then(|| answer(!stop));
        let mut quarantine_id = String::new();
        if stop {
            match self.quarantine.add(
                f.path,
                f.file,
                &f.scanned.data,
                &f.scanned.sha256,
                &f.threat.name,
            ) {
                Ok(e) => quarantine_id = e.id,
                Err(e) => log::error!("quarantine of {} failed: {e:#}", f.path.display()),
            }
        }
        let action = match (stop, told) {
            (false, _) => "none",
            (true, Some(true)) => "denied",
            (true, Some(false)) => "allowed_at_deadline",
            (true, None) if quarantine_id.is_empty() => "none",
            (true, None) => "quarantined",
        };
        let threat = proto::Threat {
            time_unix_ns: now_ns(),
            name: f.threat.name.clone(),
            engine: f.threat.engine.into(),
            path: f.path.to_string_lossy().into_owned(),
            sha256: f.scanned.sha256.clone(),
            size: f.scanned.data.len() as u64,
            action: action.into(),
            quarantine_id,
            source: if f.access == Access::Scan {
                "scan"
            } else {
                "real_time"
            }
            .into(),
            access: f.access.name().into(),
            pid: f.pid,
            exe: proc_entry
                .as_ref()
                .map(|e| e.exe.clone())
                .unwrap_or_default(),
            definitions_version: f.definitions_version,
        };
        log::warn!(
            "threat {} in {} ({} by pid {}): {}",
            threat.name,
            threat.path,
            threat.access,
            threat.pid,
            threat.action
        );
        self.log.record(&threat);
        let process = proc_entry.map(|e| proto::Process {
            pid: e.pid,
            ppid: e.ppid,
            start_time: e.start_ns,
            exe: e.exe,
            args: e.args,
            comm: e.comm,
            uid: e.uid,
            gid: e.gid,
            euid: e.euid,
            egid: e.egid,
            ..Default::default()
        });
        let mut event = detection(&threat, process);
        if let Some(d) = event.detection.as_mut() {
            if self.blocking && !in_scope {
                d.details
                    .insert("blocking".into(), "outside the blocking scope".into());
            }
            if told == Some(false) && stop {
                d.details.insert(
                    "answer".into(),
                    "allowed: the verdict came after the deadline".into(),
                );
            }
        }
        // Blocking: a detection must not be lost, and this runs on a scan worker, never
        // on the thread that reads kernel events.
        let _ = self.reports.send(Input::Detection(Box::new(event)));
        threat
    }
}

fn detection(t: &proto::Threat, process: Option<proto::Process>) -> proto::Event {
    let (id, title) = if t.source == "scan" {
        (ON_SCAN_ID, "Malware found by a scan")
    } else {
        (ON_ACCESS_ID, "Malware on access")
    };
    let mut details: std::collections::HashMap<String, String> = [
        ("threat", t.name.clone()),
        ("engine", t.engine.clone()),
        ("path", t.path.clone()),
        ("sha256", t.sha256.clone()),
        ("access", t.access.clone()),
        ("definitions_version", t.definitions_version.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if !t.quarantine_id.is_empty() {
        details.insert("quarantine_id".into(), t.quarantine_id.clone());
    }
    proto::Event {
        kind: "detection".into(),
        time_unix_ns: t.time_unix_ns,
        process,
        detection: Some(proto::Detection {
            id: id.into(),
            title: title.into(),
            description: format!("{} ({}) in {}", t.name, t.engine, t.path),
            severity: "high".into(),
            mitre: vec!["T1204.002".into()],
            evidence: Vec::new(),
            action: t.action.clone(),
            source: "antimalware".into(),
            details,
        }),
        ..Default::default()
    }
}
