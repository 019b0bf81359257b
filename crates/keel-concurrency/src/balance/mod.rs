//! Spreading calls over endpoints: a [`LoadBalancer`] that picks, guards
//! that report, ejection of failing endpoints, and [`Balance`], a tower
//! service over a list of services.

mod balancer;
mod config;
mod future;
mod service;

pub use balancer::{EndpointGuard, EndpointStats, LoadBalancer, LoadBalancerBuilder};
pub use config::{BalanceStrategy, LoadBalancerConfig};
pub use future::ResponseFuture;
pub use service::Balance;
