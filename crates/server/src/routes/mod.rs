//! HTTP routes. Handlers here only translate between HTTP and the bus.

pub mod bus;
pub mod inbound;
pub mod ops;
pub mod partner;
pub mod providers;
