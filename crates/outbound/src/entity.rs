//! The tables of outbound delivery.

pub mod event_type {
    use sea_orm::entity::prelude::*;

    /// A custom event type, registered with `RegisterEventTypeCommand` (built-in ones live in code).
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "event_types")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub description: String,
        pub sample_payload: Option<Json>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod event {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The publisher's `eventId`, else `id` as text. Unique: a repeat is answered with the
        /// first result.
        pub event_key: String,
        pub event_name: String,
        pub resource: Option<String>,
        pub data: Json,
        pub changed_attributes: Option<Json>,
        pub simulated: bool,
        /// How many notifications publishing created.
        pub notifications: i32,
        pub occurred_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod subscription {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "subscriptions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub partner_id: Option<Uuid>,
        pub customer_id: Option<String>,
        pub name: String,
        pub webhook_uri: String,
        /// Encrypted with the server's key (see `secret.rs`).
        pub secret: String,
        /// The mask reads show instead of the secret (`whsec_****abcd`).
        pub secret_hint: String,
        /// The secret before the last rotation, still signing until `previous_secret_until`.
        pub previous_secret: Option<String>,
        pub previous_secret_until: Option<DateTimeUtc>,
        pub is_active: bool,
        pub subscribe_all: bool,
        /// Event names, as a JSON array (also in `subscription_events`, for lookup).
        pub events: Json,
        pub resource: Option<String>,
        /// `{attributes: [...], match: [...]}`.
        pub filters: Json,
        pub delivery_policy: crate::status::DeliveryPolicy,
        pub max_attempts: i32,
        pub retry_interval_seconds: i32,
        /// Header name -> list of values.
        pub headers: Json,
        pub hmac_enabled: bool,
        pub secure_ssl: bool,
        pub tag: Option<String>,
        pub suspended: bool,
        pub suspended_at: Option<DateTimeUtc>,
        /// Notifications that expired in a row; reaching the configured limit suspends.
        pub expired_streak: i32,
        pub last_delivery_at: Option<DateTimeUtc>,
        pub last_delivery_status: Option<String>,
        pub last_http_status: Option<i32>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        /// Attempts in flight at once, at most; `None`: `outbound.per_subscription_concurrency`.
        pub max_concurrency: Option<i32>,
        /// Attempts started per second, at most; `None`: no limit.
        pub rate_limit_per_second: Option<i32>,
        pub ordering: crate::status::Ordering,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod lane {
    use sea_orm::entity::prelude::*;

    /// A subscription's delivery lane: which instance sends for it, when work waits for one, and
    /// its endpoint's circuit breaker.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "delivery_lanes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub subscription_id: Uuid,
        /// The instance sending for the subscription, while `lease_until` lasts.
        pub owner: Option<Uuid>,
        pub lease_until: Option<DateTimeUtc>,
        /// Work waits for an instance to take the lane from this time on.
        pub due_at: Option<DateTimeUtc>,
        pub healthy: bool,
        pub unhealthy_since: Option<DateTimeUtc>,
        pub next_probe_at: Option<DateTimeUtc>,
        /// The breaker's current cool-down, doubled after each failed probe.
        pub cooldown_secs: i32,
        /// The failure that made the endpoint unhealthy.
        pub health_reason: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod key_check {
    use sea_orm::entity::prelude::*;

    /// A value made with a configured key, never the key: start-up checks the key against it.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "key_checks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub value: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod subscription_event {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "subscription_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub subscription_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_name: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod notification {
    use sea_orm::entity::prelude::*;

    /// One event for one subscription, and its place in the delivery queue.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "notifications")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub event_id: Uuid,
        pub subscription_id: Uuid,
        pub event_name: String,
        pub status: crate::NotificationStatus,
        /// Attempts since it was last queued (a resend starts again from zero).
        pub attempts: i32,
        /// When it is due, while it waits to be sent (`Pending`, `Failed`). For reading only: the
        /// queue is [`queue_entry`](super::queue_entry).
        pub next_attempt_at: Option<DateTimeUtc>,
        pub last_attempt_at: Option<DateTimeUtc>,
        pub last_http_status: Option<i32>,
        pub last_error: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub delivered_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod queue_entry {
    use sea_orm::entity::prelude::*;

    /// A notification still to be sent: when it is due, and until when an instance holds it.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "delivery_queue")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub notification_id: Uuid,
        pub subscription_id: Uuid,
        pub next_attempt_at: DateTimeUtc,
        /// Set while an instance holds it; after that any instance may take it over.
        pub lease_until: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod attempt {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "delivery_attempts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub notification_id: Uuid,
        pub attempt: i32,
        pub attempted_at: DateTimeUtc,
        pub duration_ms: i64,
        pub http_status: Option<i32>,
        pub error: Option<String>,
        pub response_excerpt: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
