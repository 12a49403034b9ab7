//! The OpenAPI 3.1 document of hookbus's HTTP API, generated from the Rust types the commands,
//! answers, routes and deliveries use: every schema comes from `schemars`, so the document cannot
//! drift from the code. `GET /api/openapi.json` serves it with the event catalog as it stands
//! (registered events included); `hookbus openapi` prints it with the built-in events.

use std::collections::{BTreeMap, HashMap};

use hookbus_core::Envelope;
use hookbus_outbound::{DeliveryBody, catalog::EventType};
use hookbus_providers::Route;
use schemars::{JsonSchema, Schema, SchemaGenerator, generate::SchemaSettings};
use serde_json::{Map, Value, json};

use crate::routes::{
    bus::CommandDescription,
    partner::{self, NewUri, OwnerOnly, PartnerSubscription, PartnerSubscriptionView, Simulation},
};

/// The whole document, its `webhooks` listing `events`.
pub fn document(events: &[EventType]) -> Value {
    let mut doc = Document::default();
    let mut paths = Map::new();
    paths.insert("/api/bpm/cmd".into(), doc.bus());
    paths.insert("/api/bpm/commands".into(), doc.commands_list());
    paths.insert("/api/openapi.json".into(), doc.openapi_path());
    for (route, item) in doc.partner() {
        paths.insert(format!("{}/{route}", partner::PREFIX), item);
    }
    for route in Route::ALL {
        paths.insert(route.path().into(), doc.provider(route));
    }
    paths.insert("/api/webhooks/{key}".into(), doc.router());
    paths.insert("/healthz".into(), doc.health("The process is up.", false));
    paths.insert("/readyz".into(), doc.health("The process is up and its database answers.", true));
    paths.insert("/metrics".into(), metrics());
    let webhooks = doc.webhooks(events);
    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "hookbus",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A webhook hub: a command bus for management (`POST /api/bpm/cmd`), \
                the partner API under `/api/Webhook/`, an inbound router for webhooks that \
                configurations define at run time, fixed provider callbacks, and signed outbound \
                deliveries (described under `webhooks`). Every error answers the envelope \
                `{success: false, data: null, message, errors}`.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "tags": [
            {"name": "bus", "description": "Management commands"},
            {"name": "partner", "description": "Partners manage their own subscriptions"},
            {"name": "inbound", "description": "Webhooks hookbus receives"},
            {"name": "operations", "description": "Health, readiness and metrics"},
        ],
        "paths": paths,
        "webhooks": webhooks,
        "components": {
            "schemas": doc.schemas,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token (`CreateApiTokenCommand`, `hookbus token create`) or the \
                        bootstrap token. A token bound to a partner or customer acts for that owner only.",
                },
                "monoSecret": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "mono-webhook-secret",
                    "description": "The secret shared with Mono (`providers.mono.secret`).",
                },
            },
        },
    })
}

/// The components collected while the paths are built.
#[derive(Default)]
struct Document {
    schemas: Map<String, Value>,
    /// Each component's schema as generated, before its references were rewritten: a type met
    /// again under the same name is the same component only when it generated the same schema.
    generated: HashMap<String, Value>,
}

impl Document {
    /// Adds `schema` as component `name` (or the next free `name2`, `name3`, … when another
    /// schema has that name) with its `$defs` as components too; returns a reference to it.
    fn add(&mut self, name: &str, schema: Schema) -> Value {
        let mut root = schema.to_value();
        let defs = root.as_object_mut().and_then(|root| root.remove("$defs"));
        if let Some(root) = root.as_object_mut() {
            root.remove("$schema");
            // A type's title is its name, as the component's name is: without it, the type met
            // as a root and as another's `$defs` entry is one component.
            if root.get("title").and_then(Value::as_str) == Some(name) {
                root.remove("title");
            }
        }
        let mut renamed = BTreeMap::new();
        let mut added = Vec::new();
        for (def, schema) in defs.and_then(|defs| defs.as_object().cloned()).unwrap_or_default() {
            let (final_name, new) = self.claim(&def, &schema);
            renamed.insert(def, final_name.clone());
            if new {
                added.push((final_name, schema));
            }
        }
        let (root_name, root_new) = self.claim(name, &root);
        for (name, mut schema) in added {
            rewrite_refs(&mut schema, &renamed, &root_name);
            self.schemas.insert(name, schema);
        }
        if root_new {
            rewrite_refs(&mut root, &renamed, &root_name);
            self.schemas.insert(root_name.clone(), root);
        }
        reference(&root_name)
    }

