# Sourced by tests/run: a throwaway PostgreSQL server for the store tests, so that the suite needs no
# server set up beforehand and never touches one that runs on the machine. postgres_start initializes a
# cluster in a fresh temporary folder, starts it on a free port of 127.0.0.1 (its unix socket inside that
# folder) and exports SAMTAL_TEST_POSTGRES naming its database "test"; postgres_stop kills it and removes
# the folder. Durability is off (fsync and the like): the data is thrown away.
# PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user (Debian's package
# creates it); as any other user it runs as that user.

samtal_pg_dir=""    # the temporary folder: data/ (the cluster), socket/, log
samtal_pg_bin=""    # the folder of initdb, pg_ctl, psql

# Runs a command as the server's owner, in the temporary folder (the caller's folder may be closed to it).
samtal_pg_as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        (cd "$samtal_pg_dir" && runuser -u postgres -- "$@")
    else
        (cd "$samtal_pg_dir" && "$@")
    fi
}

postgres_start() {
    local bin port try started=""
    # The highest version Debian installed (/usr/lib/postgresql/VERSION/bin), else initdb on the PATH.
    bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    [[ -x "$bin/initdb" ]] || bin="$(dirname "$(command -v initdb 2>/dev/null || echo /none/initdb)")"
    if [[ ! -x "$bin/initdb" || ! -x "$bin/pg_ctl" ]]; then
        echo "tests/postgres.sh: PostgreSQL's initdb and pg_ctl not found (tests/setup.sh installs postgresql)" >&2
        return 1
    fi
    samtal_pg_bin="$bin"

    if [[ $(id -u) -eq 0 ]]; then
        getent passwd postgres >/dev/null || { echo "tests/postgres.sh: running as root and there is no postgres user to run the server as" >&2; return 1; }
        # Under /tmp, not root's TMPDIR: the postgres user must reach the folder.
        samtal_pg_dir="$(mktemp -d /tmp/samtal-postgres.XXXXXX)" || return 1
        chown postgres: "$samtal_pg_dir"
    else
        samtal_pg_dir="$(mktemp -d -t samtal-postgres.XXXXXX)" || return 1
    fi
    samtal_pg_as_owner mkdir "$samtal_pg_dir/socket" || return 1

    # UTF-8 with a UTF-8 locale, as full-text search needs (docs/http-api.md, Storage).
    if ! samtal_pg_as_owner "$bin/initdb" -D "$samtal_pg_dir/data" -A trust -U postgres \
        --encoding=UTF8 --locale=C.UTF-8 --no-sync >"$samtal_pg_dir/initdb.log" 2>&1; then
        echo "tests/postgres.sh: initdb failed:" >&2
        cat "$samtal_pg_dir/initdb.log" >&2
        return 1
    fi

    # Only TCP on 127.0.0.1 (the port is given at start) and a socket in the folder, not the system's.
    cat >>"$samtal_pg_dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$samtal_pg_dir/socket'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF

    # A free port: the kernel picks one, which another process may take before the server binds it,
    # so a failed start is tried again on a new port.
    for try in 1 2 3 4 5; do
        port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')" || return 1
        if samtal_pg_as_owner "$bin/pg_ctl" start -w -t 60 -D "$samtal_pg_dir/data" -l "$samtal_pg_dir/log" -o "-p $port" >/dev/null; then
            started=1
            break
        fi
    done
    if [[ -z "$started" ]]; then
        echo "tests/postgres.sh: the server did not start; its log:" >&2
        cat "$samtal_pg_dir/log" >&2
        return 1
    fi

    if ! "$bin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -c 'CREATE DATABASE test' >&2; then
        echo "tests/postgres.sh: could not create the database test" >&2
        return 1
    fi
    export SAMTAL_TEST_POSTGRES="postgres://postgres@127.0.0.1:$port/test"
    echo "tests/postgres.sh: PostgreSQL $("$bin/pg_ctl" --version | awk '{print $3}') for the tests at $SAMTAL_TEST_POSTGRES" >&2
}

# Stops the server without a shutdown checkpoint and removes the folder; harmless when nothing was started.
postgres_stop() {
    local pid i
    [[ -n "$samtal_pg_dir" && -d "$samtal_pg_dir" ]] || return 0
    if [[ -f "$samtal_pg_dir/data/postmaster.pid" ]]; then
        pid="$(head -n 1 "$samtal_pg_dir/data/postmaster.pid")"
        samtal_pg_as_owner "$samtal_pg_bin/pg_ctl" stop -w -D "$samtal_pg_dir/data" -m immediate >/dev/null 2>&1 ||
            echo "tests/postgres.sh: pg_ctl stop failed (server in $samtal_pg_dir)" >&2
        # pg_ctl returns once the pid file is gone, a moment before the server process ends.
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -rf "$samtal_pg_dir"
    samtal_pg_dir=""
}
