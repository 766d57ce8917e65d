//! Detect: behavioural detections over the enriched event stream.
//!
//! Each built-in detection is a [`Detector`] in its own module, fed every event in
//! sequence order; detectors keep whatever per-process state they need (bounded, and
//! dropped when the process exits). What they conclude becomes a `detection` event that
//! names the offending process and the sequence numbers of the evidence, and is kept in a
//! bounded store for `sensor detections list`.
//!
//! A detection is written once: its module holds the detector and its [`Rule`] (id,
//! title, severity, techniques, and what blocking mode does about it), and one line in
//! [`detectors`] puts it in service. The engine parses each event's kind once and hands
//! detectors the typed [`EventKind`], so a misspelt kind fails the build instead of
//! silently never matching.
//!
//! Configuration ([`DetectConfig`]) disables detections by id and adds allowlists (by
//! executable or by ancestor executable) per detection. Ids match whatever their case
//! (`sns-0004` is `SNS-0004`): a rule an administrator meant to switch off must not stay on
//! over a letter's case.

mod accounts;
mod anti_forensics;
mod bursts;
mod credential;
mod discovery;
mod download_exec;
pub mod drop_exec;
mod escape;
mod evasion;
mod fileless;
mod impact;
mod injection;
mod interactive;
mod kernel_load;
mod miner;
mod persistence;
mod preload;
mod privilege;
mod ransom;
#[cfg(test)]
mod replay;
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
use sensor_common::EventKind;
use serde::Deserialize;

use crate::proto;

/// What a detection is, independent of any one occurrence.
pub struct Rule {
    pub id: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub severity: &'static str,
    pub mitre: &'static [&'static str],
    /// What blocking mode does when the rule fires.
    pub response: Response,
}

/// What blocking mode does about a detection. Passive mode only ever reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response {
    /// Reported; nothing is stopped (the behaviour has legitimate uses, or is over by
    /// the time it is seen).
    Report,
    /// The offending process is stopped: denied or killed at exec by the kernel where
    /// it already acted, else killed from userspace.
    Stop,
    /// As [`Response::Stop`], and the shells the process started are killed too: they
    /// inherited its sockets and carry on the remote session.
    StopWithShells,
}

impl Rule {
    /// Whether blocking mode stops what this rule detects.
    pub fn preventable(&self) -> bool {
        self.response != Response::Report
    }
}

/// One occurrence, as a detector reports it.
pub struct Finding {
    pub rule: &'static Rule,
    pub process: proto::Process,
    pub evidence: Vec<u64>,
    pub details: Vec<(&'static str, String)>,
}

impl Finding {
    /// A finding whose evidence is the one event `e`, naming `p`, its process.
    pub fn on(
        rule: &'static Rule,
        p: &proto::Process,
        e: &proto::Event,
        details: Vec<(&'static str, String)>,
    ) -> Self {
        Self {
            rule,
            process: p.clone(),
            evidence: vec![e.seq],
            details,
        }
    }
}

pub trait Detector: Send {
    /// The rules this detector reports.
    fn rules(&self) -> &'static [&'static Rule];

    /// Events in, findings out. `kind` is `event.kind` parsed (`None`: a name this
    /// build does not know), so detectors compare typed kinds, never strings.
    fn inspect(&mut self, kind: Option<EventKind>, event: &proto::Event, out: &mut Vec<Finding>);
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
    /// Drop and execute: seconds between the write and the exec (default 600), within
    /// [`DROP_EXEC_WINDOW_SECS`].
    #[serde(default)]
    pub drop_exec_window_secs: Option<u64>,
    /// Seconds during which repeats of a detection are counted into it instead of
    /// published on their own (default 300; 0 publishes every one), within
    /// [`AGGREGATION_WINDOW_SECS`].
    #[serde(default)]
    pub aggregation_window_secs: Option<u64>,
    /// Which Sigma rules load, by level and status (`min_level`, `statuses`).
    #[serde(default)]
    pub sigma: sigma::SigmaFilter,
}

/// The documented range of `drop_exec_window_secs`: at least a second, at most a day.
pub const DROP_EXEC_WINDOW_SECS: std::ops::RangeInclusive<u64> = 1..=86_400;

/// The documented range of `aggregation_window_secs`: off, or up to a day.
pub const AGGREGATION_WINDOW_SECS: std::ops::RangeInclusive<u64> = 0..=86_400;

/// The most a detections config file may hold.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

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