    /// The component name `schema` goes under, and whether it is new.
    fn claim(&mut self, name: &str, schema: &Value) -> (String, bool) {
        let name: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
        for n in 1.. {
            let candidate = if n == 1 { name.clone() } else { format!("{name}{n}") };
            match self.generated.get(&candidate) {
                Some(existing) if existing == schema => return (candidate, false),
                Some(_) => continue,
                None => {
                    self.generated.insert(candidate.clone(), schema.clone());
                    return (candidate, true);
                }
            }
        }
        unreachable!("some suffix is free")
    }

    fn add_type<T: JsonSchema>(&mut self) -> Value {
        let schema = SchemaGenerator::default().into_root_schema_for::<T>();
        self.add(&T::schema_name(), schema)
    }

    fn add_answer_type<T: JsonSchema>(&mut self) -> Value {
        let schema = SchemaSettings::default().for_serialize().into_generator().into_root_schema_for::<T>();
        self.add(&T::schema_name(), schema)
    }

    /// The envelope of a success whose `data` is `data`.
    fn success(&mut self, data: Value) -> Value {
        let envelope = self.add_answer_type::<Envelope>();
        json!({"allOf": [envelope, {
            "type": "object",
            "required": ["success", "data", "message"],
            "properties": {"success": {"const": true}, "data": data},
        }]})
    }

    /// The error envelope, as a component.
    fn error(&mut self) -> Value {
        if !self.schemas.contains_key("Error") {
            let envelope = self.add_answer_type::<Envelope>();
            self.schemas.insert(
                "Error".into(),
                json!({
                    "description": "Every error: the status says which, `errors` says what.",
                    "allOf": [envelope, {
                        "type": "object",
                        "required": ["success", "data", "message", "errors"],
                        "properties": {
                            "success": {"const": false},
                            "data": {"type": "null"},
                            "errors": {"type": "array", "items": {"type": "string"}},
                        },
                    }],
                }),
            );
        }
        reference("Error")
    }

    /// Error responses with these statuses.
    fn errors(&mut self, statuses: &[u16]) -> Map<String, Value> {
        let error = self.error();
        statuses
            .iter()
            .map(|status| {
                let mut response = json!({
                    "description": error_description(*status),
                    "content": {"application/json": {"schema": error}},
                });
                if *status == 405 {
                    response["headers"] =
                        json!({"Allow": {"schema": {"type": "string"}, "description": "The methods the path takes"}});
                }
                (status.to_string(), response)
            })
            .collect()
    }

    fn bus(&mut self) -> Value {
        let mut variants = Vec::new();
        let mut mapping = Map::new();
        let mut answers = Vec::new();
        let mut by_command = Map::new();
        let mut table = String::from("| Command | Permission |\n|---|---|\n");
        for info in hookbus_core::catalog() {
            let mut schema = info.schema().to_value();
            let Some(object) = schema.as_object_mut() else { continue };
            object.insert("title".into(), Value::String(info.name.into()));
            let properties = object.entry("properties").or_insert_with(|| json!({}));
            if let Some(properties) = properties.as_object_mut() {
                let mut with_type = Map::from_iter([(
                    "$type".to_owned(),
                    json!({"const": info.name, "description": "The command's name."}),
                )]);
                with_type.extend(std::mem::take(properties));
                *properties = with_type;
            }
            let required = object.entry("required").or_insert_with(|| json!([]));
            if let Some(required) = required.as_array_mut() {
                required.insert(0, Value::String("$type".into()));
            }
            object.insert("x-permission".into(), Value::String(info.permission.as_str().into()));
            let command = self.add(info.name, Schema::try_from(schema).unwrap_or_default());
            mapping.insert(info.name.into(), command["$ref"].clone());
            variants.push(command);

            let answer = info.answer();
            let title = answer.get("title").and_then(Value::as_str).map(str::to_owned);
            let answer = self.add(&title.unwrap_or_else(|| format!("{}Answer", info.name)), answer);
            if !answers.contains(&answer) {
                answers.push(answer.clone());
            }
            by_command.insert(info.name.into(), answer);
            table.push_str(&format!("| `{}` | `{}` |\n", info.name, info.permission.as_str()));
        }
        let mut responses = Map::new();
        responses.insert(
            "200".into(),
            json!({
                "description": "The command ran; `data` is its answer (`x-answers` names each command's).",
                "content": {"application/json": {"schema": self.success(json!({"anyOf": answers}))}},
            }),
        );
        responses.extend(self.errors(&[400, 401, 403, 404, 405, 408, 409, 413, 422, 500, 503]));
        json!({
            "post": {
                "tags": ["bus"],
                "operationId": "runCommand",
                "summary": "Run a command",
                "description": format!(
                    "The body is one command: a JSON object whose `$type` names it. The token needs \
                     the command's permission (`x-permission` on each command; `admin` implies \
                     every one).\n\n{table}"
                ),
                "requestBody": {
                    "required": true,
                    "content": {"application/json": {"schema": {
                        "oneOf": variants,
                        "discriminator": {"propertyName": "$type", "mapping": mapping},
                    }}},
                },
                "responses": responses,
                "x-answers": by_command,
            },
        })
    }

