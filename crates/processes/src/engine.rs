//! Running instances: one step at a time, the state saved after each, under a lease so that an
//! instance whose server died is resumed by another (or by the same after a restart).

use std::{sync::Arc, time::Duration};

use chrono::Duration as Span;
use hookbus_core::{CommandError, Context, Delegation, MissingService, Services, Timestamp, error_chain};
use hookbus_router::{BusHost, Router, run_named, script_error};
use hookbus_script::{ScriptEngine, select};
use hookbus_store::{Store, UnitError, UnitOfWork};
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QuerySelect, sea_query::Expr};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    ProcessStatus,
    commands::{CorruptAuthority, unrecorded_authority},
    definition::{self, Mapped, Step},
    entity::{definition as definitions, instance as instances},
};

/// The engine's settings; one per application, in the services.
#[derive(Debug, Clone)]
pub struct ProcessEngine {
    /// How long a running instance is its runner's before another may resume it.
    pub lease: Duration,
    /// How often orphaned instances are looked for.
    pub poll: Duration,
    /// How long a `Supervised` start waits for the end.
    pub supervised_wait: Duration,
}

impl ProcessEngine {
    fn lease_until(&self) -> Timestamp {
        hookbus_core::now() + Span::from_std(self.lease).unwrap_or(Span::minutes(1))
    }

    /// Starts running instance `id` in the background.
    pub(crate) fn spawn_run(&self, services: Arc<Services>, id: Uuid) -> tokio::task::JoinHandle<()> {
        let engine = self.clone();
        tokio::spawn(async move {
            // A step's failure is recorded on the instance; the engine's own is logged.
            if let Err(error) = engine.run(&services, id).await {
                tracing::warn!(instance = %id, error = %error_chain(&error), "process instance stopped");
            }
        })
    }

    /// Resumes running instances whose lease ran out, until the runtime stops.
    pub fn spawn_resumer(&self, services: Arc<Services>) -> tokio::task::JoinHandle<()> {
        let engine = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(engine.poll);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(error) = engine.resume_orphans(&services).await {
                    tracing::warn!(error = %error_chain(&error), "looking for process instances to resume failed");
                }
            }
        })
    }

    async fn resume_orphans(&self, services: &Arc<Services>) -> Result<(), EngineError> {
        let store = services.require::<Store>()?;
        let now = hookbus_core::now();
        let orphans: Vec<Uuid> = instances::Entity::find()
            .select_only()
            .column(instances::Column::Id)
            .filter(instances::Column::Status.eq(ProcessStatus::Running))
            .filter(instances::Column::LeaseUntil.lt(now))
            .limit(32)
            .into_tuple()
            .all(store.db())
            .await?;
        for id in orphans {
            // One conditional update: of several instances looking, one takes it.
            let taken = instances::Entity::update_many()
                .col_expr(instances::Column::LeaseUntil, Expr::value(Some(self.lease_until())))
                .filter(instances::Column::Id.eq(id))
                .filter(instances::Column::Status.eq(ProcessStatus::Running))
                .filter(instances::Column::LeaseUntil.lt(now))
                .exec(store.db())
                .await?;
            if taken.rows_affected == 1 {
                self.spawn_run(Arc::clone(services), id);
            }
        }
        Ok(())
    }

    /// Runs the instance's remaining steps, saving after each.
    async fn run(&self, services: &Arc<Services>, id: Uuid) -> Result<(), EngineError> {
        let store = services.require::<Store>()?;
        let Some(first) = self.running(store, id).await? else { return Ok(()) };
        // Read once: definitions never change, and cannot be deleted while an instance runs.
        let steps = match definitions::Entity::find_by_id(first.definition_id).one(store.db()).await? {
            Some(found) => definition::parse(&found.steps),
            None => Err("the process definition no longer exists".to_owned()),
        };
        let steps = match steps {
            Ok(steps) => steps,
            Err(problem) => return Ok(self.finish(store, &first, ProcessStatus::Error, Some(problem), None).await?),
        };
        let run_as = match &first.run_as {
            Some(text) => Delegation::from_stored(text).map_err(CorruptAuthority)?,
            None => unrecorded_authority(),
        };
        let mut next = Some(first);
        // Each round reads the instance again: a cancellation between steps stops it.
        while let Some(instance) = next.take() {
            let index = usize::try_from(instance.current_step).unwrap_or(usize::MAX);
            let Some(step) = steps.get(index) else {
                return Ok(self.finish(store, &instance, ProcessStatus::Completed, None, None).await?);
            };
            // Renew the lease for this step; a cancelled instance stops here.
            let renewed = instances::Entity::update_many()
                .col_expr(instances::Column::LeaseUntil, Expr::value(Some(self.lease_until())))
                .filter(instances::Column::Id.eq(id))
                .filter(instances::Column::Status.eq(ProcessStatus::Running))
                .exec(store.db())
                .await?;
            if renewed.rows_affected == 0 {
                return Ok(());
            }

            let started = hookbus_core::now();
            // The lease is renewed while the step runs, however long it takes: only a runner
            // that died loses its instance.
            let heartbeat = self.spawn_heartbeat(store.clone(), id);
            // The step's writes commit with its saved state, or not at all.
            let unit = UnitOfWork::new(store);
            let in_unit = store.within(&unit);
            let outcome = run_step(services, &in_unit, step, &instance.variables, &run_as).await;
            heartbeat.abort();
            let mut log = instance.step_log.as_array().cloned().unwrap_or_default();
            let mut entry = json!({"name": step.name(), "startedAt": started, "finishedAt": hookbus_core::now()});
            match outcome {
                Ok(output) => {
                    entry["output"] = output.clone();
                    log.push(entry);
                    let mut variables = instance.variables.clone();
                    if let Value::Object(map) = &mut variables {
                        map.insert(step.name().to_owned(), output);
                    }
                    // Saved only if this runner still owns the step (not cancelled, not taken over).
                    let saved = instances::Entity::update_many()
                        .col_expr(instances::Column::Variables, Expr::value(variables))
                        .col_expr(instances::Column::StepLog, Expr::value(Value::Array(log)))
                        .col_expr(instances::Column::CurrentStep, Expr::value(instance.current_step + 1))
                        .col_expr(instances::Column::UpdatedAt, Expr::value(hookbus_core::now()))
                        .filter(instances::Column::Id.eq(id))
                        .filter(instances::Column::Status.eq(ProcessStatus::Running))
                        .filter(instances::Column::CurrentStep.eq(instance.current_step))
                        .exec(in_unit.db())
                        .await;
                    drop(in_unit);
                    match saved {
                        Ok(saved) if saved.rows_affected == 1 => unit.commit().await.map_err(|e| match e {
                            UnitError::Database(e) => e,
                            other => DbErr::Custom(other.to_string()),
                        })?,
                        // Cancelled or taken over meanwhile: the step's writes go with it.
                        Ok(_) => {
                            unit.rollback().await;
                            return Ok(());
                        }
                        Err(error) => {
                            unit.rollback().await;
                            return Err(error.into());
                        }
                    }
                    next = self.running(store, id).await?;
                }
                Err(error) => {
                    drop(in_unit);
                    unit.rollback().await;
                    entry["error"] = error.summary();
                    log.push(entry);
                    let message = format!("step {} ({}) failed: {}", index, step.name(), error.message());
                    return Ok(self.finish(store, &instance, ProcessStatus::Error, Some(message), Some(log)).await?);
                }
            }
        }
        // Cancelled (or taken over) between steps.
        Ok(())
    }

    fn spawn_heartbeat(&self, store: Store, id: Uuid) -> tokio::task::JoinHandle<()> {
        let engine = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(engine.lease / 3).await;
                let _ = instances::Entity::update_many()
                    .col_expr(instances::Column::LeaseUntil, Expr::value(Some(engine.lease_until())))
                    .filter(instances::Column::Id.eq(id))
                    .filter(instances::Column::Status.eq(ProcessStatus::Running))
                    .exec(store.db())
                    .await;
            }
        })
    }

    /// The instance, if it is still running.
    async fn running(&self, store: &Store, id: Uuid) -> Result<Option<instances::Model>, DbErr> {
        let instance = instances::Entity::find_by_id(id).one(store.db()).await?;
        Ok(instance.filter(|instance| instance.status == ProcessStatus::Running))
    }

    async fn finish(
        &self,
        store: &Store,
        instance: &instances::Model,
        final_status: ProcessStatus,
        error: Option<String>,
        log: Option<Vec<Value>>,
    ) -> Result<(), DbErr> {
        let mut update = instances::Entity::update_many()
            .col_expr(instances::Column::Status, Expr::value(final_status))
            .col_expr(instances::Column::Error, Expr::value(error))
            .col_expr(instances::Column::LeaseUntil, Expr::value(Option::<Timestamp>::None))
            .col_expr(instances::Column::UpdatedAt, Expr::value(hookbus_core::now()))
            .col_expr(instances::Column::CompletedAt, Expr::value(Some(hookbus_core::now())));
        if let Some(log) = log {
            update = update.col_expr(instances::Column::StepLog, Expr::value(Value::Array(log)));
        }
        update
            .filter(instances::Column::Id.eq(instance.id))
            .filter(instances::Column::Status.eq(ProcessStatus::Running))
            .exec(store.db())
            .await?;
        Ok(())
    }
}

