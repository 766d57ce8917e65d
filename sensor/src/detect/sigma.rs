//! Sigma: detection rules in the SigmaHQ format, evaluated over the event stream.
//!
//! Sigma is the common language of detection engineering: thousands of public rules exist
//! and analysts already write their own in it. Supporting it lets an operator run those
//! rules as they are, next to the built-in detections, instead of translating each one.
//! Parsing and matching (modifiers, wildcards, regexes, conditions, the candidate index
//! that keeps the per-event cost low) come from the rsigma crates; this module only
//! decides which rules apply to this sensor and presents our events to them.
//!
//! Sigma rules are written against a log source (`logsource`) and name fields the way
//! Sysmon does (`Image`, `CommandLine`, `TargetFilename`, ...). A rule is loaded when its
//! product is `linux` (or unset), it names no `service` (a service implies another event
//! schema, such as auditd records), and its category is one the sensor produces:
//!
//! | category             | event kinds                  |
//! |----------------------|------------------------------|
//! | `process_creation`   | `process_exec`               |
//! | `file_event`         | `file_create`, `file_write`  |
//! | `file_delete`        | `file_unlink`                |
//! | `file_rename`        | `file_rename`                |
//! | `network_connection` | `net_connect`, `net_accept`  |
//!
//! Anything else (another product, an unknown category, a parse or compile error,
//! correlation and filter documents, deprecated or unsupported rules, a missing or
//! duplicate id) is skipped with a reason, so that one bad file in a rule directory never
//! stops the sensor.
//!
//! Events are not converted to JSON: a [`rsigma_eval::Event`] view answers field lookups
//! straight from the protobuf event, so the only allocations this side adds are the
//! joined command lines, made when a rule asks for them. Only the engine of the event's
//! category runs, and kinds without a category cost a string match.

use std::{
    borrow::Cow,
    cell::OnceCell,
    collections::HashMap,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use rsigma_eval::{CompiledRule, Engine, EventValue, compile_rule};
use rsigma_parser::{SigmaRule, Status, parse_sigma_yaml};

use crate::proto;

macro_rules! shipped {
    ($name:literal) => {
        ($name, include_str!(concat!("../../../rules/sigma/", $name)))
    };
}

/// Rules shipped with the sensor (`rules/sigma/`), compiled into the binary so that they
/// are there whatever the installation. A test checks that this list and the directory
/// agree.
const SHIPPED: &[(&str, &str)] = &[
    shipped!("file_delete_lnx_log_deletion.yml"),
    shipped!("file_event_lnx_cron_persistence.yml"),
    shipped!("net_connection_lnx_shell_suspicious_port.yml"),
    shipped!("proc_creation_lnx_base64_decode_shell.yml"),
    shipped!("proc_creation_lnx_chattr_immutable.yml"),
    shipped!("proc_creation_lnx_webserver_recon.yml"),
];

/// The Sigma log source categories the sensor's events can stand for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    ProcessCreation,
    FileEvent,
    FileDelete,
    FileRename,
    NetworkConnection,
}

impl Category {
    const ALL: [Category; 5] = [
        Category::ProcessCreation,
        Category::FileEvent,
        Category::FileDelete,
        Category::FileRename,
        Category::NetworkConnection,
    ];

