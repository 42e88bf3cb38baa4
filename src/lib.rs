//! feedmesh: a self-hosted hub that links devices and services through feeds.
//! See ARCHITECTURE.md for the map of this crate.
#![forbid(unsafe_code)]

pub mod agent;
pub mod app;
pub mod blobs;
pub mod cli;
pub mod config;
pub mod dial;
/// Pure types and rules (the `feedmesh-domain` crate, shared with the connectors).
pub use feedmesh_domain as domain;
pub mod error;
pub mod fetch;
pub mod formats;
pub mod jobs;
pub mod net;
pub mod seal;
pub mod secrets;
pub mod server;
pub mod store;
pub mod ttl;
pub mod usecases;
pub mod web;
pub mod websub;

#[cfg(test)]
mod network_input_tests;
