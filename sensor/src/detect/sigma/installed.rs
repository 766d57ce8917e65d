//! The Sigma rules a running daemon evaluates, and how they change without a restart.
//!
//! Three sources, in this order (the first of a duplicated id wins): the rules shipped in
//! the binary, the set installed with `sensor rules update --from DIR`, and an operator's
//! `--sigma-rules DIR`. An update is validated before anything changes: the new set is
//! read once, compiled with the other two and the configured filter, and refused when
//! none of its rules loads, so a wrong directory or a broken download keeps the rules
//! that run. What was validated is what is written (from memory, never read again from
//! the source) into a new directory under `STATE/sigma/`, made current by renaming a
//! symlink, and only then handed to the pipeline thread, which picks it up between two
//! batches of events.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use anyhow::{Context, Result, bail};

use super::{
    SigmaFilter, SigmaRules,
    loader::{Origin, RuleFile, read_rule_dir, shipped_files},
};
use crate::proto;

/// The pipeline's side: rules compiled by an update, waiting to be picked up.
#[derive(Default)]
pub struct Handoff {
    pending: AtomicBool,
    rules: Mutex<Option<SigmaRules>>,
}

impl Handoff {
    /// New rules since the last call, if any: one atomic load when there are none.
    pub fn take(&self) -> Option<SigmaRules> {
        if !self.pending.swap(false, Ordering::AcqRel) {
            return None;
        }
        self.rules.lock().unwrap().take()
    }

    fn offer(&self, rules: SigmaRules) {
        *self.rules.lock().unwrap() = Some(rules);
        self.pending.store(true, Ordering::Release);
    }
}

/// What the API tells of the rules running.
struct Running {
    info: proto::RulesInfo,
    rules: Vec<proto::RuleInfo>,
}

pub struct SigmaSource {
    /// `STATE/sigma`: `current` -> `v-VERSION/`.
    root: PathBuf,
    directory: Option<PathBuf>,
    filter: SigmaFilter,
    /// Detection ids switched off (upper case), to mark them in listings.
    disabled: Vec<String>,
    handoff: Arc<Handoff>,
    running: Mutex<Running>,
    /// One update at a time.
    updating: Mutex<()>,
}

impl SigmaSource {
    /// The rules to start with. An installed set that cannot be read is left out with
    /// the reason among the skipped rules; an unreadable `--sigma-rules` directory is an
    /// error, as the operator named it.
    pub fn open(
        state_dir: &Path,
        directory: Option<&Path>,
        filter: &SigmaFilter,
        disabled: &[String],
    ) -> Result<(Self, SigmaRules)> {
        let root = state_dir.join("sigma");
        let mut skipped = Vec::new();
        let (installed, version) = match current_set(&root) {
            Ok(Some((dir, version))) => match read_installed(&dir) {
                Ok((files, mut left_out)) => {
                    skipped.append(&mut left_out);
                    (files, version)
                }
                Err(e) => {
                    skipped.push(format!("installed rule set: {e:#}"));
                    (Vec::new(), String::new())
                }
            },
            Ok(None) => (Vec::new(), String::new()),
            Err(e) => {
                skipped.push(format!("installed rule set: {e:#}"));
                (Vec::new(), String::new())
            }
        };
        let extra = read_directory(directory)?;
        skipped.extend(extra.1.iter().cloned());
        let source = Self {
            root,
            directory: directory.map(Path::to_path_buf),
            filter: filter.clone(),
            disabled: disabled.to_vec(),
            handoff: Arc::default(),
            running: Mutex::new(Running {
                info: proto::RulesInfo::default(),
                rules: Vec::new(),
            }),
            updating: Mutex::new(()),
        };
        let (rules, info) = source.compile(&installed, &extra.0, skipped, version);
        *source.running.lock().unwrap() = source.describe(&rules, info);
        Ok((source, rules))
    }

    pub fn handoff(&self) -> Arc<Handoff> {
        self.handoff.clone()
    }

    pub fn info(&self) -> proto::RulesInfo {
        self.running.lock().unwrap().info.clone()
    }

    /// Every rule, built-in first, without the rule texts.
    pub fn list(&self) -> Vec<proto::RuleInfo> {
        let running = self.running.lock().unwrap();
        running
            .rules
            .iter()
            .map(|r| proto::RuleInfo {
                text: String::new(),
                ..r.clone()
            })
            .collect()
    }

    /// One rule by id, whatever its case, with its file's text for a Sigma rule.
    pub fn get(&self, id: &str) -> Option<proto::RuleInfo> {
        let id = id.trim();
        self.running
            .lock()
            .unwrap()
            .rules
            .iter()
            .find(|r| r.id.eq_ignore_ascii_case(id))
            .cloned()
    }

    /// Validates the rules in `from`, installs them and hands them to the pipeline.
    pub fn update(&self, from: &Path) -> Result<proto::RulesInfo> {
        let _one = self.updating.lock().unwrap();
        let (files, mut skipped) = read_rule_dir(from, Origin::Installed, installed_name)
            .with_context(|| format!("rules in {} refused", from.display()))?;
        let version = version_of(&files);
        let extra = read_directory(self.directory.as_deref())?;
        skipped.extend(extra.1.iter().cloned());
        let (rules, info) = self.compile(&files, &extra.0, skipped, version.clone());
        if info.installed == 0 {
            let first = info
                .skipped
                .first()
                .map_or(String::new(), |s| format!(" ({s})"));
            bail!(
                "rules in {} refused: no usable Sigma rule{first}; the current set stays",
                from.display()
            );
        }
        self.install(&files, &version)
            .with_context(|| format!("installing the rules from {}", from.display()))?;
        log::info!(
            "sigma rules {version} installed: {} of the set loaded, {} in all, {} filtered out, {} skipped",
            info.installed,
            info.sigma_rules,
            info.filtered,
            info.skipped.len()
        );
        *self.running.lock().unwrap() = self.describe(&rules, info.clone());
        self.handoff.offer(rules);
        Ok(info)
    }

