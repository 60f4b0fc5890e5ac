-- The one write path of events, shared by every publisher: the Rust crate
-- `publisher` (include_str!) and the Python package `dashboard_gateway` load
-- this very file, so the two can never write different histories.
--
-- One call writes a batch of N >= 1 events (a single publish is a batch of
-- one), in order and atomically: Redis runs a script alone, so no reader ever
-- sees part of a batch, and history order = live order = id order.
--
-- KEYS[1]  the history stream            {prefix}:history
-- KEYS[2]  the history's epoch           {{prefix}:history}:epoch (same cluster slot)
-- KEYS[3]  the analytics snapshot key    {prefix}:analytics:latest (one Redis only)
-- ARGV[1]  most entries kept             HISTORY_SIZE
-- ARGV[2]  oldest entry kept, in ms      HISTORY_TTL_SECS * 1000 (0: no age limit)
-- ARGV[3]  an epoch for a new history    8 random lowercase hex digits
-- ARGV[4]  the live channels' prefix     {prefix}:events: (each event is PUBLISHed
--                                        on it + its type; '' on a cluster, where
--                                        the caller SPUBLISHes on each type's shard)
-- ARGV[5]  most keys kept per type        STATE_MAX_KEYS
-- ARGV[6]  oldest key kept, in ms         STATE_TTL_SECS * 1000 (0: no age limit)
-- ARGV[7..6+N]  the events' envelopes, in order, without an id:
--          {"type":"...","data":...,"timestamp":"..."}, the type first, as every
--          publisher encodes it (one argument per event: a bulk job's 20,000
--          events cost the client 20,000 arguments to pack, not 60,000). A
--          keyed event names its key next, as a JSON string, and a removal
--          says so after it: {"type":"alert","key":"a-17","removed":true,...}.
--
-- Keyed state (same hash tag as the history, so the same cluster slot):
--   {prefix:history}:keyed              set of the types that have state
--   {prefix:history}:state:<type>       hash: key -> the latest event of that
--                                       key, with its id (as published live)
--   {prefix:history}:state-age:<type>   sorted set: key -> its event's stream id
--                                       ms * 1000 + seq (seq capped at 999):
--                                       exact in a double, in publish order
--                                       (events past the 1,000th within one
--                                       ms tie, and go by key name)
-- The key is the JSON string's text as encoded (every publisher escapes the
-- same way). A removal deletes its key. To stay within the bounds, keys
-- older than ARGV[6] and, at ARGV[5] keys, the least recently updated are
-- dropped while writing an event of their type; that event then names them,
-- "evicted":["k",...] after its key (at most MAX_EVICTED_BYTES of them: the
-- rest go with the type's next events), so every node (and client)
-- following the stream drops the same keys.
--
-- Returns the events' positions, in order, each "<epoch>:<ms>-<seq>" (the
-- history's identity and the stream id), joined by ',' into one string: a
-- client reads one reply of 20,000 ids at once instead of parsing 20,000
-- (redis-py's asyncio parser spends longer on that than Redis on the batch).
-- On a cluster (ARGV[4] = ''), where the caller publishes live itself:
-- {ids, {i, envelope, ...}}, the envelopes this script changed (evictions
-- named), by their index in the batch.

local first = 7
local events = #ARGV - first + 1
if events < 1 then
  return redis.error_reply('ERR publish.lua: expected 6 arguments and at least one event')
end
local tag = string.match(KEYS[2], '^(.*):epoch$')
if not tag then
  return redis.error_reply('ERR publish.lua: KEYS[2] is not the history epoch key')
end
-- Every envelope's type (and key), before anything is written: a bad one
-- fails the call with nothing of the batch done.
local kinds, keys, removals, after_key = {}, {}, {}, {}
for i = 1, events do
  local envelope = ARGV[first + i - 1]
  local kind = string.match(envelope, '^{"type":"([%w_.%-]+)"')
  if not kind then
    return redis.error_reply('ERR publish.lua: event ' .. i .. ' is no envelope {"type":"...",...}')
  end
  kinds[i] = kind
  local at = #kind + 11
  if string.sub(envelope, at, at + 7) == ',"key":"' then
    -- The JSON string's end: the first quote not escaped.
    local from = at + 8
    local close = nil
    while true do
      local j = string.find(envelope, '["\\]', from)
      if not j then break end
      if string.sub(envelope, j, j) == '"' then close = j; break end
      from = j + 2
    end
    if (not close) or close == at + 8 then
      return redis.error_reply('ERR publish.lua: event ' .. i .. ' has a bad key')
    end
    keys[i] = string.sub(envelope, at + 8, close - 1)
    after_key[i] = close + 1
    if string.sub(envelope, close + 1, close + 15) == ',"removed":true' then
      removals[i] = true
      after_key[i] = close + 16
    end
  end
end

local function state_key(kind) return tag .. ':state:' .. kind end
local function age_key(kind) return tag .. ':state-age:' .. kind end

-- A history that does not exist (never written, deleted, or lost with a
-- Redis restart) starts a new epoch: positions from the old one are then
-- recognisably foreign, and a resume from them answers recovered:false.
-- The state belonged to the old history: it goes with it.
local epoch = redis.call('GET', KEYS[2])
if (not epoch) or redis.call('EXISTS', KEYS[1]) == 0 then
  epoch = ARGV[3]
  redis.call('SET', KEYS[2], epoch)
  for _, kind in ipairs(redis.call('SMEMBERS', tag .. ':keyed')) do
    redis.call('DEL', state_key(kind), age_key(kind))
  end
  redis.call('DEL', tag .. ':keyed')
end

local max_keys = tonumber(ARGV[5])
local state_ttl = tonumber(ARGV[6])
local now_ms = nil
if next(keys) then
  local now = redis.call('TIME')
  now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
end

-- What an event may name as evicted, in bytes of its "evicted" list
-- (shared::state::MAX_EVICTED_BYTES; nodes accept an event grown by that
-- much): past it, a key is left for a later event to evict.
local MAX_EVICTED_BYTES = 2048

-- Keys of `kind` older than the age limit, looked for once per type per
-- call (at most 64 at a time) before its first event is written.
local aged_out = {}
local function stale(kind)
  if aged_out[kind] or state_ttl <= 0 then return {} end
  aged_out[kind] = true
  return redis.call('ZRANGEBYSCORE', age_key(kind), '-inf', '(' .. (now_ms - state_ttl) .. '000', 'LIMIT', 0, 64)
end

-- The keys of `kind` to drop before `key` is written: too old, then the
-- least recently updated ones while a new key would exceed the bound; as
-- many as the event can name.
local function evictions(kind, key, removal)
  local hash, ages = state_key(kind), age_key(kind)
  local gone, bytes = {}, 0
  local function drop(k)
    if bytes + #k + 3 > MAX_EVICTED_BYTES then return false end
    bytes = bytes + #k + 3
    redis.call('HDEL', hash, k)
    redis.call('ZREM', ages, k)
    gone[#gone + 1] = k
    return true
  end
  for _, k in ipairs(stale(kind)) do
    if not drop(k) then break end
  end
  if (not removal) and redis.call('HEXISTS', hash, key) == 0 then
    local excess = redis.call('HLEN', hash) - max_keys + 1
    if excess > 0 then
      for _, k in ipairs(redis.call('ZRANGE', ages, 0, excess - 1)) do
        if not drop(k) then break end
      end
    end
  end
  return gone
end

local ids = {}
local registered = {}
local stored = {}
local changed = {}
local last_sid = nil
for i = 1, events do
  local envelope = ARGV[first + i - 1]
  local key = keys[i]
  if key then
    local gone = evictions(kinds[i], key, removals[i])
    if #gone > 0 then
      envelope = string.sub(envelope, 1, after_key[i] - 1) .. ',"evicted":["'
        .. table.concat(gone, '","') .. '"]' .. string.sub(envelope, after_key[i])
      changed[#changed + 1] = i
    end
  end
  stored[i] = envelope
  last_sid = redis.call('XADD', KEYS[1], '*', 'e', envelope)
  ids[i] = epoch .. ':' .. last_sid
  if key then
    local hash, ages = state_key(kinds[i]), age_key(kinds[i])
    if removals[i] then
      redis.call('HDEL', hash, key)
      redis.call('ZREM', ages, key)
    else
      redis.call('HSET', hash, key, '{"id":"' .. ids[i] .. '",' .. string.sub(envelope, 2))
      -- As text: a Lua number would be written with 14 digits only.
      local ms, seq = string.match(last_sid, '^(%d+)-(%d+)$')
      redis.call('ZADD', ages, ms .. string.format('%03d', math.min(tonumber(seq), 999)), key)
      if not registered[kinds[i]] then
        registered[kinds[i]] = true
        redis.call('SADD', tag .. ':keyed', kinds[i])
      end
    end
  end
end

-- Trim oldest first (by count, then by age), once for the whole batch, and
-- record the newest id trimmed as the stream's max-deleted-entry-id (XTRIM
-- alone does not): a reader then knows exactly whether anything after its
-- position was lost. A batch longer than HISTORY_SIZE trims its own first
-- events: they were published live, and the history keeps the newest.
local function later(a, b)
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  ams, bms = tonumber(ams), tonumber(bms)
  return ams > bms or (ams == bms and tonumber(aseq) > tonumber(bseq))
end
local trimmed = nil
local excess = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[1])
if excess > 0 then
  local gone = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  trimmed = gone[#gone][1]
  redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[1])
end
local ttl_ms = tonumber(ARGV[2])
if ttl_ms > 0 then
  local now = redis.call('TIME')
  local cutoff = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - ttl_ms
  -- The oldest entry first (cheap): only when it is older than the cutoff
  -- is the newest such entry looked for. XREVRANGE from a cutoff older than
  -- the whole stream walks every entry back to the start (Redis 7.0: 0.4 ms
  -- at 2,000 entries), which a busy history trimmed by count would pay on
  -- every publish.
  if cutoff > 0 and #redis.call('XRANGE', KEYS[1], '-', '(' .. cutoff, 'COUNT', 1) > 0 then
    local aged = redis.call('XREVRANGE', KEYS[1], '(' .. cutoff, '-', 'COUNT', 1)
    if #aged > 0 then
      if (not trimmed) or later(aged[1][1], trimmed) then
        trimmed = aged[1][1]
      end
      redis.call('XTRIM', KEYS[1], 'MINID', cutoff)
    end
  end
end
if trimmed then
  redis.call('XSETID', KEYS[1], last_sid, 'MAXDELETEDID', trimmed)
end

-- Live, in the same order. Only the batch's last analytics_update becomes
-- the snapshot: each earlier one would be overwritten within this call.
if ARGV[4] ~= '' then
  local snapshot = nil
  for i = 1, events do
    local payload = '{"id":"' .. ids[i] .. '",' .. string.sub(stored[i], 2)
    if kinds[i] == 'analytics_update' then
      snapshot = payload
    end
    redis.call('PUBLISH', ARGV[4] .. kinds[i], payload)
  end
  if snapshot and KEYS[3] then
    redis.call('SET', KEYS[3], snapshot)
  end
else
  local envelopes = {}
  for _, i in ipairs(changed) do
    envelopes[#envelopes + 1] = i
    envelopes[#envelopes + 1] = stored[i]
  end
  return {table.concat(ids, ','), envelopes}
end
return table.concat(ids, ',')
