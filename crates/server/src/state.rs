//! What every request handler shares: built once by `Application::build`, read by the routes.

use std::sync::Arc;

use hookbus_configs::ConfigCache;
use hookbus_core::Services;
use hookbus_router::TrustedProxies;
use sea_orm::DatabaseConnection;

use crate::{body::BodyLimits, metrics::Metrics};

/// What every request handler shares.
#[derive(Debug)]
pub struct AppState {
    pub services: Arc<Services>,
    pub configs: ConfigCache,
    pub trusted_proxies: TrustedProxies,
    pub metrics: Arc<Metrics>,
    pub db: DatabaseConnection,
    pub body_limits: BodyLimits,
}
