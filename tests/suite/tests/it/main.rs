//! Outpost's integration suite: one binary, so it builds once and its tests share one
//! throwaway PostgreSQL cluster (each test still gets its own database).

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "helpers of the tests abort the test on a failed step, as the tests themselves do"
)]

mod abuse;
mod admin_api;
mod bench;
mod cli;
mod db_tls;
mod deadlines;
mod deploy;
mod device_errors;
mod ha_sets;
mod hostile;
mod inventory;
mod isolation;
mod lifecycle;
mod offline;
mod process;
mod pull;
mod push;
mod schema;
mod secrets;
mod simulators;
mod slac;
mod sync;
mod tenancy;
mod trust_and_policy;
mod ui;
mod webhooks;
mod yang;
