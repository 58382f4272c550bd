"""The Lua scripts of `RedisQuotaStore` (key layout and record format: see redis_store)."""

from __future__ import annotations

RECLAIM_BATCH = 100  # expired reservations given back per script call, bounding its cost
MAX_RUN = 256  # reservations per script call: Redis runs nothing else meanwhile

_FIELDS = """
local function fields(value)
  local f = {}
  for word in string.gmatch(value, '%S+') do f[#f + 1] = word end
  return f
end
"""

# One call decides a run of reservations that share tenant, capability, limits and clock: the
# buckets and budgets are read and written once, so a pipelined batch costs a few Redis calls
# per decision. KEYS: expiry index, buckets, budgets. ARGV: now_ms, expires_ms, keep_until_ms,
# keep_ms, capability, reservation key prefix, bucket count, budget count, budget grace ms, then
# (rate per ms, size) per bucket, (size, period end ms) per budget, (id, estimate) per reservation.
RESERVE_LUA = (
    _FIELDS
    + f"""
local now = tonumber(ARGV[1])
local nb, nd = tonumber(ARGV[7]), tonumber(ARGV[8])

local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, {RECLAIM_BATCH})
for _, id in ipairs(expired) do
  local key = ARGV[6] .. id
  local record = redis.call('GET', key)
  local f = record and fields(record) or {{}}
  if f[1] == 'r' then
    for i = 6, #f do
      if redis.call('EXISTS', f[i]) == 1 then redis.call('DECRBY', f[i], f[2]) end
    end
    f[1] = 'e'
    redis.call('SET', key, table.concat(f, ' '), 'PX', ARGV[4])
  end
end
if #expired > 0 then redis.call('ZREM', KEYS[1], unpack(expired)) end

local buckets = {{}}
for i = 1, nb do
  local rate, size = tonumber(ARGV[8 + 2 * i]), tonumber(ARGV[9 + 2 * i])
  local state = redis.call('GET', KEYS[1 + i])
  local tokens, ts = size, now
  if state then
    local f = fields(state)
    tokens, ts = tonumber(f[1]), tonumber(f[2])
  end
  if now > ts then tokens, ts = math.min(size, tokens + (now - ts) * rate), now end
  buckets[i] = {{tokens = tokens, ts = ts, rate = rate, ttl = math.ceil(size / rate) + 1000}}
end
local base = 9 + 2 * nb
local budgets, budget_keys = {{}}, {{}}
for j = 1, nd do
  budget_keys[j] = KEYS[1 + nb + j]
  budgets[j] = {{
    used = tonumber(redis.call('GET', budget_keys[j]) or '0'),
    size = tonumber(ARGV[base + 2 * j - 1]),
    ends = tonumber(ARGV[base + 2 * j]),
  }}
end
local charges = ' ' .. table.concat(budget_keys, ' ')

local replies, admitted, charged = {{}}, 0, 0
for k = base + 2 * nd + 1, #ARGV, 2 do
  local id, est = ARGV[k], tonumber(ARGV[k + 1])
  local key = ARGV[6] .. id
  local prior = redis.call('GET', key)
  if prior then
    local f = fields(prior)
    replies[#replies + 1] = {{2, f[5], tonumber(f[2]), tonumber(f[3]), tonumber(f[4])}}
  else
    local refused, wait = 0, -1
    for i, b in ipairs(buckets) do
      if b.tokens < 1 then
        local w = math.ceil((1 - b.tokens) / b.rate)
        if w > wait then refused, wait = i, w end
      end
    end
    for j, d in ipairs(budgets) do
      if d.used + est > d.size and d.ends - now > wait then refused, wait = nb + j, d.ends - now end
    end
    if refused > 0 then
      replies[#replies + 1] = {{0, refused, wait}}
    else
      for _, b in ipairs(buckets) do b.tokens = b.tokens - 1 end
      for _, d in ipairs(budgets) do d.used = d.used + est end
      local record = 'r ' .. ARGV[k + 1] .. ' ' .. ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[5] .. charges
      redis.call('SET', key, record, 'PXAT', ARGV[3])
      redis.call('ZADD', KEYS[1], ARGV[2], id)
      admitted, charged = admitted + 1, charged + est
      replies[#replies + 1] = 1
    end
  end
end

if admitted > 0 then
  for i, b in ipairs(buckets) do
    redis.call('SET', KEYS[1 + i], b.tokens .. ' ' .. b.ts, 'PX', b.ttl)
  end
  local delta = string.format('%d', charged)
  for j, d in ipairs(budgets) do
    if redis.call('INCRBY', budget_keys[j], delta) == charged then  -- a new key: expire after its period
      redis.call('PEXPIREAT', budget_keys[j], d.ends + tonumber(ARGV[9]))
    end
  end
end
return replies
"""
)

# KEYS: reservation, expiry index. ARGV: input, output, now_ms, keep_ms, reservation id.
SETTLE_LUA = (
    _FIELDS
    + """
local record = redis.call('GET', KEYS[1])
if not record then return {'unknown'} end
local f = fields(record)
if f[1] == 's' then
  return {'dup', f[5], tonumber(f[2]), tonumber(f[6]), tonumber(f[7]), tonumber(f[3]), tonumber(f[8])}
end
local charge = tonumber(ARGV[1]) + tonumber(ARGV[2])
if f[1] == 'r' then
  charge = charge - tonumber(f[2])
  redis.call('ZREM', KEYS[2], ARGV[5])
end
if charge ~= 0 then
  local delta = string.format('%d', charge)
  for i = 6, #f do
    if redis.call('EXISTS', f[i]) == 1 then redis.call('INCRBY', f[i], delta) end
  end
end
local settled = {'s', f[2], f[3], f[4], f[5], ARGV[1], ARGV[2], ARGV[3]}
redis.call('SET', KEYS[1], table.concat(settled, ' '), 'PX', ARGV[4])
return {'ok', f[5], tonumber(f[2]), tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(f[3]), tonumber(ARGV[3])}
"""
)
