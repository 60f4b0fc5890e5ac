-- The one write path of an event, shared by every publisher: the Rust crate
-- `publisher` (include_str!) and the Python package `dashboard_gateway` load
-- this very file, so the two can never write different histories.
--
-- KEYS[1]  the history stream            {prefix}:history
-- KEYS[2]  the history's epoch           {{prefix}:history}:epoch (same cluster slot)
-- KEYS[3]  the analytics snapshot key    {prefix}:analytics:latest (one Redis only)
-- ARGV[1]  the envelope, without an id   {"type":...,"data":...,"timestamp":...}
-- ARGV[2]  most entries kept             HISTORY_SIZE
-- ARGV[3]  oldest entry kept, in ms      HISTORY_TTL_SECS * 1000 (0: no age limit)
-- ARGV[4]  an epoch for a new history    8 random lowercase hex digits
-- ARGV[5]  '1' when the event is an analytics_update (kept as the snapshot)
-- ARGV[6]  the channel to PUBLISH on     {prefix}:events:{type} ('' on a cluster,
--          where the caller SPUBLISHes on the type's shard itself)
--
-- Returns the event's position, "<epoch>:<ms>-<seq>": the history's identity
-- and the stream id. Redis runs a script alone, so history order = live order.

-- A history that does not exist (never written, deleted, or lost with a
-- Redis restart) starts a new epoch: positions from the old one are then
-- recognisably foreign, and a resume from them answers recovered:false.
local epoch = redis.call('GET', KEYS[2])
if (not epoch) or redis.call('EXISTS', KEYS[1]) == 0 then
  epoch = ARGV[4]
  redis.call('SET', KEYS[2], epoch)
end
local sid = redis.call('XADD', KEYS[1], '*', 'e', ARGV[1])

-- Trim oldest first (by count, then by age), and record the newest id
-- trimmed as the stream's max-deleted-entry-id (XTRIM alone does not): a
-- reader then knows exactly whether anything after its position was lost.
local function later(a, b)
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  ams, bms = tonumber(ams), tonumber(bms)
  return ams > bms or (ams == bms and tonumber(aseq) > tonumber(bseq))
end
local trimmed = nil
local excess = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[2])
if excess > 0 then
  local gone = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  trimmed = gone[#gone][1]
  redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[2])
end
local ttl_ms = tonumber(ARGV[3])
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
  redis.call('XSETID', KEYS[1], sid, 'MAXDELETEDID', trimmed)
end
local id = epoch .. ':' .. sid
if ARGV[6] ~= nil and ARGV[6] ~= '' then
  local payload = '{"id":"' .. id .. '",' .. string.sub(ARGV[1], 2)
  if ARGV[5] == '1' and KEYS[3] then
    redis.call('SET', KEYS[3], payload)
  end
  redis.call('PUBLISH', ARGV[6], payload)
end
return id
