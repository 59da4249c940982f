"""The Lua scripts that move jobs between RQ's keys, atomically and in one round trip each.

Why Lua: every state change of a job touches several keys (a pending list, ``rq:wip``, a
registry, the job hash, the results stream, the worker hash). Done from Python that is
several round trips, and a crash between two of them loses or duplicates a job (rq.md §7.2,
§11.3). Each script below is one atomic step with no window in between:

* ``ENQUEUE`` — duplicate-id check and insert for a whole batch (bulk enqueue included);
* ``SYNC`` — the worker's one call per loop: record finished attempts (success, retry with
  backoff, failure), progress, jobs handed back (also those claimed by its earlier calls
  whose replies were lost to a timeout), then promote due scheduled jobs and claim
  new ones (pending list -> ``rq:wip`` with a lease, status ``started``), fairly across the
  priority levels and within the queue's concurrency cap; a record that cannot run is failed
  right there with the reason;
* ``HEARTBEAT`` — extend the leases of the jobs a worker holds and its worker hash;
* ``REAP`` — any live worker re-queues (or fails) jobs whose lease expired: the worker-side
  fallback of lost-job recovery, with no lock (the script is atomic, so two reapers never
  handle the same job twice);
* ``RECOVER_POD`` — the operator's recovery of every job held by one vanished pod;
* ``SNAPSHOT`` — every figure of every queue, read-only;
* ``RETRY`` / ``REMOVE`` — the admin operations on one job; ``BULK`` — the same on a batch of
  jobs of one state (``jobqueue retry/remove --state``), each re-checked inside the script;
* ``CANCEL`` — cancel a job from anywhere: a pending one at once, a running one through its
  worker's cancel list (``jobqueue:cancel:<worker>``) and the ``jq_cancel`` flag, which the ack
  and ``end_claim`` honour so a cancelled job is never retried.

Every script treats what it reads from a job hash as untrusted (anyone who can write to Redis
wrote it): numbers are checked, reasons quote bytes as ``\\xHH``, and each step that touches
one job runs under ``pcall``, because a script that fails on a record fails the same way on
every later call and stalls the queue. A job that reaches a final status also settles the
jobs that wait on it through RQ's ``depends_on`` (``settle_dependents``), in the same step.

One source for each contract: the scripts are templates rendered at import (:func:`_render`).
Their key names (``K.job .. id``) come from :mod:`jobqueue.keys`, as do the priority weights
(``WEIGHTS``; ``qkey`` mirrors :func:`jobqueue.keys.level_key`): no template spells a key. SYNC
reads its argument and packs its claims as the records of :mod:`jobqueue.protocol` say. The
rendered Lua holds literals, as if written by hand: the rendering costs nothing per call. The
scripts build key names from the queue name, so they are for a single Redis primary, not
Redis Cluster — like RQ itself, whose keys carry no hash tags.
Times come from the caller (``now``), as in RQ, so every party must have a synchronised clock.
"""

from __future__ import annotations

import re
from typing import Final

from jobqueue import keys, protocol, settings

#: The key names the templates use as ``K.<name>`` (``K.job .. id``), rendered as the literal
#: from :mod:`jobqueue.keys`: a key is spelt in one place (a test checks no template spells one).
LUA_KEYS: Final = {
    "queues": keys.RQ_QUEUES,
    "queue": keys.QUEUE,
    "job": keys.JOB,
    "results": keys.RESULTS,
    "wip": keys.WIP,
    "scheduled": keys.SCHEDULED,
    "finished": keys.FINISHED,
    "failed": keys.FAILED,
    "canceled": keys.CANCELED,
    "deferred": keys.DEFERRED,
    "workers": keys.RQ_WORKERS,
    "workers_of": keys.WORKERS_OF,
    "worker": keys.WORKER,
    "suspended": keys.RQ_SUSPENDED,
    "signal": keys.SIGNAL,
    "wrr": keys.WRR,
    "activity": keys.ACTIVITY,
    "paused": keys.PAUSED,
    "exhausted": keys.EXHAUSTED,
    "cancel": keys.CANCEL,
    "rate": keys.RATE,
    "ratekeys": keys.RATE_KEYS,
    "limited": keys.LIMITED,
    "settings": settings.SETTINGS_KEY_PREFIX,
}
# The scripts (and SNAPSHOT's reply) spell the five levels out where a loop would cost more.
assert keys.PRIORITY_LEVELS == (1, 2, 3, 4, 5), "the Lua scripts assume levels 1..5"


def _lua_str(value: str) -> str:
    assert all(c.isalnum() or c in ":_-" for c in value), value  # (no quoting needed)
    return f"'{value}'"


#: The priority weights by level and the default level: every script's first lines.
_LEVELS: Final = (
    f"local WEIGHTS = {{{', '.join(str(keys.PRIORITY_WEIGHTS[level]) for level in keys.PRIORITY_LEVELS)}}}"
    "  -- jobqueue.keys.PRIORITY_WEIGHTS: smooth weighted round-robin shares\n"
    f"local DEFAULT_LEVEL = {keys.DEFAULT_PRIORITY}\n"
)

#: The per-job records the SYNC script reads by position: ``k[ACK.reason]`` in its template is
#: rendered ``k[12]``, as cheap as the literal index it replaces (no table per job).
_POSITIONS: Final = {
    name: {field: i for i, field in enumerate(record._fields, 1)}
    for name, record in (
        ("ACK", protocol.Ack),
        ("PROGRESS", protocol.Progress),
        ("RELEASE", protocol.Release),
        ("UNANSWERED", protocol.Unanswered),
    )
}
_CLAIM: Final = re.compile(r"CLAIM\{(.*?)\}", re.S)
#: Each script's template (the tests read them): what _script renders.
TEMPLATES: dict[str, str] = {}


def _script(name: str, template: str) -> str:
    TEMPLATES[name] = template
    return _render(template)


def _render(template: str) -> str:
    """Lua as Redis runs it: ``K.<name>`` rendered as that key name of :data:`LUA_KEYS`,
    ``ACK.<field>`` (and the other per-job records) as the field's position, and
    ``CLAIM{field = expr, ...}`` as the packed claim (:func:`protocol.lua_pack_claim`). So the
    Lua runs literals, as when they were written by hand, and a name that does not exist
    fails here, at import."""
    lua = re.sub(r"\bK\.(\w+)", lambda m: _lua_str(LUA_KEYS[m[1]]), template)
    lua = re.sub(r"\b(ACK|PROGRESS|RELEASE|UNANSWERED)\.(\w+)", lambda m: str(_POSITIONS[m[1]][m[2]]), lua)
    return _CLAIM.sub(lambda m: protocol.lua_pack_claim(_pairs(m[1])), lua)


def _pairs(text: str) -> dict[str, str]:
    """``a = x, b = f[1]`` -> {"a": "x", "b": "f[1]"} (the expressions hold no comma)."""
    return {k.strip(): v.strip() for k, v in (part.split("=", 1) for part in text.split(","))}


