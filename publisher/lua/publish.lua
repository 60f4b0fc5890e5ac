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
-- then, for each event i = 0 .. N-1, three arguments from ARGV[4 + 3i]:
--   the envelope, without an id          {"type":...,"data":...,"timestamp":...}
--   '1' when it is an analytics_update   (kept as the snapshot)
--   the channel to PUBLISH on            {prefix}:events:{type} ('' on a cluster,
--                                        where the caller SPUBLISHes on the type's
--                                        shard itself)
--
-- Returns the events' positions, in order, each "<epoch>:<ms>-<seq>": the
-- history's identity and the stream id.

local events = (#ARGV - 3) / 3
if events < 1 or events % 1 ~= 0 then
  return redis.error_reply('ERR publish.lua: expected 3 + 3n arguments, got ' .. #ARGV)
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
for i = 0, events - 1 do
  local at = 4 + 3 * i
  last_sid = redis.call('XADD', KEYS[1], '*', 'e', ARGV[at])
  ids[i + 1] = epoch .. ':' .. last_sid
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
local snapshot = nil
for i = 0, events - 1 do
  local at = 4 + 3 * i
  local channel = ARGV[at + 2]
  if channel ~= '' then
    local payload = '{"id":"' .. ids[i + 1] .. '",' .. string.sub(ARGV[at], 2)
    if ARGV[at + 1] == '1' then
      snapshot = payload
    end
    redis.call('PUBLISH', channel, payload)
  end
end
if snapshot and KEYS[3] then
  redis.call('SET', KEYS[3], snapshot)
end
return ids