    fn name(self) -> &'static str {
        match self {
            Category::ProcessCreation => "process_creation",
            Category::FileEvent => "file_event",
            Category::FileDelete => "file_delete",
            Category::FileRename => "file_rename",
            Category::NetworkConnection => "network_connection",
        }
    }

    fn of_kind(kind: &str) -> Option<Self> {
        Some(match kind {
            "process_exec" => Category::ProcessCreation,
            "file_create" | "file_write" => Category::FileEvent,
            "file_unlink" => Category::FileDelete,
            "file_rename" => Category::FileRename,
            "net_connect" | "net_accept" => Category::NetworkConnection,
            _ => return None,
        })
    }

    /// The Sigma fields an event of this category can carry.
    fn fields(self) -> &'static [Field] {
        use Field::*;
        match self {
            Category::ProcessCreation => &[
                Image,
                CommandLine,
                ParentImage,
                ParentCommandLine,
                User,
                ProcessId,
                ParentProcessId,
            ],
            Category::FileEvent | Category::FileDelete => &[TargetFilename, Image, User, ProcessId],
            Category::FileRename => &[SourceFilename, TargetFilename, Image, User, ProcessId],
            Category::NetworkConnection => &[
                DestinationIp,
                DestinationPort,
                SourceIp,
                SourcePort,
                Protocol,
                Initiated,
                Image,
                User,
                ProcessId,
            ],
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Field {
    Image,
    CommandLine,
    ParentImage,
    ParentCommandLine,
    User,
    ProcessId,
    ParentProcessId,
    TargetFilename,
    SourceFilename,
    DestinationIp,
    DestinationPort,
    SourceIp,
    SourcePort,
    Protocol,
    Initiated,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Image => "Image",
            Field::CommandLine => "CommandLine",
            Field::ParentImage => "ParentImage",
            Field::ParentCommandLine => "ParentCommandLine",
            Field::User => "User",
            Field::ProcessId => "ProcessId",
            Field::ParentProcessId => "ParentProcessId",
            Field::TargetFilename => "TargetFilename",
            Field::SourceFilename => "SourceFilename",
            Field::DestinationIp => "DestinationIp",
            Field::DestinationPort => "DestinationPort",
            Field::SourceIp => "SourceIp",
            Field::SourcePort => "SourcePort",
            Field::Protocol => "Protocol",
            Field::Initiated => "Initiated",
        }
    }
}

/// One event as the Sigma engine sees it: a flat record of the category's fields.
struct View<'a> {
    category: Category,
    event: &'a proto::Event,
    command_line: OnceCell<String>,
    parent_command_line: OnceCell<String>,
}

/// A string field; empty means the sensor does not know it, which Sigma calls absent.
fn text(s: &str) -> Option<EventValue<'_>> {
    (!s.is_empty()).then_some(EventValue::Str(Cow::Borrowed(s)))
}

fn number(n: u32) -> Option<EventValue<'static>> {
    Some(EventValue::Int(n.into()))
}

impl<'a> View<'a> {
    fn new(category: Category, event: &'a proto::Event) -> Self {
        Self {
            category,
            event,
            command_line: OnceCell::new(),
            parent_command_line: OnceCell::new(),
        }
    }

    fn value(&self, field: Field) -> Option<EventValue<'_>> {
        let e = self.event;
        let process = e.process.as_ref();
        let file = e.file.as_ref();
        let net = e.net.as_ref();
        // Sysmon's convention: the source is the side that opened the connection, so on
        // an accepted connection the remote peer is the source and the local (listening)
        // endpoint the destination. Rules such as `Initiated: 'false'` with
        // `DestinationPort: 22` (inbound SSH) rely on it.
        let inbound = e.kind == "net_accept";
        match field {
            Field::Image => {
                let p = process?;
                match text(&p.exe) {
                    Some(v) => Some(v),
                    None if self.category == Category::ProcessCreation => {
                        text(&e.exec.as_ref()?.filename)
                    }
                    None => None,
                }
            }
            Field::CommandLine => {
                let args = &process?.args;
                if args.is_empty() {
                    return None;
                }
                text(self.command_line.get_or_init(|| args.join(" ")))
            }
            Field::ParentImage => text(&process?.parent_exe),
            Field::ParentCommandLine => {
                let args = &process?.parent_args;
                if args.is_empty() {
                    return None;
                }
                text(self.parent_command_line.get_or_init(|| args.join(" ")))
            }
            Field::User => text(&process?.user),
            Field::ProcessId => number(process?.pid),
            Field::ParentProcessId => number(process?.ppid),
            Field::TargetFilename if self.category == Category::FileRename => text(&file?.new_path),
            Field::TargetFilename | Field::SourceFilename => text(&file?.path),
            Field::DestinationIp if inbound => text(&net?.src_addr),
            Field::DestinationIp => text(&net?.dst_addr),
            Field::DestinationPort if inbound => port(net?.src_port),
            Field::DestinationPort => port(net?.dst_port),
            Field::SourceIp if inbound => text(&net?.dst_addr),
            Field::SourceIp => text(&net?.src_addr),
            Field::SourcePort if inbound => port(net?.dst_port),
            Field::SourcePort => port(net?.src_port),
            Field::Protocol => text(&net?.protocol),
            Field::Initiated => {
                net?;
                text(if inbound { "false" } else { "true" })
            }
        }
    }

    fn present(&self) -> impl Iterator<Item = (Field, EventValue<'_>)> {
        self.category
            .fields()
            .iter()
            .filter_map(|&f| Some((f, self.value(f)?)))
    }
}

