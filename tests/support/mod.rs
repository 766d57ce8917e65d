//! Test support: the shared test kit (`sensor-testkit`: the real daemon on the real
//! kernel, a collector of its event stream, real behaviours) and, for the BPF LSM tests
//! only, booting a test under qemu ([`vm`]).

pub use sensor_testkit::*;

pub mod vm;
