-- Global rate limits for one account: a bucketed sliding window per limit, all checked and
-- charged atomically, on the Redis server's clock. See outreach/ratelimit.py for semantics.
--
-- KEYS[1]       pause key (string: paused-until, microseconds since the epoch)
-- KEYS[2..m+1]  acquire: one hash per limit: field = bucket index, value = permits granted in it
-- KEYS[2]       pause: the key holding why the account is paused (kept as long as the pause)
-- ARGV[1]       op: "acquire" | "pause"
-- acquire: ARGV[2] = n (0 = only look), ARGV[3] = buckets per period,
--          then per limit: count, period in microseconds
--          returns {granted, retry_after_us, still_available, paused (1 or 0)}
-- pause:   ARGV[2] = until (microseconds), ARGV[3] = why; keeps the later of the current and
--          the new pause, and the reason of the one kept

if redis.replicate_commands then pcall(redis.replicate_commands) end  -- Redis < 5: TIME before writes

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local op = ARGV[1]

if op == 'pause' then
  local untl = tonumber(ARGV[2])
  local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
  if untl > now and untl > cur then
    local px = math.ceil((untl - now) / 1000)
    redis.call('SET', KEYS[1], string.format('%.0f', untl), 'PX', px)
    if KEYS[2] then redis.call('SET', KEYS[2], ARGV[3] or '', 'PX', px) end
  end
  return 1
end

local n = tonumber(ARGV[2])
local buckets = tonumber(ARGV[3])

local paused = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if paused > now then
  return {0, math.ceil(paused - now), 0, 1}
end

local m = #KEYS - 1
local width, current, counts, sums, limit = {}, {}, {}, {}, {}
local available = nil
for i = 1, m do
  local count = tonumber(ARGV[2 + 2 * i])
  local period = tonumber(ARGV[3 + 2 * i])
  -- buckets of width w = ceil(period / B): the window (now - period, now] always lies inside
  -- buckets j-B .. j, so summing those never undercounts.
  local w = math.ceil(period / buckets)
  local j = math.floor(now / w)
  local raw = redis.call('HGETALL', KEYS[i + 1])
  local c, sum, stale = {}, 0, {}
  for k = 1, #raw, 2 do
    local idx = tonumber(raw[k])
    if idx < j - buckets then
      stale[#stale + 1] = raw[k]
    else
      local v = tonumber(raw[k + 1])
      c[idx] = v
      sum = sum + v
    end
  end
  if #stale > 0 then redis.call('HDEL', KEYS[i + 1], unpack(stale)) end
  width[i], current[i], counts[i], sums[i], limit[i] = w, j, c, sum, count
  local free = count - sum
  if free < 0 then free = 0 end
  if available == nil or free < available then available = free end
end
if available == nil then available = n end  -- no limits: only a pause can hold us back

local granted = n
if granted > available then granted = available end

if granted > 0 then
  for i = 1, m do
    local j = current[i]
    redis.call('HINCRBY', KEYS[i + 1], string.format('%.0f', j), granted)
    counts[i][j] = (counts[i][j] or 0) + granted
    sums[i] = sums[i] + granted
    -- once bucket j has left every window the hash holds nothing that matters
    local ttl = math.ceil(((j + buckets + 1) * width[i] - now) / 1000) + 1
    if redis.call('PTTL', KEYS[i + 1]) < ttl then redis.call('PEXPIRE', KEYS[i + 1], ttl) end
  end
end

-- how long until one more permit fits under every limit
local retry = 0
if granted < n or n == 0 then
  for i = 1, m do
    local need = sums[i] + 1 - limit[i]  -- permits that must leave the window first
    if need > 0 then
      local j = current[i]
      for idx = j - buckets, j do
        local v = counts[i][idx]
        if v then
          need = need - v
          if need <= 0 then
            local wait = (idx + buckets + 1) * width[i] - now
            if wait > retry then retry = wait end
            break
          end
        end
      end
    end
  end
end

return {granted, math.ceil(retry), available - granted, 0}