_PRELUDE_SRC: Final = (
    _LEVELS
    + r"""
local KEEP_FAILED = __KEEP_FAILED__  -- settings.DEFAULT_KEEP_FAILED_SECONDS
local MAX_KEEP = __MAX_KEEP__  -- retention beyond this (settings.MAX_KEEP_SECONDS) is clamped

local function qkey(q, level)
  if level == DEFAULT_LEVEL then return K.queue .. q end
  return K.queue .. q .. ':p' .. level
end

-- Anything in a job hash may be garbage (a raw write, another tool): every value read from
-- one goes through these, so no script ever fails on it (a failing script would fail the
-- same way on every call, and wedge the queue).

-- a finite number, or nil (Lua's tonumber also takes 'nan', 'inf', '0x10', ' 5 ')
local function num(v)
  local x = tonumber(v)
  if x and x == x and x > -math.huge and x < math.huge then return x end
  return nil
end

-- a priority level 1..5; 3 (RQ's own list) for anything else
local function level_of(v)
  local l = tonumber(v)
  if l and WEIGHTS[l] then return l end
  return DEFAULT_LEVEL
end

-- retention seconds: -1 forever (any negative, as RQ's -1), 0 at once, at most MAX_KEEP;
-- nil if not a number
local function keep_of(v)
  local k = num(v)
  if k == nil then return nil end
  if k < 0 then return -1 end
  return math.min(math.ceil(k), MAX_KEEP)  -- (whole seconds, as EXPIRE takes them)
end

-- a redis.call that answers nil instead of failing (a key of the wrong type)
local function try(...)
  local r = redis.pcall(...)
  if type(r) == 'table' and r.err then return nil end
  return r
end

-- text of any bytes for a reason: printable ASCII kept, anything else as \xHH, cut at `max`
local function shown(s, max)
  s = tostring(s)
  local cut = #s > max
  if cut then s = string.sub(s, 1, max) end
  s = (string.gsub(s, '[^%w%p ]', function(c) return string.format('\\x%02x', string.byte(c)) end))
  if cut then s = s .. '...' end
  return s
end

-- unix seconds of an RQ timestamp ('2026-01-31T12:00:00.123456Z'); nil if malformed
local function iso_ts(s)
  if type(s) ~= 'string' or s == '' then return nil end
  local y, mo, d, h, mi, sec = string.match(s, '^(%d%d%d%d)-(%d%d)-(%d%d)T(%d%d):(%d%d):(%d%d[%d%.]*)')
  sec = tonumber(sec)
  if not y or not sec then return nil end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (mo + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return num((era * 146097 + doe - 719468) * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + sec)
end

local function signal(q)
  redis.call('RPUSH', K.signal .. q, 1)
  redis.call('LTRIM', K.signal .. q, 0, 0)
end

-- A job failed for good (no attempt left): one entry in the stream the operator turns into
-- Events, a metric and the queue's failure notification (jobqueue.failures). Written here, in
-- the script that fails the job, so none is missed; before `retain`, which may delete the hash.
local function exhausted(q, id, jk, reason)
  local f = redis.call('HMGET', jk, 'jq_made', 'jq_attempts', 'data')
  redis.call('XADD', K.exhausted, 'MAXLEN', '~', 10000, '*', 'queue', q, 'id', id,
             'reason', reason or '', 'made', f[1] or '', 'attempts', f[2] or '', 'data', f[3] or '')
end

-- keep a finished/failed job `keep` seconds in `registry` (0: delete now, <0: forever)
local function retain(registry, jk, rk, id, now, keep)
  if keep == 0 then
    redis.call('DEL', jk, rk)
    return
  end
  if keep < 0 then
    redis.call('ZADD', registry, '+inf', id)
    redis.call('PERSIST', jk)
    redis.call('PERSIST', rk)
  else
    redis.call('ZADD', registry, now + keep, id)
    redis.call('EXPIRE', jk, math.ceil(keep))
    redis.call('EXPIRE', rk, math.ceil(keep))
  end
end

-- Fail a job for good, now, with `reason`: in its queue's failed registry, kept for its
-- failure_ttl. The caller then settles its dependents.
local function fail_job(q, id, reason, now, iso)
  local jk = K.job .. id
  redis.call('HSET', jk, 'status', 'failed', 'jq_reason', reason, 'exc_info', reason,
             'ended_at', iso, 'jq_end', now, 'jq_exec', '', 'retries_left', 0)
  exhausted(q, id, jk, reason)
  -- [wait, issue 21] every end has a result entry (RQ's type 2, failed): waiters block on it
  redis.call('XADD', K.results .. id, 'MAXLEN', '~', 10, '*', 'type', 2, 'exc_string', reason)
  retain(K.failed .. q, jk, K.results .. id, id, now,
         keep_of(redis.call('HGET', jk, 'failure_ttl')) or KEEP_FAILED)
end

-- RQ's depends_on. RQ keeps a child job `deferred` (rq:deferred:<its queue>) with its parents
-- in the set rq:job::<child>:dependencies (two colons, as RQ spells it) and itself in each
-- parent's rq:job:<parent>:dependents.
local PENDING = {queued = true, started = true, scheduled = true, deferred = true, created = true}
local ENDED = {failed = 'failed', canceled = 'was canceled', stopped = 'was stopped', removed = 'was removed'}

-- 'run' (every parent finished, or ended otherwise with allow_failure, or is gone: RQ counts
-- a missing parent as met), 'wait' (a parent has yet to end), or why the child can never run.
-- `final` holds statuses this call just gave (a parent's hash may be deleted already).
-- allow_failure lets a child run after a parent failed (RQ's rule) and also after one was
-- canceled, stopped or removed, where RQ would leave it deferred forever: a batch's callback
-- (docs/flows.md) runs once all its jobs have ended, however.
local function deps_verdict(child, allow, final)
  local waiting, why = false, nil
  for _, dep in ipairs(try('SMEMBERS', K.job .. ':' .. child .. ':dependencies') or {}) do
    local s = final[dep] or try('HGET', K.job .. dep, 'status')
    if type(s) ~= 'string' or s == 'finished' or (allow and ENDED[s]) then
      -- met
    elseif PENDING[s] then
      waiting = true
    elseif not why then
      why = 'its dependency ' .. shown(dep, 200) .. ' ' ..
            (ENDED[s] or ('has status "' .. shown(s, 40) .. '"'))
    end
  end
  if why then return why end
  return waiting and 'wait' or 'run'
end

-- Decide one deferred child: queue it (in its own queue, at the front if RQ's
-- Dependency(enqueue_at_front=True) asked), fail it for good, or leave it waiting.
-- Returns the child's new status ('queued', 'failed') or nil.
local function settle_child(child, now, iso, final, q)
  local ck = K.job .. child
  local c = try('HMGET', ck, 'status', 'origin', 'allow_dependency_failures', 'enqueue_at_front', 'jq_prio')
  if not c or c[1] ~= 'deferred' then return nil end
  local origin = c[2]
  local verdict = deps_verdict(child, c[3] == '1', final)
  if verdict == 'wait' then return nil end
  -- decided: the set has done its work (the parents stay listed in the hash's dependency_ids)
  redis.call('DEL', K.job .. ':' .. child .. ':dependencies')
  if verdict == 'run' and origin and origin ~= '' then
    redis.call('ZREM', K.deferred .. origin, child)
    local level = level_of(c[5])
    redis.call('HSET', ck, 'status', 'queued', 'enqueued_at', iso, 'jq_ready', now)
    redis.call(c[4] == '1' and 'LPUSH' or 'RPUSH', qkey(origin, level), child)
    redis.call('SADD', K.queues, qkey(origin, level))
    signal(origin)
    return 'queued'
  end
  if verdict == 'run' then verdict = 'it has no origin (queue) field' end
  if origin then redis.call('ZREM', K.deferred .. origin, child) end
  -- (a child without origin is kept in the failed registry of the queue that settled it)
  fail_job((origin and origin ~= '') and origin or q, child, 'not run: ' .. verdict .. " (RQ's depends_on" ..
           (c[3] == '1' and ')' or ' without allow_failure)'), now, iso)
  return 'failed'
end

-- A job reached a final status: settle its dependents, and theirs in turn (a failed child's
-- own children), as one worklist (no recursion: a chain may be long).
local function settle_dependents(q, id, status, now, iso)
  local final = {[id] = status}
  local todo = {id}
  local i = 1
  while todo[i] do
    local dk = K.job .. todo[i] .. ':dependents'
    i = i + 1
    local children = try('SMEMBERS', dk) or {}
    if #children > 0 then
      redis.call('DEL', dk)
      for _, child in ipairs(children) do
        local s = settle_child(child, now, iso, final, q)
        if s == 'failed' then
          final[child] = s
          table.insert(todo, child)
        end
      end
    end
  end
end

-- [cancel, issue 21] End a job `canceled` (RQ's status and CanceledJobRegistry): never retried,
-- kept like a failed job (failure_ttl), a result entry of RQ's type 3 (stopped) so a waiter on
-- the results stream wakes, and its depends_on children failed ('was canceled').
local function cancel_job(q, id, now, iso, reason)
  local jk, rk = K.job .. id, K.results .. id
  redis.call('HSET', jk, 'status', 'canceled', 'jq_reason', reason, 'ended_at', iso, 'jq_end', now,
             'jq_exec', '', 'retries_left', 0)
  redis.call('XADD', rk, 'MAXLEN', '~', 10, '*', 'type', 3, 'exc_string', reason)
  retain(K.canceled .. q, jk, rk, id, now, keep_of(try('HGET', jk, 'failure_ttl')) or KEEP_FAILED)
  settle_dependents(q, id, 'canceled', now, iso)
end

-- A claim that ended without a result: the worker was lost (reason ~= '') or handed the
-- job back before starting it (refund = true). Re-queue it at the front of its level if an
-- attempt is left, else fail it with the reason. The caller removed or checked the wip member.
local function end_claim(q, id, member, now, now_iso, reason, refund)
  local jk = K.job .. id
  redis.call('ZREM', K.wip .. q, member)
  local f = try('HMGET', jk, 'jq_attempts', 'jq_made', 'jq_prio', 'failure_ttl', 'status', 'retries_left',
                'jq_cancel', 'jq_reason')
  if not f or not f[5] then return 'gone' end
  if f[7] and f[7] ~= '' then  -- [cancel] a cancel was asked for: it ends here, never re-queued
    local how = reason ~= '' and 'was lost' or 'handed it back'
    cancel_job(q, id, now, now_iso, (f[8] or 'canceled') .. ' (its worker ' .. how .. ')')
    return 'canceled'
  end
  local made = num(f[2]) or 1
  -- a job only plain RQ ever ran has no jq_attempts: RQ's retries_left says what is left
  local attempts = num(f[1]) or (made + (num(f[6]) or 0))
  if refund then made = math.max(made - 1, 0) end
  if made < attempts then
    redis.call('HSET', jk, 'status', 'queued', 'jq_made', made, 'retries_left', attempts - made - 1,
               'jq_ready', now, 'enqueued_at', now_iso, 'jq_exec', '')
    if reason ~= '' then redis.call('HSET', jk, 'jq_reason', reason) end
    redis.call('LPUSH', qkey(q, level_of(f[3])), id)
    signal(q)
    return 'requeued'
  end
  fail_job(q, id, reason .. ' (attempt ' .. made .. ' of ' .. attempts .. ', none left)', now, now_iso)
  settle_dependents(q, id, 'failed', now, now_iso)
  return 'failed'
end
"""
)

