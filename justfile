# hookbus tasks. `just --list` shows them.

# Run the server on the embedded SQLite default (127.0.0.1:8080).
run:
    cargo run --release

# All tests, against SQLite.
test:
    cargo test --workspace

# All tests, against PostgreSQL on 127.0.0.1:5432.
test-postgres:
    HOOKBUS_TEST_DATABASE=postgres cargo test --workspace

# What CI runs: fmt, clippy, and the tests on both databases.
ci:
    bash .ci/run

# Load benchmarks: the router under wrk (apt-get install -y wrk) and outbound delivery, on SQLite
# and PostgreSQL. Extra flags: just bench --suites delivery --backends postgres
bench *ARGS:
    cargo build --release -p hookbus-server --bin hookbus
    cargo run --release -p hookbus-bench -- {{ARGS}}
