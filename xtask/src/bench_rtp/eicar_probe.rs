//! Whether a scanner blocks yet: it is ready when `cat` of a fresh EICAR file is
//! refused.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use sensor_testkit::EICAR;

use super::guards::check_interrupted;
use super::{POLL, READY_TIMEOUT};
use crate::cmd::describe;

/// How `cat` of a file fared.
enum CatOutcome {
    Denied,
    Other(String),
}

fn cat(path: &Path) -> Result<CatOutcome> {
    let mut cat = Command::new("cat");
    cat.arg(path)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let out = cat
        .output()
        .with_context(|| format!("could not start `{}`", describe(&cat)))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    Ok(if out.status.success() {
        CatOutcome::Other("`cat` read it".into())
    } else if stderr.contains("Operation not permitted") {
        CatOutcome::Denied
    } else {
        CatOutcome::Other(format!("`cat` failed ({}): {}", out.status, stderr.trim()))
    })
}

/// Waits until `cat` of a freshly written EICAR file in `dir` fails with
/// EPERM: the scanner is then watching, has its database and answers. Each
/// attempt uses a new file, so an early "clean" verdict cached for one inode
/// cannot hide a scanner that has since become ready.
pub(super) fn wait_blocks_eicar(
    who: &str,
    dir: &Path,
    mut alive: impl FnMut() -> Result<()>,
) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    for attempt in 1.. {
        check_interrupted()?;
        alive()?;
        let path = dir.join(format!("eicar-{attempt}.com"));
        fs::write(&path, EICAR).with_context(|| format!("cannot write {}", path.display()))?;
        let outcome = cat(&path);
        // A scanner that quarantines may have moved it already.
        let _ = fs::remove_file(&path);
        let last = match outcome? {
            CatOutcome::Denied => return Ok(()),
            CatOutcome::Other(what) => what,
        };
        if Instant::now() >= deadline {
            bail!(
                "{who} did not block the EICAR test file in {} within {}s (last attempt: {last})",
                dir.display(),
                READY_TIMEOUT.as_secs()
            );
        }
        sleep(POLL);
    }
    unreachable!("the loop returns or bails")
}
