//! Detect: behavioural detections over the enriched event stream.
//!
//! Each built-in detection is a [`Detector`] in its own module, fed every event in
//! sequence order; detectors keep whatever per-process state they need (bounded, and
//! dropped when the process exits). What they conclude becomes a `detection` event that
//! names the offending process and the sequence numbers of the evidence, and is kept in a
//! bounded store for `sensor detections list`.
//!
//! Configuration ([`DetectConfig`]) disables detections by id and adds allowlists (by
//! executable or by ancestor executable) per detection.

mod anti_forensics;
mod credential;
mod download_exec;
pub mod drop_exec;
mod fileless;
mod injection;
mod kernel_load;
mod miner;
mod persistence;
mod preload;
mod reverse_shell;
mod service_shell;
pub mod sigma;
mod tampering;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    path::Path,
    sync::{Arc, Mutex},
};

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::proto;

/// What a detection is, independent of any one occurrence.
pub struct Rule {
    pub id: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub severity: &'static str,
    pub mitre: &'static [&'static str],
}

/// One occurrence, as a detector reports it.
pub struct Finding {
    pub rule: &'static Rule,
    pub process: proto::Process,
    pub evidence: Vec<u64>,
    pub details: Vec<(&'static str, String)>,
}

pub trait Detector: Send {
    fn rules(&self) -> &'static [&'static Rule];
    fn observe(&mut self, event: &proto::Event, out: &mut Vec<Finding>);
}

/// Detection settings, read from a JSON file (`sensor daemon --detections-config`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectConfig {
    /// Detection ids not to run.
    #[serde(default)]
    pub disabled: Vec<String>,
    /// Per detection id: processes never reported.
    #[serde(default)]
    pub allow: HashMap<String, Allowlist>,
    /// Drop and execute: seconds between the write and the exec (default 600).
    #[serde(default)]
    pub drop_exec_window_secs: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allowlist {
    /// Executable paths of the process itself.
    #[serde(default)]
    pub exe: Vec<String>,
    /// Executable paths of any ancestor.
    #[serde(default)]
    pub ancestor_exe: Vec<String>,
}

impl DetectConfig {
    /// Drop and execute: how long after the drop an exec counts.
    pub fn drop_exec_window(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.drop_exec_window_secs.unwrap_or(600))
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading detections config {}", path.display()))?;
        let cfg: Self = serde_json::from_str(&text)
            .with_context(|| format!("parsing detections config {}", path.display()))?;
        let known: HashSet<&str> = all_rules().iter().map(|r| r.id).collect();
        // Built-in ids are checked here; any other id names a Sigma rule, which may come
        // from a rules directory loaded later.
        for id in cfg.disabled.iter().chain(cfg.allow.keys()) {
            if id.starts_with("SNS-") && !known.contains(id.as_str()) {
                anyhow::bail!(
                    "detections config {}: unknown detection id {id:?}",
                    path.display()
                );
            }
        }
        Ok(cfg)
    }
}

fn detectors(cfg: &DetectConfig) -> Vec<Box<dyn Detector>> {
    vec![
        Box::new(reverse_shell::ReverseShell::default()),
        Box::new(fileless::Fileless),
        Box::new(drop_exec::DropExec::new(cfg.drop_exec_window().as_secs())),
        Box::new(kernel_load::KernelLoad),
        Box::new(injection::Injection),
        Box::new(credential::Credential),
        Box::new(persistence::Persistence),
        Box::new(preload::Preload),
        Box::new(service_shell::ServiceShell::default()),
        Box::new(download_exec::DownloadExec::default()),
        Box::new(anti_forensics::AntiForensics),
        Box::new(miner::Miner),
        Box::new(tampering::Tampering),
    ]
}

pub fn all_rules() -> Vec<&'static Rule> {
    detectors(&DetectConfig::default())
        .iter()
        .flat_map(|d| d.rules().iter().copied())
        .collect()
}

pub struct DetectionEngine {
    detectors: Vec<Box<dyn Detector>>,
    sigma: Option<sigma::SigmaRules>,
    cfg: DetectConfig,
    findings: Vec<Finding>,
}

impl DetectionEngine {
    pub fn new(cfg: DetectConfig) -> Self {
        let disabled: HashSet<String> = cfg.disabled.iter().cloned().collect();
        let detectors = detectors(&cfg)
            .into_iter()
            .filter(|d| d.rules().iter().any(|r| !disabled.contains(r.id)))
            .collect();
        Self {
            detectors,
            sigma: None,
            cfg,
            findings: Vec::new(),
        }
    }

    /// Also evaluates these Sigma rules on every event.
    pub fn with_sigma(mut self, rules: sigma::SigmaRules) -> Self {
        self.sigma = Some(rules);
        self
    }

    /// Detections made by `event` (which already carries its sequence number), without
    /// their own sequence numbers yet.
    pub fn observe(&mut self, event: &proto::Event) -> Vec<proto::Event> {
        self.findings.clear();
        for d in &mut self.detectors {
            d.observe(event, &mut self.findings);
        }
        let mut out = Vec::new();
        for f in self.findings.drain(..) {
            if suppressed(&self.cfg, f.rule.id, Some(&f.process)) {
                continue;
            }
            out.push(proto::Event {
                kind: "detection".into(),
                timestamp_ns: event.timestamp_ns,
                time_unix_ns: event.time_unix_ns,
                process: Some(f.process),
                detection: Some(proto::Detection {
                    id: f.rule.id.into(),
                    title: f.rule.title.into(),
                    description: f.rule.description.into(),
                    severity: f.rule.severity.into(),
                    mitre: f.rule.mitre.iter().map(|s| s.to_string()).collect(),
                    evidence: f.evidence,
                    action: "none".into(),
                    source: "builtin".into(),
                    details: f
                        .details
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                }),
                ..Default::default()
            });
        }
        if let Some(sigma) = &self.sigma {
            for m in sigma.evaluate(event) {
                let d = sigma_detection(event, m);
                let id = d
                    .detection
                    .as_ref()
                    .map(|x| x.id.as_str())
                    .unwrap_or_default();
                if !suppressed(&self.cfg, id, d.process.as_ref()) {
                    out.push(d);
                }
            }
        }
        out
    }
}

