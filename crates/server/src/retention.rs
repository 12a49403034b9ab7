//! The retention of what the router received: the inbound log's finished events, the fixed
//! routes' deduplication rows and the history of deleted configurations, deleted once older than
//! `inbound.retention_days`.
//!
//! Instances sharing a PostgreSQL database take turns: one sweeps while the others skip
//! ([`Store::exclusively`]).

use std::time::Duration;

use hookbus_store::{Singleton, Store};
use tokio::{task::JoinHandle, time::MissedTickBehavior};

/// Sweeps at start-up and then every `every`, until the runtime stops.
pub fn spawn(store: Store, retention: Duration, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            // A retention longer than any date can go back keeps everything.
            let Some(cutoff) = hookbus_core::retention_cutoff(retention) else {
                continue;
            };
            // One instance sweeps at a time; the next sweep tries again after a failure.
            let swept = store
                .exclusively(Singleton::InboundRetention, || async {
                    hookbus_inbound::sweep(&store, cutoff).await?;
                    hookbus_configs::sweep_history(&store, cutoff).await?;
                    hookbus_providers::sweep(&store, cutoff).await
                })
                .await;
            if let Err(error) | Ok(Some(Err(error))) = swept {
                tracing::warn!(error = %hookbus_core::error_chain(&error), "inbound retention sweep failed");
            }
        }
    })
}
