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
-- ARGV[5..4+N]  the events' envelopes, in order, without an id:
--          {"type":"...","data":...,"timestamp":"..."}, the type first, as every
--          publisher encodes it (one argument per event: a bulk job's 20,000
--          events cost the client 20,000 arguments to pack, not 60,000)
--
-- Returns the events' positions, in order, each "<epoch>:<ms>-<seq>" (the
-- history's identity and the stream id), joined by ',' into one string: a
-- client reads one reply of 20,000 ids at once instead of parsing 20,000
-- (redis-py's asyncio parser spends longer on that than Redis on the batch).

local first = 5
local events = #ARGV - first + 1
if events < 1 then
  return redis.error_reply('ERR publish.lua: expected 4 arguments and at least one event')
end
-- Every envelope's type, before anything is written: a bad one fails the
-- call with nothing of the batch done.
local kinds = {}
for i = 1, events do
  local kind = string.match(ARGV[first + i - 1], '^{"type":"([%w_.%-]+)"')
  if not kind then
    return redis.error_reply('ERR publish.lua: event ' .. i .. ' is no envelope {"type":"...",...}')
  end
  kinds[i] = kind
end

-- A history that does not exist (never written, deleted, or lost with a
-- Redis restart) starts a new epoch: positions from the old one are then
-- recognisably foreign, and a resume from them answers recovered:false.
local epoch = redis.call('GET', KEYS[2])
if (not epoch) or redis.call('EXISTS', KEYS[1]) == 0 then
  epoch = ARGV[3]
  redis.call('SET', KEYS[2], epoch)
end

local ids = {}
local last_sid = nil
for i = 1, events do
  last_sid = redis.call('XADD', KEYS[1], '*', 'e', ARGV[first + i - 1])
  ids[i] = epoch .. ':' .. last_sid
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
    local payload = '{"id":"' .. ids[i] .. '",' .. string.sub(ARGV[first + i - 1], 2)
    if kinds[i] == 'analytics_update' then
      snapshot = payload
    end
    redis.call('PUBLISH', ARGV[4] .. kinds[i], payload)
  end
  if snapshot and KEYS[3] then
    redis.call('SET', KEYS[3], snapshot)
  end
end
return table.concat(ids, ',')
