"""FastAPI on uvicorn with asyncpg and redis-py's asyncio client: the first of issue 15's stacks.

GET /visit writes a row to PostgreSQL (DATABASE_URL) and counts in Redis (REDIS_URL), and says
what both returned; GET /slow?s=N holds the request N seconds (for the concurrency/429 check)."""
import asyncio
import contextlib
import os

import asyncpg
import redis.asyncio as aioredis
from fastapi import FastAPI


@contextlib.asynccontextmanager
async def lifespan(app):
    app.state.pg = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=1, max_size=2)
    app.state.redis = aioredis.from_url(os.environ["REDIS_URL"])
    async with app.state.pg.acquire() as c:
        await c.execute("CREATE TABLE IF NOT EXISTS visits (id serial PRIMARY KEY, stack text)")
    yield
    await app.state.pg.close()
    await app.state.redis.aclose()


app = FastAPI(lifespan=lifespan)


@app.get("/")
async def root():
    return {"ok": True}


@app.get("/visit")
async def visit():
    async with app.state.pg.acquire() as c:
        row_id = await c.fetchval("INSERT INTO visits (stack) VALUES ('fastapi') RETURNING id")
        version = await c.fetchval("SHOW server_version")
    hits = await app.state.redis.incr("visits:fastapi")
    return {"stack": "fastapi", "row_id": row_id, "pg_version": version, "redis_hits": hits}


@app.get("/slow")
async def slow(s: float = 3.0):
    await asyncio.sleep(s)
    return {"slept": s}
