//! A webhook receiver for delivery tests: a real HTTP server on 127.0.0.1 that records what it
//! receives and answers as the test tells it.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, dev::ServerHandle, web};
use serde_json::Value;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: http::HeaderMap,
    pub raw: Vec<u8>,
    pub body: Value,
    pub at: Instant,
    /// When it arrived, by the wall clock (to compare with an event's `occurredAt`).
    pub wall: chrono::DateTime<chrono::Utc>,
}

impl Received {
    /// Time from the event's `occurredAt` (when it was published) to its arrival here.
    pub fn latency(&self) -> Duration {
        let occurred = self.body["occurredAt"]
            .as_str()
            .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
            .map(|at| at.to_utc())
            .unwrap_or(self.wall);
        (self.wall - occurred).to_std().unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Verifies the Standard Webhooks signature with the specification's reference library.
    pub fn verify(&self, secret: &str) -> bool {
        standardwebhooks::Webhook::new(secret).is_ok_and(|hook| hook.verify(&self.raw, &self.headers).is_ok())
    }
}

/// How the receiver answers.
#[derive(Debug, Clone)]
pub enum Answer {
    Status(u16),
    /// A status with a `Retry-After` header.
    RetryAfter(u16, &'static str),
    /// A status after a pause.
    Slow(Duration, u16),
}

#[derive(Debug, Default)]
struct State {
    received: Vec<Received>,
    /// Answers to give first, in order; then `default`.
    script: VecDeque<Answer>,
    default: Option<Answer>,
    /// Requests being answered now, and the most there were at once.
    in_flight: usize,
    max_in_flight: usize,
}

pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<State>>,
    handle: ServerHandle,
}

impl Receiver {
    /// Starts a receiver that answers 200.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let server = HttpServer::new(move || {
            App::new().app_data(web::Data::from(Arc::clone(&shared))).default_service(web::to(receive))
        })
        .workers(2)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind a receiver");
        let address = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self { url: format!("http://{address}/hook"), state, handle }
    }

    /// Answers every request this way from now on (after any scripted answers).
    pub fn answer(&self, answer: Answer) {
        self.state.lock().expect("state").default = Some(answer);
    }

    /// Answers the next requests with these, in order.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.state.lock().expect("state").script.extend(answers);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().expect("state").received.clone()
    }

    pub fn count(&self) -> usize {
        self.state.lock().expect("state").received.len()
    }

    /// The most requests it was answering at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.lock().expect("state").max_in_flight
    }

    /// Waits until `n` requests arrived (or `limit` passed); returns what arrived.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Received> {
        let started = Instant::now();
        while self.count() < n && started.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.received()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

/// Counts a request out of `in_flight` when dropped.
struct Answering(web::Data<Mutex<State>>);

impl Drop for Answering {
    fn drop(&mut self) {
        if let Ok(mut state) = self.0.lock() {
            state.in_flight = state.in_flight.saturating_sub(1);
        }
    }
}

async fn receive(request: HttpRequest, body: web::Bytes, state: web::Data<Mutex<State>>) -> HttpResponse {
    let mut headers = http::HeaderMap::new();
    for (name, value) in request.headers() {
        if let (Ok(name), Ok(value)) =
            (http::HeaderName::from_bytes(name.as_str().as_bytes()), http::HeaderValue::from_bytes(value.as_bytes()))
        {
            headers.append(name, value);
        }
    }
    let received = Received {
        headers,
        raw: body.to_vec(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        at: Instant::now(),
        wall: chrono::Utc::now(),
    };
    let answer = {
        let mut state = state.lock().expect("state");
        state.received.push(received);
        state.in_flight += 1;
        state.max_in_flight = state.max_in_flight.max(state.in_flight);
        state.script.pop_front().or_else(|| state.default.clone()).unwrap_or(Answer::Status(200))
    };
    // Counted out when the answer is built (or the request is dropped mid-wait).
    let _answering = Answering(state.clone());
    match answer {
        Answer::Status(code) => HttpResponse::build(status(code)).body(format!("answered {code}")),
        Answer::Slow(pause, code) => {
            tokio::time::sleep(pause).await;
            HttpResponse::build(status(code)).finish()
        }
        Answer::RetryAfter(code, after) => {
            HttpResponse::build(status(code)).insert_header(("retry-after", after)).body("later")
        }
    }
}

fn status(code: u16) -> actix_web::http::StatusCode {
    actix_web::http::StatusCode::from_u16(code).expect("a status code")
}
