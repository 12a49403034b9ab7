//! The three routes, the service they share, and the front of their pipeline: verify, read,
//! parse. What passes goes to [`dispatch`](crate::dispatch); what is refused is logged and
//! answered here.

use std::{sync::Arc, time::Instant};

use hookbus_configs::IpAllowList;
use hookbus_core::{CommandError, Reply, Services};
use hookbus_inbound::{FixedRouteEntry, HeaderRedaction, LogWriter};
use hookbus_router::InboundRequest;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{
    dispatch, mono,
    notification::Notification,
    remita::{self, StatusApi},
    settings::{BadSetting, ProviderSettings},
    verify::{SharedSecret, Verified, Verifier},
};

/// A fixed route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /api/webhooks/mono/callback`
    MonoCallback,
    /// `POST /api/webhooks/remita`
    RemitaPayment,
    /// `POST /api/webhooks/remita/collection-notification`
    RemitaCollection,
}

impl Route {
    pub const ALL: [Self; 3] = [Self::MonoCallback, Self::RemitaPayment, Self::RemitaCollection];

    pub fn path(self) -> &'static str {
        match self {
            Self::MonoCallback => "/api/webhooks/mono/callback",
            Self::RemitaPayment => "/api/webhooks/remita",
            Self::RemitaCollection => "/api/webhooks/remita/collection-notification",
        }
    }

    /// The key its requests are logged under: its path below `/api/webhooks/` (`mono/callback`).
    /// No configuration key has a `/`, so the two never mix in the log.
    pub fn log_key(self) -> &'static str {
        self.path().trim_start_matches("/api/webhooks/")
    }

    /// The namespace of its deduplication keys and event ids.
    pub(crate) fn provider(self) -> &'static str {
        match self {
            Self::MonoCallback => "mono",
            Self::RemitaPayment => "remita.payment",
            Self::RemitaCollection => "remita.collection",
        }
    }

    pub(crate) fn parse(self, body: &Value, max_items: usize) -> Result<Vec<Notification>, CommandError> {
        match self {
            Self::MonoCallback => mono::parse(body),
            Self::RemitaPayment => remita::payment::parse(body, max_items),
            Self::RemitaCollection => remita::collection::parse(body, max_items),
        }
    }
}

/// What the fixed routes need at run time, built once from the settings at start.
#[derive(Debug)]
pub struct Providers {
    max_items: usize,
    /// `None` until a secret is configured: the route answers 503.
    mono_secret: Option<SharedSecret>,
    /// `None` until an allow-list is configured (or any caller is allowed): the routes answer 503.
    remita_allow_list: Option<IpAllowList>,
    status_api: Option<StatusApi>,
    mono_forward: Option<String>,
    payment_forward: Option<String>,
    collection_forward: Option<String>,
}

impl Providers {
    /// From settings that passed [`ProviderSettings::check`]; the message names the key.
    pub fn new(settings: &ProviderSettings) -> Result<Self, BadSetting> {
        settings.check()?;
        let ProviderSettings { max_items, mono, remita } = settings;
        let key = |text: &str| Some(text.to_owned()).filter(|key| !key.is_empty());
        Ok(Self {
            max_items: *max_items,
            mono_secret: Some(&mono.secret).filter(|s| !s.is_empty()).map(|s| SharedSecret::new(s.expose())),
            remita_allow_list: remita_allow_list(remita)?,
            status_api: StatusApi::new(remita)?,
            mono_forward: key(&mono.forward_to_key),
            payment_forward: key(&remita.forward_to_key),
            collection_forward: key(&remita.collection_forward_to_key),
        })
    }

