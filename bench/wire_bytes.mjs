// Bytes on the wire for the same live traffic with and without permessage-deflate:
// two raw WebSocket clients on one node at once (one offering Chrome's
// `permessage-deflate; client_max_window_bits`, one offering nothing) count what they
// read for DURATION_S seconds; both see the same events, so the ratio is deflate's.
//
//   node bench/wire_bytes.mjs 127.0.0.1:8000 [seconds]
import net from 'node:net';
import zlib from 'node:zlib';

const [host, port] = (process.argv[2] || '127.0.0.1:8000').split(':');
const seconds = Number(process.argv[3] || 20);

function client(offer) {
  return new Promise((resolve) => {
    const s = net.connect(Number(port), host);
    const stats = { offer: !!offer, negotiated: false, bytes: 0, frames: 0, compressed: 0, payload: 0 };
    let buf = Buffer.alloc(0);
    let upgraded = false;
    s.on('connect', () => {
      s.write(`GET /ws/dashboard HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\n` +
        'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n' +
        (offer ? `Sec-WebSocket-Extensions: ${offer}\r\n` : '') + '\r\n');
    });
    s.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString();
        stats.negotiated = /sec-websocket-extensions: permessage-deflate/i.test(head);
        buf = buf.subarray(end + 4);
        upgraded = true;
      }
      stats.bytes += upgraded ? chunk.length : 0;
      for (;;) {
        if (buf.length < 2) break;
        let len = buf[1] & 0x7f; let at = 2;
        if (len === 126) { if (buf.length < 4) break; len = buf.readUInt16BE(2); at = 4; }
        else if (len === 127) { if (buf.length < 10) break; len = Number(buf.readBigUInt64BE(2)); at = 10; }
        if (buf.length < at + len) break;
        const rsv1 = (buf[0] & 0x40) !== 0;
        const body = buf.subarray(at, at + len);
        stats.frames += 1;
        if (rsv1) {
          stats.compressed += 1;
          stats.payload += zlib.inflateRawSync(Buffer.concat([body, Buffer.from([0, 0, 0xff, 0xff])]),
            { finishFlush: zlib.constants.Z_SYNC_FLUSH }).length;
        } else {
          stats.payload += len;
        }
        buf = buf.subarray(at + len);
      }
    });
    setTimeout(() => { s.destroy(); resolve(stats); }, seconds * 1000);
  });
}

const [plain, deflated] = await Promise.all([
  client(null), client('permessage-deflate; client_max_window_bits'),
]);
console.log(JSON.stringify({ seconds, plain, deflated }, null, 1));
console.log(`frames ${plain.frames} / ${deflated.frames}; wire bytes ${plain.bytes} plain, ` +
  `${deflated.bytes} with deflate = ${(100 * deflated.bytes / plain.bytes).toFixed(1)} %; ` +
  `${deflated.compressed} of ${deflated.frames} frames compressed; envelopes ${deflated.payload} bytes`);
