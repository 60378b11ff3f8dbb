//! The client against an in-process fake node (`fake`): admin calls,
//! producing, fetching and subscribing over real QUIC on 127.0.0.1.

mod admin;
mod cluster;
mod consume;
mod fake;
mod produce;
