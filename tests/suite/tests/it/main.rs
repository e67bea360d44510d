//! Outpost's integration suite: one binary, so it builds once and its tests share one
//! throwaway PostgreSQL cluster (each test still gets its own database).

mod device_errors;
mod push;
mod schema;
