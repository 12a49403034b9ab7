//! Running `wrk` and reading its report.

use std::{path::Path, process::Command, time::Duration};

#[derive(Debug, Clone)]
pub struct Measurement {
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Socket errors, timeouts and non-2xx answers.
    pub errors: u64,
}

pub fn check_installed() -> Result<(), String> {
    match Command::new("wrk").arg("--version").output() {
        Ok(_) => Ok(()),
        Err(_) => Err("wrk is not installed: apt-get install -y wrk".into()),
    }
}

pub fn run(url: &str, script: &Path, duration: Duration, connections: u32) -> Result<Measurement, String> {
    let output = Command::new("wrk")
        .args(["-t", "2", "-c", &connections.to_string(), "-d", &format!("{}s", duration.as_secs().max(1))])
        .args(["--latency", "--timeout", "5s", "-s"])
        .arg(script)
        .arg(url)
        .arg("--")
        .arg(format!(
            "r{}",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
        ))
        .output()
        .map_err(|e| format!("cannot run wrk: {e}"))?;
    let report = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!("wrk failed: {}{}", report, String::from_utf8_lossy(&output.stderr)));
    }
    parse(&report).ok_or_else(|| format!("cannot read wrk's report:\n{report}"))
}

fn parse(report: &str) -> Option<Measurement> {
    let mut requests_per_sec = None;
    let mut p50_ms = None;
    let mut p99_ms = None;
    let mut errors = 0;
    for line in report.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Requests/sec:"), Some(value)) => requests_per_sec = value.parse().ok(),
            (Some("50%"), Some(value)) => p50_ms = millis(value),
            (Some("99%"), Some(value)) => p99_ms = millis(value),
            (Some("Non-2xx"), _) => errors += line.rsplit(' ').next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0),
            (Some("Socket"), Some("errors:")) => {
                errors += line
                    .split(',')
                    .filter_map(|part| part.split_whitespace().last().and_then(|n| n.parse::<u64>().ok()))
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    Some(Measurement { requests_per_sec: requests_per_sec?, p50_ms: p50_ms?, p99_ms: p99_ms?, errors })
}

/// `812.00us`, `1.23ms`, `2.01s` as milliseconds.
fn millis(text: &str) -> Option<f64> {
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (text, 1.0)
    };
    number.parse::<f64>().ok().map(|n| n * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_report() {
        let report = "  Latency Distribution\n     50%  812.00us\n     99%    3.10ms\n  \
                      Socket errors: connect 0, read 1, write 0, timeout 2\n  Non-2xx or 3xx responses: 4\n\
                      Requests/sec:  12345.67\n";
        let m = parse(report).expect("parsed");
        assert!((m.requests_per_sec - 12345.67).abs() < 1e-6);
        assert!((m.p50_ms - 0.812).abs() < 1e-9);
        assert!((m.p99_ms - 3.1).abs() < 1e-9);
        assert_eq!(m.errors, 7);
    }
}
