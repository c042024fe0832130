//! The composition root of metamcp: the command line ([`cli`]), process settings
//! ([`config`]) and the `serve` command that wires store, pool and HTTP faces together
//! ([`app`]). Library crates below never read the environment; this crate does.

pub mod app;
pub mod bootstrap;
pub mod cli;
pub mod commands;
pub mod config;
pub mod telemetry;
pub mod users;