    /// How long repeats of a detection are folded into it.
    pub fn aggregation_window(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.aggregation_window_secs.unwrap_or(300))
    }

    pub fn load(path: &Path) -> Result<Self> {
        let at = path.display();
        let text = crate::safe_fs::read_text_bounded(path, MAX_CONFIG_BYTES)
            .with_context(|| format!("reading detections config {at}"))?;
        let cfg: Self = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("detections config {at}: {}", json_error(&e)))?;
        cfg.normalised()
            .map_err(|e| anyhow::anyhow!("detections config {at}: {e}"))
    }

    /// Ids in upper case, each checked, and the windows in their ranges.
    fn normalised(mut self) -> Result<Self> {
        let windows = [
            (
                "drop_exec_window_secs",
                self.drop_exec_window_secs,
                DROP_EXEC_WINDOW_SECS,
            ),
            (
                "aggregation_window_secs",
                self.aggregation_window_secs,
                AGGREGATION_WINDOW_SECS,
            ),
        ];
        for (key, value, range) in windows {
            if let Some(w) = value
                && !range.contains(&w)
            {
                anyhow::bail!(
                    "{key} must be between {} and {} seconds",
                    range.start(),
                    range.end()
                );
            }
        }
        use rsigma_parser::Status;
        if self.sigma.statuses.is_empty() {
            anyhow::bail!("sigma.statuses: name at least one of stable, test, experimental");
        }
        if self
            .sigma
            .statuses
            .iter()
            .any(|s| matches!(s, Status::Deprecated | Status::Unsupported))
        {
            anyhow::bail!("sigma.statuses: deprecated and unsupported rules are never loaded");
        }
        let known: HashSet<&str> = all_rules().iter().map(|r| r.id).collect();
        for id in &mut self.disabled {
            *id = detection_id(id, "disabled", &known)?;
        }
        let mut allow = HashMap::new();
        for (id, list) in std::mem::take(&mut self.allow) {
            let id = detection_id(&id, "allow", &known)?;
            if allow.insert(id.clone(), list).is_some() {
                anyhow::bail!("allow: detection {id} is listed twice (ids ignore case)");
            }
        }
        self.allow = allow;
        Ok(self)
    }
}

/// `id` in upper case, refused if it names no built-in detection. Any id without the
/// built-in prefix names a Sigma rule, which may come from a rules directory loaded later.
fn detection_id(id: &str, key: &str, known: &HashSet<&str>) -> Result<String> {
    let id = id.trim().to_ascii_uppercase();
    if id.is_empty() || id.len() > 128 {
        anyhow::bail!("{key}: a detection id must be 1 to 128 characters");
    }
    if id.starts_with("SNS-") && !known.contains(id.as_str()) {
        anyhow::bail!("{key}: unknown detection id {id:?}");
    }
    Ok(id)
}

/// A JSON error as where and what was expected, never the text found there.
fn json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io | Category::Eof => "the file ends too early",
        Category::Syntax => "not valid JSON",
        Category::Data => {
            "expected an object with only the keys disabled (a list of detection ids), \
             allow (detection id to {exe, ancestor_exe} lists of paths), \
             drop_exec_window_secs and aggregation_window_secs (seconds), and sigma \
             ({min_level: informational, low, medium, high or critical, statuses: a list \
             of stable, test, experimental})"
        }
    };
    format!("line {} column {}: {what}", e.line(), e.column())
}

/// The registry of built-in detections: one line per detector, each reporting the rules
/// of its module. Everything else (configuration ids, health counts, blocking responses)
/// is derived from it.
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
        Box::new(evasion::Evasion),
        Box::new(discovery::Discovery::default()),
        Box::new(privilege::Privilege),
        Box::new(impact::Impact),
        Box::new(interactive::Interactive),
        Box::new(escape::Escape),
        Box::new(ransom::Ransom::default()),
        Box::new(accounts::Accounts),
    ]
}

pub fn all_rules() -> Vec<&'static Rule> {
    detectors(&DetectConfig::default())
        .iter()
        .flat_map(|d| d.rules().iter().copied())
        .collect()
}

/// The built-in rule with this id (as detections carry it, upper case).
pub fn rule(id: &str) -> Option<&'static Rule> {
    static RULES: std::sync::OnceLock<Vec<&'static Rule>> = std::sync::OnceLock::new();
    RULES
        .get_or_init(all_rules)
        .iter()
        .copied()
        .find(|r| r.id == id)
}

pub struct DetectionEngine {
    detectors: Vec<Box<dyn Detector>>,
    sigma: Option<sigma::SigmaRules>,
    sigma_updates: Option<Arc<sigma::Handoff>>,
    cfg: DetectConfig,
    findings: Vec<Finding>,
}

