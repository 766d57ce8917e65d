//! Generates the gRPC code from `proto/sensor/v1/sensor.proto`.
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
}
