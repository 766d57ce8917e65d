//! The sensor daemon and its command-line client.
//!
//! The daemon's pipeline, in the order data flows (see [`daemon`]):
//! capture ([`probes`], [`capture`], [`decode`]) -> enrich ([`process_table`], [`enrich`])
//! -> detect ([`detect`]) -> act ([`act`]) -> publish ([`publish`], [`grpc`]).
//!
//! Beside it, antimalware ([`antimalware`]): the scan engine ([`scan`]), real-time
//! protection over fanotify ([`rtp`]), on-demand scans ([`ondemand`]), and what is done
//! with threats ([`threats`], [`quarantine`], [`exclusions`]). Threats join the pipeline
//! as detections before publish.

pub mod act;
pub mod antimalware;
pub mod btf;
pub mod capture;
pub mod cli;
pub mod daemon;
pub mod decode;
pub mod detect;
pub mod enrich;
pub mod exclusions;
pub mod grpc;
pub mod health;
pub mod listen;
pub mod ondemand;
pub mod paths;
pub mod probes;
pub mod process_table;
pub mod publish;
pub mod quarantine;
pub mod rtp;
pub mod safe_fs;
pub mod scan;
pub mod scope;
pub mod threats;

/// The protocol, generated from `proto/sensor/v1/sensor.proto` in its own crate so that
/// clients build without the daemon.
pub use sensor_proto as proto;

pub use decode::split_args;
