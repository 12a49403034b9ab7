//! Remita's two routes and the status API that confirms payments.

pub(crate) mod collection;
pub(crate) mod payment;
mod status_api;

pub(crate) use status_api::{PaymentStatus, StatusApi};
