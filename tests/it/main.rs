//! Black-box tests: each starts a real Trailmark server (in-process on a loopback port, or the
//! real binary where a crash is involved) and talks to it over HTTP.

mod crash;
mod edges;
mod events;
mod helpers;
mod organizations;
mod schemas;
mod workos_rust_sdk;