_PRELUDE: Final = _PRELUDE_SRC.replace("__KEEP_FAILED__", str(settings.DEFAULT_KEEP_FAILED_SECONDS)).replace(
    "__MAX_KEEP__", str(settings.MAX_KEEP_SECONDS)
)

ENQUEUE: Final = _script(
    "ENQUEUE",
    _PRELUDE
    + r"""
-- ARGV: queue, created_iso, created_ts, njobs, linked ('1' if some job has dependencies),
-- nsets, then each option set (nfields, field, value, ...), then per job: id, kind ('q'
-- queued | 's' scheduled | 'd' deferred), level, ready, set, data, description, and for a
-- 'd' job: allow_failure ('1' | ''), ndeps, dep ids (RQ's depends_on).
-- (Shared fields travel once per call: the argument count is what costs.)
-- Returns only the jobs that were not simply added, flat: index in the call (1-based), then
-- {status} (added deferred: its status once settled) or the existing job's status
-- (duplicate); every job not listed was added, queued or scheduled as its kind says.
-- (Per job one EXISTS and one HSET; the queued ids go to each level's list in one RPUSH per
-- call, in call order: a bulk enqueue costs Redis about two commands per job.)
-- When a job depends on an id that is neither a job in Redis nor one of this call, nothing
-- is added and the error 'UNKNOWNDEP <id> <dep>' is returned (checked before the first
-- write: a flow is added whole or not at all; ids are checked by the client, they hold no
-- space).
-- A deferred job is linked as RQ links it (rq:job::<id>:dependencies, each pending
-- parent's rq:job:<parent>:dependents, rq:deferred:<q>), then settled at once: queued if its
-- parents have ended already, failed if one failed (without allow_failure), else it waits.
local q, created, created_ts = ARGV[1], ARGV[2], ARGV[3]
local n, linked, nsets = tonumber(ARGV[4]), ARGV[5] == '1', tonumber(ARGV[6])
local i = 7
local sets = {}
for s = 1, nsets do
  local nf = tonumber(ARGV[i])
  local fields = {}
  for k = 1, nf * 2 do fields[k] = ARGV[i + k] end
  sets[s] = fields
  i = i + 1 + nf * 2
end
-- the arguments of the job at i: 7, and a deferred job's dependencies
local function ndeps_at(i) return ARGV[i + 1] == 'd' and tonumber(ARGV[i + 8]) or 0 end
local function width(i) return ARGV[i + 1] == 'd' and 9 + tonumber(ARGV[i + 8]) or 7 end
if linked then
  -- [flows, issue 21] every dependency must exist before anything is written
  local first = i
  local ids = {}
  for j = 1, n do
    ids[ARGV[i]] = true
    i = i + width(i)
  end
  i = first
  for j = 1, n do
    for d = 1, ndeps_at(i) do
      local dep = ARGV[i + 8 + d]
      if not ids[dep] and redis.call('EXISTS', K.job .. dep) == 0 then
        return redis.error_reply('UNKNOWNDEP ' .. ARGV[i] .. ' ' .. dep)
      end
    end
    i = i + width(i)
  end
  i = first
end
local out = {}
local queued = {}  -- level -> the ids queued at it by this call, in call order
local levels = {}
local added = 0
local deferred = {}
for j = 1, n do
  local id, kind, level, ready = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  local jk = K.job .. id
  if redis.call('EXISTS', jk) == 1 then
    -- a duplicate ('unknown': a hash without status, or a key that is not a hash)
    local existing = try('HGET', jk, 'status')
    out[#out + 1] = j
    out[#out + 1] = (existing and existing ~= '') and existing or 'unknown'
  else
    local data, description, set = ARGV[i + 5], ARGV[i + 6], sets[tonumber(ARGV[i + 4])]
    if kind == 'q' then
      redis.call('HSET', jk, 'status', 'queued', 'enqueued_at', created, 'created_at', created,
                 'jq_created', created_ts, 'origin', q, 'data', data, 'description', description,
                 'jq_prio', level, 'jq_ready', ready, unpack(set))
      local ids = queued[level]
      if ids then ids[#ids + 1] = id else queued[level] = {id} end
    elseif kind == 's' then
      redis.call('HSET', jk, 'status', 'scheduled', 'created_at', created, 'jq_created', created_ts,
                 'origin', q, 'data', data, 'description', description, 'jq_prio', level,
                 'jq_ready', ready, unpack(set))
      redis.call('ZADD', K.scheduled .. q, ready, id)
    else
      local deps = {unpack(ARGV, i + 9, i + 8 + ndeps_at(i))}
      redis.call('HSET', jk, 'status', 'deferred', 'dependency_id', deps[1], 'dependency_ids',
                 cjson.encode(deps), 'created_at', created, 'jq_created', created_ts, 'origin', q,
                 'data', data, 'description', description, 'jq_prio', level, 'jq_ready', ready,
                 unpack(set))
      if ARGV[i + 7] == '1' then redis.call('HSET', jk, 'allow_dependency_failures', 1) end
      redis.call('SADD', K.job .. ':' .. id .. ':dependencies', unpack(deps))
      redis.call('ZADD', K.deferred .. q, created_ts, id)
      table.insert(deferred, {id, deps, j})
    end
    levels[level] = true
    added = added + 1
  end
  i = i + width(i)
end
for level, ids in pairs(queued) do redis.call('RPUSH', qkey(q, level), unpack(ids)) end
-- settle each deferred job now that the whole call is written (a parent may come after its
-- children in the call); a parent still pending gets the child in its dependents set
local now = tonumber(created_ts)
for _, d in ipairs(deferred) do
  local id, deps = d[1], d[2]
  local s = settle_child(id, now, created, {}, q)
  out[#out + 1] = d[3]
  out[#out + 1] = {s or 'deferred'}
  if s == 'failed' then
    settle_dependents(q, id, 'failed', now, created)
  elseif s == nil then
    for _, dep in ipairs(deps) do
      if PENDING[try('HGET', K.job .. dep, 'status') or ''] then
        redis.call('SADD', K.job .. dep .. ':dependents', id)
      end
    end
  end
end
if added > 0 then
  for level, _ in pairs(levels) do redis.call('SADD', K.queues, qkey(q, level)) end
  signal(q)
end
return out
""",
)

# The records a SYNC call carries once, named back by field (jobqueue.protocol; the per-job
# ones are read by position, see _script).
_SYNC_RECORDS: Final = "\n".join(
    [
        "-- the records the call carries once (a JSON array each), by field name: a.queue, d.timeout",
        protocol.lua_fields("SYNC_ARGS", protocol.SyncArgs),
        protocol.lua_fields("DEFAULTS", protocol.Defaults),
        "-- one record as a table keyed by its field names (anything but an array: an empty one)",
        "local function named(row, fields)",
        "  local t = {}",
        "  if type(row) == 'table' then for i, f in ipairs(fields) do t[f] = row[i] end end",
        "  return t",
        "end",
    ]
)