    fn compile(
        &self,
        installed: &[RuleFile],
        directory: &[RuleFile],
        mut skipped: Vec<String>,
        version: String,
    ) -> (SigmaRules, proto::RulesInfo) {
        let mut files = shipped_files();
        files.extend(installed.iter().cloned());
        files.extend(directory.iter().cloned());
        let (rules, mut not_used) = SigmaRules::compile(&files, &self.filter);
        skipped.append(&mut not_used);
        for s in &skipped {
            log::warn!("sigma rule skipped: {s}");
        }
        let from_set = rules
            .catalog()
            .filter(|(c, _)| c.origin == Origin::Installed)
            .count();
        let info = proto::RulesInfo {
            version,
            installed: from_set as u32,
            sigma_rules: rules.len() as u32,
            filtered: rules.filtered() as u32,
            skipped,
        };
        (rules, info)
    }

    fn describe(&self, rules: &SigmaRules, info: proto::RulesInfo) -> Running {
        let disabled = |id: &str| self.disabled.iter().any(|d| d.eq_ignore_ascii_case(id));
        let builtin = crate::detect::all_rules()
            .into_iter()
            .map(|r| proto::RuleInfo {
                id: r.id.into(),
                title: r.title.into(),
                severity: r.severity.into(),
                mitre: r.mitre.iter().map(|m| m.to_string()).collect(),
                source: "builtin".into(),
                disabled: disabled(r.id),
                description: r.description.into(),
                ..Default::default()
            });
        let sigma = rules.catalog().map(|(c, m)| proto::RuleInfo {
            id: m.id.clone(),
            title: m.title.clone(),
            severity: m.level.clone(),
            mitre: m.mitre.clone(),
            source: c.origin.name().into(),
            status: c.status.clone(),
            logsource: c.logsource.clone(),
            file: c.file.clone(),
            disabled: disabled(&m.id),
            description: m.description.clone(),
            text: c.text.to_string(),
        });
        Running {
            info,
            rules: builtin.chain(sigma).collect(),
        }
    }

    /// Writes the set to `v-VERSION/` (through a staging directory) and points `current`
    /// at it; older sets are removed.
    fn install(&self, files: &[RuleFile], version: &str) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)?;
        let name = format!("v-{version}");
        let staging = self.root.join(format!(".staging-{}", std::process::id()));
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir(&staging)?;
        for f in files {
            let rel = Path::new(f.name.strip_prefix("installed/").unwrap_or(&f.name));
            // Names are paths below the source directory; anything else is not written.
            if !rel
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
            {
                bail!("{} is not a path below the rule directory", rel.display());
            }
            let to = staging.join(rel);
            if let Some(dir) = to.parent() {
                fs::create_dir_all(dir)?;
            }
            fs::write(&to, f.text.as_bytes())?;
            fs::File::open(&to)?.sync_all()?;
        }
        let final_dir = self.root.join(&name);
        let _ = fs::remove_dir_all(&final_dir);
        fs::rename(&staging, &final_dir)?;
        let link = self.root.join("current.new");
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&name, &link)?;
        fs::rename(&link, self.root.join("current"))?;
        fs::File::open(&self.root)?.sync_all()?;
        for old in fs::read_dir(&self.root)?.flatten() {
            let n = old.file_name();
            let n = n.to_string_lossy();
            if n.starts_with("v-") && n != name {
                let _ = fs::remove_dir_all(old.path());
            }
        }
        Ok(())
    }
}

/// The installed set's directory and version, if one is installed.
fn current_set(root: &Path) -> Result<Option<(PathBuf, String)>> {
    let link = root.join("current");
    let target = match fs::read_link(&link) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", link.display())),
    };
    // Only a name inside the root, as written by `install`.
    let name = target.to_string_lossy().into_owned();
    let Some(version) = name.strip_prefix("v-").filter(|v| !v.contains('/')) else {
        bail!("{} points outside the rule store", link.display());
    };
    Ok(Some((root.join(&name), version.to_string())))
}

fn read_installed(dir: &Path) -> Result<(Vec<RuleFile>, Vec<String>)> {
    read_rule_dir(dir, Origin::Installed, installed_name)
}

fn read_directory(dir: Option<&Path>) -> Result<(Vec<RuleFile>, Vec<String>)> {
    match dir {
        Some(d) => read_rule_dir(d, Origin::Directory, |p| d.join(p).display().to_string()),
        None => Ok((Vec::new(), Vec::new())),
    }
}

fn installed_name(rel: &Path) -> String {
    format!("installed/{}", rel.display())
}

/// The set's content hash: the same files give the same version wherever they came from.
fn version_of(files: &[RuleFile]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::default();
    for f in files {
        h.update(f.name.as_bytes());
        h.update([0]);
        h.update(f.text.as_bytes());
        h.update([0]);
    }
    h.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
