//! Reading Sigma rule files: the rules shipped in the binary and an operator's rule
//! directory, each document vetted for what this sensor can evaluate. A rule it cannot use
//! is skipped with a reason, never fatal.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context, Result};
use rsigma_eval::{CompiledRule, CorrelationConfig, CorrelationEngine, Engine, compile_rule};
use rsigma_parser::{
    CorrelationRule, FilterRule, FilterRuleTarget, Level, SigmaRule, Status, parse_sigma_yaml,
};

use super::{
    Catalogued, MAX_RULE_FILE_BYTES, SigmaFilter, SigmaMatch, SigmaRules, schema::Category,
};

macro_rules! shipped {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!("../../../../rules/sigma/", $name)),
        )
    };
}

/// Rules shipped with the sensor (`rules/sigma/`), compiled into the binary so that they
/// are there whatever the installation. A test checks that this list and the directory
/// agree.
pub(super) const SHIPPED: &[(&str, &str)] = &[
    shipped!("file_delete_lnx_log_deletion.yml"),
    shipped!("file_event_lnx_cron_persistence.yml"),
    shipped!("net_connection_lnx_shell_suspicious_port.yml"),
    shipped!("proc_creation_lnx_base64_decode_shell.yml"),
    shipped!("proc_creation_lnx_chattr_immutable.yml"),
    shipped!("proc_creation_lnx_webserver_recon.yml"),
];

/// Where a rule file came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// In the binary (`rules/sigma/`).
    Shipped,
    /// The set installed with `sensor rules update`.
    Installed,
    /// `--sigma-rules DIR`.
    Directory,
}

impl Origin {
    pub fn name(self) -> &'static str {
        match self {
            Self::Shipped => "shipped",
            Self::Installed => "installed",
            Self::Directory => "directory",
        }
    }
}

/// One rule file as read: its name as reported (`shipped/x.yml`, a path below the
/// installed set, or a full path) and its text.
#[derive(Clone, Debug)]
pub struct RuleFile {
    pub origin: Origin,
    pub name: String,
    pub text: Arc<str>,
}

/// The rules in the binary.
pub fn shipped_files() -> Vec<RuleFile> {
    SHIPPED
        .iter()
        .map(|(name, text)| RuleFile {
            origin: Origin::Shipped,
            name: format!("shipped/{name}"),
            text: Arc::from(*text),
        })
        .collect()
}

/// Every *.yml/*.yaml below `dir` (subdirectories included, as in a checkout of SigmaHQ's
/// `rules/linux`), sorted by path, each named by `name` (given its path below `dir`).
/// A file that is not a regular file (symlink, FIFO, device) or is over
/// [`MAX_RULE_FILE_BYTES`] is left out with the reason in the second value. Only an
/// unreadable `dir` is an error.
pub fn read_rule_dir(
    dir: &Path,
    origin: Origin,
    name: impl Fn(&Path) -> String,
) -> Result<(Vec<RuleFile>, Vec<String>)> {
    let mut paths = Vec::new();
    let mut skipped = Vec::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading Sigma rule directory {}", dir.display()))?;
    collect_rule_files(entries, &mut paths, &mut skipped);
    paths.sort();
    let mut files = Vec::new();
    for path in paths {
        // Regular files only, bounded: a FIFO would hang start-up, a symlink to /dev/zero
        // would eat memory.
        match crate::safe_fs::read_text_bounded(&path, MAX_RULE_FILE_BYTES) {
            Ok(text) => files.push(RuleFile {
                origin,
                name: name(path.strip_prefix(dir).unwrap_or(&path)),
                text: text.into(),
            }),
            Err(e) => skipped.push(format!("{e:#}")),
        }
    }
    Ok((files, skipped))
}