SYNC: Final = _script(
    "SYNC",
    _PRELUDE
    + _SYNC_RECORDS
    + r"""
local a = named(cjson.decode(ARGV[1]), SYNC_ARGS)
local q = a.queue
local now = tonumber(a.now)
local iso = a.iso
local wip = K.wip .. q
local wname = a.worker
local wk = K.worker .. wname
local stale = {}
-- [id, reason] of jobs this call failed at once because their record cannot run, or
-- entries it could not process at all (reported, so the worker logs them)
local rejected = {}
local touched = false

local function report(id, reason)
  rejected[#rejected + 1] = shown(id, 200)
  rejected[#rejected + 1] = reason
end

-- Each step below touches one job, under pcall: a record that makes a command fail (a key
-- of the wrong type) costs that step only, never the whole call.
local function guarded(id, fn, ...)
  local ok, err = pcall(fn, ...)
  if not ok then
    report(id, 'could not be processed: ' .. shown(type(err) == 'table' and err.err or err, 300))
  end
  return ok
end

-- 1. progress (protocol.Progress; before the acks, so a job's last report is kept)
local function progress(p)
  local id = p[PROGRESS.id]
  if redis.call('ZSCORE', wip, id .. ':' .. p[PROGRESS.exec]) then
    local jk = K.job .. id
    redis.call('HSET', jk, 'jq_progress', p[PROGRESS.value])
    -- RQ's meta is whatever its serializer wrote: only a JSON object gets the progress key
    local raw = redis.call('HGET', jk, 'meta')
    local ok, meta = true, {}
    if raw then ok, meta = pcall(cjson.decode, raw) end
    if ok and type(meta) == 'table' then
      meta['progress'] = tonumber(p[PROGRESS.value])
      local enc_ok, enc = pcall(cjson.encode, meta)
      if enc_ok then redis.call('HSET', jk, 'meta', enc) end
    end
  end
end
for _, p in ipairs(a.progress) do guarded(p[PROGRESS.id], progress, p) end

-- 2. attempts that ended (protocol.Ack)
local function ack(k)
  local id, ex, outcome = k[ACK.id], k[ACK.exec], k[ACK.outcome]
  local member = id .. ':' .. ex
  local jk, rk = K.job .. id, K.results .. id
  -- (ZREM answers whether the member was there: one command checks and removes the claim)
  if redis.call('ZREM', wip, member) == 0 then
    table.insert(stale, id)  -- taken from us (lease expired, pod recovered): drop the result
    return
  end
  touched = true
  -- the attempt's fields and, for a success, its status in one HSET (commands per job are
  -- what a busy queue pays for)
  local fields = {'started_at', k[ACK.started_iso], 'ended_at', k[ACK.ended_iso],
                  'last_heartbeat', k[ACK.ended_iso], 'jq_start', k[ACK.started], 'jq_end', k[ACK.ended],
                  'jq_exec', ''}
  -- [cancel, issue 21] stopped on request; or failed while a cancel was on its way: never retried
  if outcome == 'cancel' or (outcome ~= 'ok' and (redis.call('HGET', jk, 'jq_cancel') or '') ~= '') then
    redis.call('HSET', jk, unpack(fields))
    local asked = redis.call('HGET', jk, 'jq_reason') or 'canceled'
    local why = asked .. '; ' ..
                (outcome == 'cancel' and k[ACK.reason] or ('its attempt had failed: ' .. k[ACK.reason]))
    cancel_job(q, id, now, iso, why)
    return
  end
  local stream = {'type', 1, 'worker_name', wname, 'execution_id', ex,
                  'execution_started_at', k[ACK.started], 'execution_ended_at', k[ACK.ended]}
  if outcome == 'ok' then
    table.insert(fields, 'status'); table.insert(fields, 'finished')
    redis.call('HSET', jk, unpack(fields))
    if k[ACK.result] ~= '' then table.insert(stream, 'return_value'); table.insert(stream, k[ACK.result]) end
    redis.call('XADD', rk, 'MAXLEN', '~', 10, '*', unpack(stream))
    retain(K.finished .. q, jk, rk, id, now, tonumber(k[ACK.keep]))
    settle_dependents(q, id, 'finished', now, iso)
    return
  end
  stream[2] = 2
  table.insert(stream, 'exc_string'); table.insert(stream, k[ACK.trace_z])
  redis.call('XADD', rk, 'MAXLEN', '~', 10, '*', unpack(stream))
  for _, v in ipairs({'exc_info', k[ACK.trace], 'jq_reason', k[ACK.reason]}) do table.insert(fields, v) end
  redis.call('HSET', jk, unpack(fields))
  if outcome == 'retry' then
    local f = redis.call('HMGET', jk, 'jq_attempts', 'jq_made', 'jq_prio', 'failure_ttl',
                         'enqueue_at_front_on_retry')
    local delay = tonumber(k[ACK.keep])
    redis.call('HSET', jk, 'retries_left', math.max((num(f[1]) or 1) - (num(f[2]) or 1) - 1, 0))
    local keepf = keep_of(f[4]) or KEEP_FAILED
    if keepf > 0 then redis.call('EXPIRE', rk, math.ceil(keepf)) end
    if delay > 0 then
      redis.call('HSET', jk, 'status', 'scheduled', 'jq_ready', now + delay)
      redis.call('ZADD', K.scheduled .. q, now + delay, id)
    else
      redis.call('HSET', jk, 'status', 'queued', 'jq_ready', now, 'enqueued_at', iso)
      -- RQ's Retry(enqueue_at_front=True)
      redis.call(f[5] == '1' and 'LPUSH' or 'RPUSH', qkey(q, level_of(f[3])), id)
    end
    signal(q)
  else
    redis.call('HSET', jk, 'status', 'failed', 'retries_left', 0)
    exhausted(q, id, jk, k[ACK.reason])
    retain(K.failed .. q, jk, rk, id, now, tonumber(k[ACK.keep]))
    settle_dependents(q, id, 'failed', now, iso)
  end
end
for _, k in ipairs(a.acks) do
  -- (a result that cannot be written at all is dropped with its claim, not retried forever)
  if not guarded(k[ACK.id], ack, k) then redis.call('ZREM', wip, k[ACK.id] .. ':' .. k[ACK.exec]) end
end

-- 3. jobs handed back unstarted (the worker is stopping): protocol.Release
for _, r in ipairs(a.releases) do
  local member = r[RELEASE.id] .. ':' .. r[RELEASE.exec]
  if redis.call('ZSCORE', wip, member) then
    guarded(r[RELEASE.id], end_claim, q, r[RELEASE.id], member, now, iso, '', true)
  end
end

-- 3b. claims of this worker's calls that failed without a reply (protocol.Unanswered): the
--     call ran, the worker never learnt what it claimed; handed back unstarted, attempt
--     refunded (found by their lease score; the exec prefix is unique to the call)
for _, c in ipairs(a.unanswered) do
  local lease, xp = tonumber(c[UNANSWERED.lease]), c[UNANSWERED.exec_prefix]
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', wip, lease - 0.001, lease + 0.001)) do
    local id, ex = string.match(m, '^(.*):([^:]*)$')
    if id and string.sub(ex, 1, #xp) == xp then guarded(id, end_claim, q, id, m, now, iso, '', true) end
  end
end

-- 4. promote due scheduled jobs (every worker does it: no scheduler lock to lose)
local sched = K.scheduled .. q
local due = redis.call('ZRANGEBYSCORE', sched, '-inf', now, 'WITHSCORES', 'LIMIT', 0,
                       tonumber(a.promote_limit))
for j = 1, #due, 2 do
  local id = due[j]
  redis.call('ZREM', sched, id)
  local jk = K.job .. id
  if redis.call('EXISTS', jk) == 1 then
    local level = level_of(try('HGET', jk, 'jq_prio'))
    local ready = due[j + 1]
    if guarded(id, redis.call, 'HSET', jk, 'status', 'queued', 'enqueued_at', iso, 'jq_ready', ready) then
      redis.call('RPUSH', qkey(q, level), id)
    end
  end
end

-- 5. claim up to n jobs, fairly across the levels (smooth weighted round-robin), within the
--    queue's concurrency: the JobQueue's spec.concurrency, read from its published settings,
--    bounds the jobs held in rq:wip (running, or claimed to start at once) over every worker
local claimed = {}
local n = tonumber(a.n)
local capped = false
local rate = nil  -- [rate limit] {key, per, limited}
local krate = nil  -- [rate limit per key] {jobs, per}
-- [rate limit] the windows use the server's clock, not the caller's `now`: a worker descheduled
-- between reading its clock and this call would record its claims as older than they are
local rnow = nil
local function server_now()
  if not rnow then
    local t = redis.call('TIME')
    rnow = tonumber(t[1]) + tonumber(t[2]) / 1000000
  end
  return rnow
end
if n > 0 then
  local st = try('GET', K.settings .. q)
  local cap = type(st) == 'string' and tonumber(string.match(st, '"concurrency":%s*(%d+)'))
  if cap then
    local room = math.max(cap - redis.call('ZCARD', wip), 0)
    if room < n then
      -- under the cap, no prefetch: a unit another worker's free slot could run now stays free
      n = math.min(room, tonumber(a.free) or n)
      capped = true
    end
  end
  -- [rate limit, issue 21] spec.rateLimit {jobs, perSeconds}: the claim times of the last
  -- perSeconds live in jobqueue:rate:<q> (one member per job claimed), so at most `jobs` are
  -- claimed in any window (t - perSeconds, t] over every worker. A limited call reports
  -- `capped` and, as its wake-up time, when the oldest claim leaves the window.
  local rl = type(st) == 'string' and string.match(st, '"rateLimit":%s*(%b{})')
  local rjobs = rl and tonumber(string.match(rl, '"jobs":%s*(%d+)'))
  local rper = rl and num(string.match(rl, '"perSeconds":%s*([%d%.eE%+%-]+)'))
  local kl = type(st) == 'string' and string.match(st, '"keyRateLimit":%s*(%b{})')
  local kjobs = kl and tonumber(string.match(kl, '"jobs":%s*(%d+)'))
  local kper = kl and num(string.match(kl, '"perSeconds":%s*([%d%.eE%+%-]+)'))
  if kjobs and kper and kper > 0 then krate = {jobs = kjobs, per = kper} end
  if rjobs and rper and rper > 0 then
    rate = {key = K.rate .. q, per = rper}
    redis.call('ZREMRANGEBYSCORE', rate.key, '-inf', server_now() - rper)
    local room = math.max(rjobs - redis.call('ZCARD', rate.key), 0)
    if room < n then
      n = room
      rate.limited = true
      capped = true
    end
  end
end

-- RQ's rule for job ids (rq/job.py), which the producer API enforces too (client.py)
local function valid_id(id) return #id <= 1024 and string.find(id, '^[%w_%-]+$') ~= nil end
local FIELDS = {'data', 'timeout', 'jq_attempts', 'jq_made', 'jq_backoff', 'result_ttl', 'failure_ttl',
                'retries_left', 'jq_ready', 'enqueued_at', 'status', 'retry_intervals',
                'success_callback_name', 'failure_callback_name', 'stopped_callback_name', 'webhooks',
                'repeats_left', 'jq_rkey'}
-- RQ job options these workers do not carry out: such a job is failed at once, never run
-- without them (docs/jobs.md, "Working with RQ")
local UNSUPPORTED = {[13] = "RQ's on_success callback", [14] = "RQ's on_failure callback",
                     [15] = "RQ's on_stopped callback", [16] = "RQ's webhooks", [17] = "RQ's Repeat"}
local STATUSES = {started = true, finished = true, failed = true, scheduled = true, deferred = true,
                  canceled = true, stopped = true, created = true}
local function field(i, v, want)
  local is = v and ('"' .. shown(v, 60) .. '"') or 'missing'
  return 'field ' .. FIELDS[i] .. ' is ' .. is .. ', not ' .. want
end
local d = named(a.defaults, DEFAULTS)  -- (empty until the worker has read the queue's settings)
local seq = 0
local first_id = nil  -- of the jobs claimed (RQ's current_job)

-- One popped id: claim it (appends its packed record to `claimed`), fail it at once
-- (returns the reason), or drop it (returns nil: no record, or a stale duplicate entry).
local function claim_one(id, best)
  local jk = K.job .. id
  local f = redis.pcall('HMGET', jk, unpack(FIELDS))
  if f.err then
    report(id, 'dropped from the queue: ' .. shown(jk, 200) .. ' is not a job hash (' .. f.err .. ')')
    return nil
  end
  if not f[1] and not f[11] then
    if redis.call('EXISTS', jk) == 0 then
      -- no record (removed, or RQ's `ttl` ran out): dropped, as RQ's workers do
      if not valid_id(id) then report(id, 'dropped from the queue: not a valid job id, and no job record') end
      return nil
    end
    -- (a hash with neither a payload nor a status: failed below, naming the status)
  end
  if not valid_id(id) then
    return 'job id "' .. shown(id, 100) .. '" is not valid: RQ allows 1-1024 characters of A-Z a-z 0-9 _ -'
  end
  if f[11] ~= 'queued' then
    -- an id listed twice (RQ's own clean-up racing a reaper): dropped, never run twice
    if STATUSES[f[11]] then return nil end
    return field(11, f[11], '"queued"')
  end
  if not f[1] or f[1] == '' then return field(1, f[1], 'a payload (the function call to run)') end
  for i, what in pairs(UNSUPPORTED) do
    local v = f[i]
    if v and v ~= '' and not (i == 17 and num(v) == 0) then
      return 'uses ' .. what .. ' (' .. FIELDS[i] .. ' "' .. shown(v, 80) .. '"), which jobqueue workers ' ..
             'do not carry out'
    end
  end
  local timeout = num(d.timeout)
  if f[2] then
    timeout = num(f[2])
    if not timeout or (timeout <= 0 and timeout ~= -1) then
      return field(2, f[2], 'a number of seconds > 0 (or -1: no limit)')
    end
  end
  local attempts = num(f[3])
  if f[3] and not (attempts and attempts >= 1 and attempts <= 10000 and attempts % 1 == 0) then
    return field(3, f[3], 'a whole number 1..10000')
  end
  if not attempts then
    local rl = num(f[8])
    if f[8] and not (rl and rl >= 0 and rl < 10000 and rl % 1 == 0) then
      return field(8, f[8], 'a whole number >= 0')
    end
    attempts = rl and (rl + 1) or num(d.attempts)
  end
  local made = num(f[4] or 0)
  if not (made and made >= 0 and made % 1 == 0) then return field(4, f[4], 'a whole number >= 0') end
  made = made + 1
  if made > attempts then
    return 'no attempt left: field jq_made is ' .. (made - 1) .. ' of jq_attempts ' .. attempts
  end
  local keepc, keepf = num(d.keep_completed), num(d.keep_failed)
  if f[6] then keepc = keep_of(f[6]) if not keepc then return field(6, f[6], 'a number of seconds') end end
  if f[7] then keepf = keep_of(f[7]) if not keepf then return field(7, f[7], 'a number of seconds') end end
  -- the backoff: ours (jq_backoff); else RQ's Retry intervals, kept as they are so every
  -- attempt reads them; else the queue's
  local backoff = f[5]
  local ready = num(f[9]) or iso_ts(f[10]) or now
  -- [rate limit per key, issue 21] spec.keyRateLimit: each rateKey (jq_rkey) has its own
  -- window, jobqueue:rate:<q>:k:<key>. A job whose key is at its limit is not claimed: it waits,
  -- scheduled, for a slot reserved in a later window (jobqueue:ratekeys:<q>, key -> "due,count":
  -- `jobs` jobs per window), so a key's backlog comes back a window's worth at a time instead
  -- of being popped again and again, and the other keys' jobs are claimed meanwhile.
  local kk = nil
  if krate and f[18] and f[18] ~= '' then
    kk = K.rate .. q .. ':k:' .. f[18]
    redis.call('ZREMRANGEBYSCORE', kk, '-inf', server_now() - krate.per)
    if redis.call('ZCARD', kk) >= krate.jobs then
      local free = tonumber(redis.call('ZRANGE', kk, 0, 0, 'WITHSCORES')[2]) + krate.per
      local due = free
      if not redis.call('HGET', jk, 'jq_rdue') then
        -- a new arrival takes the next reserved slot; one that came back for its slot and
        -- found the window still full (another pod's claim) retries when the oldest leaves
        local hk = K.ratekeys .. q
        local d, c = string.match(redis.call('HGET', hk, f[18]) or '', '^([^,]+),(%d+)$')
        local count = 0
        if num(d) and num(d) >= free then due, count = num(d), tonumber(c) end
        if count >= krate.jobs then due, count = due + krate.per, 0 end
        redis.call('HSET', hk, f[18], string.format('%.6f', due) .. ',' .. (count + 1))
        local ttl = math.ceil((due - server_now() + krate.per) * 1000)
        if redis.call('PTTL', hk) < ttl then redis.call('PEXPIRE', hk, ttl) end
      end
      redis.call('HSET', jk, 'status', 'scheduled', 'jq_ready', due, 'jq_rdue', due)
      redis.call('ZADD', K.scheduled .. q, due, id)
      return nil
    end
  end
  seq = seq + 1
  local ex = a.exec_prefix .. seq
  if kk then
    redis.call('ZADD', kk, server_now(), ex)
    redis.call('PEXPIRE', kk, math.ceil(krate.per * 1000) + 1000)
  end
  redis.call('ZADD', wip, a.lease, id .. ':' .. ex)
  redis.call('HSET', jk, 'status', 'started', 'worker_name', wname, 'started_at', iso,
             'last_heartbeat', iso, 'jq_pod', a.pod, 'jq_exec', ex, 'jq_made', made,
             'jq_attempts', attempts, 'retries_left', attempts - made, 'jq_prio', best,
             'timeout', timeout, 'result_ttl', keepc, 'failure_ttl', keepf)
  if not backoff then
    if f[12] and f[12] ~= '' and f[12] ~= '[]' then
      backoff = f[12]
    else
      backoff = d.backoff
      redis.call('HSET', jk, 'jq_backoff', backoff)
    end
  end
  redis.call('PERSIST', jk)
  -- One record per job (protocol.Claim), all returned as ONE string: each reply element
  -- costs the client a parse step, one per call instead of three per job.
  claimed[#claimed + 1] = CLAIM{exec = ex, timeout = timeout, attempts = attempts, made = made,
                                keep_completed = keepc, keep_failed = keepf, level = best, ready = ready,
                                id = id, data = f[1], backoff = backoff}
  first_id = first_id or id
  return nil
end

local lens = {}
local nonempty = 0
for l = 1, 5 do
  lens[l] = redis.call('LLEN', qkey(q, l))
  if lens[l] > 0 then nonempty = nonempty + 1 end
end
local paused = redis.call('EXISTS', K.suspended) == 1
  or redis.call('HEXISTS', K.paused, q) == 1  -- `jobqueue pause` (jobqueue.admin)
if n > 0 and not paused and nonempty > 0 then
  local wrr = K.wrr .. q
  local cur = {0, 0, 0, 0, 0}
  local multi = nonempty > 1
  if multi then
    local c = redis.call('HMGET', wrr, 1, 2, 3, 4, 5)
    for l = 1, 5 do cur[l] = tonumber(c[l]) or 0 end
  end
  local guard = n + 500  -- entries dropped or rejected per call at most (bounds the call's time)
  while #claimed < n and nonempty > 0 and guard > 0 do
    guard = guard - 1
    local best, total = nil, 0
    for l = 1, 5 do
      if lens[l] > 0 then
        cur[l] = cur[l] + WEIGHTS[l]
        total = total + WEIGHTS[l]
        if best == nil or cur[l] > cur[best] then best = l end
      else
        cur[l] = 0
      end
    end
    cur[best] = cur[best] - total
    -- one level left (most queues use one): pop the ids still wanted with one LPOP
    local take = 1
    if nonempty == 1 then take = math.min(n - #claimed, lens[best]) end
    local ids = redis.call('LPOP', qkey(q, best), take)
    if not ids then ids = {} end
    lens[best] = lens[best] - take
    if lens[best] <= 0 then lens[best] = 0; nonempty = nonempty - 1 end
    for j, id in ipairs(ids) do
      if j > 1 then guard = guard - 1 end
      local ok, why = pcall(claim_one, id, best)
      if not ok then
        why = 'could not be claimed: ' .. shown(type(why) == 'table' and why.err or why, 300)
        redis.pcall('ZREM', wip, id .. ':' .. a.exec_prefix .. seq)  -- (if it failed after its claim)
      end
      if why then
        -- a record that cannot run is failed for good at once: no worker ever sees it
        why = 'rejected: ' .. why
        if guarded(id, fail_job, q, id, why, now, iso) then
          guarded(id, settle_dependents, q, id, 'failed', now, iso)
        end
        report(id, why)
      end
    end
  end
  if multi then redis.call('HSET', wrr, 1, cur[1], 2, cur[2], 3, cur[3], 4, cur[4], 5, cur[5]) end
end
if nonempty == 0 then redis.call('DEL', K.signal .. q) end
-- [rate limit] record this call's claims in the window; a limited call's wake-up time
local rate_free = nil
if rate then
  for i = 1, #claimed do redis.call('ZADD', rate.key, server_now(), a.exec_prefix .. i) end
  redis.call('PEXPIRE', rate.key, math.ceil(rate.per * 1000) + 1000)
  local oldest = redis.call('ZRANGE', rate.key, 0, 0, 'WITHSCORES')
  if rate.limited and oldest[2] then
    rate_free = tonumber(oldest[2]) + rate.per
    redis.call('HSET', K.limited, q, rate_free)  -- (SNAPSHOT: the queue is being limited)
  end
end
capped = capped and nonempty > 0 and not paused
if #claimed > 0 or #rejected > 0 then touched = true end
if touched then redis.call('HSET', K.activity, q, a.now) end

-- 6. the worker record, as RQ shows it (busy while any slot runs a job)
local busy = tonumber(a.busy) + #claimed
local current = a.current
if current == '' and first_id then current = first_id end
-- (never recreate a record that expired or was declared dead: the heartbeat re-registers)
if redis.call('EXISTS', wk) == 1 then
  redis.call('HSET', wk, 'state', busy > 0 and 'busy' or 'idle', 'current_job', current, 'jq_busy',
             math.min(busy, tonumber(a.slots)), 'last_heartbeat', iso)
  if a.ok > 0 then redis.call('HINCRBY', wk, 'successful_job_count', a.ok) end
  if a.ko > 0 then redis.call('HINCRBY', wk, 'failed_job_count', a.ko) end
  if a.work_time > 0 then redis.call('HINCRBYFLOAT', wk, 'total_working_time', a.work_time) end
end

local nxt = redis.call('ZRANGE', sched, 0, 0, 'WITHSCORES')
local wake = nxt[2] or ''
if rate_free and capped and (wake == '' or rate_free < tonumber(wake)) then  -- [rate limit]
  wake = string.format('%.6f', rate_free)
end
return {wake, stale, table.concat(claimed), paused and 1 or 0, capped and 1 or 0, rejected}
""",
)

