//! `cargo xtask build`: compiles the kernel programs (`sensor-ebpf`, its own
//! cargo project targeting `bpfel-unknown-none`) and then the userspace
//! `sensor` binary, which embeds the eBPF object named by `SENSOR_BPF_OBJECT`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::banner;
use crate::cmd::{self, command};
use crate::setup::setup;

/// What a build produced, as absolute paths.
pub struct Artifacts {
    pub bpf_object: PathBuf,
    pub sensor_bin: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Release,
    Debug,
}

pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one directory below the workspace root")
}

pub fn build(profile: Profile) -> Result<Artifacts> {
    banner("setup");
    setup()?;
    banner("build eBPF object (sensor-ebpf)");
    let bpf_object = build_ebpf()?;
    println!("build: eBPF object at {}", bpf_object.display());
    banner("build userspace (sensor)");
    let sensor_bin = build_userspace(&bpf_object, profile)?;
    println!("build: sensor binary at {}", sensor_bin.display());
    Ok(Artifacts {
        bpf_object,
        sensor_bin,
    })
}

fn build_ebpf() -> Result<PathBuf> {
    let dir = workspace_root().join("sensor-ebpf");
    // Pinned so that a target dir inherited from the outer build (env or
    // config) cannot move the object away from where the sensor expects it.
    let target_dir = dir.join("target");
    let mut cargo = command(cmd::cargo());
    cargo
        .current_dir(&dir)
        .args([
            "build",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        // build-std is unstable; this lets the stable toolchain accept it.
        .env("RUSTC_BOOTSTRAP", "1");
    // Flags and wrappers meant for the host build (e.g. clippy-driver when
    // this runs under `cargo clippy`) break or pollute the BPF build.
    for var in [
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cargo.env_remove(var);
    }
    cmd::run(&mut cargo).context("building the eBPF object failed")?;
    let object = target_dir.join("bpfel-unknown-none/release/sensor-ebpf");
    if !object.is_file() {
        bail!(
            "the eBPF build succeeded but {} does not exist",
            object.display()
        );
    }
    Ok(object)
}

fn build_userspace(bpf_object: &Path, profile: Profile) -> Result<PathBuf> {
    let mut cargo = command(cmd::cargo());
    cargo
        .current_dir(workspace_root())
        .args(["build", "-p", "sensor"])
        .env("SENSOR_BPF_OBJECT", bpf_object);
    if profile == Profile::Release {
        cargo.arg("--release");
    }
    cmd::run(&mut cargo).context("building the sensor failed")?;
    let dir = if profile == Profile::Release {
        "release"
    } else {
        "debug"
    };
    let bin = target_dir()?.join(dir).join("sensor");
    if !bin.is_file() {
        bail!(
            "the sensor build succeeded but {} does not exist",
            bin.display()
        );
    }
    Ok(bin)
}

/// Asks cargo, because `CARGO_TARGET_DIR` or `build.target-dir` may move it.
fn target_dir() -> Result<PathBuf> {
    let out = cmd::output(command(cmd::cargo()).current_dir(workspace_root()).args([
        "metadata",
        "--no-deps",
        "--format-version",
        "1",
    ]))?;
    let meta: serde_json::Value =
        serde_json::from_str(&out).context("`cargo metadata` printed invalid JSON")?;
    let dir = meta["target_directory"]
        .as_str()
        .context("`cargo metadata` has no target_directory")?;
    Ok(PathBuf::from(dir))
}
