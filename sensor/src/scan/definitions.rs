//! Definitions: the signature set the scanner matches, and the versioned store it lives in.
//!
//! A definitions directory holds ClamAV hash databases (`*.hdb`, `*.hdu`, `*.hsb`, `*.hsu`),
//! YARA rules (`*.yar`, `*.yara`) and optionally a `VERSION` file; without one, the version
//! is derived from the content. The EICAR test file is always detected, with or without
//! definitions.
//!
//! The store (`STATE/definitions`) keeps each accepted set in its own directory and points
//! `current` at the one in use. An update is compiled and checked in full before anything
//! on disk changes, then copied, then made current with one `rename` of the symlink: a bad
//! set is refused whole, and a crash at any point leaves either the old set or the new one.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};

use super::clamav::HashDb;

pub const BUILTIN_VERSION: &str = "builtin";

pub struct Definitions {
    pub version: String,
    pub hashes: HashDb,
    pub yara: Option<yara_x::Rules>,
    pub yara_rules: usize,
}

impl Definitions {
    /// Only what is compiled in: the EICAR test file.
    pub fn builtin() -> Self {
        Self {
            version: BUILTIN_VERSION.into(),
            hashes: HashDb::default(),
            yara: None,
            yara_rules: 0,
        }
    }

    /// Reads and compiles every definitions file of `dir`. Any file that does not parse or
    /// compile refuses the whole set, naming the file and the line.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let mut hashes = HashDb::default();
        let mut compiler = yara_x::Compiler::new();
        let mut yara_files = 0;
        let mut version = None;
        let mut digest = sha2::Sha256::default();
        for path in definition_files(dir)? {
            let name = file_name(&path);
            let text =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            {
                use sha2::Digest;
                digest.update(name.as_bytes());
                digest.update([0]);
                digest.update(text.as_bytes());
                digest.update([0]);
            }
            match extension(&path).as_str() {
                "hdb" | "hdu" => {
                    hashes.load(&name, &text, false)?;
                }
                "hsb" | "hsu" => {
                    hashes.load(&name, &text, true)?;
                }
                "yar" | "yara" => {
                    compiler
                        .new_namespace(&name)
                        .add_source(yara_x::SourceCode::from(text.as_str()).with_origin(&name))
                        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
                    yara_files += 1;
                }
                _ if name == "VERSION" => version = Some(parse_version(&text)?),
                _ => {}
            }
        }
        let yara = (yara_files > 0).then(|| compiler.build());
        let yara_rules = yara.as_ref().map_or(0, |r| r.iter().len());
        let version = version.unwrap_or_else(|| {
            use sha2::Digest;
            let d = digest.finalize();
            d[..6].iter().map(|b| format!("{b:02x}")).collect()
        });
        Ok(Self {
            version,
            hashes,
            yara,
            yara_rules,
        })
    }
}

impl Definitions {
    /// Whether a file of `size` bytes could match anything in this set.
    pub fn could_match(&self, size: u64) -> bool {
        size <= super::eicar::MAX_LEN as u64 || self.yara.is_some() || self.hashes.wants(size)
    }
}

/// The files of a definitions directory that the loader reads, sorted by name so the
/// derived version does not depend on directory order.
fn definition_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for ent in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = ent?.path();
        let wanted = matches!(
            extension(&path).as_str(),
            "hdb" | "hdu" | "hsb" | "hsu" | "yar" | "yara"
        ) || file_name(&path) == "VERSION";
        if wanted && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn extension(p: &Path) -> String {
    p.extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn parse_version(text: &str) -> Result<String> {
    let v = text.trim();
    if v.is_empty()
        || v.len() > 64
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        bail!("VERSION: {v:?} is not a version (1-64 of A-Z a-z 0-9 . _ -)");
    }
    if v == BUILTIN_VERSION {
        bail!("VERSION: {BUILTIN_VERSION:?} is reserved");
    }
    Ok(v.to_string())
}