/// Port 0 is "no endpoint" (see `decode::net::sock_to_net`).
fn port(p: u32) -> Option<EventValue<'static>> {
    if p == 0 { None } else { number(p) }
}

impl rsigma_eval::Event for View<'_> {
    fn get_field(&self, path: &str) -> Option<EventValue<'_>> {
        let field = self.category.fields().iter().find(|f| f.name() == path)?;
        self.value(*field)
    }

    fn any_string_value(&self, pred: &dyn Fn(&str) -> bool) -> bool {
        self.present()
            .any(|(_, v)| matches!(v, EventValue::Str(s) if pred(&s)))
    }

    fn all_string_values(&self) -> Vec<Cow<'_, str>> {
        self.present()
            .filter_map(|(_, v)| match v {
                EventValue::Str(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    fn visit_string_values(&self, visit: &mut dyn FnMut(&str)) {
        for (_, v) in self.present() {
            if let EventValue::Str(s) = v {
                visit(&s);
            }
        }
    }

    fn to_json(&self) -> serde_json::Value {
        self.present()
            .map(|(f, v)| (f.name().to_string(), v.to_json()))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    fn field_keys(&self) -> Vec<Cow<'_, str>> {
        self.present()
            .map(|(f, _)| Cow::Borrowed(f.name()))
            .collect()
    }

    // Not overriding `top_level_keys`/`visit_top_level_keys`: told nothing about the
    // event's shape, the engine walks only the fields its rules name, each lookup a short
    // scan of the category's list, instead of hashing every field we could offer.
}

/// A rule's identity, as reported with each match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigmaMatch {
    pub id: String,
    pub title: String,
    pub description: String,
    /// informational, low, medium, high or critical, as the rule gives it (medium when it
    /// gives none).
    pub level: String,
    /// ATT&CK techniques from the rule's `attack.tNNNN[.NNN]` tags, e.g. `T1059.004`.
    pub mitre: Vec<String>,
}

/// Largest Sigma rule file read from `--sigma-rules`: SigmaHQ's rules are a few KiB each.
pub const MAX_RULE_FILE_BYTES: u64 = 1 << 20;

/// Compiled Sigma rules, one engine per log source category.
pub struct SigmaRules {
    engines: [Engine; Category::ALL.len()],
    /// By rule id: the engine reports matches by id.
    rules: HashMap<String, SigmaMatch>,
}

impl SigmaRules {
    /// Shipped rules (embedded from rules/sigma/) plus every *.yml/*.yaml under `dir`
    /// (subdirectories included, as in a checkout of SigmaHQ's `rules/linux`), if given.
    ///
    /// A rule the sensor cannot use (parse or compile error, non-linux product, log source
    /// service, unsupported category, deprecated or unsupported status, missing or
    /// duplicate id, correlation or filter document) is skipped: the second value lists
    /// them as "file: reason". So is a file that is not a regular file (symlink, FIFO,
    /// device) or is over [`MAX_RULE_FILE_BYTES`]. Only an unreadable `dir` is an error.
    pub fn load(dir: Option<&Path>) -> Result<(Self, Vec<String>)> {
        let mut loader = Loader::default();
        for (name, text) in SHIPPED {
            loader.add_file(&format!("shipped/{name}"), text);
        }
        if let Some(dir) = dir {
            let mut files = Vec::new();
            let entries = std::fs::read_dir(dir)
                .with_context(|| format!("reading Sigma rule directory {}", dir.display()))?;
            collect_rule_files(entries, &mut files, &mut loader.skipped);
            files.sort();
            for path in files {
                // Regular files only, bounded: a FIFO would hang start-up, a symlink to
                // /dev/zero would eat memory.
                match crate::safe_fs::read_text_bounded(&path, MAX_RULE_FILE_BYTES) {
                    Ok(text) => loader.add_file(&path.display().to_string(), &text),
                    Err(e) => loader.skipped.push(format!("{e:#}")),
                }
            }
        }
        Ok(loader.finish())
    }

    /// Number of rules loaded.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Rules matched by `event` (none for kinds no category stands for).
    pub fn evaluate(&self, event: &proto::Event) -> Vec<SigmaMatch> {
        let Some(category) = Category::of_kind(&event.kind) else {
            return Vec::new();
        };
        let engine = &self.engines[category as usize];
        if engine.rule_count() == 0 {
            return Vec::new();
        }
        engine
            .evaluate(&View::new(category, event))
            .into_iter()
            .filter_map(|r| self.rules.get(r.header.rule_id.as_deref()?).cloned())
            .collect()
    }
}

/// Every rule file under `entries`, recursively; unreadable subdirectories are reported
/// rather than fatal, like any other file the sensor cannot use.
fn collect_rule_files(
    entries: std::fs::ReadDir,
    out: &mut Vec<PathBuf>,
    skipped: &mut Vec<String>,
) {
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                skipped.push(format!("directory entry: {e}"));
                continue;
            }
        };
        let path = entry.path();
        // Real directories only: a symlinked one could lead back up the tree.
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            match std::fs::read_dir(&path) {
                Ok(sub) => collect_rule_files(sub, out, skipped),
                Err(e) => skipped.push(format!("{}: {e}", path.display())),
            }
        } else if path.extension().is_some_and(|x| x == "yml" || x == "yaml") {
            out.push(path);
        }
    }
}

