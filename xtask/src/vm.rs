//! The kernel the test suite boots under qemu, for what this machine's own kernel refuses
//! (BPF LSM: trampolines are locked here). A Debian cloud kernel, fetched as a package and
//! unpacked into `target/vm/`; only its `vmlinuz` is kept. Never installed on the host.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::build::workspace_root;
use crate::cmd::{self, command};
use crate::setup::{Apt, which};

/// Debian's 6.12 cloud kernels: BTF, BPF LSM built in (active with `lsm=...,bpf`), serial
/// console and initramfs without modules.
const KERNEL_PREFIX: &str = "linux-image-6.12.";
const KERNEL_SUFFIX: &str = "-cloud-amd64-unsigned";

/// The path of a bootable kernel, fetching it and qemu first if missing.
pub fn ensure_vm() -> Result<PathBuf> {
    let mut apt = Apt::default();
    if which("qemu-system-x86_64").is_none() {
        println!("setup: qemu-system-x86_64 missing; installing qemu-system-x86 with apt-get ...");
        apt.install("qemu-system-x86")?;
    } else {
        println!("setup: qemu-system-x86_64 present");
    }
    let dir = workspace_root().join("target/vm");
    if let Some(kernel) = find_kernel(&dir) {
        println!("setup: test kernel present ({})", kernel.display());
        return Ok(kernel);
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let package = newest_kernel_package()?;
    println!("setup: fetching {package} for the qemu tests ...");
    let work = dir.join("unpack");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    apt.download(&package, &work)?;
    let deb = fs::read_dir(&work)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| format!("apt-get download {package} left no .deb"))?;
    let root = work.join("root");
    cmd::run(command("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    let vmlinuz = find_kernel(&root.join("boot"))
        .with_context(|| format!("{package} holds no boot/vmlinuz-*"))?;
    let kept = dir.join(vmlinuz.file_name().expect("a file name"));
    fs::copy(&vmlinuz, &kept)?;
    fs::remove_dir_all(&work)?;
    println!("setup: test kernel at {}", kept.display());
    Ok(kept)
}

fn find_kernel(dir: &Path) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
}

/// The newest 6.12 cloud kernel the archive offers: old builds leave the archive.
fn newest_kernel_package() -> Result<String> {
    let list = cmd::output(command("apt-cache").args(["pkgnames", KERNEL_PREFIX]))?;
    let mut names: Vec<&str> = list
        .lines()
        .filter(|n| n.ends_with(KERNEL_SUFFIX))
        .collect();
    names.sort_by_key(|n| patch_level(n));
    match names.last() {
        Some(n) => Ok(n.to_string()),
        None => bail!("apt-cache knows no {KERNEL_PREFIX}*{KERNEL_SUFFIX} package"),
    }
}

/// `linux-image-6.12.113+deb12-cloud-amd64-unsigned` -> 113.
fn patch_level(name: &str) -> u32 {
    name.strip_prefix(KERNEL_PREFIX)
        .map(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::patch_level;

    #[test]
    fn kernel_patch_level() {
        assert_eq!(
            patch_level("linux-image-6.12.113+deb12-cloud-amd64-unsigned"),
            113
        );
        assert_eq!(
            patch_level("linux-image-6.12.9+deb12-cloud-amd64-unsigned"),
            9
        );
    }
}
