#!/usr/bin/env bash
# The one test command: makes sure Redis, PostgreSQL and MariaDB answer on
# loopback and promtool and Chromium are installed (starting or installing
# them as needed), then runs formatting,
# lints, every test (unit, integration, doc) and the docs build.
# Stops at the first failure with a non-zero exit.
set -euo pipefail
cd "$(dirname "$0")/.."

export KEEL_TEST_REDIS_URL="${KEEL_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
export KEEL_TEST_POSTGRES_URL="${KEEL_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
export KEEL_TEST_MYSQL_URL="${KEEL_TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}"

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
apt_install() {
  command -v apt-get >/dev/null || die "cannot install $*: no apt-get; install it by hand"
  if [ "$apt_updated" = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# wait_for NAME COMMAND...: retries COMMAND for up to 60 s.
wait_for() {
  local name=$1; shift
  for _ in $(seq 1 120); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  die "$name did not become ready within 60 s"
}

redis_ready() { redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG; }
postgres_ready() { pg_isready -q -h 127.0.0.1 -p 5432; }
mysql_ready() { mysqladmin --protocol=tcp -h 127.0.0.1 -P 3306 -uroot ping; }

ensure_redis() {
  if redis_ready 2>/dev/null; then echo "redis: up"; return; fi
  command -v redis-server >/dev/null || { echo "redis: installing"; apt_install redis-server redis-tools; }
  echo "redis: starting"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  wait_for redis redis_ready
  echo "redis: up"
}

ensure_postgres() {
  if ! postgres_ready 2>/dev/null; then
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
      echo "postgres: installing"
      apt_install postgresql
    fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    echo "postgres: starting cluster $version/main"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_for postgres postgres_ready
  fi
  # Tests connect as postgres over TCP without a password, to database `test`.
  if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
    echo "postgres: allowing trust auth on loopback"
    local hba
    hba=$(as_root su postgres -c "psql -Atc 'show hba_file'")
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    as_root su postgres -c "psql -Atc 'select pg_reload_conf()'" >/dev/null
    sleep 1
  fi
  if [ "$(psql -h 127.0.0.1 -U postgres -d postgres -Atc "select 1 from pg_database where datname='test'")" != 1 ]; then
    echo "postgres: creating database test"
    psql -h 127.0.0.1 -U postgres -d postgres -qc 'create database test'
  fi
  echo "postgres: up"
}

ensure_mysql() {
  if ! mysql_ready 2>/dev/null; then
    if [ ! -x /usr/sbin/mariadbd ] && [ ! -x /usr/sbin/mysqld ]; then
      echo "mysql: installing mariadb-server"
      apt_install mariadb-server
    fi
    echo "mysql: starting"
    local daemon=/usr/sbin/mariadbd
    [ -x "$daemon" ] || daemon=/usr/sbin/mysqld
    as_root mkdir -p /run/mysqld
    as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec "$daemon"
    wait_for mysql mysql_ready
  fi
  # Tests connect as root over TCP without a password and create databases.
  if ! mysql --protocol=tcp -h 127.0.0.1 -uroot -e 'select 1' >/dev/null 2>&1; then
    echo "mysql: allowing root without a password on loopback"
    as_root mysql -uroot -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD(''); FLUSH PRIVILEGES;"
  fi
  mysql --protocol=tcp -h 127.0.0.1 -uroot -e 'CREATE DATABASE IF NOT EXISTS test'
  echo "mysql: up"
}

ensure_promtool() {
  # `promtool check metrics` checks the gateway's /metrics output.
  if command -v promtool >/dev/null; then echo "promtool: present"; return; fi
  echo "promtool: installing (Debian package prometheus)"
  apt_install --no-install-recommends prometheus
  command -v promtool >/dev/null || die "promtool is missing after installing prometheus"
}

ensure_chromium() {
  # Headless Chromium loads the gateway's dashboard in a test.
  if command -v chromium >/dev/null; then echo "chromium: present"; return; fi
  echo "chromium: installing (Debian package chromium)"
  apt_install chromium
  command -v chromium >/dev/null || die "chromium is missing after installing it"
}

ensure_cargo_hack() {
  # `cargo hack` runs clippy and the tests once per feature of a crate.
  if cargo hack --version >/dev/null 2>&1; then echo "cargo-hack: present"; return; fi
  echo "cargo-hack: installing"
  cargo install --locked --quiet cargo-hack
}

ensure_rust_version() {
  # The workspace's `rust-version` is checked with that toolchain.
  if rustup run "$rust_version" rustc --version >/dev/null 2>&1; then
    echo "rust $rust_version: present"; return
  fi
  command -v rustup >/dev/null || die "rust $rust_version is needed to check rust-version; install rustup"
  echo "rust $rust_version: installing"
  rustup toolchain install "$rust_version" --profile minimal >/dev/null
}

rust_version=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
[ -n "$rust_version" ] || die "no rust-version in Cargo.toml"
target_dir="${CARGO_TARGET_DIR:-target}"
# Crates with features: each is also built and tested with none and with
# each one alone (the runs above enable them all).
featured=(-p keel -p keel-cache -p keel-concurrency -p keel-pool -p keel-websocket)

step "services"
ensure_redis
ensure_postgres
ensure_mysql
ensure_promtool
ensure_chromium
ensure_cargo_hack
ensure_rust_version
export KEEL_REQUIRE_SERVICES=1

step "cargo fmt --all --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets --all-features -- -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-features --no-fail-fast
else
  cargo test --workspace --all-features --no-fail-fast --lib --bins --tests
fi

step "each feature alone: cargo hack clippy + tests (${featured[*]})"
cargo hack clippy "${featured[@]}" --each-feature --exclude-all-features --all-targets -- -D warnings
cargo hack nextest run "${featured[@]}" --each-feature --exclude-all-features --no-fail-fast

step "loom model of the cache shard (--cfg keel_loom)"
RUSTFLAGS="--cfg keel_loom" CARGO_TARGET_DIR="$target_dir/loom" \
  cargo test -q -p keel-cache --release --test model_concurrent

step "rust-version $rust_version: cargo check"
CARGO_TARGET_DIR="$target_dir/msrv" cargo "+$rust_version" check -q --workspace --all-features

step "examples (crates/keel/examples, each run to completion)"
cargo build -q -p keel --all-features --examples
examples_dir="$target_dir/debug/examples"
for example in crates/keel/examples/*.rs; do
  name=$(basename "$example" .rs)
  echo "--- $name"
  "$examples_dir/$name" >/dev/null || die "example $name failed"
done

step "doctests"
cargo test --workspace --all-features --doc

step "cargo doc --no-deps (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps

step "all checks passed"