HEARTBEAT: Final = _script(
    "HEARTBEAT",
    r"""
-- ARGV[1] JSON {q, w, iso, ttl, lease, members:[...]}; returns {worker still registered 0/1,
-- the members no longer ours}
local a = cjson.decode(ARGV[1])
local wip = K.wip .. a.q
local wk = K.worker .. a.w
local gone = {}
local registered = redis.call('EXISTS', wk) == 1 and redis.call('HEXISTS', wk, 'death') == 0
if registered then
  redis.call('HSET', wk, 'last_heartbeat', a.iso)
  redis.call('EXPIRE', wk, a.ttl)
end
for _, m in ipairs(a.members) do
  if redis.call('ZSCORE', wip, m) then
    redis.call('ZADD', wip, 'XX', a.lease, m)
  else
    table.insert(gone, m)
  end
end
return {registered and 1 or 0, gone}
""",
)

REAP: Final = _script(
    "REAP",
    _PRELUDE
    + r"""
-- ARGV: queue, now, now_iso, limit, stale_after. Re-queue or fail jobs whose lease expired;
-- settle a few deferred jobs nobody told (see below).
local q, now, iso, stale_after = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[5])
local wip = K.wip .. q
local requeued, failed = {}, {}
local function reap(m)
  local id, ex = string.match(m, '^(.*):([^:]*)$')
  local f = id and redis.call('HMGET', K.job .. id, 'jq_exec', 'worker_name', 'jq_pod', 'status')
  if not id or not f[4] or (f[1] and f[1] ~= ex) then
    redis.call('ZREM', wip, m)  -- the job is gone, or the entry is from an older claim
    return
  end
  local reason = 'lost: worker ' .. shown(f[2] or '?', 200) .. ' on pod ' .. shown(f[3] or '?', 200) ..
                 ' stopped renewing its lease on this job (crashed, killed or frozen)'
  local r = end_claim(q, id, m, now, iso, reason, false)
  -- its worker stopped heart-beating too: retire the record now rather than at its TTL
  local wk = K.worker .. (f[2] or '')
  local hb = iso_ts(try('HGET', wk, 'last_heartbeat'))
  if hb and hb < now - stale_after and try('HEXISTS', wk, 'death') == 0 then
    redis.call('SREM', K.workers_of .. q, wk)
    redis.call('SREM', K.workers, wk)
    redis.call('HSET', wk, 'death', iso, 'state', 'dead')
    redis.call('EXPIRE', wk, 60)
  end
  if r == 'requeued' then table.insert(requeued, id) elseif r == 'failed' then table.insert(failed, id) end
end
for _, m in ipairs(redis.call('ZRANGEBYSCORE', wip, '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))) do
  -- (an entry that cannot be handled at all, e.g. its job key is not a hash, is dropped:
  -- retried, it would fail again on every pass)
  if not pcall(reap, m) then redis.call('ZREM', wip, m) end
end
-- forget worker registrations whose hash expired (RQ does this only in its maintenance)
for _, wk in ipairs(redis.call('SMEMBERS', K.workers_of .. q)) do
  if redis.call('EXISTS', wk) == 0 then
    redis.call('SREM', K.workers_of .. q, wk)
    redis.call('SREM', K.workers, wk)
  end
end
-- Deferred jobs (RQ's depends_on) are settled when a parent ends here; one whose parent
-- ended elsewhere (a plain RQ worker failed it: RQ then leaves its children deferred
-- forever) or vanished (deleted, expired) is caught by this sweep: a few per pass, in turn.
local deferred = K.deferred .. q
local total = redis.call('ZCARD', deferred)
if total > 0 then
  local wrr = K.wrr .. q
  local from = tonumber(redis.call('HGET', wrr, 'deferred')) or 0
  if from >= total then from = 0 end
  local batch = redis.call('ZRANGE', deferred, from, from + 49)
  local settled = 0
  for _, child in ipairs(batch) do
    local ok, s = pcall(settle_child, child, now, iso, {}, q)
    if not ok or not s then
      local st = try('HGET', K.job .. child, 'status')
      if st ~= 'deferred' then redis.call('ZREM', deferred, child); s = 'gone' end
    end
    if s == 'failed' then pcall(settle_dependents, q, child, 'failed', now, iso) end
    if s then settled = settled + 1 end
  end
  redis.call('HSET', wrr, 'deferred', from + #batch - settled)
end
-- registries hold ids until their retention ends; the job hashes expire by themselves
redis.call('ZREMRANGEBYSCORE', K.finished .. q, '-inf', now)
redis.call('ZREMRANGEBYSCORE', K.failed .. q, '-inf', now)
redis.call('ZREMRANGEBYSCORE', K.canceled .. q, '-inf', now)
return {requeued, failed}
""",
)