    fn commands_list(&mut self) -> Value {
        let list = self.add_answer_type::<Vec<CommandDescription>>();
        let mut responses = Map::new();
        responses.insert(
            "200".into(),
            json!({"description": "Every command", "content": {"application/json": {"schema": self.success(list)}}}),
        );
        responses.extend(self.errors(&[401]));
        json!({"get": {
            "tags": ["bus"],
            "operationId": "listCommands",
            "summary": "Every command, its permission and the JSON Schemas of its fields and answer",
            "responses": responses,
        }})
    }

    fn openapi_path(&mut self) -> Value {
        let mut responses = Map::new();
        responses.insert(
            "200".into(),
            json!({"description": "This document", "content": {"application/json": {"schema": {"type": "object"}}}}),
        );
        responses.extend(self.errors(&[401]));
        json!({"get": {
            "tags": ["operations"],
            "operationId": "openApiDocument",
            "summary": "This document, with the event catalog as it stands",
            "responses": responses,
        }})
    }

    /// The partner routes: `(route below the prefix, path item)`.
    fn partner(&mut self) -> Vec<(&'static str, Value)> {
        let empty = json!({"description": "Done: an empty success response"});
        let subscription = self.add_type::<PartnerSubscription>();
        let new_uri = self.add_type::<NewUri>();
        let owner = self.add_type::<OwnerOnly>();
        let simulation = self.add_type::<Simulation>();
        let view = self.add_answer_type::<PartnerSubscriptionView>();
        let write_errors = self.errors(&[400, 401, 403, 404, 405, 408, 413, 422]);
        let read_errors = self.errors(&[401, 403, 404, 405, 422]);
        let post = |operation: &str, summary: &str, body: &Value| {
            let mut responses = Map::from_iter([("200".to_owned(), empty.clone())]);
            responses.extend(write_errors.clone());
            json!({"post": {
                "tags": ["partner"],
                "operationId": operation,
                "summary": summary,
                "requestBody": {"required": true, "content": {"application/json": {"schema": body}}},
                "responses": responses,
            }})
        };
        let owner_parameters = json!([
            {"name": "partnerId", "in": "query", "schema": {"type": "string", "format": "uuid"},
             "description": "The partner; a token bound to an owner may omit it."},
            {"name": "customerId", "in": "query", "schema": {"type": "string"},
             "description": "The customer, instead of a partner."},
        ]);
        let get = |operation: &str, summary: &str, answer: Value| {
            let mut responses = Map::from_iter([(
                "200".to_owned(),
                json!({"description": summary, "content": {"application/json": {"schema": answer}}}),
            )]);
            responses.extend(read_errors.clone());
            json!({"get": {
                "tags": ["partner"],
                "operationId": operation,
                "summary": summary,
                "parameters": owner_parameters,
                "responses": responses,
            }})
        };
        vec![
            (
                "register",
                post(
                    "registerSubscription",
                    "A new subscription; with the `id` of one of the owner's, a change to it",
                    &subscription,
                ),
            ),
            (
                "unregister",
                post(
                    "unregisterEvents",
                    "The listed events off the owner's subscriptions (or the one with `id`); none listed: \
                     the subscriptions are deactivated",
                    &subscription,
                ),
            ),
            (
                "update-all",
                post(
                    "subscribeAllEvents",
                    "Every subscription of the owner to every event (none: nothing changes)",
                    &owner,
                ),
            ),
            (
                "update-webhook-uri",
                post(
                    "updateWebhookUri",
                    "A new URI for every subscription of the owner (none: nothing changes)",
                    &new_uri,
                ),
            ),
            (
                "generate-simulated-webhook",
                post(
                    "generateSimulatedWebhook",
                    "The event's sample payload to the owner's subscriptions, marked simulated",
                    &simulation,
                ),
            ),
            (
                "get-registered-webhooks",
                get(
                    "getRegisteredWebhooks",
                    "The event names the owner's subscriptions receive",
                    json!({"type": "array", "items": {"type": "string"}}),
                ),
            ),
            (
                "subscription",
                get(
                    "getSubscriptions",
                    "The owner's subscriptions: URI, masked secret, events, active, last delivery",
                    json!({"type": "array", "items": view}),
                ),
            ),
        ]
    }