/// What stops the engine running an instance; a step's own failure is recorded on the instance.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the database failed")]
    Database(#[from] DbErr),
    #[error(transparent)]
    Wiring(#[from] MissingService),
    #[error(transparent)]
    Authority(#[from] CorruptAuthority),
}

/// Runs one step with the instance's authority.
async fn run_step(
    services: &Arc<Services>,
    store: &Store,
    step: &Step,
    variables: &Value,
    run_as: &Delegation,
) -> Result<Value, CommandError> {
    let principal = services.get::<Router>()?.principal(run_as, "process");
    let mut local = Services::default();
    local.insert(store.clone());
    let ctx = Context::new(principal, Arc::clone(services)).with_local(local);
    match step {
        Step::Command { command, input, .. } => {
            let fields = match input {
                None => variables.clone(),
                Some(fields) => Value::Object(
                    fields
                        .iter()
                        .map(|(field, mapped)| {
                            let value = match mapped {
                                Mapped::Path(query) => select(query, variables),
                                Mapped::Literal(value) => value.clone(),
                            };
                            (field.clone(), value)
                        })
                        .collect(),
                ),
            };
            run_named(command, &fields, &ctx).await.map(|reply| reply.data.into_value())
        }
        Step::Script { name, code } => {
            let engine_services = Arc::clone(services);
            let (code, name, variables) = (code.clone(), name.clone(), variables.clone());
            let host = Arc::new(BusHost::new(ctx));
            // Not on the router's script threads: a router script can start a process
            // (`start_process`), and a script thread waiting for another script thread of a fixed
            // set could wait for ever.
            let outcome = tokio::task::spawn_blocking(move || {
                let engine = engine_services.get::<ScriptEngine>()?;
                let ast = engine.compile(&code).map_err(|e| CommandError::validation(e.to_string()))?;
                Ok::<_, CommandError>(engine.run(&ast, &[("context", &variables)], host, &name))
            })
            .await
            .map_err(CommandError::internal)??;
            outcome.map_err(script_error)
        }
    }
}
