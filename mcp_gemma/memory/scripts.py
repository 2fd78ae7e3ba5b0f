"""Lua scripts that must run atomically on the Redis side."""

from __future__ import annotations

# KEYS: rank zset.  ARGV: capacity.  Pops the lowest-retention members beyond capacity.
EVICT_BEYOND_CAPACITY = """
local n = redis.call('ZCARD', KEYS[1])
local cap = tonumber(ARGV[1])
if n <= cap then return {} end
return redis.call('ZPOPMIN', KEYS[1], n - cap)
"""

# KEYS: rank zset, tier zset.  ARGV: capacity.  EVICT_BEYOND_CAPACITY plus the tier's size, so a
# store can run it inside its MULTI/EXEC (as EVAL: a script object in a pipeline costs a SCRIPT
# EXISTS round trip first). Returns {tier size before evicting, member, score, member, score, ...}.
EVICT_AND_COUNT = """
local size = redis.call('ZCARD', KEYS[2])
local n = redis.call('ZCARD', KEYS[1])
local cap = tonumber(ARGV[1])
local out = {size}
if n > cap then
  local popped = redis.call('ZPOPMIN', KEYS[1], n - cap)
  for i = 1, #popped do out[#out + 1] = popped[i] end
end
return out
"""

# Counts one access of memory hash ``h`` (member ``id``): bumps its count, stamps ``accessed``,
# re-ranks it for retention and, when ``ttl_arg`` is not '', refreshes the sliding TTL and the expiry
# index. Returns the new count. Shared by the two recall scripts below.
_TOUCH_ONE = """
local function touch(h, id, rank_key, expiry_key, ttl_arg, now, decay, stamp)
  local count = redis.call('HINCRBY', h, 'count', 1)
  redis.call('HSET', h, 'accessed', stamp)
  local imp = tonumber(redis.call('HGET', h, 'importance') or '0')
  local rank
  if imp <= 0 then
    rank = '-inf'
  else
    rank = string.format('%.17g', math.log(imp) + math.log(count) + now * decay)
  end
  redis.call('ZADD', rank_key, rank, id)
  if ttl_arg ~= '' then
    local ttl = tonumber(ttl_arg)
    redis.call('PEXPIRE', h, math.floor(ttl * 1000))
    redis.call('HSET', h, 'expires', string.format('%.6f', now + ttl))
    redis.call('ZADD', expiry_key, string.format('%.6f', now + ttl), id)
  end
  return count
end
"""

# One recall's bookkeeping in one round trip (it was a pipeline of one TOUCH script per hit plus one
# HINCRBY per scope and tier, preceded by redis-py's SCRIPT EXISTS check for scripts in a pipeline).
# KEYS: per hit its memory hash, rank zset and expiry zset (3 x n), then the stats hashes to count in.
# ARGV: n, now, ln2 / half_life, per hit its id and ttl seconds ('' = none), per stats hash the field
# to increment ('hits' or 'misses').
# Per hit: counts one access, refreshes the sliding TTL and the retention key; -1 when the memory is
# gone (so a recall racing an expiry never resurrects a half-written hash). Returns the counts.
TOUCH_RECALLED = (
    _TOUCH_ONE
    + """
local n = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local decay = tonumber(ARGV[3])
local counts = {}
for i = 1, n do
  local h, rank_key, expiry_key = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local id, ttl_arg = ARGV[2 + 2 * i], ARGV[3 + 2 * i]
  if redis.call('EXISTS', h) == 0 then
    counts[i] = -1
  else
    counts[i] = touch(h, id, rank_key, expiry_key, ttl_arg, now, decay, ARGV[2])
  end
end
for j = 3 * n + 1, #KEYS do
  redis.call('HINCRBY', KEYS[j], ARGV[3 + 2 * n + (j - 3 * n)], 1)
end
return counts
"""
)

# A recall whose candidates all come from one scope and that has no score floor returns the first k
# candidates (in ranked order) whose hash still exists, so reading them and counting the access can
# share one round trip (this was a pipeline of HMGETs, then TOUCH_RECALLED).
# KEYS: per tier (5, in TIER_NAMES order) the scope's rank and expiry zsets, then the stats hashes to
# count in, then the candidates' memory hashes in ranked order.
# ARGV: k, now, ln2 / half_life, number of stats hashes, '1' when more candidates follow the ones
# given (a head of the ranking) else '0', per tier its name and ttl seconds ('' = none), per stats
# hash the tier it counts a hit for ('' = always a miss), per candidate its id, then the hash fields
# to read (META_FIELDS; the first two must be content and tier).
# When fewer than k of the given candidates are live and more follow, it changes nothing and returns
# nil: the caller sends the whole ranking (a recall then costs what it did when every candidate was
# sent; a head of ~2k holds the k winners unless memories expired or were deleted meanwhile).
# Per winner (a hash with content and a known tier): its fields as they were before this access, then
# the same bookkeeping as TOUCH_RECALLED. Returns {candidate index, field..., new count} per winner.
FETCH_AND_TOUCH = (
    _TOUCH_ONE
    + """
local k = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
local decay = tonumber(ARGV[3])
local n_stats = tonumber(ARGV[4])
local more = ARGV[5] == '1'
local tier_at, ttl_of = {}, {}
for t = 1, 5 do
  tier_at[ARGV[4 + 2 * t]] = t
  ttl_of[ARGV[4 + 2 * t]] = ARGV[5 + 2 * t]
end
local first_stat = 16
local first_id = first_stat + n_stats
local n_cand = #KEYS - 10 - n_stats
local fields = {}
for j = first_id + n_cand, #ARGV do fields[#fields + 1] = ARGV[j] end
local picked, rows = {}, {}
for i = 1, n_cand do
  if #picked >= k then break end
  local row = redis.call('HMGET', KEYS[10 + n_stats + i], unpack(fields))
  if row[1] and row[2] and tier_at[row[2]] then
    picked[#picked + 1] = i
    rows[#rows + 1] = row
  end
end
if #picked < k and more then return false end
local out, hit = {}, {}
for p = 1, #picked do
  local i, row = picked[p], rows[p]
  local tier = row[2]
  hit[tier] = true
  local t = tier_at[tier]
  local count = touch(KEYS[10 + n_stats + i], ARGV[first_id + i - 1], KEYS[2 * t - 1], KEYS[2 * t],
    ttl_of[tier], now, decay, ARGV[2])
  out[#out + 1] = i
  for f = 1, #fields do out[#out + 1] = row[f] end
  out[#out + 1] = count
end
for j = 1, n_stats do
  local t = ARGV[first_stat + j - 1]
  redis.call('HINCRBY', KEYS[10 + j], (t ~= '' and hit[t]) and 'hits' or 'misses', 1)
end
return out
"""
)
