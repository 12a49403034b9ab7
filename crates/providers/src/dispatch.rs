//! From verified notifications to events.
//!
//! 1. Notifications seen before are duplicates (a plain read that spares them further work).
//! 2. Remita payments are confirmed with the status API, when one is configured.
//! 3. One transaction claims the rest and logs the request; a claim someone else holds makes its
//!    notification a duplicate. With nothing claimed, the request is answered here.
//! 4. Each claimed notification is published, under an event id fixed by its key.
//! 5. The accepted ones are forwarded to the route's router configuration, if it has one.
//! 6. One transaction settles the claims (published, or released for a retry when publishing
//!    failed) and writes the answer onto the request's log entry.

use std::{collections::HashSet, sync::Arc};

use futures_util::{StreamExt, stream};
use hookbus_core::{CommandError, Reply, Services};
use hookbus_inbound::FixedRouteEntry;
use hookbus_router::InboundRequest;
use hookbus_store::{DbResultExt, Store};
use serde_json::Value;
use uuid::Uuid;

use crate::{
    Providers, Route,
    answer::answer,
    claims::{self, Claim},
    forward,
    notification::{Notification, decimal_parts, scalar_text},
    outcome::{Item, Outcome},
    publish::{event_id, publish, unknown_names},
    remita::{PaymentStatus, StatusApi},
    verify::Verified,
};

/// Status API calls in flight at once for one request.
const STATUS_CHECKS_AT_ONCE: usize = 8;

/// Dispatches a verified request's notifications, logging it as `entry`.
pub(crate) async fn dispatch(
    services: &Arc<Services>,
    route: Route,
    request: InboundRequest,
    notifications: Verified<Vec<Notification>>,
    mut entry: FixedRouteEntry,
) -> Result<Reply, CommandError> {
    let store = services.get::<Store>()?;
    let providers = services.get::<Providers>()?;
    let provider = route.provider();
    let mut items: Vec<Item> =
        notifications.into_inner().into_iter().map(|notification| Item { notification, outcome: None }).collect();

    ignore_unknown(services, &mut items).await?;
    mark_seen(store, provider, entry.id(), &mut items).await?;
    if let Some(api) = providers.status_api(route) {
        confirm(api, &mut items).await;
    }

    let txn = store.begin_write().await.or_internal()?;
    let mut claimed = Vec::new();
    for (index, item) in items.iter_mut().enumerate().filter(|(_, item)| item.outcome.is_none()) {
        match claims::claim(&*txn, provider, &item.notification.dedupe_key, entry.id()).await? {
            Claim::Taken => claimed.push(index),
            Claim::Seen(seen) => item.outcome = Some(seen.into()),
        }
    }
    if claimed.is_empty() {
        let result = answer(route, &request.body, &items, None);
        finish(&mut entry, &items, &result);
        entry.insert(&*txn).await?;
        txn.commit().await.or_internal()?;
        return result;
    }
    entry.insert(&*txn).await?;
    txn.commit().await.or_internal()?;

    for &index in &claimed {
        let notification = &items[index].notification;
        let mut event = notification.event.clone();
        event.event_id = Some(event_id(provider, &notification.dedupe_key));
        items[index].outcome = Some(match publish(services, event).await {
            Ok(event_id) => Outcome::Accepted { event_id },
            Err(error) => Outcome::Failed(error),
        });
    }

    let forwarded = match providers.forward_key(route) {
        Some(key) if items.iter().any(|item| matches!(item.outcome, Some(Outcome::Accepted { .. }))) => {
            Some(forward::forward(services, key, &request, accepted_body(&request.body, &items)).await)
        }
        _ => None,
    };

    let result = answer(route, &request.body, &items, forwarded);
    finish(&mut entry, &items, &result);
    let txn = store.begin_write().await.or_internal()?;
    for index in claimed {
        let key = &items[index].notification.dedupe_key;
        match &items[index].outcome {
            Some(Outcome::Accepted { event_id }) => claims::settle(&*txn, provider, key, entry.id(), event_id).await?,
            _ => claims::release(&*txn, provider, key, entry.id()).await?,
        }
    }
    entry.update(&*txn).await?;
    txn.commit().await.or_internal()?;
    result
}

