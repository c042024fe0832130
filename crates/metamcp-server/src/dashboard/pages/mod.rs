//! The dashboard's pages, one file per family (what each reads and which forms it takes).

pub mod apps;
pub mod endpoints;
pub mod inspector;
pub mod namespaces;
pub mod servers;
pub mod settings;