    fn provider(&mut self, route: Route) -> Value {
        let (name, summary, security) = match route {
            Route::MonoCallback => ("MonoCallback", "Mono's callback: one event", json!([{"monoSecret": []}])),
            Route::RemitaPayment => {
                ("RemitaPaymentNotification", "Remita's payment notification: payments by RRR", json!([]))
            }
            Route::RemitaCollection => {
                ("RemitaCollectionNotification", "Remita's collection notification: direct-debit results", json!([]))
            }
        };
        let body = self.add(name, route.body_schema());
        let mut responses = Map::from_iter([(
            "200".to_owned(),
            json!({
                "description": "Received: each notification's outcome (published, duplicate or ignored)",
                "content": {"application/json": {"schema": self.success(json!({"type": "object"}))}},
            }),
        )]);
        responses.extend(self.errors(&[400, 401, 403, 405, 408, 409, 413, 422, 502, 503]));
        json!({"post": {
            "tags": ["inbound"],
            "operationId": format!("receive{name}"),
            "summary": summary,
            "description": "Verified before the body is read (Mono: the shared secret; Remita: the \
                caller's address against `providers.remita.allowed_ips`), then deduplicated, logged \
                and published to the event catalog. Answers 503 until the provider is configured.",
            "security": security,
            "requestBody": {"required": true, "content": {"application/json": {
                "schema": body,
                "example": route.example(),
            }}},
            "responses": responses,
        }})
    }

    fn router(&mut self) -> Value {
        let mut responses = Map::from_iter([(
            "default".to_owned(),
            json!({
                "description": "What the configuration answers: by default the envelope with its \
                    result; a script may answer any status, headers and body. No active \
                    configuration for the key: 404.",
                "content": {"application/json": {"schema": {}}},
            }),
        )]);
        responses.extend(self.errors(&[404]));
        json!({"post": {
            "tags": ["inbound"],
            "operationId": "receiveWebhook",
            "summary": "A webhook received for the router configuration with this key",
            "description": "Configurations (`CreateWebHookConfigCommand`) are made at run time: each \
                names its method, its caller check (signature, token, IP allow-list) and what it \
                runs (a command, a chain, a script or a process). A configuration may also answer \
                on its own path and method outside `/api/webhooks/`.",
            "security": [],
            "parameters": [{"name": "key", "in": "path", "required": true, "schema": {"type": "string"}}],
            "requestBody": {"content": {"application/json": {"schema": {}}}},
            "responses": responses,
        }})
    }

    fn health(&mut self, summary: &str, ready: bool) -> Value {
        let data = json!({"type": "object", "required": ["status"], "properties": {
            "status": {"type": "string"}, "database": {"type": "string"},
        }});
        let mut responses = Map::from_iter([(
            "200".to_owned(),
            json!({"description": summary, "content": {"application/json": {"schema": self.success(data)}}}),
        )]);
        if ready {
            responses.extend(self.errors(&[503]));
        }
        json!({"get": {
            "tags": ["operations"],
            "operationId": if ready { "readiness" } else { "health" },
            "summary": summary,
            "security": [],
            "responses": responses,
        }})
    }

