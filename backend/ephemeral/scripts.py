"""The Lua scripts behind every job state change: each change is one atomic step.

Two workers, or a worker and a DELETE, can never both win a race: every script
checks the job's status and changes it in the same step. Key prefixes, status
names and limits come in as arguments from ``keys`` and ``records``; the
scripts hold no constant of their own.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from backend.ephemeral import connection

# KEYS: job, events, input, reference. ARGV: from status, to status, now,
#       deadline, record ttl, events maxlen.
# Takes a queued job and its sealed upload(s) in one step, so no other delivery
# can take them. Anything else is answered with the status found (or '' for no
# record) and changes nothing; 'no_input' means queued but the upload expired.
CLAIM = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= ARGV[1] then return {status or ''} end
local blob = redis.call('GETDEL', KEYS[3])
if not blob then return {'no_input'} end
local reference = redis.call('GETDEL', KEYS[4]) or ''
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'started_at', ARGV[3], 'deadline', ARGV[4])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'status', ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return {'claimed', blob, reference, redis.call('HGETALL', KEYS[1])}
"""

# KEYS: job, events, result (or the job key again when there is none), then any
#       keys to delete. ARGV: allowed statuses (comma-separated), new status,
#       record ttl, events maxlen, result blob or '', result ttl, field/value...
# Applies only while the job is in one of the allowed statuses: a job cancelled
# or swept meanwhile stays as it is, and its result is never stored. Returns
# the record after the change, or nil when nothing changed.
TRANSITION = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
local allowed = false
for name in string.gmatch(ARGV[1], '[^,]+') do
  if name == status then allowed = true end
end
if not allowed then return false end
redis.call('HSET', KEYS[1], 'status', ARGV[2], unpack(ARGV, 7))
redis.call('EXPIRE', KEYS[1], ARGV[3])
if ARGV[5] ~= '' then redis.call('SET', KEYS[3], ARGV[5], 'EX', ARGV[6]) end
for i = 4, #KEYS do redis.call('DEL', KEYS[i]) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'status', ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: job, events, input, reference. ARGV: cancelled status, tombstone ttl,
#       now, result key prefix, events maxlen, terminal statuses
#       (comma-separated), the record's accounted field.
# DELETE: purge the payloads and leave only a tombstone, so a queued delivery
# finds nothing to run and a running one cannot publish. An active job's
# tombstone says `cancelled`; a job that had ended keeps its end (status, error
# and finish time; its durable trace tells the same once the tombstone is
# gone) and is accounted for already: the DELETE ends nothing. Returns the
# record as it was before, or nil when there was none.
CANCEL = """
local before = redis.call('HGETALL', KEYS[1])
if #before == 0 then return false end
local status = redis.call('HGET', KEYS[1], 'status')
local ended = false
for name in string.gmatch(ARGV[6], '[^,]+') do
  if name == status then ended = true end
end
local token_hash = redis.call('HGET', KEYS[1], 'result_token_hash')
local owner = redis.call('HGET', KEYS[1], 'owner')
local task = redis.call('HGET', KEYS[1], 'task') or ''
local created = redis.call('HGET', KEYS[1], 'created_at') or ARGV[3]
local kept = {}
if ended then
  for _, name in ipairs({'finished_at', 'error_code', 'error_message'}) do
    local value = redis.call('HGET', KEYS[1], name)
    if value then table.insert(kept, name); table.insert(kept, value) end
  end
  table.insert(kept, ARGV[7]); table.insert(kept, '1')
else
  status = ARGV[1]
end
if token_hash then redis.call('DEL', ARGV[4] .. token_hash) end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('HSET', KEYS[1], 'status', status, 'owner', owner, 'task', task,
           'created_at', created, 'expires_at', ARGV[3], 'finished_at', ARGV[3])
if #kept > 0 then redis.call('HSET', KEYS[1], unpack(kept)) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'status', status)
redis.call('EXPIRE', KEYS[2], ARGV[2])
return before
"""

# KEYS: job, events. ARGV: ttl, events maxlen, field/value...
# A job Redis lost, written back as it ended (its trace said it was active),
# unless Redis has a record for it again. Returns 1 when written.
RECORD_LOST = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], ARGV[1])
local status = redis.call('HGET', KEYS[1], 'status')
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'status', status)
redis.call('EXPIRE', KEYS[2], ARGV[1])
return 1
"""

# KEYS: job. ARGV: queued status.
# A delivery of a queued job died before claiming it: count it and return the
# count, or -1 when the job is not queued (so nothing is counted).
COUNT_DELIVERY = """
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[1] then return -1 end
return redis.call('HINCRBY', KEYS[1], 'deliveries', 1)
"""

# KEYS: result, job, events. ARGV: now. Take the result once and note it on the
# record (only if the record still exists: HSET on a missing key would create a
# key without a TTL). The job has ended, so its event stream has served.
TAKE = """
local blob = redis.call('GETDEL', KEYS[1])
if blob and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], 'result_taken_at', ARGV[1])
  redis.call('DEL', KEYS[3])
end
return blob
"""


@cache
def registered(source: str) -> Any:
    """A script registered on this process's client (EVALSHA, loaded on first use)."""
    return connection.client().register_script(source)


def run(source: str, *, keys: list[str], args: list[Any]) -> Any:
    """Run one of the scripts (this module's, or another module's Lua source)."""
    return registered(source)(keys=keys, args=args)
