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
local sid = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], '*', 'e', ARGV[1])
local ttl_ms = tonumber(ARGV[3])
if ttl_ms > 0 then
  local now = redis.call('TIME')
  local cutoff = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - ttl_ms
  if cutoff > 0 then
    redis.call('XTRIM', KEYS[1], 'MINID', cutoff)
  end
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
