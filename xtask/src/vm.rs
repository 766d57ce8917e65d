//! The kernels the test suite boots under qemu, for what this machine's own kernel refuses
//! (BPF LSM: trampolines are locked here) and for the older kernels fleets run. Debian
//! cloud kernels, fetched as packages and unpacked into `target/vm/`; only each `vmlinuz`
//! is kept. Nothing is installed on the host but qemu.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::build::workspace_root;
use crate::cmd::{self, command};
use crate::setup::{Apt, which};

/// Debian's cloud kernels of 6.1 (Debian 12's own) and 6.12: BTF, BPF LSM built in (active
/// with `lsm=...,bpf`), serial console and initramfs without modules. Each is the package
/// name's start and the `vmlinuz-` name's start.
const SERIES: [(&str, &str); 2] = [
    ("linux-image-6.1.0-", "vmlinuz-6.1.0-"),
    ("linux-image-6.12.", "vmlinuz-6.12."),
];
const KERNEL_SUFFIX: &str = "-cloud-amd64-unsigned";

/// The paths of the kernels to boot, fetching them and qemu first if missing.
pub fn ensure_vm() -> Result<Vec<PathBuf>> {
    let mut apt = Apt::default();
    if which("qemu-system-x86_64").is_none() {
        println!("setup: qemu-system-x86_64 missing; installing qemu-system-x86 with apt-get ...");
        apt.install("qemu-system-x86")?;
    } else {
        println!("setup: qemu-system-x86_64 present");
    }
    let dir = workspace_root().join("target/vm");
    SERIES
        .iter()
        .map(|&(package, image)| ensure_kernel(&mut apt, &dir, package, image))
        .collect()
}

fn ensure_kernel(apt: &mut Apt, dir: &Path, package: &str, image: &str) -> Result<PathBuf> {
    if let Some(kernel) = find_kernel(dir, image) {
        println!("setup: test kernel present ({})", kernel.display());
        return Ok(kernel);
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let package = newest_package(package)?;
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
    let vmlinuz = find_kernel(&root.join("boot"), image)
        .with_context(|| format!("{package} holds no boot/{image}*"))?;
    let kept = dir.join(vmlinuz.file_name().expect("a file name"));
    fs::copy(&vmlinuz, &kept)?;
    fs::remove_dir_all(&work)?;
    println!("setup: test kernel at {}", kept.display());
    Ok(kept)
}

fn find_kernel(dir: &Path, image: &str) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(image))
        })
}

/// The newest build of a series the archive offers: old builds leave the archive.
fn newest_package(prefix: &str) -> Result<String> {
    let list = cmd::output(command("apt-cache").args(["pkgnames", prefix]))?;
    let mut names: Vec<&str> = list
        .lines()
        .filter(|n| n.ends_with(KERNEL_SUFFIX))
        .collect();
    names.sort_by_key(|n| build_number(n, prefix));
    match names.last() {
        Some(n) => Ok(n.to_string()),
        None => bail!("apt-cache knows no {prefix}*{KERNEL_SUFFIX} package"),
    }
}

/// `linux-image-6.12.113+deb12-cloud-amd64-unsigned` -> 113,
/// `linux-image-6.1.0-57-cloud-amd64-unsigned` -> 57.
fn build_number(name: &str, prefix: &str) -> u32 {
    name.strip_prefix(prefix)
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
    use super::build_number;

    #[test]
    fn kernel_build_number() {
        let p = "linux-image-6.12.";
        assert_eq!(
            build_number("linux-image-6.12.113+deb12-cloud-amd64-unsigned", p),
            113
        );
        assert_eq!(
            build_number("linux-image-6.12.9+deb12-cloud-amd64-unsigned", p),
            9
        );
        let p = "linux-image-6.1.0-";
        assert_eq!(
            build_number("linux-image-6.1.0-57-cloud-amd64-unsigned", p),
            57
        );
    }
}
