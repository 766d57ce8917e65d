//! The sensor daemon and its command-line client.
//!
//! The daemon's pipeline, in the order data flows (see [`daemon`] for the wiring):
//! capture ([`kernel`] programs, [`pipeline::capture`], [`decode`]) -> enrich ([`enrich`])
//! -> detect ([`detect`]) -> act ([`pipeline::act`]) -> publish ([`pipeline::publish`],
//! served by [`api`]).
//!
//! Beside it, [`antimalware`]: the scan engine, real-time protection over fanotify,
//! on-demand scans, and what is done with threats (quarantine, history, exclusions).
//! Threats join the pipeline as detections before publish, through
//! [`pipeline::input`], the one module both sides share.

pub mod antimalware;
pub mod api;
pub mod cli;
pub mod daemon;
pub mod decode;
pub mod detect;
pub mod enrich;
pub mod kernel;
pub mod pipeline;
pub mod safe_fs;
pub mod scope;

/// Generated from `proto/sensor/v1/sensor.proto`.
pub mod proto {
    tonic::include_proto!("sensor.v1");

    /// Encoded descriptors, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("sensor_descriptor");
}

pub use decode::split_args;
