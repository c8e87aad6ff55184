//! tether's test environment: a private containerd of a chosen version,
//! optionally with its CRI plugin, a local registry and CNI, with the
//! runtime handlers a test asks for.
//!
//! [`config`] writes containerd's config from typed structs, one schema per
//! major version.

pub mod config;