RECOVER_POD: Final = _script(
    "RECOVER_POD",
    _PRELUDE
    + r"""
-- ARGV: queue, pod, now, now_iso, reason
local q, pod, now, iso, reason = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local wip = K.wip .. q
local requeued, failed, workers = {}, {}, {}
for _, m in ipairs(redis.call('ZRANGE', wip, 0, -1)) do
  local id, ex = string.match(m, '^(.*):([^:]*)$')
  if id then
    local f = try('HMGET', K.job .. id, 'jq_exec', 'jq_pod', 'worker_name', 'status') or {}
    local owner = f[2]
    if not owner and f[3] then owner = try('HGET', K.worker .. f[3], 'hostname') end
    if f[4] and owner == pod and (not f[1] or f[1] == ex) then
      local ok, r = pcall(end_claim, q, id, m, now, iso, reason, false)
      if not ok then redis.call('ZREM', wip, m) end
      if r == 'requeued' then table.insert(requeued, id) end
      if r == 'failed' then table.insert(failed, id) end
    end
  end
end
for _, wk in ipairs(redis.call('SMEMBERS', K.workers_of .. q)) do
  local host = try('HGET', wk, 'hostname')
  if host == pod or not host then
    redis.call('SREM', K.workers_of .. q, wk)
    redis.call('SREM', K.workers, wk)
    if host then
      try('HSET', wk, 'death', iso, 'state', 'dead')
      redis.call('EXPIRE', wk, 60)
      table.insert(workers, string.sub(wk, #K.worker + 1))
    end
  end
end
return {requeued, failed, workers}
""",
)