    /// The route's verifier, or 503 while the route lacks the settings it needs.
    fn verifier(&self, route: Route) -> Result<Verifier<'_>, CommandError> {
        match route {
            Route::MonoCallback => match &self.mono_secret {
                Some(secret) => Ok(Verifier::SharedSecret { header: mono::SECRET_HEADER, secret }),
                None => Err(CommandError::Rejected {
                    status: 503,
                    message: "route not configured".into(),
                    errors: vec!["no Mono secret is set (HOOKBUS_MONO_SECRET)".into()],
                }),
            },
            Route::RemitaPayment | Route::RemitaCollection => match &self.remita_allow_list {
                Some(list) => Ok(Verifier::AllowList(list)),
                None => Err(CommandError::Rejected {
                    status: 503,
                    message: "route not configured".into(),
                    errors: vec![
                        "no Remita allow-list is set (providers.remita.allowable_ips); Remita signs nothing, so \
                         anyone could post a notification"
                            .into(),
                    ],
                }),
            },
        }
    }

    /// The status API that confirms the route's notifications, if any.
    pub(crate) fn status_api(&self, route: Route) -> Option<&StatusApi> {
        self.status_api.as_ref().filter(|_| route == Route::RemitaPayment)
    }

    /// The router configuration that gets the route's accepted notifications too, if any.
    pub(crate) fn forward_key(&self, route: Route) -> Option<&str> {
        match route {
            Route::MonoCallback => self.mono_forward.as_deref(),
            Route::RemitaPayment => self.payment_forward.as_deref(),
            Route::RemitaCollection => self.collection_forward.as_deref(),
        }
    }
}

/// Who may call the Remita routes: the configured list; with none, anyone if `allow_any_ip` says
/// so (warned about, since Remita signs nothing), else nobody.
fn remita_allow_list(remita: &crate::RemitaSettings) -> Result<Option<IpAllowList>, BadSetting> {
    let list = IpAllowList::parse(&remita.allowable_ips)
        .map_err(|problems| BadSetting::new("providers.remita.allowable_ips", problems.join("; ")))?;
    if !list.is_empty() {
        return Ok(Some(list));
    }
    if remita.allow_any_ip {
        tracing::warn!(
            "providers.remita.allow_any_ip is set: anyone can post Remita notifications, which Remita does not sign"
        );
        return Ok(Some(list));
    }
    Ok(None)
}

/// A request to a fixed route whose caller its route's verifier accepted, before its body is read.
/// Only [`admit`] makes one, and [`receive`] takes nothing else: a body is read, parsed or stored
/// only for a verified caller.
#[derive(Debug)]
pub struct Admitted {
    route: Verified<Route>,
    started: Instant,
}

/// Verifies the caller of `route` from what arrives before the body: its IP (Remita) or its secret
/// header (Mono). Refused, the request is answered and logged by [`refuse`] without its body.
pub fn admit(services: &Services, route: Route, request: &InboundRequest) -> Result<Admitted, CommandError> {
    let started = Instant::now();
    let route = services.get::<Providers>()?.verifier(route)?.verify(request, route)?;
    Ok(Admitted { route, started })
}

/// Handles an admitted request and logs it. `body` is the body as read, or why it could not be
/// (too large, too slow).
pub async fn receive(
    services: &Arc<Services>,
    admitted: Admitted,
    mut request: InboundRequest,
    body: Result<Vec<u8>, CommandError>,
) -> Result<Reply, CommandError> {
    let Admitted { route, started } = admitted;
    let name = *route.get();
    match accept(services, route, &mut request, body).await {
        Ok(notifications) => {
            let entry =
                FixedRouteEntry::new(name.log_key(), request.clone(), started, services.get::<HeaderRedaction>()?)?;
            dispatch::dispatch(services, name, request, notifications, entry).await
        }
        Err(refused) => Err(log_refusal(services, name, request, refused, started).await),
    }
}

