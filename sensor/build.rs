//! Generates the gRPC code from `proto/` and locates the eBPF object to embed.
//!
//! The object is built by `cargo xtask build` (it needs the BPF target and bpf-linker) and
//! handed over through `SENSOR_BPF_OBJECT`; without it the default output path of that
//! build is used.
use std::{env, path::PathBuf};

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("..");
    let proto = root.join("proto/sensor/v1/sensor.proto");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    // SAFETY: build scripts are single-threaded.
    unsafe { env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path().unwrap()) };
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("sensor_descriptor.bin"))
        .type_attribute(
            ".sensor.v1",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]",
        )
        .compile_protos(std::slice::from_ref(&proto), &[root.join("proto")])
        .expect("compiling proto/sensor/v1/sensor.proto");
    println!("cargo:rerun-if-changed={}", proto.display());

    println!("cargo:rerun-if-env-changed=SENSOR_BPF_OBJECT");
    let object = env::var_os("SENSOR_BPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("sensor-ebpf/target/bpfel-unknown-none/release/sensor-ebpf"));
    if !object.exists() {
        panic!(
            "eBPF object not found at {}: build with `cargo xtask build` (or set SENSOR_BPF_OBJECT)",
            object.display()
        );
    }
    println!("cargo:rerun-if-changed={}", object.display());
    println!("cargo:rustc-env=SENSOR_BPF_OBJECT={}", object.display());
}
