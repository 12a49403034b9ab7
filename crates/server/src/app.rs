//! Wiring: the database, the services every feature crate needs, and the HTTP server.

use std::{borrow::Cow, net::SocketAddr, rc::Rc, sync::Arc, time::Duration};

use actix_http::{HttpService, KeepAlive};
use actix_server::Server;
use actix_service::{IntoServiceFactory, ServiceFactoryExt, fn_service, map_config};
use actix_web::{
    App, HttpMessage,
    dev::{AppConfig, ServerHandle, Service},
    http::header::{HeaderName, HeaderValue},
    rt::net::TcpStream,
    web,
};
use hookbus_configs::ConfigCache;
use hookbus_core::Services;
use hookbus_inbound::{AsyncWorker, Handoff, HeaderRedaction, Intake, LogWriter, Outcomes};
use hookbus_outbound::{DeliveryMetrics, Outbound};
use hookbus_processes::ProcessEngine;
use hookbus_providers::Providers;
use hookbus_router::{Router, TrustedProxies};
use hookbus_script::{ScriptEngine, ScriptThreads};
use hookbus_store::{GroupCommitMetrics, Store};
use hookbus_tokens::TokenAuthority;
use tracing_actix_web::{RequestId, TracingLogger};
use uuid::Uuid;

use crate::{
    body::BodyLimits,
    connection::{ConnectionLimits, GuardedStream, RequestClock, ServingGuard},
    metrics::Metrics,
    routes,
    routes::inbound::RouteLabel,
    settings::{Settings, SettingsError},
    state::AppState,
    telemetry::RequestSpan,
};

