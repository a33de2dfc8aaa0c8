pub mod cluster;
pub mod files;
pub mod gateway_config;
pub mod http;
pub mod leader;
pub mod metrics;
