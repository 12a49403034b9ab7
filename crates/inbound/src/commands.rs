//! `GetInboundEventListQuery`, `GetInboundEventByIdQuery`, `ReplayInboundEventCommand`.

use hookbus_configs::ConfigCache;
use hookbus_core::{
    Answered, CommandError, Context, Handler, Page, PageRequest, Permission, Timestamp, register_command,
};
use hookbus_store::{DbResultExt, Store, fetch_page};
use schemars::JsonSchema;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    Select, Set, SqlErr, Statement,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::{FixedRouteEntry, FixedRoutes, InboundStatus, REDACTED, entity, entity::JsonText, receive};

/// A logged request as the queries return it.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InboundEvent {
    id: Uuid,
    config_id: i32,
    /// The version of the configuration that handled it (`GetWebHookConfigVersionsQuery`);
    /// `null` for the fixed routes.
    config_version: Option<i32>,
    key: String,
    status: InboundStatus,
    http_status: Option<i32>,
    message: Option<String>,
    /// What the execution answered.
    #[schemars(with = "Option<serde_json::Value>")]
    data: Option<Box<RawValue>>,
    /// Why the execution failed.
    #[schemars(with = "Option<serde_json::Value>")]
    errors: Option<Box<RawValue>>,
    attempts: i32,
    duration_ms: Option<i64>,
    duplicate_of: Option<Uuid>,
    replay_of: Option<Uuid>,
    received_at: Timestamp,
    completed_at: Option<Timestamp>,
    next_attempt_at: Option<Timestamp>,
    /// The request, secret headers redacted.
    #[schemars(with = "serde_json::Value")]
    request: Box<RawValue>,
}

impl From<entity::Model> for InboundEvent {
    fn from(model: entity::Model) -> Self {
        let entity::Model {
            id,
            config_id,
            config_key,
            request,
            raw_body,
            idempotency_value: _,
            duplicate_of,
            replay_of,
            status,
            http_status,
            message,
            data,
            errors,
            attempts,
            next_attempt_at,
            lease_until: _,
            duration_ms,
            received_at,
            completed_at,
            // Never shown.
            sealed_headers: _,
            config_version,
        } = model;
        let request = whole_request(request, &config_key, received_at, &raw_body);
        Self {
            id,
            config_id,
            config_version,
            key: config_key,
            status,
            http_status,
            message,
            data: data.map(JsonText::into_raw),
            errors: errors.map(JsonText::into_raw),
            attempts,
            duration_ms,
            duplicate_of,
            replay_of,
            received_at,
            completed_at,
            next_attempt_at,
            request,
        }
    }
}

/// A row's whole request for a response (see [`stored`](crate::stored)); a `request` column that
/// cannot be read back is sent as stored.
fn whole_request(request: JsonText, config_key: &str, received_at: Timestamp, raw_body: &str) -> Box<RawValue> {
    let restored = crate::stored::restore(request.as_str(), config_key, received_at, raw_body)
        .and_then(|restored| serde_json::value::to_raw_value(&restored.request).map_err(CommandError::internal));
    restored.unwrap_or_else(|error| {
        tracing::warn!(%error, "an inbound event's request could not be read back whole; it is sent as stored");
        request.into_raw()
    })
}

/// Lists logged requests, newest first.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetInboundEventListQuery {
    #[serde(default)]
    pub page_number: Option<u64>,
    #[serde(default)]
    pub page_size: Option<u64>,
    /// A configuration key.
    #[serde(default)]
    pub key: Option<String>,
    /// Pending, Processing, Succeeded, Failed or Duplicate.
    #[serde(default)]
    pub status: Option<String>,
    /// Received at or after.
    #[serde(default)]
    pub from: Option<Timestamp>,
    /// Received before.
    #[serde(default)]
    pub to: Option<Timestamp>,
}

impl Handler for GetInboundEventListQuery {
    const PERMISSION: Permission = Permission::InboundRead;
    type Answer = Page<InboundEvent>;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let page = PageRequest::parse(self.page_number, self.page_size)?;
        let page = fetch_page(self.select()?, page, ctx.service::<Store>()?.db(), InboundEvent::from).await?;
        Answered::ok(page, "Inbound events retrieved successfully")
    }
}

impl GetInboundEventListQuery {
    /// The events the query selects, newest first.
    fn select(&self) -> Result<Select<entity::Entity>, CommandError> {
        let mut filter = Condition::all();
        if let Some(key) = &self.key {
            filter = filter.add(entity::Column::ConfigKey.eq(key.as_str()));
        }
        if let Some(wanted) = &self.status {
            let Some(found) = InboundStatus::parse(wanted) else {
                let known: Vec<&str> = InboundStatus::ALL.iter().map(|s| s.as_str()).collect();
                return Err(CommandError::validation(format!("status: '{wanted}' is not one of {}", known.join(", "))));
            };
            filter = filter.add(entity::Column::Status.eq(found));
        }
        if let Some(from) = self.from {
            filter = filter.add(entity::Column::ReceivedAt.gte(from));
        }
        if let Some(to) = self.to {
            filter = filter.add(entity::Column::ReceivedAt.lt(to));
        }
        Ok(entity::Entity::find()
            .filter(filter)
            .order_by_desc(entity::Column::ReceivedAt)
            .order_by_desc(entity::Column::Id))
    }
}
register_command!("GetInboundEventListQuery" => GetInboundEventListQuery);

