//! Outpost's core: the domain types and every wire and file format of `docs/protocol.md`, the
//! crypto helpers that sign and verify CSSM files, typed settings and the clock.
//!
//! Nothing here talks to a database or serves HTTP, so the simulators can share these types
//! with the server without pulling either in (`cargo tree -p outpost_core -i diesel` is empty).

pub mod bundle;
pub mod clock;
pub mod crypto;
pub mod cssm;
pub mod deadlines;
pub mod device;
pub mod device_rpc;
pub mod json;
pub mod net;
pub mod offline_file;
pub mod rum;
pub mod schedule;
pub mod secrets;
pub mod settings;
pub mod signed_file;
pub mod tenant;
pub mod tls;
pub mod udi;
mod xml;

pub use udi::Sudi;
