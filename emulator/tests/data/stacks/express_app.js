// express with pg and ioredis: the third of issue 15's stacks.
// GET /visit writes a row to PostgreSQL (DATABASE_URL) and counts in Redis (REDIS_URL);
// GET /slow?s=N holds the request N seconds (for the concurrency/429 check).
const express = require("express");
const { Pool } = require("pg");
const Redis = require("ioredis");

const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 2 });
const redis = new Redis(process.env.REDIS_URL);
const app = express();

app.get("/", (req, res) => res.json({ ok: true }));

app.get("/visit", async (req, res) => {
  const row = await pool.query("INSERT INTO visits (stack) VALUES ('express') RETURNING id");
  const version = await pool.query("SHOW server_version");
  const hits = await redis.incr("visits:express");
  res.json({
    stack: "express",
    row_id: row.rows[0].id,
    pg_version: version.rows[0].server_version,
    redis_hits: hits,
  });
});

app.get("/slow", (req, res) => {
  const s = Number(req.query.s || 3);
  setTimeout(() => res.json({ slept: s }), s * 1000);
});

pool
  .query("CREATE TABLE IF NOT EXISTS visits (id serial PRIMARY KEY, stack text)")
  .then(() => app.listen(Number(process.env.PORT), "0.0.0.0"))
  .catch((e) => {
    console.error(e);
    process.exit(1);
  });