impl DetectionEngine {
    pub fn new(cfg: DetectConfig) -> Self {
        let cfg = cfg.with_upper_case_ids();
        let disabled: HashSet<String> = cfg.disabled.iter().cloned().collect();
        let detectors = detectors(&cfg)
            .into_iter()
            .filter(|d| d.rules().iter().any(|r| !disabled.contains(r.id)))
            .collect();
        Self {
            detectors,
            sigma: None,
            sigma_updates: None,
            cfg,
            findings: Vec::new(),
        }
    }

    /// Also evaluates these Sigma rules on every event.
    pub fn with_sigma(mut self, rules: sigma::SigmaRules) -> Self {
        self.sigma = Some(rules);
        self
    }

    /// Takes the Sigma rules an update hands over through `handoff` (see
    /// [`DetectionEngine::refresh`]).
    pub fn with_sigma_updates(mut self, handoff: Arc<sigma::Handoff>) -> Self {
        self.sigma_updates = Some(handoff);
        self
    }

    /// Swaps in the Sigma rules of an update, if one came: called before each batch, so
    /// an event is evaluated by one set or the other, and events read after an update
    /// returned by the new one.
    pub fn refresh(&mut self) {
        if let Some(rules) = self.sigma_updates.as_ref().and_then(|h| h.take()) {
            self.sigma = Some(rules);
        }
    }

