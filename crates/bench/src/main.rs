//! `just bench`: requests/s and p99 latency of the bus, each as a ratio to a bare actix JSON echo
//! route measured right before it (the ceiling for this machine at that moment).
//!
//! Every server runs in this process with the same number of workers; `wrk` (Debian's package)
//! generates the load from another process. Figures on a shared machine are noisy: compare the
//! ratios, not the absolute numbers, across runs. Each scenario is measured in rounds, each round
//! an echo run and then the scenario's run; a round's ratio compares the two, and the report gives
//! the median round (and every round's ratio), so that a neighbour's load during one run skews
//! one round rather than the figure.

mod delivery;
mod scenario;
mod storage;
mod wrk;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use scenario::{Backend, Scenario, Target};

/// The server binary's allocator, so that the servers measured here run as they do in production
/// (the echo runs on it too).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
struct Args {
    /// Seconds each measurement runs (after 2 s of warm-up).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds (an echo run, then the scenario's) each router scenario is measured in. Five: with
    /// three, one slow round of a ratio that swings by ten points moved the median across a target.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// HTTP workers in each server.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Databases to measure.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
    backends: Vec<Backend>,
    /// PostgreSQL server for the benchmark databases. Default: the local server through its Unix
    /// socket when there is one (as a server on the same machine is best reached: no TCP, no TLS),
    /// else 127.0.0.1:5432.
    #[arg(long, default_value_t = default_postgres_url())]
    postgres_url: String,
    /// What to measure: the bus and router under wrk, outbound delivery, and (PostgreSQL only, not
    /// by default) what delivery costs the database.
    #[arg(long, value_delimiter = ',', default_value = "router,delivery")]
    suites: Vec<Suite>,
    /// The hookbus binary the delivery benchmark runs (default: beside this one; `just bench`
    /// builds it).
    #[arg(long)]
    hookbus_binary: Option<PathBuf>,
    /// Events of each load of the storage suite (its second load delivers ten times as many).
    #[arg(long, default_value_t = 10_000)]
    storage_events: usize,
    /// Router scenarios to measure besides the echo ceiling (default: all), e.g.
    /// `--scenarios route-native,route-script`.
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<Scenario>,
}

/// Where Debian's PostgreSQL listens locally: its socket directory, percent-encoded as a URL host.
const POSTGRES_SOCKET: (&str, &str) = ("/var/run/postgresql/.s.PGSQL.5432", "%2Fvar%2Frun%2Fpostgresql");

