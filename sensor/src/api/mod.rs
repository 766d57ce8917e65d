//! The daemon's API: the gRPC service `sensor.v1.Sensor` ([`service`]) on a root-only unix
//! socket ([`socket`]) and optionally on TCP with mutual TLS ([`tcp`]), the health answer
//! ([`health`]), and how errors become gRPC statuses ([`errors`]). A thin layer: requests
//! become calls into the pipeline's feed and the antimalware side, nothing more.

mod errors;
pub mod health;
pub mod service;
pub mod socket;
pub mod tcp;