    /// Detections made by `event` (which already carries its sequence number), without
    /// their own sequence numbers yet.
    pub fn observe(&mut self, event: &proto::Event) -> Vec<proto::Event> {
        self.findings.clear();
        let kind = EventKind::from_name(&event.kind);
        for d in &mut self.detectors {
            d.inspect(kind, event, &mut self.findings);
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
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        if let Some(sigma) = &self.sigma {
            for m in sigma.evaluate_kind(kind, event) {
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
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl DetectConfig {
    /// The ids as [`DetectConfig::load`] leaves them, for a config built in code.
    fn with_upper_case_ids(mut self) -> Self {
        for id in &mut self.disabled {
            *id = id.to_ascii_uppercase();
        }
        self.allow = std::mem::take(&mut self.allow)
            .into_iter()
            .map(|(id, a)| (id.to_ascii_uppercase(), a))
            .collect();
        self
    }
}

/// Whether detection `id` is switched off, or `process` is allowlisted for it (the
/// config's ids are upper case).
fn suppressed(cfg: &DetectConfig, id: &str, process: Option<&proto::Process>) -> bool {
    let id = id.to_ascii_uppercase();
    if cfg.disabled.contains(&id) {
        return true;
    }
    let (Some(a), Some(p)) = (cfg.allow.get(&id), process) else {
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
    /// Keeps `e`; an update of an aggregated detection (a `first_seq` before its own)
    /// replaces the copy it updates, so a repeating detection holds one place.
    pub fn push(&self, e: Arc<proto::Event>) {
        let mut q = self.inner.lock().unwrap();
        let first = e.detection.as_ref().map_or(e.seq, |d| d.first_seq);
        if first != 0 && first != e.seq {
            q.retain(|old| old.detection.as_ref().is_none_or(|d| d.first_seq != first));
        }
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

/// Whether `p` is a package manager or runs under one (a maintainer script).
pub(crate) fn under_package_manager(p: &proto::Process) -> bool {
    is_package_manager(&p.exe) || p.ancestors.iter().any(|a| is_package_manager(&a.exe))
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

/// The README's coverage table row of rule `id`, as cells: id, detection, tactics,
/// ATT&CK techniques, severity, what blocking mode does.
#[cfg(test)]
pub(crate) fn readme_row(id: &str) -> Vec<&'static str> {
    const README: &str = include_str!("../../../README.md");
    let row = README
        .lines()
        .find(|l| l.starts_with(&format!("| {id} |")))
        .unwrap_or_else(|| panic!("{id} has no row in the README's coverage table"));
    row.trim_matches('|').split(" | ").map(str::trim).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_lists_every_rule_with_its_techniques_and_severity() {
        for r in all_rules() {
            let row = readme_row(r.id);
            assert_eq!(row[3].split(", ").collect::<Vec<_>>(), r.mitre, "{}", r.id);
            assert_eq!(row[4], r.severity, "{}", r.id);
        }
    }

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
    fn blocking_stops_what_the_rules_say_and_only_that() {
        let stopped: Vec<&str> = all_rules()
            .into_iter()
            .filter(|r| r.preventable())
            .map(|r| r.id)
            .collect();
        assert_eq!(stopped, ["SNS-0001", "SNS-0002", "SNS-0003", "SNS-0012"]);
        let shells: Vec<&str> = all_rules()
            .into_iter()
            .filter(|r| r.response == Response::StopWithShells)
            .map(|r| r.id)
            .collect();
        assert_eq!(shells, ["SNS-0001"]);
        assert_eq!(rule("SNS-0007").map(|r| r.title), Some("Credential access"));
        assert!(rule("41a539bc-60f4-44b3-b68b-437946c8d298").is_none());
    }

    #[test]
    fn the_engine_hands_detectors_the_parsed_kind() {
        let mut engine = DetectionEngine::new(DetectConfig::default());
        let read = |kind: &str| proto::Event {
            kind: kind.into(),
            seq: 7,
            process: Some(
                proto::ProcessData {
                    exe: "/usr/bin/cat".into(),
                    ..Default::default()
                }
                .into(),
            ),
            file: Some(proto::FileInfo {
                path: "/etc/shadow".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let found = engine.observe(&read("file_read"));
        let ids: Vec<&str> = found
            .iter()
            .filter_map(|e| e.detection.as_ref())
            .map(|d| d.id.as_str())
            .collect();
        assert_eq!(ids, ["SNS-0007"]);
        assert!(engine.observe(&read("file_reads")).is_empty());
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

    fn config_file(tag: &str, json: &str) -> (std::path::PathBuf, Result<DetectConfig>) {
        let dir = std::env::temp_dir().join(format!("sensor-detcfg-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.json");
        std::fs::write(&p, json).unwrap();
        let cfg = DetectConfig::load(&p);
        std::fs::remove_dir_all(&dir).unwrap();
        (p, cfg)
    }

    #[test]
    fn ids_match_whatever_their_case() {
        let (_, cfg) = config_file(
            "case",
            r#"{"disabled": ["sns-0004"], "allow": {"sns-0005": {"exe": ["/x"]}}}"#,
        );
        let cfg = cfg.unwrap();
        assert_eq!(cfg.disabled, vec!["SNS-0004"]);
        assert!(suppressed(&cfg, "SNS-0004", None));
        let p = proto::ProcessData {
            exe: "/x".into(),
            ..Default::default()
        }
        .into();
        assert!(suppressed(&cfg, "SNS-0005", Some(&p)));
        assert!(!suppressed(&cfg, "SNS-0006", Some(&p)));
        // An unknown id is refused whatever its case; one id twice (by case) too.
        let (_, cfg) = config_file("unknown", r#"{"disabled": ["sns-9999"]}"#);
        assert!(cfg.unwrap_err().to_string().contains("SNS-9999"));
        let (_, cfg) = config_file("twice", r#"{"allow": {"sns-0005": {}, "SNS-0005": {}}}"#);
        assert!(cfg.unwrap_err().to_string().contains("twice"));
        // Sigma ids match case-insensitively too.
        let cfg = DetectConfig {
            disabled: vec!["41a539bc-60f4-44b3-b68b-437946c8d298".into()],
            ..Default::default()
        }
        .with_upper_case_ids();
        assert!(suppressed(
            &cfg,
            "41a539bc-60f4-44b3-b68b-437946c8d298",
            None
        ));
    }

    #[test]
    fn window_outside_its_range_is_refused_naming_the_key() {
        for w in ["0", "86401", "18446744073709551615"] {
            let (p, cfg) = config_file("window", &format!(r#"{{"drop_exec_window_secs": {w}}}"#));
            let e = format!("{:#}", cfg.unwrap_err());
            assert!(e.contains("drop_exec_window_secs"), "{e}");
            assert!(e.contains(&p.display().to_string()), "{e}");
            if w.len() > 5 {
                assert!(!e.contains(w), "quotes the value: {e}");
            }
        }
        for w in ["1", "600", "86400"] {
            let (_, cfg) =
                config_file("window-ok", &format!(r#"{{"drop_exec_window_secs": {w}}}"#));
            assert_eq!(
                cfg.unwrap().drop_exec_window().as_secs(),
                w.parse::<u64>().unwrap()
            );
        }
    }

    #[test]
    fn json_errors_name_line_and_expectation_not_content() {
        let (_, cfg) = config_file("json", "{\n  \"disabled\": \"secret-text\"\n}");
        let e = format!("{:#}", cfg.unwrap_err());
        assert!(e.contains("line 2"), "{e}");
        assert!(!e.contains("secret-text"), "{e}");
        let (_, cfg) = config_file("json2", "{\"secret_key\": 1}");
        let e = format!("{:#}", cfg.unwrap_err());
        assert!(!e.contains("secret_key"), "{e}");
    }
}
