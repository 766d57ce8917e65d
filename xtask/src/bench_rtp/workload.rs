//! The workload: a tree of small files on the tmpfs, and the hidden `read-files`
//! child that opens and reads each of them twice.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::Passes;
use super::guards::check_interrupted;
use super::tree::{Rng, TreeStats};
use crate::cmd::{self, describe};

/// Writes `n` files of 1-4 KB of pseudo-random bytes, so that no two files
/// share content (a scanner could otherwise cache by hash) and none matches a
/// signature.
pub(super) fn populate(dir: &Path, n: u32, seed: u64) -> Result<TreeStats> {
    let mut rng = Rng::new(seed);
    let mut buf = vec![0u8; 4096];
    let mut bytes = 0;
    for i in 0..n {
        if i % 1000 == 0 {
            check_interrupted()?;
        }
        let size = 1024 + rng.below(4096 - 1024 + 1) as usize;
        rng.fill(&mut buf[..size]);
        let path = dir.join(format!("f{i:06}.dat"));
        fs::write(&path, &buf[..size])
            .with_context(|| format!("cannot write {}", path.display()))?;
        bytes += size as u64;
    }
    Ok(TreeStats {
        files: u64::from(n),
        bytes,
    })
}

/// The hidden `read-files` subcommand: opens and reads every file of `dir`
/// twice and prints `PASS1_SECS PASS2_SECS FILES BYTES`, timing only the
/// passes so that starting this process is not part of the figure. Raw
/// syscalls on prepared paths keep this (unoptimised) binary's own work per
/// file negligible next to what is measured.
pub fn read_files(dir: &Path) -> Result<()> {
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        if entry.file_type()?.is_file() {
            paths.push(entry.path());
        }
    }
    paths.sort();
    let c_paths = paths
        .iter()
        .map(|p| CString::new(p.as_os_str().as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .context("a file name contains NUL")?;
    let mut buf = vec![0u8; 64 * 1024];
    let (cold, cold_bytes) = read_pass(&c_paths, &mut buf)?;
    let (cached, cached_bytes) = read_pass(&c_paths, &mut buf)?;
    if cold_bytes != cached_bytes {
        bail!("pass 1 read {cold_bytes} bytes, pass 2 {cached_bytes}");
    }
    println!("{cold} {cached} {} {cold_bytes}", paths.len());
    Ok(())
}

fn read_pass(paths: &[CString], buf: &mut [u8]) -> Result<(f64, u64)> {
    let start = Instant::now();
    let mut total = 0u64;
    for path in paths {
        // SAFETY: path is NUL-terminated and outlives the call.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            let err = io::Error::last_os_error();
            bail!("open {}: {err}", path.to_string_lossy());
        }
        loop {
            // SAFETY: fd is open and buf is valid for buf.len() bytes.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let err = io::Error::last_os_error();
                // SAFETY: fd is open and ours.
                unsafe { libc::close(fd) };
                bail!("read {}: {err}", path.to_string_lossy());
            }
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        // SAFETY: fd is open and ours; closing it is part of the workload.
        unsafe { libc::close(fd) };
    }
    Ok((start.elapsed().as_secs_f64(), total))
}

/// Runs the workload in a child xtask process and checks it read everything.
pub(super) fn run_workload(dir: &Path, expect: &TreeStats) -> Result<Passes> {
    check_interrupted()?;
    let exe = std::env::current_exe().context("cannot locate the xtask binary")?;
    let mut child = Command::new(exe);
    child.arg("read-files").arg(dir);
    let out = cmd::output(&mut child)?;
    let fields: Vec<&str> = out.split_whitespace().collect();
    let parsed = match fields[..] {
        [cold, cached, files, bytes] => cold
            .parse()
            .ok()
            .zip(cached.parse().ok())
            .zip(files.parse().ok().zip(bytes.parse().ok())),
        _ => None,
    };
    let Some(((cold, cached), (files, bytes))) = parsed else {
        bail!(
            "`{}` printed {out:?}, not `PASS1_SECS PASS2_SECS FILES BYTES`",
            describe(&child)
        );
    };
    let read = TreeStats { files, bytes };
    if read != *expect {
        bail!("the workload read {read:?}, but the tree holds {expect:?}");
    }
    Ok(Passes { cold, cached })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn populated_files_are_small_and_distinct() {
        let dir = std::env::temp_dir().join(format!("xtask-rtp-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let stats = populate(&dir, 50, 7).unwrap();
        let mut contents = std::collections::HashSet::new();
        for entry in fs::read_dir(&dir).unwrap() {
            let data = fs::read(entry.unwrap().path()).unwrap();
            assert!((1024..=4096).contains(&data.len()));
            assert!(contents.insert(data));
        }
        assert_eq!(stats.files, 50);
        fs::remove_dir_all(&dir).unwrap();
    }
}