SNAPSHOT: Final = _script(
    "SNAPSHOT",
    _PRELUDE
    + r"""
-- ARGV: now, queue... Read-only. Two values per queue (packed: a reply of a few thousand
-- strings costs both sides far less than one of tens of thousands of elements):
--   "p1,p2,p3,p4,p5,scheduled,scheduled_due,oldest_ready,running,lost,failed,finished,last_activity,paused,
--    rate_limited" (rate_limited: a claim was cut short by spec.rateLimit within the last 2 s)
--   the live workers, "\30"-separated, each "name\31pod\31state\31current_job\31busy\31slots"
-- A queue with no key at all (no job in any state, no worker: most queues, most of the time)
-- is one EXISTS and one short reply, "=last_activity" (",1" added when paused) and "".
-- It runs every second over every queue, so calls are skipped wherever an earlier answer
-- already implies the result: one EXISTS tells which of a queue's keys exist at all
-- (most queues are idle), the earliest scheduled score tells whether any is due.
local call = redis.call
local now = tonumber(ARGV[1])
local out = {}
local names = {}
for i = 2, #ARGV do names[i - 1] = ARGV[i] end
local activity = call('HMGET', K.activity, unpack(names))
local paused = call('HMGET', K.paused, unpack(names))
local limited = call('HMGET', K.limited, unpack(names))  -- [rate limit]
for qi, q in ipairs(names) do
  local base = K.queue .. q
  local lkeys = {base .. ':p1', base .. ':p2', base, base .. ':p4', base .. ':p5'}
  local sched, wip = K.scheduled .. q, K.wip .. q
  local failed, finished, workers = K.failed .. q, K.finished .. q, K.workers_of .. q
  local any = call('EXISTS', lkeys[1], lkeys[2], lkeys[3], lkeys[4], lkeys[5], sched, wip, failed,
                   finished, workers)
  if any == 0 then
    out[#out + 1] = '=' .. (activity[qi] or '') .. (paused[qi] and ',1' or '')
    out[#out + 1] = ''
  else
    local members = call('SMEMBERS', workers)
    if #members > 0 then any = any - 1 end  -- the rest are job keys
    local f = {0, 0, 0, 0, 0, 0, 0, '', 0, 0, 0, 0, activity[qi] or '', paused[qi] and 1 or 0,
               (num(limited[qi]) or 0) > now - 2 and 1 or 0}
    if any > 0 then
      local oldest = nil
      -- most queues use only the default level: one EXISTS rules out the four others
      local others = call('EXISTS', lkeys[1], lkeys[2], lkeys[4], lkeys[5])
      for l = 1, 5 do
        if l == 3 or others > 0 then
          local len = call('LLEN', lkeys[l])
          f[l] = len
          if len > 0 then
            local jk = K.job .. call('LINDEX', lkeys[l], 0)
            local t = num(try('HGET', jk, 'jq_ready')) or iso_ts(try('HGET', jk, 'enqueued_at'))
            if t and (oldest == nil or t < oldest) then oldest = t end
          end
        end
      end
      local first = call('ZRANGE', sched, 0, 0, 'WITHSCORES')
      if first[1] then
        f[6] = call('ZCARD', sched)
        local due_from = num(first[2]) or now
        if due_from <= now then
          f[7] = call('ZCOUNT', sched, '-inf', now)
          if oldest == nil or due_from < oldest then oldest = due_from end
        end
      end
      if oldest then f[8] = tostring(oldest) end
      f[9] = call('ZCARD', wip)
      if f[9] > 0 then f[10] = call('ZCOUNT', wip, '-inf', now) end
      f[11] = call('ZCOUNT', failed, now, '+inf')
      f[12] = call('ZCOUNT', finished, now, '+inf')
    end
    out[#out + 1] = table.concat(f, ',')
    local rows = {}
    for _, wk in ipairs(members) do
      local w = try('HMGET', wk, 'state', 'current_job', 'hostname', 'jq_busy', 'jq_slots', 'death')
      if w and w[1] and not w[6] then
        local row = {string.sub(wk, #K.worker + 1), w[3] or '', w[1], w[2] or '', w[4] or '', w[5] or ''}
        -- (any worker may register here, plain RQ ones included: no field may hold a separator)
        for i = 1, 6 do row[i] = string.gsub(row[i], '[\30\31]', '?') end
        rows[#rows + 1] = table.concat(row, '\31')
      end
    end
    out[#out + 1] = table.concat(rows, '\30')
  end
end
return out
""",
)