    /// One entry per catalog event: the POST hookbus sends to a subscription's URI.
    fn webhooks(&mut self, events: &[EventType]) -> Map<String, Value> {
        let body = self.add_answer_type::<DeliveryBody<'static>>();
        let header = |name: &str, description: &str| {
            json!({"name": name, "in": "header", "required": true, "schema": {"type": "string"},
                   "description": description})
        };
        let parameters = json!([
            header("webhook-id", "The notification's id: the same on every attempt"),
            header("webhook-timestamp", "Unix seconds when this attempt was signed"),
            header(
                "webhook-signature",
                "`v1,<base64 HMAC-SHA256 of id.timestamp.body>` per signing secret, space-separated \
                 (two during a secret rotation)",
            ),
        ]);
        events
            .iter()
            .map(|event| {
                let example = json!({
                    "eventId": "3f0c1b2a-5d6e-4f70-8192-a3b4c5d6e7f8",
                    "eventName": event.name,
                    "resource": null,
                    "occurredAt": "2026-12-01T09:30:00Z",
                    "data": event.sample_payload,
                });
                let operation = json!({"post": {
                    "operationId": format!("deliver_{}", event.name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")),
                    "summary": event.description,
                    "description": "Signed per Standard Webhooks unless the subscription disables \
                        signing. A 2xx answer is delivered; 410 suspends the subscription; anything \
                        else (or no answer in time) is retried by the subscription's policy until \
                        its attempts run out.",
                    "security": [],
                    "parameters": parameters,
                    "requestBody": {"required": true, "content": {"application/json": {
                        "schema": {"allOf": [body, {"properties": {"eventName": {"const": event.name}}}]},
                        "example": example,
                    }}},
                    "responses": {
                        "2XX": {"description": "Delivered"},
                        "410": {"description": "Gone: the subscription is suspended"},
                        "default": {"description": "Not delivered: retried later"},
                    },
                }});
                (event.name.clone(), operation)
            })
            .collect()
    }
}

fn metrics() -> Value {
    json!({"get": {
        "tags": ["operations"],
        "operationId": "metrics",
        "summary": "Prometheus metrics",
        "security": [],
        "responses": {"200": {
            "description": "The metrics in the Prometheus text format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }},
    }})
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// Points `#/$defs/X` at its component, and `#` (a type that contains itself) at `root`.
fn rewrite_refs(value: &mut Value, renamed: &BTreeMap<String, String>, root: &str) {
    match value {
        Value::Object(object) => {
            if let Some(Value::String(target)) = object.get_mut("$ref") {
                if let Some(def) = target.strip_prefix("#/$defs/") {
                    let name = renamed.get(def).map_or(def, String::as_str);
                    *target = format!("#/components/schemas/{name}");
                } else if target == "#" {
                    *target = format!("#/components/schemas/{root}");
                }
            }
            object.values_mut().for_each(|value| rewrite_refs(value, renamed, root));
        }
        Value::Array(items) => items.iter_mut().for_each(|value| rewrite_refs(value, renamed, root)),
        _ => {}
    }
}

fn error_description(status: u16) -> &'static str {
    match status {
        400 => "The body is not JSON, or not a command",
        401 => "No valid bearer token",
        403 => "The token lacks the permission, or acts for another owner",
        404 => "Not found, or not the caller's",
        405 => "The path does not take this method",
        408 => "The request did not arrive in time",
        409 => "Conflicts with what exists",
        413 => "The body is too large",
        422 => "A field is invalid; `errors` names each",
        500 => "An internal error; the request id is in the logs",
        502 => "A service the request needs answered with an error",
        503 => "Unavailable: not configured, or the database does not answer",
        _ => "An error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` points at a component.
    #[test]
    fn every_reference_resolves() {
        let doc = document(&hookbus_outbound::catalog::built_ins());
        let schemas = doc["components"]["schemas"].as_object().cloned().unwrap_or_default();
        let mut missing = Vec::new();
        fn walk(value: &Value, schemas: &Map<String, Value>, missing: &mut Vec<String>) {
            match value {
                Value::Object(object) => {
                    if let Some(Value::String(target)) = object.get("$ref") {
                        let name = target.strip_prefix("#/components/schemas/").unwrap_or(target);
                        if !schemas.contains_key(name) {
                            missing.push(target.clone());
                        }
                    }
                    object.values().for_each(|value| walk(value, schemas, missing));
                }
                Value::Array(items) => items.iter().for_each(|value| walk(value, schemas, missing)),
                _ => {}
            }
        }
        walk(&doc, &schemas, &mut missing);
        assert!(missing.is_empty(), "unresolved: {missing:?}");
    }

    #[test]
    fn every_command_is_a_variant_of_the_bus_body() {
        let doc = document(&[]);
        let body = &doc["paths"]["/api/bpm/cmd"]["post"]["requestBody"]["content"]["application/json"]["schema"];
        let mapping = body["discriminator"]["mapping"].as_object().cloned().unwrap_or_default();
        let names: Vec<&str> = hookbus_core::catalog().into_iter().map(|info| info.name).collect();
        assert_eq!(mapping.keys().map(String::as_str).collect::<Vec<_>>(), names);
        assert_eq!(body["oneOf"].as_array().map(Vec::len), Some(names.len()));
    }
}
