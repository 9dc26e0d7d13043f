//! Black-box tests: each starts a real Trailmark server (in-process on a loopback port, or the
//! real binary where a crash is involved) and talks to it over HTTP.

mod authority;
mod axum_app;
mod cli;
mod client;
mod console;
mod crash;
mod edges;
mod egress;
mod erasure;
mod events;
mod exports;
mod gcs_service_account;
mod helpers;
mod keys;
mod ledger;
mod limits;
mod live;
mod logs;
mod object_stores;
mod organizations;
mod pki;
mod portal;
mod postgres_tls;
mod read;
mod receivers;
mod retention;
mod scale_out;
mod schemas;
mod self_audit;
mod streams;
mod syslog;
mod upgrade;
mod usage;
mod witness;
mod workos_rust_sdk;
