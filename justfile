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

# Load benchmark (needs wrk: apt-get install -y wrk). Extra flags: just bench --seconds 20
bench *ARGS:
    cargo run --release -p hookbus-bench -- {{ARGS}}
