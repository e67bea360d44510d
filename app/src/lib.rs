//! Outpost's use cases, each written once: the device exchange, report intake (push, pull and
//! files), the air-gapped file exchanges, registration with CSSM, the account lifecycle,
//! inventory and SLAC input, and the work handed to the worker. Plain async functions over a
//! database connection with one error type ([`AppError`]); the front doors (`api`, `worker`,
//! the `outpost` CLI) parse their input, call these and present the outcome.

pub mod accounts;
pub mod device;
pub mod error;
pub mod input;
pub mod intake;
pub mod inventory;
pub mod jobs;
pub mod offline;
pub mod registration;
pub mod secrets;
pub mod settings;
pub mod slac;
pub mod users;

pub use error::{AppError, AppResult, Code};