# The admin operations' steps on one job, shared by the one-job scripts (RETRY, REMOVE) and
# the bulk one (BULK), so a job retried or removed alone or in a batch changes the same way.
_ADMIN: Final = (
    _PRELUDE
    + r"""
-- Put a failed (or stopped / canceled) job back in its queue with a fresh set of attempts.
-- f: HMGET of jq_attempts, jq_prio.
local function retry_one(q, id, f, now, iso)
  local jk = K.job .. id
  redis.call('ZREM', K.failed .. q, id)
  redis.call('ZREM', K.canceled .. q, id)
  local attempts = math.max(math.floor(num(f[1]) or 1), 1)
  redis.call('HSET', jk, 'status', 'queued', 'jq_made', 0, 'retries_left', attempts - 1, 'jq_ready', now,
             'enqueued_at', iso, 'jq_reason', '', 'jq_progress', 0, 'ended_at', '')
  redis.call('HDEL', jk, 'exc_info', 'jq_cancel')
  redis.call('PERSIST', jk)
  redis.call('PERSIST', K.results .. id)
  local level = level_of(f[2])
  redis.call('RPUSH', qkey(q, level), id)
  redis.call('SADD', K.queues, qkey(q, level))
  signal(q)
end

-- Delete a job that is not running from wherever it is. A queued one is looked for in its
-- own level's list first, from the head (LREM count 1: a bulk purge that walks a long list
-- in order then costs O(batch), not O(list) per job).
local function remove_one(q, id, status, prio, now, iso)
  if status == 'queued' then
    local l = level_of(prio)
    if redis.call('LREM', qkey(q, l), 1, id) == 0 then
      for k = 1, 5 do if k ~= l then redis.call('LREM', qkey(q, k), 1, id) end end
    end
  end
  for _, r in ipairs({K.scheduled, K.finished, K.failed, K.deferred, K.canceled}) do
    redis.call('ZREM', r .. q, id)
  end
  redis.call('DEL', K.job .. id, K.results .. id)
  -- RQ's depends_on: children waiting on it can never run now
  settle_dependents(q, id, 'removed', now, iso)
end
"""
)

RETRY: Final = _script(
    "RETRY",
    _ADMIN
    + r"""
-- ARGV: queue, id, now, now_iso. Returns the status before, or 'missing' / 'origin:<q>'.
local q, id, now, iso = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local f = try('HMGET', K.job .. id, 'status', 'origin', 'jq_attempts', 'jq_prio') or {}
if not f[1] then return 'missing' end
if f[2] and f[2] ~= '' and f[2] ~= q then return 'origin:' .. f[2] end
if f[1] ~= 'failed' and f[1] ~= 'stopped' and f[1] ~= 'canceled' then return f[1] end
retry_one(q, id, {f[3], f[4]}, now, iso)
return f[1]
""",
)

REMOVE: Final = _script(
    "REMOVE",
    _ADMIN
    + r"""
-- ARGV: queue, id, now, now_iso. Returns the status before, or 'missing' / 'origin:<q>' /
-- 'started' (refused).
local q, id, now, iso = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local f = try('HMGET', K.job .. id, 'status', 'origin', 'jq_prio') or {}
if not f[1] then return 'missing' end
if f[2] and f[2] ~= '' and f[2] ~= q then return 'origin:' .. f[2] end
if f[1] == 'started' then return 'started' end
remove_one(q, id, f[1], f[3], now, iso)
return f[1]
""",
)

BULK: Final = _script(
    "BULK",
    _ADMIN
    + r"""
-- ARGV: action ('retry' | 'remove' | 'count': a dry run), queue, state, now, now_iso,
-- changed_before ('' or unix time), then job ids listed in `state` a moment ago.
-- One batch, atomically: each id is acted on only if its job is still in this queue, still in
-- `state` and (with changed_before) entered it before that time -- a job a worker claimed,
-- finished or retried since it was listed is skipped, never half-handled. Returns
-- {ids acted on (or that would be, for 'count'), number skipped (changed), number too young}.
local action, q, state, now, iso = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local before = num(ARGV[6])
local done, skipped, young = {}, 0, 0
-- when a job entered its state (what --older-than compares): ended, queued, or created
local function since(f)
  if state == 'queued' then return num(f[5]) or iso_ts(f[6]) end
  if state == 'scheduled' then return num(f[7]) or iso_ts(f[8]) end
  return num(f[9]) or iso_ts(f[10])
end
for i = 7, #ARGV do
  local id = ARGV[i]
  local f = try('HMGET', K.job .. id, 'status', 'origin', 'jq_attempts', 'jq_prio', 'jq_ready',
                'enqueued_at', 'jq_created', 'created_at', 'jq_end', 'ended_at')
  local ok = f and f[1] == state and (not f[2] or f[2] == '' or f[2] == q) and state ~= 'started'
  local t = ok and before and since(f)
  if not ok then
    skipped = skipped + 1
  elseif before and not (t and t < before) then
    young = young + 1  -- (no time recorded: not known to be old enough)
  else
    if action == 'retry' then retry_one(q, id, {f[3], f[4]}, now, iso)
    elseif action == 'remove' then remove_one(q, id, f[1], f[4], now, iso) end
    done[#done + 1] = id
  end
end
return {done, skipped, young}
""",
)

CANCEL: Final = _script(
    "CANCEL",
    _ADMIN
    + r"""
-- [cancel, issue 21] ARGV: queue, id, now, now_iso, by. Returns {status before, worker} or
-- {'missing'} / {'origin', q}. A queued, scheduled or deferred job is canceled here, so it never
-- starts (a claim is a script too: one of them wins). A running one gets jq_cancel and its
-- worker a message on its cancel list (jobqueue:cancel:<worker>, where the worker blocks):
-- the worker stops it and reports 'cancel'; if the worker is lost first, end_claim cancels it.
local q, id, now, iso, by = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local jk = K.job .. id
local f = try('HMGET', jk, 'status', 'origin', 'jq_prio', 'worker_name', 'jq_exec') or {}
if not f[1] then return {'missing'} end
if f[2] and f[2] ~= '' and f[2] ~= q then return {'origin', f[2]} end
local reason = 'canceled' .. (by ~= '' and (' by ' .. by) or '')
if f[1] == 'queued' or f[1] == 'scheduled' or f[1] == 'deferred' or f[1] == 'created' then
  if f[1] == 'queued' then
    local l = level_of(f[3])
    if redis.call('LREM', qkey(q, l), 1, id) == 0 then
      for k = 1, 5 do if k ~= l then redis.call('LREM', qkey(q, k), 1, id) end end
    end
  end
  redis.call('ZREM', K.scheduled .. q, id)
  redis.call('ZREM', K.deferred .. q, id)
  redis.call('HSET', jk, 'jq_cancel', now)
  cancel_job(q, id, now, iso, reason .. ' before it started')
  return {f[1], ''}
end
if f[1] == 'started' then
  redis.call('HSET', jk, 'jq_cancel', now, 'jq_reason', reason)
  if f[4] and f[4] ~= '' and f[5] and f[5] ~= '' then
    local ck = K.cancel .. f[4]
    redis.call('RPUSH', ck, id .. ':' .. f[5])
    redis.call('EXPIRE', ck, 300)  -- (a worker that is gone never reads it)
  end
  return {'started', f[4] or ''}
end
return {f[1], ''}  -- ended already: nothing to cancel
""",
)
