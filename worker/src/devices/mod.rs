//! The clients Outpost pulls devices with: the IOS-XE native REST API and RESTCONF over HTTPS
//! (`rest.rs`), and NETCONF over SSH (`netconf.rs`). Each pins the device's certificate or host
//! key on first contact and checks it before sending credentials.

pub mod netconf;
pub mod rest;

pub use rest::PullError;
