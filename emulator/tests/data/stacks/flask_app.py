"""Flask under gunicorn's sync workers with psycopg2 and redis-py: the second of issue 15's stacks.

GET /visit writes a row to PostgreSQL (DATABASE_URL) and counts in Redis (REDIS_URL); GET
/slow?s=N holds the worker N seconds (for the concurrency/429 check)."""
import os
import time

import psycopg2
import redis
from flask import Flask, jsonify, request

app = Flask(__name__)
cache = redis.Redis.from_url(os.environ["REDIS_URL"])


def db():
    return psycopg2.connect(os.environ["DATABASE_URL"])


with db() as conn, conn.cursor() as cur:
    cur.execute("CREATE TABLE IF NOT EXISTS visits (id serial PRIMARY KEY, stack text)")


@app.get("/")
def root():
    return jsonify(ok=True)


@app.get("/visit")
def visit():
    with db() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO visits (stack) VALUES ('flask') RETURNING id")
        row_id = cur.fetchone()[0]
        cur.execute("SHOW server_version")
        version = cur.fetchone()[0]
    hits = cache.incr("visits:flask")
    return jsonify(stack="flask", row_id=row_id, pg_version=version, redis_hits=hits)


@app.get("/slow")
def slow():
    s = float(request.args.get("s", "3"))
    time.sleep(s)
    return jsonify(slept=s)
