#!/usr/bin/env python3
"""A reconnecting application writer for the benchmarks.

Opens a new connection for every commit, always to the host it last found
writable; on any error it moves to the next host. Records the wall-clock
time of every successful commit, so the longest gap around a switch is the
write outage a client saw. The password is read from the lab's env file,
never from the command line.

    writer.py --hosts IP1,IP2,IP3 --env /var/lib/mhalab/lab.env \
              --stop-file F --out F.json [--user app]
"""
import argparse
import json
import os
import time

import pymysql


def lab_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
                    v = v[1:-1]
                env[k] = v
    return env


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", required=True)
    ap.add_argument("--env", required=True)
    ap.add_argument("--stop-file", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--user", default="app")
    a = ap.parse_args()
    password = lab_env(a.env)["MHALAB_APP_PASSWORD"]
    hosts = a.hosts.split(",")
    cur = 0
    ok = []
    ok_hosts = []  # the server (its @@hostname) that took each commit
    errors = 0
    failures = []  # (time, host, error code) of failed attempts
    while not os.path.exists(a.stop_file):
        host = hosts[cur]
        try:
            c = pymysql.connect(host=host, user=a.user, password=password, database="appdb",
                                connect_timeout=0.2, read_timeout=2, write_timeout=2, autocommit=True,
                                ssl_disabled=True)
            try:
                with c.cursor() as cur_:
                    cur_.execute("INSERT INTO writes (ts, src) VALUES (NOW(6), %s)", (host,))
                    cur_.execute("SELECT @@hostname")
                    served_by = cur_.fetchone()[0]
            finally:
                c.close()
            ok.append(time.time())
            ok_hosts.append(served_by)
        except Exception as e:
            errors += 1
            code = e.args[0] if e.args and isinstance(e.args[0], int) else -1
            failures.append((time.time(), host, code))
            cur = (cur + 1) % len(hosts)
    with open(a.out, "w") as f:
        json.dump({"ok": ok, "ok_hosts": ok_hosts, "errors": errors, "failures": failures}, f)


if __name__ == "__main__":
    main()
