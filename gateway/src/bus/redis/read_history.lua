-- One page of the history, read atomically with the facts that decide
-- whether it continues the reader's position (bus::StreamInfo::standing).
--
-- KEYS[1]  the history stream             {prefix}:history
-- KEYS[2]  its epoch                      {{prefix}:history}:epoch
-- ARGV[1]  read after this stream id (exclusive)
-- ARGV[2]  up to this stream id (inclusive; '+' for the end)
-- ARGV[3]  at most this many entries
--
-- Returns {epoch or nil, info or nil, entries}, info being {length,
-- entries-added, recorded-first-entry-id, last-generated-id,
-- max-deleted-entry-id} of XINFO STREAM.
local epoch = redis.call('GET', KEYS[2])
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {epoch, false, {}}
end
local raw = redis.call('XINFO', 'STREAM', KEYS[1])
local info = {}
for i = 1, #raw, 2 do
  info[raw[i]] = raw[i + 1]
end
local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], ARGV[2], 'COUNT', ARGV[3])
return {epoch, {info['length'], info['entries-added'], info['recorded-first-entry-id'],
  info['last-generated-id'], info['max-deleted-entry-id']}, entries}