/// The first page of the log under `key` as SQL for `backend`, for checking how the database
/// plans it.
pub fn list_statement(backend: DbBackend, key: &str) -> Statement {
    let query = GetInboundEventListQuery {
        page_number: None,
        page_size: None,
        key: Some(key.to_owned()),
        status: None,
        from: None,
        to: None,
    };
    // A key and nothing else is always a valid filter.
    let select = query.select().expect("a key is a valid filter");
    select.limit(PageRequest::DEFAULT_SIZE).build(backend)
}

/// One logged request.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetInboundEventByIdQuery {
    pub id: Uuid,
}

impl Handler for GetInboundEventByIdQuery {
    const PERMISSION: Permission = Permission::InboundRead;
    type Answer = InboundEvent;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        let event = find(ctx, self.id, "Inbound event not found").await?;
        Answered::ok(InboundEvent::from(event), "Inbound event retrieved successfully")
    }
}
register_command!("GetInboundEventByIdQuery" => GetInboundEventByIdQuery);

/// Runs the configuration's handler again on a logged request, as it is now or (with `version`)
/// as it was in that version; the run is logged as a new event whose `replayOf` names the
/// original. A replay runs the handler's effects again (events
/// published, processes started), so it is a write: it needs `webhooks:write`, a disabled
/// configuration is not replayed, and a request whose idempotency key was processed is not run
/// again (409): the replay takes the key as a repeat would.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplayInboundEventCommand {
    pub id: Uuid,
    /// A version of the configuration (`GetWebHookConfigVersionsQuery`); absent: the current one.
    /// Not for the fixed routes.
    #[serde(default)]
    pub version: Option<i32>,
}

impl Handler for ReplayInboundEventCommand {
    const PERMISSION: Permission = Permission::WebhooksWrite;
    type Answer = InboundEvent;

    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        // A replay may run a script, which would wait for a script thread while the calling
        // script holds one.
        ctx.refuse_in_script("ReplayInboundEventCommand")?;
        // The replay is a routed request of its own, with its own unit of work.
        ctx.service::<Store>()?.refuse_in_unit("ReplayInboundEventCommand cannot run inside a routed request")?;
        let original = find(ctx, self.id, "Replay failed").await?;
        if original.config_id == FixedRouteEntry::CONFIG_ID {
            if self.version.is_some() {
                return Err(CommandError::validation("version: the fixed routes have no versions"));
            }
            let request = receive::request_of(&original)?;
            let routes = ctx.service::<FixedRoutes>()?;
            let id = routes.0.replay(ctx.services(), &original.config_key, request, original.id).await?;
            let event = find(ctx, id, "Replay failed").await?;
            return Answered::ok(InboundEvent::from(event), "Inbound event replayed");
        }
        let entry = ctx
            .service::<ConfigCache>()?
            .by_id(original.config_id)
            .ok_or_else(|| CommandError::not_found("Replay failed", "The configuration no longer exists"))?;
        if !entry.is_enabled {
            return Err(CommandError::conflict("Replay failed", "The configuration is inactive"));
        }
        let entry = match self.version {
            None => entry,
            Some(version) => std::sync::Arc::new(
                hookbus_configs::entry_at_version(ctx, entry.id, version)
                    .await?
                    .ok_or_else(|| CommandError::not_found("Replay failed", "Version not found"))?,
            ),
        };
        let request = receive::request_of(&original)?;

        // The key as the original request gave it (a key header redacted in the log is not one).
        let key = entry
            .idempotency
            .as_ref()
            .and_then(|rule| receive::idempotency_value(rule, &request))
            .filter(|value| value != REDACTED);
        let mut replay = receive::row_for(
            entry.id,
            Some(entry.version),
            entry.key.clone(),
            request.clone(),
            hookbus_core::now(),
            ctx.service()?,
        )?;
        replay.replay_of = Set(Some(original.id));
        replay.status = Set(InboundStatus::Processing);
        replay.attempts = Set(1);
        replay.idempotency_value = Set(key);
        let inserted = ctx.service::<Store>()?.write(|db| replay.insert(db)).await;
        let id = match inserted {
            Ok(row) => row.id,
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                return Err(CommandError::conflict(
                    "Replay failed",
                    "A request with this idempotency key was processed or is being processed; replaying it would run \
                     it twice",
                ));
            }
            Err(e) => return Err(CommandError::internal(e)),
        };

        let result = receive::run_and_record(ctx.services(), &entry, &request, id).await;
        let event = find(ctx, id, "Replay failed").await?;
        let message =
            if result.is_ok() { "Inbound event replayed" } else { "Inbound event replayed; the handler failed" };
        Answered::ok(InboundEvent::from(event), message)
    }
}
register_command!("ReplayInboundEventCommand" => ReplayInboundEventCommand);

async fn find(ctx: &Context, id: Uuid, message: &str) -> Result<entity::Model, CommandError> {
    entity::Entity::find_by_id(id)
        .one(ctx.service::<Store>()?.db())
        .await
        .or_internal()?
        .ok_or_else(|| CommandError::not_found(message, "No inbound event found with the specified ID"))
}
