/**
 * A parser for the `text/event-stream` format, as the HTML standard's "Interpreting an
 * event stream" describes it (https://html.spec.whatwg.org/multipage/server-sent-events.html):
 *
 *  - lines end with LF, CRLF or a lone CR; a chunk may end anywhere, even between the CR
 *    and the LF of one CRLF (the LF that follows a CR at the start of the next chunk is
 *    then skipped);
 *  - `field: value` (one leading space of the value is dropped); a line without `:` is a
 *    field with an empty value; a line starting with `:` is a comment;
 *  - `data` lines are joined with "\n"; `event` sets the type of the event being built;
 *    `id` (without NUL) sets the last event id, which persists to later events; `retry`
 *    (ASCII digits only) is reported; other fields are ignored;
 *  - a blank line dispatches the event (nothing when no `data` line came); what is pending
 *    when the stream ends is dropped.
 *
 * It takes text: decode the bytes first with `new TextDecoder()` and `decode(chunk,
 * { stream: true })`, which keeps a multi-byte character split across chunks whole (and
 * drops a leading BOM, as the standard asks).
 */

/** One dispatched event. */
export interface SseEvent {
  /** The `event:` field, `message` when there was none. */
  type: string;
  /** The `data:` lines joined with "\n". */
  data: string;
  /** The last event id at the time of dispatch (`id:` of this or an earlier event). */
  lastEventId: string;
}

export interface SseHandlers {
  event(ev: SseEvent): void;
  /** A comment line (`: ping`), without the colon. */
  comment?(text: string): void;
  /** A valid `retry:` field, in ms. */
  retry?(ms: number): void;
}

export class SseParser {
  /** The last event id (the `id:` field), as the standard's "last event ID string". */
  lastEventId = '';
  private _buf = '';
  /** The previous chunk ended with a CR: an LF at the start of the next one ends nothing. */
  private _skipLf = false;
  private _data = '';
  private _hasData = false;
  private _type = '';
  private _idBuffer = '';
  /** Set by stop(): no more events, even from the rest of the current chunk. */
  private _stopped = false;

  constructor(private readonly handlers: SseHandlers) {}

  /** Feed decoded text; complete lines are interpreted now, the rest is kept. */
  feed(text: string): void {
    if (this._stopped || text === '') return;
    let s = text;
    if (this._skipLf) {
      this._skipLf = false;
      if (s.charCodeAt(0) === 10) s = s.slice(1);
    }
    const kept = this._buf.length; // holds no line end: scan only what is new
    let buf = this._buf + s;
    let start = 0;
    const n = buf.length;
    for (let i = kept; i < n; i++) {
      const c = buf.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      this._line(buf.slice(start, i));
      if (this._stopped) { this._buf = ''; return; }
      if (c === 13) {
        if (i + 1 < n) {
          if (buf.charCodeAt(i + 1) === 10) i++;
        } else {
          this._skipLf = true; // the LF of this CRLF may open the next chunk
        }
      }
      start = i + 1;
    }
    buf = start === 0 ? buf : buf.slice(start);
    this._buf = buf;
  }

  /** The stream ended: an incomplete line or event is discarded. */
  end(): void {
    this._buf = '';
    this._skipLf = false;
    this._data = '';
    this._hasData = false;
    this._type = '';
  }

  /** Deliver nothing more (the rest of the current chunk included). */
  stop(): void {
    this._stopped = true;
    this.end();
  }

  private _line(line: string): void {
    if (line === '') {
      this._dispatch();
      return;
    }
    const colon = line.indexOf(':');
    if (colon === 0) {
      this.handlers.comment?.(line.slice(1));
      return;
    }
    let field = line;
    let value = '';
    if (colon > 0) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.charCodeAt(0) === 32) value = value.slice(1);
    }
    switch (field) {
      case 'data':
        this._data += value + '\n';
        this._hasData = true;
        break;
      case 'event':
        this._type = value;
        break;
      case 'id':
        if (value.indexOf('\u0000') < 0) this._idBuffer = value;
        break;
      case 'retry':
        if (/^[0-9]+$/.test(value)) this.handlers.retry?.(parseInt(value, 10));
        break;
      default:
        break; // ignored, as the standard says
    }
  }

  private _dispatch(): void {
    this.lastEventId = this._idBuffer;
    if (!this._hasData) {
      this._type = '';
      return;
    }
    const data = this._data.slice(0, -1); // the last "\n"
    const type = this._type || 'message';
    this._data = '';
    this._hasData = false;
    this._type = '';
    this.handlers.event({ type, data, lastEventId: this.lastEventId });
  }
}
