//! The Redis tier: values, invalidation bus, load locks.

pub(crate) mod bus;
pub(crate) mod redis;
