//! Generates the gRPC code from `proto/sensor/v1/sensor.proto`.
//!
//! `Process` is generated twice: the messages that carry one refer to the crate's shared
//! `Process` (see `lib.rs`), and a second pass generates the plain message on its own as
//! `ProcessData`, its fields, from the same definition so the two never drift apart.
use std::{env, path::PathBuf};

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("..");
    let proto = root.join("proto/sensor/v1/sensor.proto");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    // SAFETY: build scripts are single-threaded.
    unsafe { env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path().unwrap()) };
    let configure = || {
        tonic_prost_build::configure().type_attribute(
            ".sensor.v1",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]",
        )
    };
    configure()
        .file_descriptor_set_path(out.join("sensor_descriptor.bin"))
        .extern_path(".sensor.v1.Process", "crate::Process")
        .compile_protos(std::slice::from_ref(&proto), &[root.join("proto")])
        .expect("compiling proto/sensor/v1/sensor.proto");
    let fields = out.join("process_data");
    std::fs::create_dir_all(&fields).expect("creating the process_data output directory");
    configure()
        .build_client(false)
        .build_server(false)
        .out_dir(&fields)
        .extern_path(".sensor.v1.Ancestor", "crate::Ancestor")
        .compile_protos(std::slice::from_ref(&proto), &[root.join("proto")])
        .expect("compiling proto/sensor/v1/sensor.proto (process fields)");
    println!("cargo:rerun-if-changed={}", proto.display());
}