impl SigmaRules {
    /// Shipped rules plus every rule file below `dirs` (see [`read_rule_dir`]).
    pub fn load(dirs: &[&Path], filter: &SigmaFilter) -> Result<(Self, Vec<String>)> {
        let mut files = shipped_files();
        let mut skipped = Vec::new();
        for dir in dirs {
            let (more, left_out) = read_rule_dir(dir, Origin::Directory, |p| {
                dir.join(p).display().to_string()
            })?;
            files.extend(more);
            skipped.extend(left_out);
        }
        let (rules, mut not_used) = Self::compile(&files, filter);
        skipped.append(&mut not_used);
        Ok((rules, skipped))
    }

    /// The rules of `files`, in order (the first of a duplicated id wins).
    ///
    /// A rule the sensor cannot use (parse or compile error, non-linux product, log source
    /// service, unsupported category, deprecated or unsupported status, missing or
    /// duplicate id, correlation or filter document) is skipped: the second value lists
    /// them as "file: reason". A usable rule that `filter` leaves out (its level or
    /// status) is not a problem and is not listed; [`SigmaRules::filtered`] counts them.
    pub fn compile(files: &[RuleFile], filter: &SigmaFilter) -> (Self, Vec<String>) {
        let mut loader = Loader {
            filter: filter.clone(),
            ..Loader::default()
        };
        for f in files {
            loader.add_file(f);
        }
        loader.finish()
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

/// Why a rule is not loaded.
enum NotLoaded {
    /// The sensor cannot use it: reported.
    Skipped(String),
    /// The operator's filter leaves it out: counted.
    Filtered,
}

impl From<String> for NotLoaded {
    fn from(reason: String) -> Self {
        Self::Skipped(reason)
    }
}

impl From<&str> for NotLoaded {
    fn from(reason: &str) -> Self {
        Self::Skipped(reason.into())
    }
}

#[derive(Default)]
struct Loader {
    filter: SigmaFilter,
    filtered: usize,
    compiled: [Vec<CompiledRule>; Category::ALL.len()],
    rules: HashMap<String, SigmaMatch>,
    catalog: Vec<Catalogued>,
    /// Where each id was first loaded from, to name it when a duplicate is skipped.
    origin: HashMap<String, String>,
    skipped: Vec<String>,
    /// Filter and correlation documents, applied once every rule is in: a document may
    /// come before the rules it names.
    filters: Vec<(String, FilterRule)>,
    correlations: Vec<(RuleFile, CorrelationRule)>,
    /// Loaded rules by id, name and title (how documents name them), with their category.
    named: HashMap<String, (String, Category)>,
    /// The loaded rules as parsed, for the correlations that name them.
    parsed: HashMap<String, SigmaRule>,
}

impl Loader {
    fn add_file(&mut self, f: &RuleFile) {
        let file = f.name.as_str();
        let collection = match parse_sigma_yaml(&f.text) {
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
        self.correlations.extend(
            collection
                .correlations
                .iter()
                .map(|c| (f.clone(), c.clone())),
        );
        self.filters.extend(
            collection
                .filters
                .iter()
                .map(|d| (file.to_string(), d.clone())),
        );
        for rule in &collection.rules {
            let added = self.add_rule(file, rule);
            self.tally(f, &rule.title, rule.status, added);
        }
    }

    /// Counts what came of adding a rule or correlation of `f`: catalogued when it
    /// loaded (`Ok((id, log source))`), filtered or skipped with the reason. True when
    /// it loaded.
    fn tally(
        &mut self,
        f: &RuleFile,
        title: &str,
        status: Option<Status>,
        added: Result<(String, &'static str), NotLoaded>,
    ) -> bool {
        match added {
            Ok((id, logsource)) => {
                self.catalog.push(Catalogued {
                    id,
                    status: status.map(status_name).unwrap_or_default().into(),
                    logsource: logsource.into(),
                    origin: f.origin,
                    file: f.name.clone(),
                    text: f.text.clone(),
                });
                return true;
            }
            Err(NotLoaded::Filtered) => self.filtered += 1,
            Err(NotLoaded::Skipped(reason)) => self
                .skipped
                .push(format!("{}: {title:?}: {reason}", f.name)),
        }
        false
    }

    /// A document's id, if it has one not loaded before.
    fn new_id<'r>(&self, id: &'r Option<String>) -> Result<&'r str, NotLoaded> {
        let Some(id) = id.as_deref().filter(|id| !id.is_empty()) else {
            return Err("no id".into());
        };
        if let Some(first) = self.origin.get(id) {
            return Err(format!("duplicate id {id} (first loaded from {first})").into());
        }
        Ok(id)
    }

    /// Records `id` as loaded from `file`, with what its matches report.
    fn loaded(
        &mut self,
        id: &str,
        file: &str,
        title: &str,
        description: &Option<String>,
        level: Option<Level>,
        tags: &[String],
    ) {
        self.origin.insert(id.to_string(), file.to_string());
        self.rules.insert(
            id.to_string(),
            SigmaMatch {
                id: id.to_string(),
                title: title.to_string(),
                description: description.clone().unwrap_or_default(),
                level: level.map_or("medium", |l| l.as_str()).to_string(),
                mitre: techniques(tags),
            },
        );
    }

    /// The rule's id and log source, once loaded.
    fn add_rule(
        &mut self,
        file: &str,
        rule: &SigmaRule,
    ) -> Result<(String, &'static str), NotLoaded> {
        let id = self.new_id(&rule.id)?;
        match rule.status {
            Some(Status::Deprecated) => return Err("status deprecated".into()),
            Some(Status::Unsupported) => return Err("status unsupported".into()),
            _ => {}
        }
        let ls = &rule.logsource;
        if let Some(product) = &ls.product
            && !product.eq_ignore_ascii_case("linux")
        {
            return Err(format!("product {product:?} is not linux").into());
        }
        let category = match (&ls.service, &ls.category) {
            (Some(service), _) if service.eq_ignore_ascii_case("auditd") => Category::Auditd,
            (Some(service), _) => {
                return Err(format!("log source service {service:?} is not supported").into());
            }
            (None, None) => return Err("no log source category".into()),
            (None, Some(category)) => Category::ALL
                .into_iter()
                .filter(|c| *c != Category::Auditd)
                .find(|c| c.name().eq_ignore_ascii_case(category))
                .ok_or_else(|| format!("category {category:?} is not supported"))?,
        };
        let compiled = compile_rule(rule).map_err(|e| e.to_string())?;
        // Filtered last: a rule the sensor could not use anyway is reported as such.
        if !self.filter.admits(rule.level, rule.status) {
            return Err(NotLoaded::Filtered);
        }
        self.compiled[category as usize].push(compiled);
        for handle in [Some(id), rule.name.as_deref(), Some(rule.title.as_str())]
            .into_iter()
            .flatten()
        {
            self.named
                .entry(handle.to_string())
                .or_insert_with(|| (id.to_string(), category));
        }
        self.parsed.insert(id.to_string(), rule.clone());
        self.loaded(
            id,
            file,
            &rule.title,
            &rule.description,
            rule.level,
            &rule.tags,
        );
        Ok((id.to_string(), category.name()))
    }

    fn finish(mut self) -> (SigmaRules, Vec<String>) {
        let mut engines = std::mem::take(&mut self.compiled).map(|rules| {
            let mut engine = Engine::new();
            // One index build per engine rather than one per rule.
            engine.extend_compiled_rules(rules);
            engine
        });
        for (file, filter) in std::mem::take(&mut self.filters) {
            if let Err(reason) = self.apply_filter(&mut engines, &filter) {
                self.skipped
                    .push(format!("{file}: {:?}: {reason}", filter.title));
            }
        }
        let correlation = self.correlate();
        (
            SigmaRules {
                engines,
                correlation: correlation.map(std::sync::Mutex::new),
                rules: self.rules,
                catalog: self.catalog,
                filtered: self.filtered,
            },
            self.skipped,
        )
    }

    /// A filter document: more conditions on the rules it names (by id or title), or on
    /// every rule of its log source.
    fn apply_filter(&self, engines: &mut [Engine], filter: &FilterRule) -> Result<(), String> {
        let categories: Vec<Category> = match &filter.rules {
            FilterRuleTarget::Any => Category::ALL.to_vec(),
            FilterRuleTarget::Specific(refs) => {
                let mut cats: Vec<Category> = refs
                    .iter()
                    .filter_map(|r| self.named.get(r).map(|(_, c)| *c))
                    .collect();
                cats.sort_by_key(|c| *c as usize);
                cats.dedup();
                if cats.is_empty() {
                    return Err(format!("filter names no loaded rule ({})", refs.join(", ")));
                }
                cats
            }
        };
        for c in categories {
            engines[c as usize]
                .apply_filter(filter)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The correlation documents whose rules are loaded, in one stateful engine that the
    /// per-category engines' matches are fed into.
    fn correlate(&mut self) -> Option<CorrelationEngine> {
        let pending = std::mem::take(&mut self.correlations);
        if pending.is_empty() {
            return None;
        }
        let mut engine = CorrelationEngine::new(CorrelationConfig {
            // Bounded whatever the rules: a group-by on a field with many values (a pid)
            // must not grow without end.
            max_state_entries: MAX_CORRELATION_STATES,
            max_group_entries: Some(MAX_CORRELATION_GROUP_ENTRIES),
            // As the specification has it: the rules a correlation names raise nothing
            // of their own unless it says `generate: true`.
            emit_detections: false,
            ..CorrelationConfig::default()
        });
        // Correlations may name correlations (chaining).
        let chained: Vec<String> = pending
            .iter()
            .flat_map(|(_, c)| [c.id.clone(), c.name.clone()])
            .flatten()
            .collect();
        let mut fed: std::collections::HashSet<String> = Default::default();
        let mut loaded = 0;
        for (f, corr) in pending {
            let added = self.add_correlation(&mut engine, &mut fed, &chained, &corr);
            if self.tally(&f, &corr.title, corr.status, added) {
                loaded += 1;
            }
        }
        (loaded > 0).then_some(engine)
    }

    fn add_correlation(
        &mut self,
        engine: &mut CorrelationEngine,
        fed: &mut std::collections::HashSet<String>,
        chained: &[String],
        corr: &CorrelationRule,
    ) -> Result<(String, &'static str), NotLoaded> {
        let id = self.new_id(&corr.id)?;
        if !self.filter.admits(corr.level, corr.status) {
            return Err(NotLoaded::Filtered);
        }
        for r in &corr.rules {
            if chained.contains(r) {
                continue;
            }
            let Some((rule_id, _)) = self.named.get(r) else {
                return Err(format!(
                    "names rule {r:?}, which is not loaded (missing, unusable or filtered out)"
                )
                .into());
            };
            if fed.insert(rule_id.clone())
                && let Some(rule) = self.parsed.get(rule_id)
            {
                engine.add_rule(rule).map_err(|e| e.to_string())?;
            }
        }
        engine.add_correlation(corr).map_err(|e| e.to_string())?;
        self.loaded(
            id,
            "correlation",
            &corr.title,
            &corr.description,
            corr.level,
            &corr.tags,
        );
        Ok((id.to_string(), "correlation"))
    }
}

/// Correlation window states kept at most (all correlations and groups together).
const MAX_CORRELATION_STATES: usize = 10_000;
/// Entries one group's window keeps at most.
const MAX_CORRELATION_GROUP_ENTRIES: usize = 1_000;

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Stable => "stable",
        Status::Test => "test",
        Status::Experimental => "experimental",
        Status::Deprecated => "deprecated",
        Status::Unsupported => "unsupported",
    }
}

/// ATT&CK technique ids from Sigma tags: `attack.t1059.004` -> `T1059.004`. Tactic,
/// group and software tags are not techniques and are left out.
pub(super) fn techniques(tags: &[String]) -> Vec<String> {
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