fn default_postgres_url() -> String {
    let (socket, host) = POSTGRES_SOCKET;
    let host = if std::path::Path::new(socket).exists() { host } else { "127.0.0.1:5432" };
    format!("postgres://postgres@{host}/postgres")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Suite {
    Router,
    Delivery,
    Storage,
}

fn main() -> ExitCode {
    // As the server binary does, before the runtime's threads start.
    hookbus_server::memory::no_transparent_huge_pages();
    bench()
}

#[tokio::main]
async fn bench() -> ExitCode {
    let args = Args::parse();
    if args.backends.contains(&Backend::Postgres) {
        println!("PostgreSQL: {}", args.postgres_url);
    }
    let workdir = tempfile::tempdir().expect("a temporary folder");
    let mut failed = false;
    if args.suites.contains(&Suite::Router) {
        failed |= !router(&args, workdir.path()).await;
    }
    let binary = args.hookbus_binary.clone().unwrap_or_else(|| {
        std::env::current_exe().ok().and_then(|exe| exe.parent().map(|dir| dir.join("hookbus"))).unwrap_or_default()
    });
    if args.suites.contains(&Suite::Delivery) {
        for backend in &args.backends {
            failed |= !delivery::run(*backend, &args.postgres_url, workdir.path(), &binary, args.workers).await;
        }
    }
    if args.suites.contains(&Suite::Storage) {
        failed |= !storage::run(&args.postgres_url, workdir.path(), &binary, args.workers, args.storage_events).await;
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

/// The bus and the router under wrk, each against the echo ceiling. `false` when a run failed.
async fn router(args: &Args, workdir: &std::path::Path) -> bool {
    if let Err(e) = wrk::check_installed() {
        eprintln!("hookbus-bench: {e}");
        return false;
    }
    let duration = Duration::from_secs(args.seconds);
    let scripts = workdir.to_path_buf();

    let echo = Target::echo(args.workers).await;
    let mut failed = run(&echo, Scenario::Echo, &scripts, duration, args.connections).is_none();

    for backend in &args.backends {
        let target = match Target::hookbus(*backend, args.workers, &args.postgres_url, workdir).await {
            Ok(target) => target,
            Err(e) => {
                eprintln!("hookbus-bench: {backend}: {e}");
                failed = true;
                continue;
            }
        };
        let mut native = None;
        let wanted = |scenario: &Scenario| args.scenarios.is_empty() || args.scenarios.contains(scenario);
        for scenario in [
            Scenario::GetById,
            Scenario::Create,
            Scenario::RouteNative,
            Scenario::RouteChain,
            Scenario::RouteScript,
            Scenario::RouteAsync,
        ]
        .into_iter()
        .filter(wanted)
        {
            let mut rounds = Vec::new();
            for _ in 0..args.rounds {
                let Some(echo) = measure(&echo, Scenario::Echo, &scripts, duration, args.connections) else { break };
                let before = match scenario {
                    Scenario::RouteAsync => Some((std::time::Instant::now(), target.async_requests().await)),
                    _ => None,
                };
                let Some(measured) = measure(&target, scenario, &scripts, duration, args.connections) else { break };
                let ran = match before {
                    Some((started, Ok((accepted, _)))) => sustained(&target, started, accepted).await,
                    _ => None,
                };
                rounds.push(Round { echo, measured, ran });
            }
            if rounds.len() < args.rounds as usize {
                failed = true;
                continue;
            }
            let median = report(target.name(), scenario, &rounds);
            failed |= rounds.iter().any(|round| round.measured.errors > 0);
            match (scenario, &native) {
                (Scenario::RouteNative, _) => native = Some(median),
                (Scenario::RouteScript, Some(native)) => println!(
                    "{:<10} {:<30} {:>5.1}% of the native route's throughput (medians)",
                    target.name(),
                    "  script / native",
                    100.0 * median.requests_per_sec / native.requests_per_sec
                ),
                _ => {}
            }
        }
        target.finish().await;
    }
    !failed
}

/// One round of a scenario: the echo, then the scenario right after it.
struct Round {
    echo: wrk::Measurement,
    measured: wrk::Measurement,
    /// The async route: what its requests ran at (see [`Ran`]).
    ran: Option<Ran>,
}

/// How fast the async route's requests ran, not only how fast they were accepted: the requests
/// accepted in a round (its warm-up included) over the time from its start until the last of
/// them has run.
struct Ran {
    requests_per_sec: f64,
    /// How long after the load the last one ran: the backlog it left.
    backlog_secs: f64,
}

/// Waits (up to ten minutes) until the async route's requests accepted since `started` (when
/// `accepted_before` had been) have all run; `None` when they did not or the count failed.
async fn sustained(target: &Target, started: std::time::Instant, accepted_before: i64) -> Option<Ran> {
    let load_ended = std::time::Instant::now();
    while load_ended.elapsed() < Duration::from_secs(600) {
        let (accepted, queued) = target.async_requests().await.ok()?;
        if queued == 0 {
            let requests_per_sec = (accepted - accepted_before) as f64 / started.elapsed().as_secs_f64();
            return Some(Ran { requests_per_sec, backlog_secs: load_ended.elapsed().as_secs_f64() });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

impl Round {
    fn ratio(&self) -> f64 {
        self.measured.requests_per_sec / self.echo.requests_per_sec
    }
}

/// Prints the median round of `rounds` (by ratio to its echo) and every round's ratio; returns the
/// median round's measurement.
fn report(target: &str, scenario: Scenario, rounds: &[Round]) -> wrk::Measurement {
    let mut ordered: Vec<&Round> = rounds.iter().collect();
    ordered.sort_by(|a, b| a.ratio().total_cmp(&b.ratio()));
    let median = ordered[ordered.len() / 2];
    let each = rounds.iter().map(|round| format!("{:.1}", 100.0 * round.ratio())).collect::<Vec<_>>().join(" / ");
    let ran = median.ran.as_ref().map_or(String::new(), |ran| {
        format!(
            "; run as accepted: {:.0} req/s, the last {:.1} s after the load",
            ran.requests_per_sec, ran.backlog_secs
        )
    });
    print_line(
        target,
        scenario,
        &median.measured,
        &format!(
            "  {:>5.1}% of echo throughput (echo beside it: {:.0} req/s; rounds: {each}%){ran}",
            100.0 * median.ratio(),
            median.echo.requests_per_sec
        ),
    );
    median.measured.clone()
}

/// Measures and prints one line; `None` when the run failed or saw errors.
fn run(
    target: &Target,
    scenario: Scenario,
    scripts: &std::path::Path,
    duration: Duration,
    connections: u32,
) -> Option<wrk::Measurement> {
    let measured = measure(target, scenario, scripts, duration, connections)?;
    print_line(target.name(), scenario, &measured, "  (ceiling)");
    (measured.errors == 0).then_some(measured)
}

fn print_line(target: &str, scenario: Scenario, measured: &wrk::Measurement, ratio: &str) {
    println!(
        "{:<10} {:<30} {:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   errors {:>5}{ratio}",
        target,
        scenario.name(),
        measured.requests_per_sec,
        measured.p50_ms,
        measured.p99_ms,
        measured.errors,
    );
}

/// Warms up for 2 s, then measures for `duration`; `None` when wrk failed.
fn measure(
    target: &Target,
    scenario: Scenario,
    scripts: &std::path::Path,
    duration: Duration,
    connections: u32,
) -> Option<wrk::Measurement> {
    let script: PathBuf = scenario.write_script(scripts, target.token()).ok()?;
    let url = target.url(scenario);
    let _ = wrk::run(&url, &script, Duration::from_secs(2), connections);
    match wrk::run(&url, &script, duration, connections) {
        Ok(measured) => Some(measured),
        Err(e) => {
            eprintln!("hookbus-bench: {} {}: {e}", target.name(), scenario.name());
            None
        }
    }
}
