use std::{
    any::{Any, TypeId, type_name},
    collections::HashMap,
    fmt,
    sync::Arc,
};

use uuid::Uuid;

use crate::{CommandError, PermissionSet};

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// The token from `HOOKBUS_BOOTSTRAP_TOKEN`.
    Bootstrap,
    /// A stored API token, by id.
    Token(Uuid),
    /// hookbus itself, e.g. the router running a configured command.
    Internal(&'static str),
}

/// The owner a token is bound to. A bound token sees only that owner's subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Partner(Uuid),
    Customer(String),
}

/// An authenticated caller and what it may do.
#[derive(Debug, Clone)]
pub struct Principal {
    pub subject: Subject,
    pub permissions: PermissionSet,
    pub owner: Option<Owner>,
}

/// What a handler needs that is not in its command: shared services, by type.
///
/// Feature crates insert their services once at start-up; handlers borrow them with
/// [`Services::get`]. A type map keeps this crate free of storage and transport types.
#[derive(Default)]
pub struct Services {
    map: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl Services {
    pub fn insert<T: Send + Sync + 'static>(&mut self, service: T) {
        self.map.insert(TypeId::of::<T>(), Arc::new(service));
    }

    /// The service of type `T`, for a handler. A missing one is a wiring bug, reported as an
    /// internal error.
    pub fn get<T: Send + Sync + 'static>(&self) -> Result<&T, CommandError> {
        self.require().map_err(CommandError::internal)
    }

    /// The service of type `T`, for background work that keeps its own errors.
    pub fn require<T: Send + Sync + 'static>(&self) -> Result<&T, MissingService> {
        self.map
            .get(&TypeId::of::<T>())
            .and_then(|service| service.downcast_ref::<T>())
            .ok_or(MissingService(type_name::<T>()))
    }
}

impl fmt::Debug for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Services").field("count", &self.map.len()).finish()
    }
}

/// A service that was not put into [`Services`] at start-up: a wiring bug.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("service {0} was not registered at start-up")]
pub struct MissingService(&'static str);

/// Everything a command handler can see: the caller and the services.
#[derive(Debug, Clone)]
pub struct Context {
    pub principal: Principal,
    services: Arc<Services>,
    /// Services of this context alone, found before the shared ones: a routed request's store
    /// writing in its unit of work.
    local: Option<Arc<Services>>,
    /// The command was called by a script (`command()`), whose thread waits for it.
    in_script: bool,
}

impl Context {
    pub fn new(principal: Principal, services: Arc<Services>) -> Self {
        Self { principal, services, local: None, in_script: false }
    }

    /// This context, finding `local`'s services before the shared ones.
    pub fn with_local(self, local: Services) -> Self {
        Self { local: Some(Arc::new(local)), ..self }
    }

    /// The context of the commands a script calls. A script holds a thread of a fixed set while it
    /// waits for them, so commands that would wait for a script themselves (a replay, a
    /// supervised process start) refuse to run in it rather than risk waiting for ever.
    pub fn for_script(self) -> Self {
        Self { in_script: true, ..self }
    }

    /// Whether a script called this command and waits for it on its thread.
    pub fn in_script(&self) -> bool {
        self.in_script
    }

    /// Refuses (422) a command that must not run from a script: it would wait for a script
    /// itself.
    pub fn refuse_in_script(&self, command: &str) -> Result<(), CommandError> {
        if self.in_script {
            return Err(CommandError::Rejected {
                status: 422,
                message: "Not available in scripts".into(),
                errors: vec![format!(
                    "{command} cannot run from a script: it would wait for a script while this one waits for it"
                )],
            });
        }
        Ok(())
    }

    pub fn service<T: Send + Sync + 'static>(&self) -> Result<&T, CommandError> {
        if let Some(found) = self.local.as_ref().and_then(|local| local.require::<T>().ok()) {
            return Ok(found);
        }
        self.services.get::<T>()
    }

    /// A service of this context alone (see [`with_local`](Self::with_local)), if it has one.
    pub fn local<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.local.as_ref().and_then(|local| local.require::<T>().ok())
    }

    /// The shared services, for work that outlives the command (a spawned process run); the
    /// command's own work takes its services from [`service`](Self::service).
    pub fn services(&self) -> &Arc<Services> {
        &self.services
    }
}