/// Marks the notifications whose event the catalog does not know as ignored: acknowledged, not
/// published, and kept in the log for a replay once the name is registered.
async fn ignore_unknown(services: &Services, items: &mut [Item]) -> Result<(), CommandError> {
    let mut names: Vec<&str> = items.iter().map(|item| item.notification.event.event_name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let unknown = unknown_names(services, &names).await?;
    for item in items.iter_mut() {
        let name = &item.notification.event.event_name;
        if unknown.contains(name) {
            item.outcome = Some(Outcome::Ignored {
                reason: format!(
                    "event '{name}' is not in the event catalog: register it with RegisterEventTypeCommand, then \
                     replay this request with ReplayInboundEventCommand"
                ),
            });
        }
    }
    Ok(())
}

/// Marks the notifications seen before, and repeats within this request (logged as `this`).
async fn mark_seen(store: &Store, provider: &str, this: Uuid, items: &mut [Item]) -> Result<(), CommandError> {
    let keys = items.iter().map(|item| item.notification.dedupe_key.as_str());
    let seen = claims::seen(store.db(), provider, keys).await?;
    let mut keys_here = HashSet::new();
    for item in items.iter_mut() {
        let key = &item.notification.dedupe_key;
        if let Some(before) = seen.get(key) {
            item.outcome = Some((*before).into());
        } else if !keys_here.insert(key.clone()) {
            item.outcome = Some(Outcome::Duplicate { first: this });
        }
    }
    Ok(())
}

/// Asks the status API about every undecided notification (their references are RRRs).
async fn confirm(api: &StatusApi, items: &mut [Item]) {
    // Owned references, so the checks' future does not borrow the items.
    let undecided: Vec<(usize, String)> = items
        .iter()
        .enumerate()
        .filter(|(_, item)| item.outcome.is_none())
        .map(|(index, item)| (index, item.notification.reference.1.clone()))
        .collect();
    let checks: Vec<(usize, Result<PaymentStatus, CommandError>)> = stream::iter(undecided)
        .map(|(index, rrr)| async move { (index, api.check(&rrr).await) })
        .buffered(STATUS_CHECKS_AT_ONCE)
        .collect()
        .await;
    for (index, checked) in checks {
        let item = &mut items[index];
        let notified = &item.notification.original["amount"];
        item.outcome = match checked {
            Ok(PaymentStatus::Paid { amount, confirmed }) => {
                let mismatch = match (amount, amount_text(notified)) {
                    (Some(paid), Some(notified)) if !same_amount(&notified, &paid) => {
                        Some(Outcome::AmountMismatch { notified, paid })
                    }
                    _ => None,
                };
                // Published with what Remita says, not what the caller says.
                if let Value::Object(data) = &mut item.notification.event.data {
                    data.extend(confirmed);
                    data.insert("confirmedBy".into(), Value::from("remita-status-api"));
                }
                mismatch
            }
            Ok(PaymentStatus::NotPaid { status, message }) => Some(Outcome::NotPaid { status, message }),
            Err(error) => Some(Outcome::Failed(error)),
        };
    }
}

/// A notification's amount (parsing made sure it is a number or a decimal string) as text.
fn amount_text(amount: &Value) -> Option<String> {
    scalar_text(amount).map(|text| text.trim().to_owned())
}

/// Whether two amounts are the same number, however written: `1000`, `1000.00` and `1000.0` are.
/// An amount that is not a plain decimal (`1e3`, text) matches only itself.
fn same_amount(a: &str, b: &str) -> bool {
    /// Sign, whole digits without leading zeros, fraction digits without trailing zeros.
    fn canonical(text: &str) -> Option<(bool, &str, &str)> {
        let (negative, whole, fraction) = decimal_parts(text.trim())?;
        let (whole, fraction) = (whole.trim_start_matches('0'), fraction.trim_end_matches('0'));
        // Zero has no sign.
        Some((negative && !(whole.is_empty() && fraction.is_empty()), whole, fraction))
    }
    match (canonical(a), canonical(b)) {
        (Some(a), Some(b)) => a == b,
        _ => a.trim() == b.trim(),
    }
}

/// The request's body narrowed to the accepted notifications, in its own shape.
fn accepted_body(body: &Value, items: &[Item]) -> Value {
    let mut accepted = items
        .iter()
        .filter(|item| matches!(item.outcome, Some(Outcome::Accepted { .. })))
        .map(|item| item.notification.original.clone());
    if body.is_array() { Value::Array(accepted.collect()) } else { accepted.next().unwrap_or(Value::Null) }
}

/// Writes the answer onto the log entry; a request whose every notification was a duplicate is
/// logged as one.
fn finish(entry: &mut FixedRouteEntry, items: &[Item], result: &Result<Reply, CommandError>) {
    entry.finish(result.as_ref());
    let firsts: Vec<Uuid> = items
        .iter()
        .filter_map(|item| match item.outcome {
            Some(Outcome::Duplicate { first }) => Some(first),
            _ => None,
        })
        .collect();
    if firsts.len() == items.len()
        && let Some(first) = firsts.first()
        && *first != entry.id()
    {
        entry.mark_duplicate(*first);
    }
}

#[cfg(test)]
mod tests {
    use super::same_amount;

    #[test]
    fn amounts_are_compared_as_numbers() {
        for (a, b) in [("1000", "1000.00"), ("1000.0", "01000"), ("0.50", "0.5"), ("-0", "0.00"), (" 12.30 ", "12.3")] {
            assert!(same_amount(a, b), "{a} vs {b}");
        }
        for (a, b) in [("1000", "100"), ("1000.01", "1000.1"), ("-5", "5"), ("10", "1e1"), ("abc", "0")] {
            assert!(!same_amount(a, b), "{a} vs {b}");
        }
        assert!(same_amount("1e3", "1e3"));
    }
}