/// Runs a fixed route again on a request it logged (verified when it arrived, so not verified
/// again: its secret header is redacted in the log). The run is logged as a new entry that
/// replays the original; returns that entry's id.
pub(crate) async fn replay(
    services: &Arc<Services>,
    key: &str,
    request: InboundRequest,
    replay_of: uuid::Uuid,
) -> Result<uuid::Uuid, CommandError> {
    let route = Route::ALL
        .into_iter()
        .find(|route| route.log_key() == key)
        .ok_or_else(|| CommandError::not_found("Replay failed", "No fixed route logs under this key"))?;
    let providers = services.get::<Providers>()?;
    let notifications = Verified::replayed(route.parse(&request.body, providers.max_items)?);
    let mut entry =
        FixedRouteEntry::new(route.log_key(), request.clone(), Instant::now(), services.get::<HeaderRedaction>()?)?;
    entry.replays(replay_of);
    let id = entry.id();
    // The answer is the new entry's, read by the caller.
    let _ = dispatch::dispatch(services, route, request, notifications, entry).await;
    Ok(id)
}

/// The providers' replayer, registered as a service for the inbound crate's replay command.
#[derive(Debug)]
pub struct Replayer;

impl hookbus_inbound::FixedRouteReplayer for Replayer {
    fn replay<'a>(
        &'a self,
        services: &'a Arc<Services>,
        key: &'a str,
        request: InboundRequest,
        replay_of: uuid::Uuid,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<uuid::Uuid, CommandError>> + Send + 'a>> {
        Box::pin(replay(services, key, request, replay_of))
    }
}

/// What is kept of the body of a request whose caller was not verified: its size and digest,
/// never its content.
#[derive(Debug, Default, Clone)]
pub struct BodyDigest {
    bytes: u64,
    digest: Sha256,
    /// Whether the whole body was read (not cut short by the size limit or the read timeout).
    complete: bool,
}

impl BodyDigest {
    pub fn update(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        self.digest.update(chunk);
    }

    /// Marks the body as read to its end.
    pub fn completed(mut self) -> Self {
        self.complete = true;
        self
    }

    fn into_json(self) -> Value {
        json!({"notStored": {
            "bytes": self.bytes,
            "sha256": hex::encode(self.digest.finalize()),
            "complete": self.complete,
        }})
    }
}

/// Logs a request its route's verifier refused, its body as a [`BodyDigest`], and passes the
/// refusal on as the answer.
pub async fn refuse(
    services: &Services,
    route: Route,
    mut request: InboundRequest,
    body: BodyDigest,
    refusal: CommandError,
) -> CommandError {
    request.body = body.into_json();
    request.raw_body = String::new();
    request.body_from_raw = false;
    log_refusal(services, route, request, refusal, Instant::now()).await
}

/// Hands a refused request's finished entry to the batch writer; returns the refusal.
async fn log_refusal(
    services: &Services,
    route: Route,
    request: InboundRequest,
    refusal: CommandError,
    started: Instant,
) -> CommandError {
    if let (Ok(writer), Ok(redaction)) = (services.get::<LogWriter>(), services.get::<HeaderRedaction>())
        && let Ok(mut entry) = FixedRouteEntry::new(route.log_key(), request, started, redaction)
    {
        entry.finish(Err(&refusal));
        // A failure to log is logged where it happens; the caller still gets its answer.
        let _ = entry.write(writer).await;
    }
    refusal
}

/// Parses a verified request's body (which the log shows from here on) into notifications.
async fn accept(
    services: &Services,
    route: Verified<Route>,
    request: &mut InboundRequest,
    body: Result<Vec<u8>, CommandError>,
) -> Result<Verified<Vec<Notification>>, CommandError> {
    let providers = services.get::<Providers>()?;
    let name = *route.get();
    let body = route.try_map(|_| body)?;
    let json = body.try_map(|bytes| {
        serde_json::from_slice::<Value>(&bytes)
            .map_err(|e| CommandError::InvalidBody(format!("body is not valid JSON: {e}")))
    })?;
    let notifications = json.as_ref().try_map(|body| name.parse(body, providers.max_items));
    request.body = json.into_inner();
    notifications
}
