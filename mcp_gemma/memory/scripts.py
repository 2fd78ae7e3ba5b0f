"""Lua scripts that must run atomically on the Redis side."""

from __future__ import annotations

# KEYS: rank zset.  ARGV: capacity.  Pops the lowest-retention members beyond capacity.
EVICT_BEYOND_CAPACITY = """
local n = redis.call('ZCARD', KEYS[1])
local cap = tonumber(ARGV[1])
if n <= cap then return {} end
return redis.call('ZPOPMIN', KEYS[1], n - cap)
"""

# KEYS: memory hash, rank zset, expiry zset.
# ARGV: id, now, ln2 / half_life, ttl seconds ('' = none).
# Counts one access, refreshes the sliding TTL and the retention key; -1 when the memory is gone
# (so a recall racing an expiry never resurrects a half-written hash).
TOUCH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local n = redis.call('HINCRBY', KEYS[1], 'count', 1)
local now = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'accessed', ARGV[2])
local imp = tonumber(redis.call('HGET', KEYS[1], 'importance') or '0')
local rank
if imp <= 0 then
  rank = '-inf'
else
  rank = string.format('%.17g', math.log(imp) + math.log(n) + now * tonumber(ARGV[3]))
end
redis.call('ZADD', KEYS[2], rank, ARGV[1])
if ARGV[4] ~= '' then
  local ttl = tonumber(ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.floor(ttl * 1000))
  redis.call('HSET', KEYS[1], 'expires', string.format('%.6f', now + ttl))
  redis.call('ZADD', KEYS[3], string.format('%.6f', now + ttl), ARGV[1])
end
return n
"""
