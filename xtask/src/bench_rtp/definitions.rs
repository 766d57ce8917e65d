//! The definitions both scanners get: one ClamAV hash signature for the EICAR test
//! file, and for `scan custom` a YARA rule beside it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use sensor_testkit::EICAR;

use super::SIGNATURE_NAME;
use crate::cmd;

/// The database both scanners get: one ClamAV hash signature for the EICAR
/// test file. Returns the directory holding it.
pub(super) fn write_database(scratch: &Path) -> Result<PathBuf> {
    let dir = scratch.join("db");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let sample = scratch.join("eicar.sample");
    fs::write(&sample, EICAR).with_context(|| format!("cannot write {}", sample.display()))?;
    let out = cmd::output(Command::new("md5sum").arg(&sample))?;
    let _ = fs::remove_file(&sample);
    let md5 = out
        .split_whitespace()
        .next()
        .filter(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .with_context(|| format!("md5sum printed {out:?}"))?;
    let hdb = dir.join("bench.hdb");
    fs::write(&hdb, format!("{md5}:{}:{SIGNATURE_NAME}\n", EICAR.len()))
        .with_context(|| format!("cannot write {}", hdb.display()))?;
    // clamd reads it after dropping to the clamav user.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
    fs::set_permissions(&hdb, fs::Permissions::from_mode(0o644))?;
    Ok(dir)
}

/// The rounds' database plus one YARA rule that matches nothing in the tree:
/// with rules loaded, no file can be ruled out by its size alone.
pub(super) fn write_yara_database(scratch: &Path, db: &Path) -> Result<PathBuf> {
    let dir = scratch.join("db-yara");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for entry in fs::read_dir(db).with_context(|| format!("cannot list {}", db.display()))? {
        let src = entry?.path();
        let dst = dir.join(src.file_name().context("database file without a name")?);
        fs::copy(&src, &dst)
            .with_context(|| format!("cannot copy {} to {}", src.display(), dst.display()))?;
    }
    let rule = dir.join("bench.yar");
    fs::write(
        &rule,
        "rule Bench_Absent_Marker {\n    strings:\n        $m = \"xtask bench rtp: absent marker\"\n    condition:\n        $m\n}\n",
    )
    .with_context(|| format!("cannot write {}", rule.display()))?;
    Ok(dir)
}