#[derive(Default)]
struct Loader {
    compiled: [Vec<CompiledRule>; Category::ALL.len()],
    rules: HashMap<String, SigmaMatch>,
    /// Where each id was first loaded from, to name it when a duplicate is skipped.
    origin: HashMap<String, String>,
    skipped: Vec<String>,
}

impl Loader {
    fn add_file(&mut self, file: &str, text: &str) {
        let collection = match parse_sigma_yaml(text) {
            Ok(c) => c,
            Err(e) => {
                self.skipped.push(format!("{file}: {e}"));
                return;
            }
        };
        let documents =
            collection.rules.len() + collection.correlations.len() + collection.filters.len();
        if documents == 0 && collection.errors.is_empty() {
            self.skipped
                .push(format!("{file}: no Sigma rule in the file"));
        }
        for e in &collection.errors {
            self.skipped.push(format!("{file}: {e}"));
        }
        for c in &collection.correlations {
            self.skipped.push(format!(
                "{file}: {:?}: correlation rules are not supported",
                c.title
            ));
        }
        for f in &collection.filters {
            self.skipped.push(format!(
                "{file}: {:?}: filter documents are not supported",
                f.title
            ));
        }
        for rule in &collection.rules {
            if let Err(reason) = self.add_rule(file, rule) {
                self.skipped
                    .push(format!("{file}: {:?}: {reason}", rule.title));
            }
        }
    }

    fn add_rule(&mut self, file: &str, rule: &SigmaRule) -> Result<(), String> {
        let Some(id) = rule.id.as_deref().filter(|id| !id.is_empty()) else {
            return Err("no id".into());
        };
        if let Some(first) = self.origin.get(id) {
            return Err(format!("duplicate id {id} (first loaded from {first})"));
        }
        match rule.status {
            Some(Status::Deprecated) => return Err("status deprecated".into()),
            Some(Status::Unsupported) => return Err("status unsupported".into()),
            _ => {}
        }
        let ls = &rule.logsource;
        if let Some(product) = &ls.product
            && !product.eq_ignore_ascii_case("linux")
        {
            return Err(format!("product {product:?} is not linux"));
        }
        if let Some(service) = &ls.service {
            return Err(format!("log source service {service:?} is not supported"));
        }
        let Some(category) = &ls.category else {
            return Err("no log source category".into());
        };
        let Some(category) = Category::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(category))
        else {
            return Err(format!("category {category:?} is not supported"));
        };
        let compiled = compile_rule(rule).map_err(|e| e.to_string())?;
        self.compiled[category as usize].push(compiled);
        self.origin.insert(id.to_string(), file.to_string());
        self.rules.insert(
            id.to_string(),
            SigmaMatch {
                id: id.to_string(),
                title: rule.title.clone(),
                description: rule.description.clone().unwrap_or_default(),
                level: rule.level.map_or("medium", |l| l.as_str()).to_string(),
                mitre: techniques(&rule.tags),
            },
        );
        Ok(())
    }

    fn finish(self) -> (SigmaRules, Vec<String>) {
        let engines = self.compiled.map(|rules| {
            let mut engine = Engine::new();
            // One index build per engine rather than one per rule.
            engine.extend_compiled_rules(rules);
            engine
        });
        (
            SigmaRules {
                engines,
                rules: self.rules,
            },
            self.skipped,
        )
    }
}

