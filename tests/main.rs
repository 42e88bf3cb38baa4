//! The integration tests: one binary, real servers on 127.0.0.1:0, real databases.

mod common;

mod activities;
mod agent;
mod atompub;
mod atompub_clients;
mod bad_input;
mod blobs;
mod browser;
mod carddav;
mod cli;
mod compliance;
mod connectors;
mod contacts;
mod fanout;
mod feeds;
mod follows;
mod http_edges;
mod imap;
mod outbound;
mod peers;
mod phone;
mod push;
mod readers;
mod store_people;
mod store_story;
mod web;
mod websub;
mod websub_delivery;
mod websub_open;
mod websub_policy;