/// The on-disk store of accepted definition sets.
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            root: state_dir.join("definitions"),
        }
    }

    /// The set in use, if one was ever installed.
    pub fn load_current(&self) -> Result<Option<Definitions>> {
        let current = self.root.join("current");
        if fs::symlink_metadata(&current).is_err() {
            return Ok(None);
        }
        Definitions::load_dir(&current).map(Some)
    }

    /// Validates `from` in full, installs a copy and makes it current. Returns the new set.
    pub fn install(&self, from: &Path) -> Result<Definitions> {
        let defs = Definitions::load_dir(from)
            .with_context(|| format!("definitions in {} refused", from.display()))?;
        fs::create_dir_all(&self.root)?;
        let final_dir = self.root.join(format!("v-{}", defs.version));
        let staging = self
            .root
            .join(format!(".staging-{}-{}", std::process::id(), defs.version));
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir_all(&staging)?;
        for src in definition_files(from)? {
            let dst = staging.join(file_name(&src));
            fs::copy(&src, &dst).with_context(|| format!("copying {}", src.display()))?;
            fs::File::open(&dst)?.sync_all()?;
        }
        // What was copied must be what was validated: a writer changing the source in
        // between would otherwise get an unchecked set installed.
        let copied = Definitions::load_dir(&staging)?;
        if copied.version != defs.version {
            let _ = fs::remove_dir_all(&staging);
            bail!("definitions in {} changed while installing", from.display());
        }
        let _ = fs::remove_dir_all(&final_dir);
        fs::rename(&staging, &final_dir)?;
        let link = self.root.join("current.new");
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(final_dir.file_name().unwrap(), &link)?;
        fs::rename(&link, self.root.join("current"))?;
        fs::File::open(&self.root)?.sync_all()?;
        self.prune(&final_dir);
        Ok(copied)
    }

    /// Keeps the current set and nothing older: old sets are never read again.
    fn prune(&self, keep: &Path) {
        let Ok(dir) = fs::read_dir(&self.root) else {
            return;
        };
        for ent in dir.flatten() {
            let p = ent.path();
            let name = file_name(&p);
            if p != keep && name.starts_with("v-") {
                let _ = fs::remove_dir_all(&p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sensor-defs-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn install_swaps_and_a_bad_set_leaves_the_old_one() {
        let state = dir("state");
        let good = dir("good");
        fs::write(good.join("VERSION"), "2026.11.1\n").unwrap();
        fs::write(
            good.join("main.hdb"),
            "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Md5\n",
        )
        .unwrap();
        fs::write(
            good.join("rules.yar"),
            "rule marker { strings: $a = \"sensor-yara-marker\" condition: $a }\n",
        )
        .unwrap();
        let store = Store::new(&state);
        assert!(store.load_current().unwrap().is_none());
        let d = store.install(&good).unwrap();
        assert_eq!(d.version, "2026.11.1");
        assert_eq!((d.hashes.len(), d.yara_rules), (1, 1));

        let bad = dir("bad");
        fs::write(bad.join("VERSION"), "2026.11.2").unwrap();
        fs::write(bad.join("broken.yar"), "rule x { condition: nope }").unwrap();
        let err = format!("{:#}", store.install(&bad).err().unwrap());
        assert!(err.contains("broken.yar"), "{err}");
        let cur = store.load_current().unwrap().unwrap();
        assert_eq!(cur.version, "2026.11.1");

        fs::remove_dir_all(&state).unwrap();
        fs::remove_dir_all(&good).unwrap();
        fs::remove_dir_all(&bad).unwrap();
    }

    #[test]
    fn version_is_derived_from_content_without_a_version_file() {
        let a = dir("derived");
        fs::write(a.join("x.hsb"), format!("{}:*:Any-Size\n", "ab".repeat(32))).unwrap();
        let v1 = Definitions::load_dir(&a).unwrap().version;
        assert_eq!(v1, Definitions::load_dir(&a).unwrap().version);
        fs::write(a.join("x.hsb"), format!("{}:*:Other\n", "ab".repeat(32))).unwrap();
        assert_ne!(v1, Definitions::load_dir(&a).unwrap().version);
        fs::write(a.join("VERSION"), "../etc").unwrap();
        assert!(Definitions::load_dir(&a).is_err());
        fs::remove_dir_all(&a).unwrap();
    }
}