/// A start-up failure.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Settings(crate::settings::SettingsError),
    #[error("cannot open the database")]
    Database(#[source] sea_orm::DbErr),
    #[error("cannot apply the migrations")]
    Migrate(#[source] sea_orm::DbErr),
    #[error("cannot load the router configurations")]
    Cache(#[source] hookbus_configs::CacheError),
    #[error("outbound.encryption_key_file: cannot read or create the key file")]
    EncryptionKey(#[source] std::io::Error),
    #[error("outbound.encryption_key: {0}")]
    Outbound(hookbus_outbound::BadKey),
    #[error(transparent)]
    KeyCheck(hookbus_outbound::KeyCheckError),
    #[error(transparent)]
    Providers(#[from] hookbus_providers::BadSetting),
    #[error("server.trusted_proxies")]
    TrustedProxies(#[source] hookbus_router::BadProxy),
    #[error("cannot start the script threads")]
    ScriptThreads(#[source] std::io::Error),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The application every worker serves: routes, metrics and request ids, and the mark on the
/// connection's clock while a request is being served.
fn application(
    state: web::Data<AppState>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(state)
        .wrap_fn(|request, service| {
            let state = request.app_data::<web::Data<AppState>>().cloned();
            let request_id = request.extensions().get::<RequestId>().copied();
            // The request's head is complete; its connection waits for its answer.
            let serving = request.conn_data::<Rc<RequestClock>>().map(ServingGuard::start);
            let response = service.call(request);
            async move {
                let mut response = response.await?;
                drop(serving);
                if let Some(state) = state {
                    // After routing, the pattern is looked up from the matched resource; before
                    // it, finding it would match the path against every route again.
                    let label = response.request().extensions().get::<RouteLabel>().copied();
                    let route = match label {
                        Some(label) => Cow::Borrowed(label.0),
                        None => response.request().match_pattern().map_or(Cow::Borrowed("unmatched"), Cow::Owned),
                    };
                    state.metrics.record_request(route, response.request().method(), response.status().as_u16());
                }
                let request_id = request_id.and_then(|id| {
                    HeaderValue::from_str(id.hyphenated().encode_lower(&mut Uuid::encode_buffer())).ok()
                });
                if let Some(id) = request_id {
                    response.headers_mut().insert(HeaderName::from_static("x-request-id"), id);
                }
                Ok(response)
            }
        })
        .wrap(TracingLogger::<RequestSpan>::new())
        .service(
            web::resource("/api/bpm/cmd")
                .route(web::post().to(routes::bus::execute))
                .default_service(web::to(routes::bus::method_not_allowed)),
        )
        .service(routes::get_only("/api/bpm/commands", routes::bus::list))
        .service(routes::get_only("/healthz", routes::ops::healthz))
        .service(routes::get_only("/readyz", routes::ops::readyz))
        .service(routes::get_only("/metrics", routes::ops::metrics))
        .service(routes::get_only("/api/openapi.json", routes::ops::openapi))
        .configure(routes::partner::register)
        // Before the dynamic router's `{key}`, so that the fixed routes win.
        .configure(routes::providers::register)
        .service(web::scope(routes::inbound::WEBHOOKS).default_service(web::to(routes::inbound::by_key)))
        .default_service(web::to(routes::inbound::by_path))
}

/// A listening socket as actix binds one: address reuse, a backlog of 1,024.
fn listen(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// A built server, listening but not yet serving.
pub struct Application {
    server: Server,
    addr: SocketAddr,
    /// The configuration refresher and the async worker: they stop when the server stops.
    background: Vec<tokio::task::JoinHandle<()>>,
    /// Drained (attempts under way finish) before the background tasks stop.
    outbound: Outbound,
    shutdown_timeout: Duration,
    quiescence: Quiescence,
}

/// Waits for an application to have nothing left to do for now: its inbound log written, and its
/// deliveries settled (nothing in memory, in flight or due). Tests wait on it instead of
/// sleeping.
#[derive(Debug, Clone)]
pub struct Quiescence {
    log: LogWriter,
    deliveries: hookbus_outbound::Dispatcher,
    store: Store,
}

impl Quiescence {
    pub async fn settled(&self) {
        self.log.idle().await;
        if let Err(error) = self.deliveries.settled(&self.store).await {
            tracing::warn!(error = %hookbus_core::error_chain(&error), "cannot tell whether deliveries settled");
        }
        self.log.idle().await;
    }
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application").field("addr", &self.addr).finish()
    }
}

impl Application {
    /// Opens and migrates the database, builds the services and binds the listener.
    ///
    /// The server does not handle signals itself: `main` turns SIGTERM into a graceful
    /// [`ServerHandle::stop`], and tests stop it through the handle.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        settings.check().map_err(StartupError::Settings)?;
        let db = hookbus_store::connect(&settings.database.url, settings.database.max_connections)
            .await
            .map_err(StartupError::Database)?;
        hookbus_store::migrate(&db).await.map_err(StartupError::Migrate)?;
        for warning in hookbus_store::server_warnings(&db).await.map_err(StartupError::Database)? {
            tracing::warn!("{warning}");
        }

        let scripts = ScriptEngine::new(settings.script.clone());
        let configs = ConfigCache::load(db.clone(), scripts.clone()).await.map_err(StartupError::Cache)?;
        let mut background = vec![configs.spawn_refresher(Duration::from_millis(settings.router.config_refresh_ms))];

        let bootstrap = Some(settings.auth.bootstrap_token.as_str()).filter(|t| !t.is_empty());
        let mut services = Services::default();
        // One store per instance: on SQLite it holds the queue every writer of the instance waits in.
        let store = Store::new(db.clone());
        services.insert(store.clone());
        services.insert(TokenAuthority::new(db.clone(), bootstrap));
        services.insert(scripts);
        services.insert(ScriptThreads::start(settings.script.threads).map_err(StartupError::ScriptThreads)?);
        services.insert(configs.clone());
        services.insert(Router::new(settings.router.permissions()));
        let log = LogWriter::spawn(store.clone(), 10_000);
        services.insert(log.clone());
        let group_commits = GroupCommitMetrics::default();
        services.insert(Intake::new(&store, &group_commits));
        services.insert(Outcomes::new(&store, &group_commits));
        let (handoff, handovers) =
            Handoff::new(settings.inbound.async_handoff, Duration::from_secs(settings.inbound.async_lease_secs));
        services.insert(handoff);
        services.insert(HeaderRedaction::new(&settings.inbound.redact_headers).map_err(|problem| {
            StartupError::Settings(SettingsError::new(format!("inbound.redact_headers: {problem}")))
        })?);
        let processes = ProcessEngine {
            lease: Duration::from_secs(settings.processes.lease_secs),
            poll: Duration::from_millis(settings.processes.poll_ms),
            supervised_wait: Duration::from_millis(settings.processes.supervised_wait_ms),
        };
        services.insert(processes.clone());
        let mut outbound_settings = settings.outbound.clone();
        outbound_settings.resolve_key().map_err(StartupError::EncryptionKey)?;
        let delivery_metrics = DeliveryMetrics::default();
        // The key that seals what is stored secret: signing secrets, queued requests' secret headers.
        services.insert(
            hookbus_outbound::secret::Sealer::from_base64(&outbound_settings.encryption_key)
                .map_err(StartupError::Outbound)?,
        );
        let outbound = Outbound::new(outbound_settings, delivery_metrics.clone(), &store, &group_commits)
            .map_err(StartupError::Outbound)?;
        outbound.check_key(&db).await.map_err(StartupError::KeyCheck)?;
        services.insert(outbound.clone());
        services.insert(Providers::new(&settings.providers).map_err(StartupError::Providers)?);
        services.insert(hookbus_inbound::FixedRoutes(Arc::new(hookbus_providers::Replayer)));
        let services = Arc::new(services);
        let inbound = &settings.inbound;
        background.push(crate::retention::spawn(
            store.clone(),
            Duration::from_secs(inbound.retention_days.saturating_mul(86_400)),
            Duration::from_secs(inbound.retention_sweep_secs.max(1)),
        ));
        let quiescence = Quiescence { log, deliveries: outbound.dispatcher.clone(), store: store.clone() };
        background.extend(outbound.spawn(store));
        let worker = AsyncWorker {
            poll: Duration::from_millis(inbound.async_poll_ms),
            lease: Duration::from_secs(inbound.async_lease_secs),
            max_attempts: inbound.async_max_attempts,
            retry_base: Duration::from_millis(inbound.async_retry_base_ms),
        }
        .spawn(Arc::clone(&services), handovers);
        background.push(worker);
        background.push(processes.spawn_resumer(Arc::clone(&services)));
        let trusted_proxies =
            TrustedProxies::parse(&settings.server.trusted_proxies).map_err(StartupError::TrustedProxies)?;

        let state = web::Data::new(AppState {
            services,
            configs,
            trusted_proxies,
            metrics: Arc::new(Metrics::new(&delivery_metrics, &group_commits)),
            db,
            body_limits: BodyLimits {
                bytes: settings.server.body_limit_bytes,
                read_timeout: Duration::from_millis(settings.server.body_read_timeout_ms),
            },
        });

        let workers = match settings.server.workers {
            0 => std::thread::available_parallelism().map_or(2, usize::from),
            n => n,
        };
        let keep_alive = match settings.server.keep_alive_secs {
            0 => KeepAlive::Disabled,
            secs => KeepAlive::Timeout(Duration::from_secs(secs)),
        };
        let head_timeout = Duration::from_millis(settings.server.client_request_timeout_ms);
        let limits = ConnectionLimits {
            head: head_timeout,
            between_requests: (settings.server.keep_alive_secs > 0)
                .then(|| Duration::from_secs(settings.server.keep_alive_secs) + head_timeout),
        };
        // What `actix_web::HttpServer` builds, but over a `GuardedStream` per connection, so that
        // every request head has a time limit (see `connection`).
        let listener = listen(settings.server.listen)
            .map_err(|source| StartupError::Bind { addr: settings.server.listen, source })?;
        let addr = listener.local_addr().unwrap_or(settings.server.listen);
        let builder = Server::build();
        let shutting_down = builder.graceful_shutdown_signal();
        let server = builder
            .workers(workers)
            .shutdown_timeout(settings.server.shutdown_timeout_secs)
            .disable_signals()
            .listen("hookbus", listener, move || {
                let shutting_down = shutting_down.clone();
                let http = HttpService::<GuardedStream, _, _>::build()
                    .keep_alive(keep_alive)
                    .client_request_timeout(head_timeout)
                    .client_disconnect_timeout(Duration::from_secs(1))
                    .graceful_shutdown_signal(move || {
                        let signal = shutting_down.clone();
                        async move { signal.notified().await }
                    })
                    .on_connect_ext(|io: &GuardedStream, connection| {
                        connection.insert(io.clock());
                    })
                    .h1(map_config(application(state.clone()).into_factory(), |_| AppConfig::default()));
                fn_service(move |io: TcpStream| async move {
                    let peer = io.peer_addr().ok();
                    Ok((GuardedStream::new(io, limits), peer))
                })
                .and_then(http)
            })
            .map_err(|source| StartupError::Bind { addr, source })?
            .run();
        Ok(Self {
            server,
            addr,
            background,
            outbound,
            shutdown_timeout: Duration::from_secs(settings.server.shutdown_timeout_secs),
            quiescence,
        })
    }

    /// What tells when this application has nothing left to do for now.
    pub fn quiescence(&self) -> Quiescence {
        self.quiescence.clone()
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server: gracefully (finishing in-flight requests) or at once.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped through the handle, lets delivery attempts under way finish (up to
    /// the shutdown timeout), then stops the background tasks. (Work claimed and not finished is
    /// taken up again when its lease runs out.)
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.outbound.dispatcher.drain(self.shutdown_timeout).await;
        for task in &self.background {
            task.abort();
        }
        result
    }
}
