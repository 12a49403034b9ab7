//! Integration tests: the real server, in-process on `127.0.0.1:0`, with a real database of its own
//! (a fresh SQLite file, or a fresh PostgreSQL database when `HOOKBUS_TEST_DATABASE=postgres`),
//! spoken to over HTTP.

mod auth;
mod bus;
mod cli;
mod configs;
mod group_commit;
mod inbound;
mod instances;
mod isolation;
mod openapi;
mod ops;
mod outbound;
mod partner;
mod processes;
mod providers;
mod receiver;
mod recipients;
mod router;
mod secrets;
mod security;
mod states;
mod support;
mod tls_receiver;
mod tokens;
mod unit;
mod workbench;
