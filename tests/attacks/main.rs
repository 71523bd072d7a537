//! The attack suite: each attack on the daemon that `issue 9` names, run against the real binary
//! (the release build under `cargo xtask test`) and real QEMU. Every test shows both that the
//! attack fails with the right error and that a normal client ([`support::bystander`]) keeps
//! getting screenshots of another VM meanwhile, within a latency bound.

#[path = "../support/mod.rs"]
mod support;

mod browser;
mod confinement;
mod connections;
mod connections_wire;
mod console;
mod lifecycle;
mod screen_events;
mod screen_wait;
mod ui_proxy;
