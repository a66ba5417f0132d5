//! Shared support for the integration tests (`mod support;` in a test file).
pub mod arc;
pub mod arc_scale_set;
pub mod bench;
pub mod cluster;
pub mod metrics;
pub mod operator;
pub mod proxy;
pub mod simulator;
pub mod soak;
