//! Protections against penetration (Bloom filter).

pub(crate) mod bloom;