/// A Sigma match as a detection. Sigma's `critical` maps to our highest severity, `high`;
/// the rule's own level is kept in the details.
fn sigma_detection(event: &proto::Event, m: sigma::SigmaMatch) -> proto::Event {
    let severity = match m.level.as_str() {
        "informational" | "low" | "medium" | "high" => m.level.clone(),
        "critical" => "high".into(),
        _ => "medium".into(),
    };
    proto::Event {
        kind: "detection".into(),
        timestamp_ns: event.timestamp_ns,
        time_unix_ns: event.time_unix_ns,
        process: event.process.clone(),
        detection: Some(proto::Detection {
            id: m.id,
            title: m.title,
            description: m.description,
            severity,
            mitre: m.mitre,
            evidence: vec![event.seq],
            action: "none".into(),
            source: "sigma".into(),
            details: [("level".to_string(), m.level)].into_iter().collect(),
        }),
        ..Default::default()
    }
}

/// Whether detection `id` is switched off, or `process` is allowlisted for it.
fn suppressed(cfg: &DetectConfig, id: &str, process: Option<&proto::Process>) -> bool {
    if cfg.disabled.iter().any(|d| d == id) {
        return true;
    }
    let (Some(a), Some(p)) = (cfg.allow.get(id), process) else {
        return false;
    };
    a.exe.contains(&p.exe)
        || p.ancestors
            .iter()
            .any(|anc| a.ancestor_exe.contains(&anc.exe))
}

/// The most recent detections, for `ListDetections`.
#[derive(Clone, Default)]
pub struct DetectionStore {
    inner: Arc<Mutex<VecDeque<Arc<proto::Event>>>>,
}

const STORE_CAPACITY: usize = 10_000;

impl DetectionStore {
    pub fn push(&self, e: Arc<proto::Event>) {
        let mut q = self.inner.lock().unwrap();
        if q.len() == STORE_CAPACITY {
            q.pop_front();
        }
        q.push_back(e);
    }

    pub fn since(&self, seq: u64) -> Vec<proto::Event> {
        self.inner
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.seq > seq)
            .map(|e| (**e).clone())
            .collect()
    }
}

/// Final path component.
pub(crate) fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Whether `exe` is a package manager: installing and upgrading write persistence
/// locations, delete logs and set file times as their job.
pub(crate) fn is_package_manager(exe: &str) -> bool {
    matches!(
        base_name(exe),
        "dpkg"
            | "apt"
            | "apt-get"
            | "unattended-upgr"
            | "rpm"
            | "dnf"
            | "yum"
            | "zypper"
            | "pacman"
    )
}

pub(crate) fn is_shell(exe: &str) -> bool {
    matches!(
        base_name(exe),
        "sh" | "bash"
            | "dash"
            | "zsh"
            | "ksh"
            | "mksh"
            | "ash"
            | "busybox"
            | "fish"
            | "tcsh"
            | "csh"
    )
}

/// Shells and script interpreters: what an attacker drives through a reverse shell.
pub(crate) fn is_shell_or_interpreter(exe: &str) -> bool {
    let b = base_name(exe);
    is_shell(exe)
        || b.starts_with("python")
        || b.starts_with("perl")
        || b.starts_with("ruby")
        || b.starts_with("php")
        || b.starts_with("lua")
        || matches!(
            b,
            "node" | "nodejs" | "socat" | "nc" | "ncat" | "netcat" | "awk" | "gawk"
        )
}

/// Key of the acting process inside detector state.
pub(crate) fn proc_key(e: &proto::Event) -> Option<(u32, u64)> {
    e.process.as_ref().map(|p| (p.pid, p.start_time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_are_unique_and_well_formed() {
        let rules = all_rules();
        let ids: HashSet<_> = rules.iter().map(|r| r.id).collect();
        assert_eq!(ids.len(), rules.len());
        for r in rules {
            assert!(r.id.starts_with("SNS-") && r.id.len() == 8, "{}", r.id);
            assert!(["informational", "low", "medium", "high"].contains(&r.severity));
            assert!(r.mitre.iter().all(|m| m.starts_with('T')));
        }
    }

    #[test]
    fn config_rejects_unknown_ids_and_keys() {
        let dir = std::env::temp_dir().join(format!("sensor-detcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.json");
        std::fs::write(&p, r#"{"disabled": ["SNS-9999"]}"#).unwrap();
        // Sigma rule ids are not known until the rules load: accepted here.
        let sigma = dir.join("s.json");
        std::fs::write(
            &sigma,
            r#"{"disabled": ["41a539bc-60f4-44b3-b68b-437946c8d298"]}"#,
        )
        .unwrap();
        assert!(DetectConfig::load(&sigma).is_ok());
        assert!(
            DetectConfig::load(&p)
                .unwrap_err()
                .to_string()
                .contains("SNS-9999")
        );
        std::fs::write(&p, r#"{"disable": []}"#).unwrap();
        assert!(DetectConfig::load(&p).is_err());
        std::fs::write(
            &p,
            r#"{"disabled": ["SNS-0004"], "allow": {"SNS-0005": {"exe": ["/x"]}}}"#,
        )
        .unwrap();
        let cfg = DetectConfig::load(&p).unwrap();
        assert_eq!(cfg.allow["SNS-0005"].exe, vec!["/x"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