/// ATT&CK technique ids from Sigma tags: `attack.t1059.004` -> `T1059.004`. Tactic,
/// group and software tags are not techniques and are left out.
fn techniques(tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for tag in tags {
        let tag = tag.to_ascii_lowercase();
        let Some(rest) = tag.strip_prefix("attack.t") else {
            continue;
        };
        let (main, sub) = rest.split_once('.').unwrap_or((rest, ""));
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(main, 4) || !(sub.is_empty() || digits(sub, 3)) {
            continue;
        }
        let id = format!("T{}", rest);
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE64: &str = "41a539bc-60f4-44b3-b68b-437946c8d298";
    const WEBSERVER_RECON: &str = "bede07bb-527f-403b-9dd1-e0608032aacb";
    const CHATTR: &str = "dd4b327a-1aac-4852-ad5c-a179c0d445d8";
    const CRON: &str = "4abb7633-482e-49cf-abbd-ce7ee1597217";
    const LOG_DELETION: &str = "a64f783c-ab38-45ea-9ab0-4dc5fae7122e";
    const SHELL_PORT: &str = "96fa240b-8d2e-44fa-8eba-ac2fc5b37dd6";

    fn shipped() -> SigmaRules {
        let (rules, skipped) = SigmaRules::load(None).unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
        rules
    }

    fn process(exe: &str, args: &[&str]) -> proto::Process {
        proto::Process {
            pid: 4242,
            ppid: 4241,
            exe: exe.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            user: "www-data".into(),
            uid: 33,
            parent_exe: "/usr/bin/bash".into(),
            parent_args: vec!["bash".into()],
            ..Default::default()
        }
    }

    fn exec(exe: &str, args: &[&str]) -> proto::Event {
        proto::Event {
            kind: "process_exec".into(),
            process: Some(process(exe, args)),
            exec: Some(proto::ExecInfo {
                filename: exe.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn file(kind: &str, exe: &str, path: &str, new_path: &str) -> proto::Event {
        proto::Event {
            kind: kind.into(),
            process: Some(process(exe, &[])),
            file: Some(proto::FileInfo {
                path: path.into(),
                new_path: new_path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn connect(kind: &str, exe: &str, local_port: u32, remote_port: u32) -> proto::Event {
        proto::Event {
            kind: kind.into(),
            process: Some(process(exe, &[])),
            net: Some(proto::NetInfo {
                protocol: "tcp".into(),
                family: "inet".into(),
                src_addr: "10.0.0.2".into(),
                src_port: local_port,
                dst_addr: "203.0.113.7".into(),
                dst_port: remote_port,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn ids(rules: &SigmaRules, e: &proto::Event) -> Vec<String> {
        rules.evaluate(e).into_iter().map(|m| m.id).collect()
    }

    #[test]
    fn shipped_rules_all_load() {
        assert_eq!(shipped().len(), 6);
    }

    #[test]
    fn shipped_list_matches_the_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules/sigma");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut listed: Vec<&str> = SHIPPED.iter().map(|(n, _)| *n).collect();
        listed.sort();
        assert_eq!(on_disk, listed);
    }

    #[test]
    fn base64_piped_to_shell() {
        let rules = shipped();
        let e = exec(
            "/usr/bin/bash",
            &["bash", "-c", "echo aGk= | base64 -d | sh"],
        );
        let m = rules.evaluate(&e);
        assert_eq!(
            m,
            vec![SigmaMatch {
                id: BASE64.into(),
                title: "Base64 Decoded Payload Piped to a Shell".into(),
                description: m[0].description.clone(),
                level: "high".into(),
                mitre: vec!["T1059.004".into(), "T1140".into(), "T1027".into()],
            }]
        );
        assert!(m[0].description.starts_with("Detects a command line"));

        for benign in [
            "base64 -d file.txt > out",
            "base64 -d file.txt | shuf",
            "echo aGk= | base64 | sh",
        ] {
            let e = exec("/usr/bin/bash", &["bash", "-c", benign]);
            assert!(rules.evaluate(&e).is_empty(), "{benign}");
        }
        // Same text on a kind with no category.
        let mut e = exec(
            "/usr/bin/bash",
            &["bash", "-c", "echo aGk= | base64 -d | sh"],
        );
        e.kind = "process_fork".into();
        assert!(rules.evaluate(&e).is_empty());
    }

    #[test]
    fn process_creation_fields() {
        let rules = shipped();
        let mut e = exec("/usr/bin/whoami", &["whoami"]);
        assert!(ids(&rules, &e).is_empty(), "bash parent");
        e.process.as_mut().unwrap().parent_exe = "/usr/sbin/php-fpm".into();
        assert_eq!(ids(&rules, &e), vec![WEBSERVER_RECON]);
        // Without an enriched exe, the path given to execve stands in.
        e.process.as_mut().unwrap().exe.clear();
        assert_eq!(ids(&rules, &e), vec![WEBSERVER_RECON]);

        let e = exec("/usr/bin/chattr", &["chattr", "+i", "/etc/passwd"]);
        assert_eq!(ids(&rules, &e), vec![CHATTR]);
        let e = exec("/usr/bin/chattr", &["chattr", "+i", "/home/u/notes.txt"]);
        assert!(ids(&rules, &e).is_empty());
        let e = exec("/usr/bin/chattr", &["chattr", "-i", "/etc/passwd"]);
        assert!(ids(&rules, &e).is_empty());
    }

    #[test]
    fn file_event_and_delete_and_rename() {
        let rules = shipped();
        for kind in ["file_create", "file_write"] {
            let e = file(kind, "/usr/bin/cp", "/etc/cron.d/backdoor", "");
            assert_eq!(ids(&rules, &e), vec![CRON], "{kind}");
        }
        let e = file("file_write", "/usr/bin/dpkg", "/etc/cron.d/sysstat", "");
        assert!(ids(&rules, &e).is_empty(), "package manager filtered");
        let e = file("file_write", "/usr/bin/cp", "/etc/cron.daily.txt", "");
        assert!(ids(&rules, &e).is_empty());
        // A deletion under a cron directory is not a file_event.
        let e = file("file_unlink", "/usr/bin/rm", "/etc/cron.d/backdoor", "");
        assert!(ids(&rules, &e).is_empty());

        let e = file("file_unlink", "/usr/bin/rm", "/var/log/auth.log", "");
        assert_eq!(ids(&rules, &e), vec![LOG_DELETION]);
        let e = file(
            "file_unlink",
            "/usr/sbin/logrotate",
            "/var/log/auth.log.4.gz",
            "",
        );
        assert!(ids(&rules, &e).is_empty());
        let e = file("file_create", "/usr/bin/rm", "/var/log/auth.log", "");
        assert!(ids(&rules, &e).is_empty());
    }

    #[test]
    fn file_rename_maps_source_and_target() {
        let dir = TempDir::new("rename");
        std::fs::write(
            dir.0.join("r.yml"),
            rule_yaml(
                "0b03522b-f7fa-45ee-9f78-b18b5d020c42",
                "linux",
                "file_rename",
                "SourceFilename|startswith: '/tmp/'\n        TargetFilename|startswith: '/usr/bin/'",
            ),
        )
        .unwrap();
        let (rules, skipped) = SigmaRules::load(Some(&dir.0)).unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(rules.len(), 7);
        let e = file("file_rename", "/usr/bin/mv", "/tmp/x", "/usr/bin/ls");
        assert_eq!(
            ids(&rules, &e),
            vec!["0b03522b-f7fa-45ee-9f78-b18b5d020c42"]
        );
        let e = file("file_rename", "/usr/bin/mv", "/usr/bin/ls", "/tmp/x");
        assert!(ids(&rules, &e).is_empty());
    }

    #[test]
    fn network_connection() {
        let rules = shipped();
        let e = connect("net_connect", "/usr/bin/bash", 40000, 4444);
        assert_eq!(ids(&rules, &e), vec![SHELL_PORT]);
        let e = connect("net_connect", "/usr/bin/bash", 40000, 443);
        assert!(ids(&rules, &e).is_empty());
        let e = connect("net_connect", "/usr/bin/curl", 40000, 4444);
        assert!(ids(&rules, &e).is_empty());
        // A shell accepting on 4444 did not initiate anything.
        let e = connect("net_accept", "/usr/bin/bash", 4444, 40000);
        assert!(ids(&rules, &e).is_empty());
    }

    #[test]
    fn inbound_connections_follow_sysmon_direction() {
        let dir = TempDir::new("inbound");
        std::fs::write(
            dir.0.join("r.yml"),
            rule_yaml(
                "ce7a004c-054b-4f3b-8e36-28cb12a34fe3",
                "linux",
                "network_connection",
                "Initiated: 'false'\n        DestinationPort: 22\n        SourceIp|cidr: '203.0.113.0/24'\n        DestinationIp: '10.0.0.2'",
            ),
        )
        .unwrap();
        let (rules, _) = SigmaRules::load(Some(&dir.0)).unwrap();
        let id = "ce7a004c-054b-4f3b-8e36-28cb12a34fe3";
        let e = connect("net_accept", "/usr/sbin/sshd", 22, 51000);
        assert_eq!(ids(&rules, &e), vec![id]);
        let e = connect("net_connect", "/usr/bin/ssh", 51000, 22);
        assert!(ids(&rules, &e).is_empty());
    }

    #[test]
    fn fifo_device_symlink_and_huge_files_are_skipped_not_read() {
        let dir = TempDir::new("special");
        let fifo = dir.0.join("fifo.yml");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        std::os::unix::fs::symlink("/dev/zero", dir.0.join("zero.yml")).unwrap();
        let big = std::fs::File::create(dir.0.join("big.yml")).unwrap();
        big.set_len(MAX_RULE_FILE_BYTES + 1).unwrap();
        let (rules, skipped) = SigmaRules::load(Some(&dir.0)).unwrap();
        assert_eq!(rules.len(), shipped().len(), "{skipped:?}");
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert!(
            skipped.iter().any(|s| s.contains("fifo.yml: a FIFO")),
            "{skipped:?}"
        );
        assert!(
            skipped
                .iter()
                .any(|s| s.contains("zero.yml: a symbolic link")),
            "{skipped:?}"
        );
        assert!(
            skipped
                .iter()
                .any(|s| s.contains("big.yml") && s.contains("limit")),
            "{skipped:?}"
        );
    }

    #[test]
    fn bad_rules_are_skipped_and_good_ones_load() {
        let dir = TempDir::new("skip");
        let good = "0b03522b-f7fa-45ee-9f78-b18b5d020c42";
        std::fs::write(
            dir.0.join("good.yml"),
            rule_yaml(
                good,
                "linux",
                "process_creation",
                "CommandLine|contains: 'zzmarker'",
            ),
        )
        .unwrap();
        std::fs::write(dir.0.join("broken.yml"), "title: [unclosed\ndetection: {\n").unwrap();
        std::fs::write(
            dir.0.join("windows.yml"),
            rule_yaml(
                "ce7a004c-054b-4f3b-8e36-28cb12a34fe3",
                "windows",
                "process_creation",
                "Image|endswith: '\\whoami.exe'",
            ),
        )
        .unwrap();
        std::fs::create_dir(dir.0.join("sub")).unwrap();
        std::fs::write(
            dir.0.join("sub/auditd.yaml"),
            "title: Auditd rule\nid: 5b2f4a43-3d49-4f35-a2c5-6c1c5b0e5a11\nlogsource:\n    product: linux\n    service: auditd\ndetection:\n    selection:\n        type: EXECVE\n    condition: selection\n",
        )
        .unwrap();
        std::fs::write(
            dir.0.join("sub/dup.yml"),
            rule_yaml(
                BASE64,
                "linux",
                "process_creation",
                "CommandLine|contains: 'x'",
            ),
        )
        .unwrap();
        std::fs::write(dir.0.join("notes.txt"), "not a rule").unwrap();

        let (rules, skipped) = SigmaRules::load(Some(&dir.0)).unwrap();
        assert_eq!(rules.len(), 7, "{skipped:?}");
        assert_eq!(skipped.len(), 4, "{skipped:?}");
        let reason = |file: &str| {
            skipped
                .iter()
                .find(|s| s.contains(file))
                .unwrap_or_else(|| panic!("{file} not skipped: {skipped:?}"))
        };
        assert!(reason("broken.yml").len() > "broken.yml: ".len());
        assert!(reason("windows.yml").contains("\"windows\" is not linux"));
        assert!(reason("auditd.yaml").contains("service \"auditd\""));
        assert!(reason("dup.yml").contains("duplicate id"));

        let e = exec("/usr/bin/echo", &["echo", "zzmarker"]);
        assert_eq!(ids(&rules, &e), vec![good]);

        assert!(SigmaRules::load(Some(&dir.0.join("missing"))).is_err());
    }

    #[test]
    fn unusable_documents_are_skipped_one_by_one() {
        let dir = TempDir::new("docs");
        let good = "0b03522b-f7fa-45ee-9f78-b18b5d020c42";
        let docs = [
            rule_yaml(good, "linux", "process_creation", "Image|endswith: '/nmap'"),
            rule_yaml(
                "8d0e7a2c-4a60-4d8e-9e57-3d8c8c1c1a01",
                "linux",
                "process_access",
                "Image|endswith: '/gdb'",
            ),
            rule_yaml(
                "8d0e7a2c-4a60-4d8e-9e57-3d8c8c1c1a02",
                "linux",
                "process_creation",
                "CommandLine|nosuchmodifier: 'x'",
            ),
            rule_yaml(
                "8d0e7a2c-4a60-4d8e-9e57-3d8c8c1c1a03",
                "linux",
                "process_creation",
                "Image|endswith: '/x'",
            )
            .replace("status: test", "status: deprecated"),
            "title: No id\nlogsource:\n    category: process_creation\ndetection:\n    selection:\n        Image: /x\n    condition: selection\n".to_string(),
            format!(
                "title: Many scans\nid: 8d0e7a2c-4a60-4d8e-9e57-3d8c8c1c1a04\ncorrelation:\n    type: event_count\n    rules:\n        - {good}\n    group-by:\n        - User\n    timespan: 1m\n    condition:\n        gte: 10\nlevel: high\n"
            ),
        ];
        std::fs::write(dir.0.join("many.yml"), docs.join("---\n")).unwrap();
        std::fs::write(dir.0.join("empty.yml"), "").unwrap();

        let (rules, skipped) = SigmaRules::load(Some(&dir.0)).unwrap();
        assert_eq!(rules.len(), 7, "{skipped:?}");
        let expect = [
            "empty.yml: ",
            "category \"process_access\" is not supported",
            "nosuchmodifier",
            "status deprecated",
            "\"No id\": no id",
            "\"Many scans\": correlation rules are not supported",
        ];
        assert_eq!(skipped.len(), expect.len(), "{skipped:?}");
        for e in expect {
            assert!(skipped.iter().any(|s| s.contains(e)), "{e}: {skipped:?}");
        }
        let e = exec("/usr/bin/nmap", &["nmap", "10.0.0.0/24"]);
        assert_eq!(ids(&rules, &e), vec![good]);
    }

    #[test]
    fn techniques_from_tags() {
        let tags = [
            "attack.execution",
            "attack.t1059.004",
            "attack.T1027",
            "attack.g0032",
            "attack.t1059.004",
            "attack.t12",
            "car.2013-05-004",
        ]
        .map(String::from);
        assert_eq!(techniques(&tags), vec!["T1059.004", "T1027"]);
    }

    fn rule_yaml(id: &str, product: &str, category: &str, selection: &str) -> String {
        format!(
            "title: Test rule {id}\nid: {id}\nstatus: test\nlogsource:\n    product: {product}\n    category: {category}\ndetection:\n    selection:\n        {selection}\n    condition: selection\nlevel: low\n"
        )
    }

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!("sensor-sigma-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
